#!/usr/bin/env bash
# End-to-end browser test of the admin console: Playwright (Python) drives Debian's Chromium against gunicorn with
# DEBUG off (aitbc_site/tests/test_browser.py). Runs on its own (`bash .ci/browser.sh`) or as a step of .ci/run.
# The browser always comes from apt; Playwright's own browser download (`playwright install`) is never used.
set -euo pipefail

cd "$(dirname "$0")/.."

if [[ ! -x /usr/bin/chromium ]]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi

# requirements-dev.txt pins playwright; a no-op when the virtualenv is already up to date.
make --no-print-directory setup-dev

# The test skips itself when Playwright or Chromium is missing, so `make test` passes on any machine. Here a skip (or
# no browser test at all) is a failure.
report=$(mktemp)
trap 'rm -f "$report"' EXIT
status=0
.venv/bin/pytest -q -rs -m browser 2>&1 | tee "$report" || status=$?
if [[ $status -ne 0 ]]; then
    exit "$status"
fi
if grep -q "skipped" "$report" || ! grep -qE "[0-9]+ passed" "$report"; then
    echo "The browser test did not run; see the skip reason above." >&2
    exit 1
fi
