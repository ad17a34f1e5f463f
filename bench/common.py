"""What the training benchmarks share: Fashion-MNIST from IDX files, machine facts, timing and
peak-memory probes, worker subprocesses and result files.

Nothing here imports TensorFlow, so every benchmark runs on a machine that has only JAX
(`KERAS_BACKEND=jax`): images come from the IDX `.gz` files through `gzip` + NumPy. Keras is
imported inside the functions that need it, after the caller has chosen the backend.
"""

from __future__ import annotations

import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

from contrastive.data import sources

FASHION_MNIST_DIR = Path(sources.FASHION_MNIST_DIR)
RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent
NUM_CLASSES = 10

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


class _TensorFlowBlocker:
    """A `sys.meta_path` finder that makes `import tensorflow` fail, as on a JAX-only host."""

    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by --no-tf)", name=name)
        return None


def forbid_tensorflow() -> None:
    """Makes every later `import tensorflow` fail, so a run proves it needs no TensorFlow.

    Call it before Keras is imported (Keras probes for TensorFlow at import time).
    """
    if "tensorflow" in sys.modules:
        raise RuntimeError("tensorflow is already imported; call forbid_tensorflow() first")
    if not any(isinstance(finder, _TensorFlowBlocker) for finder in sys.meta_path):
        sys.meta_path.insert(0, _TensorFlowBlocker())


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not) as a NumPy array: uint8 images `[N, H, W]` or labels `[N]`.

    The dimension count comes from the header; the parsing is the ingest's own
    (`contrastive.data.sources.read_idx`).
    """
    from contrastive.data.sources import read_idx as read_idx_file

    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as handle:
        magic = int.from_bytes(handle.read(4), "big")
    if magic >> 8 != 0x08:  # 0x08: unsigned byte payload
        raise ValueError(f"{path} is not an unsigned-byte IDX file. Received: magic={magic:#x}")
    return read_idx_file(str(path), magic & 0xFF)


def load_fashion_mnist(
    split: str, *, limit: int | None = None, directory: Path = FASHION_MNIST_DIR
) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST `train` (60k) or `test` (10k): `(x uint8 [N, 28, 28, 1], y int64 [N])`.

    `limit` keeps the first N examples (the IDX order is already mixed across classes).
    """
    if split not in _IDX_FILES:
        raise ValueError(f"split must be one of {list(_IDX_FILES)}. Received: split={split!r}")
    images_name, labels_name = _IDX_FILES[split]
    x = read_idx(Path(directory) / images_name)[..., None]
    y = read_idx(Path(directory) / labels_name).astype(np.int64)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return np.ascontiguousarray(x), y


def split_train_validation(x, y, *, validation_fraction=0.1, seed=0):
    """The pipeline's stratified, seeded hold-out (`contrastive.data.splits`): the same
    54k / 6k cut as `make run`'s ingest; the train rows come in a seeded random order."""
    from contrastive.data.splits import hold_out_validation

    kept, held_out = hold_out_validation(y, validation_fraction, seed)
    train_rows = np.random.default_rng(seed).permutation(kept)
    return (x[train_rows], y[train_rows]), (x[held_out], y[held_out])


def resize_images(x: np.ndarray, size: int) -> np.ndarray:
    """uint8 `[N, H, W, C]` resized to `size` x `size` (bilinear, through Keras ops)."""
    if x.shape[1] == size and x.shape[2] == size:
        return x
    import keras

    out = []
    for start in range(0, len(x), 4096):
        chunk = keras.ops.image.resize(x[start : start + 4096].astype("float32"), (size, size))
        out.append(np.clip(np.round(keras.ops.convert_to_numpy(chunk)), 0, 255).astype(np.uint8))
    return np.concatenate(out)


def cpu_model() -> str:
    path = Path("/proc/cpuinfo")
    if path.exists():
        for line in path.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(package: str) -> str | None:
    for name in (package, f"{package}-cpu"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def machine() -> dict:
    """Machine and software facts recorded next to every figure (imports no framework)."""
    return {
        "hostname": platform.node(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "keras": _version("keras"),
        "tensorflow": _version("tensorflow"),
        "jax": _version("jax"),
        "numpy": np.__version__,
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
    }


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def median(values):
    return float(statistics.median(values)) if values else float("nan")


def current_rss_bytes() -> int:
    """Resident set size of this process: psutil when installed, else /proc (Linux)."""
    try:
        import psutil
    except ImportError:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise
    return psutil.Process().memory_info().rss


class PeakMemory:
    """Peak resident set size (RSS) of this process, sampled by a thread every `interval` s.

    `tracemalloc` and `resource.getrusage` miss or mis-scope the framework's native buffers
    (TensorFlow/XLA/oneDNN allocate outside Python); RSS sampled from the OS sees them.
    """

    def __init__(self, interval: float = 0.02):
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.start_bytes = current_rss_bytes()
        self.peak_bytes = self.start_bytes

    def _run(self):
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, current_rss_bytes())
            self._stop.wait(self._interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, current_rss_bytes())


def accelerator_peak_bytes() -> int | None:
    """Peak memory in use on the first JAX accelerator (GPU), or None on CPU / other backends."""
    if os.environ.get("KERAS_BACKEND") != "jax":
        return None
    import jax

    device = jax.devices()[0]
    if device.platform == "cpu":
        return None
    stats = device.memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def step_timer(warmup_steps: int):
    """A Keras callback timing steady-state training steps.

    Each `on_train_batch_end` waits for the step's loss (so asynchronous dispatch cannot hide
    compute) and records the time. Steps before `warmup_steps` (compilation, first iterator
    fill) are excluded: `rate(items_per_step)` is items/s over the remaining steps.
    """
    import keras

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_train_begin(self, logs=None):
            self.times = [time.perf_counter()]

        def on_train_batch_end(self, batch, logs=None):
            if logs and "loss" in logs:
                np.asarray(keras.ops.convert_to_numpy(logs["loss"]))
            self.times.append(time.perf_counter())

        def timed_steps(self) -> int:
            return len(self.times) - 1 - warmup_steps

        def step_seconds(self) -> list[float]:
            return list(np.diff(self.times[warmup_steps:]))

        def rate(self, items_per_step: int) -> float:
            steps = self.timed_steps()
            if steps < 1:
                raise ValueError(
                    f"no step after the {warmup_steps} warm-up steps; run more steps. "
                    f"Received: {len(self.times) - 1} steps"
                )
            return steps * items_per_step / (self.times[-1] - self.times[warmup_steps])

    return StepTimer()


def run_worker(script: Path, spec: dict, *, backend: str, timeout: float = 1800) -> dict:
    """Runs `script --worker SPEC` in a fresh process with `KERAS_BACKEND=backend`.

    A fresh process per worker gives a clean backend choice and a clean peak-RSS figure. The
    worker prints its result as the last stdout line, JSON.
    """
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    src = str(REPO_ROOT / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    completed = subprocess.run(
        [sys.executable, str(script), "--worker", json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        tail = (completed.stdout + completed.stderr)[-4000:]
        raise RuntimeError(
            f"worker {spec} on {backend} failed (exit {completed.returncode}):\n{tail}"
        )
    return json.loads(lines[-1])


def write_json(path: Path, payload: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    """A Markdown table on stdout (pasteable into docs/BENCHMARKS.md)."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(" --- " for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(_cell(value) for value in row) + " |")


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
    return str(value)
