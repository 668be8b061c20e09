#!/usr/bin/env bash
# The example suite against the live Gemma 3 270M, served by llama.cpp on 127.0.0.1:8080,
# re-recording its answers in example_suite/llmeval-cache/ (review them with git diff).
# Installs what it needs (first run: builds llama.cpp, about 5 minutes), starts the
# server, runs the suite, stops the server. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

python3 -m pip install -q -e .
python3 example_suite/local_model.py install

log=$(mktemp)
python3 example_suite/local_model.py serve --port 8080 >"$log" 2>&1 &
server=$!
stop_server() {
    local status=$?  # pytest's: the gate's decision is this script's exit status
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true  # its SIGTERM status must not replace pytest's
    rm -f "$log"
    exit "$status"
}
trap stop_server EXIT
if ! python3 example_suite/local_model.py wait --port 8080 --timeout 180; then
    cat "$log" >&2
    exit 1
fi
python3 -m pytest example_suite --llm-record=all "$@"
