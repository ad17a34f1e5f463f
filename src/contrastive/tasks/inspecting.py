"""The steps that use an encoder's space: nearest-neighbour explanations and suspect labels
(`run_explain_neighbours`), the drift check before training (`run_check_drift`), and the
drift reference a promoted champion keeps (`drift_reference_bytes`).

Every split is streamed batch by batch (`read_split`); what is held is bounded: a uniform
sample of at most `max_reference` training features, the few mistakes and suspects shown
with their thumbnails, and the drift samples.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from contrastive import modeldir, storage, validation
from contrastive.drift import DriftSettings
from contrastive.modeldir import read_json
from contrastive.tasks.conventions import data_location

log = logging.getLogger("contrastive.tasks")

# Kept in a promoted champion's version folder: its encoder's embeddings of a sample of its
# training data, and the fingerprints of that data and of the code.
DRIFT_REFERENCE = "drift_reference.npz"
SUSPECTS_FILE = "suspect_labels.csv"  # its name in a run's folder (the task's output elsewhere)
SUSPECT_COLUMNS = (
    "id",
    "source_path",
    "label",
    "label_name",
    "suggested",
    "suggested_name",
    "share",
    "similarity",
)


@dataclass(frozen=True)
class NeighbourSettings:
    """How many explanations and suspects, and how they are found."""

    mistakes: int = 8  # most confident test mistakes shown
    k: int = 5  # training neighbours shown beside each
    suspect_k: int = 10  # neighbours that vote on a training label
    min_share: float = 0.8  # of them carrying one other label: a suspect
    shown_suspects: int = 12  # suspects shown in the report (the file lists all)
    max_reference: int = 60_000  # training features held (a uniform sample beyond)
    max_reference_mib: int = 256  # ... and at most this much memory for them
    # directions of the space searched (`neighbours.NeighbourSpace`); 0: the raw features
    neighbour_dim: int = 256
    thumbnail_size: int = 48  # longest side of a thumbnail, pixels
    batch_size: int = 512
    seed: int = 0

    def __post_init__(self):
        for name in ("k", "suspect_k", "max_reference", "max_reference_mib", "thumbnail_size"):
            validation.check_int(name, getattr(self, name))
        for name in ("mistakes", "shown_suspects"):
            validation.check_int(name, getattr(self, name), minimum=0)
        validation.check_int("batch_size", self.batch_size)
        validation.check_int("neighbour_dim", self.neighbour_dim, minimum=0)


def embed_sample(encoder, data_uri: str, split: str, capacity: int, *, batch_size: int, seed: int):
    """A uniform sample (`drift.ReservoirSample`) of at most `capacity` labelled-or-not
    examples of `split` in the encoder's space, streamed.

    Returns:
        `(positions [n], features float32 [n, D], labels int64 [n], ids [n] str, seen)`:
        stream positions in `read_split`'s fixed order, and how many examples were read.
    """
    from contrastive import data as data_io
    from contrastive import training
    from contrastive.drift import ReservoirSample

    sample = ReservoirSample(capacity, seed=seed)
    batches = data_io.read_split(data_uri, split, batch_size, with_ids=True).as_numpy_iterator()
    for features, labels, ids in training.embed_batches(encoder, batches, batch_size):
        sample.add(features, labels, ids)
    positions, columns = sample.arrays()
    if not columns:
        raise ValueError(f"split {split!r} of {data_uri} is empty: nothing to embed")
    features, labels, ids = columns
    return positions, features, labels, [_text(value) for value in ids], sample.seen


def run_explain_neighbours(
    data_uri: str,
    candidates: dict[str, tuple[str, str]],
    *,
    output_path: str | Path,
    suspects_path: str | Path,
    settings: NeighbourSettings = NeighbourSettings(),
) -> dict:
    """Explanations and suspect labels in the best method's encoder space.

    The best method is the compare step's (`best_method`: highest test accuracy). Its encoder
    embeds the train split (a uniform sample of at most `max_reference` examples, within
    `max_reference_mib`) and the test split; for each test image the nearest training image
    is found (per-class agreement), the `mistakes` most confident test mistakes get their `k`
    nearest training images, and every sampled training image is checked for a suspect
    label (`neighbours.suspect_labels`).

    Args:
        candidates: method name -> (evaluation JSON path, classifier model directory).
        output_path: the JSON for the report (figures, thumbnails as PNG data URIs).
        suspects_path: every suspect as CSV (`SUSPECT_COLUMNS`), most certain first.

    Returns:
        The JSON's content.
    """
    from contrastive import data as data_io
    from contrastive import neighbours, training
    from contrastive.evaluation import pad_batch
    from contrastive.models import find_encoder
    from contrastive.tasks.evaluating import best_method

    data_uri = data_location(data_uri)
    manifest = data_io.read_manifest(data_uri)
    class_names = list(manifest["class_names"])
    evaluations = {name: read_json(Path(path)) for name, (path, _) in candidates.items()}
    best = best_method(evaluations)
    model, info = modeldir.load_model_dir(candidates[best][1])
    modeldir.check_compatible(info, manifest, candidates[best][1])
    encoder = find_encoder(model)
    dim = int(encoder.output_shape[-1])
    capacity = min(settings.max_reference, (settings.max_reference_mib << 20) // (4 * dim))
    size = settings.batch_size
    positions, reference, reference_labels, ids, seen = embed_sample(
        encoder, data_uri, "train", capacity, batch_size=size, seed=settings.seed
    )
    # every search below is in the reference's leading singular directions
    space = neighbours.NeighbourSpace.fit(reference, settings.neighbour_dim)
    reference = space(reference)
    suspects = neighbours.suspect_labels(
        reference, reference_labels, k=settings.suspect_k, min_share=settings.min_share
    )
    log.info(
        "explain %s: %d training images in the reference (of %d), %d suspect labels",
        best,
        len(positions),
        seen,
        len(suspects["index"]),
    )

    agreement = neighbours.NeighbourAgreement(len(class_names))
    mistakes = neighbours.ConfidentMistakes(settings.mistakes)
    labelled = reference_labels >= 0
    labelled_reference, labelled_labels = reference[labelled], reference_labels[labelled]
    start = 0
    for images, labels in data_io.read_split(data_uri, "test", size).as_numpy_iterator():
        count, padded = len(labels), pad_batch(images, size)
        probabilities = training.predict_proba(model, padded, size)[:count]
        features = space(training.embed(encoder, padded, size)[:count])
        nearest = np.concatenate(
            [
                block[1][:, 0]
                for block in training.nearest_neighbours(labelled_reference, features, 1)
            ]
        )
        agreement.add(labelled_labels[nearest], labels)
        mistakes.add(
            positions=np.arange(start, start + count),
            labels=labels,
            predicted=probabilities.argmax(axis=1),
            confidence=probabilities.max(axis=1),
            features=features,
            images=images,
        )
        start += count

    rows = mistakes.rows
    explained = neighbours.explain_mistakes(
        labelled_reference,
        labelled_labels,
        rows.get("features", np.zeros((0, space.dim(dim)))),
        k=settings.k,
    )
    # Reference rows (in `reference`) whose image is shown: neighbours and the top suspects.
    neighbour_rows = np.flatnonzero(labelled)[explained[0]]
    shown = suspects["index"][: settings.shown_suspects]
    wanted = positions[np.concatenate([neighbour_rows.reshape(-1), shown])]
    thumbnails = _thumbnails(data_uri, "train", set(wanted.tolist()), settings)
    sources = _source_paths(data_uri, manifest, [ids[i] for i in suspects["index"]])
    _write_suspects(suspects_path, suspects, ids, sources, class_names)

    def example(row: int) -> dict:
        return {
            "id": ids[row],
            "label": int(reference_labels[row]),
            "thumbnail": thumbnails.get(int(positions[row])),
        }

    result = {
        "method": best,
        "class_names": class_names,
        "reference": {
            "examples": int(len(positions)),
            "seen": int(seen),
            "dim": dim,
            "neighbour_dim": space.dim(dim),
        },
        "agreement": agreement.result(),
        "mistakes": [
            {
                "position": int(rows["position"][m]),
                "label": int(rows["label"][m]),
                "predicted": int(rows["predicted"][m]),
                "confidence": float(rows["confidence"][m]),
                "thumbnail": _thumbnail_uri(rows["images"][m], settings.thumbnail_size),
                "neighbours": [
                    {**example(int(neighbour_rows[m, j])), "similarity": float(explained[2][m, j])}
                    for j in range(explained[0].shape[1])
                ],
            }
            for m in range(len(mistakes))
        ],
        "suspects": {
            "count": int(len(suspects["index"])),
            "checked": suspects["checked"],
            "k": settings.suspect_k,
            "min_share": settings.min_share,
            "file": SUSPECTS_FILE,
            "location": str(suspects_path),  # where this step wrote them
            "top": [
                {
                    **example(int(row)),
                    "source_path": sources.get(ids[row], ""),
                    "suggested": int(suspects["suggested"][n]),
                    "share": float(suspects["share"][n]),
                    "similarity": float(suspects["similarity"][n]),
                }
                for n, row in enumerate(shown)
            ],
        },
        "settings": asdict(settings),
    }
    modeldir.write_json(output_path, result)
    return result


def _thumbnails(data_uri: str, split: str, positions: set[int], settings) -> dict[int, str]:
    """PNG data URIs of the examples at these stream positions of `split` (read once more,
    in the same fixed order; stops after the last one)."""
    from contrastive import data as data_io

    found: dict[int, str] = {}
    if not positions:
        return found
    last, start = max(positions), 0
    batches = data_io.read_split(data_uri, split, settings.batch_size).as_numpy_iterator()
    for images, _ in batches:
        for position in range(start, start + len(images)):
            if position in positions:
                found[position] = _thumbnail_uri(images[position - start], settings.thumbnail_size)
        start += len(images)
        if start > last:
            break
    return found


def _thumbnail_uri(image, size: int) -> str:
    from contrastive.report.plots import thumbnail_uri

    return thumbnail_uri(image, size)


def _source_paths(data_uri: str, manifest: dict, ids: list[str]) -> dict[str, str]:
    """id -> `source_path` from `index.parquet` (a folder source's file; an array source's
    file and offset as `path[offset]`), for these ids only."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    index_path = storage.join(data_uri, manifest.get("index", "index.parquet"))
    if not ids or not storage.exists(index_path):
        return {}
    table = pq.read_table(
        pa.BufferReader(storage.read_bytes(index_path)),
        columns=["id", "split", "source_path", "source_offset"],
    )
    table = table.filter(
        pc.and_(pc.equal(table["split"], "train"), pc.is_in(table["id"], pa.array(ids)))
    )
    paths = {}
    for row_id, path, offset in zip(
        table["id"].to_pylist(),
        table["source_path"].to_pylist(),
        table["source_offset"].to_pylist(),
        strict=True,
    ):
        paths[row_id] = path if offset is None or offset < 0 else f"{path}[{offset}]"
    return paths


def _write_suspects(path, suspects: dict, ids, sources: dict, class_names) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(SUSPECT_COLUMNS)
    for n, row in enumerate(suspects["index"]):
        label, suggested = int(suspects["label"][n]), int(suspects["suggested"][n])
        writer.writerow(
            [
                ids[row],
                sources.get(ids[row], ""),
                label,
                class_names[label],
                suggested,
                class_names[suggested],
                f"{suspects['share'][n]:.3f}",
                f"{suspects['similarity'][n]:.4f}",
            ]
        )
    storage.write_text(path, buffer.getvalue())


def _text(value) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


def run_check_drift(
    data_uri: str,
    *,
    registry: str,
    retrain_when: str,
    run_id: str,
    config,
    methods=(),
    drift_path: str | Path,
    settings: DriftSettings = DriftSettings(),
    batch_size: int = 512,
) -> dict:
    """Before training: has the training data drifted from the champion's, and does this run
    train?

    Fingerprints this run's training data and code (`contrastive.fingerprints`); with a
    champion in `registry` that kept a drift reference (`DRIFT_REFERENCE`), its encoder embeds
    a uniform sample of `settings.sample_size` new training images and `drift.mmd_test`
    compares them with the reference. `drift.decide_retraining` decides under
    `retrain_when`; a skip is recorded in the registry as the gate's decisions are
    (`decisions/<run_id>.json`, outcome `skipped`).

    Args:
        config: the run's resolved `Config` (part of the code fingerprint).
        methods: the methods the pipeline trains (likewise).
        drift_path: where the result is written (JSON, read by the report).

    Returns:
        The result: `decision` ("train" or "skip"), `reason`, `fingerprints`, `champion`,
        `test` (`mmd_test`'s, or None when not measured, with `not_measured` saying why),
        `drift_found`, `label_shift`, `map` (a 2-D view of both samples) and `settings`.
    """
    from contrastive import data as data_io
    from contrastive import drift, evaluation
    from contrastive.fingerprints import code_fingerprint, data_fingerprint
    from contrastive.modeldir import DataMismatchError
    from contrastive.models import find_encoder
    from contrastive.registry import ModelRegistry

    validation.check_choice("retrain_when", retrain_when, drift.RETRAIN_POLICIES)
    data_uri = data_location(data_uri)
    manifest = data_io.read_manifest(data_uri)
    fingerprints = {
        "data": data_fingerprint(data_uri),
        "code": code_fingerprint(config.to_dict(), methods),
    }
    result = {
        "policy": retrain_when,
        "alpha": settings.alpha,
        "class_names": list(manifest["class_names"]),
        "fingerprints": fingerprints,
        "champion": None,
        "test": None,
        "drift_found": None,
        "not_measured": "",
        "settings": asdict(settings),
    }
    champion = ModelRegistry(registry).champion() if registry else None
    reference = read_drift_reference(champion["model_uri"]) if champion else None
    if not registry:
        result["not_measured"] = "no registry: there is no champion to compare with"
    elif champion is None:
        result["not_measured"] = "no champion yet in the registry"
    elif reference is None:
        result["not_measured"] = "the champion was promoted without a drift reference"
    else:
        result["champion"] = {"run_id": champion.get("run_id"), **reference["meta"]}
        try:
            model, info = modeldir.load_model_dir(champion["model_uri"])
            modeldir.check_compatible(info, manifest, champion["model_uri"])
        except DataMismatchError as error:
            result["not_measured"] = f"the champion does not fit this dataset ({error})"
        else:
            _, new, new_labels, _, _ = embed_sample(
                find_encoder(model),
                data_uri,
                "train",
                settings.sample_size,
                batch_size=batch_size,
                seed=settings.seed,
            )
            old, old_labels = reference["features"], reference["labels"]
            test = drift.mmd_test(old, new, permutations=settings.permutations, seed=settings.seed)
            result["test"] = test
            result["drift_found"] = test["p_value"] < settings.alpha
            result["label_shift"] = drift.label_shift(
                old_labels, new_labels, len(manifest["class_names"])
            )
            shown = min(settings.max_points, len(old), len(new))
            points, _ = evaluation.pca_2d(np.concatenate([old[:shown], new[:shown]]))
            result["map"] = {
                "x": points[:, 0].tolist(),
                "y": points[:, 1].tolist(),
                "side": ["champion"] * shown + ["new"] * shown,
            }
    train, reason = drift.decide_retraining(
        retrain_when,
        champion=result["champion"]["fingerprints"] if result["champion"] else None,
        fingerprints=fingerprints,
        test=result["test"],
        alpha=settings.alpha,
    )
    result["decision"] = drift.RETRAIN if train else drift.SKIP
    result["reason"] = reason
    if result["not_measured"]:
        log.info("drift not measured: %s", result["not_measured"])
    log.info("drift check: %s (%s)", result["decision"], reason)
    if not train:
        ModelRegistry(registry).record_decision(
            run_id,
            {
                "promote": False,
                "promoted": False,
                "outcome": "skipped",
                "reason": reason,
                "champion_run_id": champion.get("run_id"),
                "drift": compact_drift(result),
            },
        )
    modeldir.write_json(drift_path, result)
    return result


def compact_neighbours(result: dict | None) -> dict | None:
    """The explanations' figures without thumbnails: what `results.json` keeps."""
    if not result:
        return None
    suspects = {key: value for key, value in result["suspects"].items() if key != "top"}
    return {
        "method": result["method"],
        "reference": result["reference"],
        "agreement": result["agreement"],
        "mistakes_shown": len(result["mistakes"]),
        "suspects": suspects,
    }


def scalars(neighbours: dict | None, drift: dict | None) -> dict[str, float]:
    """KFP metrics of the two steps: nearest-neighbour agreement, suspect count; the drift
    test's MMD², effect size and p-value, whether drift was found and whether the run
    trained."""
    figures = {}
    if neighbours:
        if neighbours["agreement"]["overall"] is not None:
            figures["nearest_neighbour_agreement"] = neighbours["agreement"]["overall"]
        figures["suspect_labels"] = float(neighbours["suspects"]["count"])
    if drift:
        test = drift.get("test")
        if test:
            figures["drift_mmd2"] = test["statistic"]
            figures["drift_effect_size"] = test["effect_size"]
            figures["drift_p_value"] = test["p_value"]
            figures["drift_found"] = float(bool(drift["drift_found"]))
        figures["retrained"] = float(drift["decision"] == "train")
    return figures


def compact_drift(result: dict | None) -> dict | None:
    """The drift result without its arrays (the permutation null, the 2-D map): what
    `results.json` and a decision record keep."""
    if not result:
        return None
    compact = {key: value for key, value in result.items() if key not in ("map", "settings")}
    if compact.get("test"):
        compact["test"] = {key: v for key, v in compact["test"].items() if key != "null"}
    return compact


def drift_reference_bytes(
    model_dir: str, data_uri: str, fingerprints: dict, settings: DriftSettings = DriftSettings()
) -> bytes:
    """The drift reference a promoted champion keeps (`DRIFT_REFERENCE`): its encoder's
    embeddings of a uniform sample of `settings.sample_size` of its training images (the
    sample the next runs' drift check draws the same way), their labels, and the
    fingerprints of that data and code, as an `.npz` (no pickled objects)."""
    from contrastive.models import find_encoder

    model, _ = modeldir.load_model_dir(model_dir)
    _, features, labels, _, seen = embed_sample(
        find_encoder(model),
        data_location(data_uri),
        "train",
        settings.sample_size,
        batch_size=512,
        seed=settings.seed,
    )
    meta = {"fingerprints": fingerprints, "examples": int(len(labels)), "seen": int(seen)}
    buffer = io.BytesIO()
    np.savez(buffer, features=features, labels=labels, meta=np.array(json.dumps(meta)))
    return buffer.getvalue()


def read_drift_reference(model_uri: str) -> dict | None:
    """`{"features", "labels", "meta"}` of a champion's `DRIFT_REFERENCE`; None without one."""
    path = storage.join(model_uri, DRIFT_REFERENCE)
    if not storage.exists(path):
        return None
    with np.load(io.BytesIO(storage.read_bytes(path)), allow_pickle=False) as stored:
        return {
            "features": stored["features"],
            "labels": stored["labels"],
            "meta": json.loads(str(stored["meta"])),
        }
