"""ingest_data: any image source -> sharded TFRecords + manifest (CPU only, cached)."""

from kfp.dsl import Dataset, Output


def ingest_data(
    dataset: Output[Dataset],
    source: str = "fashion_mnist",
    validation_fraction: float = 0.1,
    seed: int = 0,
    limit: int = 0,
    image_size: str = "",
    on_error: str = "skip",
    labeled_fraction: float = 0.0,
    data_snapshot: str = "",
) -> int:
    """Ingest `source` into the Dataset artifact; returns the number of classes.

    `data_snapshot` only enters KFP's cache key: a run with caching on ingests the source
    afresh when given a new value (e.g. a date). Scheduled runs turn caching off instead.
    """
    from contrastive import tasks

    manifest = tasks.run_ingest(
        source,
        dataset.path,
        validation_fraction=validation_fraction,
        seed=seed,
        limit=limit,
        image_size=image_size,
        on_error=on_error,
        labeled_fraction=labeled_fraction,
    )
    dataset.metadata.update(
        num_classes=manifest["num_classes"],
        image_shape=manifest["image_shape"],
        splits={k: v["num_examples"] for k, v in manifest["splits"].items()},
        skipped=len(manifest["skipped"]),
        data_snapshot=data_snapshot,
    )
    return int(manifest["num_classes"])
