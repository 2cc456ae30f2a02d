"""`invoke train` (`python -m dllab.workers`): N containers train one model together on the
frameworks' own engines.

    invoke train --variant cpu --workers 2 --framework torch|tensorflow|keras-jax [--epochs 3]

Each worker is a container of `dllab:VARIANT` on a network made for this run, running the same
shipped script, `python -m dllab.train_worker`, under its framework's own launcher: torchrun + DDP,
TF_CONFIG + MultiWorkerMirroredStrategy, or `keras.distribution.initialize` + DataParallel on
JAX. One worker (`--workers 1`) is a plain single process. It prints each worker's rank, final
loss and weight digest, then `workers agree` or what differs. The containers and the network
carry your owner, checkout and instance labels, and are removed at the end, when a worker fails
(the others are stopped, the exit code is 1 and the failing worker's last lines are shown), and
on Ctrl-C, SIGTERM or a closed terminal (SIGHUP): training never outlives its terminal.

Exit codes: 0 the workers agree, 1 a worker failed or the workers differ, 2 bad input or a
missing engine/image (one `dllab: ...` line), 130 interrupted.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dllab import containers, devices, gpus, images, variants
from dllab.containers import Owner
from dllab.errors import Parser, UserError, report
from dllab.frameworks import FRAMEWORKS, RESULT
from dllab.runner import Runner

MAX_WORKERS = 64
RUN_LABEL = "dllab.run"
STARTED = "first step after"  # train_worker's line once a worker has joined the others
TORCH_PORT = 29500
TF_PORT = 2222
JAX_PORT = 1234
LAST_LINES = 15


def startup_timeout() -> float:
    """Seconds from `docker run` until every worker takes its first step (rendezvous included):
    DLLAB_TRAIN_STARTUP_TIMEOUT, else 600 (a 10 GB cuda image on a cold disk needs minutes).
    Training itself has no deadline."""
    return float(os.environ.get("DLLAB_TRAIN_STARTUP_TIMEOUT") or 600)


@dataclass(frozen=True)
class Plan:
    """One run: what to start, where, as whom. Everything the command builders need."""

    variant: str
    framework: str
    workers: int
    epochs: int
    image: str
    network: str  # also the prefix of every container name
    owner: Owner
    gpus: tuple[str, ...] = ()  # GPU ids, worker `rank` gets gpus[rank]; () is the CPU
    threads: int = 1  # OMP_NUM_THREADS per worker: the host's cores shared out
    extra_env: tuple[tuple[str, str], ...] = ()
    source: str = ""  # a source tree to run instead of the image's dllab (development)
    train_extra: tuple[str, ...] = ()  # more train_worker flags (benchmarks: --hidden, --samples)

    def container(self, rank: int) -> str:
        return f"{self.network}-w{rank}"

    @property
    def labels(self) -> dict[str, str]:
        return {
            **self.owner.labels(), "dllab.role": "worker", "dllab.variant": self.variant,
            RUN_LABEL: self.network,
        }  # fmt: skip


# --------------------------------------------------------------------------------------------
# Argument lists (pure: no engine needed)


def run_id(owner: Owner, token: str | None = None) -> str:
    """The network name of a run, also the prefix of its containers."""
    return containers.name("train", owner, token or secrets.token_hex(3))


def network_command(plan: Plan) -> list[str]:
    """The run's own bridge: workers resolve each other by name; where the engine enforces it
    (iptables), nothing outside the run reaches them."""
    return containers.network_command(plan.network, plan.labels, internal=True)


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
    """`docker run` for worker `rank`: as you, hardened, on the run's network, labelled."""
    entrypoint, args, env = launcher(plan, rank)
    variant = variants.get(plan.variant)
    # One GPU per worker: inside, it is cuda:0 / GPU:0, and torch picks NCCL.
    spec = containers.Spec(
        variant, plan.owner.user, plan.labels, (plan.gpus[rank],) if plan.gpus else None
    )
    env = {
        "HOME": "/tmp", "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
        "OMP_NUM_THREADS": str(plan.threads),
        **({} if plan.gpus else {"DLLAB_DEVICE": "cpu", "CUDA_VISIBLE_DEVICES": ""}),
        **env, **dict(plan.extra_env),
    }  # fmt: skip
    if plan.source:
        env["PYTHONPATH"] = "/opt/dllab-dev/src"
    mounts = [(Path(plan.source), "/opt/dllab-dev/src")] if plan.source else []
    return containers.worker_command(
        spec, plan.container(rank), plan.network, plan.image, entrypoint, args, env, mounts
    )


def remove_commands(plan: Plan) -> list[list[str]]:
    """What cleans a run up: its containers (by name, forced), then its network."""
    return [
        containers.remove_command(*(plan.container(r) for r in range(plan.workers))),
        containers.remove_networks_command(plan.network),
    ]


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
    started: bool = False  # it took its first step (start-up is over)


def parse_result(lines: Sequence[str]) -> dict | None:
    """The JSON of the last `DLLAB_RESULT {...}` line, if any."""
    for line in reversed(lines):
        if line.startswith(RESULT):
            try:
                return json.loads(line[len(RESULT) :])
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


def count(flag: str, text: int | str, most: int | None = MAX_WORKERS) -> int:
    """`text` as a whole number from 1 (to `most`), else a UserError naming `flag`."""
    value = str(text).strip()
    n = int(value) if value.isdigit() else 0
    if n < 1 or (most is not None and n > most):
        upto = f" to {most}" if most is not None else " up"
        raise UserError(f"{flag} must be a whole number from 1{upto}, not {text!r}")
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


def check_gpus(
    variant: str, framework: str, workers: int, gpus_here: Sequence[str]
) -> tuple[str, ...]:
    """GPU ids to give the run, one per worker on cuda with GPUs (torch NCCL); () is the CPU (gloo)."""
    if not nvidia(variant) or not gpus_here:
        return ()
    try:
        return tuple(gpus.for_workers(workers, gpus_here))
    except gpus.NoGpu as exc:
        raise UserError(str(exc)) from None


def make_plan(
    variant: str,
    framework: str,
    workers: int,
    epochs: int = 3,
    image: str | None = None,
    gpus_here: Sequence[str] = (),
    owner: Owner | None = None,
    token: str | None = None,
    cores: int | None = None,
) -> Plan:
    """Validate the request and make the run's plan (no engine needed)."""
    check_framework(variant, framework)
    if not 1 <= workers <= MAX_WORKERS:
        raise UserError(f"--workers must be 1 to {MAX_WORKERS}, got {workers}")
    if epochs < 1:
        raise UserError(f"--epochs must be at least 1, got {epochs}")
    given = check_gpus(variant, framework, workers, gpus_here)
    owner = owner or Owner.current()  # as `invoke lab`: you, or under sudo the user who ran it
    source = os.environ.get("DLLAB_WORKERS_SRC", "")  # development only: run this source tree
    return Plan(
        variant=variant, framework=framework, workers=workers, epochs=epochs,
        image=image or variants.get(variant).image, network=run_id(owner, token), owner=owner,
        gpus=given, threads=max(1, (cores or devices.cpu_count()) // workers),
        source=os.path.abspath(source) if source else "",
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Running


class Stopped(Exception):
    """A signal (SIGTERM, SIGHUP: the terminal closed) asked the run to stop."""


def _stop(signum, frame):
    raise Stopped(signal.Signals(signum).name)


@contextlib.contextmanager
def stopped_by_signals():
    """SIGTERM and SIGHUP end the run as Ctrl-C does: its containers and network are removed."""
    previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def say(line: str, stream) -> None:
    """Print, where a closed terminal (SIGHUP) must not keep the clean-up from running."""
    with contextlib.suppress(OSError, ValueError):
        print(line, file=stream, flush=True)


class Run:
    """Starts the network and the workers, watches them, and always removes what it made."""

    def __init__(self, plan: Plan, run: Runner, out=sys.stdout, err=sys.stderr):
        self.plan, self.run = plan, run
        self.out, self.err = out, err
        self.procs: list[subprocess.Popen] = []
        self.outcomes = [Outcome(r, plan.container(r)) for r in range(plan.workers)]
        self.readers: list[threading.Thread] = []

    def _read(self, proc: subprocess.Popen, outcome: Outcome) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            outcome.lines.append(line)
            if STARTED in line:
                outcome.started = True
            if outcome.rank == 0 and line.startswith("epoch "):
                say(f"  {line}", self.out)

    def start(self) -> None:
        self.run.checked(network_command(self.plan))
        for rank, outcome in enumerate(self.outcomes):
            p = self.run.start(
                worker_command(self.plan, rank), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, text=True, errors="replace",
                start_new_session=True,  # Ctrl-C reaches us only; we stop the containers ourselves
            )  # fmt: skip
            if p is None:  # a dry run
                continue
            self.procs.append(p)
            reader = threading.Thread(target=self._read, args=(p, outcome), daemon=True)
            reader.start()
            self.readers.append(reader)

    def wait(self) -> Outcome | None:
        """Until every worker exits, or the first failure (returned, after a moment for the
        others); a run whose workers do not all take a first step by `startup_timeout()` fails."""
        deadline = time.monotonic() + startup_timeout()
        while self.procs:
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
            waiting = [o for o in self.outcomes if not o.started and o.returncode is None]
            if waiting and time.monotonic() > deadline:
                for outcome in waiting:
                    outcome.returncode = 124
                return waiting[0]
            time.sleep(0.1)
        return None

    def _finish_times(self) -> None:
        done = self.run(containers.finished_command([o.container for o in self.outcomes]))
        times = dict(
            line.lstrip("/").split(" ", 1) for line in done.out.splitlines() if " " in line
        )
        for o in self.outcomes:
            o.finished_at = times.get(o.container, "")
            if o.finished_at.startswith("0001-"):  # still running
                o.finished_at = ""

    def cleanup(self) -> None:
        for cmd in remove_commands(self.plan):
            self.run(cmd)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        # A `docker run` interrupted while creating its container may have finished after the
        # first pass: sweep once more by the run's label.
        label = ["--filter", f"label={RUN_LABEL}={self.plan.network}"]
        if left := self.run(containers.list_command(label)).out.split():
            self.run(containers.remove_command(*left))
            self.run(containers.remove_networks_command(self.plan.network))
        for reader in self.readers:
            reader.join(timeout=2)


def execute(plan: Plan, run: Runner, out=sys.stdout, err=sys.stderr) -> int:
    """Run the plan to its end; print the per-worker lines and the verdict; the exit code."""
    what = (
        f"{plan.workers} worker{'s' if plan.workers > 1 else ''} of {plan.image} "
        f"({plan.framework}, {plan.epochs} epoch{'s' if plan.epochs > 1 else ''}) on network {plan.network}"
    )
    say(f"dllab: starting {what}", out)
    if nvidia(plan.variant) and not plan.gpus:
        say("dllab: no GPU for the workers here: they train on the CPU (gloo / ring)", out)
    job = Run(plan, run, out, err)
    with stopped_by_signals():
        try:
            job.start()
            failed = job.wait()
            if run.dry:
                return 0
            for reader, proc in zip(job.readers, job.procs, strict=True):
                if proc.poll() is not None:  # a running peer's reader ends when cleanup stops it
                    reader.join(timeout=5)
            return report_outcomes(plan, job.outcomes, failed, out, err)
        except (KeyboardInterrupt, Stopped) as why:
            say(f"dllab: {why or 'interrupted'}: stopping the workers", err)
            return 130
        finally:
            job.cleanup()


def report_outcomes(plan: Plan, outcomes, failed: Outcome | None, out, err) -> int:
    """Print the failure, or each worker's line and the verdict; the exit code."""
    if failed is not None:
        say(f"--- last lines of worker {failed.rank} ({failed.container}) ---", err)
        for line in list(failed.lines)[-LAST_LINES:]:
            say(f"  {line}", err)
        why = (
            f"did not take its first step within {startup_timeout():.0f} s (DLLAB_TRAIN_STARTUP_TIMEOUT)"
            if failed.returncode == 124
            else f"failed with {describe_exit(failed.returncode)}"
        )
        say(f"dllab: worker {failed.rank} of {plan.workers} ({failed.container}) {why}; "
            "the other workers were stopped", err)  # fmt: skip
        return 1
    results = []
    for o in outcomes:
        o.result = parse_result(list(o.lines))
        if o.result is None:
            say(f"dllab: worker {o.rank} ({o.container}) ended without a result", err)
            return 1
        results.append(o.result)
    for r in sorted(results, key=lambda r: r["rank"]):
        say(worker_line(r), out)
    agree, line = verdict(results)
    say(line, out)
    return 0 if agree else 1


def train(
    run: Runner,
    variant: str,
    workers: int,
    framework: str,
    epochs: int,
    image: str | None = None,
    build: bool = False,
) -> int:
    """Check the request and the engine, make sure of the image (the variant's is pulled or built
    where it is missing; `build`: built here, never pulled), then run it; the exit code."""
    chosen = variants.get(variant)
    check_framework(variant, framework)
    gpus_here = gpus.ids(devices.gpu_list()) if nvidia(variant) else []
    plan = make_plan(variant, framework, workers, epochs, image, gpus_here)
    containers.check_engine(run)
    if image and image != chosen.image:  # an image of your own: it must be here
        containers.check_image(chosen, image=plan.image, run=run)
    else:
        images.ensure(run, chosen, variants.docker_platform(chosen), build)
    return execute(plan, run)


def build_parser() -> Parser:
    parser = Parser(prog="python -m dllab.workers", description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default="cpu", help="the image's variant: cpu or cuda")
    parser.add_argument("--workers", default="2", help="containers, one worker each")
    parser.add_argument("--framework", default="torch", help=f"one of {', '.join(FRAMEWORKS)}")
    parser.add_argument("--epochs", default="3", help="passes over the data")
    parser.add_argument("--image", default=None, help="image to run (default dllab:VARIANT)")
    parser.add_argument(
        "--build", action="store_true", help="build the image here, never pulling it"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
        workers, epochs = count("--workers", args.workers), count("--epochs", args.epochs, None)
        return train(
            Runner(), args.variant, workers, args.framework, epochs, args.image, args.build
        )
    except UserError as exc:
        return report(exc)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
