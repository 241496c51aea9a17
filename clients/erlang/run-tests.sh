#!/usr/bin/env bash
# Compiles the Erlang client and runs its eunit tests against the login-node binary.
#   clients/erlang/run-tests.sh [path/to/login-node]   (default: target/debug/login-node)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$(realpath "${1:-$here/../../target/debug/login-node}")
[ -x "$bin" ] || { echo "no login-node binary at $bin (cargo build first)" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# The behaviour first: the test handler declares it.
erlc -Wall -Werror -o "$out" "$here"/src/login_client_handler.erl
erlc -Wall -Werror -pa "$out" -o "$out" "$here"/src/*.erl "$here"/test/*.erl
LOGIN_NODE_BIN="$bin" erl -noshell -pa "$out" -eval '
    case eunit:test([login_client_tests, login_client_fake_tests], [verbose]) of
        ok -> halt(0);
        _ -> halt(1)
    end.'
