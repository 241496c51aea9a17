%% @doc The behaviour a game or cross node implements to hear from the login node.
%%
%% Every callback gets the handler's own state and returns the new one. Callbacks run in the
%% login_client process: keep them short (send a message to your own processes for real work).
-module(login_client_handler).

-callback init(Args :: term()) -> {ok, State :: term()}.

%% Logged in (AUTH_RESULT 0); the INFO was sent and heartbeats run.
-callback online(HeartbeatInterval :: non_neg_integer(), State :: term()) -> {ok, term()}.

%% Game nodes: the cross node to use (CROSS_ASSIGN).
-callback assigned(#{cross_server_id := non_neg_integer(), cross_node_name := binary(),
                     cross_plat := binary(), cross_pos := non_neg_integer()},
                   State :: term()) -> {ok, term()}.

%% Cross nodes: the full member list (CROSS_MEMBERS), [{ServId, ServName, CrossPos}].
-callback members([{non_neg_integer(), binary(), non_neg_integer()}], State :: term()) ->
    {ok, term()}.

%% Game nodes: the maintenance flag (STATUS_PUSH).
-callback status(Maintenance :: boolean(), State :: term()) -> {ok, term()}.

%% Game nodes: the whitelist changed; query it with login_client:is_whitelisted/2.
%% Change is {snapshot, Version, Count} or {add | remove, Version, Entry}.
-callback whitelist(Change :: {snapshot, non_neg_integer(), non_neg_integer()}
                            | {add | remove, non_neg_integer(), binary()},
                    State :: term()) -> {ok, term()}.

%% An application command (16#1000..16#7FFF) from the login node.
-callback app(Cmd :: non_neg_integer(), Body :: binary(), State :: term()) -> {ok, term()}.

%% The connection ended (Reason: {kicked, Code} | {auth_rejected, Code} | closed | term());
%% login_client reconnects after a backoff unless Reason is {kicked, 1}.
-callback offline(Reason :: term(), State :: term()) -> {ok, term()}.
