%% eunit tests for login_client against fake_login, a login node that misbehaves on purpose.
-module(login_client_fake_tests).
-include_lib("eunit/include/eunit.hrl").

client(Fake, Extra) ->
    login_client:start_link(maps:merge(#{
        host => "127.0.0.1", port => fake_login:port(Fake), token => <<"fake-secret">>,
        node_type => game, node_id => 1, plat => <<"dev">>,
        info => #{serv_name => <<"S1">>, cross_plat => <<"p">>},
        handler => login_client_test_handler, handler_args => self(),
        backoff_initial_ms => 50, backoff_max_ms => 400}, Extra)).

%% The next callback `What` from Pid (others skipped), within Ms.
expect(Pid, What, Ms) ->
    receive
        {login, Pid, What, Arg} -> Arg;
        {login, Pid, _, _} -> expect(Pid, What, Ms)
    after Ms -> erlang:error({timeout, What})
    end.

with_fake(Title, Modes, Test) ->
    {Title, {timeout, 30, fun() ->
        process_flag(trap_exit, true),
        Fake = fake_login:start(Modes),
        try Test(Fake) after fake_login:stop(Fake) end
    end}}.

interrupted_snapshot_leaves_no_stale_entries_test_() ->
    with_fake("interrupted snapshot leaves no stale entries", [{online_then_close, 1, 3,
                [fake_login:snapshot(5, 0, [<<"old1">>, <<"old2">>])]},
               {online, 1, 3, [fake_login:snapshot(6, 1, [<<"new1">>])]}],
              fun(Fake) ->
        {ok, C} = client(Fake, #{}),
        ?assertEqual({snapshot, 6, 1}, expect(C, whitelist, 10000)),
        ?assert(login_client:is_whitelisted(C, <<"new1">>)),
        ?assertNot(login_client:is_whitelisted(C, <<"old1">>)),
        ?assertNot(login_client:is_whitelisted(C, <<"old2">>)),
        ?assertEqual(6, login_client:whitelist_version(C)),
        ok = login_client:stop(C)
    end).

a_send_error_is_a_disconnect_not_a_crash_test_() ->
    with_fake("a send error is a disconnect not a crash", [{reset_after_auth, self()}, silent_after_accept], fun(Fake) ->
        {ok, C} = client(Fake, #{}),
        Conn = receive {fake_login, waiting, P} -> P after 5000 -> erlang:error(no_auth) end,
        %% The reset lands while the client is busy: its INFO send then meets a closed socket.
        ok = sys:suspend(C),
        Conn ! go,
        timer:sleep(300),
        ok = sys:resume(C),
        ?assertMatch({send, _}, expect(C, offline, 5000)),
        ?assert(is_process_alive(C)),
        wait_connections(Fake, 2, 50),
        receive {'EXIT', C, Why} -> erlang:error({client_died, Why}) after 0 -> ok end,
        ok = login_client:stop(C)
    end).

no_auth_result_is_a_dead_login_node_test_() ->
    with_fake("no auth result is a dead login node", [silent_after_accept], fun(Fake) ->
        {ok, C} = client(Fake, #{auth_timeout_ms => 300}),
        ?assertEqual(no_auth_result, expect(C, offline, 3000)),
        ok = login_client:stop(C)
    end).

a_silent_login_node_is_detected_test_() ->
    with_fake("a silent login node is detected", [{silent_after_auth, 1, 2}], fun(Fake) ->
        {ok, C} = client(Fake, #{}),
        T0 = erlang:monotonic_time(millisecond),
        ?assertEqual(1, expect(C, online, 5000)),
        ?assertEqual(silent, expect(C, offline, 5000)),
        Took = erlang:monotonic_time(millisecond) - T0,
        ?assert(Took >= 2000),
        ok = login_client:stop(C)
    end).

reads_never_wait_for_the_gen_server_test_() ->
    with_fake("reads never wait for the gen server", [{online, 1, 3, [fake_login:snapshot(1, 1, [<<"vip">>])]}], fun(Fake) ->
        {ok, C} = client(Fake, #{}),
        ?assertEqual({snapshot, 1, 1}, expect(C, whitelist, 5000)),
        %% A suspended gen_server stands for one stuck in gen_tcp:connect.
        ok = sys:suspend(C),
        {Us, Answers} = timer:tc(fun() ->
            {login_client:is_whitelisted(C, <<"vip">>), login_client:whitelist_version(C),
             login_client:status(C)}
        end),
        ok = sys:resume(C),
        ?assertEqual({true, 1, online}, Answers),
        ?assert(Us < 100000),
        ok = login_client:stop(C),
        ?assertNot(login_client:is_whitelisted(C, <<"vip">>))
    end).

a_kick_right_after_login_backs_off_test_() ->
    with_fake("a kick right after login backs off", [kick_after_auth], fun(Fake) ->
        {ok, C} = client(Fake, #{}),
        timer:sleep(2000),
        ok = login_client:stop(C),
        %% 50, 100, 200, 400, 400 ... ms: about 8 in 2 s; a reset after every login made ~40.
        N = fake_login:connections(Fake),
        ?assert(N >= 2),
        ?assert(N =< 15)
    end).

a_session_online_for_a_heartbeat_timeout_resets_the_backoff_test_() ->
    with_fake("a session online for a heartbeat timeout resets the backoff",
              [{online_for, 2, 2300}], fun(Fake) ->
        {ok, C} = client(Fake, #{}),
        ?assertEqual(1, expect(C, online, 5000)),
        Gaps = [begin
                    _ = expect(C, offline, 5000),
                    T0 = erlang:monotonic_time(millisecond),
                    ?assertEqual(1, expect(C, online, 5000)),
                    erlang:monotonic_time(millisecond) - T0
                end || _ <- [1, 2, 3]],
        ok = login_client:stop(C),
        %% Each session outlived its 2 s timeout, so each wait is the initial 25..50 ms; a
        %% growing backoff would make the third 200..400 ms.
        ?assert(lists:max(Gaps) < 150)
    end).

stop_returns_while_the_login_node_does_not_read_test_() ->
    with_fake("stop returns while the login node does not read",
              [{never_reads, 1, 30}], fun(Fake) ->
        {ok, C} = client(Fake, #{send_timeout_ms => 300}),
        ?assertEqual(1, expect(C, online, 5000)),
        Body = binary:copy(<<0>>, 60000),
        [login_client:send_app(C, 16#1000, Body) || _ <- lists:seq(1, 600)],
        {Us, ok} = timer:tc(fun() -> login_client:stop(C) end),
        ?assert(Us < 5000000)
    end).

%% A failover group: code 7 from a standby and KICK 6 from a member that lost its role send
%% the client to the next address at once, without the backoff (5 s here).
a_group_is_tried_address_by_address_test_() ->
    {"code 7 and KICK 6 move to the next member at once", {timeout, 30, fun() ->
        process_flag(trap_exit, true),
        F1 = fake_login:start([{auth_code, 7}, {online, 1, 3, [fake_login:snapshot(1, 1, [])]}]),
        F2 = fake_login:start([kick6_after_auth]),
        try
            {ok, C} = client(F1, #{addrs => [{"127.0.0.1", fake_login:port(F1)},
                                             {"127.0.0.1", fake_login:port(F2)}],
                                   backoff_initial_ms => 5000, backoff_max_ms => 5000}),
            T0 = erlang:monotonic_time(millisecond),
            _ = expect(C, online, 4000),
            ?assertEqual({kicked, 6}, expect(C, offline, 4000)),
            _ = expect(C, online, 4000),
            ?assert(erlang:monotonic_time(millisecond) - T0 < 4000),
            ?assertEqual(2, fake_login:connections(F1)),
            ?assertEqual(1, fake_login:connections(F2)),
            ok = login_client:stop(C)
        after
            fake_login:stop(F1),
            fake_login:stop(F2)
        end
    end}}.

zero_backoff_is_refused_test() ->
    process_flag(trap_exit, true),
    Opts = #{host => "127.0.0.1", port => 1, token => <<"t">>, node_type => game,
             node_id => 1, info => #{}, handler => login_client_test_handler,
             handler_args => self()},
    ?assertEqual({error, {bad_option, backoff_initial_ms}},
                 login_client:start_link(Opts#{backoff_initial_ms => 0})),
    ?assertEqual({error, {bad_option, backoff_max_ms}},
                 login_client:start_link(Opts#{backoff_initial_ms => 100,
                                               backoff_max_ms => 10})),
    ?assertEqual({error, {bad_option, cross_server_id}},
                 login_client:start_link(Opts#{node_type => cross,
                                               info => #{cross_server_id => 0}})).

wait_connections(_Fake, _Want, 0) -> erlang:error(no_reconnect);
wait_connections(Fake, Want, N) ->
    case fake_login:connections(Fake) >= Want of
        true -> ok;
        false -> timer:sleep(50), wait_connections(Fake, Want, N - 1)
    end.
