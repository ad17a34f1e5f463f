"""One ingest, two engines: the Beam job (DirectRunner here) writes the same bytes as the
in-process ingest: shards, index.parquet and the manifest (but for when and by whom).

Also: the shard rule both engines share, the checks of a runner request, and a portable
runner's job submission over Beam's job API (gRPC) to Beam's own job service in this process,
the protocol a Flink or Spark job server speaks.
"""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contrastive import data
from contrastive.data import DataError
from contrastive.data.runners import check_engine, parse_beam_options, runner_flags
from contrastive.data.writer import ShardWriter, shard_starts
from tests.data_helpers import (
    dataset_bytes,
    encoded,
    import_csv,
    manifest_content,
    photo_folder,
    small_npz,
)

pytest.importorskip("apache_beam")


def _folder(tmp_path):
    return str(photo_folder(tmp_path / "photos")), {"shard_size_bytes": 2500, "test_fraction": 0.2}


def _npz(tmp_path):
    source = small_npz(tmp_path / "d.npz", train=90, test=30, classes=3, shape=(6, 5), seed=1)
    options = {"limit": 60, "labeled_fraction": 0.5, "shard_size_bytes": 600}
    return source, options


def _csv(tmp_path):
    folder = photo_folder(tmp_path / "photos")
    images = sorted(p for p in folder.rglob("*") if p.suffix in (".png", ".jpg"))
    images.append(folder / "cat" / "missing.png")  # listed, not there: skipped, named
    source = import_csv(tmp_path / "import.csv", images)
    with open(tmp_path / "import.csv", "a") as stream:
        stream.write(f"training,{images[0]},cat\n")  # listed twice: the second is skipped
    return source, {"shard_size_bytes": 3000}


def _parquet(tmp_path):
    rng = np.random.default_rng(2)
    (tmp_path / "data").mkdir()
    for split, count in (("train", 40), ("test", 12)):
        cells = [
            {"bytes": encoded(rng.integers(0, 255, (8, 8), dtype=np.uint8)), "path": None}
            for _ in range(count)
        ]
        cells[1] = {"bytes": b"not an image", "path": None}
        labels = pa.array([i % 2 for i in range(count - 1)] + [None], pa.int64())
        pq.write_table(
            pa.table({"image": cells, "label": labels}),
            tmp_path / "data" / f"{split}-00000-of-00001.parquet",
        )
    return f"parquet:{tmp_path / 'data'}", {"shard_size_bytes": 1500}


SOURCES = {"folder": _folder, "npz": _npz, "csv": _csv, "parquet": _parquet}


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_direct_runner_writes_the_bytes_of_the_in_process_ingest(tmp_path, kind):
    source, options = SOURCES[kind](tmp_path)
    local = data.ingest(source, str(tmp_path / "local"), progress=False, seed=5, **options)
    beam = data.ingest(
        source,
        str(tmp_path / "beam"),
        progress=False,
        seed=5,
        runner="direct",
        num_workers=1,
        **options,
    )
    assert dataset_bytes(tmp_path / "beam") == dataset_bytes(tmp_path / "local")
    assert manifest_content(tmp_path / "beam") == manifest_content(tmp_path / "local")
    # The comparison covers what it should: several shards, and refused files listed.
    assert sum(len(entry["shards"]) for entry in local["splits"].values()) >= 3
    assert kind == "npz" or local["skipped"]
    assert beam["writer"]["what"] == "ingest (Beam: direct)"
    assert not list((tmp_path / "beam").glob(".tmp-*"))  # work units went with the staging


def test_the_median_size_is_surveyed_by_the_beam_job(tmp_path):
    """A folder of mixed sizes is resized to the median upright height x width, surveyed
    inside the job (reference: Pillow's own EXIF transpose of every image)."""
    from pathlib import Path

    from PIL import Image, ImageOps

    source, options = _folder(tmp_path)
    beam = data.ingest(
        source, str(tmp_path / "beam"), progress=False, runner="direct", num_workers=1, **options
    )
    sizes = [
        ImageOps.exif_transpose(Image.open(path)).size
        for path in Path(source).rglob("*")
        if path.suffix in (".png", ".jpg") and path.name != "broken.png"
    ]
    widths, heights = zip(*sizes, strict=True)
    assert beam["resize"]["chosen"] == "median"
    assert beam["image_shape"][:2] == [int(np.median(heights)), int(np.median(widths))]
    assert beam["resize"]["resized"] == sum(
        (h, w) != tuple(beam["image_shape"][:2]) for w, h in sizes
    )


def test_on_error_fail_names_the_same_file_as_the_in_process_ingest(tmp_path):
    source, _ = _folder(tmp_path)
    messages = []
    for runner in ("inprocess", "direct"):
        with pytest.raises(DataError) as raised:
            data.ingest(
                source,
                str(tmp_path / runner),
                progress=False,
                on_error="fail",
                runner=runner,
                num_workers=1,
            )
        messages.append(str(raised.value))
    assert messages[0] == messages[1]
    assert "broken.png" in messages[0]
    assert not (tmp_path / "direct" / "manifest.json").exists()


@pytest.mark.slow
def test_two_worker_processes_write_the_same_bytes(tmp_path):
    """The DirectRunner's multi-processing mode: units encoded and shards written in two
    worker processes, in whatever order they finish."""
    source, options = _npz(tmp_path)
    data.ingest(source, str(tmp_path / "local"), progress=False, **options)
    data.ingest(
        source, str(tmp_path / "beam"), progress=False, runner="direct", num_workers=2, **options
    )
    assert dataset_bytes(tmp_path / "beam") == dataset_bytes(tmp_path / "local")


def test_shard_starts_follow_the_shard_writers_rule(tmp_path):
    rng = np.random.default_rng(0)
    records = [bytes(int(size)) for size in rng.integers(1, 400, 200)]
    writer = ShardWriter(str(tmp_path), "train", 1000)
    where = [writer.write(record)[0] for record in records]
    starts = [i for i in range(len(where)) if i == 0 or where[i] != where[i - 1]]
    assert shard_starts(map(len, records), 1000) == starts
    assert len(starts) > 20
    assert shard_starts([], 1000) == []
    assert shard_starts([5000, 10], 1000) == [0, 1]  # an oversized record fills a shard alone


@pytest.mark.slow  # Beam starts a Python process for the job
def test_a_portable_runner_submits_to_a_job_service_over_the_job_api(tmp_path):
    """runner="flink" with --job_endpoint: the pipeline goes to the job server over Beam's
    job API (gRPC: Prepare, staging, Run, GetState), as to a Flink job server on a cluster;
    here the job server is Beam's own local job service, running the job in this process
    (LOOPBACK environment). Same bytes as in-process."""
    from apache_beam.runners.portability import local_job_service

    service = local_job_service.LocalJobServicer(str(tmp_path / "staging"))
    port = service.start_grpc_server(0)
    try:
        source, options = _npz(tmp_path)
        data.ingest(source, str(tmp_path / "local"), progress=False, **options)
        manifest = data.ingest(
            source,
            str(tmp_path / "flink"),
            progress=False,
            runner="flink",
            beam_options=f"--job_endpoint=localhost:{port} --environment_type=LOOPBACK",
            job_timeout=300,
            **options,
        )
    finally:
        service.stop()
    assert dataset_bytes(tmp_path / "flink") == dataset_bytes(tmp_path / "local")
    assert manifest["writer"]["what"] == "ingest (Beam: flink)"


@pytest.mark.parametrize(
    "runner, options, output, message",
    [
        ("beam", "", "out", "runner must be one of ['inprocess', 'direct', 'dataflow'"),
        ("inprocess", "--project=p", "out", "the in-process ingest takes none"),
        ("direct", "--runner=DataflowRunner", "out", "--runner is set by the ingest"),
        (
            "dataflow",
            "--project=p",
            "gs://b/out",
            "runner='dataflow' needs --region, --temp_location in beam_options",
        ),
        ("flink", "--environment_type=LOOPBACK", "out", "runner='flink' needs --job_endpoint"),
        ("spark", "", "out", "the Spark job server's gRPC address"),
        (
            "dataflow",
            "--project=p --region=r --temp_location=gs://b/t",
            "/local/out",
            "output /local/out must be a gs:// location",
        ),
        (
            "dataflow",
            "--project=p --region=r --temp_location=/tmp/t",
            "gs://b/out",
            "temp_location /tmp/t must be a gs:// location",
        ),
        ("direct", "project=p", "out", "beam_options must be Beam pipeline flags"),
    ],
)
def test_runner_requests_are_checked_before_any_work(runner, options, output, message):
    with pytest.raises(DataError) as raised:
        check_engine(runner, options, output=output)
    assert message in str(raised.value)


def test_a_bad_runner_fails_before_the_source_is_read(tmp_path):
    with pytest.raises(DataError, match="runner='flink' needs --job_endpoint"):
        data.ingest(str(tmp_path / "does-not-exist"), str(tmp_path / "out"), runner="flink")
    assert not (tmp_path / "out").exists()


def test_beam_flags_for_each_runner():
    assert parse_beam_options("--a=1 --b 2 --flag") == ("--a=1", "--b=2", "--flag")
    assert parse_beam_options(["--a", "1"]) == ("--a=1",)
    direct = runner_flags(check_engine("direct", num_workers=2), "job")
    assert direct == [
        "--runner=DirectRunner",
        "--direct_num_workers=2",
        "--direct_running_mode=multi_processing",
    ]
    dataflow = check_engine(
        "dataflow",
        "--project=p --region=r --temp_location=gs://b/t --sdk_container_image=img:1",
        output="gs://b/out",
    )
    flags = runner_flags(dataflow, "contrastive-ingest-1")
    assert flags[:3] == [
        "--runner=DataflowRunner",
        "--job_name=contrastive-ingest-1",
        "--sdk_location=container",
    ]
    assert json.dumps(flags[3:]) == json.dumps(list(dataflow.options))
