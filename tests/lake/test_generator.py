"""The Eco2 lake generator, checked through what LakeReader (and the raw objects) give back.

Every option is observable in the lake; each test generates a small lake in a temp folder."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from lakehouse.generate import GenerationReport, GeneratorOptions, generate_lake
from lakehouse.lake.connect import parse_avro_schema
from lakehouse.lake.layout import ObjectKey, parse_object_key
from lakehouse.lake.reader import LakeReader
from lakehouse.lake.semantic import TOAST_PLACEHOLDER

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples" / "debezium" / "connect"
TOPICS = [
    "eco2.auth.users",
    "eco2.scan.scans",
    "eco2.scan.classification_results",
    "eco2.scan.rag_retrievals",
    "eco2.scan.llm_call_log",
    "eco2.scan.feedback",
]
OPS = ("c", "u", "d", "r", "t")
UTC_US = pa.timestamp("us", tz="UTC")

_CACHE: dict[tuple, tuple[Path, GenerationReport]] = {}


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """``lake(**options) -> (path, report)``; identical options share one generated lake."""

    def make(chunk_events: int = 2_500, **kw) -> tuple[Path, GenerationReport]:
        kw.setdefault("events", 6_000)
        kw.setdefault("flush_size", 400)
        kw.setdefault("events_per_second", 5.0)  # long enough for late follow-ups (feedback changes)
        key = (chunk_events, tuple(sorted(kw.items())))
        if key not in _CACHE:
            path = tmp_path_factory.mktemp("lake")
            report = generate_lake(str(path), GeneratorOptions(**kw), chunk_events=chunk_events)
            _CACHE[key] = (path, report)
        return _CACHE[key]

    return make


def read_all(path: Path) -> dict[str, pa.Table]:
    reader = LakeReader(str(path))
    return {t: reader.read_changes(t) for t in reader.scan().topics}


def op_counts(table: pa.Table) -> dict[str, int]:
    got = dict(Counter(table.column("__op").to_pylist()))
    return {op: got.get(op, 0) for op in OPS}


def value_objects(path: Path) -> list[ObjectKey]:
    out = []
    for f in sorted(path.rglob("*")):
        if f.is_file():
            parsed = parse_object_key(f.relative_to(path).as_posix())
            if isinstance(parsed, ObjectKey):
                out.append(parsed)
    return out


def raw(path: Path, obj: ObjectKey) -> pa.Table:
    return pq.read_table(path / obj.key)


def footer(path: Path, obj: ObjectKey) -> dict:
    return json.loads(pq.ParquetFile(path / obj.key).metadata.metadata[b"parquet.avro.schema"])


def raw_topic(path: Path, topic: str) -> pa.Table:
    """Raw envelope rows of a topic in Kafka order, with the object's partition/start attached."""
    parts = []
    for obj in sorted(o for o in value_objects(path) if o.topic == topic):
        t = raw(path, obj)
        n = len(t)
        t = t.append_column("kpart", pa.array([obj.kafka_partition] * n, pa.int32()))
        t = t.append_column("start", pa.array([obj.start_offset] * n, pa.int64()))
        t = t.append_column("object", pa.array([obj.key] * n))
        parts.append(t.select(["before", "after", "source", "op", "ts_ms", "kpart", "start", "object"]))
    return pa.concat_tables(parts, promote_options="permissive")


# ---------------------------------------------------------------------------------------------
# defaults: envelope, Parquet, default partitioner, TOAST, deletes
# ---------------------------------------------------------------------------------------------


def test_default_lake_round_trip_counts_and_types(lake):
    path, report = lake()
    tables = read_all(path)
    assert sorted(tables) == sorted(TOPICS)
    assert set(report.per_topic) == set(TOPICS)
    for topic, table in tables.items():
        expected = {op: report.per_topic[topic][op] for op in OPS}
        assert op_counts(table) == expected, topic
    assert report.events == sum(t.num_rows for t in tables.values()) == report.rows
    assert abs(report.events - 6_000) <= 10
    assert report.objects == len(value_objects(path)) == sum(v["objects"] for v in report.per_topic.values())
    assert report.bytes == sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    assert report.tombstones == sum(report.per_topic[t]["d"] for t in TOPICS) > 0
    # decoded semantic types
    cls = tables["eco2.scan.classification_results"]
    assert cls.schema.field("created_at").type == UTC_US
    assert cls.schema.field("confidence").type == pa.decimal128(5, 4)
    assert cls.schema.field("scan_id").metadata[b"debezium.name"] == b"io.debezium.data.Uuid"
    assert tables["eco2.auth.users"].schema.field("updated_at").type == UTC_US
    assert tables["eco2.scan.rag_retrievals"].schema.field("rank").type == pa.int32()
    assert tables["eco2.scan.rag_retrievals"].schema.field("relevance_score").type == pa.float64()
    assert tables["eco2.scan.llm_call_log"].schema.field("latency_ms").type == pa.int32()
    assert tables["eco2.scan.feedback"].schema.field("thumbs_up").type == pa.bool_()
    conf = pc.drop_null(cls["confidence"]).to_pylist()
    assert conf and all(0 <= c <= 1 for c in conf)


def test_domain_is_referentially_coherent(lake):
    path, _ = lake()
    t = read_all(path)

    def live(tab):
        return tab.filter(pc.is_in(tab["__op"], pa.array(["c", "r", "u"])))

    users = live(t["eco2.auth.users"])
    scans = live(t["eco2.scan.scans"])
    user_ids = set(users["id"].to_pylist())
    assert set(scans["user_id"].to_pylist()) <= user_ids
    scan_ids = set(scans["id"].to_pylist())
    for topic in ("eco2.scan.classification_results", "eco2.scan.rag_retrievals", "eco2.scan.feedback"):
        assert set(live(t[topic])["scan_id"].to_pylist()) <= scan_ids, topic
    # status pending -> completed/failed, updated in place; completed_at only when completed
    statuses = Counter(scans["status"].to_pylist())
    assert statuses["pending"] and statuses["completed"] and statuses["failed"]
    completed = scans.filter(pc.equal(scans["status"], "completed"))
    assert completed["completed_at"].null_count == 0
    assert pc.all(pc.greater(completed["completed_at"], completed["created_at"])).as_py()
    final_status = {}
    for sid, st in zip(scans["id"].to_pylist(), scans["status"].to_pylist()):
        final_status[sid] = st
    # feedback only for completed scans, by the scan's user
    scan_user = dict(zip(scans["id"].to_pylist(), scans["user_id"].to_pylist()))
    fb = live(t["eco2.scan.feedback"])
    assert fb.num_rows > 0
    for sid, uid in zip(fb["scan_id"].to_pylist(), fb["user_id"].to_pylist()):
        assert scan_user[sid] == uid
        assert final_status[sid] == "completed"
    # vocabularies
    cats = {"plastic", "glass", "paper", "can", "vinyl", "styrofoam", "food_waste", "general"}
    assert set(live(t["eco2.scan.classification_results"])["category"].to_pylist()) <= cats
    llm = live(t["eco2.scan.llm_call_log"])
    assert set(llm["stage"].to_pylist()) == {"vision", "embedding", "answer"}
    assert set(llm["status"].to_pylist()) <= {"ok", "error", "timeout"}
    assert set(users["provider"].drop_null().to_pylist()) <= {"kakao", "google", "apple", "email"}
    names = users["username"].to_pylist()
    assert any(any("\uac00" <= ch <= "\ud7a3" for ch in n) for n in names)  # Korean
    assert any(n.isascii() for n in names)
    assert all(h.startswith("$2b$12$") and len(h) == 60 for h in users["password_hash"].to_pylist())
    assert (
        len(set(users.filter(pc.equal(users["__op"], "c"))["email"].to_pylist()))
        == users.filter(pc.equal(users["__op"], "c")).num_rows
    )
    rag = live(t["eco2.scan.rag_retrievals"])
    per_scan = Counter(rag["scan_id"].to_pylist())
    assert set(per_scan.values()) <= {3, 4, 5}
    assert any("\uac00" <= ch <= "\ud7a3" for ch in rag["chunk_text"][0].as_py())


def test_snapshot_markers_and_streaming_source(lake):
    path, report = lake()
    t = read_all(path)
    assert report.snapshot_rows == sum(report.per_topic[x]["r"] for x in TOPICS)
    users = t["eco2.auth.users"]
    snap = users.filter(pc.equal(users["__op"], "r"))
    marks = snap["__snapshot"].to_pylist()
    assert marks[0] == "first" and marks[-1] == "last" and set(marks[1:-1]) == {"true"}
    assert len(set(snap["__tx_id"].to_pylist())) == 1 and len(set(snap["__lsn"].to_pylist())) == 1
    # scan database: tables snapshotted in name order, one transaction and LSN for all
    order = [
        "eco2.scan.classification_results",
        "eco2.scan.feedback",
        "eco2.scan.llm_call_log",
        "eco2.scan.rag_retrievals",
        "eco2.scan.scans",
    ]
    firsts = [t[x].filter(pc.equal(t[x]["__op"], "r"))["__snapshot"].to_pylist() for x in order]
    assert firsts[0][0] == "first" and firsts[-1][-1] == "last"
    for m in firsts[1:]:
        assert m[0] == "first_in_data_collection"
    for m in firsts[:-1]:
        assert m[-1] == "last_in_data_collection"
    scan_snap = pa.concat_tables(
        [t[x].filter(pc.equal(t[x]["__op"], "r")).select(["__tx_id", "__lsn"]) for x in order]
    )
    assert len(set(scan_snap["__tx_id"].to_pylist())) == 1 and len(set(scan_snap["__lsn"].to_pylist())) == 1
    # streaming: all events of a transaction share the commit time; not a snapshot
    stream = t["eco2.scan.scans"].filter(pc.not_equal(t["eco2.scan.scans"]["__op"], "r"))
    assert set(stream["__snapshot"].to_pylist()) == {"false"}
    by_tx: dict[int, set] = {}
    for x in TOPICS[1:]:
        s = t[x].filter(pc.not_equal(t[x]["__op"], "r"))
        for tx, ts in zip(s["__tx_id"].to_pylist(), s["__commit_ts"].to_pylist()):
            by_tx.setdefault(tx, set()).add(ts)
    assert all(len(v) == 1 for v in by_tx.values())
    assert min(scan_snap["__lsn"].to_pylist()) < min(stream["__lsn"].to_pylist())


def test_raw_envelope_semantics(lake):
    """before null on DEFAULT-identity updates; key + fallbacks on deletes; sequence strings;
    processing time after commit time; (sequence[0], lsn) orders each partition."""
    path, _ = lake()
    fb = raw_topic(path, "eco2.scan.feedback").to_pylist()
    upd = [r for r in fb if r["op"] == "u"]
    dels = [r for r in fb if r["op"] == "d"]
    assert upd and dels
    assert all(r["before"] is None and r["after"] is not None for r in upd)
    for r in dels:
        b = r["before"]
        assert r["after"] is None and b["id"] > 0
        assert (b["scan_id"], b["user_id"], b["thumbs_up"], b["created_at"]) == (
            "",
            0,
            False,
            "1970-01-01T00:00:00Z",
        )
        assert b["corrected_category"] is None and b["updated_at"] is None
    users = raw_topic(path, "eco2.auth.users").to_pylist()
    closed = [r for r in users if r["op"] == "d"]
    assert closed
    assert closed[0]["before"]["created_at"] == "1970-01-01T00:00:00.000000Z"  # NOT NULL DEFAULT now()
    assert closed[0]["before"]["username"] == "" and closed[0]["before"]["provider"] is None
    scans = raw_topic(path, "eco2.scan.scans").to_pylist()
    first_stream = next(r for r in scans if r["op"] != "r")
    for rows in (scans, users):
        stream = [r for r in rows if r["op"] != "r"]
        keys = []
        for r in stream:
            s = r["source"]
            seq = json.loads(s["sequence"])
            assert seq[1] == str(s["lsn"])
            assert (
                r["ts_ms"] >= s["ts_ms"]
                and s["ts_us"] // 1000 == s["ts_ms"]
                and s["ts_ns"] == s["ts_us"] * 1000
            )
            keys.append((-1 if seq[0] is None else int(seq[0]), s["lsn"]))
        assert keys == sorted(keys)
    assert first_stream["source"]["version"] == "3.6.3.Final" and first_stream["source"]["db"] == "scan"
    assert (
        first_stream["after"]["created_at"].endswith("Z") and len(first_stream["after"]["created_at"]) == 27
    )


def test_lsn_alone_is_not_monotonic(lake):
    path, _ = lake(events=20_000, flush_size=5_000)
    rows = raw_topic(path, "eco2.scan.rag_retrievals").to_pylist()
    lsn = [r["source"]["lsn"] for r in rows if r["op"] != "r"]
    assert any(b < a for a, b in itertools.pairwise(lsn))  # interleaved transactions (spec §5.7)
    tx = [r["source"]["txId"] for r in rows if r["op"] != "r"]
    assert any(b < a for a, b in itertools.pairwise(tx))  # xids are assigned at first write


def test_avro_footer_matches_real_debezium_sample(lake):
    assert SAMPLES.exists(), f"the real Debezium samples belong beside the repository: {SAMPLES}"
    path, _ = lake()
    obj = next(o for o in value_objects(path) if o.topic == "eco2.auth.users")
    mine = footer(path, obj)
    real = None
    for line in (SAMPLES / "eco2.scan.llm_call_log.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("avro_value_schema"):
            real = rec["avro_value_schema"]
            break

    def fields(doc):
        return {f["name"]: f for f in doc["fields"]}

    assert json.dumps(fields(mine)["source"]) == json.dumps(fields(real)["source"])
    assert json.dumps(fields(mine)["transaction"]) == json.dumps(fields(real)["transaction"])
    for name in ("op", "ts_ms", "ts_us", "ts_ns"):
        assert fields(mine)[name] == fields(real)[name]
    assert mine["name"] == "Envelope" and mine["namespace"] == "eco2.auth.users"
    assert mine["connect.version"] == 2 and mine["connect.name"] == "eco2.auth.users.Envelope"
    value = {f["name"]: f for f in fields(mine)["before"]["type"][1]["fields"]}
    real_value = {f["name"]: f for f in fields(real)["before"]["type"][1]["fields"]}
    assert value["id"] == real_value["id"]  # bigserial: long with connect.default 0
    assert value["created_at"] == real_value["created_at"]  # timestamptz NOT NULL DEFAULT now()
    cls = footer(path, next(o for o in value_objects(path) if o.topic == "eco2.scan.classification_results"))
    cls_value = {f["name"]: f for f in fields(cls)["before"]["type"][1]["fields"]}
    assert cls_value["confidence"]["type"][1] == {
        "type": "bytes",
        "scale": 4,
        "precision": 5,
        "connect.version": 1,
        "connect.parameters": {"scale": "4", "connect.decimal.precision": "5"},
        "connect.name": "org.apache.kafka.connect.data.Decimal",
        "logicalType": "decimal",
    }
    assert cls_value["scan_id"]["type"] == {
        "type": "string",
        "connect.version": 1,
        "connect.name": "io.debezium.data.Uuid",
    }
    assert cls_value["created_at"]["type"] == {
        "type": "string",
        "connect.version": 1,
        "connect.name": "io.debezium.time.ZonedTimestamp",
    }
    parse_avro_schema(cls)  # the reader's parser accepts it


def test_toast_placeholder_in_updates(lake):
    path, _ = lake()
    cls = read_all(path)["eco2.scan.classification_results"]
    upd = cls.filter(pc.equal(cls["__op"], "u"))
    rat = upd["rationale"].to_pylist()
    assert TOAST_PLACEHOLDER in rat  # re-calibration left the rationale alone
    assert any(r and r != TOAST_PLACEHOLDER for r in rat)  # rationale rewritten: full value
    full = cls.filter(pc.is_in(cls["__op"], pa.array(["c", "r"])))["rationale"].drop_null().to_pylist()
    assert full and all(len(r.encode()) > 2048 for r in full)
    assert TOAST_PLACEHOLDER not in full


def test_toast_off_has_short_rationales_and_no_placeholder(lake):
    path, _ = lake(toast=False)
    cls = read_all(path)["eco2.scan.classification_results"]
    rat = cls["rationale"].drop_null().to_pylist()
    assert rat and TOAST_PLACEHOLDER not in rat
    assert all(len(r.encode()) < 2048 for r in rat)
    assert cls.filter(pc.equal(cls["__op"], "u")).num_rows > 0


def test_flush_size_and_tombstone_offset_gaps(lake):
    path, report = lake(flush_size=40)
    by_part: dict[tuple, list] = {}
    for obj in value_objects(path):
        ops = raw(path, obj)["op"].to_pylist()
        by_part.setdefault((obj.topic, obj.kafka_partition), []).append(
            (obj.start_offset, len(ops), ops.count("d"))
        )
    gaps = 0
    for (topic, _), files in by_part.items():
        files.sort()
        assert all(n == 40 for _, n, _ in files[:-1]), topic
        assert 0 < files[-1][1] <= 40
        assert files[0][0] == 0
        # each delete is followed by its tombstone: an offset that no value file holds
        for (s0, n0, d0), (s1, _, _) in itertools.pairwise(files):
            assert s1 - s0 == n0 + d0, topic
            gaps += d0
    assert 0 < gaps <= report.tombstones == sum(report.per_topic[t]["d"] for t in TOPICS)


def test_kafka_partitions_by_key(lake):
    path, report = lake(partitions=3)
    t = read_all(path)
    for topic, table in t.items():
        assert set(table["__kafka_partition"].to_pylist()) == {0, 1, 2}, topic
        assert op_counts(table) == {op: report.per_topic[topic][op] for op in OPS}
        keyed = table.filter(pc.not_equal(table["__op"], "t"))
        part_of: dict = {}
        for k, p in zip(keyed["id"].to_pylist(), keyed["__kafka_partition"].to_pylist()):
            assert part_of.setdefault(k, p) == p, (topic, k)
    objs = [o for o in value_objects(path) if o.topic == "eco2.scan.scans"]
    assert {o.encoded_partition for o in objs} == {"partition=0", "partition=1", "partition=2"}
    assert all(o.encoded_partition == f"partition={o.kafka_partition}" for o in objs)


@pytest.mark.parametrize("name,width_h", [("hourly", 1), ("daily", 24), ("time", 1)])
def test_time_partitioners_bucket_by_record_timestamp(lake, name, width_h):
    path, report = lake(
        partitioner=name, events=3_000, events_per_second=0.02 if name == "daily" else 0.2, flush_size=300
    )
    objs = value_objects(path)
    dirs = {o.encoded_partition for o in objs}
    assert len(dirs) > 2
    for o in objs:
        v = o.partition_values
        if name == "time":
            start = datetime.strptime(f"{v['dt']} {v['hr']}", "%Y-%m-%d %H").replace(tzinfo=UTC)
        else:
            start = datetime(
                int(v["year"]), int(v["month"]), int(v["day"]), int(v.get("hour", 0)), tzinfo=UTC
            )
        lo = int(start.timestamp() * 1000)
        ts = raw(path, o)["ts_ms"].to_pylist()
        assert all(lo <= x < lo + width_h * 3_600_000 for x in ts), o.key
    t = read_all(path)
    assert {k: op_counts(v) for k, v in t.items()} == {
        k: {op: report.per_topic[k][op] for op in OPS} for k in TOPICS
    }


def test_unwrap_with_field_partitioner(lake):
    path, report = lake(shape="unwrap", partitioner="field", truncates=True)
    objs = value_objects(path)
    llm = [o for o in objs if o.topic == "eco2.scan.llm_call_log"]
    assert {o.encoded_partition for o in llm} == {"stage=vision", "stage=embedding", "stage=answer"}
    fb_dirs = {o.encoded_partition for o in objs if o.topic == "eco2.scan.feedback"}
    assert fb_dirs == {"thumbs_up=true", "thumbs_up=false"}
    assert "provider=null" in {o.encoded_partition for o in objs if o.topic == "eco2.auth.users"}
    doc = footer(path, llm[0])
    assert doc["connect.name"] == "eco2.scan.llm_call_log.Value"
    names = [f["name"] for f in doc["fields"]]
    assert names[-6:] == ["__deleted", "__op", "__lsn", "__source_ts_ms", "__txId", "__snapshot"]
    for o in llm:
        stage = o.partition_values["stage"]
        assert set(raw(path, o)["stage"].to_pylist()) == {stage}
    t = read_all(path)
    for topic, table in t.items():
        expected = {op: report.per_topic[topic][op] for op in OPS}
        expected["t"] = 0  # the SMT drops truncates
        assert op_counts(table) == expected, topic
    assert report.per_topic["eco2.scan.llm_call_log"]["t"] == 1
    fb = t["eco2.scan.feedback"]
    deleted = fb.filter(pc.equal(fb["__op"], "d"))
    assert deleted.num_rows and set(deleted["thumbs_up"].to_pylist()) == {False}  # fallback value
    raw_fb = pa.concat_tables([raw(path, o) for o in objs if o.topic == "eco2.scan.feedback"])
    assert set(raw_fb["__deleted"].to_pylist()) == {"true", "false"}


def test_field_partitioner_needs_unwrap(tmp_path):
    with pytest.raises(ValueError, match="unwrap"):
        generate_lake(str(tmp_path), GeneratorOptions(events=100, partitioner="field"))
    with pytest.raises(ValueError, match="null key"):
        generate_lake(str(tmp_path), GeneratorOptions(events=100, truncates=True, store_keys=True))


@pytest.mark.parametrize("schemas", [False, True])
def test_json_lines(lake, schemas):
    path, report = lake(format="json", json_schemas=schemas, events=2_000, flush_size=300)
    objs = value_objects(path)
    assert objs and all(o.key.endswith(".json") for o in objs)
    first = json.loads((path / objs[0].key).read_text().splitlines()[0])
    if schemas:
        assert set(first) == {"schema", "payload"}
        assert first["schema"]["name"].endswith(".Envelope") and first["schema"]["version"] == 2
        payload = first["payload"]
    else:
        assert "schema" not in first
        payload = first
    assert payload["op"] in OPS and "source" in payload
    t = read_all(path)
    for topic, table in t.items():
        assert op_counts(table) == {op: report.per_topic[topic][op] for op in OPS}, topic
    cls = t["eco2.scan.classification_results"]
    if schemas:  # decimals travel as base64 bytes and decode with the embedded schema
        assert cls.schema.field("confidence").type == pa.decimal128(5, 4)
        assert cls.schema.field("created_at").type == UTC_US


def test_schema_change_rotates_files(lake):
    path, report = lake(schema_change=True, events=8_000, flush_size=5_000)
    objs = sorted(o for o in value_objects(path) if o.topic == "eco2.scan.llm_call_log")
    footers = [footer(path, o) for o in objs]
    assert len({json.dumps(f) for f in footers}) == 3  # v1, + cached_tokens, + latency bigint
    versions = []
    for f in footers:
        after = {x["name"]: x for x in f["fields"][0]["type"][1]["fields"]}
        versions.append(("cached_tokens" in after, after["latency_ms"]["type"]))
    assert versions == sorted(versions, key=lambda v: (v[0], v[1] == "long"))
    assert versions[0] == (False, "int") and versions[-1] == (True, "long")
    # with flush 5000 only the schema change can have closed the first files early
    assert pq.ParquetFile(path / objs[0].key).metadata.num_rows < 5_000
    llm = read_all(path)["eco2.scan.llm_call_log"]
    assert llm.schema.field("latency_ms").type == pa.int64()
    assert llm.schema.field("cached_tokens").type == pa.int32()
    cached = llm["cached_tokens"].to_pylist()
    first_cached = next(i for i, v in enumerate(cached) if v is not None)
    assert first_cached > 0 and all(v is None for v in cached[:first_cached])
    assert op_counts(llm) == {op: report.per_topic["eco2.scan.llm_call_log"][op] for op in OPS}


def test_replays_and_overlapping_objects(lake):
    path, report = lake(replays=True, events=10_000, flush_size=300)
    assert report.replayed > 0 and report.rewritten_rows > 0
    t = read_all(path)
    assert sum(x.num_rows for x in t.values()) == report.rows == report.events + report.rewritten_rows
    # Debezium replays: same key/op/lsn/txId at NEW offsets with a different processing time
    debezium_dups = sink_dups = 0
    for topic in TOPICS:
        rows = raw_topic(path, topic)
        src = rows["source"].combine_chunks()
        image = pc.if_else(pc.equal(rows["op"], "d"), rows["before"], rows["after"]).combine_chunks()
        ident = list(
            zip(
                image.field("id").to_pylist() if rows["op"][0].as_py() != "t" else [None] * len(rows),
                rows["op"].to_pylist(),
                src.field("lsn").to_pylist(),
                src.field("txId").to_pylist(),
            )
        )
        seen: dict[tuple, list] = {}
        for i, key in enumerate(ident):
            seen.setdefault(key, []).append(i)
        ts = rows["ts_ms"].to_pylist()
        objs = rows["object"].to_pylist()
        for idx in seen.values():
            if len(idx) < 2:
                continue
            stamps = {ts[i] for i in idx}
            if len(stamps) > 1:
                debezium_dups += 1
            if len({objs[i] for i in idx if ts[i] == ts[idx[0]]}) > 1:
                sink_dups += 1
    assert debezium_dups > 0 and sink_dups > 0
    # overlapping objects: a rewritten object starts inside another object's offset range
    overlaps = 0
    by_part: dict[tuple, list] = {}
    for o in value_objects(path):
        by_part.setdefault((o.topic, o.kafka_partition), []).append(
            (o.start_offset, pq.ParquetFile(path / o.key).metadata.num_rows)
        )
    for files in by_part.values():
        files.sort()
        for (s0, n0), (s1, _) in itertools.pairwise(files):
            overlaps += s1 < s0 + n0
    assert overlaps > 0


def test_pk_changes(lake):
    path, report = lake(pk_changes=True, events=10_000)
    cls = read_all(path)["eco2.scan.classification_results"]
    dels = cls.filter(pc.equal(cls["__op"], "d"))
    assert dels.num_rows > 0 and report.per_topic["eco2.scan.classification_results"]["d"] == dels.num_rows
    creates = cls.filter(pc.equal(cls["__op"], "c"))
    c_by = {
        (lsn, tx): (i, r)
        for lsn, tx, i, r in zip(
            creates["__lsn"].to_pylist(),
            creates["__tx_id"].to_pylist(),
            creates["id"].to_pylist(),
            creates["rationale"].to_pylist(),
        )
    }
    old_ids = set()
    for lsn, tx, old in zip(dels["__lsn"].to_pylist(), dels["__tx_id"].to_pylist(), dels["id"].to_pylist()):
        new_id, rationale = c_by[(lsn, tx)]  # d (old key) + c (new key): same lsn and txId
        assert new_id > old
        assert rationale in (None, TOAST_PLACEHOLDER)  # the c half carries the placeholder
        old_ids.add(old)
    assert TOAST_PLACEHOLDER in [
        c_by[k][1] for k in zip(dels["__lsn"].to_pylist(), dels["__tx_id"].to_pylist())
    ]
    assert dels["rationale"].null_count == dels.num_rows  # DEFAULT identity: non-key columns empty
    # the old key never comes back after its delete
    pos = {}
    for i, (k, op) in enumerate(zip(cls["id"].to_pylist(), cls["__op"].to_pylist())):
        if op == "d":
            pos[k] = i
    ids = cls["id"].to_pylist()
    ops = cls["__op"].to_pylist()
    assert cls["__kafka_partition"].to_pylist() == [0] * cls.num_rows
    for k, p in pos.items():
        assert all(ids[j] != k or ops[j] == "d" for j in range(p, len(ids)))


def test_truncate_once_then_inserts_continue(lake):
    path, report = lake(truncates=True)
    llm = read_all(path)["eco2.scan.llm_call_log"]
    ops = llm["__op"].to_pylist()
    assert ops.count("t") == 1 == report.per_topic["eco2.scan.llm_call_log"]["t"]
    i = ops.index("t")
    trunc = llm.slice(i, 1).to_pylist()[0]
    assert trunc["id"] is None and trunc["__kafka_partition"] == 0 and trunc["__lsn"] and trunc["__tx_id"]
    assert "c" in ops[i + 1 :]  # inserts continue after the truncate
    assert all(report.per_topic[t]["t"] == 0 for t in TOPICS if t != "eco2.scan.llm_call_log")


def test_deletes_off(lake):
    path, report = lake(deletes=False)
    t = read_all(path)
    assert all(op_counts(x)["d"] == 0 for x in t.values())
    assert report.tombstones == 0
    assert op_counts(t["eco2.scan.feedback"])["u"] > 0


def test_store_keys_companions(lake):
    path, report = lake(store_keys=True, partitions=2)
    reader = LakeReader(str(path))
    listing = reader.scan()
    assert listing.ignored and all(".keys." in i.key for i in listing.ignored)
    assert report.objects == 2 * len(value_objects(path))
    for obj in value_objects(path):
        if obj.topic not in ("eco2.scan.scans", "eco2.scan.feedback"):
            continue
        keys = pq.read_table(path / obj.key.replace(".snappy.parquet", ".keys.snappy.parquet"))
        assert keys.schema.names == ["key"]
        vals = raw(path, obj)
        image = pc.if_else(pc.equal(vals["op"], "d"), vals["before"], vals["after"]).combine_chunks()
        assert keys["key"].combine_chunks().field("id").to_pylist() == image.field("id").to_pylist()


def test_topic_prefix_start_time_and_rate(lake):
    path, report = lake(topic_prefix="prod-eco2", start_time="2027-03-01T12:00:00Z", events_per_second=20.0)
    assert set(report.per_topic) == {t.replace("eco2", "prod-eco2", 1) for t in TOPICS}
    t = read_all(path)
    obj = next(o for o in value_objects(path) if o.topic == "prod-eco2.scan.scans")
    assert footer(path, obj)["connect.name"] == "prod-eco2.scan.scans.Envelope"
    stream = pa.concat_tables(
        [x.filter(pc.not_equal(x["__op"], "r")).select(["__commit_ts"]) for x in t.values()]
    )
    ts = stream["__commit_ts"]
    start = datetime(2027, 3, 1, 12, tzinfo=UTC)
    first, last = pc.min(ts).as_py(), pc.max(ts).as_py()
    assert start <= first < start + timedelta(seconds=10)
    expected = (report.events - report.snapshot_rows) / 20.0
    assert 0.7 * expected < (last - first).total_seconds() < 1.4 * expected
    scans = t["prod-eco2.scan.scans"]
    snap = scans.filter(pc.equal(scans["__op"], "r"))
    assert pc.max(snap["created_at"]).as_py() < start


def test_progress_callback(tmp_path):
    calls = []
    report = generate_lake(
        str(tmp_path),
        GeneratorOptions(events=3_000, flush_size=500),
        progress=lambda done, total: calls.append((done, total)),
        chunk_events=700,
    )
    assert calls[0] == (0, 3_000) and calls[-1] == (3_000, 3_000)
    assert len(calls) > 3 and all(a[0] <= b[0] for a, b in itertools.pairwise(calls))
    assert report.events >= 3_000


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.relative_to(path).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def test_deterministic_per_seed(tmp_path):
    opts = GeneratorOptions(
        events=4_000,
        flush_size=300,
        replays=True,
        pk_changes=True,
        truncates=True,
        schema_change=True,
        partitions=2,
    )
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    ra = generate_lake(str(a), opts, chunk_events=1_500)
    rb = generate_lake(str(b), opts, chunk_events=1_500)
    generate_lake(str(c), GeneratorOptions(**{**opts.__dict__, "seed": 1}), chunk_events=1_500)
    assert _digest(a) == _digest(b)
    assert (ra.events, ra.objects, ra.bytes, ra.per_topic) == (rb.events, rb.objects, rb.bytes, rb.per_topic)
    assert _digest(a) != _digest(c)
    ids_a = read_all(a)["eco2.scan.scans"]["id"].to_pylist()
    ids_c = read_all(c)["eco2.scan.scans"]["id"].to_pylist()
    assert not set(ids_a) & set(ids_c)


def test_writes_to_an_object_store(tmp_path):
    """``generate_lake`` accepts an ObjectStore as well as a path."""
    from lakehouse.lake.store import LocalStore

    store = LocalStore(tmp_path)
    report = generate_lake(store, GeneratorOptions(events=500, flush_size=100))
    assert report.objects == len(value_objects(tmp_path)) and report.bytes > 0


@pytest.mark.s3
def test_generate_to_s3_and_read_back(moto_s3, tmp_path):
    """The same lake on moto S3 (over HTTP) and on local disk reads back batch for batch."""
    uri = moto_s3("lake")
    options = GeneratorOptions(events=800, flush_size=200, pk_changes=True, schema_change=True)
    report = generate_lake(uri, options)
    generate_lake(str(tmp_path), options)
    s3, local = LakeReader(uri), LakeReader(str(tmp_path))
    assert s3.scan().topics == local.scan().topics == sorted(TOPICS)
    for topic in TOPICS:
        s3_plan, local_plan = s3.plan(topic), local.plan(topic)
        assert s3_plan.schema == local_plan.schema
        s3_batches, local_batches = list(s3.iter_changes(s3_plan)), list(local.iter_changes(local_plan))
        assert len(s3_batches) == len(local_batches)
        for a, b in zip(s3_batches, local_batches):
            assert a.equals(b), topic
        table = pa.Table.from_batches(s3_batches, schema=s3_plan.schema)
        assert op_counts(table) == {op: report.per_topic[topic][op] for op in OPS}, topic
