"""`dllab doctor`: what each framework sees here, whether that is the promise, and how to fix it."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TextIO

from dllab import devices, smoke, variants
from dllab.frameworks import TARGETS, Target


def diagnose(expect: str | None = None, train: bool = False, log: TextIO | None = None) -> dict:
    """The full report: system facts, each framework's view, and problems against `expect`.

    Progress goes to `log` (the command line gives stderr, so that --json output stays clean).
    """
    log = log or io.StringIO()
    facts = devices.system()
    expect = expect or facts["accelerator"]
    print(f"dllab doctor: asking {len(TARGETS)} frameworks what they see ...", file=log, flush=True)
    results = devices.probe_all()
    found = problems(results, expect, facts) if expect else []
    if train and expect:
        for result in results:
            if result.get("installed") and not result.get("error"):
                name = result["target"]
                print(f"dllab doctor: training {name} on {expect} ...", file=log, flush=True)
                run = smoke.train(Target.parse(name), expect)
                result["train"] = run
                found += [f"{name} training: {f}" for f in run["failures"]]
                verdict = "FAILED" if run["failures"] else "ok"
                took = f" ({run['seconds']:.1f} s)" if "seconds" in run else ""
                print(f"dllab doctor: {name}: {verdict}{took}", file=log, flush=True)
    return {"system": facts, "expect": expect, "frameworks": results, "problems": found}


def problems(results: list[dict], expect: str, facts: dict) -> list[str]:
    """One line per target that does not see `expect`, each with how to fix it."""
    promised = (
        variants.VARIANTS[facts["variant"]].frameworks
        if facts.get("variant") in variants.VARIANTS
        else ()
    )
    found = []
    for r in results:
        name = r["target"]
        target = Target.parse(name)
        if not r.get("installed"):
            if all(m in promised for m in target.needs):
                found.append(
                    f"{name}: not installed, but the {facts['variant']} variant promises it: "
                    f"rebuild it (invoke build --variant {facts['variant']})"
                )
            continue
        if r.get("error"):
            found.append(f"{name}: {r['error']}")
            continue
        kinds = {d["kind"] for d in r["devices"]}
        if target.backend:  # Keras must put its tensors there, not merely be able to
            kinds = {r["devices"][0]["kind"]}
        if expect not in kinds:
            found.append(
                f"{name} sees no {expect} (only {', '.join(sorted(kinds))}): "
                + hint(r, expect, facts)
            )
    if not any(r.get("installed") for r in results):  # nothing here can see anything
        found.append(
            "no framework is installed here: they live in the image (invoke doctor --variant cpu), "
            "or install them natively (pip install -e '.[cpu]')"
        )
    return found


def hint(result: dict, expect: str, facts: dict) -> str:
    """How to make the target in `result` see `expect`."""
    target = Target.parse(result["target"])
    framework = target.backend or target.framework
    if target.backend:
        return f"Keras uses {framework}'s devices: fix {framework} first (python -m dllab doctor)"
    return HINTS[expect](framework, result.get("build", {}), facts)


def _variant(accelerator: str) -> variants.Variant:
    """The variant that promises `accelerator`."""
    return next(v for v in variants.VARIANTS.values() if v.accelerator == accelerator)


def _cuda_hint(framework: str, build: dict, facts: dict) -> str:
    cuda_build = build.get("cuda") or (framework == "jax" and build.get("backend") == "gpu")
    if not cuda_build:
        name = _variant("cuda").name
        return f"{framework} is a CPU-only build: use the {name} variant (invoke build --variant {name})"
    if not facts.get("nvidia_driver"):
        return (
            "CUDA build but no NVIDIA driver visible: run the container with --gpus all "
            f"(invoke lab --variant {_variant('cuda').name} does) and install the NVIDIA "
            "Container Toolkit on the host"
        )
    return (
        f"NVIDIA driver {facts['nvidia_driver']} is visible but {framework} sees no GPU: "
        "torch's CUDA 13 build needs driver >= 580, TF's CUDA 12 build >= 525; "
        "check nvidia-smi and CUDA_VISIBLE_DEVICES"
    )


def _mps_hint(framework: str, build: dict, facts: dict) -> str:
    metal = _variant("mps")
    if facts.get("platform") not in metal.platforms:
        return f"mps exists only on macOS with Apple silicon (this is {facts.get('platform')}): expect cpu or cuda"
    if framework == "tensorflow":
        if not build.get("metal_plugin"):
            return f"tensorflow-metal is not installed: create the {metal.name} environment (environment.yml)"
        return (
            f"tensorflow-metal {build['metal_plugin']} did not load: it needs tensorflow 2.18.x "
            "(as pinned in environment.yml)"
        )
    if framework == "torch":
        return "torch sees no MPS: it needs macOS >= 14 and an arm64 Python (not one under Rosetta)"
    return f"{framework} has no Metal backend in dllab: the {metal.name} variant does not ship it"


def _cpu_hint(framework: str, build: dict, facts: dict) -> str:
    return f"{framework} sees no CPU, which should not happen: reinstall it"


# How to fix a framework that does not see each accelerator: (framework, its build, facts) -> hint.
HINTS: dict[str, Callable[[str, dict, dict], str]] = {
    "cpu": _cpu_hint,
    "cuda": _cuda_hint,
    "mps": _mps_hint,
}


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
    if facts.get("variant") in variants.TORCH_BY_PLATFORM:  # one torch per platform: say which
        builds, why = variants.TORCH_BY_PLATFORM[facts["variant"]]
        each = ", ".join(f"{p} {v}" for p, v in builds.items())
        lines.append(f"torch in the {facts['variant']} variant: {each} ({why})")
    if not report["expect"]:
        lines.append("no accelerator expected (set --expect cpu|cuda|mps to check one)")
    elif report["problems"]:
        lines.append(f"NOT OK: expected {report['expect']}:")
        lines += [f"  - {p}" for p in report["problems"]]
    else:
        lines.append(f"OK: every installed framework sees {report['expect']}")
    return "\n".join(lines)
