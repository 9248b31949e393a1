"""JsonConverter values -> Arrow: the fast C++ path agrees with the per-row path, and falls back
where Arrow cannot parse what Kafka's JsonConverter writes."""

from __future__ import annotations

import json

from lakehouse.lake.connect import ConnectSchema, struct
from lakehouse.lake.jsonlines import json_lines_to_arrow, payloads_to_arrow


def _envelope(after: ConnectSchema) -> ConnectSchema:
    optional = struct(after.name, [(f.name, f.schema) for f in after.fields], optional=True)
    return struct(
        "t.s.x.Envelope", [("before", optional), ("after", optional), ("op", ConnectSchema("string"))]
    )


def test_nan_tokens_fall_back_to_the_row_path_for_multi_document_runs():
    value = _envelope(
        struct(
            "t.s.x.Value",
            [("id", ConnectSchema("int64")), ("score", ConnectSchema("float64", optional=True))],
        )
    )
    # Jackson writes NaN as a bare token; capture hands over runs as newline-joined blobs
    blob = b'{"before":null,"after":{"id":1,"score":NaN},"op":"c"}\n{"before":null,"after":{"id":2,"score":0.5},"op":"c"}'
    table = json_lines_to_arrow([blob], value)
    after = table.column("after").to_pylist()
    assert (
        [r["id"] for r in after] == [1, 2]
        and after[1]["score"] == 0.5
        and after[0]["score"] != after[0]["score"]
    )


def test_required_connect_temporals_inside_a_null_struct():
    date = ConnectSchema("int32", name="org.apache.kafka.connect.data.Date", version=1)
    value = _envelope(struct("t.s.x.Value", [("id", ConnectSchema("int64")), ("day", date)]))
    payloads = [
        {"before": None, "after": {"id": 1, "day": 19000}, "op": "c"},
        {"before": {"id": 1, "day": 0}, "after": None, "op": "d"},
    ]
    fast = json_lines_to_arrow([json.dumps(p).encode() for p in payloads], value)
    assert fast.to_pylist() == payloads_to_arrow(payloads, value).to_pylist()


def test_maps_take_the_row_path():
    tags = ConnectSchema(
        "map", optional=True, keys=ConnectSchema("string"), values=ConnectSchema("string", optional=True)
    )
    value = _envelope(struct("t.s.x.Value", [("id", ConnectSchema("int64")), ("tags", tags)]))
    payloads = [{"before": None, "after": {"id": 1, "tags": {"a": "b"}}, "op": "c"}]
    fast = json_lines_to_arrow([json.dumps(p).encode() for p in payloads], value)
    assert fast.to_pylist() == payloads_to_arrow(payloads, value).to_pylist()
    assert fast.column("after").to_pylist()[0]["tags"] == [("a", "b")]


def test_non_finite_floats_written_as_strings():
    # JsonConverter writes NaN/±Infinity of real and double precision columns as JSON strings
    value = _envelope(
        struct(
            "t.s.x.Value",
            [
                ("id", ConnectSchema("int64")),
                ("d", ConnectSchema("float64", optional=True)),
                ("r", ConnectSchema("float32", optional=True)),
            ],
        )
    )
    lines = [
        b'{"before":null,"after":{"id":1,"d":"Infinity","r":"-Infinity"},"op":"c"}',
        b'{"before":null,"after":{"id":2,"d":"NaN","r":1.5},"op":"c"}',
    ]
    after = json_lines_to_arrow(lines, value).column("after").to_pylist()
    assert after[0]["d"] == float("inf") and after[0]["r"] == float("-inf")
    assert after[1]["d"] != after[1]["d"] and after[1]["r"] == 1.5
    import pytest

    with pytest.raises(ValueError, match="not a float64"):
        payloads_to_arrow([{"before": None, "after": {"id": 3, "d": "lots", "r": None}, "op": "c"}], value)
