"""The suite's rules (tests/conftest.py) hold: a socket reaches loopback only, and within an
unmarked test, training, a kfp.local run or a Python child process fails the test, naming
the `slow` mark (what keeps `make test-quick` quick)."""

import re
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest


@pytest.fixture
def rules(request):
    """tests/conftest.py as pytest loaded it (importing it again would make a second copy)."""
    path = Path(__file__).with_name("conftest.py")
    (module,) = [
        plugin
        for plugin in request.config.pluginmanager.get_plugins()
        if getattr(plugin, "__file__", None) and Path(plugin.__file__) == path
    ]
    return module


def test_a_socket_reaches_loopback_only():
    with pytest.raises(ConnectionRefusedError, match=r"loopback only. Received: \('192.0.2.1'"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    with socket.socket() as server:  # loopback itself works
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        socket.create_connection(server.getsockname(), timeout=5).close()


@pytest.fixture
def refused(request):
    """`refused(what)`: expects this (unmarked) test to fail at once, naming itself, `what` it
    did and the mark."""

    def expect(what):
        name = re.escape(request.node.nodeid)
        message = rf"{name} {what} but is not marked slow: mark it `@pytest.mark.slow`"
        return pytest.raises(pytest.fail.Exception, match=message)

    return expect


def test_an_unmarked_test_may_not_train(refused):
    import keras
    import numpy as np

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(loss="mse")
    with refused(r"trains a model \(Model.fit\)"):
        model.fit(np.zeros((4, 2)), np.zeros((4, 1)), verbose=0)


def test_an_unmarked_test_may_not_run_kfp_local(refused):
    from kfp import local

    with refused("runs a pipeline through kfp.local"):
        local.init(runner=local.SubprocessRunner(use_venv=False))


@pytest.mark.parametrize(
    "args",
    [[sys.executable, "-c", "pass"], ["python3", "-c", "pass"], f"{sys.executable} -c pass"],
)
def test_an_unmarked_test_may_not_start_a_python_process(refused, args):
    with refused("starts a Python process"):
        subprocess.run(args, shell=isinstance(args, str), check=False)


def test_other_processes_and_marked_tests_are_let_through(rules, monkeypatch):
    assert subprocess.run(["true"], check=False).returncode == 0  # not Python
    monkeypatch.setitem(rules._unmarked, "item", None)  # as in a slow test
    assert subprocess.run([sys.executable, "-c", "pass"], check=False).returncode == 0


def test_a_test_of_a_slow_fixture_is_marked_slow(rules):
    marks = []
    item = SimpleNamespace(
        fixturenames=["tmp_path", "trained_models"],
        nodeid="tests/x.py::test_y",
        add_marker=marks.append,
    )
    plain = SimpleNamespace(fixturenames=["tmp_path"], nodeid="tests/x.py::test_z", add_marker=None)
    config = SimpleNamespace(pluginmanager=SimpleNamespace(hasplugin=lambda name: False))
    rules.pytest_collection_modifyitems(config, [item, plain])
    assert [mark.name for mark in marks] == ["slow"]


def test_a_refusal_off_the_main_thread_fails_the_test_after_the_call_not_the_thread(rules, request):
    """A Python child started by a worker thread (Beam's DirectRunner) is let through there, so
    the test does not wait for a thread that died; the test fails when its call ends."""
    import threading

    done = {}

    def worker():
        done["code"] = subprocess.run([sys.executable, "-c", "pass"], check=False).returncode

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive() and done == {"code": 0}  # the thread finished its work
    late = rules._unmarked.pop("late")  # taken here, or this test would fail as it should
    assert late.startswith(f"{request.node.nodeid} starts a Python process but is not marked")
    with pytest.raises(pytest.fail.Exception, match="starts a Python process"):
        rules._unmarked["late"] = late
        rules._late_refusal()
    assert "late" not in rules._unmarked
