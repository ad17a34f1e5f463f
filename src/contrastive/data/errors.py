"""Exceptions raised by `contrastive.data`."""


class DataError(ValueError):
    """Bad input data or arguments; the message names the file, field and value at fault."""


class DatasetIncompleteError(DataError):
    """A dataset location without `manifest.json`: never written, or its ingest did not finish."""


class CorruptShardError(DataError):
    """A shard whose size or sha256 differs from the manifest (truncated, bit-flipped, replaced)."""


class IngestJobError(RuntimeError):
    """An ingest's Beam job failed, was cancelled or ran past its time bound; the message
    carries the runner's own error (Dataflow's job messages, the job server's)."""

    exit_code = 1
