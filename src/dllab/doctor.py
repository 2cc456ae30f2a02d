"""`dllab doctor`: what each framework sees here, whether that is the promise, and how to fix it."""

from __future__ import annotations

from dllab import devices, smoke
from dllab.frameworks import Target


def diagnose(expect: str | None = None, train: bool = False) -> dict:
    """The full report: system facts, each framework's view, and problems against `expect`."""
    facts = devices.system()
    expect = expect or facts["accelerator"]
    results = devices.probe_all()
    found = devices.problems(results, expect, facts) if expect else []
    if train and expect:
        for result in results:
            if result.get("installed") and not result.get("error"):
                run = smoke.train(Target.parse(result["target"]), expect)
                result["train"] = run
                found += [f"{result['target']} training: {f}" for f in run["failures"]]
    return {"system": facts, "expect": expect, "frameworks": results, "problems": found}


def render(report: dict) -> str:
    """The report as a table a person reads."""
    facts = report["system"]
    lines = [
        f"dllab doctor: {facts['platform']}, Python {facts['python']}, "
        f"variant {facts['variant'] or '(not set)'}, "
        f"{'in a container' if facts['in_container'] else 'native'}, "
        f"NVIDIA driver {facts['nvidia_driver'] or 'not visible'}",
        "",
    ]
    rows = [("framework", "version", "build", "devices")]
    for r in report["frameworks"]:
        if r.get("error"):
            rows.append((r["target"], r.get("version", "-"), "-", r["error"]))
            continue
        build = ", ".join(f"{k} {v}" for k, v in r["build"].items() if v not in (None, False))
        seen = ", ".join(
            d["kind"] + (f" ({d['model']})" if d.get("model") and d["kind"] != "cpu" else "")
            for d in r["devices"]
        )
        if "train" in r:
            seen += "; trained: " + ("ok" if not r["train"]["failures"] else "FAILED")
        rows.append((r["target"], r["version"], build or "-", seen))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)) + "  " + row[3]
        for row in rows
    ]
    lines.append("")
    if not report["expect"]:
        lines.append("no accelerator expected (set --expect cpu|cuda|mps to check one)")
    elif report["problems"]:
        lines.append(f"NOT OK: expected {report['expect']}:")
        lines += [f"  - {p}" for p in report["problems"]]
    else:
        lines.append(f"OK: every installed framework sees {report['expect']}")
    return "\n".join(lines)
