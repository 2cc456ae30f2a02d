"""Environment figures: image size, warm rebuild after editing a lab, `docker run` to JupyterLab
ready, and training throughput in the container against the same lock natively."""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from dllab import containers, variants
from dllab.variants import ROOT

GOALS = {"cpu": 2.3e9, "cuda": 8e9}


def sh(*cmd: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kwargs)


def image_size(image: str) -> int:
    return int(sh("docker", "image", "inspect", "--format", "{{.Size}}", image).stdout)


def warm_rebuild(variant: variants.Variant, revision: str) -> float:
    """Seconds to rebuild after editing a lab, in a copy of the tree (yours is not touched).

    The copy is built once as it is (bringing the cache up to date, untimed), then a lab is
    edited and the build timed.
    """
    platform = variant.platforms[0]
    offline = bool(
        sh("docker", "images", "-q", containers.wheels_image(variant, platform)).stdout.strip()
    )
    tag = f"{variant.image}-rebuild-bench"
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "tree"
        shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(
            ".git", ".venv*", "wheelhouse", "work", "runs", ".bench", "__pycache__"))  # fmt: skip
        cmd = containers.build_command(
            variant, platform, revision, offline,
            dockerfile=copy / "docker" / "Dockerfile", context=copy, tags=(tag,),
        )  # fmt: skip
        sh(*cmd)
        with (copy / "labs" / "README.md").open("a") as lab:
            lab.write("\n<!-- edited to time a warm rebuild -->\n")
        start = time.perf_counter()
        sh(*cmd)
        seconds = time.perf_counter() - start
    sh("docker", "rmi", tag)
    return seconds


def run_to_ready(image: str, repeats: int = 5) -> list[float]:
    """Seconds from `docker run` to JupyterLab answering its API, `repeats` times."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        container = sh(
            "docker",
            "run",
            "--detach",
            "--rm",
            "--publish",
            "127.0.0.1::8888",
            "--env",
            "JUPYTER_TOKEN=bench",
            image,
        ).stdout.strip()
        try:
            port = sh("docker", "port", container, "8888").stdout.split(":")[-1].strip()
            while time.perf_counter() - start < 120:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/api", timeout=1)
                    break
                except OSError:
                    time.sleep(0.02)
            times.append(time.perf_counter() - start)
        finally:
            sh("docker", "rm", "--force", container)
    return times


def throughput(python: list[str]) -> float:
    """Median samples/s of torch's MLP through `dllab bench`, run by `python` (native or container)."""
    out = sh(*python, "-m", "dllab", "bench", "--quick", "--only", "torch", "--print-json").stdout
    report = json.loads(out[out.index("{") :])
    [torch] = [r for r in report["results"] if r["target"] == "torch"]
    return torch["mlp"]["median"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dllab.envbench", description=__doc__)
    parser.add_argument(
        "--variant", action="append", help="image variant (repeatable; default cpu)"
    )
    parser.add_argument("--revision", default="bench")
    parser.add_argument("--out", type=Path, default=ROOT / ".bench" / "environment.json")
    args = parser.parse_args(argv)
    figures = {}
    for name in args.variant or ["cpu"]:
        variant = variants.get(name)
        print(f"measuring {variant.image}", file=sys.stderr)
        size = image_size(variant.image)
        row: dict[str, object] = {"image_bytes": size, "goal_bytes": GOALS.get(name)}
        row["warm_rebuild_s"] = round(warm_rebuild(variant, args.revision), 2)
        ready = run_to_ready(variant.image)
        row["run_to_ready_s"] = {
            "median": round(statistics.median(ready), 2),
            "all": [round(t, 2) for t in ready],
        }
        if variant.accelerator == "cpu":
            native = throughput([sys.executable])
            container = throughput(["docker", "run", "--rm", variant.image, "python"])
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
