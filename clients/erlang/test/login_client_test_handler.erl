%% A login_client_handler that forwards every callback to the test process.
-module(login_client_test_handler).
-behaviour(login_client_handler).
-export([init/1, online/2, assigned/2, members/2, status/2, whitelist/2, app/3, offline/2]).

init(TestPid) -> {ok, TestPid}.
online(Interval, P) -> P ! {login, self(), online, Interval}, {ok, P}.
assigned(A, P) -> P ! {login, self(), assigned, A}, {ok, P}.
members(M, P) -> P ! {login, self(), members, M}, {ok, P}.
status(M, P) -> P ! {login, self(), status, M}, {ok, P}.
whitelist(C, P) -> P ! {login, self(), whitelist, C}, {ok, P}.
app(Cmd, Body, P) -> P ! {login, self(), app, {Cmd, Body}}, {ok, P}.
offline(Why, P) -> P ! {login, self(), offline, Why}, {ok, P}.
