# IPython kernels' system-wide config (/etc/ipython): read by every lab kernel, and by nothing else.
#
# Quiet framework imports. TensorFlow's C++ libraries log from static initializers while
# `import tensorflow` loads them (the oneDNN notice from tensorflow/core/util/port.cc, once per
# library that links it: twice), before anything has called absl::InitializeLog(). Before that
# call absl writes every message to stderr, whatever its severity, preceded by the banner
# "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR";
# TF_CPP_MIN_LOG_LEVEL is not consulted yet, and no variable can change that (abseil's own fix is
# still open). So while TensorFlow is first imported, the kernel holds file descriptor 2 and then
# applies TF_CPP_MIN_LOG_LEVEL itself: absl lines below that level and the banner are dropped,
# everything else (TF's own warnings, errors, anything not in absl's format) is passed on as it
# was. Nothing changes which kernels run: oneDNN stays on, only its notice is not shown.
# `python script.py` and terminals are not affected.
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

_WATCHED = ("tensorflow",)
_BANNER = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
# absl's prefix: severity letter, MMDD, time (before InitializeLog: 00:00:<epoch seconds>),
# thread, file:line]
_ABSL_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^ \]]+:\d+\] ")
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}


def _min_level() -> int:
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def _kept(text: str, min_level: int) -> str:
    """`text` without the banner and the absl lines below `min_level` (with their continuations)."""
    kept, dropping = [], False
    for line in text.splitlines(keepends=True):
        match = _ABSL_LINE.match(line)
        if line.rstrip("\r\n") == _BANNER:
            dropping = False
            continue
        if match:
            dropping = _SEVERITY[match.group(1)] < min_level
        if not dropping:
            kept.append(line)
    return "".join(kept)


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name):  # is_package, get_code, get_resource_reader...: the real loader's
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        sys.stderr.flush()
        with tempfile.TemporaryFile() as held:
            saved = os.dup(2)
            os.dup2(held.fileno(), 2)
            try:
                self.loader.exec_module(module)
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                held.seek(0)
                rest = _kept(held.read().decode(errors="replace"), _min_level())
                if rest:
                    sys.stderr.write(rest)
                    sys.stderr.flush()


class _QuietFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name not in _WATCHED:
            return None
        sys.meta_path.remove(self)  # once: find the real spec, and never wrap again
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


if os.environ.get("DLLAB_QUIET_IMPORTS", "1") != "0":
    sys.meta_path.insert(0, _QuietFinder())
