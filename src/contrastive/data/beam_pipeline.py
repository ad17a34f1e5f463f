"""The Beam engine of `ingest`: the same per-example functions, run as an Apache Beam job.

The launcher (the `ingest` call: the CLI, or the pipeline's ingest step) plans as the
in-process ingest does, holds the output's lease, and then:

1. stages the plan as work units: `<tmp>/.beam/units/unit-NNNNN.parquet`, each holding up to
   `UNIT_EXAMPLES` examples with their split, plan position, id, lineage and payload (a file
   path, encoded bytes, or an array's raw pixels);
2. runs the Beam job (`_build`), which
   - surveys image headers for the median size when one is to be chosen (`header_size_of`,
     `median_size`: a side input of the encode step);
   - reads each unit and `prepare`s every example (`_EncodeUnit`): records of stored images
     go on, refused and ignored ones are written to `<tmp>/.beam/rows/unit-NNNNN.parquet`;
   - decides the shards from the record sizes in plan order (`writer.shard_starts`, per
     split) and writes each shard on a worker (`_write_shard`) to `<tmp>/<split>/`, with its
     index rows (`rows/shard-...parquet`) and its entry (`shards/...json`);
3. waits for the job with a bound (`Engine.timeout`: the job is cancelled past it) and turns
   a failed job into `IngestJobError` carrying the runner's error (Dataflow's job messages);
4. replays every row in plan order through `reading._Collector`, as the in-process engine
   feeds it, so the manifest and `index.parquet` come out the same, and returns them to
   `ingest`, which commits through the one protocol (`commit._commit`, manifest last, under
   the lease it held throughout).

Every file a worker writes is named by its unit or shard and holds the same bytes when a
worker retries, so Beam's retries and speculative runs are harmless. Shards, index and
manifest are byte-identical to the in-process ingest of the same source and seed
(`tests/unit/test_beam_ingest.py`).
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from contrastive import storage
from contrastive.data.errors import DataError, IngestJobError
from contrastive.data.images import ImageRejected
from contrastive.data.planning import header_size_of, median_size
from contrastive.data.reading import (
    Example,
    ImageRules,
    Payload,
    Stored,
    _Collector,
    _Written,
    planned_example,
    prepare,
    to_record,
)
from contrastive.data.records import ExampleSerializer
from contrastive.data.runners import Engine, runner_flags
from contrastive.data.sources import Source
from contrastive.data.writer import shard_path, shard_starts, write_shard

logger = logging.getLogger(__name__)

WORK_DIR = ".beam"  # inside the staging folder `<output>/.tmp-<uuid>/`, removed with it
UNIT_EXAMPLES = 1000  # examples per work unit (one element of the job's first stage)
_UNIT_PAYLOAD_BYTES = 64 << 20  # ... or fewer, when their arrays or bytes pass this
_TERMINAL = ("DONE", "FAILED", "CANCELLED", "UPDATED", "DRAINED")
_UNIT_SCHEMA = pa.schema(
    [
        ("split", pa.string()),
        ("order", pa.int64()),  # position within the split's plan
        ("label", pa.int64()),
        ("source_label", pa.int64()),
        ("example_id", pa.string()),
        ("source_path", pa.string()),
        ("source_offset", pa.int64()),
        ("name", pa.string()),
        ("path", pa.string()),  # payload: a file to read ...
        ("data", pa.binary()),  # ... encoded bytes ...
        ("pixels", pa.binary()),  # ... or raw uint8 pixels of `shape`
        ("shape", pa.list_(pa.int64())),
        ("orientation", pa.int64()),
        ("declared", pa.bool_()),
    ]
)
_ROW_SCHEMA = pa.schema(
    [
        ("split", pa.string()),
        ("order", pa.int64()),
        ("outcome", pa.string()),  # stored | skipped | ignored
        ("reason", pa.string()),
        ("example_id", pa.string()),
        ("label", pa.int64()),
        ("source_label", pa.int64()),
        ("source_path", pa.string()),
        ("source_offset", pa.int64()),
        ("name", pa.string()),
        ("format", pa.string()),
        ("height", pa.int64()),
        ("width", pa.int64()),
        ("channels", pa.int64()),
        ("num_bytes", pa.int64()),
        ("sha256", pa.string()),
        ("orientation", pa.int64()),
        ("resized_from", pa.list_(pa.int64())),
        ("shard", pa.string()),
        ("record", pa.int64()),
    ]
)


def write_examples(
    opened: Source,
    plan: dict[str, list[tuple[str, int, int]]],
    tmp: str,
    *,
    rules: ImageRules,
    survey: bool,
    on_error: str,
    shard_size_bytes: int,
    engine: Engine,
) -> tuple[_Written, tuple[int, int] | None]:
    """Run the ingest's writing step as a Beam job on `engine`; returns what the in-process
    `reading._write_examples` returns, and the image size chosen by the median survey
    (`survey`: the images are encoded and no `image_size` was given; else `rules.image_size`).

    Raises:
        IngestJobError: the job failed (the runner's error), was cancelled, or ran past
            `engine.timeout` (then it is cancelled).
        DataError: what the in-process ingest raises for the same data.
    """
    work = storage.join(tmp, WORK_DIR)
    units = _stage_units(opened, plan, work)
    logger.info(
        "ingest on Beam (%s): %d examples in %d work units staged under %s",
        engine.runner, sum(map(len, plan.values())), len(units), work,
    )  # fmt: skip
    pipeline = beam.Pipeline(options=_options(engine))
    _build(pipeline, units, tmp, rules=rules, survey=survey, shard_size_bytes=shard_size_bytes)
    _run(pipeline, engine)
    image_size = rules.image_size
    if survey:
        image_size = _read_survey(work)
    return _replay(opened, plan, tmp, on_error), image_size


def _options(engine: Engine):
    from apache_beam.options.pipeline_options import PipelineOptions

    job_name = f"contrastive-ingest-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    return PipelineOptions(runner_flags(engine, job_name))


def _run(pipeline, engine: Engine) -> None:
    """Run and wait at most `engine.timeout` seconds; cancel past it."""
    started = time.monotonic()
    try:
        result = pipeline.run()
        state = result.wait_until_finish(duration=int(engine.timeout * 1000))
    except IngestJobError:
        raise
    except Exception as error:  # the runner's own: DataflowRuntimeException, a worker's error
        raise IngestJobError(
            f"the ingest's Beam job ({engine.runner}) failed: {type(error).__name__}: {error}"
        ) from error
    state = str(state).rsplit(".", 1)[-1]
    if state not in _TERMINAL:
        try:
            result.cancel()
        finally:
            raise IngestJobError(
                f"the ingest's Beam job ({engine.runner}) did not finish within "
                f"job_timeout={engine.timeout:g} s (state {state} after "
                f"{time.monotonic() - started:.0f} s); it was cancelled"
            )
    if state != "DONE":
        raise IngestJobError(f"the ingest's Beam job ({engine.runner}) ended in state {state}")


# --- 1. work units -------------------------------------------------------------------------


def _stage_units(opened: Source, plan: dict, work: str) -> list[str]:
    """Write the plan as unit files; returns their paths (in plan order)."""
    paths, rows, payload_bytes = [], [], 0

    def flush():
        nonlocal rows, payload_bytes
        if rows:
            path = storage.join(work, "units", f"unit-{len(paths):05d}.parquet")
            table = pa.Table.from_pylist(rows, schema=_UNIT_SCHEMA)
            _write_table(path, table)
            paths.append(path)
            rows, payload_bytes = [], 0

    for split_name, items in plan.items():
        for order, item in enumerate(items):
            example = planned_example(opened, split_name, item)
            rows.append(_unit_row(example, order))
            payload = example.payload
            payload_bytes += len(payload.data or b"") + (
                0 if payload.pixels is None else payload.pixels.nbytes
            )
            if len(rows) >= UNIT_EXAMPLES or payload_bytes >= _UNIT_PAYLOAD_BYTES:
                flush()
    flush()
    return paths


def _unit_row(example: Example, order: int) -> dict:
    payload = example.payload
    pixels = payload.pixels
    return {
        "split": example.split,
        "order": order,
        "label": example.label,
        "source_label": example.source_label,
        "example_id": example.example_id,
        "source_path": example.source_path,
        "source_offset": example.source_offset,
        "name": example.name,
        "path": payload.path,
        "data": payload.data,
        "pixels": None if pixels is None else np.ascontiguousarray(pixels).tobytes(),
        "shape": None if pixels is None else list(pixels.shape),
        "orientation": payload.orientation,
        "declared": payload.declared,
    }


def _read_unit(path: str) -> Iterator[tuple[Example, int]]:
    """`(example, order)` of every row of a unit file."""
    table = pq.read_table(pa.BufferReader(storage.read_bytes(path)))
    for row in table.to_pylist():
        pixels = None
        if row["pixels"] is not None:
            pixels = np.frombuffer(row["pixels"], np.uint8).reshape(row["shape"])
        payload = Payload(
            path=row["path"],
            data=row["data"],
            pixels=pixels,
            orientation=row["orientation"],
            declared=row["declared"],
        )
        example = Example(
            row["split"],
            row["label"],
            row["source_label"],
            row["example_id"],
            row["source_path"],
            row["source_offset"],
            payload,
            row["name"],
        )
        yield example, row["order"]


def _write_table(path: str, table: pa.Table) -> None:
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    storage.write_bytes(path, buffer.getvalue().to_pybytes())


def _unit_name(unit: str) -> str:
    return unit.rsplit("/", 1)[-1][: -len(".parquet")]


# --- 2. the job ----------------------------------------------------------------------------


def _build(pipeline, units: list[str], tmp: str, *, rules, survey, shard_size_bytes) -> None:
    work = storage.join(tmp, WORK_DIR)
    staged = pipeline | "units" >> beam.Create(units) | "spread" >> beam.Reshuffle()
    target = None
    if survey:
        histogram = (
            staged
            | "survey" >> beam.Map(_survey_unit)
            | "histogram" >> beam.CombineGlobally(_merge_counters)
        )
        target = histogram | "median" >> beam.Map(_record_survey, work)
    encode = _EncodeUnit(rules, work)
    if target is not None:
        encoded = staged | "encode" >> beam.ParDo(encode, beam.pvalue.AsSingleton(target))
    else:
        encoded = staged | "encode" >> beam.ParDo(encode, None)
    starts = (
        encoded
        | "sizes" >> beam.Map(lambda stored: (stored[0], (stored[1], len(stored[2]))))
        | "by split" >> beam.GroupByKey()
        | "shard starts" >> beam.Map(_shard_starts, shard_size_bytes)
    )
    _ = (
        encoded
        | "to shards" >> beam.Map(_to_shard, beam.pvalue.AsDict(starts))
        | "by shard" >> beam.GroupByKey()
        | "write shards" >> beam.Map(_write_shard, tmp)
    )


def _survey_unit(unit: str) -> Counter:
    """Histogram of the upright header sizes of a unit's encoded images."""
    return Counter(
        size
        for example, _ in _read_unit(unit)
        if example.payload.pixels is None and (size := header_size_of(example.payload))
    )


def _merge_counters(counters) -> Counter:
    total = Counter()
    for counter in counters:
        total.update(counter)
    return total


def _record_survey(histogram: Counter, work: str) -> tuple[int, int] | None:
    """The median size (None: one size) of the survey; written for the launcher as well."""
    size = median_size(histogram)
    storage.write_json(
        storage.join(work, "survey.json"), {"image_size": None if size is None else list(size)}
    )
    return size


def _read_survey(work: str) -> tuple[int, int] | None:
    size = storage.read_json(storage.join(work, "survey.json"))["image_size"]
    return None if size is None else tuple(size)


class _EncodeUnit(beam.DoFn):
    """One unit -> `(split, order, record, stored)` per stored image; refused and ignored
    examples go to the unit's rows file (written even when empty: the launcher checks that
    every unit reported)."""

    def __init__(self, rules: ImageRules, work: str):
        self._rules = rules
        self._work = work

    def setup(self):
        self._serializer = ExampleSerializer()

    def process(self, unit: str, target):
        rules = self._rules
        if target is not None:
            rules = dataclasses.replace(rules, image_size=tuple(target))
        rows = []
        for example, order in _read_unit(unit):
            result = prepare(example.payload, rules)
            if result is None or isinstance(result, ImageRejected):
                outcome = "ignored" if result is None else "skipped"
                reason = "not an image" if result is None else result.reason
                rows.append(_row(example, order, outcome, reason=reason))
                continue
            record = to_record(self._serializer, example, result)
            yield example.split, order, record, _row(example, order, "stored", Stored.of(result))
        path = storage.join(self._work, "rows", f"{_unit_name(unit)}.parquet")
        _write_table(path, pa.Table.from_pylist(rows, schema=_ROW_SCHEMA))


def _row(example: Example, order: int, outcome: str, stored: Stored | None = None, **extra):
    row = {
        "split": example.split,
        "order": order,
        "outcome": outcome,
        "example_id": example.example_id,
        "label": example.label,
        "source_label": example.source_label,
        "source_path": example.source_path,
        "source_offset": example.source_offset,
        "name": example.name,
        **extra,
    }
    if stored is not None:
        row.update(dataclasses.asdict(stored))
        row["resized_from"] = None if stored.resized_from is None else list(stored.resized_from)
    return row


def _shard_starts(split_sizes, shard_size_bytes: int) -> tuple[str, list[int]]:
    """`(split, plan positions at which its shards start)`: `writer.shard_starts` over the
    split's record sizes in plan order."""
    split, pairs = split_sizes
    pairs = sorted(pairs)
    starts = shard_starts((size for _, size in pairs), shard_size_bytes)
    return split, [pairs[position][0] for position in starts]


def _to_shard(stored, starts: dict) -> tuple[tuple[str, int], tuple]:
    split, order, record, row = stored
    number = bisect.bisect_right(starts[split], order) - 1
    return (split, number), (order, record, row)


def _write_shard(keyed, tmp: str) -> None:
    """Write one shard in plan order, its index rows and its entry."""
    (split, number), members = keyed
    members = sorted(members, key=lambda member: member[0])
    path = shard_path(split, number)
    entry = write_shard(tmp, path, (record for _, record, _ in members))
    rows = [{**row, "shard": path, "record": record} for record, (_, _, row) in enumerate(members)]
    work = storage.join(tmp, WORK_DIR)
    _write_table(
        storage.join(work, "rows", f"shard-{split}-{number:05d}.parquet"),
        pa.Table.from_pylist(rows, schema=_ROW_SCHEMA),
    )
    storage.write_json(storage.join(work, "shards", f"{split}-{number:05d}.json"), entry)


# --- 4. replay -----------------------------------------------------------------------------


def _replay(opened: Source, plan: dict, tmp: str, on_error: str) -> _Written:
    """Feed every row to `_Collector` in plan order, as the in-process engine does."""
    work = storage.join(tmp, WORK_DIR)
    row_files = _files(storage.join(work, "rows"))
    units = _files(storage.join(work, "units"))
    reported = {_unit_name(path) for path in row_files}
    lost = [path for path in units if _unit_name(path) not in reported]
    if lost:
        raise IngestJobError(f"the ingest's Beam job finished without reporting unit {lost[0]}")
    tables = [pq.read_table(pa.BufferReader(storage.read_bytes(path))) for path in row_files]
    by_split: dict[str, list[dict]] = {name: [None] * len(items) for name, items in plan.items()}
    for table in tables:
        for row in table.to_pylist():
            by_split[row["split"]][row["order"]] = row
    shards = _read_shard_entries(work)
    collector = _Collector(opened, on_error)
    for split_name, rows in by_split.items():
        if None in rows:
            raise IngestJobError(
                f"the ingest's Beam job lost {split_name} example {rows.index(None)} of the plan"
            )
        for row in rows:
            example = Example(
                split_name,
                row["label"],
                row["source_label"],
                row["example_id"],
                row["source_path"],
                row["source_offset"],
                Payload(),
                row["name"],
            )
            if row["outcome"] == "ignored":
                collector.accept(example, None)
            elif row["outcome"] == "skipped":
                collector.accept(example, ImageRejected(row["reason"]))
            else:
                stored = _stored(row)
                collector.accept(example, stored)
                collector.store(example, stored, row["shard"], row["record"])
        collector.close_split(split_name, shards.get(split_name, []))
    return collector.finish()


def _files(folder: str) -> list[str]:
    return [storage.join(folder, name) for name in storage.list_files(folder)]


def _stored(row: dict) -> Stored:
    resized = row["resized_from"]
    return Stored(
        row["format"],
        row["height"],
        row["width"],
        row["channels"],
        row["num_bytes"],
        row["sha256"],
        row["orientation"],
        None if resized is None else tuple(resized),
    )


def _read_shard_entries(work: str) -> dict[str, list[dict]]:
    """Split -> its shard entries in shard order (checked to be 0..N-1)."""
    entries: dict[str, list[dict]] = {}
    for path in _files(storage.join(work, "shards")):
        entry = storage.read_json(path)
        entries.setdefault(entry["path"].split("/", 1)[0], []).append(entry)
    for split, listed in entries.items():
        listed.sort(key=lambda entry: entry["path"])
        expected = [shard_path(split, number) for number in range(len(listed))]
        if [entry["path"] for entry in listed] != expected:
            raise DataError(f"the ingest's Beam job wrote {split} shards out of sequence")
    return entries
