"""Dagster's retry of steps that touch S3 or BigQuery: one policy, and permanent failures kept out of it.

Inside a step the storage clients already retry each request (``lakehouse.lake.retry``); this is
the next level, for an outage longer than that budget. Every step is idempotent (a compaction
resumes from its last commit, a load from its last recorded load), so a retry repeats nothing.
A bad object, a config error or a schema conflict is not retried: the same input fails the same way.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from lakehouse.lake.retry import StorageUnavailableError, is_transient

STORAGE_RETRY = dg.RetryPolicy(
    max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


def retryable(exc: BaseException) -> bool:
    return isinstance(exc, StorageUnavailableError) or is_transient(exc)


@contextmanager
def only_transient_failures_retried(what: str) -> Iterator[None]:
    """Re-raise transient errors as they are (the policy retries them); anything else becomes a
    ``dg.Failure`` that Dagster does not retry, naming ``what`` failed."""
    try:
        yield
    except dg.Failure:
        raise
    except Exception as exc:
        if retryable(exc):
            raise
        raise dg.Failure(description=f"{what}: {type(exc).__name__}: {exc}", allow_retries=False) from exc
