"""Hub figures for BENCHMARKS.md ("JupyterHub for a class"): `python -m tests.hub.measure [--max-users 10]`.

Against a real engine and dllab:cpu: a plain `docker run` of the lab to its API answering (the
baseline), spawn-to-ready per user cold (new user: volume made, labs copied) and warm (the same
user's server restarted), then users added one at a time, each running a TensorFlow and a PyTorch
training step in a kernel that stays alive, until a spawn fails, takes over 60 s, or --max-users;
at each step the hub API's latency. Its own names (dllab-hubbench-*), all removed at the end.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from dllab import containers, envbench, runner, variants
from dllab import hub as dllab_hub
from dllab.containers import any_free_port
from dllab.errors import Parser
from dllab.variants import ROOT
from tests.hub.client import TENSORFLOW_STEP, TORCH_STEP, Hub, as_instance, hub_env, train

INSTANCE = "hubbench"  # the bench's own hub: never yours, never the tests'


def latency(hub: Hub, n: int = 20) -> dict:
    """The hub API under load: GET /hub/api/users (every user's servers), n times."""
    samples = []
    for _ in range(n):
        began = time.monotonic()
        assert hub.api("GET", "/users").ok
        samples.append((time.monotonic() - began) * 1000)
    samples.sort()
    return {"median_ms": statistics.median(samples), "p95_ms": samples[int(0.95 * (n - 1))]}


def memory_mib() -> dict[str, float]:
    """Each of the bench hub's learner containers: its memory in MiB, from `docker stats`."""
    run = runner.Runner()
    with as_instance(INSTANCE):
        ids = run(containers.list_command(["--filter", "status=running", *dllab_hub.filters()])).out.split()  # fmt: skip
    if not ids:  # `docker stats` with no names would report every container
        return {}
    found = {}
    for line in run(containers.stats_command(ids)).out.splitlines():
        name, used = line.split()[:2]
        value = float(used[:-3]) * (1024 if used.endswith("GiB") else 1)
        found[name] = round(value)
    return found


def all_train_at_once(hub: Hub, servers: dict) -> float:
    """Every user's kernel runs the PyTorch step at the same moment: wall seconds."""
    errors = []

    def one(server, kernel):
        try:
            train(server, kernel, TORCH_STEP)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=one, args=sk) for sk in servers.values()]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return time.monotonic() - began


def main() -> int:
    p = Parser(prog="python -m tests.hub.measure")
    p.add_argument("--max-users", type=int, default=10)
    p.add_argument("--runs", type=int, default=3, help="baseline runs, and cold and warm spawns")
    p.add_argument("--out", default=str(ROOT / ".bench" / "hub.json"))
    args = p.parse_args()
    results: dict = {"cpus": os.cpu_count()}
    results["baseline_s"] = envbench.run_to_ready(runner.Runner(), variants.get("cpu"), args.runs)
    print("baseline (docker run -> /api):", results["baseline_s"], flush=True)

    state = Path(tempfile.mkdtemp(prefix="dllab-hubbench-"))
    hub = Hub(any_free_port(), state, hub_env(state, INSTANCE))
    began = time.monotonic()
    started = hub.start()
    assert started.returncode == 0, started.stderr
    results["hub_start_s"] = time.monotonic() - began
    try:
        cold, warm = [], []
        names = [f"cold{i}" for i in range(1, args.runs + 1)]
        for name in names:
            hub.create_user(name)
            cold.append(hub.spawn(name))
        for name in names:
            hub.stop_server(name)
            warm.append(hub.spawn(name))
            hub.stop_server(name)
        results["spawn_cold_s"], results["spawn_warm_s"] = cold, warm
        print("spawn cold:", cold, "warm:", warm, flush=True)

        steps, servers = [], {}
        for i in range(1, args.max_users + 1):
            name = f"user{i:02d}"
            token = hub.create_user(name)
            step = {"users": i}
            try:
                step["spawn_s"] = hub.spawn(name, timeout=60)
            except AssertionError as exc:
                step["failed"] = str(exc).splitlines()[0]
                steps.append(step)
                break
            server = hub.server(name, token)
            kernel = server.start_kernel()
            t0 = time.monotonic()
            train(server, kernel, TENSORFLOW_STEP)
            train(server, kernel, TORCH_STEP)
            step["train_s"] = time.monotonic() - t0
            servers[name] = (server, kernel)
            step["hub_api"] = latency(hub)
            t0 = time.monotonic()
            assert server.get("/api/status").ok
            step["server_api_ms"] = (time.monotonic() - t0) * 1000
            steps.append(step)
            print(json.dumps(step), flush=True)
            if step["spawn_s"] > 60:
                break
        results["steps"] = steps
        results["memory_mib"] = memory_mib()
        results["all_train_at_once_s"] = all_train_at_once(hub, servers) if servers else None
        results["hub_api_after"] = latency(hub)
        print("all at once:", results["all_train_at_once_s"], flush=True)
    finally:
        hub.cli("stop")
        hub.cli("remove-volumes", "--yes")
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
