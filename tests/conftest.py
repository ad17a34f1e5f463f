"""The suite's shared fixtures and its two rules, for every test under tests/.

Rules (checked here, so they cannot drift):
- No network: a socket connects to loopback only (`_loopback_only`); the cloud tests talk to
  loopback servers that speak the services' protocols.
- `slow` marks a test that trains a model (`keras.Model.fit`), runs a pipeline through
  `kfp.local` or starts a Python process (a fresh interpreter, a CLI command as a user runs
  it); `make test-quick` (the inner loop) leaves those out. An unmarked test that does any of
  these fails at once, naming the mark; a test that uses a fixture of `SLOW_FIXTURES` is
  marked `slow` here.

Shared fixtures (session scope: built once, read by many tests; copy before changing):
- `separable_npz`, `tiny_dataset`: a separable 4-class image set and its ingest (no training).
- `trained_models`: an encoder, a classifier on it and a baseline, trained once by the tiny
  profile (`slow`).
- `tiny_runs`: `contrastive run --profile tiny` on the separable set, once per distinct set of
  flags in a session, with the toy plugin method installed; `tiny_run`: the e2e tests' shared
  run, every method at 100 and 50 % of the labels (`slow`).
"""

import contextlib
import functools
import os
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

# Fixtures that train or run kfp.local: a test that uses one is `slow`.
SLOW_FIXTURES = {"trained_models", "tiny_runs", "tiny_run"}
# Session fixtures read by several modules: under pytest-xdist (`-n 2 --dist loadgroup`) their
# tests share one worker, so each is built once; any other test stays with its module's
# tests (and the module's fixtures are built once).
SHARED_FIXTURES = ("tiny_run", "trained_models")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups into node ids
def pytest_collection_modifyitems(config, items):
    grouped = config.pluginmanager.hasplugin("xdist")
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if SLOW_FIXTURES & names:
            item.add_marker(pytest.mark.slow)
        if grouped:
            shared = [name for name in SHARED_FIXTURES if name in names]
            group = shared[0] if shared else item.nodeid.split("::")[0]
            item.add_marker(pytest.mark.xdist_group(group))


def pytest_xdist_node_collection_finished(node, ids):
    """Under `--dist loadgroup` the groups must reach the scheduler: pytest-xdist 3.8 sends
    them as node-id suffixes, which pytest 9.2 silently dropped (pytest-dev/pytest-xdist#1386):
    every worker then built the shared runs again. Stop at once, saying so."""
    if node.config.getvalue("dist") != "loadgroup" or not ids:
        return
    lost = [nodeid for nodeid in ids if "@" not in nodeid]
    if lost:
        pytest.exit(
            f"--dist loadgroup: {len(lost)} of {len(ids)} tests reached pytest-xdist without "
            f"their group (first: {lost[0]}), so the shared fixtures would be built on every "
            f"worker; pytest {pytest.__version__} with this pytest-xdist (pyproject.toml pins "
            "pytest < 9.2)",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )


# The unmarked test whose setup or call is running now (None: a `slow` test, or none).
_unmarked = {"item": None}


def _refused_unless_slow(original, what: str):
    @functools.wraps(original)
    def guarded(*args, **kwargs):
        item = _unmarked["item"]
        if item is not None:
            message = (
                f"{item.nodeid} {what} but is not marked slow: mark it `@pytest.mark.slow` "
                "(make test-quick leaves it out), or read the session fixtures of "
                "tests/conftest.py"
            )
            if threading.current_thread() is threading.main_thread():
                pytest.fail(message, pytrace=False)
            # Off the main thread (a Beam DirectRunner worker, a thread pool) a failure here
            # would end only that thread, and the test would wait for it until its timeout:
            # let the call through and fail the test when its phase ends (`_late_refusal`).
            _unmarked.setdefault("late", message)
        return original(*args, **kwargs)

    guarded.refuses_unmarked_tests = True
    return guarded


def _python_child(args, executable=None) -> bool:
    """Whether a `subprocess.Popen(args, executable=...)` starts a Python interpreter."""
    if executable is None and isinstance(args, (str, bytes)):  # a command line: its first word
        executable = (os.fsdecode(args).split() or [""])[0]
    elif executable is None:
        executable = args if isinstance(args, os.PathLike) else next(iter(args), "")
    name = os.path.basename(os.fsdecode(executable))
    return os.fsdecode(executable) == sys.executable or name.startswith("python")


def _install_guards() -> None:
    """Wrap `keras.Model.fit`, `kfp.local.init` and `subprocess.Popen.__init__` (a Python
    child: an interpreter start, TensorFlow's import, seconds) once each is imported, checked
    before every test (collecting the suite imports all three; a selection that needs no
    TensorFlow does not pay for its import here); tests may still monkeypatch them."""
    if not getattr(subprocess.Popen.__init__, "refuses_unmarked_tests", False):
        start = subprocess.Popen.__init__
        refused = _refused_unless_slow(start, "starts a Python process")

        @functools.wraps(start)
        def init(self, args, *rest, **kwargs):
            if _python_child(args, kwargs.get("executable")):
                self._child_created = False  # what Popen.__del__ reads first
                return refused(self, args, *rest, **kwargs)
            return start(self, args, *rest, **kwargs)

        init.refuses_unmarked_tests = True
        subprocess.Popen.__init__ = init
    keras = sys.modules.get("keras")
    if keras is not None and not getattr(keras.Model.fit, "refuses_unmarked_tests", False):
        keras.Model.fit = _refused_unless_slow(keras.Model.fit, "trains a model (Model.fit)")
    local = sys.modules.get("kfp.local")
    if local is not None and not getattr(local.init, "refuses_unmarked_tests", False):
        local.init = _refused_unless_slow(local.init, "runs a pipeline through kfp.local")


class _GuardOnImport:
    """A `sys.meta_path` finder: once `keras` or `kfp.local` finishes importing (a test may
    import either first), the guards wrap it."""

    NAMES = ("keras", "kfp.local")

    def find_spec(self, name, path=None, target=None):
        if name not in self.NAMES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _Guarded(spec.loader)
                return spec
        return None


class _Guarded:
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        _install_guards()


sys.meta_path.insert(0, _GuardOnImport())


@contextlib.contextmanager
def _watching(item):
    _install_guards()
    _unmarked["item"] = None if item.get_closest_marker("slow") else item
    try:
        yield
    finally:
        _unmarked["item"] = None


def _late_refusal() -> None:
    """Fails the test phase that just ended if an unmarked call was refused off the main
    thread during it (`_refused_unless_slow`)."""
    message = _unmarked.pop("late", None)
    if message is not None:
        pytest.fail(message, pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    with _watching(item):
        result = yield
    _late_refusal()
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    with _watching(item):
        result = yield
    _late_refusal()
    return result


def pytest_collection_finish(session):
    _install_guards()


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch):
    """A test that tries to open a socket to anything but loopback fails at once."""
    real_connect = socket.socket.connect

    def connect(self, address):
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise ConnectionRefusedError(f"tests reach loopback only. Received: {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


def separable_images(num_per_class: int, *, num_classes: int = 4, size: int = 28, seed: int = 0):
    """uint8 [N, size, size, 1] images: class k is a bright horizontal band at height k, plus
    noise. Bands survive horizontal flips and mild crops, so the classes stay separable under the
    augmentations (quadrant patterns would not: a flip swaps left and right)."""
    rng = np.random.default_rng(seed)
    band = size // num_classes
    images, labels = [], []
    for label in range(num_classes):
        for _ in range(num_per_class):
            image = rng.integers(0, 60, size=(size, size, 1))
            top = label * band + rng.integers(0, 2)
            image[top : top + band - 2, 2 : size - 2] = rng.integers(180, 255)
            images.append(image)
            labels.append(label)
    order = rng.permutation(len(labels))
    return np.asarray(images, dtype=np.uint8)[order], np.asarray(labels, dtype=np.int64)[order]


@pytest.fixture(scope="session")
def separable_npz(tmp_path_factory):
    """An npz source (x_train, y_train, x_test, y_test) of separable 28x28x1 images."""
    x_train, y_train = separable_images(100, seed=1)
    x_test, y_test = separable_images(25, seed=2)
    path = tmp_path_factory.mktemp("npz") / "separable.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


@pytest.fixture(scope="session")
def tiny_dataset(separable_npz, tmp_path_factory):
    """The separable set ingested to TFRecords (train 360 / validation 40 / test 100)."""
    from contrastive import data

    output = tmp_path_factory.mktemp("datasets") / "separable"
    data.ingest(
        f"npz:{separable_npz}", str(output), validation_fraction=0.1, seed=0, progress=False
    )
    return str(output)


@pytest.fixture
def untrained_classifier(tmp_path):
    """`untrained_classifier(num_classes, image_shape, name)`: a complete classifier model
    directory as a training step leaves one (a dense layer on the pixels, weights seeded, no
    training) in `tmp_path / name`; for the tests of what reads, judges or ships a model."""

    def build(num_classes: int = 3, image_shape=(8, 8, 1), name: str = "candidate") -> str:
        import keras

        from contrastive.config import load_config
        from contrastive.modeldir import save_model_dir

        keras.utils.set_random_seed(0)
        inputs = keras.Input(tuple(image_shape))
        x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
        outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
        model = keras.Model(inputs, outputs)
        model.predict(np.zeros((1, *image_shape), np.uint8), verbose=0)
        info = {"kind": "classifier", "num_classes": num_classes, "image_shape": list(image_shape)}
        model_dir = tmp_path / name
        save_model_dir(
            model_dir, model, config=load_config("tiny"), history={}, metrics={}, info=info
        )
        return str(model_dir)

    return build


class Preempted(BaseException):
    """A node lost mid-training: a BaseException, so no `except Exception` of ours handles it
    (nothing is cleaned up or recorded, as after a SIGKILL)."""


@pytest.fixture
def preempt(monkeypatch):
    """`preempt.at_epoch(n)`: the next training in this process dies at the end of epoch `n`
    (1-based) after its TensorBoard logs and before its checkpoint (a step's TensorBoard
    callback runs before its checkpoint callbacks); returns the exception type to expect.
    A kill of a real process is tested once, end to end (tests/e2e)."""
    import keras

    logged = keras.callbacks.TensorBoard.on_epoch_end

    def at_epoch(epoch: int) -> type[BaseException]:
        def on_epoch_end(self, index, logs=None):
            logged(self, index, logs)
            if index + 1 == epoch:
                monkeypatch.setattr(keras.callbacks.TensorBoard, "on_epoch_end", logged)
                raise Preempted(f"preempted at the end of epoch {epoch}")

        monkeypatch.setattr(keras.callbacks.TensorBoard, "on_epoch_end", on_epoch_end)
        return Preempted

    return SimpleNamespace(at_epoch=at_epoch)


@pytest.fixture(scope="session")
def trained_models(tiny_dataset, tmp_path_factory) -> "TrainedModels":
    """Model directories trained once per session on `tiny_dataset` by the tiny profile, as
    the pipeline's steps leave them: `encoder` (SupCon), `classifier` (its fitted head) and
    `baseline` (cross-entropy). Shared: read them, copy one before changing it. They train
    inside `whole_split_guard` (tests/streaming_guard.py: a step that loads a whole split
    fails here), and the fixture keeps what `test_streaming_steps.py` checks of that: the
    configuration, the pretraining step's result and every `read_split` call."""
    from contrastive import tasks
    from contrastive.config import resolve_config
    from tests.streaming_guard import whole_split_guard

    root = tmp_path_factory.mktemp("trained")
    # data.limit=null: the steps see the whole splits (the tiny profile would cap them); a
    # kNN monitor on 16 images, so that it reads a bounded sample
    config = resolve_config("tiny", overrides=["data.limit=null", "train.knn_max_examples=16"])
    with whole_split_guard(tiny_dataset) as reads:
        pretrained = tasks.run_pretrain(tiny_dataset, root / "encoder", config, method="supcon")
        tasks.run_train_classifier(tiny_dataset, root / "encoder", root / "classifier", config)
        tasks.run_train_baseline(tiny_dataset, root / "baseline", config)
    return TrainedModels(
        {name: str(root / name) for name in ("encoder", "classifier", "baseline")},
        config=config,
        pretrained=pretrained,
        reads=tuple(reads),
    )


class TrainedModels(dict):
    """`trained_models`: {"encoder", "classifier", "baseline": model directory}, with the
    `config` they trained by, `pretrained` (`tasks.run_pretrain`'s result) and `reads` (the
    `read_split` calls of the three steps, `(split, batch_size, options)`)."""

    def __init__(self, models, *, config, pretrained, reads):
        super().__init__(models)
        self.config, self.pretrained, self.reads = config, pretrained, reads


@dataclass(frozen=True)
class TinyRun:
    """A finished `contrastive run`: its runs folder (`latest` is the run, `registry` its
    champion registry) and what it printed."""

    runs: Path
    stdout: str
    stderr: str
    env: dict  # the run's environment: the toy plugin installed (tests/toy_method.py)

    @property
    def latest(self) -> Path:
        return self.runs / "latest"


@pytest.fixture(scope="session")
def tiny_runs(separable_npz, tmp_path_factory):
    """`tiny_runs(*flags)`: `contrastive run --profile tiny --source npz:<separable set>
    --registry <runs>/registry <flags>` in a child process, as a user starts it; run once per
    distinct `flags` in a session (tests that can read the same run pass the same flags) and
    asserted to succeed, with the toy plugin method installed (`--methods ...,toy` runs it).
    Returns a `TinyRun`."""
    from tests import toy_method
    from tests.e2e.cli_run import run_ok

    done: dict[tuple, TinyRun] = {}
    env = toy_method.install(tmp_path_factory.mktemp("plugin"))

    def run(*flags: str, timeout: float = 1200) -> TinyRun:
        if flags not in done:
            runs = tmp_path_factory.mktemp("tiny-run")
            result = run_ok(
                f"npz:{separable_npz}",
                runs,
                "--registry",
                str(runs / "registry"),
                *flags,
                timeout=timeout,
                env=env,
            )
            done[flags] = TinyRun(runs, result.stdout, result.stderr, env)
        return done[flags]

    return run


# The e2e tests' shared run: every method and the toy plugin method, at 100 and 50 % of the
# labels (tests/e2e/test_local_run.py reads the whole run, tests/e2e/test_few_labels.py its
# curve and the plugin: one run for both, 101 s against 50 + 73 s for two, measured alone),
# one epoch, the machine's compute precision; no training-time estimate (it measures the steps
# first, ~40 s here: tests/e2e/test_own_images.py reads it on its run).
TINY_RUN_FLAGS = (
    "--methods",
    "baseline,supcon,simclr,toy",
    "--labeled-fractions",
    "1,0.5",  # any order: the DAG sorts them
    "--epochs",
    "1",
    "--no-estimate",
    "--override",
    "train.mixed_precision=auto",  # the default of every other profile; tiny pins float32
)


@pytest.fixture(scope="session")
def tiny_run(tiny_runs) -> TinyRun:
    """The shared tiny run (`TINY_RUN_FLAGS`), read by every e2e test that needs a default
    run: add assertions on it rather than another run."""
    return tiny_runs(*TINY_RUN_FLAGS)
