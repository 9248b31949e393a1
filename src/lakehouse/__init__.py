"""cdc-lakehouse: Debezium change events in an S3 lake -> current-state tables -> warehouse -> marts."""

import os


def _arrow_memory_pool() -> None:
    """Arrow allocates through jemalloc unless ARROW_DEFAULT_MEMORY_POOL says otherwise.

    Measured on the 2M-event bench lake (2 cores, one fresh process each): compaction 14.4 s and
    2.6 GB peak with pyarrow's default mimalloc, 7.7 s and 2.0 GB with jemalloc, which keeps freed
    pages for the next batch instead of handing them back and faulting them in again
    (bench/results/compact-10M-engines.md)."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    import pyarrow as pa

    if "jemalloc" in pa.supported_memory_backends():  # builds without it keep their default
        pa.set_memory_pool(pa.jemalloc_memory_pool())


_arrow_memory_pool()
