"""Issue 24 item 8: what a multi-process training job leaves behind and how it exits.

- A worker replica of a Vertex CustomJob (every replica runs the component) must not write
  the task's outputs: process 0 does, and KFP's executor would otherwise write each
  replica's output file over the chief's.
- A collective that fails because a peer died is a failure of the job (exit 1, as the
  README says), not bad input (exit 2).
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from kfp import dsl

import components
from contrastive.training import distribution
from contrastive.training.distribution import ProcessGroup

ROOT = Path(__file__).resolve().parents[2]
C = components.build("contrastive:test")


@pytest.mark.parametrize("process_id", [0, 1])
def test_only_process_0_writes_a_training_tasks_outputs(
    tiny_dataset, tmp_path, monkeypatch, process_id
):
    from contrastive import tasks
    from contrastive.tasks import training as task_training

    group = ProcessGroup("10.0.0.2:2222", 2, process_id, "CLUSTER_SPEC")
    monkeypatch.setattr(distribution, "join_processes", lambda environ, train_cfg: group)
    monkeypatch.setattr(task_training, "run_pretrain", lambda *a, **k: {"final_loss": 1.5})
    assert tasks.run_pretrain is not None
    metrics = dsl.Metrics(uri=str(tmp_path / "metrics"))
    encoder = dsl.Model(uri=str(tmp_path / "encoder"))
    call = lambda: C.pretrain_encoder.python_func(  # noqa: E731
        dataset=dsl.Dataset(uri=tiny_dataset),
        encoder_model=encoder,
        metrics=metrics,
        profile="tiny",
        checkpoint_root="none",
    )
    if process_id == 0:
        call()
        assert metrics.metadata == {"final_loss": 1.5}
        return
    with pytest.raises(SystemExit) as stopped:
        call()
    assert stopped.value.code == 0  # done, successfully, with nothing written
    assert metrics.metadata == {} and encoder.metadata == {}


CHILD = textwrap.dedent(
    """
    import sys
    import jax.errors
    from pipelines import cli
    from pipelines.cli import steps

    def pretrain(args):  # a peer died: the collective fails in this process
        args.joined_processes = 2
        raise jax.errors.JaxRuntimeError("UNAVAILABLE: Gloo all-reduce: Connection closed by peer")

    steps.cmd_pretrain = pretrain
    sys.exit(cli.main(["pretrain", "--data", "d", "--output", "o"]))
    """
)


@pytest.mark.slow
def test_a_failed_collective_exits_1():
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), str(ROOT)]))
    done = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Connection closed by peer" in done.stderr
