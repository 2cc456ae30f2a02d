"""Environment figures: image size, warm rebuild after editing a lab, `docker run` to JupyterLab
ready, and training throughput in the container against the same lock natively."""

from __future__ import annotations

import json
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from dllab import containers, private, variants
from dllab.containers import Owner
from dllab.errors import Parser
from dllab.runner import Runner
from dllab.variants import ROOT

GOALS = {"cpu": 2.3e9, "cuda": 8e9}


def image_size(run: Runner, image: str) -> int:
    return int(run.checked(containers.image_inspect_command(image, "{{.Size}}")))


def warm_rebuild(run: Runner, variant: variants.Variant, revision: str) -> float:
    """Seconds to rebuild after editing a lab, in a copy of the tree (yours is not touched).

    The copy is built once as it is (bringing the cache up to date, untimed), then a lab is
    edited and the build timed.
    """
    platform = variant.platforms[0]
    offline = containers.image_exists(containers.wheels_image(variant, platform), run)
    tag = f"{variant.image}-rebuild-bench"
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "tree"
        shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(
            ".git", ".venv*", "wheelhouse", "work", "runs", ".bench", "__pycache__"))  # fmt: skip
        cmd = containers.build_command(
            variant, platform, revision, offline,
            dockerfile=copy / "docker" / "Dockerfile", context=copy, tags=(tag,),
        )  # fmt: skip
        run.checked(cmd)
        with (copy / "labs" / "README.md").open("a") as lab:
            lab.write("\n<!-- edited to time a warm rebuild -->\n")
        start = time.perf_counter()
        run.checked(cmd)
        seconds = time.perf_counter() - start
    run.checked(containers.remove_image_command(tag))
    return seconds


def run_to_ready(run: Runner, variant: variants.Variant, repeats: int = 5) -> list[float]:
    """Seconds from `docker run` (as `invoke lab` starts the lab) to JupyterLab answering its API."""
    owner, times = Owner.current(), []
    with tempfile.TemporaryDirectory() as tmp:
        work, token = Path(tmp) / "work", Path(tmp) / "token"
        private.make_folder(work, owner.uid, owner.gid)
        private.write(token, secrets.token_urlsafe(16), owner.uid, owner.gid)
        name = containers.container_name(variant, owner, "bench")
        for _ in range(repeats):
            port = containers.any_free_port()
            start = time.perf_counter()
            run.checked(containers.lab_command(variant, port, work, token, owner, False, role="bench"))  # fmt: skip
            try:
                while time.perf_counter() - start < 120:
                    try:
                        urllib.request.urlopen(f"http://127.0.0.1:{port}/api", timeout=1)
                        break
                    except OSError:
                        time.sleep(0.02)
                times.append(time.perf_counter() - start)
            finally:
                run(containers.remove_command(name))
    return times


def throughput(run: Runner, command: list[str]) -> float:
    """Median samples/s of torch's MLP through `dllab bench`, run by `command` (a python)."""
    out = run.checked([*command, "-m", "dllab", "bench", "--quick", "--only", "torch", "--print-json"])  # fmt: skip
    report = json.loads(out[out.index("{") :])
    [torch] = [r for r in report["results"] if r["target"] == "torch"]
    return torch["mlp"]["median"]


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m dllab.envbench", description=__doc__)
    parser.add_argument(
        "--variant", action="append", help="image variant (repeatable; default cpu)"
    )
    parser.add_argument("--revision", default="bench")
    parser.add_argument("--out", type=Path, default=ROOT / ".bench" / "environment.json")
    args = parser.parse_args(argv)
    run, figures = Runner(), {}
    for name in args.variant or ["cpu"]:
        variant = variants.get(name)
        print(f"measuring {variant.image}", file=sys.stderr)
        row: dict[str, object] = {"image_bytes": image_size(run, variant.image), "goal_bytes": GOALS.get(name)}  # fmt: skip
        row["warm_rebuild_s"] = round(warm_rebuild(run, variant, args.revision), 2)
        ready = run_to_ready(run, variant)
        row["run_to_ready_s"] = {
            "median": round(statistics.median(ready), 2),
            "all": [round(t, 2) for t in ready],
        }
        if variant.accelerator == "cpu":
            native = throughput(run, [sys.executable])
            container = throughput(run, containers.run_command(variant, ["python"]))
            row["container_vs_native"] = {
                "native": native,
                "container": container,
                "ratio": round(container / native, 3),
            }
        figures[name] = row
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
