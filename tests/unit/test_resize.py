"""The one resize rule (`images.RESIZE_METHOD`): aspect ratio kept by a centred crop, in the
two places that resize (encoded images of folders and TFDS with Pillow, arrays with TensorFlow;
TFDS images of any size: `test_data_tfds_photos.py`)."""

import numpy as np
import pytest

from contrastive.data.images import crop_box, crop_resize, resize_arrays


@pytest.mark.parametrize(
    "height, width, size, box",
    [
        (20, 40, (10, 10), (0, 10, 20, 20)),  # landscape to square: cut the sides
        (40, 20, (10, 10), (10, 0, 20, 20)),  # portrait to square: cut top and bottom
        (30, 40, (3, 4), (0, 0, 30, 40)),  # same aspect: nothing cut
        (31, 40, (10, 10), (0, 4, 31, 31)),  # an odd margin: the extra column goes right
        (10, 100, (50, 20), (0, 48, 10, 4)),  # 10 * 20 / 50 = 4 columns
    ],
)
def test_crop_box_is_the_largest_centred_box_of_the_target_aspect(height, width, size, box):
    assert crop_box(height, width, size) == box


def _banded(height, width):
    """White where the centred square crop keeps, black in the side bands it cuts."""
    image = np.zeros((height, width, 3), np.uint8)
    margin = (width - height) // 2
    image[:, margin : margin + height] = 255
    return image


def test_pillow_and_tensorflow_paths_crop_the_same_box():
    image = _banded(20, 40)
    assert int(crop_resize(image, (10, 10)).min()) == 255
    assert int(resize_arrays(image[None], (10, 10)).min()) == 255
    # a stretch would have mixed the black bands in
    from PIL import Image

    stretched = np.asarray(Image.fromarray(image).resize((10, 10), Image.Resampling.BILINEAR))
    assert int(stretched.min()) < 255
