"""The reader on the real Debezium 3.6.3 samples, written as lake files the way the S3 sink would,
for every shape (envelope / unwrap / JSON) and partitioner (spec lake-format.md §1, §2.3, §4, §6).

The expected values come from the raw capture files (``connect/*.jsonl``) and ``actions.jsonl``,
read here independently of the code under test.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.sample_lake import SAMPLES, write_sample_lake

from lakehouse.lake.layout import Partitioner, parse_object_key
from lakehouse.lake.reader import INTERNAL_NAMES, LakeReader
from lakehouse.lake.semantic import TOAST_PLACEHOLDER
from lakehouse.lake.sink import SinkConfig, UnwrapConfig
from lakehouse.lake.store import LocalStore, open_store

TOPICS = [
    "eco2.auth.users",
    "eco2.scan.llm_call_log",
    "eco2.scan.scan_feedback",
    "eco2.scan.scan_results",
]
UTC = dt.UTC

# --------------------------------------------------------------------------------------------
# oracle: the raw captures
# --------------------------------------------------------------------------------------------


@dataclass
class Raw:
    topic: str
    offset: int
    key: dict | None
    value: dict | None

    @property
    def op(self) -> str:
        return self.value["op"]

    @property
    def src(self) -> dict:
        return self.value["source"]

    @property
    def image(self) -> dict | None:
        return self.value["before"] if self.op == "d" else self.value["after"]

    @property
    def id(self):
        img = self.image
        return None if img is None else img["id"]


def _load_raw() -> dict[str, list[Raw]]:
    out: dict[str, list[Raw]] = {}
    for path in sorted((SAMPLES / "connect").glob("*.jsonl")):
        for off, line in enumerate(path.read_text().splitlines()):
            rec = json.loads(line)
            out.setdefault(rec["topic"], []).append(Raw(rec["topic"], off, rec["key"], rec["value"]))
    return out


RAW = _load_raw()
ACTIONS = {
    a["step"].split("_")[0]: a
    for a in (json.loads(ln) for ln in (SAMPLES / "actions.jsonl").read_text().splitlines())
}


def expected_events(topic: str, shape: str) -> list[Raw]:
    """Value events of a topic in Kafka order, as they survive the sink for this shape."""
    evs = [r for r in RAW[topic] if r.value is not None]  # tombstones never reach a value file
    if shape != "envelope":
        evs = [r for r in evs if r.op != "t"]  # the unwrap SMT drops truncates
    return evs


def expected_op(r: Raw, shape: str) -> str:
    if shape == "unwrap_deleted_only":
        return "d" if r.op == "d" else "u"
    return r.op


# --------------------------------------------------------------------------------------------
# lakes: every shape and partitioner
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LakeSpec:
    name: str
    config: SinkConfig
    shape: str = "envelope"  # envelope | unwrap | unwrap_deleted_only
    typed: bool = True  # semantic types decodable (Parquet, JSON with embedded schemas)
    ordered: bool = True  # (partition, file start, row) is a total Kafka order
    topics: tuple[str, ...] = tuple(TOPICS)
    drop_truncate: bool = False  # store.kafka.keys=true cannot take the key-less truncate
    encoded: str | None = None  # expected encoded partition of every object (None: skip)
    codec: str | None = None  # expected Parquet column compression

    @property
    def has_lsn(self) -> bool:
        return self.shape != "unwrap_deleted_only"


U = UnwrapConfig()  # rewrite, add.fields=op,lsn,source.ts_ms,txId,snapshot
SPECS = [
    LakeSpec("envelope-default", SinkConfig(flush_size=3), encoded="partition=0", codec="SNAPPY"),
    LakeSpec(
        "envelope-hourly",
        SinkConfig(flush_size=3, partitioner=Partitioner.named("hourly")),
        encoded="year=2026/month=11/day=23/hour=00",
    ),
    LakeSpec(
        "envelope-daily-seoul",
        SinkConfig(flush_size=3, partitioner=Partitioner.named("daily", timezone_name="Asia/Seoul")),
        encoded="year=2026/month=11/day=23",
    ),
    LakeSpec(
        "envelope-time-custom",
        SinkConfig(
            flush_size=3,
            partitioner=Partitioner.named(
                "time", path_format="'dt'=YYYY-MM-dd/'hr'=HH/'min'=mm", duration_ms=600_000
            ),
        ),
        encoded="dt=2026-11-23/hr=00/min=30",
    ),
    LakeSpec(
        "envelope-affix-prefix",
        SinkConfig(flush_size=3, partitioner=Partitioner(schema_affix="prefix")),
        encoded="schema_name={topic}.Envelope/partition=0",
    ),
    LakeSpec(
        "envelope-affix-suffix",
        SinkConfig(flush_size=3, partitioner=Partitioner(schema_affix="suffix")),
        encoded="partition=0/schema_name={topic}.Envelope",
    ),
    LakeSpec("envelope-codec-none", SinkConfig(flush_size=3, parquet_codec="none"), codec="UNCOMPRESSED"),
    LakeSpec("envelope-codec-zstd", SinkConfig(flush_size=3, parquet_codec="zstd"), codec="ZSTD"),
    LakeSpec("envelope-codec-gzip", SinkConfig(flush_size=3, parquet_codec="gzip"), codec="GZIP"),
    LakeSpec("envelope-store-keys", SinkConfig(flush_size=3, store_keys=True), drop_truncate=True),
    LakeSpec("unwrap-rewrite", SinkConfig(flush_size=3, unwrap=U), shape="unwrap", encoded="partition=0"),
    LakeSpec(
        "unwrap-field-model",
        SinkConfig(flush_size=3, unwrap=U, partitioner=Partitioner.named("field", fields=("model",))),
        shape="unwrap",
        ordered=False,
        topics=("eco2.scan.llm_call_log", "eco2.scan.scan_results"),
    ),
    LakeSpec(
        "unwrap-deleted-only",
        SinkConfig(flush_size=3, unwrap=UnwrapConfig(add_fields=())),
        shape="unwrap_deleted_only",
    ),
    LakeSpec("json-schemaless", SinkConfig(flush_size=3, format="json"), typed=False),
    LakeSpec("json-embedded-schema", SinkConfig(flush_size=3, format="json", json_embed_schema=True)),
    LakeSpec("json-gzip", SinkConfig(flush_size=3, format="json", json_gzip=True), typed=False),
    LakeSpec(
        "json-gzip-embedded-schema",
        SinkConfig(flush_size=3, format="json", json_gzip=True, json_embed_schema=True),
    ),
    LakeSpec(
        "unwrap-json-schemaless",
        SinkConfig(flush_size=3, format="json", unwrap=U),
        shape="unwrap",
        typed=False,
    ),
]
SPEC_BY_NAME = {s.name: s for s in SPECS}


def spec_events(spec: LakeSpec, sample_events):
    evs = [e for e in sample_events if e.topic in spec.topics]
    if spec.drop_truncate:
        evs = [e for e in evs if not (e.value is not None and e.value["op"] == "t")]
    return evs


@dataclass
class Lake:
    spec: LakeSpec
    store: object
    reader: LakeReader
    objects: list[str]
    tables: dict[str, pa.Table] = field(default_factory=dict)

    def expected(self, topic: str) -> list[Raw]:
        evs = expected_events(topic, self.spec.shape)
        if self.spec.drop_truncate:
            evs = [r for r in evs if r.op != "t"]
        return evs


def build_lake(spec: LakeSpec, store, sample_events) -> Lake:
    writer = write_sample_lake(store, spec.config, spec_events(spec, sample_events))
    reader = LakeReader(store)
    lake = Lake(spec, store, reader, list(writer.objects_written))
    for t in spec.topics:
        lake.tables[t] = reader.read_changes(t)
    return lake


_BUILT: dict[str, Lake] = {}


def _built(spec: LakeSpec, tmp_path_factory, sample_events) -> Lake:
    """Each lake is built once per session, whichever fixture asks for it."""
    if spec.name not in _BUILT:
        _BUILT[spec.name] = build_lake(spec, LocalStore(tmp_path_factory.mktemp(spec.name)), sample_events)
    return _BUILT[spec.name]


def _specs(predicate) -> list[LakeSpec]:
    return [s for s in SPECS if predicate(s)]


ORDERED = _specs(lambda s: s.ordered)  # (partition, file start, row) is a total order
WITH_RESULTS = _specs(lambda s: "eco2.scan.scan_results" in s.topics)
WITH_FEEDBACK = _specs(lambda s: "eco2.scan.scan_feedback" in s.topics)


@pytest.fixture(scope="module", params=SPECS, ids=[s.name for s in SPECS])
def lake(request, tmp_path_factory, sample_events) -> Lake:
    return _built(request.param, tmp_path_factory, sample_events)


@pytest.fixture(scope="module", params=ORDERED, ids=[s.name for s in ORDERED])
def ordered_lake(request, tmp_path_factory, sample_events) -> Lake:
    return _built(request.param, tmp_path_factory, sample_events)


@pytest.fixture(scope="module", params=WITH_RESULTS, ids=[s.name for s in WITH_RESULTS])
def results_lake(request, tmp_path_factory, sample_events) -> Lake:
    return _built(request.param, tmp_path_factory, sample_events)


@pytest.fixture(scope="module", params=WITH_FEEDBACK, ids=[s.name for s in WITH_FEEDBACK])
def feedback_lake(request, tmp_path_factory, sample_events) -> Lake:
    return _built(request.param, tmp_path_factory, sample_events)


def in_kafka_order(t: pa.Table) -> list[dict]:
    rows = t.to_pylist()
    return sorted(rows, key=lambda r: (r["__kafka_partition"], r["__file_start_offset"], r["__row_index"]))


def only(rows: list[dict], **match) -> list[dict]:
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


# --------------------------------------------------------------------------------------------
# every lake
# --------------------------------------------------------------------------------------------


def test_listing_is_clean(lake: Lake):
    listing = lake.reader.scan()
    assert listing.errors == []
    assert listing.topics == sorted(lake.spec.topics)
    value_files = [k for k in lake.objects if ".keys." not in k]
    assert sorted(o.key for objs in listing.objects.values() for o in objs) == sorted(value_files)
    on_disk = [o.key for o in lake.store.list()]
    if lake.spec.config.store_keys:
        assert len(on_disk) == 2 * len(value_files)
        # one .keys.snappy.parquet companion per value file, all knowingly ignored
        assert sorted(i.key for i in listing.ignored) == sorted(
            k.replace(".snappy.parquet", ".keys.snappy.parquet") for k in value_files
        )
        assert all(i.reason == "keys companion file" for i in listing.ignored)
    else:
        assert sorted(on_disk) == sorted(value_files)
        assert listing.ignored == []


def test_object_keys_follow_partitioner_and_codec(lake: Lake):
    spec = lake.spec
    for key in lake.objects:
        parsed = parse_object_key(key)
        if ".keys." in key:
            continue
        if spec.encoded is not None:
            assert parsed.encoded_partition == spec.encoded.format(topic=parsed.topic), key
        assert key.endswith(spec.config.extension)
        if spec.codec is not None:
            md = pq.ParquetFile(lake.store.path(key)).metadata
            codecs = {md.row_group(0).column(i).compression for i in range(md.num_columns)}
            assert codecs == {spec.codec}, key


def test_ops_per_topic_match_capture(lake: Lake):
    """Every value event arrives, with its op, exactly once (tombstones never do)."""
    for topic in lake.spec.topics:
        t = lake.tables[topic]
        exp = lake.expected(topic)
        assert t.num_rows == len(exp), topic
        got = Counter(zip(t.column("__op").to_pylist(), t.column("id").to_pylist()))
        assert got == Counter((expected_op(r, lake.spec.shape), r.id) for r in exp), topic
        assert set(t.column("__topic").to_pylist()) == {topic}
        assert set(t.column("__table").to_pylist()) == {topic.split(".", 1)[1]}


def test_concrete_op_sequences(lake: Lake):
    """The op sequences of actions.jsonl, in Kafka order."""
    full = {
        "eco2.auth.users": "rrcu",
        "eco2.scan.llm_call_log": "rrccddc",
        "eco2.scan.scan_feedback": "rrcudtc",
        "eco2.scan.scan_results": "rrrcuuucuc",
    }
    for topic in lake.spec.topics:
        seq = full[topic]
        if lake.spec.shape != "envelope" or lake.spec.drop_truncate:
            seq = seq.replace("t", "")
        if lake.spec.shape == "unwrap_deleted_only":
            seq = "".join("d" if c == "d" else "u" for c in seq)
        rows = in_kafka_order(lake.tables[topic])
        if lake.spec.ordered:
            assert "".join(r["__op"] for r in rows) == seq, topic
        else:
            assert sorted(r["__op"] for r in rows) == sorted(seq), topic


def test_events_in_kafka_order_match_capture(lake: Lake):
    """Position order reproduces the Kafka order; lsn/txId/commit time come from source."""
    spec = lake.spec
    for topic in spec.topics:
        exp = lake.expected(topic)
        rows = in_kafka_order(lake.tables[topic])
        if not spec.ordered:
            # Field partitioner: files of one Kafka partition interleave; per key the order holds
            by_key: dict = {}
            for r in rows:
                by_key.setdefault(r["id"], []).append(r)
            for key, krows in by_key.items():
                kexp = [e for e in exp if e.id == key]
                assert [(r["__op"], r["__lsn"]) for r in krows] == [
                    (expected_op(e, spec.shape), e.src["lsn"]) for e in kexp
                ], (topic, key)
            continue
        assert [r["id"] for r in rows] == [e.id for e in exp], topic
        assert [r["__op"] for r in rows] == [expected_op(e, spec.shape) for e in exp], topic
        if spec.has_lsn:
            assert [r["__lsn"] for r in rows] == [e.src["lsn"] for e in exp], topic
            assert [r["__tx_id"] for r in rows] == [e.src["txId"] for e in exp], topic
        else:
            assert {r["__lsn"] for r in rows} == {None}
            assert {r["__tx_id"] for r in rows} == {None}


def test_positions_increase_and_tombstones_are_gaps(ordered_lake: Lake):
    """(__kafka_partition, __file_start_offset, __row_index) increase in Kafka order; each file
    is named after the Kafka offset of its first row, so offsets of tombstones (and dropped
    truncates) are gaps."""
    lake = ordered_lake
    for topic in lake.spec.topics:
        t = lake.tables[topic]
        pos = list(
            zip(
                t.column("__kafka_partition").to_pylist(),
                t.column("__file_start_offset").to_pylist(),
                t.column("__row_index").to_pylist(),
            )
        )
        assert pos == sorted(pos) and len(set(pos)) == len(pos), topic  # reader yields in Kafka order
        assert {p for p, _, _ in pos} == {0}
        exp = lake.expected(topic)
        files: dict[int, list[int]] = {}
        for (_, start, row_idx), e in zip(pos, exp):
            files.setdefault(start, []).append(e.offset)
            assert len(files[start]) - 1 == row_idx  # row index counts rows inside the object
        for start, offs in files.items():
            assert offs[0] == start, (topic, start, offs)  # named after its first offset
            assert offs == sorted(offs)
        starts = sorted(files)
        tombstones = [r.offset for r in RAW[topic] if r.value is None]
        assert not set(starts) & set(tombstones)
    if lake.spec.shape == "envelope" and "eco2.scan.llm_call_log" in lake.spec.topics:
        rows = in_kafka_order(lake.tables["eco2.scan.llm_call_log"])
        # the c of the PK change is at Kafka offset 8: offsets 5 and 7 were tombstones
        assert only(rows, id=1000)[0]["__file_start_offset"] == 8


def test_toast_placeholder_in_update_rows(results_lake: Lake):
    lake = results_lake
    rows = in_kafka_order(lake.tables["eco2.scan.scan_results"])
    upd1 = [r for r in rows if r["id"] == 1 and r["__op"] in ("u",) and r["__snapshot"] in ("false", None)]
    if lake.spec.shape == "unwrap_deleted_only":
        upd1 = [r for r in rows if r["id"] == 1][1:]  # r (as u) then the two real updates
    assert len(upd1) == 2
    assert [r["rationale"] for r in upd1] == [TOAST_PLACEHOLDER, TOAST_PLACEHOLDER]
    if lake.spec.has_lsn:
        assert [r["__tx_id"] for r in upd1] == [ACTIONS["B1"]["txid"], ACTIONS["G2"]["txid"]]
    # the snapshot row had the real value; B2 changed the TOASTed column -> full value arrives
    first = next(r for r in rows if r["id"] == 1)
    assert first["rationale"].startswith("LONG:") and len(first["rationale"]) == 5 + 200 * 32
    b2 = [r for r in rows if r["id"] == 2][-1]
    assert b2["rationale"].endswith(" [edited]") and len(b2["rationale"]) == 6414


def test_primary_key_change(lake: Lake):
    topic = "eco2.scan.llm_call_log"
    rows = in_kafka_order(lake.tables[topic])
    d = [r for r in rows if r["id"] == 1][-1]
    c = only(rows, id=1000)
    assert len(c) == 1
    c = c[0]
    assert d["__op"] == "d"
    assert c["__op"] == ("u" if lake.spec.shape == "unwrap_deleted_only" else "c")
    assert (c["stage"], c["model"], c["latency_ms"]) == ("vision", "gpt-4o-mini", 812)
    # the delete half under REPLICA IDENTITY DEFAULT: key only, nullable columns null
    assert (d["scan_id"], d["stage"], d["model"], d["latency_ms"]) == (None, None, None, None)
    if lake.spec.has_lsn:
        assert d["__lsn"] == c["__lsn"] == 26787680
        assert d["__tx_id"] == c["__tx_id"] == ACTIONS["E"]["txid"] == 759


def test_truncate_row(feedback_lake: Lake):
    lake = feedback_lake
    topic = "eco2.scan.scan_feedback"
    t = lake.tables[topic]
    truncs = [r for r in t.to_pylist() if r["__op"] == "t"]
    if lake.spec.shape != "envelope" or lake.spec.drop_truncate:
        assert truncs == []  # dropped by the unwrap SMT / impossible with store.kafka.keys
        return
    assert len(truncs) == 1
    tr = truncs[0]
    row_cols = [c for c in t.column_names if c not in INTERNAL_NAMES]
    assert row_cols == ["id", "scan_id", "user_id", "thumbs_up", "corrected_label", "created_at"]
    assert {tr[c] for c in row_cols} == {None}
    assert tr["__tx_id"] == ACTIONS["F"]["txid"] == 760
    assert tr["__lsn"] == 26790872
    assert tr["__table"] == "scan.scan_feedback"


def test_schema_change_columns(results_lake: Lake):
    lake = results_lake
    topic = "eco2.scan.scan_results"
    t = lake.tables[topic]
    names = t.column_names
    assert names[-2:] == ["disposal_hint", "bin_color"]  # added columns merge in at the end
    rows = in_kafka_order(t)
    if lake.spec.ordered:
        hints = [r["disposal_hint"] for r in rows]
        colors = [r["bin_color"] for r in rows]
        assert hints == [None] * 7 + ["rinse first", "flatten the box", None]
        assert colors == [None] * 7 + ["blue", "blue", "blue"]
    else:
        assert sorted(r["disposal_hint"] for r in rows if r["disposal_hint"] is not None) == [
            "flatten the box",
            "rinse first",
        ]
    new5 = only(rows, id=5)[0]
    assert (new5["disposal_hint"], new5["bin_color"]) == ("rinse first", "blue")
    after_drop = only(rows, id=6)[0]  # G4: after DROP COLUMN disposal_hint
    assert after_drop["disposal_hint"] is None and after_drop["bin_color"] == "blue"
    assert after_drop["confidence"] is not None


def test_korean_text_round_trips(results_lake: Lake):
    lake = results_lake
    rows = in_kafka_order(lake.tables["eco2.scan.scan_results"])
    assert [r["predicted_label"] for r in rows if r["id"] == 3][-1] == "플라스틱_PET"
    payload4 = json.loads(only(rows, id=4)[0]["payload"])
    assert payload4["tags"] == ["유리", "bottle"]


def test_snapshot_markers_are_strings(lake: Lake):
    if lake.spec.shape == "unwrap_deleted_only":
        for topic in lake.spec.topics:
            assert set(lake.tables[topic].column("__snapshot").to_pylist()) == {None}
        return
    for topic in lake.spec.topics:
        t = lake.tables[topic]
        assert t.schema.field("__snapshot").type == pa.string()
        if lake.spec.ordered:
            assert t.column("__snapshot").to_pylist() == [e.src["snapshot"] for e in lake.expected(topic)]
    if lake.spec.ordered:
        res = lake.tables.get("eco2.scan.scan_results")
        if res is not None:
            assert res.column("__snapshot").to_pylist()[:4] == [
                "first_in_data_collection",
                "true",
                "last",
                "false",
            ]
        users = lake.tables.get("eco2.auth.users")
        if users is not None:
            assert users.column("__snapshot").to_pylist() == [
                "first",
                "last_in_data_collection",
                "false",
                "false",
            ]


def test_commit_ts_is_source_commit_time(lake: Lake, request):
    spec = lake.spec
    for topic in spec.topics:
        t = lake.tables[topic]
        assert t.schema.field("__commit_ts").type == pa.timestamp("us", tz="UTC")
        got = {(r["__op"], r["id"], r["__commit_ts"]) for r in t.to_pylist()}
        exp_rows = lake.expected(topic)
        if spec.shape == "envelope":
            # source.ts_us exactly (µs), not the envelope's processing-time ts_ms
            exp = {
                (
                    r.op,
                    r.id,
                    dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(microseconds=r.src["ts_us"]),
                )
                for r in exp_rows
            }
        elif spec.shape == "unwrap":
            # add.fields=source.ts_ms -> __source_ts_ms (ms resolution)
            exp = {
                (
                    r.op,
                    r.id,
                    dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(milliseconds=r.src["ts_ms"]),
                )
                for r in exp_rows
            }
        else:
            exp = {(expected_op(r, spec.shape), r.id, None) for r in exp_rows}
        assert got == exp, topic


def test_decoded_types(lake: Lake):
    """Semantic types decode from connect.name (typed lakes); schemaless JSON keeps raw values."""
    res = lake.tables.get("eco2.scan.scan_results")
    users = lake.tables.get("eco2.auth.users")
    if lake.spec.typed:
        if res is not None:
            s = res.schema
            assert s.field("created_at").type == pa.timestamp("us", tz="UTC")
            assert s.field("updated_at").type == pa.timestamp("us", tz="UTC")
            assert s.field("confidence").type == pa.decimal128(5, 4)
            assert s.field("payload").type == pa.string()
            assert s.field("payload").metadata[b"debezium.name"] == b"io.debezium.data.Json"
            assert s.field("created_at").metadata[b"debezium.name"] == b"io.debezium.time.ZonedTimestamp"
            assert s.field("id").type == pa.int64()
            rows = in_kafka_order(res)
            first = only(rows, id=1)[0]
            assert first["confidence"] == Decimal("0.9124")
            assert first["created_at"] == dt.datetime(2026, 11, 23, 0, 34, 20, 594494, tzinfo=UTC)
            # every decimal exactly as the unscaled bytes in the capture
            exp = {}
            for r in expected_events("eco2.scan.scan_results", "envelope"):
                raw = base64.b64decode(r.image["confidence"])
                exp[(r.op, r.id, r.src["lsn"])] = Decimal(int.from_bytes(raw, "big", signed=True)).scaleb(-4)
            if lake.spec.has_lsn:
                for r in rows:
                    assert r["confidence"] == exp[(r["__op"], r["id"], r["__lsn"])]
                    assert r["confidence"].as_tuple().exponent == -4
            assert {r["confidence"] for r in rows} >= {
                Decimal("0.9124"),
                Decimal("0.5000"),
                Decimal("0.8765"),
                Decimal("0.9912"),
                Decimal("0.7001"),
            }
        if users is not None:
            assert users.schema.field("created_at").type == pa.timestamp("us")  # MicroTimestamp, no zone
            alice = users.to_pylist()[0]
            assert alice["created_at"] == dt.datetime(2026, 11, 23, 0, 34, 20, 593365)
        llm = lake.tables["eco2.scan.llm_call_log"]
        assert llm.schema.field("latency_ms").type == pa.int32()
        d2 = next(r for r in llm.to_pylist() if r["__op"] == "d" and r["id"] == 2)
        # NOT NULL DEFAULT now() column in a DEFAULT-identity delete: the epoch fallback (§5.4)
        assert d2["created_at"] == dt.datetime(1970, 1, 1, tzinfo=UTC)
    else:
        # schemaless JSON: no schema, so values stay as the JsonConverter wrote them
        if res is not None:
            first = only(in_kafka_order(res), id=1)[0]
            assert first["confidence"] == "I6Q="
            assert first["created_at"] == "2026-11-23T00:34:20.594494Z"
        if users is not None:
            assert users.to_pylist()[0]["created_at"] == 1795394060593365


def test_row_image_from_after_and_before(feedback_lake: Lake):
    """u under FULL carries before; the image is still after. d takes before (the key)."""
    lake = feedback_lake
    topic = "eco2.scan.scan_feedback"
    rows = in_kafka_order(lake.tables[topic])
    u = [r for r in rows if r["id"] == 1][-1]
    assert (u["thumbs_up"], u["corrected_label"]) == (False, "metal_can")
    d = [r for r in rows if r["__op"] == "d"]
    assert len(d) == 1
    # REPLICA IDENTITY FULL delete: the full old row
    assert (d[0]["id"], d[0]["scan_id"], d[0]["user_id"], d[0]["corrected_label"]) == (
        2,
        2,
        2,
        "glass",
    )


def test_small_batches_give_the_same_rows(lake: Lake):
    for topic in lake.spec.topics:
        plan = lake.reader.plan(topic)
        batches = list(lake.reader.iter_changes(plan, batch_size=1))
        assert all(b.schema.equals(plan.schema) for b in batches)
        again = pa.Table.from_batches(batches, schema=plan.schema)
        assert again.equals(lake.tables[topic]), topic


# --------------------------------------------------------------------------------------------
# specific lakes
# --------------------------------------------------------------------------------------------


def test_flush_size_one_names_every_file_after_its_kafka_offset(tmp_path, sample_events):
    store = LocalStore(tmp_path)
    write_sample_lake(store, SinkConfig(flush_size=1), sample_events)
    reader = LakeReader(store)
    t = reader.read_changes("eco2.scan.llm_call_log")
    assert t.column("__file_start_offset").to_pylist() == [0, 1, 2, 3, 4, 6, 8]  # 5, 7: tombstones
    assert set(t.column("__row_index").to_pylist()) == {0}
    fb = reader.read_changes("eco2.scan.scan_feedback")
    assert fb.column("__file_start_offset").to_pylist() == [0, 1, 2, 3, 4, 6, 7]
    assert fb.column("__op").to_pylist() == list("rrcudtc")


def test_key_companions_do_not_change_the_data(tmp_path, sample_events):
    """store.kafka.keys=true adds .keys.snappy.parquet files; the read result is identical."""
    evs = [e for e in sample_events if not (e.value is not None and e.value["op"] == "t")]
    plain, keyed = LocalStore(tmp_path / "plain"), LocalStore(tmp_path / "keyed")
    write_sample_lake(plain, SinkConfig(flush_size=3), evs)
    w = write_sample_lake(keyed, SinkConfig(flush_size=3, store_keys=True), evs)
    companions = [o.key for o in keyed.list() if o.key.endswith(".keys.snappy.parquet")]
    assert sorted(companions) == sorted(
        k.replace(".snappy.parquet", ".keys.snappy.parquet") for k in w.objects_written
    )
    # the companion really is a Parquet file a naive *.parquet glob would read
    key_table = pq.read_table(keyed.path(companions[0]))
    assert key_table.column_names == ["key"]
    for topic in TOPICS:
        a = LakeReader(plain).read_changes(topic)
        b = LakeReader(keyed).read_changes(topic)
        assert a.equals(b), topic


def test_topic_listing_scoped_to_one_topic(tmp_path, sample_events):
    store = LocalStore(tmp_path)
    write_sample_lake(store, SinkConfig(flush_size=3), sample_events)
    listing = LakeReader(store).scan("eco2.scan.scan_results")
    assert listing.topics == ["eco2.scan.scan_results"]
    objs = listing.objects["eco2.scan.scan_results"]
    assert [o.ref.start_offset for o in objs] == [
        0,
        3,
        6,
        7,
        9,
    ]  # rotation on the two schema changes


@pytest.mark.s3
@pytest.mark.parametrize(
    "name",
    [
        "envelope-default",
        "envelope-hourly",
        "unwrap-rewrite",
        "json-gzip-embedded-schema",
        "json-schemaless",
    ],
)
def test_same_lake_on_local_disk_and_s3(name, tmp_path, moto_s3, sample_events):
    spec = SPEC_BY_NAME[name]
    local = build_lake(spec, LocalStore(tmp_path / "lake"), sample_events)
    uri = moto_s3("some/prefix")
    s3 = build_lake(spec, open_store(uri), sample_events)
    assert s3.store.root_uri == uri
    assert sorted(s3.objects) == sorted(local.objects)
    listing = s3.reader.scan()
    assert listing.errors == [] and listing.topics == sorted(spec.topics)
    for topic in spec.topics:
        a, b = local.tables[topic], s3.tables[topic]
        assert a.num_rows > 0
        assert b.schema.equals(a.schema, check_metadata=True), topic
        assert b.equals(a, check_metadata=True), topic
        # batch by batch, too
        la = list(local.reader.iter_changes(local.reader.plan(topic), batch_size=2))
        lb = list(s3.reader.iter_changes(s3.reader.plan(topic), batch_size=2))
        assert len(la) == len(lb) > 0
        assert all(x.equals(y, check_metadata=True) for x, y in zip(la, lb, strict=True)), topic


def test_sample_files_exist():
    # guard: the oracle really read the captures
    assert sum(len(v) for v in RAW.values()) == 31
    assert Path(SAMPLES / "actions.jsonl").exists()
    assert ACTIONS["A"]["txid"] == 752
