"""A source format added from outside the package: the proof that a new format is one module
(its opener) plus one `SourceFormat` entry in `contrastive.data.sources.FORMATS`.

`hex:FILE` is a text file of 4x4 grey images, one a line: `SPLIT,CLASS,HEX` where HEX is the
16 pixels as 32 hex digits. Classes are named by the file, in order of first appearance.
"""

import numpy as np

from contrastive import storage
from contrastive.data.errors import DataError
from contrastive.data.sources import ArraySplit, OpenContext, Source, SourceFormat

SIDE = 4


def open_hex(location: str, context: OpenContext) -> Source:
    """The `hex:` file at `location` as a `Source` of `ArraySplit`s."""
    rows: dict[str, tuple[list, list]] = {}
    class_names: list[str] = []
    text = storage.read_bytes(location).decode("utf-8")
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            split, name, pixels = line.split(",")
            image = np.frombuffer(bytes.fromhex(pixels), np.uint8).reshape(SIDE, SIDE, 1)
        except ValueError as error:
            raise DataError(f"{location}:{number}: not SPLIT,CLASS,HEX ({error})") from None
        if name not in class_names:
            class_names.append(name)
        images, labels = rows.setdefault(split, ([], []))
        images.append(image)
        labels.append(class_names.index(name))
    splits = {
        split: ArraySplit(np.stack(images), np.array(labels, np.int64), origin=location)
        for split, (images, labels) in rows.items()
    }
    return Source(kind="hex", location=location, class_names=class_names, splits=splits)


HEX = SourceFormat("hex", "hex:FILE", "tests.toy_source:open_hex")
