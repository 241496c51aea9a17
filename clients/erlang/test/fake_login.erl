%% A fake login node for tests: misbehaves on purpose, one mode per misbehaviour. Frames are
%% written by hand from the contract. Connection N (from 1) uses the Nth mode, the last mode
%% for every later one.
%%
%% Modes:
%%   {online, Interval, Timeout, Frames}   AUTH_RESULT 0, read INFO, send Frames, then answer
%%                                         heartbeats until closed
%%   {online_then_close, I, T, Frames}     the same, but close right after Frames
%%   silent_after_accept                   read AUTH, answer nothing
%%   {silent_after_auth, I, T}             AUTH_RESULT 0, then read everything, answer nothing
%%   kick_after_auth                       AUTH_RESULT 0 (1 s / 3 s), then KICK 3 at once
%%   kick6_after_auth                      AUTH_RESULT 0 (1 s / 3 s), read INFO, then KICK 6
%%   {auth_code, Code}                     AUTH_RESULT Code (e.g. 7: a standby), then close
%%   {online_for, Timeout, Ms}             AUTH_RESULT 0 (1 s / Timeout s), heartbeats answered
%%                                         for Ms, then closed
%%   {never_reads, I, T}                   AUTH_RESULT 0, then never reads again
%%   {reset_after_auth, TestPid}           after AUTH: sends {fake_login, waiting, self()} to
%%                                         TestPid, waits for `go`, then AUTH_RESULT 0 and a
%%                                         reset (the client's next send fails)
-module(fake_login).
-export([start/1, port/1, connections/1, stop/1]).
-export([auth_result/3, snapshot/3]).

start(Modes) ->
    Parent = self(),
    Pid = spawn_link(fun() ->
        {ok, L} = gen_tcp:listen(0, [binary, {packet, 2}, {active, false},
                                     {ip, {127, 0, 0, 1}}, {reuseaddr, true}]),
        {ok, Port} = inet:port(L),
        Parent ! {fake_login, self(), Port},
        accept_loop(L, Modes, 0)
    end),
    receive {fake_login, Pid, Port} -> {Pid, Port} after 5000 -> erlang:error(no_fake) end.

port({_, Port}) -> Port.

connections({Pid, _}) ->
    Pid ! {count, self()},
    receive {fake_login_count, N} -> N after 5000 -> erlang:error(no_count) end.

stop({Pid, _}) ->
    unlink(Pid),
    exit(Pid, kill),
    ok.

accept_loop(L, Modes, N) ->
    receive
        {count, From} -> From ! {fake_login_count, N}, accept_loop(L, Modes, N)
    after 0 ->
        case gen_tcp:accept(L, 20) of
            {ok, S} ->
                Mode = lists:nth(min(N + 1, length(Modes)), Modes),
                Conn = spawn_link(fun() -> receive go_own -> serve(S, Mode) end end),
                ok = gen_tcp:controlling_process(S, Conn),
                Conn ! go_own,
                accept_loop(L, Modes, N + 1);
            {error, timeout} ->
                accept_loop(L, Modes, N)
        end
    end.

auth_result(Code, Interval, Timeout) ->
    <<16#8001:16, Code:8, 1700000000:32, Interval:16, Timeout:16>>.

snapshot(Version, Last, Entries) ->
    <<16#8006:16, Version:32, Last:8, (length(Entries)):16,
      << <<(byte_size(E)):16, E/binary>> || E <- Entries >>/binary>>.

recv(S) -> gen_tcp:recv(S, 0, 30000).

serve(S, Mode) ->
    case recv(S) of
        {ok, <<1:16, _/binary>>} -> after_auth(S, Mode);
        _ -> gen_tcp:close(S)
    end.

after_auth(S, {online, I, T, Frames}) ->
    ok = gen_tcp:send(S, auth_result(0, I, T)),
    case recv(S) of
        {ok, _Info} -> [gen_tcp:send(S, F) || F <- Frames], answer(S);
        _ -> gen_tcp:close(S)
    end;
after_auth(S, {online_then_close, I, T, Frames}) ->
    ok = gen_tcp:send(S, auth_result(0, I, T)),
    _ = recv(S),
    [gen_tcp:send(S, F) || F <- Frames],
    gen_tcp:close(S);
after_auth(S, silent_after_accept) ->
    drain(S);
after_auth(S, {silent_after_auth, I, T}) ->
    ok = gen_tcp:send(S, auth_result(0, I, T)),
    drain(S);
after_auth(S, kick6_after_auth) ->
    _ = gen_tcp:send(S, auth_result(0, 1, 3)),
    _ = recv(S), % the INFO: the node is online
    _ = gen_tcp:send(S, <<16#80FF:16, 6:8>>),
    gen_tcp:close(S);
after_auth(S, {auth_code, Code}) ->
    _ = gen_tcp:send(S, auth_result(Code, 1, 3)),
    gen_tcp:close(S);
after_auth(S, kick_after_auth) ->
    _ = gen_tcp:send(S, auth_result(0, 1, 3)),
    _ = gen_tcp:send(S, <<16#80FF:16, 3:8>>),
    gen_tcp:close(S);
after_auth(S, {online_for, T, Ms}) ->
    ok = gen_tcp:send(S, auth_result(0, 1, T)),
    answer_until(S, erlang:monotonic_time(millisecond) + Ms);
after_auth(S, {never_reads, I, T}) ->
    ok = gen_tcp:send(S, auth_result(0, I, T)),
    receive never -> ok after 30000 -> ok end,
    gen_tcp:close(S);
after_auth(S, {reset_after_auth, TestPid}) ->
    TestPid ! {fake_login, waiting, self()},
    receive go -> ok after 10000 -> ok end,
    ok = gen_tcp:send(S, auth_result(0, 1, 3)),
    ok = inet:setopts(S, [{linger, {true, 0}}]),
    gen_tcp:close(S).

drain(S) ->
    case recv(S) of
        {ok, _} -> drain(S);
        _ -> gen_tcp:close(S)
    end.

answer_until(S, Until) ->
    case Until - erlang:monotonic_time(millisecond) of
        Left when Left > 0 ->
            case gen_tcp:recv(S, 0, Left) of
                {ok, <<16#0004:16, Ts:64, _/binary>>} ->
                    _ = gen_tcp:send(S, <<16#8004:16, Ts:64>>),
                    answer_until(S, Until);
                {ok, _} -> answer_until(S, Until);
                {error, timeout} -> gen_tcp:close(S);
                _ -> gen_tcp:close(S)
            end;
        _ -> gen_tcp:close(S)
    end.

answer(S) ->
    case recv(S) of
        {ok, <<16#0004:16, Ts:64, _/binary>>} ->
            _ = gen_tcp:send(S, <<16#8004:16, Ts:64>>),
            answer(S);
        {ok, _} -> answer(S);
        _ -> gen_tcp:close(S)
    end.
