"""The gate's failures grouped for a reader: `python -m hostile.summary REPORT.jsonl` (run by .ci/hostile.sh).

One line per database, operation and kind of problem, with the number of inputs, one example input, and the
traceback's last line from the server's log where there is one."""

import json
import sys
from collections import defaultdict
from typing import Any


def kind_of(problem: str) -> str:
    """A problem without the part that differs from one input to the next (what was accepted, the body shown)."""
    return problem.split(":")[0] if problem.startswith(("accepted", "not the error envelope")) else problem


def main(path: str) -> int:
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    with open(path) as report:
        for line in report:
            failure = json.loads(line)
            for problem in failure["problems"]:
                groups[(failure["database"], failure["operation"], kind_of(problem))].append(failure)
    for (database, operation, problem), failures in sorted(groups.items()):
        example = failures[0]
        log = next((failure["log"][0] for failure in failures if failure["log"]), "")
        print(f"[{database}] {operation} — {problem} — {len(failures)} inputs, e.g. {example['input'][:90]}"
              + (f"\n      log: {log[:240]}" if log else ""))
    print(f"{sum(len(failures) for failures in groups.values())} problems in {len(groups)} groups")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
