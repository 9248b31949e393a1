"""The fault-injecting proxy (tests/fault_proxy.py) in front of moto's S3 server: transparent at
rate 0 for boto3, pyarrow and deltalake; injects errors, drops, slowness and outages as asked."""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import pyarrow as pa
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from support.fault_proxy import FaultProxy

pytestmark = pytest.mark.s3
MiB = 1024 * 1024


def s3(endpoint: str, retries: int = 0):
    # botocore's "max_attempts" counts retries (max_attempts=1 is two attempts); total_max_attempts
    # counts the first one too
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(retries={"total_max_attempts": retries + 1, "mode": "standard"}),
    )


@pytest.fixture
def bucket(moto_s3) -> str:
    return moto_s3().removeprefix("s3://")


def test_transparent_for_boto3(moto_s3, bucket):
    big = os.urandom(6 * MiB)
    with FaultProxy(moto_s3.endpoint) as proxy:
        c = s3(proxy.endpoint)
        for i in range(3):
            c.put_object(Bucket=bucket, Key=f"d/k{i}", Body=f"v{i}".encode())
        c.put_object(Bucket=bucket, Key="d/empty", Body=b"")
        c.upload_fileobj(
            io.BytesIO(big),
            bucket,
            "d/big",
            Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB),
        )
        assert c.get_object(Bucket=bucket, Key="d/k1")["Body"].read() == b"v1"
        assert c.get_object(Bucket=bucket, Key="d/empty")["Body"].read() == b""
        got = c.get_object(Bucket=bucket, Key="d/big")
        assert got["ETag"].endswith('-2"')  # really two parts
        assert hashlib.sha256(got["Body"].read()).digest() == hashlib.sha256(big).digest()
        assert c.head_object(Bucket=bucket, Key="d/big")["ContentLength"] == len(big)
        keys = [o["Key"] for o in c.list_objects_v2(Bucket=bucket, Prefix="d/k")["Contents"]]
        assert keys == ["d/k0", "d/k1", "d/k2"]
        c.delete_object(Bucket=bucket, Key="d/k0")
        with pytest.raises(ClientError) as e:  # upstream errors pass through untouched
            c.get_object(Bucket=bucket, Key="d/k0")
        assert e.value.response["Error"]["Code"] == "NoSuchKey"
        assert proxy.requests >= 12
        assert (proxy.injected_errors, proxy.dropped, proxy.slowed) == (0, 0, 0)


def test_error_rate_one_fails_without_upstream(moto_s3, bucket):
    with FaultProxy(moto_s3.endpoint, error_rate=1.0, seed=1) as proxy:
        with pytest.raises(ClientError) as e:
            s3(proxy.endpoint).put_object(Bucket=bucket, Key="k", Body=b"x")
        assert (
            e.value.response["ResponseMetadata"]["HTTPStatusCode"],
            e.value.response["Error"]["Code"],
        ) in {(500, "InternalError"), (503, "SlowDown")}
        assert e.value.response["Error"]["Message"] == "injected"
        assert (proxy.requests, proxy.injected_errors) == (1, 1)
    assert "Contents" not in moto_s3.client.list_objects_v2(Bucket=bucket)


def test_drop_rate_one_is_a_connection_error(moto_s3, bucket):
    with FaultProxy(moto_s3.endpoint, drop_rate=1.0) as proxy:
        with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
            s3(proxy.endpoint).put_object(Bucket=bucket, Key="k", Body=b"x")
        assert (proxy.requests, proxy.dropped) == (1, 1)


def test_retrying_client_rides_out_errors(moto_s3, bucket):
    with FaultProxy(moto_s3.endpoint, error_rate=0.3, seed=42) as proxy:
        c = s3(proxy.endpoint, retries=10)

        def round_trip(i: int) -> bytes:
            c.put_object(Bucket=bucket, Key=f"k{i}", Body=b"v%d" % i)
            return c.get_object(Bucket=bucket, Key=f"k{i}")["Body"].read()

        with ThreadPoolExecutor(8) as pool:  # concurrent: the back-offs overlap
            assert list(pool.map(round_trip, range(20))) == [b"v%d" % i for i in range(20)]
        assert proxy.injected_errors > 0
        assert proxy.requests == 40 + proxy.injected_errors


def test_methods_outage_set_and_slow(moto_s3, bucket):
    with FaultProxy(moto_s3.endpoint, error_rate=1.0, methods={"PUT"}) as proxy:
        c = s3(proxy.endpoint)
        moto_s3.client.put_object(Bucket=bucket, Key="k", Body=b"v")
        assert c.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"  # GET is spared
        with pytest.raises(ClientError):
            c.put_object(Bucket=bucket, Key="k", Body=b"w")
        proxy.set(error_rate=0.0, slow_rate=1.0, slow_seconds=0.3)
        t0 = time.monotonic()
        c.put_object(Bucket=bucket, Key="k", Body=b"w")
        assert time.monotonic() - t0 >= 0.3 and proxy.slowed == 1
        proxy.set(slow_rate=0.0)
        proxy.outage(0.5, drop=True)
        with pytest.raises(ConnectionClosedError):
            c.put_object(Bucket=bucket, Key="k", Body=b"x")
        proxy.outage(0.5)
        with pytest.raises(ClientError):
            c.put_object(Bucket=bucket, Key="k", Body=b"x")
        time.sleep(0.6)
        c.put_object(Bucket=bucket, Key="k", Body=b"y")  # over by itself
        assert (proxy.injected_errors, proxy.dropped) == (2, 1)
        with pytest.raises(TypeError):
            proxy.set(error_rat=1.0)
    assert moto_s3.client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"y"


def test_chunked_request_body_and_keep_alive(moto_s3, bucket):
    bodies = [os.urandom(100_000), b"second"]
    with FaultProxy(moto_s3.endpoint) as proxy:
        conn = http.client.HTTPConnection(proxy.endpoint.removeprefix("http://"), timeout=10)
        for i, body in enumerate(bodies):  # both on one connection
            conn.request(
                "PUT", f"/{bucket}/chunked{i}", body=iter([body[:70_000], body[70_000:]]), encode_chunked=True
            )  # Transfer-Encoding: chunked, no Content-Length
            resp = conn.getresponse()
            assert (resp.status, resp.read()) == (200, b"")
        conn.close()
        assert proxy.requests == 2
    for i, body in enumerate(bodies):
        assert moto_s3.client.get_object(Bucket=bucket, Key=f"chunked{i}")["Body"].read() == body


def test_exit_ends_every_thread_even_with_idle_connections(moto_s3):
    before = set(threading.enumerate())
    with FaultProxy(moto_s3.endpoint) as proxy:
        conn = http.client.HTTPConnection(proxy.endpoint.removeprefix("http://"), timeout=10)
        conn.request("GET", "/")
        conn.getresponse().read()  # the handler thread now waits on this kept-alive connection
    assert set(threading.enumerate()) <= before
    conn.close()
    with pytest.raises(OSError):
        http.client.HTTPConnection(proxy.endpoint.removeprefix("http://"), timeout=2).request("GET", "/")


def test_transparent_for_pyarrow(moto_s3, bucket):
    from pyarrow import fs

    data = os.urandom(6 * MiB)
    with FaultProxy(moto_s3.endpoint) as proxy:
        s3fs = fs.S3FileSystem(
            endpoint_override=proxy.endpoint.removeprefix("http://"),
            scheme="http",
            access_key=os.environ["AWS_ACCESS_KEY_ID"],
            secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
            region="us-east-1",
        )
        for name, payload in (("small.bin", b"hello"), ("big.bin", data)):
            with s3fs.open_output_stream(f"{bucket}/p/{name}") as out:
                out.write(payload)
            with s3fs.open_input_stream(f"{bucket}/p/{name}") as inp:
                assert inp.read() == payload
        assert proxy.requests > 0


def test_transparent_for_deltalake(moto_s3, bucket):
    from deltalake import DeltaTable, write_deltalake

    with FaultProxy(moto_s3.endpoint) as proxy:
        opts = {
            "AWS_ENDPOINT_URL": proxy.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
        }
        uri = f"s3://{bucket}/t"
        write_deltalake(uri, pa.table({"a": [1, 2]}), storage_options=opts)
        write_deltalake(uri, pa.table({"a": [3]}), storage_options=opts, mode="append")
        dt = DeltaTable(uri, storage_options=opts)
        assert dt.version() == 1
        assert sorted(dt.to_pyarrow_table().column("a").to_pylist()) == [1, 2, 3]
        assert proxy.requests > 0
