"""`pipelines.local.run_with_view` on a two-task pipeline through kfp.local: the states it
reports (running, done, cached, failed), each task's log file, `--verbose`'s stream without
TensorFlow's notices, and the failure message."""

import io
import os
import re
import sys

import pytest
from kfp import dsl, local
from rich.console import Console

from pipelines.local import LocalRunError, run_with_view

NOTICE = "I0000 00:00:1795994672.867316   18957 port.cc:153] oneDNN custom operations are on."


@dsl.component(base_image="python:3.11")
def say(text: str) -> str:
    print("I0000 00:00:1795994672.867316   18957 port.cc:153] oneDNN custom operations are on.")
    print(f"saying {text}")
    return text + "!"


@dsl.component(base_image="python:3.11")
def fail(text: str):
    for line in range(40):
        print(f"line {line} of the failing task")
    raise RuntimeError(f"failing after {text}")


@dsl.pipeline(name="two-steps")
def two_steps(text: str = "a"):
    first = say(text=text).set_display_name("first")
    say(text=first.output).set_display_name("second")


@dsl.pipeline(name="failing")
def failing(text: str = "a"):
    first = say(text=text).set_display_name("first")
    broken = fail(text=first.output).set_display_name("breaks")
    say(text=text).set_display_name("after").after(broken)  # never runs


@pytest.fixture
def kfp_local(tmp_path, monkeypatch):
    # The tasks run `python3 -m kfp.dsl.executor_main`: this interpreter's.
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])

    def init(cache=True):
        local.init(
            runner=local.SubprocessRunner(use_venv=False),
            pipeline_root=str(tmp_path / "artifacts"),
            raise_on_error=False,
            enable_caching=cache,
            cache_root=str(tmp_path / "cache"),
        )

    return init


def _run(pipeline, tmp_path, name, verbose=False):
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False)
    logs = tmp_path / name / "logs"
    logs.mkdir(parents=True)
    view = run_with_view(
        pipeline,
        {},
        title=name,
        logs_dir=logs,
        progress_dir=tmp_path / name / "progress",
        console=console,
        verbose=verbose,
    )
    return view, out.getvalue(), logs


def _states(text):
    lines = [line for line in text.splitlines() if re.match(r"^\s*\d+:\d\d ", line)]
    return [tuple(line.split()[1:3]) for line in lines]


@pytest.mark.slow
def test_states_logs_and_cache(kfp_local, tmp_path):
    kfp_local()
    view, out, logs = _run(two_steps, tmp_path, "fresh")
    assert _states(out) == [
        ("first", "running"),
        ("first", "done"),
        ("second", "running"),
        ("second", "done"),
    ]
    assert out.splitlines()[0] == f"fresh: logs in {logs}"
    assert {p.name for p in logs.iterdir()} >= {"first.log", "second.log"}
    assert "saying a" in (logs / "first.log").read_text()
    assert "saying a!" in (logs / "second.log").read_text()
    assert NOTICE in (logs / "first.log").read_text()  # kept in the file
    assert "saying" not in out  # not shown without verbose

    view, out, logs = _run(two_steps, tmp_path, "cached", verbose=True)
    assert _states(out) == [("first", "cached"), ("second", "cached")]
    assert view.states() == "first cached, second cached"

    kfp_local(cache=False)
    _, out, _ = _run(two_steps, tmp_path, "verbose", verbose=True)
    assert "saying a!" in out  # streamed
    assert "oneDNN" not in out  # without the notices
    assert [s for s in _states(out) if s[1] != "saying"][-1] == ("second", "done")


@pytest.mark.slow
def test_a_failed_task_leads_with_its_cause_and_log_then_a_tail_without_frames(kfp_local, tmp_path):
    kfp_local(cache=False)
    with pytest.raises(LocalRunError) as raised:
        _run(failing, tmp_path, "failing")
    message = str(raised.value).splitlines()
    log = tmp_path / "failing" / "logs" / "breaks.log"
    assert message[:3] == [
        "task breaks failed: RuntimeError: failing after a!",
        f"log: {log}",
        "the last 30 lines of its log (traceback frames left out; -v shows them):",
    ]
    tail = message[3:33]
    assert tail[-1] == "  RuntimeError: failing after a!"
    assert "  line 39 of the failing task" in tail
    assert not any("File " in line or "Traceback" in line for line in tail)
    assert not any('"parameterValues"' in line for line in tail)  # kfp's executor input dump
    assert message[33:] == ["tasks: first done, breaks failed, after waiting"]
    assert raised.value.exit_code == 1

    with pytest.raises(LocalRunError) as raised:  # -v: the frames too
        _run(failing, tmp_path, "verbose", verbose=True)
    message = str(raised.value).splitlines()
    assert message[0] == "task breaks failed: RuntimeError: failing after a!"
    assert message[2] == "the last 30 lines of its log:"
    assert "  Traceback (most recent call last):" in message
    assert any(line.startswith('    File "') for line in message)


_LOG = """\
line before
Traceback (most recent call last):
  File "/x/executor.py", line 453, in execute
    result = self.func(**func_kwargs)
             ^^^^^^^^^^^^^^^^^^^^^^^^
  File "/x/components/ingest_data.py", line 30, in ingest_data
    manifest = tasks.run_ingest(
ValueError: inner

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/x/sources.py", line 12, in open_source
    raise DataError(f"{source}: a .zip archive is not an image folder")
contrastive.data.errors.DataError: /data/photos.zip: a .zip archive is not an image folder
  unzip it first
"""


def test_failure_cause_is_the_last_exception_line_without_its_module_path():
    from pipelines.local.logs import failure_cause, without_frames

    lines = _LOG.splitlines()
    assert failure_cause(lines) == (
        "DataError: /data/photos.zip: a .zip archive is not an image folder"
    )
    assert without_frames(lines) == [
        "line before",
        "ValueError: inner",
        "",
        "During handling of the above exception, another exception occurred:",
        "",
        "contrastive.data.errors.DataError: /data/photos.zip: a .zip archive is not an image "
        "folder",
        "  unzip it first",
    ]
    assert failure_cause(["no traceback", "the last line", ""]) == "the last line"


def test_task_names_are_the_display_names_in_run_order():
    from pipelines.dag import build_pipeline
    from pipelines.local.kfp_hooks import task_names

    names = task_names(build_pipeline(target="local"))
    shown = list(names.values())
    assert len(shown) == 12 and shown[0] == "ingest" and shown[-1] == "compare-and-report"
    assert shown[1] == "check-drift"  # then the tasks of the retrain condition, in place
    assert names["ingest-data"] == "ingest" and names["train-baseline"] == "train-baseline"
    assert shown.index("evaluate-supcon") < shown.index("explain-neighbours")
    assert set(shown) >= {"pretrain-supcon", "classifier-simclr", "evaluate-baseline"}
    # every task after the tasks it needs
    assert shown.index("pretrain-supcon") < shown.index("classifier-supcon")
    assert shown.index("classifier-supcon") < shown.index("evaluate-supcon")


def test_run_key_and_earlier_run(tmp_path):
    from pipelines.dag import build_pipeline
    from pipelines.local.run import (
        LOCAL_TENSORBOARD_ROOT,
        _finished_marker,
        earlier_run,
        run_key,
    )

    pipeline = build_pipeline(target="local")
    params = {"profile": "tiny", "epochs": 2, "seed": 0}
    key = run_key(pipeline, params)
    assert key == run_key(build_pipeline(target="local"), dict(reversed(params.items())))
    assert key != run_key(pipeline, {**params, "epochs": 3})
    assert key != run_key(build_pipeline(target="local", methods=["supcon"]), params)

    methods = ("baseline", "supcon", "simclr")
    assert earlier_run(params, methods=methods, runs_dir=tmp_path) is None
    local_key = run_key(pipeline, {"tensorboard_root": LOCAL_TENSORBOARD_ROOT, **params})
    marker = _finished_marker(tmp_path, local_key)
    marker.parent.mkdir()
    marker.write_text("20261130-000000-abcd\n")
    assert earlier_run(params, methods=methods, runs_dir=tmp_path) is None  # its folder is gone
    (tmp_path / "20261130-000000-abcd").mkdir()
    assert earlier_run(params, methods=methods, runs_dir=tmp_path) == "20261130-000000-abcd"
    assert earlier_run({**params, "seed": 1}, methods=methods, runs_dir=tmp_path) is None


def test_no_cache_runs_every_task_afresh_in_a_checkpoint_folder_of_its_own(tmp_path, monkeypatch):
    """What `contrastive run` hands kfp.local (nothing runs): with the cache, runs of the same
    parameters share a checkpoint folder keyed by them (a killed run resumes) and kfp.local's
    cache is on; `--no-cache` turns the cache off and trains from epoch 0 in a folder named
    by its run id, away from any resumable checkpoint."""
    from kfp import local

    import pipelines.local.run as runner  # run_local calls its own module's run_with_view

    class Stop(Exception):
        pass

    inits, params = [], []
    monkeypatch.setattr(local, "init", lambda **options: inits.append(options))

    def view(pipeline, values, **options):
        params.append(dict(values))
        raise Stop

    monkeypatch.setattr(runner, "run_with_view", view)
    values = {"profile": "tiny", "epochs": 2, "seed": 0}
    for run_id, cache in (("a", True), ("b", True), ("c", False), ("d", False)):
        with pytest.raises(Stop):
            runner.run_local(values, runs_dir=tmp_path, run_id=run_id, cache=cache)
    key = runner.run_key(runner.build_pipeline(target="local"), runner._with_local_defaults(values))
    roots = [p["checkpoint_root"] for p in params]
    assert roots == [f"{tmp_path}/checkpoints/{key}"] * 2 + [
        f"{tmp_path}/checkpoints/c",
        f"{tmp_path}/checkpoints/d",
    ]
    assert [options["enable_caching"] for options in inits] == [True, True, False, False]
    assert {options["cache_root"] for options in inits} == {str(tmp_path / ".cache")}
