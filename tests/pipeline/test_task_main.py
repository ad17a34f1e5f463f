"""`pipelines.task_main`: a local run's tasks start through it (kfp's executor, then an
immediate exit with Python's status), and kfp.local still accepts them. A whole run through
it: tests/pipeline/test_local_view.py (a task that passes its output on, a failing task's
traceback and status) and every e2e run."""

import subprocess
import sys

import pytest
from kfp.local import subprocess_task_handler

from pipelines import task_main
from pipelines.local.run import KFP_EXECUTOR, TASK_MAIN, exit_at_once, local_pipeline


def _commands(pipeline) -> list[list[str]]:
    executors = pipeline.pipeline_spec.deployment_spec["executors"]
    return [list(executors[label]["container"]["command"]) for label in executors]


def test_every_task_of_a_local_run_starts_through_task_main_and_kfp_local_accepts_it():
    pipeline = local_pipeline(["baseline", "supcon"], labeled_fractions=(0.5, 1.0))
    commands = _commands(pipeline)
    assert len(commands) > 10
    for command in commands:
        script = " ".join(command)
        assert TASK_MAIN in script and KFP_EXECUTOR not in script
        # kfp.local's own checks of a SubprocessRunner task (a lightweight component)
        handler = subprocess_task_handler.SubprocessTaskHandler
        handler.validate_not_container_component(None, command)
        handler.validate_not_containerized_python_component(None, command)
    assert exit_at_once(pipeline) == 0  # already changed: a second pass changes nothing


def test_a_pipeline_kfp_starts_otherwise_is_left_alone():
    from pipelines.dag import build_pipeline

    pipeline = build_pipeline(target="local", methods=["baseline"])
    before = _commands(pipeline)
    assert exit_at_once(pipeline) == len(before)  # one command line per executor
    after = _commands(pipeline)
    assert [[part.replace(TASK_MAIN, KFP_EXECUTOR) for part in c] for c in after] == before


@pytest.fixture
def module(tmp_path, monkeypatch):
    """`module(body)`: a module `task_main_probe` on the path whose code is `body`."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["python"])  # main() replaces it

    def write(body: str) -> str:
        (tmp_path / "task_main_probe.py").write_text(body)
        sys.modules.pop("task_main_probe", None)
        return "task_main_probe"

    return write


def test_main_runs_the_module_as_main_with_the_arguments_after_it(module, capsys):
    name = module("import sys\nif __name__ == '__main__':\n    print('ran with', sys.argv[1:])\n")
    assert task_main.main(["python", name, "--flag", "value"]) == 0
    assert capsys.readouterr().out == "ran with ['--flag', 'value']\n"


@pytest.mark.parametrize(
    ("body", "status", "stderr"),
    [
        ("raise RuntimeError('broke')", 1, "RuntimeError: broke"),
        ("raise SystemExit(3)", 3, ""),
        ("raise SystemExit()", 0, ""),
        ("raise SystemExit('stopped: bad input')", 1, "stopped: bad input"),
        ("raise KeyboardInterrupt", 130, "KeyboardInterrupt"),
    ],
)
def test_main_returns_the_status_python_would_exit_with(module, capsys, body, status, stderr):
    assert task_main.main(["python", module(body)]) == status
    err = capsys.readouterr().err
    assert stderr in err
    if status == 1 and "Error" in stderr:  # the traceback, as Python prints it
        assert err.startswith("Traceback (most recent call last):")


def test_main_without_a_module_is_a_usage_error(capsys):
    assert task_main.main(["python"]) == 2
    assert "usage: python -m pipelines.task_main MODULE" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize(("body", "status"), [("pass", 0), ("raise ValueError('x')", 1)])
def test_the_process_exits_at_once_with_its_status_and_its_output_flushed(tmp_path, body, status):
    """A real process: the buffered print and the log line reach the pipe before `os._exit`,
    and an atexit handler (interpreter teardown) does not run."""
    (tmp_path / "probe.py").write_text(
        "import atexit, logging, sys\n"
        "logging.basicConfig(stream=sys.stdout, level=logging.INFO)\n"
        "atexit.register(print, 'torn down')\n"
        "print('buffered', end='')\n"
        "logging.info('logged')\n"
        f"{body}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.task_main", "probe"],
        cwd=tmp_path,
        env={"PYTHONPATH": f"{tmp_path}:{':'.join(sys.path)}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == status, result.stderr
    assert result.stdout.startswith("bufferedINFO:root:logged")
    assert "torn down" not in result.stdout
    assert ("ValueError: x" in result.stderr) == (status == 1)
