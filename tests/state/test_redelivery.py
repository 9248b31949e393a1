"""Re-delivered objects and re-cuts (issue 13): what the S3 sink writes after a restart.

The sink relies on Kafka's committed offsets alone (spec §2.4, §2.5). After a crash between an
object's PUT and the offset commit, or a restart with another ``flush.size``, it consumes the same
Kafka records again from an earlier offset and cuts them anew: an applied key is PUT again with
more rows (a superset: itself plus the records that followed), and new keys start inside or across
applied ranges (nested and spanning re-cuts). Here a Kafka record stream is rebuilt from a generated
lake (records and schemas as the sink got them, contiguous offsets with a few gaps), and the sink
emulation writes it in sessions that each resume from an earlier offset with another flush size,
with ``compact`` runs in between. After every run the state must equal a one-shot build of a clean
lake holding the same records once, and no run may rebuild: every record it repeats is recognised.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakehouse.config import TableConfig, TablesConfig
from lakehouse.generate import GeneratorOptions, generate_lake
from lakehouse.lake.connect import ConnectSchema, parse_avro_schema
from lakehouse.lake.reader import LakeReader
from lakehouse.lake.sink import SinkConfig, SinkWriter
from lakehouse.lake.store import LocalStore, open_store
from lakehouse.state.compact import CompactOptions, compact
from lakehouse.state.export import visible_rows

TOPICS = {
    "eco2.scan.scans": ("id",),
    "eco2.scan.classification_results": ("id",),
    "eco2.scan.feedback": ("id",),
}
CONFIG = TablesConfig(tables=tuple(TableConfig(topic=t, primary_key=k) for t, k in TOPICS.items()))


@dataclass
class Stream:
    """One topic's Kafka records (partition 0) in runs of one schema."""

    runs: list[tuple[pa.Table, ConnectSchema, str, np.ndarray]]  # records, schema, footer text, offsets

    @property
    def end(self) -> int:
        return int(self.runs[-1][3][-1]) + 1


def record_streams(lake: Path, seed: int) -> dict[str, Stream]:
    """The records behind a generated lake, with new contiguous offsets and a few gaps (the
    tombstones the sink drops)."""
    rng = random.Random(seed)
    reader = LakeReader(str(lake))
    out = {}
    for topic, objects in reader.scan().objects.items():
        if topic not in TOPICS:
            continue
        runs, offset = [], 0
        for obj in sorted(objects, key=lambda o: o.ref):
            path = lake / obj.key
            footer = pq.ParquetFile(path).metadata.metadata[b"parquet.avro.schema"].decode()
            table = pq.read_table(path)
            steps = np.array([1 + (rng.random() < 0.05) for _ in range(table.num_rows)], np.int64)
            offsets = offset + np.cumsum(steps) - steps[0]
            offset = int(offsets[-1]) + 1
            runs.append((table, parse_avro_schema(footer), footer, offsets))
        out[topic] = Stream(runs)
    return out


def write_range(store, streams: dict[str, Stream], lo: float, hi: float, flush: int) -> None:
    """One sink session: every topic's records from ``lo`` to ``hi`` (fractions of the stream),
    cut with ``flush``; a clean stop commits the open files."""
    sink = SinkWriter(store, SinkConfig(flush_size=flush))
    for topic, stream in streams.items():
        first, last = int(stream.end * lo), int(stream.end * hi)
        for table, schema, footer, offsets in stream.runs:
            keep = (offsets >= first) & (offsets < last)
            if keep.any():
                idx = np.flatnonzero(keep)
                sink.write(topic, 0, table.take(pa.array(idx)), schema, offsets[idx], avro_json=footer)
    sink.close()


def assert_state_equals_clean(state: str, streams: dict[str, Stream], upto: float, work: Path) -> None:
    clean = work / f"clean-{upto:.3f}"
    write_range(LocalStore(clean), streams, 0.0, upto, flush=10_000_000)  # each record once
    compact(str(clean), str(work / f"clean-state-{upto:.3f}"), CONFIG)
    for topic in TOPICS:
        table = topic.split(".", 1)[1]
        got = visible_rows(state, table).sort_by("id")
        want = visible_rows(str(work / f"clean-state-{upto:.3f}"), table).sort_by("id")
        assert got.num_rows == want.num_rows, (table, got.num_rows, want.num_rows)
        assert got.equals(want), f"{table}: differs from a one-shot build of the same records"


# sessions: (resume from, write up to, flush size); each resumes at or before the previous end
SESSIONS = [
    (0.0, 0.30, 97),
    (0.22, 0.45, 160),
    (0.40, 0.41, 7),
    (0.10, 0.62, 250),
    (0.61, 0.80, 31),
    (0.55, 1.0, 400),
    (0.93, 1.0, 53),
]


@pytest.fixture(scope="module")
def streams(tmp_path_factory) -> dict[str, Stream]:
    lake = tmp_path_factory.mktemp("redelivery-src")
    generate_lake(
        lake,
        GeneratorOptions(
            events=6_000,
            seed=13,
            flush_size=200,
            replays=True,
            pk_changes=True,
            truncates=True,
            schema_change=True,
        ),
    )
    return record_streams(lake, seed=13)


def _run_sessions(lake_uri: str, state_uri: str, streams: dict[str, Stream], work: Path) -> list[str]:
    store = open_store(lake_uri)
    statuses = []
    redelivered = 0
    furthest = 0.0
    for lo, hi, flush in SESSIONS:
        write_range(store, streams, lo, hi, flush)
        furthest = max(furthest, hi)
        results = compact(lake_uri, state_uri, CONFIG, options=CompactOptions(batch_events=1_500))
        assert not [r for r in results if r.failed], [r.error for r in results]
        statuses += [r.status for r in results]
        redelivered += sum(r.redelivered for r in results)
        assert "rebuilt" not in {r.status for r in results}, [r.notes for r in results]
        assert_state_equals_clean(state_uri, streams, furthest, work)
    assert redelivered > 0  # objects repeating applied records were recognised as such, not just folded
    return statuses


def test_overwrites_and_recuts_apply_incrementally(streams, tmp_path):
    lake = tmp_path / "lake"
    statuses = _run_sessions(str(lake), str(tmp_path / "state"), streams, tmp_path)
    assert statuses.count("applied") >= len(SESSIONS)
    # a one-shot build of the lake as the sessions left it (every overlap at once) agrees too
    assert not [r.error for r in compact(str(lake), str(tmp_path / "fresh"), CONFIG) if r.failed]
    assert_state_equals_clean(str(tmp_path / "fresh"), streams, 1.0, tmp_path)
    # the sessions really overwrote applied keys with other content and cut records anew
    reader = LakeReader(str(lake))
    starts = [o.ref.start_offset for o in reader.scan().objects["eco2.scan.scans"]]
    assert len(starts) == len(set(starts))  # keys are unique per start offset...
    assert any(b - a < 97 for a, b in zip(starts, starts[1:]))  # ...and ranges nest and overlap


def test_pure_replays_never_rebuild_and_cost_only_their_size(streams, tmp_path):
    lake, state = tmp_path / "lake", str(tmp_path / "state")
    store = LocalStore(lake)
    write_range(store, streams, 0.0, 0.7, 120)
    compact(str(lake), state, CONFIG)
    # a restart from offset 10 % with another flush size: only records already applied
    write_range(store, streams, 0.1, 0.7, 45)
    results = compact(str(lake), state, CONFIG)
    for r in results:
        assert r.status == "applied", (r.table, r.status, r.notes)
        assert r.inserts == r.updates == r.deletes == 0, r
        assert r.duplicates > 0
    assert_state_equals_clean(state, streams, 0.7, tmp_path)


@pytest.mark.s3
def test_overwrites_and_recuts_on_s3(streams, moto_s3, tmp_path):
    _run_sessions(moto_s3("lake-redelivery"), moto_s3("state-redelivery"), streams, tmp_path)


def test_recut_from_before_a_column_was_dropped_and_added_again_with_another_type(dbz, tmp_path):
    """A re-cut of records older than a drop and re-add of ``v`` (int, then text) carries the old
    type; it must be placed by its own commit time, not after the state's timeline, or the
    pre-commit check sees an incompatible type change and stops the table (truth seed 15)."""
    topic = "p.public.things"
    config = TablesConfig(tables=(TableConfig(topic=topic, primary_key=("id",)),))
    ints = dbz.envelope(topic, [("id", dbz.req("int64")), ("v", dbz.opt("int32"))])
    without = dbz.envelope(topic, [("id", dbz.req("int64"))])
    texts = dbz.envelope(topic, [("id", dbz.req("int64")), ("v", dbz.opt("string", default="x"))])
    t0 = 1_796_000_000_000_000
    history = [
        (ints, dbz.record("c", after={"id": 1, "v": 1}, ts_us=t0 + 1, lsn=100, tx_id=10)),
        (ints, dbz.record("c", after={"id": 2, "v": 2}, ts_us=t0 + 2, lsn=110, tx_id=11)),
        (without, dbz.record("u", after={"id": 1}, ts_us=t0 + 3, lsn=120, tx_id=12)),
        (texts, dbz.record("c", after={"id": 3, "v": "s"}, ts_us=t0 + 4, lsn=130, tx_id=13)),
    ]
    store, lake, state = LocalStore(tmp_path / "lake"), str(tmp_path / "lake"), str(tmp_path / "state")
    writer = SinkWriter(store, SinkConfig(flush_size=1000))
    for offset, (schema, record) in enumerate(history):
        dbz.write(store, topic, schema, [record], [offset], writer=writer, close=False)
    writer.close()
    assert not [r.error for r in compact(lake, state, config) if r.failed]
    want = {1: "x", 2: "x", 3: "s"}  # rows older than the new column show its default
    assert {r["id"]: r["v"] for r in visible_rows(state, "public.things").to_pylist()} == want

    dbz.write(store, topic, ints, [history[1][1]], [1], config=SinkConfig(flush_size=1))  # the re-cut
    [result] = compact(lake, state, config)
    assert not result.failed, result.error
    assert (result.status, result.redelivered, result.duplicates) == ("applied", 1, 1), result.notes
    assert {r["id"]: r["v"] for r in visible_rows(state, "public.things").to_pylist()} == want


def test_records_a_shrunk_key_lost_still_count_as_applied_for_other_objects(dbz, tmp_path):
    """Object 2 (c3, c4) is PUT again holding only c3; c4 now leads the new object 3. A superset
    of object 0 repeats c3 and c4: its c4 must match the applied c4 (now in object 3, at its old
    position) and not come back as a new record older than key 4's later update (truth seed 16)."""
    topic = "p.public.things"
    config = TablesConfig(tables=(TableConfig(topic=topic, primary_key=("id",)),))
    schema = dbz.envelope(topic, [("id", dbz.req("int64")), ("v", dbz.opt("int32"))])
    t0 = 1_796_000_000_000_000
    records = [
        dbz.record(op, after={"id": i, "v": 10 * n + i}, ts_us=t0 + n, lsn=100 + 10 * n, tx_id=10 + n)
        for n, (op, i) in enumerate([("c", 1), ("c", 2), ("c", 3), ("c", 4), ("u", 4)])
    ]
    store, lake, state = LocalStore(tmp_path / "lake"), str(tmp_path / "lake"), str(tmp_path / "state")

    def session(first: int, last: int, flush: int) -> None:
        dbz.write(
            store,
            topic,
            schema,
            records[first:last],
            list(range(first, last)),
            config=SinkConfig(flush_size=flush),
        )

    for first in (0, 2, 4):  # objects 0 (c1 c2), 2 (c3 c4), 4 (u4)
        session(first, min(first + 2, 5), 2)
    assert not [r.error for r in compact(lake, state, config) if r.failed]
    want = {r["id"]: r["v"] for r in visible_rows(state, "public.things").to_pylist()}
    assert want == {1: 1, 2: 12, 3: 23, 4: 44}
    session(0, 4, 4)  # object 0 again: c1 .. c4
    session(2, 4, 1)  # object 2 again with c3 only, and object 3: c4
    [result] = compact(lake, state, config)
    assert not result.failed, result.error
    assert result.status == "applied" and result.redelivered >= 2, (result.status, result.notes)
    assert (result.inserts, result.updates, result.deletes) == (0, 0, 0)
    assert {r["id"]: r["v"] for r in visible_rows(state, "public.things").to_pylist()} == want


def test_a_cut_starting_inside_a_shrunk_key_does_not_take_its_lost_records(dbz, tmp_path):
    """Object 0 (records 0-4) is PUT again holding 0-2; its lost records 3-4 now lead object 3.
    Another session's object 2 (records 2-9) starts inside the new object 0: its first rows are not
    the lost ones. Its copies of 3 and 4 must match them at their applied place, or they come back
    older than key 4's later update (truth seed 9)."""
    topic = "p.public.things"
    config = TablesConfig(tables=(TableConfig(topic=topic, primary_key=("id",)),))
    schema = dbz.envelope(topic, [("id", dbz.req("int64")), ("v", dbz.opt("int32"))])
    t0 = 1_796_000_000_000_000
    ops = [("c", i) for i in range(10)] + [("u", 4)]
    records = [
        dbz.record(op, after={"id": i, "v": 100 * n + i}, ts_us=t0 + n, lsn=100 + 10 * n, tx_id=10 + n)
        for n, (op, i) in enumerate(ops)
    ]
    store, lake, state = LocalStore(tmp_path / "lake"), str(tmp_path / "lake"), str(tmp_path / "state")

    def session(first: int, last: int, flush: int) -> None:
        dbz.write(
            store,
            topic,
            schema,
            records[first:last],
            list(range(first, last)),
            config=SinkConfig(flush_size=flush),
        )

    for first, last in ((0, 5), (5, 10), (10, 11)):  # objects 0 (0-4), 5 (5-9), 10 (u4)
        session(first, last, 5)
    assert not [r.error for r in compact(lake, state, config) if r.failed]
    want = {r["id"]: r["v"] for r in visible_rows(state, "public.things").to_pylist()}
    session(2, 10, 20)  # object 2: records 2-9
    session(0, 10, 3)  # objects 0 (0-2, fewer rows than applied), 3, 6, 9
    [result] = compact(lake, state, config)
    assert not result.failed, result.error
    assert result.status == "applied" and result.redelivered >= 2, (result.status, result.notes)
    assert (result.inserts, result.updates, result.deletes) == (0, 0, 0)
    assert {r["id"]: r["v"] for r in visible_rows(state, "public.things").to_pylist()} == want
