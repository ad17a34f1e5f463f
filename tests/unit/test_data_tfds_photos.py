"""TFDS photo datasets get the folder rules (issue 31): TFDS stores the bytes of the files a
dataset was built from, EXIF included, and its own decoder ignores the EXIF orientation.

A real TFDS builder (`GeneratorBasedBuilder`, prepared into a temp data_dir by TFDS itself)
whose images are encoded bytes: PNGs with an EXIF orientation, a 1x1 dot, a banded landscape
photo, and class names that differ only in case."""

import numpy as np
import pytest

from contrastive import data
from contrastive.data import DataError
from tests.data_helpers import decoded, encoded, index_of

NAME = "contrastive_oriented_photos"  # TFDS registers the builder under this name
SIZE = (8, 8)


def _png(pixels, orientation=None):
    return encoded(pixels, "PNG", orientation=orientation)


def _grid(seed, shape):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _banded():
    """20 x 40: white where a centred square crop keeps, black in the side bands it cuts."""
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, 10:30] = 255
    return image


# (bytes, label) of the train split, in order; label 0 "Cat", 1 "cat", 2 "dog".
EXAMPLES = [
    (_png(_grid(1, (8, 8, 3)), 1), 0),
    (_png(_grid(2, (8, 8, 3)), 6), 0),  # turned 90 degrees clockwise when shown
    (_png(_grid(3, (8, 8, 3)), 3), 1),  # turned 180 degrees
    (_png(np.zeros((1, 1, 3), np.uint8)), 1),  # a 1x1 dot: too small for 8x8
    (_png(_banded()), 2),  # landscape 1:2: cropped to the white centre
    (_png(_grid(4, (8, 8, 3))), 2),
]


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    import tensorflow_datasets as tfds

    class ContrastiveOrientedPhotos(tfds.core.GeneratorBasedBuilder):
        # TFDS looks for a builder's data files under its module's top package; pytest imports
        # this file as a top-level module, so name the package the file lives in.
        __module__ = "tests.unit.test_data_tfds_photos"
        # No downloads, so no checksums file to find: finding the code path needs the
        # `importlib_resources` backport, which this environment lacks (see the README).
        code_path = None
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return self.dataset_info_from_configs(
                features=tfds.features.FeaturesDict(
                    {
                        "image": tfds.features.Image(shape=(None, None, 3)),
                        "label": tfds.features.ClassLabel(names=["Cat", "cat", "dog"]),
                    }
                )
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for key, (image_bytes, label) in enumerate(EXAMPLES):
                yield key, {"image": image_bytes, "label": label}

    assert ContrastiveOrientedPhotos.name == NAME
    return str(tmp_path_factory.mktemp("tfds"))


def _tfds_order(tfds_dir):
    """TFDS position -> index into EXAMPLES (TFDS shuffles examples while preparing)."""
    import tensorflow_datasets as tfds

    builder = tfds.builder(NAME, data_dir=tfds_dir)
    builder.download_and_prepare()
    undecoded = builder.as_dataset(split="train", decoders={"image": tfds.decode.SkipDecoding()})
    encoded = [example["image"] for example in undecoded.as_numpy_iterator()]
    return [[e for e, _ in EXAMPLES].index(data_bytes) for data_bytes in encoded]


def test_tfds_stores_the_file_bytes_and_its_decoder_ignores_the_orientation(tfds_dir):
    """The fault, in TFDS itself: TFDS keeps each file's bytes (so `_tfds_order` finds every
    example's bytes unchanged) and what `as_dataset` decodes is the stored grid, not upright."""
    import tensorflow_datasets as tfds

    order = _tfds_order(tfds_dir)
    assert sorted(order) == list(range(len(EXAMPLES)))
    builder = tfds.builder(NAME, data_dir=tfds_dir)
    decoded = [e["image"] for e in builder.as_dataset(split="train").as_numpy_iterator()]
    turned = decoded[order.index(1)]  # EXAMPLES[1]: orientation 6
    np.testing.assert_array_equal(turned, _grid(2, (8, 8, 3)))


def test_tfds_class_names_differing_in_case_are_refused(tfds_dir, tmp_path):
    with pytest.raises(DataError, match="class names 'Cat' and 'cat' differ only in case"):
        data.ingest(f"tfds:{NAME}", str(tmp_path / "out"), tfds_data_dir=tfds_dir, image_size=8)


def test_tfds_images_are_upright_checked_and_cropped_like_folder_images(tfds_dir, tmp_path):
    order = _tfds_order(tfds_dir)
    out = tmp_path / "out"
    manifest = data.ingest(
        f"tfds:{NAME}",
        str(out),
        tfds_data_dir=tfds_dir,
        image_size=SIZE,
        class_name_variants="merge",
        validation_fraction=0.0,
        progress=False,
    )
    assert manifest["class_names"] == ["Cat", "dog"]
    assert manifest["merged_classes"] == {"Cat": ["Cat", "cat"]}
    assert manifest["skipped"] == [
        {
            "path": f"tfds:{NAME}/train[{order.index(3)}]",  # EXAMPLES[3], the 1x1 dot
            "reason": "too small: 1x1 (height x width) would be enlarged 8x to 8x8, over "
            "max_upscale=4",
        }
    ]
    rows = index_of(out)
    # EXAMPLES index -> (stored pixels, label, orientation); source_offset is the TFDS position
    stored = {
        order[rows[name]["source_offset"]]: (image, label, rows[name]["orientation"])
        for name, (image, label) in decoded(out, "train").items()
    }
    assert sorted(stored) == [0, 1, 2, 4, 5]
    assert {k: v[2] for k, v in stored.items()} == {0: 1, 1: 6, 2: 3, 4: 0, 5: 0}
    np.testing.assert_array_equal(stored[0][0], _grid(1, (8, 8, 3)))
    np.testing.assert_array_equal(stored[1][0], np.rot90(_grid(2, (8, 8, 3)), -1))
    np.testing.assert_array_equal(stored[2][0], _grid(3, (8, 8, 3))[::-1, ::-1])
    assert int(stored[4][0].min()) == 255  # the centred crop, not a stretch with black bands
    assert [stored[k][1] for k in (0, 1, 2, 4, 5)] == [0, 0, 0, 1, 1]
    assert manifest["oriented"] == {"3": 1, "6": 1}
