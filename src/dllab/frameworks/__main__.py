"""Child process entry: `python -m dllab.frameworks probe|train|bench TARGET [ARGS]` prints one JSON line."""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any, cast

from dllab.frameworks import RESULT, Target
from dllab.frameworks.plugin import Plugin

if TYPE_CHECKING:  # every plugin module is a Plugin: mypy holds each against the Protocol
    from dllab.frameworks import jax, keras, tensorflow, torch

    _PLUGINS: tuple[Plugin, ...] = (jax, keras, tensorflow, torch)


def main(argv: list[str]) -> int:
    action, name, *rest = argv
    target = Target.parse(name)
    plugin = cast(Plugin, importlib.import_module(f"dllab.frameworks.{target.framework}"))
    start = time.perf_counter()
    result: dict[str, Any]
    try:
        result = dict(getattr(plugin, action)(*rest))
        result["error"] = None
    except Exception as exc:  # reported to the parent as data, never as a traceback
        last = traceback.format_exception_only(exc)[-1].strip()
        result = {"error": last}
    result.update(target=target.name, seconds=round(time.perf_counter() - start, 3))
    print(RESULT + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
