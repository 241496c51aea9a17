%% @doc A login-node client for Erlang game and cross nodes (protocol v1).
%%
%% A gen_server that connects with {packet, 2} framing, signs AUTH with
%% md5(NodeId ++ Time ++ Token), sends its GAME_INFO or CROSS_INFO, heartbeats at the
%% interval the login node announces, keeps the whitelist in an ETS set the game can query,
%% reconnects with exponential backoff (and jitter) and calls a login_client_handler module.
%%
%% Reconnect, liveness, backoff:
%% - A login node that sends no AUTH_RESULT within auth_timeout_ms (default 10000), or that is
%%   silent (no frame at all, heartbeat ACKs included) for the heartbeat_timeout its
%%   AUTH_RESULT announced, is treated as dead: the client closes and reconnects.
%% - Sends never block for long (send_timeout_ms, default 5000, then the socket is closed) and
%%   a failed send is a disconnect, never a crash.
%% - Reconnects wait backoff_initial_ms (default 200, must be > 0), doubling up to
%%   backoff_max_ms (default 30000), with jitter. The backoff resets only after the node stayed
%%   online for one announced heartbeat_timeout, so a login node that kicks right after login
%%   does not get a reconnect storm.
%% - is_whitelisted/2, whitelist_version/1 and status/1 read an ETS table directly: they answer
%%   at once even while the client waits on a connect.
%% - A handler callback that crashes (or returns anything but {ok, State}) crashes this
%%   gen_server, and with it a linked caller: supervise it, and keep callbacks simple.
%% - cross nodes: cross_server_id (default: node_id) must be non-zero (the contract makes 0
%%   a protocol error); start_link refuses 0.
%%
%% - failover groups: `addrs => [{Host, Port}, ...]` (every member) instead of host/port;
%%   the client moves to the next address at once on AUTH code 7, KICK 6, a refused
%%   connection or a silent login node, and backs off only after a whole round failed.
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
             backoff, wl, wl_version = 0,
             %% The address in use (an index into addrs/1) and connections failed in a row
             %% since one got online (the backoff waits for a whole round of the group).
             addr_ix = 0, failed = 0,
             %% {Version, [Entries]} of a snapshot being received; a disconnect discards it.
             loading = none,
             online = false,
             %% Announced heartbeat_timeout (ms), monotonic ms of the last frame received and
             %% of going online, and the pending liveness/AUTH_RESULT deadline timer.
             silence_ms = 30000, last_rx = 0, online_at = undefined, deadline = undefined}).

%%% API

start_link(Opts) -> gen_server:start_link(?MODULE, Opts, []).

stop(Pid) -> gen_server:stop(Pid).

%% True when Entry (binary) is on the whitelist as last received. Reads the client's ETS
%% table directly (never waits for the gen_server); false once the client is gone.
is_whitelisted(Pid, Entry) ->
    read_table(Pid, fun(T) -> ets:member(T, Entry) end, false).

whitelist_version(Pid) ->
    read_table(Pid, fun(T) -> lookup(T, '$version', 0) end, 0).

%% An application command 16#1000..16#7FFF (dropped while offline).
send_app(Pid, Cmd, Body) when Cmd >= 16#1000, Cmd =< 16#7FFF -> gen_server:cast(Pid, {app, Cmd, Body}).

%% Game nodes: players online (STATUS_REPORT).
report_players(Pid, N) -> gen_server:cast(Pid, {players, N}).

%% online | offline (read from the client's ETS table, like is_whitelisted/2).
status(Pid) ->
    read_table(Pid, fun(T) -> lookup(T, '$status', offline) end, offline).

table_key(Pid) -> {?MODULE, whitelist, Pid}.

read_table(Pid, Read, Default) ->
    case persistent_term:get(table_key(Pid), undefined) of
        undefined -> Default;
        T -> try Read(T) catch error:badarg -> Default end
    end.

lookup(T, Key, Default) ->
    case ets:lookup(T, Key) of
        [{_, V}] -> V;
        [] -> Default
    end.

%%% gen_server

init(Opts) ->
    case check_options(Opts) of
        ok -> init_checked(Opts);
        {error, Why} -> {stop, Why}
    end.

init_checked(Opts) ->
    Handler = maps:get(handler, Opts),
    {ok, HState} = Handler:init(maps:get(handler_args, Opts, [])),
    Wl = ets:new(login_client_whitelist, [set, protected, {read_concurrency, true}]),
    true = ets:insert(Wl, [{'$version', 0}, {'$status', offline}]),
    %% Written once per client (persistent_term writes are costly, reads free).
    persistent_term:put(table_key(self()), Wl),
    self() ! connect,
    {ok, #st{opts = Opts, handler = Handler, hstate = HState, wl = Wl,
             backoff = maps:get(backoff_initial_ms, Opts, 200)}}.

check_options(O) ->
    Initial = maps:get(backoff_initial_ms, O, 200),
    Max = maps:get(backoff_max_ms, O, 30000),
    Positive = fun(V) -> is_integer(V) andalso V > 0 end,
    if
        not is_integer(Initial) orelse Initial =< 0 -> {error, {bad_option, backoff_initial_ms}};
        not is_integer(Max) orelse Max < Initial -> {error, {bad_option, backoff_max_ms}};
        true ->
            case [K || K <- [auth_timeout_ms, send_timeout_ms, connect_timeout_ms],
                       maps:is_key(K, O), not Positive(maps:get(K, O))] of
                [K | _] -> {error, {bad_option, K}};
                [] -> check_cross_id(O)
            end
    end.

check_cross_id(#{node_type := cross, node_id := Id, info := I}) ->
    case maps:get(cross_server_id, I, Id) of
        0 -> {error, {bad_option, cross_server_id}};
        _ -> ok
    end;
check_cross_id(_) -> ok.

handle_call(_, _From, S) ->
    {reply, {error, unknown_call}, S}.

handle_cast({app, Cmd, Body}, S = #st{online = true}) ->
    send(<<Cmd:16, Body/binary>>, S);
handle_cast({players, N}, S = #st{online = true}) ->
    send(<<?STATUS_REPORT:16, N:32>>, S);
handle_cast(_, S) ->
    {noreply, S}.

handle_info(connect, S = #st{opts = O, addr_ix = Ix}) ->
    {Host, Port} = lists:nth(Ix + 1, addrs(O)),
    case gen_tcp:connect(Host, Port, [binary, {packet, 2}, {active, true}, {nodelay, true},
                                      {send_timeout, maps:get(send_timeout_ms, O, 5000)},
                                      {send_timeout_close, true}],
                         maps:get(connect_timeout_ms, O, 5000)) of
        {ok, Sock} ->
            Type = case maps:get(node_type, O) of game -> 1; cross -> 2 end,
            Auth = encode_auth(Type, maps:get(node_id, O), maps:get(plat, O, <<>>),
                               erlang:system_time(second), maps:get(token, O)),
            %% No AUTH_RESULT by then: the login node is taken for dead.
            Deadline = erlang:send_after(maps:get(auth_timeout_ms, O, 10000), self(),
                                         {deadline, Sock}),
            send(Auth, S#st{sock = Sock, deadline = Deadline, last_rx = now_ms()});
        {error, Why} ->
            retry({connect, Why}, S)
    end;
handle_info(heartbeat, S = #st{online = true, hb_ms = Ms}) ->
    send(<<?HEARTBEAT:16, (erlang:system_time(millisecond)):64>>,
         S#st{hb_timer = erlang:send_after(Ms, self(), heartbeat)});
handle_info(heartbeat, S) ->
    {noreply, S};
handle_info({deadline, Sock}, S = #st{sock = Sock, online = false}) ->
    retry(no_auth_result, close(S));
handle_info({deadline, Sock}, S = #st{sock = Sock, last_rx = Last, silence_ms = Limit}) ->
    case now_ms() - Last of
        Silent when Silent >= Limit -> retry(silent, close(S));
        Silent -> {noreply, S#st{deadline = erlang:send_after(Limit - Silent, self(),
                                                              {deadline, Sock})}}
    end;
handle_info({tcp, Sock, Payload}, S0 = #st{sock = Sock}) ->
    S = S0#st{last_rx = now_ms()},
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
    _ = persistent_term:erase(table_key(self())),
    ok.

now_ms() -> erlang:monotonic_time(millisecond).

%% A failed send is a disconnect (the login node may close right after accept), never a crash.
send(Frame, S = #st{sock = Sock}) ->
    case gen_tcp:send(Sock, Frame) of
        ok -> {noreply, S};
        {error, Why} -> retry({send, Why}, close(S))
    end.

%%% Messages

on_message({auth_result, 0, _ServerTime, Interval, Timeout}, S = #st{sock = Sock, opts = O}) ->
    case send(encode_info(O), S) of
        {noreply, S0 = #st{sock = Sock}} ->
            Ms = max(1, Interval) * 1000,
            Silence = max(1, Timeout) * 1000,
            cancel(S0#st.deadline),
            true = ets:insert(S0#st.wl, {'$status', online}),
            S1 = S0#st{online = true, failed = 0, hb_ms = Ms, silence_ms = Silence, online_at = now_ms(),
                       hb_timer = erlang:send_after(Ms, self(), heartbeat),
                       deadline = erlang:send_after(Silence, self(), {deadline, Sock})},
            call(online, [Interval], S1);
        Gone ->
            Gone
    end;
on_message({auth_result, Code, _, _, _}, S) ->
    retry({auth_rejected, Code}, close(S));
on_message({cross_assign, Id, Name, Plat, Pos}, S) ->
    call(assigned, [#{cross_server_id => Id, cross_node_name => Name, cross_plat => Plat,
                      cross_pos => Pos}], S);
on_message({cross_members, Members}, S) ->
    call(members, [Members], S);
on_message({status_push, M}, S) ->
    call(status, [M =:= 1], S);
on_message({whitelist_snapshot, Version, Last, Entries}, S = #st{loading = Loading}) ->
    %% Frames of one version accumulate; a frame of another version starts over.
    Parts = case Loading of
        {Version, Ps} -> [Entries | Ps];
        _ -> [Entries]
    end,
    case Last of
        0 -> {noreply, S#st{loading = {Version, Parts}}};
        _ ->
            replace_whitelist(S#st.wl, lists:append(lists:reverse(Parts)), Version),
            call(whitelist, [{snapshot, Version, ets:info(S#st.wl, size) - 2}],
                 S#st{loading = none, wl_version = Version})
    end;
on_message({whitelist_delta, Version, _Op, _Entry}, S = #st{wl_version = V}) when Version =< V ->
    {noreply, S};
on_message({whitelist_delta, Version, Op, Entry}, S) ->
    Change = case Op of
        1 -> true = ets:insert(S#st.wl, {Entry}), add;
        _ -> true = ets:delete(S#st.wl, Entry), remove
    end,
    true = ets:insert(S#st.wl, {'$version', Version}),
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

%% The whole set at once: new entries go in before stale ones go out, so a reader never misses
%% an entry that is in both the old and the new set.
replace_whitelist(T, Entries, Version) ->
    true = ets:insert(T, [{E} || E <- Entries]),
    Keep = maps:from_keys(Entries, []),
    Stale = ets:foldl(fun({K}, Acc) when not is_map_key(K, Keep) -> [K | Acc];
                         (_, Acc) -> Acc
                      end, [], T),
    lists:foreach(fun(K) -> ets:delete(T, K) end, Stale),
    true = ets:insert(T, {'$version', Version}).

cancel(undefined) -> ok;
cancel(T) -> _ = erlang:cancel_timer(T), ok.

%% Every disconnect passes here: a partial snapshot is discarded with the connection.
close(S = #st{sock = undefined}) ->
    true = ets:insert(S#st.wl, {'$status', offline}),
    S#st{online = false, loading = none};
close(S = #st{sock = Sock, hb_timer = T, deadline = D}) ->
    _ = gen_tcp:close(Sock),
    cancel(T),
    cancel(D),
    true = ets:insert(S#st.wl, {'$status', offline}),
    S#st{sock = undefined, online = false, hb_timer = undefined, deadline = undefined,
         loading = none}.

%% KICK 1: a newer login of this node replaced us; reconnecting would fight it.
retry(Reason = {kicked, 1}, S) ->
    {noreply, S1} = call(offline, [Reason], S),
    {stop, normal, S1};
retry(Reason, S0 = #st{opts = O, addr_ix = Ix, failed = Failed}) ->
    %% A failover group: the next member at once (code 7, KICK 6, a refused or dead login
    %% node; not after an operator's KICK 3); the backoff applies once every address has
    %% failed in a row (contract section 6).
    N = length(addrs(O)),
    case N > 1 andalso Reason =/= {kicked, 3} of
        true when Failed + 1 < N ->
            {noreply, S1} = call(offline, [Reason], S0#st{online_at = undefined}),
            self() ! connect,
            {noreply, S1#st{addr_ix = (Ix + 1) rem N, failed = Failed + 1}};
        true ->
            backoff(Reason, S0#st{addr_ix = (Ix + 1) rem N, failed = 0});
        false ->
            backoff(Reason, S0)
    end.

backoff(Reason, S0 = #st{opts = O}) ->
    %% The backoff starts over only after a session that stayed online for a heartbeat timeout.
    Initial = maps:get(backoff_initial_ms, O, 200),
    Stayed = case S0#st.online_at of
        At when is_integer(At) -> now_ms() - At >= S0#st.silence_ms;
        undefined -> false
    end,
    S = case Stayed of
        true -> S0#st{backoff = Initial, online_at = undefined};
        false -> S0#st{online_at = undefined}
    end,
    B = S#st.backoff,
    {noreply, S1} = call(offline, [Reason], S),
    Wait = B div 2 + rand:uniform(max(1, B div 2)),
    erlang:send_after(Wait, self(), connect),
    {noreply, S1#st{backoff = min(B * 2, maps:get(backoff_max_ms, O, 30000))}}.

%% The login node addresses: `addrs => [{Host, Port}, ...]` (every member of a failover
%% group), else `host` and `port`.
addrs(O) ->
    case maps:get(addrs, O, []) of
        [] -> [{maps:get(host, O, "127.0.0.1"), maps:get(port, O, 7700)}];
        List -> List
    end.

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
