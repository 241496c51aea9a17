%% eunit tests for login_client: encoding units, then game and cross nodes against a real
%% login-node started by the test (its binary from $LOGIN_NODE_BIN).
-module(login_client_tests).
-include_lib("eunit/include/eunit.hrl").

-define(TOKEN, <<"erlang-test-token">>).
-define(ADMIN_TOKEN, "erlang-admin-token").

sign_matches_the_contract_example_test() ->
    %% md5("10011700000000secret"), the contract's example input.
    ?assertEqual(erlang:md5(<<"10011700000000secret">>),
                 login_client:sign(1001, 1700000000, "secret")).

auth_layout_test() ->
    <<1:16, 1:8, 1001:32, 4:16, "asia", 1700000000:32, Sign:16/binary>> =
        login_client:encode_auth(1, 1001, <<"asia">>, 1700000000, <<"secret">>),
    ?assertEqual(login_client:sign(1001, 1700000000, <<"secret">>), Sign).

decode_test_() ->
    [?_assertEqual({ok, {cross_members, [{7, <<"S7">>, 2}]}},
                   login_client:decode(<<16#8003:16, 1:16, 7:32, 2:16, "S7", 2:16>>)),
     ?_assertEqual({ok, {whitelist_snapshot, 3, 1, [<<"a">>, <<"bc">>]}},
                   login_client:decode(<<16#8006:16, 3:32, 1:8, 2:16, 1:16, "a", 2:16, "bc">>)),
     ?_assertEqual({ok, {kick, 3}}, login_client:decode(<<16#80FF:16, 3>>)),
     ?_assertMatch({error, _}, login_client:decode(<<16#8003:16, 2:16, 7:32>>)),
     ?_assertMatch({error, _}, login_client:decode(<<1>>))].

%%% Against a real login node

free_port() ->
    {ok, L} = gen_tcp:listen(0, [{ip, {127, 0, 0, 1}}]),
    {ok, Port} = inet:port(L),
    ok = gen_tcp:close(L),
    Port.

start_server() ->
    Bin = os:getenv("LOGIN_NODE_BIN"),
    ?assertNotEqual(false, Bin),
    Port = free_port(),
    Admin = free_port(),
    Dir = string:trim(os:cmd("mktemp -d")),
    P = open_port({spawn_executable, Bin},
                  [{args, ["--listen", "127.0.0.1:" ++ integer_to_list(Port),
                           "--admin-listen", "127.0.0.1:" ++ integer_to_list(Admin),
                           "--token", binary_to_list(?TOKEN), "--admin-token", ?ADMIN_TOKEN,
                           "--state-dir", Dir ++ "/state", "--heartbeat-interval", "1",
                           "--heartbeat-timeout", "3", "--log-level", "warn"]},
                   exit_status, use_stdio, stderr_to_stdout, binary]),
    ok = wait_up(Admin, 100),
    {P, Port, Admin, Dir}.

wait_up(_Port, 0) -> {error, not_up};
wait_up(Port, N) ->
    case gen_tcp:connect({127, 0, 0, 1}, Port, []) of
        {ok, S} -> gen_tcp:close(S);
        _ -> timer:sleep(50), wait_up(Port, N - 1)
    end.

stop_server({P, _, _, Dir}) ->
    {os_pid, OsPid} = erlang:port_info(P, os_pid),
    os:cmd("kill " ++ integer_to_list(OsPid)),
    receive {P, {exit_status, _}} -> ok after 5000 -> ok end,
    os:cmd("rm -rf " ++ Dir).

%% One HTTP/1.1 request to the admin API; returns the status code.
admin(Admin, Method, Path, Body) ->
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, Admin, [binary, {active, false}]),
    Req = [Method, " ", Path, " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n",
           "Authorization: Bearer ", ?ADMIN_TOKEN, "\r\n",
           "Content-Length: ", integer_to_list(iolist_size(Body)), "\r\n\r\n", Body],
    ok = gen_tcp:send(S, Req),
    {ok, Resp} = recv_all(S, <<>>),
    <<"HTTP/1.1 ", Code:3/binary, _/binary>> = Resp,
    binary_to_integer(Code).

recv_all(S, Acc) ->
    case gen_tcp:recv(S, 0, 5000) of
        {ok, B} -> recv_all(S, <<Acc/binary, B/binary>>);
        {error, closed} -> {ok, Acc}
    end.

%% The next callback `What` from client Pid (others are skipped), within 10 s.
expect(Pid, What) ->
    receive
        {login, Pid, What, Arg} -> Arg;
        {login, Pid, _, _} -> expect(Pid, What)
    after 10000 -> erlang:error({timeout, What})
    end.

client(Port, Type, Id, Info) ->
    {ok, Pid} = login_client:start_link(#{
        host => "127.0.0.1", port => Port, token => ?TOKEN, node_type => Type,
        node_id => Id, plat => <<"dev">>, info => Info,
        handler => login_client_test_handler, handler_args => self(),
        backoff_initial_ms => 50, backoff_max_ms => 400}),
    Pid.

cluster_test_() ->
    {setup, fun start_server/0, fun stop_server/1,
     fun(Server) -> {timeout, 60, fun() -> cluster(Server) end} end}.

cluster({_, Port, Admin, _}) ->
    process_flag(trap_exit, true),
    Cross = client(Port, cross, 90, #{cross_plat => <<"p">>, cross_server_id => 90,
                                      cross_node_name => <<"cross90@127.0.0.1">>,
                                      capacity => 10}),
    ?assertEqual(1, expect(Cross, online)),
    ?assertEqual([], expect(Cross, members)),
    Game = client(Port, game, 101, #{serv_name => <<"S101">>, open_time => 1700000000,
                                      cross_plat => <<"p">>, addr => <<"127.0.0.1:1">>}),
    ?assertEqual(1, expect(Game, online)),
    ?assertEqual(false, expect(Game, status)),
    ?assertEqual({snapshot, 0, 0}, expect(Game, whitelist)),
    %% Allocation: the game node gets the cross node, the cross node its member.
    ?assertEqual(#{cross_server_id => 90, cross_node_name => <<"cross90@127.0.0.1">>,
                   cross_plat => <<"p">>, cross_pos => 1}, expect(Game, assigned)),
    ?assertEqual([{101, <<"S101">>, 1}], expect(Cross, members)),
    %% Heartbeats: 4 s with a 3 s timeout, and both are still online.
    timer:sleep(4000),
    ?assertEqual(online, login_client:status(Game)),
    ?assertEqual(online, login_client:status(Cross)),
    receive {login, _, offline, Why} -> erlang:error({went_offline, Why}) after 0 -> ok end,
    %% A whitelist delta lands in the local set.
    ?assertEqual(200, admin(Admin, "POST", "/api/whitelist", <<"{\"entry\": \"vip\"}">>)),
    ?assertEqual({add, 1, <<"vip">>}, expect(Game, whitelist)),
    ?assert(login_client:is_whitelisted(Game, <<"vip">>)),
    ?assertNot(login_client:is_whitelisted(Game, <<"nobody">>)),
    ?assertEqual(1, login_client:whitelist_version(Game)),
    %% Maintenance is pushed.
    ?assertEqual(200, admin(Admin, "PUT", "/api/nodes/game/101/maintenance",
                            <<"{\"maintenance\": true}">>)),
    ?assertEqual(true, expect(Game, status)),
    %% A kick: KICK 3, then the client is back by itself with the same assignment.
    ?assertEqual(200, admin(Admin, "POST", "/api/nodes/game/101/kick", <<>>)),
    ?assertEqual({kicked, 3}, expect(Game, offline)),
    ?assertEqual(1, expect(Game, online)),
    ?assertEqual({snapshot, 1, 1}, expect(Game, whitelist)),
    ?assertMatch(#{cross_server_id := 90, cross_pos := 1}, expect(Game, assigned)),
    %% Application commands pass (the plain binary ignores them; the call must not fail).
    ok = login_client:send_app(Game, 16#1001, <<"hello">>),
    ok = login_client:report_players(Game, 12),
    ok = login_client:stop(Game),
    ok = login_client:stop(Cross).
