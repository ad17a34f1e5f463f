"""`pipelines.local.run_with_view` on a two-task pipeline through kfp.local: the states it
reports (running, done, cached, failed), each task's log file, `--verbose`'s stream without
TensorFlow's notices, and the failure message."""

import io
import os
import re
import sys
from pathlib import Path

import pytest
from kfp import dsl, local
from rich.console import Console

from pipelines.local import LocalRunError, run_with_view
from pipelines.local.run import exit_at_once

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


@dsl.pipeline(name="named")
def named():
    say(text=dsl.PIPELINE_JOB_NAME_PLACEHOLDER).set_display_name("first")


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
    # as `contrastive run` starts its tasks: through pipelines.task_main (an in-place change,
    # idempotent: these module-level pipelines run again)
    exit_at_once(pipeline)
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
def test_the_job_is_named_by_the_run_id(kfp_local, tmp_path):
    """The compare step's run_id is `{{$.pipeline_job_name}}`: a registry version is named
    by the run id `contrastive run` shows, not kfp.local's `<pipeline>-<timestamp>`."""
    from pipelines.local.kfp_hooks import job_named

    kfp_local(cache=False)
    with job_named("20261201-101502-3f2a"):
        _, _, logs = _run(named, tmp_path, "named")
    assert "saying 20261201-101502-3f2a\n" in (logs / "first.log").read_text()
    assert (tmp_path / "artifacts" / "20261201-101502-3f2a").is_dir()
    _, _, logs = _run(named, tmp_path, "unnamed")  # outside the block: kfp.local's own name
    assert "saying named-20" in (logs / "first.log").read_text()


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
    assert len(shown) == 15 and shown[0] == "ingest" and shown[-1] == "compare-and-report"
    assert shown[1] == "check-drift"  # then the tasks of the retrain condition, in place
    assert names["ingest-data"] == "ingest" and names["train-baseline"] == "train-baseline"
    assert shown.index("evaluate-supcon") < shown.index("explain-neighbours")
    assert set(shown) >= {"pretrain-supcon", "classifier-simclr", "evaluate-baseline"}
    assert "evaluate-random_init" in shown  # the control beside the contrastive methods
    # every task after the tasks it needs
    assert shown.index("pretrain-supcon") < shown.index("classifier-supcon")
    assert shown.index("classifier-supcon") < shown.index("evaluate-supcon")
    # the README's count of `--profile few-labels` (three fractions, SimCLR and the control's
    # encoder built once)
    few_labels = build_pipeline(target="local", labeled_fractions=(0.01, 0.1, 1.0))
    assert len(task_names(few_labels)) == 36


def test_a_changed_source_or_profile_file_is_a_new_run_and_ingests_again(tmp_path):
    """The stale-cache fault: the same --source naming changed files, or an edited profile
    file, must not be served the old run's outputs; unchanged ones must."""
    from pipelines.local.run import (
        _finished_marker,
        earlier_run,
        local_parameters,
        local_pipeline,
        run_key,
    )

    photos, profile = tmp_path / "photos", tmp_path / "mine.yaml"
    for label in ("cats", "dogs"):
        (photos / label).mkdir(parents=True)
        (photos / label / "1.png").write_bytes(b"png of " + label.encode())
    profile.write_text("base: tiny\ntrain: {epochs: 2}\n")
    pipeline = local_pipeline(None)
    params = {"source": str(photos), "profile": str(profile)}

    def key():
        return run_key(pipeline, local_parameters(pipeline, params))

    first = key()
    methods = ("baseline", "supcon", "simclr")
    runs = tmp_path / "runs"
    (runs / "20261201-000000-abcd").mkdir(parents=True)
    marker = _finished_marker(runs, first)
    marker.parent.mkdir()
    marker.write_text("20261201-000000-abcd\n")
    assert key() == first  # unchanged: the same run, its tasks cached
    assert earlier_run(params, methods=methods, runs_dir=runs) == "20261201-000000-abcd"
    snapshot = local_parameters(pipeline, params)["data_snapshot"]
    # the snapshot is an input of the ingest task: kfp.local's cache key of ingest holds it
    ingest = pipeline.pipeline_spec.root.dag.tasks["ingest-data"]
    assert ingest.inputs.parameters["data_snapshot"].component_input_parameter == "data_snapshot"

    (photos / "eels").mkdir()
    (photos / "eels" / "1.png").write_bytes(b"png of eels")  # a fourth class folder
    assert key() != first
    assert local_parameters(pipeline, params)["data_snapshot"] != snapshot
    assert earlier_run(params, methods=methods, runs_dir=runs) is None
    (photos / "eels" / "1.png").unlink()
    (photos / "eels").rmdir()
    assert key() == first  # the same files again

    profile.write_text("base: tiny\ntrain: {epochs: 3}\n")  # the profile file edited
    assert key() != first
    assert local_parameters(pipeline, {**params, "data_snapshot": "2026-12"})[
        "data_snapshot"
    ].startswith("2026-12 inputs:")


def test_run_key_and_earlier_run(tmp_path):
    from pipelines.local.run import (
        _finished_marker,
        earlier_run,
        local_parameters,
        local_pipeline,
        run_key,
    )

    pipeline = local_pipeline(None)
    params = {"profile": "tiny", "epochs": 2, "seed": 0}
    key = run_key(pipeline, params)
    assert key == run_key(local_pipeline(None), dict(reversed(params.items())))
    assert key != run_key(pipeline, {**params, "epochs": 3})
    assert key != run_key(local_pipeline(["supcon"]), params)

    methods = ("baseline", "supcon", "simclr")
    assert earlier_run(params, methods=methods, runs_dir=tmp_path) is None
    local_key = run_key(pipeline, local_parameters(pipeline, params))
    marker = _finished_marker(tmp_path, local_key)
    marker.parent.mkdir()
    marker.write_text("20261130-000000-abcd\n")
    assert earlier_run(params, methods=methods, runs_dir=tmp_path) is None  # its folder is gone
    (tmp_path / "20261130-000000-abcd").mkdir()
    assert earlier_run(params, methods=methods, runs_dir=tmp_path) == "20261130-000000-abcd"
    assert earlier_run({**params, "seed": 1}, methods=methods, runs_dir=tmp_path) is None


def test_a_cached_task_links_the_tensorboard_logs_of_the_run_that_trained_it(tmp_path):
    from types import SimpleNamespace

    from pipelines.local.run import link_cached_tensorboard

    runs = tmp_path / "runs"
    trained, rerun = runs / "20261201-000000-aaaa", runs / "20261201-000100-bbbb"
    (trained / "tensorboard" / "pretrain-supcon" / "train").mkdir(parents=True)
    (rerun / "tensorboard" / "train-baseline").mkdir(parents=True)  # trained in this run

    def output(run, task):
        return SimpleNamespace(uri=str(run / "artifacts" / "job" / task / "model"))

    cached = {
        "pretrain-supcon": {"encoder_model": output(trained, "pretrain-encoder"), "n": 3},
        "evaluate-supcon": {"evaluation": output(trained, "evaluate-classifier")},  # no logs
        "train-baseline": {"model": output(rerun, "train-baseline")},
    }
    assert link_cached_tensorboard(rerun, cached) == ["pretrain-supcon"]
    link = rerun / "tensorboard" / "pretrain-supcon"
    assert link.is_symlink() and str(link.readlink()).startswith("..")  # the runs move together
    assert (link / "train").is_dir()
    assert not (rerun / "tensorboard" / "evaluate-supcon").exists()
    assert link_cached_tensorboard(rerun, cached) == []  # already there


@pytest.mark.slow
def test_runs_latest_points_at_the_last_successful_run(tmp_path, monkeypatch):
    """A failed run leaves `runs/latest` on the last run that finished (its results, report
    and TensorBoard complete); the failure message names the failed run's log."""
    import json

    from pipelines.local import run as local_run

    runs = tmp_path / "runs"

    def fails(pipeline, params, *, logs_dir, **kwargs):
        raise LocalRunError(f"task ingest failed; full log: {logs_dir / 'ingest.log'}")

    def succeeds(pipeline, params, *, logs_dir, **kwargs):
        job = logs_dir.parent / "artifacts" / "job"
        for task in ("check-drift", "compare-and-report", "explain-neighbours"):
            (job / task).mkdir(parents=True)
        (job / "check-drift" / "drift").write_text(json.dumps({"decision": "train"}))
        suspects = job / "explain-neighbours" / "suspects"
        suspects.write_text("id,label\n")
        summary = {"methods": {}, "profile": "tiny"}
        summary["neighbours"] = {"suspects": {"location": str(suspects)}}
        (job / "compare-and-report" / "results").write_text(json.dumps(summary))
        (job / "compare-and-report" / "report").write_text("<html></html>")

    monkeypatch.setattr(local_run, "run_with_view", fails)
    with pytest.raises(LocalRunError):
        local_run.run_local({"profile": "tiny"}, runs_dir=runs, run_id="1-failed")
    assert not (runs / "latest").exists()  # no run finished yet
    monkeypatch.setattr(local_run, "run_with_view", succeeds)
    local_run.run_local({"profile": "tiny"}, runs_dir=runs, run_id="2-finished")
    assert (runs / "latest").readlink() == Path("2-finished")
    monkeypatch.setattr(local_run, "run_with_view", fails)
    with pytest.raises(LocalRunError):
        local_run.run_local({"profile": "tiny"}, runs_dir=runs, run_id="3-failed")
    assert (runs / "latest").readlink() == Path("2-finished")
    assert (runs / "latest" / "results.json").is_file() and (runs / "3-failed" / "logs").is_dir()


@pytest.mark.slow
def test_native_notices_are_dropped_as_lines_pass_through(capfd):
    """What hides TensorFlow's start-up notices (`contrastive run`, `pretrain`, `train`,
    `evaluate`): fd 2 of the process and its children, filtered line by line, live."""
    import subprocess
    import time

    from pipelines.local import native_notices_filtered

    child = 'import os, sys; os.write(2, ("child line\\n" + sys.argv[1] + "\\n").encode())'

    def passed_on(text):
        deadline, seen = time.monotonic() + 10, ""
        while text not in seen and time.monotonic() < deadline:
            time.sleep(0.05)
            seen += capfd.readouterr().err
        return seen

    with native_notices_filtered():
        os.write(2, NOTICE.encode() + b"\nfirst line\n")
        assert passed_on("first line") == "first line\n"  # before the block ends
        subprocess.run([sys.executable, "-c", child, NOTICE], check=True, timeout=60)
        os.write(2, b"\r 50% ")  # a progress bar's text without a newline: at once
        assert passed_on("50%") == "child line\n\r 50% "
        os.write(2, b"W0000 00:00:1796.2   7 x.cc:1] an absl warning line\nlast")
    assert capfd.readouterr().err == "last"


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
    monkeypatch.setenv("CONTRASTIVE_WARM_TASKS", "0")  # no task server: no task runs

    def view(pipeline, values, **options):
        params.append(dict(values))
        raise Stop

    monkeypatch.setattr(runner, "run_with_view", view)
    values = {"profile": "tiny", "epochs": 2, "seed": 0}
    for run_id, cache in (("a", True), ("b", True), ("c", False), ("d", False)):
        with pytest.raises(Stop):
            runner.run_local(values, runs_dir=tmp_path, run_id=run_id, cache=cache)
    pipeline = runner.local_pipeline(None)
    key = runner.run_key(pipeline, runner.local_parameters(pipeline, values))
    roots = [p["checkpoint_root"] for p in params]
    assert roots == [f"{tmp_path}/checkpoints/{key}"] * 2 + [
        f"{tmp_path}/checkpoints/c",
        f"{tmp_path}/checkpoints/d",
    ]
    assert [options["enable_caching"] for options in inits] == [True, True, False, False]
    assert {options["cache_root"] for options in inits} == {str(tmp_path / ".cache")}


@pytest.mark.parametrize("given", [None, "/elsewhere/jax-cache"])
def test_a_local_runs_tasks_share_jax_compilation_cache_unless_one_is_given(
    tmp_path, monkeypatch, given
):
    """What the tasks inherit while the pipeline runs (nothing runs): JAX's persistent
    compilation cache in runs/.cache/jax, or the user's own; afterwards, as before."""
    from kfp import local

    import pipelines.local.run as runner

    monkeypatch.setattr(local, "init", lambda **options: None)

    class Stop(Exception):
        pass

    seen = []

    def view(pipeline, values, **options):
        seen.append(os.environ.get(runner.JAX_CACHE_VARIABLE))
        raise Stop

    monkeypatch.setattr(runner, "run_with_view", view)
    monkeypatch.setenv("CONTRASTIVE_WARM_TASKS", "0")  # no task server: no task runs
    if given is None:
        monkeypatch.delenv(runner.JAX_CACHE_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(runner.JAX_CACHE_VARIABLE, given)
    with pytest.raises(Stop):
        runner.run_local({"profile": "tiny"}, runs_dir=tmp_path, run_id="a")
    assert seen == [given or str(tmp_path / ".cache" / "jax")]
    assert os.environ.get(runner.JAX_CACHE_VARIABLE) == given
