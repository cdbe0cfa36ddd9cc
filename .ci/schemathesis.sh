#!/usr/bin/env bash
# Property-based API test: schemathesis generates requests from the live server's own /openapi.json, for every
# operation, and fails on any 5xx and on any response the schema does not describe (status, content type, headers,
# body). Runs on its own (`bash .ci/schemathesis.sh`) or as one step of .ci/run.
#
# Tunables (environment): SCHEMATHESIS_MAX_EXAMPLES (per operation and phase, default 100), SCHEMATHESIS_SEED (replay
# a run with the seed printed at the end of an earlier one), SCHEMATHESIS_PORT (default: a free port).
set -euo pipefail

cd "$(dirname "$0")/.."

# The dev requirements include schemathesis; a no-op when the virtualenv is already up to date.
make --no-print-directory setup-dev

PY=.venv/bin/python
WORK=$(mktemp -d)
SERVER_PID=""

stop_server() {
    local rc=$?
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        # TERM lets gunicorn's arbiter stop its workers; then wait so the port is free when we return.
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    # Server errors are only understood with the traceback, which is in the server's log, not in schemathesis' report.
    if [[ $rc -ne 0 && -f "$WORK/gunicorn.log" ]]; then
        echo "--- gunicorn log (errors and tracebacks) ---"
        # Without the routine lines (INFO, one django.request WARNING per 4xx), plain or JSON; the first errors first.
        grep -v -E '\[INFO\]|"level": "INFO"|WARNING.*django\.request|django\.request.*WARNING' "$WORK/gunicorn.log" \
            | head -n 400 || true
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap stop_server EXIT

FREE_PORT='import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
PORT=${SCHEMATHESIS_PORT:-$($PY -c "$FREE_PORT")}
API_KEY="ci-schemathesis-$($PY -c 'import secrets; print(secrets.token_urlsafe(16))')"

# A fresh SQLite file, rate-limit cache (no Redis) and metrics directory per run, so no earlier run's state changes
# what the server answers; otherwise the server's own settings, as `make run` starts it (2 workers with threads,
# DEBUG off). Maintenance off: no background writer competing with the fuzzer. Receipts signed with a throw-away key.
export SECRET_KEY="ci-schemathesis-not-secret"
export DATABASE_URL="sqlite:///$WORK/coordinator.db"
export RECEIPT_SIGNING_KEY_FILE="$WORK/receipt-signing.key"
export CACHE_DIR="$WORK/cache"
unset REDIS_URL
export API_KEYS="$API_KEY"
export API_HOST=127.0.0.1
export API_PORT="$PORT"
export WEB_CONCURRENCY=2
# Waits and streams end within seconds, so thousands of generated requests finish (their wait caps still apply).
export LONG_POLL_MAX_SECONDS=1 STREAM_MAX_SECONDS=2 STREAM_KEEPALIVE_SECONDS=1
export MAINTENANCE_INTERVAL_SECONDS=0
export DEBUG=false
# Rate limits far above what the fuzzer sends: every request should reach the code under test, not a 429.
export RATE_LIMIT_CLIENT=1000000/s RATE_LIMIT_MINER=1000000/s RATE_LIMIT_USER=1000000/s RATE_LIMIT_LOGIN=1000000/s
export RATE_LIMIT_EXPLORER=1000000/s
# The exchange configured, so the fuzzer reaches its code rather than the 503 of a disabled exchange: BIP 84's
# published testnet account key (no one's funds), payments checked by hand (no block explorer to contact).
export BITCOIN_XPUB="vpub5Y6cjg78GGuNLsaPhmYsiw4gYX3HoQiRBiSwDaBXKUafCt9bNwWQiitDk5VZ5BVxYnQdwoTyXSs2JHRPAgjAvtbBrf8ZhDYe2jWAqvZVnsc"
export BITCOIN_BACKEND=manual

$PY manage.py migrate --no-input --verbosity 0

# No control socket: its path is shared per user, and this throw-away server must not take over a developer's. The
# metrics directory is the server's alone (gunicorn's on_starting creates it; manage.py must not look for it).
PROMETHEUS_MULTIPROC_DIR="$WORK/prometheus" \
    .venv/bin/gunicorn -c deploy/gunicorn.conf.py --no-control-socket aitbc_site.wsgi:application \
    >"$WORK/gunicorn.log" 2>&1 &
SERVER_PID=$!

# Wait for the server to answer (at most 30 s); fail early, with its log, if it died at start or never answered.
for attempt in $(seq 60); do
    if $PY -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$PORT/health', timeout=1)" 2>/dev/null; then
        break
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "gunicorn exited at start"; exit 1; }
    [[ $attempt -lt 60 ]] || { echo "gunicorn did not answer /health within 30 s"; exit 1; }
    sleep 0.5
done

# Two wallet sessions for the /v1/users endpoints, made the way a wallet makes them (challenge, personal_sign, login)
# with a throw-away key: one for every operation, one for the logout operation, which revokes the token it is sent with.
wallet_session() {
    $PY - "http://127.0.0.1:$PORT" <<'PYTHON'
import json
import sys
import urllib.request

from eth_account import Account
from eth_account.messages import encode_defunct


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


base, wallet = sys.argv[1], Account.create()
challenge = post(f"{base}/v1/users/challenge", {"address": wallet.address})
signature = wallet.sign_message(encode_defunct(text=challenge["message"])).signature.hex()
signature = "0x" + signature.removeprefix("0x")
login = post(f"{base}/v1/users/login", {"address": wallet.address, "nonce": challenge["nonce"], "signature": signature})
print(login["token"])
PYTHON
}
export SCHEMATHESIS_API_KEY="$API_KEY"
SCHEMATHESIS_SESSION_TOKEN=$(wallet_session)
SCHEMATHESIS_LOGOUT_SESSION_TOKEN=$(wallet_session)
export SCHEMATHESIS_SESSION_TOKEN SCHEMATHESIS_LOGOUT_SESSION_TOKEN

# Every operation of the schema as the server publishes it, all phases (examples, coverage, fuzzing, stateful),
# positive and negative data; headers and checks are in .ci/schemathesis.toml. Bounded by --max-examples so the run
# takes a few minutes on 2 cores. One worker: with two threads, hypothesis' ast.parse calls now and then fail inside
# CPython 3.11 ("SystemError: AST constructor recursion depth mismatch"), a failed run that says nothing about the
# server.
SEED_ARGS=()
if [[ -n "${SCHEMATHESIS_SEED:-}" ]]; then
    SEED_ARGS=(--seed "$SCHEMATHESIS_SEED")
fi
# Two runs, the API-key routes and then the wallet's (users, exchange), because each sends one credential header
# (.ci/schemathesis.toml) and schemathesis keeps the headers of the first operation a worker tests on its session
# for all the others: in one run, the wallet's routes would carry the key too, two different credentials
# (400 AMBIGUOUS_CREDENTIALS) that stop them at authentication.
WALLET_ROUTES='^/v1/(users|exchange)/'
for selection in --exclude-path-regex --include-path-regex; do
    .venv/bin/schemathesis --config-file .ci/schemathesis.toml run "http://127.0.0.1:$PORT/openapi.json" \
        "$selection" "$WALLET_ROUTES" \
        --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-100}" \
        --workers 1 \
        --request-timeout 30 \
        --generation-database none \
        --no-color \
        "${SEED_ARGS[@]}"
done
