"""`pipelines.task_server`: a local run's tasks forked from one warm interpreter. Real
processes throughout: a server preloading a marker module, task processes started as kfp.local
starts them (`python -m pipelines.task_main MODULE ...`), their streams, statuses, signals and
refusals. The whole run through it: every e2e run (tests/e2e), whose losses equal a cold run's
(`tests/e2e/test_local_run.py`)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pipelines import task_server
from pipelines.local.run import warm_tasks

# The module the test servers preload: it imports NumPy's global generator (as TensorFlow
# does) and sets a variable (as TensorFlow's import sets TF_CPP_MIN_LOG_LEVEL).
MARKER = "import os\nimport numpy.random\nos.environ.setdefault('SET_BY_IMPORT', 'yes')\n"
# The child's view, printed by the probe task: whether the server's preloaded marker is
# there (a fork of the server), its process id, what the marker's import set in the
# environment, and a draw from NumPy's global generator.
PROBE = """\
import json, os, sys, time
import numpy as np
seen = {'argv': sys.argv[1:], 'cwd': os.getcwd(), 'value': os.environ.get('PROBE_VALUE'),
        'warm': 'warm_marker' in sys.modules, 'pid': os.getpid(),
        'set_by_import': os.environ.get('SET_BY_IMPORT'), 'draw': np.random.random()}
print(json.dumps(seen), flush=True)
print('to stderr', file=sys.stderr, flush=True)
action = sys.argv[1] if len(sys.argv) > 1 else ''
if action == 'fail':
    raise SystemExit(3)
if action == 'sleep':
    open(sys.argv[2], 'w').write(str(os.getpid()))
    time.sleep(120)
if action == 'segv':
    os.kill(os.getpid(), 11)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is gone too
        return stat.read().split(") ")[1][0] != "Z"


def _wait_until(condition, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _seen(result) -> dict:
    return json.loads(result.stdout.splitlines()[0])


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "probe.py").write_text(PROBE)
    (tmp_path / "warm_marker.py").write_text(MARKER)
    return tmp_path


@pytest.fixture
def environ(workdir):
    """The environment both the server and the tasks start in."""
    paths = [str(workdir), *sys.path]
    env = {k: v for k, v in os.environ.items() if k != task_server.SERVER_VARIABLE}
    return {**env, "PYTHONPATH": os.pathsep.join(paths)}


@pytest.fixture
def server(workdir, environ):
    """A running server preloading `warm_marker`; yields its socket's path."""
    path = str(workdir / "s.sock")
    process = task_server.start(path, None, environ, ("warm_marker",))
    assert _wait_until(lambda: os.path.exists(path)), "the server never listened"
    assert not os.path.exists(task_server.starting_path(path))  # gone once it listens
    yield path
    process.terminate()
    assert process.wait(timeout=20) == 0
    assert not os.path.exists(path)


def _task(workdir, environ, *args, server=None, wait=True, timeout=60, **env):
    env = {**environ, **env}
    if server is not None:
        env[task_server.SERVER_VARIABLE] = server
    command = [sys.executable, "-m", "pipelines.task_main", "probe", *args]
    if not wait:
        return subprocess.Popen(command, cwd=workdir, env=env, text=True)
    return subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_a_task_runs_in_a_child_of_the_server_with_its_own_arguments_directory_and_streams(
    workdir, environ, server
):
    subdir = workdir / "elsewhere"
    subdir.mkdir()
    result = _task(subdir, environ, "a", "b", server=server, PROBE_VALUE="mine")
    assert result.returncode == 0, result.stderr
    seen = _seen(result)
    assert seen == {
        **seen,
        **{"argv": ["a", "b"], "cwd": str(subdir), "value": "mine", "warm": True},
        "set_by_import": "yes",  # as the import in a fresh process would have set it
    }
    child = seen["pid"]
    assert f"this task runs in process {child}, forked from the task server" in result.stderr
    assert result.stderr.rstrip().endswith("to stderr")
    # Two tasks, two children: each a fork of its own
    again = _task(workdir, environ, server=server, PROBE_VALUE="other")
    assert again.returncode == 0 and _seen(again)["value"] == "other" and _seen(again)["warm"]
    assert _seen(again)["pid"] != child
    # NumPy's global generator seeded afresh in each child, as in a fresh process
    assert _seen(again)["draw"] != seen["draw"]


@pytest.mark.slow
def test_the_task_process_exits_with_its_childs_status_or_dies_by_its_signal(
    workdir, environ, server
):
    failed = _task(workdir, environ, "fail", server=server)
    assert failed.returncode == 3 and _seen(failed)["warm"]
    crashed = _task(workdir, environ, "segv", server=server)
    assert crashed.returncode == -signal.SIGSEGV


@pytest.mark.slow
def test_a_killed_task_process_takes_its_child_with_it_and_a_stop_reaches_the_child(
    workdir, environ, server
):
    for stop in (signal.SIGKILL, signal.SIGTERM):
        pid_file = workdir / f"child-{stop}.pid"
        task = _task(workdir, environ, "sleep", str(pid_file), server=server, wait=False)
        assert _wait_until(lambda f=pid_file: f.exists() and f.read_text())
        child = int(pid_file.read_text())
        assert child != task.pid and _alive(child)
        task.send_signal(stop)
        assert task.wait(timeout=20) == -stop
        assert _wait_until(lambda c=child: not _alive(c)), f"child {child} outlived {stop!r}"


@pytest.mark.slow
def test_a_task_whose_backend_differs_or_without_a_server_imports_afresh(workdir, environ, server):
    backend = "jax" if os.environ.get("KERAS_BACKEND") != "jax" else "tensorflow"
    other = _task(workdir, environ, server=server, KERAS_BACKEND=backend)
    assert other.returncode == 0
    assert not _seen(other)["warm"]  # not a fork of the server
    assert "the task's KERAS_BACKEND differs from the task server's" in other.stderr
    assert "this task imports afresh" in other.stderr
    missing = _task(workdir, environ, server=str(workdir / "none.sock"))
    assert missing.returncode == 0 and not _seen(missing)["warm"]
    assert f"no task server at {workdir / 'none.sock'}" in missing.stderr


@pytest.mark.slow
def test_a_task_started_while_the_server_imports_waits_for_it_and_runs_warm(workdir, environ):
    (workdir / "slow_marker.py").write_text("import time\ntime.sleep(2)\n")
    path = str(workdir / "s.sock")
    process = task_server.start(path, None, environ, ("warm_marker", "slow_marker"))
    try:
        result = _task(workdir, environ, server=path)  # at once: the server is importing
        assert result.returncode == 0 and _seen(result)["warm"], result.stderr
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("failure", "status", "left"),
    [("raise ImportError('no')", 1, False), ("import os\nos._exit(3)", 3, True)],
    ids=["import-error", "crash"],
)
def test_a_server_that_fails_to_start_lets_its_waiting_task_start_afresh_at_once(
    workdir, environ, failure, status, left
):
    """An import error removes the starting file; a crash leaves it, and a zombie server
    (not yet reaped by its parent) counts as gone: either way the task stops waiting."""
    (workdir / "broken_marker.py").write_text(f"import time\ntime.sleep(1)\n{failure}\n")
    path = str(workdir / "s.sock")
    process = task_server.start(path, subprocess.DEVNULL, environ, ("broken_marker",))
    # well within STARTING_SECONDS (the subprocess timeout), and the server not reaped yet
    assert task_server.STARTING_SECONDS >= 60
    result = _task(workdir, environ, server=path, timeout=30)
    assert result.returncode == 0 and not _seen(result)["warm"]
    assert f"no task server at {path}" in result.stderr
    assert process.wait(timeout=20) == status
    assert os.path.exists(task_server.starting_path(path)) is left


@pytest.mark.slow
def test_the_server_ends_with_its_parent_and_kills_its_children(workdir, environ):
    """The run (here a shell) is SIGKILLed: the server notices within its check and ends,
    killing a task child it still held."""
    path = str(workdir / "s.sock")
    script = (
        f"{sys.executable} -m pipelines.task_server {path} warm_marker & echo $! > server.pid; "
        "exec sleep 120"
    )
    run = subprocess.Popen(["sh", "-c", script], cwd=workdir, env=environ)
    assert _wait_until(lambda: os.path.exists(path))
    server_pid = int((workdir / "server.pid").read_text())
    pid_file = workdir / "child.pid"
    task = _task(workdir, environ, "sleep", str(pid_file), server=path, wait=False)
    assert _wait_until(lambda: pid_file.exists() and pid_file.read_text())
    child = int(pid_file.read_text())
    run.kill()
    run.wait(timeout=10)
    assert _wait_until(lambda: not _alive(server_pid)), "the server outlived its parent"
    assert not _alive(child)
    assert task.wait(timeout=20) != 0  # its task fails: the server went away
    assert not os.path.exists(path)


@pytest.mark.slow
def test_warm_tasks_start_and_end_a_server_or_none_when_switched_off(tmp_path, monkeypatch):
    log = tmp_path / "server.log"
    monkeypatch.setenv(task_server.WARM_VARIABLE, "0")
    with warm_tasks(log):
        assert task_server.SERVER_VARIABLE not in os.environ
    assert not log.exists()
    monkeypatch.setenv(task_server.WARM_VARIABLE, "1")
    with warm_tasks(log):
        path = os.environ[task_server.SERVER_VARIABLE]
        assert _wait_until(lambda: os.path.exists(path), 60)
    assert task_server.SERVER_VARIABLE not in os.environ
    assert not os.path.exists(path) and not os.path.exists(os.path.dirname(path))


# A training as a task runs one: a seeded Keras model fitted by the backend for three epochs
# (its augmentation-free core: the backend's kernels, its RNG, its compiled step); prints its
# losses and weights.
TRAIN_PROBE = """\
import json, sys
import keras
import numpy as np
keras.utils.set_random_seed(0)
x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
y = (x[:, :3].sum(axis=1) > 0).astype("int32")
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                          keras.layers.Dropout(0.2), keras.layers.Dense(2)])
model.compile(optimizer=keras.optimizers.Adam(0.01),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
history = model.fit(x, y, batch_size=16, epochs=3, verbose=0).history
weights = [w.tolist() for w in model.get_weights()]
warm = "warm_marker" in sys.modules
print(json.dumps({"warm": warm, "loss": history["loss"], "weights": weights}))
"""


@pytest.mark.slow
@pytest.mark.backend
def test_a_model_trained_in_a_warm_child_equals_one_trained_afresh(tmp_path):
    """Forking after the backend's import changes no number: the same seeded training's
    losses and weights, warm and cold, on this backend (TensorFlow's and JAX's imports start
    no runtime; a whole run's histories: the README's measurement)."""
    (tmp_path / "train_probe.py").write_text(TRAIN_PROBE)
    (tmp_path / "warm_marker.py").write_text("")
    env = {k: v for k, v in os.environ.items() if k != task_server.SERVER_VARIABLE}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), *sys.path])
    path = str(tmp_path / "s.sock")
    preload = [*task_server.PRELOAD, "warm_marker"]
    server = subprocess.Popen(
        [sys.executable, "-m", "pipelines.task_server", path, *preload], env=env, cwd=tmp_path
    )
    trained = {}
    try:
        for name, extra in (("cold", {}), ("warm", {task_server.SERVER_VARIABLE: path})):
            if extra:
                assert _wait_until(lambda: os.path.exists(path), 120)
            result = subprocess.run(
                [sys.executable, "-m", "pipelines.task_main", "train_probe"],
                cwd=tmp_path,
                env={**env, **extra},
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert result.returncode == 0, result.stderr[-3000:]
            trained[name] = json.loads(result.stdout.splitlines()[-1])
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert trained["warm"]["warm"] and not trained["cold"]["warm"]
    assert len(trained["cold"]["loss"]) == 3
    assert trained["warm"]["loss"] == trained["cold"]["loss"]
    assert trained["warm"]["weights"] == trained["cold"]["weights"]


@pytest.mark.parametrize(
    ("value", "platform", "wanted"),
    [
        (None, "linux", True),
        ("", "linux", True),
        ("1", "linux", True),
        ("0", "linux", False),
        ("off", "linux", False),
        ("No", "linux", False),
        (None, "darwin", False),
        ("1", "darwin", True),
        ("0", "darwin", False),
    ],
)
def test_warm_tasks_are_on_linux_unless_switched_off_and_elsewhere_when_asked(
    value, platform, wanted
):
    environ = {} if value is None else {task_server.WARM_VARIABLE: value}
    assert task_server.warm_tasks_wanted(environ, platform) is wanted


def test_only_variables_read_at_import_must_match():
    server = {"KERAS_BACKEND": "tensorflow", "HOME": "/a", "PYTHONUNBUFFERED": "1"}
    assert task_server.differing_variable({**server, "HOME": "/b", "X": "1"}, server) is None
    assert task_server.differing_variable({"HOME": "/a"}, server) == "KERAS_BACKEND"
    assert task_server.differing_variable({**server, "XLA_FLAGS": "--x"}, server) == "XLA_FLAGS"
    assert task_server.differing_variable({**server, "PYTHONUNBUFFERED": ""}, server) is None
