"""Where the lake lives: a local folder or ``s3://bucket/prefix``.

S3-compatible endpoints (MinIO, moto, ...) come from the standard ``AWS_ENDPOINT_URL`` (or
``AWS_ENDPOINT_URL_S3``) environment variable, credentials from the standard AWS chain. Listing and
writing go through boto3 (``StartAfter`` keeps sensors from re-listing everything); reads go
through ``pyarrow.fs`` so Parquet footers are fetched with ranged GETs, not whole objects.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs

from lakehouse.lake.retry import arrow_retry_strategy, botocore_config, retrying
from lakehouse.settings import get_settings


@dataclass(frozen=True)
class ObjectInfo:
    key: str  # relative to the lake root, "/"-separated
    size: int
    modified: float | None = None  # epoch seconds (S3 LastModified, file mtime)


class ObjectStore(Protocol):
    root_uri: str

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]: ...

    def list_dirs(self, prefix: str) -> builtins.list[str]:  # `list` in the class is the method
        """Immediate "sub-folders" of ``prefix`` (ending in "/"), like S3's delimiter listing."""
        ...

    def open_input(self, key: str) -> pa.NativeFile: ...

    def get_bytes(self, key: str) -> bytes: ...

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def delete(self, key: str) -> None: ...

    def uri(self, key: str) -> str: ...


class LocalStore:
    """A lake in a local folder; keys are paths relative to it."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.root_uri = str(self.root)

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        base = self.root
        if not base.exists():
            return
        found: list[ObjectInfo] = []
        for dirpath, dirnames, filenames in os.walk(base):
            rel_dir = Path(dirpath).relative_to(base).as_posix()
            rel_dir = "" if rel_dir == "." else rel_dir + "/"
            # prune directories that cannot hold the prefix
            dirnames[:] = [
                d
                for d in dirnames
                if (rel_dir + d + "/").startswith(prefix) or prefix.startswith(rel_dir + d + "/")
            ]
            for fn in filenames:
                key = rel_dir + fn
                if fn.endswith(".lakehouse-tmp") or not key.startswith(prefix):
                    continue
                if start_after is not None and key <= start_after:
                    continue
                st = os.stat(os.path.join(dirpath, fn))
                found.append(ObjectInfo(key, st.st_size, st.st_mtime))
        yield from sorted(found, key=lambda o: o.key)  # S3 lists in UTF-8 binary order too

    def list_dirs(self, prefix: str) -> builtins.list[str]:  # `list` in the class is the method
        base = self.root / prefix
        if not prefix.endswith("/") or not base.is_dir():
            return []
        return sorted(prefix + e.name + "/" for e in os.scandir(base) if e.is_dir())

    def path(self, key: str) -> Path:
        return self.root / key

    def open_input(self, key: str) -> pa.NativeFile:
        return pa.OSFile(str(self.path(key)), "rb")

    def get_bytes(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def put_bytes(self, key: str, data: bytes) -> None:
        # write-then-rename: readers never see a half-written object, like S3 multipart commit
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".lakehouse-tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # the object survives a power loss once put_bytes returns
        os.replace(tmp, target)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def uri(self, key: str) -> str:
        return str(self.path(key))


def s3_filesystem() -> pafs.S3FileSystem:
    """pyarrow's native S3 filesystem, configured from the environment like every S3 client here
    (``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``, ``AWS_REGION``, the standard credential chain)."""
    kw: dict = {}
    aws = get_settings()
    endpoint = aws.aws_endpoint_url
    if endpoint:
        parsed = urlparse(endpoint)
        kw["endpoint_override"] = parsed.netloc or parsed.path
        kw["scheme"] = parsed.scheme or "https"
    if aws.aws_region:
        kw["region"] = aws.aws_region
    # a deadline per request: a connection the store stops answering on is retried, not waited on
    return pafs.S3FileSystem(
        retry_strategy=arrow_retry_strategy(), connect_timeout=10, request_timeout=120, **kw
    )


class S3Store:
    """A lake under ``s3://bucket/prefix``."""

    def __init__(self, bucket: str, prefix: str = ""):
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.root_uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        endpoint = get_settings().aws_endpoint_url
        # botocore retries each request; ``retrying`` covers streamed bodies and outages
        self._client = boto3.client("s3", endpoint_url=endpoint, config=botocore_config())
        self._fs = s3_filesystem()

    def _full(self, key: str) -> str:
        return self.prefix + key

    def _pages(self, **kw) -> Iterator[dict]:
        """``list_objects_v2`` pages, each retried on its own (a listing resumes where it failed)."""
        kw = {"Bucket": self.bucket, **kw}
        while True:
            page = retrying(
                f"listing s3://{self.bucket}/{kw.get('Prefix', '')}",
                partial(self._client.list_objects_v2, **kw),
            )
            yield page
            if not page.get("IsTruncated"):
                return
            kw = {**kw, "ContinuationToken": page["NextContinuationToken"]}
            kw.pop("StartAfter", None)

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        kw = {"Prefix": self._full(prefix)}
        if start_after is not None:
            kw["StartAfter"] = self._full(start_after)
        for page in self._pages(**kw):
            for obj in page.get("Contents", []):
                yield ObjectInfo(
                    obj["Key"][len(self.prefix) :], int(obj["Size"]), obj["LastModified"].timestamp()
                )

    def list_dirs(self, prefix: str) -> builtins.list[str]:  # `list` in the class is the method
        out: list[str] = []
        for page in self._pages(Prefix=self._full(prefix), Delimiter="/"):
            out += [p["Prefix"][len(self.prefix) :] for p in page.get("CommonPrefixes", [])]
        return sorted(out)

    def open_input(self, key: str) -> pa.NativeFile:
        return self._fs.open_input_file(f"{self.bucket}/{self._full(key)}")

    def get_bytes(self, key: str) -> bytes:
        # the body streams after the response: a dropped connection there is retried as a whole
        return retrying(
            f"reading {self.uri(key)}",
            lambda: self._client.get_object(Bucket=self.bucket, Key=self._full(key))["Body"].read(),
        )

    def put_bytes(self, key: str, data: bytes) -> None:
        retrying(
            f"writing {self.uri(key)}",
            lambda: self._client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data),
        )

    def delete(self, key: str) -> None:
        retrying(
            f"deleting {self.uri(key)}",
            lambda: self._client.delete_object(Bucket=self.bucket, Key=self._full(key)),
        )

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key)}"


def open_store(uri: str | Path) -> ObjectStore:
    """``s3://bucket/prefix`` or a local path (``file://`` accepted)."""
    text = str(uri)
    if text.startswith("s3://"):
        parsed = urlparse(text)
        return S3Store(parsed.netloc, parsed.path.lstrip("/"))
    if text.startswith("file://"):
        text = urlparse(text).path
    return LocalStore(text)
