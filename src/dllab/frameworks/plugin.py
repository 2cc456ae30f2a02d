"""The seam between dllab and a framework plugin: what a plugin module provides, and what it returns.

Every module in `dllab.frameworks` named after a framework (tensorflow, torch, jax, keras) is a
`Plugin`. Each runs in a child process (`python -m dllab.frameworks ACTION TARGET ...`), which
prints the result as one JSON line; the parent reads it back as a plain dict of these shapes.
"""

from __future__ import annotations

from typing import NotRequired, Protocol, Required, TypedDict


class DeviceSeen(TypedDict):
    """One device a framework can see."""

    name: str  # as the framework names it: '/physical_device:GPU:0', 'cuda:0', 'TFRT_CPU_0'
    kind: str  # what it means: cpu | cuda | mps
    model: NotRequired[str | None]  # the GPU's model, where the framework tells it
    capability: NotRequired[str]  # CUDA compute capability, e.g. "9.0" (torch)


class ChildResult(TypedDict, total=False):
    """What the child process adds to every result."""

    target: str  # the Target's name: torch, keras-jax, ...
    error: str | None  # the last line of the exception, or None: never a traceback
    seconds: float  # how long the action took, import included


class Probe(ChildResult):
    """probe(): the framework's version, how it was built, and the devices it sees."""

    version: Required[str]
    build: Required[dict[str, str | int | bool | None]]  # cuda, cudnn, metal_plugin, backend, ...
    devices: Required[list[DeviceSeen]]  # Keras: one, the device it places tensors on


class Training(ChildResult):
    """train(accelerator): where a few real training steps ran, and whether they learned."""

    device: Required[str]
    device_kind: Required[str]  # cpu | cuda | mps
    losses: Required[list[float]]
    params_changed: Required[bool]
    backend: NotRequired[str]  # Keras only


class Repeats(TypedDict):
    """How timing.measure() repeats a step."""

    warmup: int  # untimed calls first
    repeats: int  # timed repeats; their median is the figure
    repeat_s: float  # seconds each repeat lasts (calls are added until it does)


class Mode(Repeats):
    """How long a bench run is: a mode's batch size and repeats."""

    batch: int


class Model(TypedDict):
    """The same two models in every framework: an MLP and a small CNN."""

    image: int  # inputs are image x image, single channel, as flat vectors
    hidden: int  # the MLP's two hidden layers
    channels: tuple[int, int] | list[int]  # the CNN's two convolutions (a list, after JSON)
    classes: int
    lr: float


class Settings(Mode, Model):
    """What `dllab bench` asks each bench() to measure, passed as JSON."""

    mode: str  # full | quick | tiny
    deterministic: bool  # each framework's determinism switches on (bench --deterministic)
    n: int  # matmul size
    matmul_repeats: Repeats  # how each matmul is repeated: short repeats, the best is its figure
    dtypes: list[str]  # matmul dtypes
    cnn_flat: int  # the CNN's features after its last pooling
    note: str


class Rate(TypedDict):
    """A rate measured by timing.measure(): work per second."""

    median: float
    min: float
    max: float
    first_s: float  # the first call alone: tracing, compiling, allocating
    steady_s: float  # one call at the median rate
    calls_per_repeat: int


class Matmul(TypedDict, total=False):
    """One dtype's matmul: a Rate in FLOP/s (max: the best repeat) and its size, or its error."""

    n: int
    median: float
    min: float
    max: float
    first_s: float
    steady_s: float
    calls_per_repeat: int
    error: str
    peak_fraction: float | None  # max / peak, added by `dllab bench`, which knows the peak


class Measurements(TypedDict):
    """What bench() measures after the import, in this order: training first, then matmul."""

    mlp: Rate  # samples/s
    cnn: Rate
    matmul: dict[str, Matmul]  # by dtype


class Bench(ChildResult):
    """bench(accelerator, settings): start-up cost, training samples/s and matmul FLOP/s."""

    version: Required[str]
    device: Required[str]
    device_kind: Required[str]
    device_name: Required[str | None]  # the GPU's model, which names its peak
    import_s: Required[float]
    mlp: Required[Rate]  # samples/s
    cnn: Required[Rate]
    matmul: Required[dict[str, Matmul]]  # by dtype
    backend: NotRequired[str]  # Keras only
    backend_version: NotRequired[str]


class Plugin(Protocol):
    """What a framework's module in dllab.frameworks provides; each runs in a fresh process."""

    def probe(self) -> Probe:
        """The version, build and devices this framework sees; imports the framework."""
        ...

    def train(self, accelerator: str = "cpu") -> Training:
        """A few real training steps of a small MLP on `accelerator` (cpu|cuda|mps)."""
        ...

    def bench(self, accelerator: str, settings: str) -> Bench:
        """Import time, MLP and CNN samples/s and matmul FLOP/s; `settings` is Settings as JSON."""
        ...

    def deterministic(self) -> None:
        """Turn on the switches that make the same seed give bit-identical results on one machine."""
        ...
