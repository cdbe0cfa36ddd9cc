#!/usr/bin/env bash
# Instructions per job, counted by callgrind on in-process job cycles (bench/instructions.py): a figure that does not
# drift with the host's speed or load, so two commits can be compared on any machine, even a busy one.
#
#   bench/instructions.sh [--billed] [--dialect original] [--jobs 40]
#
# A job here is its submission, a quarter of a 4-job poll, its result and reading it back. Needs valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=40
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    [[ ${args[i]} == --jobs ]] && jobs=${args[i + 1]}
done

out=$(mktemp -d /tmp/aitbc-callgrind.XXXXXX)
trap 'rm -rf "$out"' EXIT
BENCH_UNDER_CALLGRIND=1 valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out/callgrind.out" \
    .venv/bin/python bench/instructions.py "$@" 2>"$out/valgrind.log"
refs=$(sed -n 's/.*I *refs: *\([0-9,]*\).*/\1/p' "$out/valgrind.log" | tr -d ,)
echo "$(git rev-parse --short HEAD 2>/dev/null || echo '?') $*: $((refs / jobs)) instructions per job ($jobs jobs)"
