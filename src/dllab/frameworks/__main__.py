"""Child process entry: `python -m dllab.frameworks probe|train|bench TARGET [ARGS]` prints one JSON line."""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback

from dllab.frameworks import Target


def main(argv: list[str]) -> int:
    action, name, *rest = argv
    target = Target.parse(name)
    module = importlib.import_module(f"dllab.frameworks.{target.framework}")
    start = time.perf_counter()
    try:
        result = getattr(module, action)(*rest)
        result["error"] = None
    except Exception as exc:  # reported to the parent as data, never as a traceback
        last = traceback.format_exception_only(exc)[-1].strip()
        result = {"error": last}
    result.update(target=target.name, seconds=round(time.perf_counter() - start, 3))
    print("DLLAB-RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
