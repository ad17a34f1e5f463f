"""Tests for contrastive.data's reader: manifest checks, read_split, load_arrays, damage."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from contrastive import data
from contrastive.data import CorruptShardError, DataError, DatasetIncompleteError


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A committed npz dataset: 200 train (4 classes, 8x8x3), 40 test, several shards."""
    root = tmp_path_factory.mktemp("reader")
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (200, 8, 8, 3), dtype=np.uint8),
        "y_train": np.arange(200) % 4,
        "x_test": rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8),
        "y_test": np.arange(40) % 4,
    }
    np.savez(root / "d.npz", **arrays)
    out = str(root / "out")
    data.ingest(f"npz:{root / 'd.npz'}", out, shard_size_bytes=10_000, progress=False)
    return out, arrays


def batches(dataset_):
    return [(x.numpy(), y.numpy()) for x, y in dataset_]


def concat(batch_list):
    return np.concatenate([x for x, _ in batch_list]), np.concatenate([y for _, y in batch_list])


def test_read_split_yields_uint8_batches_of_the_manifest_shape(dataset):
    out, arrays = dataset
    ds = data.read_split(out, "test", 16)
    assert ds.element_spec[0].dtype == tf.uint8 and ds.element_spec[1].dtype == tf.int64
    result = batches(ds)
    assert [len(y) for _, y in result] == [16, 16, 8]
    x, y = concat(result)
    assert x.shape == (40, 8, 8, 3)
    # Test keeps source order and is one shard here.
    np.testing.assert_array_equal(x, arrays["x_test"])
    np.testing.assert_array_equal(y, arrays["y_test"])


def test_train_read_back_holds_every_example_once(dataset):
    out, arrays = dataset
    assert len(data.read_manifest(out)["splits"]["train"]["shards"]) > 2
    x_train, _ = data.load_arrays(out, "train")
    x_validation, _ = data.load_arrays(out, "validation")
    read = sorted(image.tobytes() for image in np.concatenate([x_train, x_validation]))
    assert read == sorted(image.tobytes() for image in arrays["x_train"])


def test_shuffle_is_seeded(dataset):
    out, _ = dataset

    def order(seed):
        return concat(batches(data.read_split(out, "train", 32, shuffle=True, seed=seed)))[0]

    first = order(1)
    np.testing.assert_array_equal(first, order(1))
    assert not np.array_equal(first, order(2))
    assert sorted(map(bytes, first)) == sorted(map(bytes, data.load_arrays(out, "train")[0]))


def test_deterministic_reads_repeat_the_same_order(dataset):
    out, _ = dataset
    first = concat(batches(data.read_split(out, "train", 50)))[0]
    np.testing.assert_array_equal(first, concat(batches(data.read_split(out, "train", 50)))[0])


def test_limit_drop_remainder_repeat_and_cache(dataset):
    out, _ = dataset
    assert sum(len(y) for _, y in batches(data.read_split(out, "train", 7, limit=30))) == 30
    sizes = [len(y) for _, y in batches(data.read_split(out, "test", 16, drop_remainder=True))]
    assert sizes == [16, 16]
    repeated = data.read_split(out, "test", 16, repeat=True, cache=True, drop_remainder=True)
    assert repeated.element_spec[0].shape.as_list() == [16, 8, 8, 3]
    assert len(batches(repeated.take(7))) == 7


def test_cache_keeps_the_first_read_when_the_shards_change(dataset, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(dataset[0], out)
    cached = data.read_split(str(out), "test", 40, cache=True)
    uncached = data.read_split(str(out), "test", 40)
    first = concat(batches(cached))
    np.testing.assert_array_equal(first[0], concat(batches(uncached))[0])
    shards = sorted(out.glob("test/*.tfrecord"))
    assert shards
    for shard in shards:  # rewrite every test shard with its records in reverse order
        records = [r.numpy() for r in tf.data.TFRecordDataset(str(shard))]
        assert len(records) > 1
        with tf.io.TFRecordWriter(str(shard)) as writer:
            for record in reversed(records):
                writer.write(record)
    changed = concat(batches(uncached))[0]
    assert not np.array_equal(changed, first[0])  # an uncached read sees the new shards
    again = concat(batches(cached))
    np.testing.assert_array_equal(again[0], first[0])  # the cache still holds the first read
    np.testing.assert_array_equal(again[1], first[1])


def test_image_size_resizes_on_read(dataset):
    out, _ = dataset
    x, _ = batches(data.read_split(out, "test", 8, image_size=(4, 5)))[0]
    assert x.shape == (8, 4, 5, 3) and x.dtype == np.uint8


def test_load_arrays_limit(dataset):
    out, arrays = dataset
    x, y = data.load_arrays(out, "test", limit=5)
    np.testing.assert_array_equal(x, arrays["x_test"][:5])
    assert y.dtype == np.int64


def test_dataset_info_counts_labels(dataset):
    out, _ = dataset
    info = data.dataset_info(out)
    assert info["splits"]["test"]["label_counts"] == {"0": 10, "1": 10, "2": 10, "3": 10}
    assert info["splits"]["train"]["num_shards"] > 2
    assert info["image_shape"] == [8, 8, 3]


def test_unknown_split(dataset):
    out, _ = dataset
    with pytest.raises(DataError, match=r"has no split 'unlabeled'; it has \['test', 'train'"):
        data.read_split(out, "unlabeled", 8)


def test_bad_reader_arguments(dataset):
    out, _ = dataset
    with pytest.raises(
        ValueError, match="batch_size must be an integer >= 1. Received: batch_size=0"
    ):
        data.read_split(out, "test", 0)


def test_encoded_images_decode_in_the_reader(tmp_path):
    root = tmp_path / "images"
    expected = {}
    for label, name in enumerate(("a", "b")):
        for i in range(3):
            array = np.random.default_rng(label * 10 + i).integers(0, 256, (5, 7, 3), np.uint8)
            (root / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(root / name / f"{i}.png")
            expected[array.tobytes()] = label
    out = str(tmp_path / "out")
    data.ingest(str(root), out, validation_fraction=0.0, progress=False)
    x, y = concat(batches(data.read_split(out, "train", 4, shuffle=True)))
    assert {image.tobytes(): int(label) for image, label in zip(x, y, strict=True)} == expected


# --- refusing incomplete, unknown and damaged datasets -------------------------------------


def test_location_without_manifest_is_incomplete(tmp_path):
    for call in (
        lambda: data.read_manifest(str(tmp_path)),
        lambda: data.read_split(str(tmp_path), "train", 8),
        lambda: data.load_arrays(str(tmp_path), "train"),
    ):
        with pytest.raises(DatasetIncompleteError, match="dataset incomplete") as error:
            call()
        assert str(tmp_path) in str(error.value)


def test_unknown_format_version_is_refused(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 99, "splits": {}}))
    with pytest.raises(DataError, match="format_version=99 is not supported"):
        data.read_split(str(tmp_path), "train", 8)


def damaged_copy(dataset, tmp_path, damage):
    """A copy of the fixture dataset with one train shard damaged; returns (uri, shard name)."""
    out, _ = dataset
    copy = tmp_path / "copy"
    for path in Path(out).rglob("*"):
        if path.is_file():
            target = copy / path.relative_to(out)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    shard = copy / data.read_manifest(out)["splits"]["train"]["shards"][1]["path"]
    content = bytearray(shard.read_bytes())
    shard.write_bytes(damage(content))
    return str(copy), shard.name


def flip_one_bit(content):
    content[len(content) // 2] ^= 0x01
    return bytes(content)


@pytest.mark.parametrize(
    "damage", [lambda c: bytes(c[:-10]), flip_one_bit], ids=["truncated", "bit-flip"]
)
def test_damaged_shard_is_named(dataset, tmp_path, damage):
    uri, name = damaged_copy(dataset, tmp_path, damage)
    with pytest.raises(
        CorruptShardError, match=f"^corrupt dataset .*: split train, shard .*{name}"
    ):
        data.read_split(uri, "train", 8)
    with pytest.raises(CorruptShardError, match=name):
        data.load_arrays(uri, "train")
    with pytest.raises(CorruptShardError, match=name):
        data.verify_shards(uri)
    data.read_split(uri, "test", 8)  # other splits stay readable


def _edited_copy(dataset, tmp_path, edit):
    """A copy of the fixture dataset whose manifest `edit(manifest)` changed."""
    out, _ = dataset
    copy = tmp_path / "edited"
    shutil.copytree(out, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    edit(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return str(copy), str(copy / "manifest.json")


def test_a_manifest_whose_counts_disagree_with_its_shards_names_manifest_split_and_shard(
    dataset, tmp_path
):
    """Was `FailedPreconditionError: ... expected to contain 3 elements but contained only
    1` from tf.data, naming none of them."""

    def one_more(manifest):
        manifest["splits"]["train"]["shards"][1]["num_examples"] += 1
        manifest["splits"]["train"]["num_examples"] += 1

    uri, manifest_path = _edited_copy(dataset, tmp_path, one_more)
    shard = data.read_manifest(uri)["splits"]["train"]["shards"][1]
    with pytest.raises(CorruptShardError) as raised:
        data.read_split(uri, "train", 8)
    assert str(raised.value) == (
        f"corrupt dataset {manifest_path}: split train, shard {uri}/{shard['path']} holds "
        f"{shard['num_examples'] - 1} records, the manifest says {shard['num_examples']}"
    )


def test_damage_found_while_streaming_a_split_too_large_to_checksum_is_named(
    dataset, tmp_path, monkeypatch
):
    from contrastive.data import reader

    def one_more(manifest):
        manifest["splits"]["train"]["shards"][1]["num_examples"] += 1
        manifest["splits"]["train"]["num_examples"] += 1

    uri, manifest_path = _edited_copy(dataset, tmp_path, one_more)
    monkeypatch.setattr(reader, "AUTO_VERIFY_MAX_BYTES", 0)  # sizes only, up front
    split = data.read_split(uri, "train", 1)
    with pytest.raises(CorruptShardError, match=f"^corrupt dataset {manifest_path}: split train"):
        with data.naming_damage(uri):
            for _ in split:
                pass
    with pytest.raises(CorruptShardError, match=r"shard .*\.tfrecord holds \d+ records, the"):
        data.load_arrays(uri, "train")


@pytest.mark.parametrize(
    "edit, problem",
    [
        (lambda m: m["splits"]["test"].update(shards=[]), "split test lists no shards"),
        (
            lambda m: m["splits"]["train"].update(num_examples=3),
            "split train says num_examples=3, its shards say ",
        ),
        (
            lambda m: m["splits"]["train"]["shards"][0].update(num_examples=0),
            "split train, shard train/train-00000.tfrecord says num_examples=0",
        ),
        (lambda m: m.pop("image_shape"), "no 'image_shape' field"),
    ],
    ids=["no-shards", "split-total", "shard-count", "field"],
)
def test_a_manifest_that_contradicts_itself_is_named_before_reading(
    dataset, tmp_path, edit, problem
):
    """A split without shards was a multi-line `TypeError: in user code: ... filenames
    argument must contain tf.string elements`."""
    uri, manifest_path = _edited_copy(dataset, tmp_path, edit)
    with pytest.raises(CorruptShardError) as raised:
        data.read_split(uri, "train", 8)
    assert str(raised.value).startswith(f"corrupt dataset {manifest_path}: {problem}")
    assert "\n" not in str(raised.value)


def test_an_unreadable_index_is_named(dataset, tmp_path):
    uri, _ = _edited_copy(dataset, tmp_path, lambda manifest: None)
    index = Path(uri) / "index.parquet"
    index.write_bytes(b"PAR1 not parquet")
    for read in (data.dataset_info, lambda u: data.stream_training_data(
        u, batch_size=8, labeled_fraction=0.5
    )):  # fmt: skip
        with pytest.raises(CorruptShardError) as raised:
            read(uri)
        assert str(raised.value).startswith(
            f"corrupt dataset: {index} is not a readable index (ArrowInvalid: "
        )


def test_a_shard_cut_short_in_its_last_record_is_named(dataset, tmp_path):
    from contrastive.data.reader import _scan_shard

    out, _ = dataset
    shard = Path(out) / data.read_manifest(out)["splits"]["train"]["shards"][0]["path"]
    whole = shard.read_bytes()
    expected = data.read_manifest(out)["splits"]["train"]["shards"][0]["num_examples"]
    assert _scan_shard(str(shard))[1] == expected
    cut = tmp_path / "cut.tfrecord"
    cut.write_bytes(whole[:-3])
    assert _scan_shard(str(cut))[1] is None


def test_size_check_runs_even_without_checksums(dataset, tmp_path):
    uri, name = damaged_copy(dataset, tmp_path, lambda c: bytes(c[:-10]))
    with pytest.raises(CorruptShardError, match=name):
        data.read_split(uri, "train", 8, verify=False)


# --------------------------------------------------------------------------------------------
# streaming: per-process shards, epochs, cardinality


def _ids(dataset_):
    """Each image's bytes: the images are random, so the bytes identify the example."""
    return [image.tobytes() for x, _ in batches(dataset_) for image in x]


@pytest.mark.parametrize("count", [1, 2, 3])
def test_process_shards_are_disjoint_covering_and_deterministic(dataset, count):
    out, _ = dataset
    num_shards = len(data.read_manifest(out)["splits"]["train"]["shards"])
    assert num_shards >= 3  # shard-level for every count here
    parts = [
        _ids(data.read_split(out, "train", 16, process_index=i, process_count=count))
        for i in range(count)
    ]
    every = [image for part in parts for image in part]
    assert len(every) == len(set(every))  # disjoint
    assert sorted(every) == sorted(_ids(data.read_split(out, "train", 16)))  # covering
    again = _ids(data.read_split(out, "train", 16, process_index=count - 1, process_count=count))
    assert again == parts[-1]  # deterministic
    indices = [data.process_shards(num_shards, i, count, seed=0)[0] for i in range(count)]
    assert sorted(index for part in indices for index in part) == list(range(num_shards))


def test_process_shards_depend_on_the_seed_only():
    first = [data.process_shards(10, i, 3, seed=5) for i in range(3)]
    assert first == [data.process_shards(10, i, 3, seed=5) for i in range(3)]
    assert first != [data.process_shards(10, i, 3, seed=6) for i in range(3)]
    assert all(not example_level for _, example_level in first)
    assert data.process_shards(2, 1, 3) == ([0, 1], True)


def test_fewer_shards_than_processes_fall_back_to_example_level(dataset):
    out, arrays = dataset
    assert len(data.read_manifest(out)["splits"]["test"]["shards"]) == 2  # < 3 processes
    parts = [data.read_split(out, "test", 8, process_index=i, process_count=3) for i in range(3)]
    assert [len(part) for part in parts] == [2, 2, 2]  # 14, 13, 13 examples
    ids = [_ids(part) for part in parts]
    assert [len(part) for part in ids] == [14, 13, 13]
    # every third example of the fixed order, starting at the process index
    for index, part in enumerate(ids):
        assert part == [image.tobytes() for image in arrays["x_test"][index::3]]


@pytest.mark.parametrize(
    ("index", "count", "message"),
    [
        (
            3,
            3,
            "process_index must be an integer in [0, process_count=3). Received: process_index=3",
        ),
        (-1, 2, "Received: process_index=-1"),
        (0, 0, "process_count"),
    ],
)
def test_bad_process_arguments_are_refused(dataset, index, count, message):
    out, _ = dataset
    with pytest.raises(
        DataError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")
    ):
        data.read_split(out, "train", 8, process_index=index, process_count=count)


def test_cardinality_is_the_batch_count(dataset):
    out, _ = dataset
    for options in ({}, {"limit": 30}, {"drop_remainder": True}, {"shuffle": True}):
        split = data.read_split(out, "train", 16, **options)
        assert len(split) == len(batches(split)), options


def test_each_epoch_is_a_new_seeded_order_of_the_same_examples(dataset):
    out, _ = dataset
    for limit in (None, 50):
        split = data.read_split(
            out, "train", 16, shuffle=True, seed=3, shuffle_buffer=64, limit=limit
        )
        first, second = _ids(split), _ids(split)
        assert first != second and sorted(first) == sorted(second)
        again = data.read_split(
            out, "train", 16, shuffle=True, seed=3, shuffle_buffer=64, limit=limit
        )
        assert [_ids(again), _ids(again)] == [first, second]
    # with a limit, every epoch holds the same subset: the first examples of the read order
    limited = _ids(data.read_split(out, "train", 16, shuffle=True, seed=3, limit=50))
    assert sorted(limited) == sorted(
        image.tobytes() for image in data.load_arrays(out, "train", limit=50)[0]
    )


def test_several_splits_read_as_one(dataset):
    out, _ = dataset
    both = data.read_split(out, ["train", "test"], 32)
    assert sorted(_ids(both)) == sorted(
        _ids(data.read_split(out, "train", 32)) + _ids(data.read_split(out, "test", 32))
    )
    with pytest.raises(DataError, match="split must name at least one split"):
        data.read_split(out, [], 8)


def test_stream_training_data_matches_the_in_memory_splits(dataset):
    out, _ = dataset
    streamed = data.stream_training_data(out, batch_size=16, seed=1, shuffle_buffer=32)
    loaded = data.load_training_data(out)
    assert (streamed.num_train, streamed.num_validation) == (
        loaded.num_train,
        loaded.num_validation,
    )
    assert sorted(_ids(streamed.train)) == sorted(image.tobytes() for image in loaded.train[0])
    assert _ids(streamed.validation) == [image.tobytes() for image in loaded.validation[0]]
    assert len(streamed.train) == -(-loaded.num_train // 16)


def test_stream_training_data_gives_every_process_the_same_full_batches(dataset):
    """Data-parallel steps are collective: every process must feed the same number of batches
    of its share of the global batch, or the job blocks; the parts are its own shards."""
    out, _ = dataset
    loaded = data.load_training_data(out)
    parts = [
        data.stream_training_data(
            out, batch_size=8, seed=1, process_index=index, process_count=3, shuffle_buffer=32
        )
        for index in range(3)
    ]
    steps = loaded.num_train // (8 * 3)
    for part in parts:
        batches = list(part.train)
        assert len(part.train) == len(batches) == steps
        assert all(images.shape[0] == 8 for images, _ in batches)
    everything = {image.tobytes() for image in loaded.train[0]}
    seen = [set(_ids(part.train)) for part in parts]
    assert all(ids <= everything for ids in seen)
    assert sum(len(ids) for ids in seen) >= 0.8 * steps * 8 * 3  # mostly distinct examples
    validation_steps = loaded.num_validation // (8 * 3)
    for part in parts:
        if validation_steps:
            assert len(list(part.validation)) == validation_steps
        else:
            assert part.validation is None


def test_sample_arrays_is_bounded_and_labelled(dataset):
    out, _ = dataset
    x, y = data.sample_arrays(out, "train", 7)
    expected_x, expected_y = data.load_arrays(out, "train", limit=7)
    np.testing.assert_array_equal(x, expected_x)
    np.testing.assert_array_equal(y, expected_y)
    assert data.sample_arrays(out, "test", 1000)[0].shape == (40, 8, 8, 3)


def test_the_shuffle_buffer_is_bounded_in_bytes(dataset):
    out, _ = dataset
    plain = _ids(data.read_split(out, "train", 16, limit=60))
    # a budget below one record leaves a one-record buffer: no shuffling at all
    tight = data.read_split(out, "train", 16, shuffle=True, limit=60, shuffle_buffer_bytes=1)
    assert _ids(tight) == plain
    loose = data.read_split(out, "train", 16, shuffle=True, limit=60)
    assert _ids(loose) != plain and sorted(_ids(loose)) == sorted(plain)


def _images_and_labels(training_data):
    """`[(image bytes, label)]` of a step's train feed, in feed order."""
    return [
        (image.tobytes(), int(label))
        for x, y in batches(training_data.train)
        for image, label in zip(x, y, strict=True)
    ]


def test_a_labelled_subset_step_sees_the_nested_stratified_subset_only(dataset):
    """The cross-entropy steps' feed at 20 % of the labels: 9 of each class's 45 train images,
    labels as stored, no -1, inside the 60 % subset; repeated to fill 5 batches an epoch."""
    out, _ = dataset
    every = dict(_images_and_labels(data.stream_training_data(out, batch_size=16, seed=0)))
    assert len(every) == 180 and set(np.bincount(list(every.values()))) == {45}
    fed = {}
    for fraction in (0.2, 0.6):
        streamed = data.stream_training_data(
            out, batch_size=16, seed=4, labeled_fraction=fraction, labelled_only=True
        )
        pairs = _images_and_labels(streamed)
        assert all(label >= 0 and every[image] == label for image, label in pairs)
        fed[fraction] = dict(pairs)
        assert streamed.num_train == len(pairs) == round(fraction * 180)
        assert np.bincount(list(fed[fraction].values())).tolist() == [round(fraction * 45)] * 4
    assert set(fed[0.2]) < set(fed[0.6])
    filled = data.stream_training_data(
        out,
        batch_size=16,
        seed=4,
        labeled_fraction=0.2,
        labelled_only=True,
        labeled_steps_per_epoch=5,
    )
    pairs = _images_and_labels(filled)
    assert len(filled.train) == 5 and len(pairs) == filled.num_train == 80
    assert set(image for image, _ in pairs) == set(fed[0.2])  # the same 36, cycled


def _every_and_subset(out):
    """`({image: label} of every train image, {image: label} of the 20 % subset)`."""
    every = dict(_images_and_labels(data.stream_training_data(out, batch_size=16, seed=0)))
    streamed = data.stream_training_data(
        out, batch_size=16, seed=4, labeled_fraction=0.2, labelled_only=True
    )
    return every, dict(_images_and_labels(streamed))


def test_a_pretraining_step_sees_every_image_with_the_others_unlabelled(dataset):
    out, _ = dataset
    every, subset = _every_and_subset(out)
    masked = data.stream_training_data(out, batch_size=16, seed=4, labeled_fraction=0.2)
    pairs = dict(_images_and_labels(masked))
    assert masked.num_train == len(pairs) == 180
    assert {image: label for image, label in pairs.items() if label >= 0} == subset
    assert all(label == -1 for image, label in pairs.items() if image not in subset)
    assert set(pairs) == set(every)


def test_balanced_batches_carry_labelled_images_of_every_class(dataset):
    """SupCon at few labels (`labeled_per_class`): every batch ends with that many labelled
    images of each class, all from the labelled subset with their stored labels; the rest
    of the batch is the pool as without it (unlabelled but for the subset); the epoch keeps
    its batch count, and the labelled images cycle through the whole subset."""
    out, _ = dataset
    every, subset = _every_and_subset(out)
    plain = data.stream_training_data(out, batch_size=16, seed=4, labeled_fraction=0.2)
    balanced = data.stream_training_data(
        out, batch_size=16, seed=4, labeled_fraction=0.2, labeled_per_class=2
    )
    assert len(balanced.train) == len(plain.train) == 12  # ceil(180 / 16)
    seen = set()
    for _epoch in range(2):
        for x, y in batches(balanced.train):
            assert len(y) == 16
            tail = [
                (image.tobytes(), int(label)) for image, label in zip(x[8:], y[8:], strict=True)
            ]
            assert sorted(label for _, label in tail) == [0, 0, 1, 1, 2, 2, 3, 3]
            assert all(subset[image] == label for image, label in tail)
            seen.update(image for image, _ in tail)
            for image, label in zip(x[:8], y[:8], strict=True):  # the pool's part
                assert label == subset.get(image.tobytes(), -1)
                assert image.tobytes() in every
    # 2 epochs x 12 batches x 2 of each class: 48 draws of each class's 9 images
    assert seen == set(subset)


def test_balanced_batches_refuse_a_batch_without_room(dataset):
    out, _ = dataset
    with pytest.raises(DataError, match=r"train.labeled_per_class: 16 labelled images"):
        data.stream_training_data(
            out, batch_size=16, seed=4, labeled_fraction=0.2, labeled_per_class=4
        )
