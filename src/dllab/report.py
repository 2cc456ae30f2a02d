"""A bench run's report: the JSON files, the PNG chart, and the Markdown table for BENCHMARKS.md."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any


def save(report: dict[str, Any], out: Path) -> Path:
    """Write OUT/bench-<host>-<accelerator>-<timestamp>.json and .png, and OUT/latest.json."""
    out.mkdir(parents=True, exist_ok=True)
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", report["host"])
    stamp = report["date"].replace("-", "").replace(":", "").removesuffix("+0000") + "Z"
    stem = f"bench-{host}-{report['accelerator']}-{stamp}"
    try:
        chart(report, out / f"{stem}.png")
        report["chart"] = f"{stem}.png"
    except ImportError:  # matplotlib comes with the lab extra; the numbers do not need it
        report["chart"] = None
    text = json.dumps(report, indent=2) + "\n"
    (out / f"{stem}.json").write_text(text)
    (out / "latest.json").write_text(text)
    return out / f"{stem}.json"


def chart(report: dict[str, Any], path: Path) -> None:
    """Save the run's figure as a PNG."""
    import matplotlib.pyplot as plt

    fig = figure(report)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def figure(report: dict[str, Any]):
    """Bars of MLP and CNN samples/s per framework, and matmul GFLOP/s per dtype with its % of peak."""
    import matplotlib

    matplotlib.use("Agg")  # no display: also inside containers and CI
    import matplotlib.pyplot as plt

    rows = [r for r in report["results"] if r.get("installed") and not r.get("error")]
    names = [r["target"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    for ax, key in zip(axes, ("mlp", "cnn"), strict=False):
        median = [r[key]["median"] for r in rows]
        spread = [
            [m - r[key]["min"] for m, r in zip(median, rows, strict=True)],
            [r[key]["max"] - m for m, r in zip(median, rows, strict=True)],
        ]
        ax.bar(names, median, yerr=spread, capsize=3, color="tab:blue")
        ax.set_title(f"{key.upper()} training, samples/s (median, min-max)")
    ax = axes[2]
    dtypes = report["settings"]["dtypes"]
    width = 0.8 / len(dtypes)
    for i, dtype in enumerate(dtypes):
        # Every dtype measured gets its bar in FLOP/s, whether or not its peak is known (a
        # CPU's bfloat16 often has none): the % of peak, where known, is written on the bar.
        entries = [r["matmul"].get(dtype, {}) for r in rows]
        bars = ax.bar(
            [x + i * width for x in range(len(rows))],
            [e.get("max", 0) / 1e9 for e in entries],
            width,
            label=dtype,
        )
        labels = [
            f"{100 * e['peak_fraction']:.0f}%" if e.get("peak_fraction") else "" for e in entries
        ]
        ax.bar_label(bars, labels, fontsize=7, rotation=90, padding=2)
    ax.set_yscale("log")  # float32 and bfloat16 on a GPU differ by 10x or more
    ax.set_xticks([x + width * (len(dtypes) - 1) / 2 for x in range(len(rows))], names)
    ax.set_title(f"matmul n={report['settings']['n']}, GFLOP/s (best repeat; label: % of peak)")
    ax.legend()
    for ax in axes:
        ax.tick_params(axis="x", rotation=30)
    fig.suptitle(
        f"{report['device']['name']} ({report['accelerator']}), {report['platform']}, "
        f"{'container' if report['in_container'] else 'native'}, {report['date']}"
    )
    fig.tight_layout()
    return fig


def _num(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def markdown(results: dict[str, Any]) -> str:
    """The run as Markdown for BENCHMARKS.md: the device and its peak, then one row per target."""
    dtypes = results["settings"]["dtypes"]
    device, peak = results["device"], results["device"]["peak"]
    where = "container" if results.get("in_container") else "native"
    load = results.get("load_average_before")
    peaks = ", ".join(
        f"{d} {_num(f / 1e9)} GFLOP/s" for d, f in peak["flops"].items() if f and d in dtypes
    )
    lines = [
        f"**{device['name'] or 'unknown device'}** ({results['accelerator']}; {results['platform']}, {where}, "
        f"variant {results.get('variant') or 'unset'}), {results['date']}, "
        f"`{results.get('command', 'dllab bench')}`"
        + (f", load average before: {load[0]:.1f}" if load else ""),
        "",
        f"Peak: {peaks or 'unknown'} ({peak['source']}"
        + "".join(f"; {a}" for a in peak.get("assumptions", []))
        + ").",
        "",
    ]
    header = ["Framework", "Version"]
    for dtype in dtypes:
        header += [f"matmul {dtype} GFLOP/s (best)", "% peak"]
    header += ["MLP samples/s", "CNN samples/s", "import s", "first step s (MLP / CNN)"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    notes = []
    for r in results["results"]:
        version = r.get("version", "—")
        if r.get("backend_version"):
            version += f" ({r['backend']} {r['backend_version']})"
        if not r.get("installed"):
            row = [r["target"], "not installed"] + ["—"] * (len(header) - 2)
        elif r.get("error"):
            row = [r["target"], version] + ["—"] * (len(header) - 2)
            notes.append(f"- {r['target']}: {r['error']}")
        else:
            row = [r["target"], version]
            for dtype in dtypes:
                entry = r["matmul"].get(dtype, {})
                if "error" in entry:
                    notes.append(f"- {r['target']} matmul {dtype}: {entry['error']}")
                fraction = entry.get("peak_fraction")
                row += [
                    _num(entry["max"] / 1e9) if "max" in entry else "—",
                    f"{100 * fraction:.0f}%" if fraction else "—",
                ]
            row += [
                f"{_num(r[k]['median'])} ({_num(r[k]['min'])}–{_num(r[k]['max'])})"
                for k in ("mlp", "cnn")
            ]
            row += [
                f"{r['import_s']:.2f}",
                f"{r['mlp']['first_s']:.2f} / {r['cnn']['first_s']:.2f}",
            ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines + ([""] + notes if notes else []))
