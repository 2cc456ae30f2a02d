"""`python -m dllab.workers`: N containers train one model together on the frameworks' own engines.

    python -m dllab.workers --variant cpu --workers 2 --framework torch|tensorflow|keras-jax [--epochs 3]

Each worker is a container of `dllab:VARIANT` on a private Docker network made for this run
(`dllab-train-<uid>-<random>`, label `dllab.owner=<uid>`), running the same shipped script,
`python -m dllab.train_worker`, under its framework's own launcher: torchrun + DDP, TF_CONFIG +
MultiWorkerMirroredStrategy, or `keras.distribution.initialize` + DataParallel on JAX. One
worker (`--workers 1`) is a plain single process. It prints each worker's rank, final loss and
weight digest, then `workers agree` or what differs. The containers and the network are removed
at the end, on Ctrl-C and when a worker fails (the others are stopped, the exit code is 1 and
the failing worker's last lines are shown).

Every command is an argument list made by the pure functions below (`network_command`,
`worker_command`, ...), so tests and `--dry-run`-style callers can read them without an engine.
Exit codes: 0 the workers agree, 1 a worker failed or the workers differ, 2 bad input or a
missing engine/image (one `dllab: ...` line), 130 interrupted.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

from dllab import containers, variants
from dllab.errors import UserError, report

FRAMEWORKS = ("torch", "tensorflow", "keras-jax")
MAX_WORKERS = 64
OWNER_LABEL = "dllab.owner"
RUN_LABEL = "dllab.run"
RESULT_PREFIX = "DLLAB_RESULT "  # the last line train_worker prints
TORCH_PORT = 29500
TF_PORT = 2222
JAX_PORT = 1234
FALLBACK_USER = (1000, 1000)  # the image's `lab` user, when the caller is root
LAST_LINES = 15


@dataclass(frozen=True)
class Plan:
    """One run: what to start, where, as whom. Everything the command builders need."""

    variant: str
    framework: str
    workers: int
    epochs: int
    image: str
    network: str  # also the run id, and the prefix of every container name
    uid: int
    gid: int
    gpus: int = 0  # GPUs given to the run: one per worker when > 0 (cuda + NVIDIA runtime)
    threads: int = 1  # OMP_NUM_THREADS per worker: the host's cores shared out
    extra_env: tuple[tuple[str, str], ...] = ()
    mounts: tuple[str, ...] = ()  # --volume specs (development: a source tree, read-only)
    train_extra: tuple[str, ...] = ()  # more train_worker flags (benchmarks: --hidden, --samples)

    def container(self, rank: int) -> str:
        return f"{self.network}-w{rank}"

    @property
    def owner(self) -> str:
        return str(self.uid)


# --------------------------------------------------------------------------------------------
# Argument lists (pure: no engine needed)


def run_id(uid: int, token: str | None = None) -> str:
    """The network name of a run, also the prefix of its containers: dllab-train-<uid>-<random>."""
    return f"dllab-train-{uid}-{token or secrets.token_hex(3)}"


def container_user(uid: int, gid: int) -> tuple[int, int]:
    """The user the workers run as: the caller's IDs, or the image's lab user if the caller is root."""
    return FALLBACK_USER if uid == 0 else (uid, gid)


def network_command(plan: Plan) -> list[str]:
    """A private bridge for the run: containers resolve each other by name, nothing else joins."""
    return [
        "docker", "network", "create", "--driver", "bridge", "--internal",
        "--label", f"{OWNER_LABEL}={plan.owner}", "--label", f"{RUN_LABEL}={plan.network}",
        plan.network,
    ]  # fmt: skip


def train_args(plan: Plan) -> list[str]:
    return [
        "-m", "dllab.train_worker", "--framework", plan.framework, "--epochs", str(plan.epochs),
        *plan.train_extra,
    ]  # fmt: skip


def launcher(plan: Plan, rank: int) -> tuple[str, list[str], dict[str, str]]:
    """(entrypoint, its arguments, environment) for worker `rank`, per framework's own launcher."""
    n = plan.workers
    if n == 1:  # one plain process: no launcher, no process group
        return "python", train_args(plan), {}
    if plan.framework == "torch":
        # Static rendezvous at worker 0, addressed by name: `--standalone` would hang here.
        return "torchrun", [
            "--nnodes", str(n), "--nproc-per-node", "1", "--node-rank", str(rank),
            "--master-addr", plan.container(0), "--master-port", str(TORCH_PORT),
            "--max-restarts", "0",
            *train_args(plan),  # torchrun -m MODULE ...
        ], {}  # fmt: skip
    if plan.framework == "tensorflow":
        return "python", train_args(plan), {"TF_CONFIG": tf_config(plan, rank)}
    # keras-jax: keras.distribution.initialize() reads these; process 0 coordinates.
    return "python", train_args(plan), {
        "KERAS_DISTRIBUTION_JOB_ADDRESSES": ",".join(f"{plan.container(r)}:{JAX_PORT}" for r in range(n)),
        "KERAS_DISTRIBUTION_NUM_PROCESSES": str(n),
        "KERAS_DISTRIBUTION_PROCESS_ID": str(rank),
    }  # fmt: skip


def tf_config(plan: Plan, rank: int) -> str:
    cluster = {"worker": [f"{plan.container(r)}:{TF_PORT}" for r in range(plan.workers)]}
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": rank}})


def worker_command(plan: Plan, rank: int) -> list[str]:
    """`docker run` for worker `rank`: non-root, no capabilities, on the run's network, labelled."""
    entrypoint, args, env = launcher(plan, rank)
    user = "{}:{}".format(*container_user(plan.uid, plan.gid))
    cmd = [
        "docker", "run", "--name", plan.container(rank), "--hostname", plan.container(rank),
        "--network", plan.network,
        "--label", f"{OWNER_LABEL}={plan.owner}", "--label", f"{RUN_LABEL}={plan.network}",
        "--user", user, *containers.HARDENING,
        # docker's own init as PID 1 forwards signals; the image's start script is not needed.
        "--init", "--entrypoint", entrypoint, "--workdir", "/tmp",
        "--env", "HOME=/tmp", "--env", "PYTHONUNBUFFERED=1", "--env", "TF_CPP_MIN_LOG_LEVEL=2",
        "--env", f"OMP_NUM_THREADS={plan.threads}",
    ]  # fmt: skip
    if plan.gpus:
        # One GPU per worker; inside, it is cuda:0 / GPU:0, and torch picks NCCL.
        cmd += ["--gpus", f"device={rank}", "--shm-size", "1g"]
    else:
        cmd += ["--env", "DLLAB_DEVICE=cpu", "--env", "CUDA_VISIBLE_DEVICES="]
    for key, value in (*env.items(), *plan.extra_env):
        cmd += ["--env", f"{key}={value}"]
    for mount in plan.mounts:
        cmd += ["--volume", mount]
    return [*cmd, plan.image, *args]


def remove_commands(plan: Plan) -> list[list[str]]:
    """What cleans a run up: its containers (by name, forced), then its network."""
    return [
        ["docker", "rm", "--force", *(plan.container(r) for r in range(plan.workers))],
        ["docker", "network", "rm", plan.network],
    ]


def leftovers_command(owner: str, kind: str = "container") -> list[str]:
    """`docker ps -a` / `docker network ls` of what dllab made for `owner` (tests check it is empty)."""
    if kind == "container":
        return ["docker", "ps", "--all", "--quiet", "--filter", f"label={OWNER_LABEL}={owner}"]
    return ["docker", "network", "ls", "--quiet", "--filter", f"label={OWNER_LABEL}={owner}"]


# --------------------------------------------------------------------------------------------
# Results and the verdict


@dataclass
class Outcome:
    rank: int
    container: str
    returncode: int | None = None
    result: dict | None = None
    lines: collections.deque = field(default_factory=lambda: collections.deque(maxlen=200))
    finished_at: str = ""  # docker's State.FinishedAt, to tell who failed first


def parse_result(lines: Sequence[str]) -> dict | None:
    """The JSON of the last `DLLAB_RESULT {...}` line, if any."""
    for line in reversed(lines):
        if line.startswith(RESULT_PREFIX):
            try:
                return json.loads(line[len(RESULT_PREFIX) :])
            except json.JSONDecodeError:
                return None
    return None


def verdict(results: Sequence[dict]) -> tuple[bool, str]:
    """(agree, line): `workers agree` when every worker ends with the same weights and loss."""
    if not results:
        return False, "no worker reported a result"
    first = results[0]
    diffs = []
    for r in results[1:]:
        if r["digest"] != first["digest"]:
            diffs.append(
                f"rank {r['rank']} weights {r['digest']} != rank {first['rank']} {first['digest']}"
            )
        elif r["loss"] != first["loss"]:
            diffs.append(
                f"rank {r['rank']} loss {r['loss']:.9g} != rank {first['rank']} {first['loss']:.9g}"
            )
    if len({r["world"] for r in results}) > 1 or first["world"] != len(results):
        diffs.append(
            f"world sizes {sorted({r['world'] for r in results})} for {len(results)} workers"
        )
    if diffs:
        return False, "workers differ: " + "; ".join(diffs)
    return (
        True,
        f"workers agree: {len(results)} worker{'s' if len(results) > 1 else ''}, weights {first['digest']}",
    )


def worker_line(r: dict) -> str:
    rate = r.get("samples_per_second")
    return (
        f"rank {r['rank']}: loss {r['initial_loss']:.6f} -> {r['loss']:.9f}  weights {r['digest']}"
        f"  |w| {r['norm']:.9f}  {r['engine']} on {r['device']}"
        + (f"  {rate:,.0f} samples/s" if rate else "")
        + f"  start-up {r['startup_seconds']:.1f} s"
    )


def first_failure(outcomes: Sequence[Outcome]) -> Outcome | None:
    """The worker that failed first (by the engine's exit time): the others often fail *because* of it."""
    failed = [o for o in outcomes if o.returncode not in (None, 0)]
    if not failed:
        return None
    return min(failed, key=lambda o: (o.finished_at or "9999", o.rank))


def describe_exit(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code == 137:
        return "exit code 137 (killed)"
    if code == 143:
        return "exit code 143 (terminated)"
    if code < 0:
        return f"signal {-code}"
    return f"exit code {code}"


# --------------------------------------------------------------------------------------------
# Checks (they raise UserError: one line, exit 2)


def parse_workers(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(
            f"expected a whole number from 1 to {MAX_WORKERS}, got {text!r}"
        )
    return n


def check_framework(variant: str, framework: str) -> None:
    v = variants.get(variant)
    if not v.dockerized:
        raise UserError(
            f"variant {variant} does not run in Docker: use --variant cpu (or cuda on an NVIDIA machine)"
        )
    if framework not in FRAMEWORKS:
        raise UserError(f"unknown framework {framework!r}: choose one of {', '.join(FRAMEWORKS)}")
    need = {"torch": "torch", "tensorflow": "tensorflow", "keras-jax": "jax"}[framework]
    if need not in v.frameworks:
        has = [n for n, w in variants.VARIANTS.items() if need in w.frameworks and w.dockerized]
        raise UserError(
            f"{framework} needs {need}, which the {variant} variant does not ship: "
            f"use --variant {' or '.join(has)}, or --framework torch|tensorflow"
        )


def nvidia(variant: str) -> bool:
    """Whether the variant's GPUs come through the NVIDIA runtime (one per worker, NCCL)."""
    return variants.get(variant).gpu_runtime == "nvidia"


def check_gpus(variant: str, framework: str, workers: int, gpus_here: int) -> int:
    """GPUs to give the run: one per worker on cuda with GPUs (torch NCCL); 0 means CPU (gloo)."""
    if not nvidia(variant) or gpus_here == 0:
        return 0
    if workers > gpus_here:
        raise UserError(
            f"{workers} GPU workers need {workers} GPUs, this machine has {gpus_here}: "
            f"use --workers {gpus_here} or fewer"
        )
    return workers


def count_gpus(run: Callable = subprocess.run) -> int:
    """GPUs the NVIDIA runtime can hand out here (0 without nvidia-smi or its driver)."""
    if not shutil.which("nvidia-smi"):
        return 0
    proc = run(["nvidia-smi", "--list-gpus"], capture_output=True, text=True)
    if proc.returncode != 0:
        return 0
    return sum(1 for line in proc.stdout.splitlines() if line.startswith("GPU "))


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def make_plan(
    variant: str,
    framework: str,
    workers: int,
    epochs: int = 3,
    image: str | None = None,
    gpus_here: int = 0,
    uid: int | None = None,
    gid: int | None = None,
    token: str | None = None,
    cores: int | None = None,
) -> Plan:
    """Validate the request and make the run's plan (no engine needed)."""
    check_framework(variant, framework)
    if not 1 <= workers <= MAX_WORKERS:
        raise UserError(f"--workers must be 1 to {MAX_WORKERS}, got {workers}")
    if epochs < 1:
        raise UserError(f"--epochs must be at least 1, got {epochs}")
    gpus = check_gpus(variant, framework, workers, gpus_here)
    if uid is None or gid is None:  # as `invoke lab`: you, or under sudo the user who ran it
        owner = containers.Owner.current()
        uid, gid = owner.uid, owner.gid
    extra, mounts = [], []
    dev_src = os.environ.get("DLLAB_WORKERS_SRC")  # development only: run this source tree
    if dev_src:
        mounts.append(f"{os.path.abspath(dev_src)}:/opt/dllab-dev/src:ro")
        extra.append(("PYTHONPATH", "/opt/dllab-dev/src"))
    return Plan(
        variant=variant, framework=framework, workers=workers, epochs=epochs,
        image=image or variants.get(variant).image, network=run_id(uid, token), uid=uid, gid=gid,
        gpus=gpus, threads=max(1, (cores or cpu_count()) // workers),
        extra_env=tuple(extra), mounts=tuple(mounts),
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Running


class Run:
    """Starts the network and the workers, watches them, and always removes what it made."""

    def __init__(self, plan: Plan, out=sys.stdout, err=sys.stderr, startup_timeout: float = 600):
        self.plan = plan
        self.out, self.err = out, err
        self.procs: list[subprocess.Popen] = []
        self.outcomes = [Outcome(r, plan.container(r)) for r in range(plan.workers)]
        self.readers: list[threading.Thread] = []
        self.timeout = startup_timeout

    def _read(self, proc: subprocess.Popen, outcome: Outcome) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            outcome.lines.append(line)
            if outcome.rank == 0 and line.startswith("epoch "):
                print(f"  {line}", file=self.out, flush=True)

    def _docker(self, cmd: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, capture_output=True, text=True)

    def start(self) -> None:
        proc = self._docker(network_command(self.plan))
        if proc.returncode != 0:
            raise UserError(f"cannot create network {self.plan.network}: {proc.stderr.strip()}")
        for rank, outcome in enumerate(self.outcomes):
            p = subprocess.Popen(
                worker_command(self.plan, rank), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, text=True, errors="replace",
                start_new_session=True,  # Ctrl-C reaches us only; we stop the containers ourselves
            )  # fmt: skip
            self.procs.append(p)
            reader = threading.Thread(target=self._read, args=(p, outcome), daemon=True)
            reader.start()
            self.readers.append(reader)

    def wait(self) -> Outcome | None:
        """Until every worker exits, or the first failure (returned, after a moment for the others)."""
        deadline = time.monotonic() + self.timeout
        while True:
            codes = [p.poll() for p in self.procs]
            for outcome, code in zip(self.outcomes, codes, strict=True):
                outcome.returncode = code
            if any(c not in (None, 0) for c in codes):
                time.sleep(0.5)  # peers of a dead worker fail within moments: collect them too
                for outcome, p in zip(self.outcomes, self.procs, strict=True):
                    outcome.returncode = p.poll()
                self._finish_times()
                return first_failure(self.outcomes)
            if all(c == 0 for c in codes):
                return None
            if time.monotonic() > deadline:
                for outcome in self.outcomes:
                    if outcome.returncode is None:
                        outcome.returncode = 124
                return next(o for o in self.outcomes if o.returncode == 124)
            time.sleep(0.1)

    def _finish_times(self) -> None:
        proc = self._docker(
            ["docker", "inspect", "--format", "{{.Name}} {{.State.FinishedAt}}",
             *(o.container for o in self.outcomes)]
        )  # fmt: skip
        times = dict(
            line.lstrip("/").split(" ", 1) for line in proc.stdout.splitlines() if " " in line
        )
        for o in self.outcomes:
            o.finished_at = times.get(o.container, "")
            if o.finished_at.startswith("0001-"):  # still running
                o.finished_at = ""

    def cleanup(self) -> None:
        for cmd in remove_commands(self.plan):
            self._docker(cmd)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        # A `docker run` interrupted while creating its container may have finished after the
        # first pass: sweep once more by the run's label.
        left = self._docker(
            [
                "docker",
                "ps",
                "--all",
                "--quiet",
                "--filter",
                f"label={RUN_LABEL}={self.plan.network}",
            ]
        ).stdout.split()
        if left:
            self._docker(["docker", "rm", "--force", *left])
            self._docker(["docker", "network", "rm", self.plan.network])
        for reader in self.readers:
            reader.join(timeout=2)


def execute(plan: Plan, out=sys.stdout, err=sys.stderr) -> int:
    """Run the plan to its end; print the per-worker lines and the verdict; the exit code."""
    run = Run(plan, out, err)
    what = (
        f"{plan.workers} worker{'s' if plan.workers > 1 else ''} of {plan.image} "
        f"({plan.framework}, {plan.epochs} epoch{'s' if plan.epochs > 1 else ''}) on network {plan.network}"
    )
    print(f"dllab: starting {what}", file=out, flush=True)
    if nvidia(plan.variant) and not plan.gpus:
        print("dllab: no GPU for the workers here: they train on the CPU (gloo / ring)", file=out)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        run.start()
        failed = run.wait()
        for reader, proc in zip(run.readers, run.procs, strict=True):
            if proc.poll() is not None:  # a running peer's reader ends when cleanup stops it
                reader.join(timeout=5)
        if failed is not None:
            print(f"--- last lines of worker {failed.rank} ({failed.container}) ---", file=err)
            for line in list(failed.lines)[-LAST_LINES:]:
                print(f"  {line}", file=err)
            print(
                f"dllab: worker {failed.rank} of {plan.workers} ({failed.container}) failed with "
                f"{describe_exit(failed.returncode)}; the other workers were stopped",
                file=err,
            )
            return 1
        results = []
        for o in run.outcomes:
            o.result = parse_result(list(o.lines))
            if o.result is None:
                print(f"dllab: worker {o.rank} ({o.container}) ended without a result", file=err)
                return 1
            results.append(o.result)
        for r in sorted(results, key=lambda r: r["rank"]):
            print(worker_line(r), file=out)
        agree, line = verdict(results)
        print(line, file=out, flush=True)
        return 0 if agree else 1
    except KeyboardInterrupt:
        print("dllab: interrupted: stopping the workers", file=err)
        return 130
    finally:
        run.cleanup()
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line and exit 2, never a usage dump
        raise UserError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m dllab.workers", description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default="cpu", help="the image's variant: cpu or cuda")
    parser.add_argument(
        "--workers", type=parse_workers, default=2, help="containers, one worker each"
    )
    parser.add_argument("--framework", default="torch", help=f"one of {', '.join(FRAMEWORKS)}")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image", default=None, help="image to run (default dllab:VARIANT)")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
        variants.get(args.variant)
        check_framework(args.variant, args.framework)
        gpus_here = count_gpus() if nvidia(args.variant) else 0
        plan = make_plan(
            args.variant, args.framework, args.workers, args.epochs, args.image, gpus_here
        )
        containers.check_engine()
        containers.check_image(variants.get(plan.variant), image=plan.image)
    except UserError as exc:
        return report(exc)
    except KeyboardInterrupt:
        return 130
    try:
        return execute(plan)
    except UserError as exc:
        return report(exc)


if __name__ == "__main__":
    sys.exit(main())
