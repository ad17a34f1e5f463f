"""ingest_data: any image source -> sharded TFRecords + manifest (CPU only, cached)."""

from kfp.dsl import Dataset, Output


def ingest_data(
    dataset: Output[Dataset],
    source: str = "fashion_mnist",
    profile: str = "quick",
    overrides: str = "",
    validation_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    limit: int = 0,
    image_size: str = "",
    on_error: str = "skip",
    labeled_fraction: float = 0.0,
    class_name_variants: str = "refuse",
    max_upscale: float = 4.0,
    max_aspect_ratio: float = 4.0,
    data_snapshot: str = "",
    runner: str = "",
    beam_options: str = "",
    worker_image: str = "",
) -> int:
    """Ingest `source` into the Dataset artifact (or copy it, when it is already an ingested
    dataset); returns the number of classes. `image_size` empty: the profile's
    `data.image_size` (after `overrides`). `data_snapshot` only enters KFP's cache key: a run
    with caching on ingests the source afresh when given a new value (e.g. a date); scheduled
    runs turn caching off instead. A remote Beam runner writes to the artifact's `gs://` URI,
    which its workers reach, rather than to the step's local path.
    """
    from contrastive import tasks
    from contrastive.config import resolve_config

    config = resolve_config(profile, overrides=overrides)
    manifest = tasks.run_ingest(
        source,
        tasks.data_location(dataset) if runner in ("dataflow", "flink", "spark") else dataset.path,
        validation_fraction=validation_fraction,
        test_fraction=test_fraction,
        seed=seed,
        limit=limit,
        image_size=image_size or config.data.image_size,
        on_error=on_error,
        labeled_fraction=labeled_fraction,
        class_name_variants=class_name_variants,
        max_upscale=max_upscale,
        max_aspect_ratio=max_aspect_ratio,
        runner=runner,
        beam_options=tasks.beam_options(runner, beam_options, worker_image),
    )
    dataset.metadata.update(**tasks.dataset_metadata(manifest), data_snapshot=data_snapshot)
    return int(manifest["num_classes"])
