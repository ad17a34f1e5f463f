"""`pipelines.kfp_setters.fast_setters`: KFP's task setters without `inspect.stack()`'s
source reads, the same behaviour and the same compiled YAML."""

import contextlib
import inspect

import pytest
from kfp import compiler, dsl
from kfp.dsl import pipeline_task

import pipelines.dag
from pipelines.kfp_setters import _FramesOnly, fast_setters


def test_the_frames_are_inspects_without_their_source():
    def caller():
        return _FramesOnly.stack(), inspect.stack(context=0)

    ours, theirs = caller()
    assert [entry[3] for entry in ours] == [entry.function for entry in theirs]
    assert [entry[1:3] for entry in ours] == [(e.filename, e.lineno) for e in theirs]
    assert ours[0][3] == "caller" and ours[0][4] is None


def test_the_compiled_pipeline_is_byte_identical_with_and_without(tmp_path, monkeypatch):
    # one method at two fractions: every kind of setter on every kind of task (the plain
    # compile spends ~0.25 s in inspect.stack() per setter call under pytest)
    options = {
        "target": "vertex",
        "methods": ("supcon",),
        "labeled_fractions": (0.1, 1.0),
        "retries": 2,
    }
    fast = tmp_path / "fast.yaml"
    compiler.Compiler().compile(pipelines.dag.build_pipeline(**options), str(fast))
    monkeypatch.setattr(pipelines.dag, "fast_setters", contextlib.nullcontext)
    plain = tmp_path / "plain.yaml"
    compiler.Compiler().compile(pipelines.dag.build_pipeline(**options), str(plain))
    assert fast.read_bytes() == plain.read_bytes()


@dsl.component
def _step() -> str:
    return "x"


@dsl.pipeline
def _inner() -> str:
    return _step().output


def test_a_setter_on_a_pipeline_task_still_names_itself():
    with fast_setters(), pytest.raises(ValueError) as error:

        @dsl.pipeline
        def outer():
            _inner().set_env_variable("A", "1")

    assert str(error.value).startswith(
        "set_env_variable can only be used on single-step components"
    )


def test_the_module_is_restored_after_the_block_even_on_an_error():
    assert pipeline_task.inspect is inspect
    with pytest.raises(RuntimeError), fast_setters():
        assert isinstance(pipeline_task.inspect, _FramesOnly)
        with fast_setters():  # a build inside a build
            assert isinstance(pipeline_task.inspect, _FramesOnly)
        assert isinstance(pipeline_task.inspect, _FramesOnly)
        raise RuntimeError
    assert pipeline_task.inspect is inspect


def test_a_kfp_without_the_module_level_inspect_is_left_alone(monkeypatch):
    monkeypatch.delattr(pipeline_task, "inspect")
    with fast_setters():
        assert not hasattr(pipeline_task, "inspect")
    assert not hasattr(pipeline_task, "inspect")
