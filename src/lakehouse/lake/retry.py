"""One retry policy for every storage client: boto3, pyarrow's S3 filesystem, delta-rs, and the
whole-object reads of this package.

A transient error (HTTP 5xx, throttling, a dropped or refused connection, a timeout) is retried
with exponential backoff and jitter until ``get_settings().storage_retry_seconds``; if it persists it
becomes :class:`StorageUnavailableError`, which names the operation and never blames the object
(an unreadable object is a ``LakeObjectError`` only when its bytes are wrong). The tries per
request and the time budget are two settings (:mod:`lakehouse.settings`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryCallState, retry, retry_if_exception, stop_after_delay, wait_random_exponential

from lakehouse.settings import get_settings

log = logging.getLogger(__name__)
T = TypeVar("T")

# what a transient failure looks like in botocore, pyarrow (AWS SDK for C++) and delta-rs
# (object_store) messages; permanent ones (404, 403, NoSuchBucket, 412) do not match
_TRANSIENT = re.compile(
    r"\b50[0-4]\b|SlowDown|Throttl|RequestTimeout|InternalError|ServiceUnavailable|"
    r"NETWORK_CONNECTION|INTERNAL_FAILURE|SERVICE_UNAVAILABLE|SLOW_DOWN|curlCode|"
    r"[Cc]onnection (?:reset|refused|closed|aborted)|[Bb]roken pipe|timed? ?out|Timeout|"
    r"error sending request|IncompleteRead|Connection broken|RemoteDisconnected|"
    r"Could not connect|EndpointConnection|Max retries exceeded"
)


class StorageUnavailableError(Exception):
    """Storage kept failing with transient errors for the whole retry budget (not an OSError, so
    readers never mistake it for a corrupt object)."""


def is_transient(exc: BaseException) -> bool:
    """A failure worth retrying: the storage or the network, not the request or the bytes."""
    from botocore.exceptions import ClientError, ResponseStreamingError
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from urllib3.exceptions import HTTPError as Urllib3Error

    if isinstance(exc, StorageUnavailableError):
        return False
    if _google_transient(exc):
        return True
    if isinstance(
        exc, BotoConnectionError | ResponseStreamingError | Urllib3Error | ConnectionError | TimeoutError
    ):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return (
            status >= 500
            or status == 429
            or bool(_TRANSIENT.search(exc.response.get("Error", {}).get("Code", "")))
        )
    from deltalake.exceptions import DeltaError

    if isinstance(exc, OSError | RuntimeError | DeltaError) and not isinstance(
        exc, FileNotFoundError | PermissionError
    ):
        return bool(_TRANSIENT.search(str(exc)))
    return False


def _google_transient(exc: BaseException) -> bool:
    """BigQuery (google-api-core): 5xx, 429 and retries that ran out of time."""
    try:
        from google.api_core import exceptions as google
    except ImportError:  # the BigQuery client is optional at runtime
        return False
    return isinstance(exc, google.ServerError | google.TooManyRequests | google.RetryError)


def retrying(what: str, call: Callable[[], T]) -> T:
    """``call()``, retried on transient errors within the storage retry budget; ``what`` names the
    operation and object for the log and the final error."""

    def give_up(state: RetryCallState) -> T:
        exc = state.outcome.exception() if state.outcome else None
        raise StorageUnavailableError(
            f"{what}: storage unavailable after {state.attempt_number} attempts in "
            f"{state.seconds_since_start:.0f} s ({_short(exc)}); nothing was committed, run again"
        ) from exc

    def note(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "%s: transient storage error, retrying (attempt %d): %s", what, state.attempt_number, _short(exc)
        )

    policy = retry(
        retry=retry_if_exception(is_transient),
        wait=wait_random_exponential(0.1, max=8),
        stop=stop_after_delay(get_settings().storage_retry_seconds),
        before_sleep=note,
        retry_error_callback=give_up,
    )
    return policy(call)()


def _short(exc: BaseException | None) -> str:
    text = " ".join(str(exc).split()) if exc is not None else ""
    return f"{type(exc).__name__}: {text[:200]}" if exc is not None else "no error"


def botocore_config(**extra):
    """boto3 clients: botocore's standard retry mode with the configured attempts (its retry quota
    can run dry under long error storms: every boto3 call here also goes through :func:`retrying`)."""
    from botocore.config import Config

    return Config(
        retries={"max_attempts": get_settings().storage_attempts, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
        **extra,
    )


def arrow_retry_strategy():
    """pyarrow's S3 filesystem: the AWS SDK's default strategy with the configured attempts. Not
    its standard one: that shares a retry quota across the client, and under a steady 20 % of
    errors the quota runs out after a few hundred requests; from then on nothing is retried
    (measured: bench/results/chaos.md)."""
    import pyarrow.fs as pafs

    return pafs.AwsDefaultS3RetryStrategy(max_attempts=get_settings().storage_attempts)


def delta_retry_options() -> dict[str, str]:
    """delta-rs (object_store) retry settings: the same attempts and time budget, and a deadline
    per request (without one, a connection the store stops answering on waits forever; seen
    under injected faults: bench/results/chaos.md)."""
    return {
        "max_retries": str(get_settings().storage_attempts),
        "retry_timeout": f"{int(get_settings().storage_retry_seconds)}s",
        "timeout": "120s",
        "connect_timeout": "10s",
    }


def reraise_transient(exc: BaseException) -> None:
    """Inside an ``except``: let a transient storage error through as it is (to be retried)
    instead of wrapping it as a fault of the object being read."""
    if is_transient(exc):
        raise exc
