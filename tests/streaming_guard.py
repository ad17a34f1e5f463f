"""A guard that fails any whole-split load: the pipeline's steps must stream their splits.

Used while `trained_models` trains its three models (tests/conftest.py) and around the other
steps in `tests/unit/test_streaming_steps.py`: inside it, `read_split` records every call
and refuses an in-memory cache, `load_arrays` refuses a limit that reaches the whole split,
and `load_training_data` (which loads whole splits) is refused outright.
"""

import contextlib

import pytest

from contrastive import data
from contrastive.data import reader


@contextlib.contextmanager
def whole_split_guard(dataset):
    """Patches the loaders of `dataset`'s splits; yields the list of `read_split` calls
    `(split, batch_size, options)`, appended to as the steps read."""
    manifest = data.read_manifest(dataset)
    calls = []
    read_split, load_arrays = reader.read_split, reader.load_arrays

    def recording_read_split(uri, split, batch_size, **options):
        calls.append((split, batch_size, options))
        assert not options.get("cache"), f"{split} cached in memory"
        return read_split(uri, split, batch_size, **options)

    def bounded_load_arrays(uri, split, limit=None):
        size = manifest["splits"][split]["num_examples"]
        assert limit is not None and limit < size, f"load_arrays on the whole {split} split"
        return load_arrays(uri, split, limit)

    def no_load_training_data(*args, **kwargs):
        raise AssertionError("load_training_data loads whole splits")

    with pytest.MonkeyPatch.context() as patch:
        for module in (data, reader):  # the package first: it caches what the reader holds
            patch.setattr(module, "read_split", recording_read_split)
            patch.setattr(module, "load_arrays", bounded_load_arrays)
            patch.setattr(module, "load_training_data", no_load_training_data)
        yield calls
