#!/usr/bin/env bash
# Interoperability gate (issue 16): the original AITBC project's command-line tools (miner.py, client.py,
# client_enhanced.py from ../shared/reference-tools, unmodified) against a live gunicorn server, through
# aitbc_site/tests/test_reference_tools.py: once on SQLite, once on PostgreSQL with Redis. The suite runs the same
# module on SQLite too, where it skips itself when the tools are absent; here a skip (tools not found) is a failure.
# Runs on its own (`bash .ci/reference-tools.sh`) or as one step of .ci/run.
#
# Tunables (environment): AITBC_REFERENCE_TOOLS (the tools' directory, default ../shared/reference-tools),
# REFERENCE_TOOLS_DATABASES (default "sqlite postgres").
set -euo pipefail

cd "$(dirname "$0")/.."

# requirements-dev.txt pins pyyaml and tabulate, which client_enhanced.py imports.
make --no-print-directory setup-dev

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
failed=0

for database in ${REFERENCE_TOOLS_DATABASES:-sqlite postgres}; do
    printf '\n--- reference tools on %s ---\n' "$database"
    if [[ $database == postgres ]]; then
        # Redis database 13: the suite uses 15, the hostile-input gate 14, the operations tests 11 and 12. The live
        # server gets its own PostgreSQL database (conftest.live_database_url) on the server this URL names.
        redis-cli -h 127.0.0.1 -p 6379 -n 13 flushdb >/dev/null
        settings=(DATABASE_URL=postgres://postgres@127.0.0.1:5432/aitbc_reference_tools
                  REDIS_URL=redis://127.0.0.1:6379/13)
    else
        # The embedded default: a SQLite file and the disk cache, whatever the calling shell exports.
        settings=(-u DATABASE_URL -u REDIS_URL)
    fi
    junit=$WORK/$database.xml
    status=0
    env "${settings[@]}" .venv/bin/pytest -q -rs -p no:logging --junitxml="$junit" \
        aitbc_site/tests/test_reference_tools.py || status=$?
    [[ $status -eq 0 ]] || failed=1
    # pytest passes with skipped tests; here a skip means the tools were not run at all.
    if ! .venv/bin/python - "$junit" <<'PY'
import sys
import xml.etree.ElementTree as ElementTree

suite = ElementTree.parse(sys.argv[1]).getroot()
suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
tests, skipped = int(suite.get("tests")), int(suite.get("skipped"))
if tests < 1 or skipped:
    sys.exit(f"reference tools: {tests} test(s) ran, {skipped} skipped; the tools must run here")
PY
    then
        failed=1
    fi
done
exit "$failed"
