"""One data-parallel worker: the same small MLP trained by torch DDP, TF MultiWorkerMirroredStrategy or Keras-on-JAX DataParallel.

Every worker of a run executes this script. Who it is and who its peers are comes from each
engine's own launcher variables, never from dllab:

* torch: `torchrun` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT (DDP: gloo on CPU, NCCL on a GPU);
* tensorflow: TF_CONFIG (`{"cluster": {"worker": [...]}, "task": {"type": "worker", "index": i}}`);
* keras-jax: KERAS_DISTRIBUTION_JOB_ADDRESSES / _NUM_PROCESSES / _PROCESS_ID, read by
  `keras.distribution.initialize()`.

Without them it trains as one plain process. The data set is made locally (no download), the
initial weights come from a seeded NumPy generator, and each global batch of `--global-batch`
rows is split into equal contiguous shards, one per worker: so N workers compute exactly the
gradient of one worker on the same global batch (up to float rounding in the all-reduce).

Each engine's determinism switches are on (dllab.frameworks.<engine>.deterministic): the same
seed and image give the same losses and weights, bit for bit, run after run.

The last line of stdout is `DLLAB_RESULT {json}`: rank, world size, the loss after each epoch
and the final one (on the whole data set, computed with NumPy from the weights), the SHA-256 of
the final weights, and throughput.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np

from dllab import devices
from dllab.errors import Parser, UserError, report
from dllab.frameworks import FRAMEWORKS, RESULT

STARTED = time.perf_counter()  # start-up cost = imports + joining the group, until the first step
HELD: list = []  # objects whose destructors could hang: never freed (see train_torch)

FEATURES = 32
CLASSES = 4


def make_data(samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A learnable 4-class problem made locally: labels from a random teacher network."""
    rng = np.random.default_rng(seed + 1)
    X = rng.normal(size=(samples, FEATURES)).astype(np.float32)
    teacher = rng.normal(size=(FEATURES, CLASSES)).astype(np.float32)
    y = np.argmax(np.tanh(X @ teacher) + 0.1 * rng.normal(size=(samples, CLASSES)), axis=1)
    return X, y.astype(np.int64)


def initial_weights(hidden: int, seed: int) -> list[np.ndarray]:
    """[W1 (in, hidden), b1, W2 (hidden, classes), b2], the same on every worker and framework."""
    rng = np.random.default_rng(seed)
    return [
        (rng.normal(size=(FEATURES, hidden)) * np.sqrt(2 / FEATURES)).astype(np.float32),
        np.zeros(hidden, np.float32),
        (rng.normal(size=(hidden, CLASSES)) * np.sqrt(1 / hidden)).astype(np.float32),
        np.zeros(CLASSES, np.float32),
    ]


def loss_of(weights: list[np.ndarray], X: np.ndarray, y: np.ndarray) -> float:
    """Mean softmax cross-entropy of the MLP with `weights` on (X, y), in float64 NumPy."""
    w1, b1, w2, b2 = (np.asarray(w, np.float64) for w in weights)
    logits = np.maximum(X @ w1 + b1, 0) @ w2 + b2
    logits -= logits.max(axis=1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(y)), y].mean())


def digest(weights: list[np.ndarray]) -> str:
    """SHA-256 (first 16 hex digits) of the float32 bytes of the weights, in order."""
    h = hashlib.sha256()
    for w in weights:
        h.update(np.ascontiguousarray(w, dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


def local_shard(X: np.ndarray, y: np.ndarray, global_batch: int, rank: int, world: int):
    """This worker's rows: for every global batch, its contiguous 1/world slice, in order."""
    if global_batch % world:
        raise SystemExit(f"--global-batch {global_batch} must divide into {world} equal shards")
    local = global_batch // world
    steps = len(X) // global_batch
    index = np.concatenate(
        [
            np.arange(s * global_batch + rank * local, s * global_batch + (rank + 1) * local)
            for s in range(steps)
        ]
    )
    return X[index], y[index], steps, local


def threads() -> int:
    return max(1, int(os.environ.get("OMP_NUM_THREADS") or devices.cpu_count()))


# --------------------------------------------------------------------------------------------
def torch_backend(cuda_available: bool, env) -> tuple[str, str]:
    """(process-group backend, device): NCCL on this worker's GPU when it has one, else gloo on the CPU.

    DLLAB_DEVICE=cpu forces the CPU (the orchestrator sets it when it hands out no GPU).
    """
    if cuda_available and env.get("DLLAB_DEVICE", "") != "cpu":
        return "nccl", f"cuda:{int(env.get('LOCAL_RANK', 0))}"
    return "gloo", "cpu"


def tf_communication(gpus: int) -> str:
    """MultiWorkerMirroredStrategy's all-reduce: NCCL between GPUs, ring (gRPC) between CPUs."""
    return "NCCL" if gpus else "RING"


def train_torch(args, X, y, init) -> dict:
    import torch
    import torch.distributed as dist

    from dllab.frameworks import torch as plugin

    plugin.deterministic()
    torch.set_num_threads(threads())
    distributed = "WORLD_SIZE" in os.environ  # set by torchrun
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    backend, device_name = torch_backend(torch.cuda.is_available(), os.environ)
    cuda = backend == "nccl"
    device = torch.device(device_name)
    if cuda:
        torch.cuda.set_device(device)
    if distributed:
        dist.init_process_group(backend)
    torch.manual_seed(args.seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(FEATURES, args.hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(args.hidden, CLASSES),
    )
    with torch.no_grad():
        for param, value in zip(net.parameters(), init, strict=True):
            param.copy_(torch.from_numpy(value.T.copy() if value.ndim == 2 else value))
    net.to(device)
    model = (
        torch.nn.parallel.DistributedDataParallel(net, device_ids=[local_rank] if cuda else None)
        if distributed
        else net
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    Xl, yl, steps, local = local_shard(X, y, args.global_batch, rank, world)
    Xl, yl = torch.from_numpy(Xl).to(device), torch.from_numpy(yl).to(device)
    engine = f"torch DDP {backend}" if distributed else "torch (one process)"
    startup = ready(rank, world, engine)
    epoch_seconds, snapshots = [], []
    for _ in range(args.epochs):
        start = time.perf_counter()
        for s in range(steps):
            xb, yb = Xl[s * local : (s + 1) * local], yl[s * local : (s + 1) * local]
            optimizer.zero_grad()
            # DDP averages gradients over workers: the mean of equal shards' means = the global mean.
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        epoch_seconds.append(time.perf_counter() - start)
        progress(rank, len(epoch_seconds), args.epochs, epoch_seconds[-1], args)
        # a copy: on the CPU .numpy() shares the parameter's memory, which the next step changes
        snapshots.append([p.detach().cpu().numpy().copy() for p in net.parameters()])
    if distributed:
        dist.barrier()  # no rank leaves while a peer still waits on its last all-reduce
        dist.destroy_process_group()
        # The DDP model holds the last reference to gloo's process group, whose destructor joins
        # gloo's worker threads while holding the GIL; a worker thread still releasing a
        # finished job's tensors waits for the GIL: deadlock (pytorch#56297; 5 of 43 runs here,
        # the barrier alone did not help; a worker then hung until torchrun's 300 s exit barrier).
        # So the model is never freed: main() leaves with os._exit once the result is out.
        HELD.append(model)
    snapshots = [[w.T if w.ndim == 2 else w for w in ws] for ws in snapshots]  # torch: (out, in)
    return dict(rank=rank, world=world, engine=engine, device=str(device), snapshots=snapshots,
                epoch_seconds=epoch_seconds, startup_seconds=startup)  # fmt: skip


# --------------------------------------------------------------------------------------------
def tf_config_from(env) -> str | None:
    """TF_CONFIG as given, or made from DLLAB_TF_WORKERS (host:port,...) and this pod's index.

    On Kubernetes an Indexed Job (a JobSet's) gives each pod JOB_COMPLETION_INDEX, and its peers
    have predictable DNS names: deploy/k8s lists them in DLLAB_TF_WORKERS, and this makes the
    TF_CONFIG MultiWorkerMirroredStrategy reads.
    """
    if env.get("TF_CONFIG"):
        return env["TF_CONFIG"]
    hosts = [h for h in env.get("DLLAB_TF_WORKERS", "").split(",") if h]
    if not hosts:
        return None
    index = int(env.get("JOB_COMPLETION_INDEX", env.get("DLLAB_TF_INDEX", "0")))
    return json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})


def train_tensorflow(args, X, y, init) -> dict:
    import tensorflow as tf

    from dllab.frameworks import tensorflow as plugin

    plugin.deterministic()
    tf.config.threading.set_intra_op_parallelism_threads(threads())
    tf.config.threading.set_inter_op_parallelism_threads(threads())
    tf_config = tf_config_from(os.environ)
    if tf_config:
        os.environ["TF_CONFIG"] = tf_config  # MultiWorkerMirroredStrategy reads it from there
    config = json.loads(tf_config or "{}")
    world = len(config.get("cluster", {}).get("worker", [])) or 1
    rank = int(config.get("task", {}).get("index", 0))
    gpus = tf.config.list_physical_devices("GPU")
    if world > 1:
        implementation = getattr(
            tf.distribute.experimental.CommunicationImplementation, tf_communication(len(gpus))
        )
        strategy = tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=tf.distribute.experimental.CommunicationOptions(
                implementation=implementation
            )
        )
        engine = f"tf MultiWorkerMirroredStrategy {tf_communication(len(gpus)).lower()}"
    else:
        strategy = tf.distribute.get_strategy()
        engine = "tensorflow (one process)"
    with strategy.scope():
        # The gradients are all-reduced explicitly below; every worker then applies the same
        # update to its own copy, so no further synchronisation on write (ONLY_FIRST_REPLICA:
        # each worker's one local replica writes).
        variables = [
            tf.Variable(w, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA, name=f"w{i}")
            for i, w in enumerate(init)
        ]
    Xl, yl, steps, local = local_shard(X, y, args.global_batch, rank, world)
    global_batch = args.global_batch
    lr = args.lr

    def replica_step(xb, yb):
        with tf.GradientTape() as tape:
            w1, b1, w2, b2 = variables
            logits = tf.nn.relu(xb @ w1 + b1) @ w2 + b2
            per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(yb, logits)
            # Sum over this shard / the global batch: the replicas' sum is the global mean.
            loss = tf.reduce_sum(per_example) / global_batch
        # One all-reduce of all the gradients together (MWMS packs the list into one collective).
        grads = tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, tape.gradient(loss, variables)
        )
        for v, g in zip(variables, grads, strict=True):
            v.assign_sub(lr * g)
        return loss

    @tf.function
    def train_step(xb, yb):
        # This worker's share of the loss only: reducing it too would cost a second collective.
        return strategy.experimental_local_results(strategy.run(replica_step, args=(xb, yb)))[0]

    batches = [
        (tf.constant(Xl[s * local : (s + 1) * local]), tf.constant(yl[s * local : (s + 1) * local]))
        for s in range(steps)
    ]
    startup = ready(rank, world, engine)
    epoch_seconds, snapshots = [], []
    for _ in range(args.epochs):
        start = time.perf_counter()
        for xb, yb in batches:
            loss = train_step(xb, yb)
        loss.numpy()
        epoch_seconds.append(time.perf_counter() - start)
        progress(rank, len(epoch_seconds), args.epochs, epoch_seconds[-1], args)
        snapshots.append([v.numpy() for v in variables])
    return dict(rank=rank, world=world, engine=engine, device="gpu" if gpus else "cpu",
                snapshots=snapshots, epoch_seconds=epoch_seconds, startup_seconds=startup)  # fmt: skip


# --------------------------------------------------------------------------------------------
def train_keras_jax(args, X, y, init) -> dict:
    os.environ["KERAS_BACKEND"] = "jax"
    n = threads()
    os.environ.setdefault(
        "XLA_FLAGS",
        f"--xla_cpu_multi_thread_eigen={'true' if n > 1 else 'false'} intra_op_parallelism_threads={n}",
    )
    import keras

    from dllab.frameworks import keras as plugin

    plugin.deterministic()
    world = int(os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES") or 1)
    rank = int(os.environ.get("KERAS_DISTRIBUTION_PROCESS_ID") or 0)
    if world > 1:
        # jax.distributed.initialize: process 0 (the first job address) coordinates.
        keras.distribution.initialize()
    import jax

    devices = jax.devices()
    distribution = keras.distribution.DataParallel(devices=devices)
    # Each process already holds its own shard (local_shard below), as NumPy arrays.
    distribution.auto_shard_dataset = False
    keras.distribution.set_distribution(distribution)
    keras.utils.set_random_seed(args.seed)
    model = plugin.compile_sgd(plugin.mlp(FEATURES, args.hidden, CLASSES, depth=1), args.lr)
    model.set_weights(init)
    Xl, yl, steps, local = local_shard(X, y, args.global_batch, rank, world)

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []
            self.snapshots: list[list] = []  # the weights after each epoch
            self.startup = 0.0

        def on_train_begin(self, logs=None):
            self.startup = ready(rank, world, engine)

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)
            progress(rank, len(self.seconds), args.epochs, self.seconds[-1], args)
            self.snapshots.append([np.asarray(w) for w in self.model.get_weights()])

    engine = (
        f"keras-jax DataParallel over {len(devices)} devices"
        if world > 1
        else "keras-jax (one process)"
    )
    timer = Timer()
    # Each process passes its own shard; Keras assembles the global batch across processes
    # (jax.make_array_from_process_local_data), so batch_size is the per-process share.
    model.fit(
        Xl, yl, batch_size=local, epochs=args.epochs, shuffle=False, verbose=0, callbacks=[timer]
    )
    return dict(rank=rank, world=world, engine=engine, device=str(devices[0].platform),
                snapshots=timer.snapshots, epoch_seconds=timer.seconds, startup_seconds=timer.startup)  # fmt: skip


TRAIN = {"torch": train_torch, "tensorflow": train_tensorflow, "keras-jax": train_keras_jax}


def say(line: str) -> None:
    """One line in one write: workers sharing a pipe (torchrun's N local processes) never split it."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def ready(rank: int, world: int, engine: str) -> float:
    """Say this worker is about to take its first step; return its start-up seconds."""
    startup = time.perf_counter() - STARTED
    say(f"rank {rank} of {world}: {engine}, first step after {startup:.1f} s")
    return startup


def progress(rank: int, epoch: int, epochs: int, seconds: float, args) -> None:
    if rank == 0:
        say(f"epoch {epoch}/{epochs}: {seconds:.3f} s")


def samples_per_second(epoch_seconds: list[float], samples: int) -> float | None:
    """Global samples/s in the median epoch after the first (warm-up: tracing, compiling, connecting)."""
    timed = sorted(epoch_seconds[1:] or epoch_seconds)
    median = (timed[(len(timed) - 1) // 2] + timed[len(timed) // 2]) / 2 if timed else 0.0
    return samples / median if median > 0 else None


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = Parser(prog="python -m dllab.train_worker", description=__doc__.split("\n")[0])
    parser.add_argument("--framework", required=True, choices=FRAMEWORKS)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=2048, help="size of the generated data set")
    parser.add_argument(
        "--global-batch", type=int, default=64, help="rows per step, all workers together"
    )
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    """Train as this worker; the result without the weights (those are digested)."""
    X, y = make_data(args.samples, args.seed)
    init = initial_weights(args.hidden, args.seed)
    out = TRAIN[args.framework](args, X, y, init)
    snapshots = out.pop("snapshots")  # the weights after each epoch
    weights = snapshots[-1]
    steps = len(X) // args.global_batch
    return dict(
        out,
        framework=args.framework,
        initial_loss=loss_of(init, X, y),
        loss=loss_of(weights, X, y),
        epoch_losses=[loss_of(w, X, y) for w in snapshots],
        digest=digest(weights),
        norm=float(np.sqrt(sum(float(np.sum(np.square(w, dtype=np.float64))) for w in weights))),
        samples_per_second=samples_per_second(out["epoch_seconds"], steps * args.global_batch),
    )


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(argv)
    except UserError as exc:
        return report(exc)
    result = run(args)
    say(RESULT + json.dumps(result))
    if HELD:
        sys.stderr.flush()
        os._exit(0)  # skip the destructors of HELD: the result is out, the process only ends
    return 0


if __name__ == "__main__":
    sys.exit(main())
