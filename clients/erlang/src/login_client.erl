%% @doc A login-node client for Erlang game and cross nodes (protocol v1).
%%
%% A gen_server that connects with {packet, 2} framing, signs AUTH with
%% md5(NodeId ++ Time ++ Token), sends its GAME_INFO or CROSS_INFO, heartbeats at the
%% interval the login node announces, keeps the whitelist in an ETS set the game can query,
%% reconnects with exponential backoff (and jitter) and calls a login_client_handler module.
%%
%%   {ok, Pid} = login_client:start_link(#{
%%       host => "10.0.0.1", port => 7700, token => <<"secret">>,
%%       node_type => game, node_id => 1001, plat => <<"asia">>,
%%       info => #{serv_name => <<"S1001">>, open_time => 1700000000,
%%                 cross_plat => <<"asia">>, addr => <<"10.0.0.5:8001">>},
%%       handler => my_game_login, handler_args => []}),
%%   login_client:is_whitelisted(Pid, <<"player-42">>).
-module(login_client).
-behaviour(gen_server).

-export([start_link/1, stop/1, is_whitelisted/2, whitelist_version/1, send_app/3,
         report_players/2, status/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).
%% Encoding, exported for tests.
-export([sign/3, encode_auth/5, decode/1]).

-define(AUTH, 16#0001).
-define(GAME_INFO, 16#0002).
-define(CROSS_INFO, 16#0003).
-define(HEARTBEAT, 16#0004).
-define(STATUS_REPORT, 16#0005).
-define(AUTH_RESULT, 16#8001).
-define(CROSS_ASSIGN, 16#8002).
-define(CROSS_MEMBERS, 16#8003).
-define(HEARTBEAT_ACK, 16#8004).
-define(STATUS_PUSH, 16#8005).
-define(WL_SNAPSHOT, 16#8006).
-define(WL_DELTA, 16#8007).
-define(KICK, 16#80FF).

-record(st, {opts, sock = undefined, handler, hstate, hb_ms = 10000, hb_timer = undefined,
             backoff, wl, wl_version = 0, loading = [], online = false}).

%%% API

start_link(Opts) -> gen_server:start_link(?MODULE, Opts, []).

stop(Pid) -> gen_server:stop(Pid).

%% True when Entry (binary) is on the whitelist as last received.
is_whitelisted(Pid, Entry) -> gen_server:call(Pid, {whitelisted, Entry}).

whitelist_version(Pid) -> gen_server:call(Pid, whitelist_version).

%% An application command 16#1000..16#7FFF (dropped while offline).
send_app(Pid, Cmd, Body) when Cmd >= 16#1000, Cmd =< 16#7FFF -> gen_server:cast(Pid, {app, Cmd, Body}).

%% Game nodes: players online (STATUS_REPORT).
report_players(Pid, N) -> gen_server:cast(Pid, {players, N}).

%% online | offline
status(Pid) -> gen_server:call(Pid, status).

%%% gen_server

init(Opts) ->
    Handler = maps:get(handler, Opts),
    {ok, HState} = Handler:init(maps:get(handler_args, Opts, [])),
    Wl = ets:new(login_client_whitelist, [set, protected]),
    self() ! connect,
    {ok, #st{opts = Opts, handler = Handler, hstate = HState, wl = Wl,
             backoff = maps:get(backoff_initial_ms, Opts, 200)}}.

handle_call({whitelisted, Entry}, _From, S) ->
    {reply, ets:member(S#st.wl, Entry), S};
handle_call(whitelist_version, _From, S) ->
    {reply, S#st.wl_version, S};
handle_call(status, _From, S) ->
    {reply, case S#st.online of true -> online; false -> offline end, S}.

handle_cast({app, Cmd, Body}, S = #st{sock = Sock, online = true}) ->
    _ = gen_tcp:send(Sock, <<Cmd:16, Body/binary>>),
    {noreply, S};
handle_cast({players, N}, S = #st{sock = Sock, online = true}) ->
    _ = gen_tcp:send(Sock, <<?STATUS_REPORT:16, N:32>>),
    {noreply, S};
handle_cast(_, S) ->
    {noreply, S}.

handle_info(connect, S = #st{opts = O}) ->
    Host = maps:get(host, O, "127.0.0.1"),
    Port = maps:get(port, O, 7700),
    case gen_tcp:connect(Host, Port, [binary, {packet, 2}, {active, true}, {nodelay, true}],
                         maps:get(connect_timeout_ms, O, 5000)) of
        {ok, Sock} ->
            Type = case maps:get(node_type, O) of game -> 1; cross -> 2 end,
            Auth = encode_auth(Type, maps:get(node_id, O), maps:get(plat, O, <<>>),
                               erlang:system_time(second), maps:get(token, O)),
            ok = gen_tcp:send(Sock, Auth),
            {noreply, S#st{sock = Sock}};
        {error, Why} ->
            retry({connect, Why}, S)
    end;
handle_info(heartbeat, S = #st{sock = Sock, online = true, hb_ms = Ms}) ->
    _ = gen_tcp:send(Sock, <<?HEARTBEAT:16, (erlang:system_time(millisecond)):64>>),
    {noreply, S#st{hb_timer = erlang:send_after(Ms, self(), heartbeat)}};
handle_info(heartbeat, S) ->
    {noreply, S};
handle_info({tcp, Sock, Payload}, S = #st{sock = Sock}) ->
    case decode(Payload) of
        {ok, Msg} -> on_message(Msg, S);
        {error, Why} -> retry({protocol_error, Why}, close(S))
    end;
handle_info({tcp_closed, Sock}, S = #st{sock = Sock}) ->
    retry(closed, close(S));
handle_info({tcp_error, Sock, Why}, S = #st{sock = Sock}) ->
    retry(Why, close(S));
handle_info(_, S) ->
    {noreply, S}.

terminate(_Reason, S) ->
    _ = close(S),
    ok.

%%% Messages

on_message({auth_result, 0, _ServerTime, Interval, _Timeout}, S = #st{sock = Sock, opts = O}) ->
    ok = gen_tcp:send(Sock, encode_info(O)),
    Ms = max(1, Interval) * 1000,
    S1 = S#st{online = true, hb_ms = Ms, backoff = maps:get(backoff_initial_ms, O, 200),
              hb_timer = erlang:send_after(Ms, self(), heartbeat)},
    call(online, [Interval], S1);
on_message({auth_result, Code, _, _, _}, S) ->
    retry({auth_rejected, Code}, close(S));
on_message({cross_assign, Id, Name, Plat, Pos}, S) ->
    call(assigned, [#{cross_server_id => Id, cross_node_name => Name, cross_plat => Plat,
                      cross_pos => Pos}], S);
on_message({cross_members, Members}, S) ->
    call(members, [Members], S);
on_message({status_push, M}, S) ->
    call(status, [M =:= 1], S);
on_message({whitelist_snapshot, Version, Last, Entries}, S = #st{loading = L}) ->
    case Last of
        0 -> {noreply, S#st{loading = [Entries | L]}};
        _ ->
            All = lists:append(lists:reverse([Entries | L])),
            true = ets:delete_all_objects(S#st.wl),
            true = ets:insert(S#st.wl, [{E} || E <- All]),
            call(whitelist, [{snapshot, Version, ets:info(S#st.wl, size)}],
                 S#st{loading = [], wl_version = Version})
    end;
on_message({whitelist_delta, Version, _Op, _Entry}, S = #st{wl_version = V}) when Version =< V ->
    {noreply, S};
on_message({whitelist_delta, Version, Op, Entry}, S) ->
    Change = case Op of
        1 -> true = ets:insert(S#st.wl, {Entry}), add;
        _ -> true = ets:delete(S#st.wl, Entry), remove
    end,
    call(whitelist, [{Change, Version, Entry}], S#st{wl_version = Version});
on_message({kick, Reason}, S) ->
    retry({kicked, Reason}, close(S));
on_message({app, Cmd, Body}, S) ->
    call(app, [Cmd, Body], S);
on_message(heartbeat_ack, S) ->
    {noreply, S}.

call(Fun, Args, S = #st{handler = H, hstate = HS}) ->
    {ok, HS1} = apply(H, Fun, Args ++ [HS]),
    {noreply, S#st{hstate = HS1}}.

close(S = #st{sock = undefined}) ->
    S#st{online = false};
close(S = #st{sock = Sock, hb_timer = T}) ->
    _ = gen_tcp:close(Sock),
    _ = case T of undefined -> ok; _ -> erlang:cancel_timer(T) end,
    S#st{sock = undefined, online = false, hb_timer = undefined}.

%% KICK 1: a newer login of this node replaced us; reconnecting would fight it.
retry(Reason = {kicked, 1}, S) ->
    {noreply, S1} = call(offline, [Reason], S),
    {stop, normal, S1};
retry(Reason, S = #st{backoff = B, opts = O}) ->
    {noreply, S1} = call(offline, [Reason], S),
    Wait = B div 2 + rand:uniform(max(1, B div 2)),
    erlang:send_after(Wait, self(), connect),
    {noreply, S1#st{backoff = min(B * 2, maps:get(backoff_max_ms, O, 30000))}}.

%%% Encoding

sign(NodeId, Time, Token) ->
    erlang:md5([integer_to_list(NodeId), integer_to_list(Time), Token]).

str(B) when is_list(B) -> str(unicode:characters_to_binary(B));
str(B) when is_binary(B) -> <<(byte_size(B)):16, B/binary>>.

encode_auth(Type, NodeId, Plat, Time, Token) ->
    <<?AUTH:16, Type:8, NodeId:32, (str(Plat))/binary, Time:32,
      (sign(NodeId, Time, Token))/binary>>.

encode_info(O = #{node_type := game, node_id := Id, info := I}) ->
    _ = O,
    <<?GAME_INFO:16, Id:32, (str(maps:get(serv_name, I, <<>>)))/binary,
      (maps:get(open_time, I, 0)):32, (str(maps:get(cross_plat, I, <<>>)))/binary,
      (maps:get(cross_server_id, I, 0)):32, (maps:get(cross_pos, I, 0)):16,
      (str(maps:get(addr, I, <<>>)))/binary>>;
encode_info(#{node_type := cross, node_id := Id, info := I}) ->
    List = maps:get(game_server_list, I, []),
    <<?CROSS_INFO:16, Id:32, (str(maps:get(cross_plat, I, <<>>)))/binary,
      (maps:get(cross_server_id, I, Id)):32, (str(maps:get(cross_node_name, I, <<>>)))/binary,
      (maps:get(capacity, I, 0)):16, (length(List)):16, << <<S:32>> || S <- List >>/binary>>.

%% Decodes one payload (cmd + body); trailing bytes after the known fields are ignored.
decode(<<?AUTH_RESULT:16, Code:8, Time:32, Int:16, Tmo:16, _/binary>>) ->
    {ok, {auth_result, Code, Time, Int, Tmo}};
decode(<<?CROSS_ASSIGN:16, Id:32, NL:16, Name:NL/binary, PL:16, Plat:PL/binary, Pos:16, _/binary>>) ->
    {ok, {cross_assign, Id, Name, Plat, Pos}};
decode(<<?CROSS_MEMBERS:16, N:16, Rest/binary>>) ->
    case members(N, Rest, []) of
        {ok, Ms} -> {ok, {cross_members, Ms}};
        error -> {error, bad_cross_members}
    end;
decode(<<?HEARTBEAT_ACK:16, _Ts:64, _/binary>>) ->
    {ok, heartbeat_ack};
decode(<<?STATUS_PUSH:16, M:8, _/binary>>) ->
    {ok, {status_push, M}};
decode(<<?WL_SNAPSHOT:16, V:32, Last:8, N:16, Rest/binary>>) ->
    case strs(N, Rest, []) of
        {ok, Es} -> {ok, {whitelist_snapshot, V, Last, Es}};
        error -> {error, bad_whitelist_snapshot}
    end;
decode(<<?WL_DELTA:16, V:32, Op:8, L:16, E:L/binary, _/binary>>) ->
    {ok, {whitelist_delta, V, Op, E}};
decode(<<?KICK:16, R:8, _/binary>>) ->
    {ok, {kick, R}};
decode(<<Cmd:16, Body/binary>>) when Cmd >= 16#1000, Cmd =< 16#7FFF ->
    {ok, {app, Cmd, Body}};
decode(<<Cmd:16, _/binary>>) ->
    {error, {unexpected_command, Cmd}};
decode(_) ->
    {error, truncated}.

members(0, _, Acc) -> {ok, lists:reverse(Acc)};
members(N, <<S:32, L:16, Name:L/binary, P:16, Rest/binary>>, Acc) ->
    members(N - 1, Rest, [{S, Name, P} | Acc]);
members(_, _, _) -> error.

strs(0, _, Acc) -> {ok, lists:reverse(Acc)};
strs(N, <<L:16, E:L/binary, Rest/binary>>, Acc) -> strs(N - 1, Rest, [E | Acc]);
strs(_, _, _) -> error.
