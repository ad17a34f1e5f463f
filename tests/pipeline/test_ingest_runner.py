"""The ingest runner as a pipeline parameter and a CLI flag: compiled into the ingest task,
checked before a run is submitted, and a Dataflow job's workers given the pipeline's image."""

import pytest

from contrastive import tasks
from contrastive.config import ConfigError
from contrastive.run_parameters import check_run_parameters
from pipelines import cli
from pipelines.cli import steps
from tests.pipeline.compiled import compiled

IMAGE = "us-docker.pkg.dev/acme/ml/contrastive:1a2b3c4"


def _ingest_task(tmp_path, target):
    spec = compiled(target=target, image=IMAGE)
    tasks_ = spec["root"]["dag"]["tasks"]
    ingest = next(t for t in tasks_.values() if t["taskInfo"]["name"] == "ingest")
    return spec, ingest["inputs"]["parameters"]


@pytest.mark.parametrize("target", ["vertex", "kubeflow"])
def test_the_runner_parameters_reach_the_ingest_task(tmp_path, target):
    spec, inputs = _ingest_task(tmp_path, target)
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["ingest_runner"]["defaultValue"] == ""
    assert params["ingest_beam_options"]["defaultValue"] == ""
    assert inputs["runner"]["componentInputParameter"] == "ingest_runner"
    assert inputs["beam_options"]["componentInputParameter"] == "ingest_beam_options"
    assert inputs["worker_image"]["runtimeValue"]["constant"] == IMAGE


def test_a_local_run_gives_its_ingest_no_worker_image(tmp_path):
    """A local image (`contrastive:dev`) is in no registry a Dataflow job's workers read: the
    local target (`Target.worker_image`) leaves the worker image to `--beam-options`."""
    _, inputs = _ingest_task(tmp_path, "local")
    assert inputs["worker_image"]["runtimeValue"]["constant"] == ""
    assert inputs["runner"]["componentInputParameter"] == "ingest_runner"


def test_a_dataflow_job_runs_the_dataflow_image_of_the_pipeline_unless_told_otherwise():
    worker = "us-docker.pkg.dev/acme/ml/contrastive-dataflow:1a2b3c4"
    assert tasks.beam_options("dataflow", "--project=p", IMAGE) == (
        f"--project=p --sdk_container_image={worker}"
    )
    given = "--project=p --sdk_container_image=other:1"
    assert tasks.beam_options("dataflow", given, IMAGE) == given
    assert tasks.beam_options("flink", "--job_endpoint=h:8099", IMAGE) == "--job_endpoint=h:8099"
    assert tasks.dataflow_worker_image("localhost:5000/contrastive@sha256:ab") == (
        "localhost:5000/contrastive-dataflow@sha256:ab"
    )
    assert tasks.dataflow_worker_image("contrastive:dev") == "contrastive-dataflow:dev"


def test_the_dataflow_image_runs_the_pinned_beam_sdk_harness():
    """Dataflow starts a custom container through Beam's boot program, from an SDK image of
    the Beam version the workers' code was pickled with."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    dockerfile = (repo / "images" / "Dockerfile.dataflow").read_text()
    pin = next(
        line.split("==")[1]
        for line in (repo / "constraints.txt").read_text().splitlines()
        if line.startswith("apache-beam==")
    )
    assert f"ARG BEAM_SDK_IMAGE=apache/beam_python3.11_sdk:{pin}\n" in dockerfile
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in dockerfile
    assert "COPY --from=beam /opt/apache/beam /opt/apache/beam" in dockerfile


@pytest.mark.parametrize(
    "values, message",
    [
        ({"ingest_runner": "beam"}, "runner must be one of"),
        ({"ingest_runner": "dataflow"}, "needs --project, --region, --temp_location"),
        ({"ingest_runner": "spark", "ingest_beam_options": "x"}, "must be Beam pipeline flags"),
        ({"ingest_beam_options": "--project=p"}, "the in-process ingest takes none"),
    ],
)
def test_a_run_with_a_bad_runner_is_refused_before_submission(values, message):
    with pytest.raises(ConfigError) as raised:
        check_run_parameters(values)
    assert message in str(raised.value)
    assert str(raised.value).startswith("ingest_runner=")


def test_the_cli_refuses_a_portable_runner_without_its_job_server(tmp_path, capsys):
    code = cli.main(
        ["ingest", "--source", str(tmp_path), "--output", str(tmp_path / "o"), "--runner", "flink"]
    )
    assert code == 2
    assert "runner='flink' needs --job_endpoint" in capsys.readouterr().err
    args = cli.build_parser().parse_args(
        [
            "ingest",
            "--source",
            "s",
            "--output",
            "o",
            "--runner",
            "flink",
            "--job-endpoint",
            "jobserver:8099",
            "--beam-options",
            "--environment_type=EXTERNAL --environment_config=localhost:50000",
        ]
    )
    assert steps._beam_flags(args) == [
        "--environment_type=EXTERNAL",
        "--environment_config=localhost:50000",
        "--job_endpoint=jobserver:8099",
    ]


@pytest.mark.slow  # the DirectRunner starts a Python worker process
def test_the_ingest_component_runs_its_beam_job_and_commits_the_same_dataset(tmp_path):
    """The component with runner="direct": the DirectRunner in the step, into the artifact's
    path, the same bytes as the in-process component; the artifact's metadata alike."""
    import numpy as np
    from kfp import dsl

    import components
    from tests.data_helpers import dataset_bytes

    pytest.importorskip("apache_beam")
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "d.npz",
        x_train=rng.integers(0, 255, (40, 4, 4), dtype=np.uint8),
        y_train=np.arange(40) % 2,
    )
    ingest = components.build("contrastive:test").ingest_data.python_func
    artifacts = {}
    for runner in ("", "direct"):
        artifacts[runner] = dsl.Dataset(uri=str(tmp_path / f"out-{runner or 'inprocess'}"))
        ingest(
            dataset=artifacts[runner],
            source=f"npz:{tmp_path / 'd.npz'}",
            profile="tiny",
            image_size="4,4",
            runner=runner,
            worker_image=IMAGE,
        )
    assert dataset_bytes(tmp_path / "out-direct") == dataset_bytes(tmp_path / "out-inprocess")
    assert artifacts["direct"].metadata == artifacts[""].metadata
