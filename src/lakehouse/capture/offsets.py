"""Debezium's offsets belong to one lake and one source database, and so does the slot they point into.

A capture's position is two things that must agree: Debezium's offsets file (the LSN it has
written up to) and the replication slot in PostgreSQL (the WAL kept for it). The offsets file is
named by the engine name *and* a digest of what it is the position of: the lake (its root URI),
the PostgreSQL cluster (``pg_control_system().system_identifier``) and the database (its oid), so
a capture into another lake, from another cluster or from a re-created database finds no offsets
and starts with a snapshot instead of resuming a position its slot never had. Beside it, a small
JSON file says, for a person, whose position it is.

Before the JVM starts, :func:`check_slot` compares the two: offsets whose slot is gone (dropped,
the database restored or re-created) or belongs to another database, and a slot that another
lake's capture (same state folder) streams from, are one-line errors saying which file and slot,
and what to do. A first run that never committed an offset drops the slot (and publication) it
created (:func:`drop_unused_slot`), so a failed start holds no WAL.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from lakehouse.capture.preflight import CaptureSetupError, Source

log = logging.getLogger("lakehouse.capture")


@dataclass(frozen=True)
class CaptureIdentity:
    """Whose position an offsets file holds: this lake, fed from this database."""

    lake: str  # the store's root URI (absolute path, or s3://bucket/prefix)
    system_identifier: str
    database_oid: int
    dbname: str

    @classmethod
    def of(cls, lake_uri: str, source: Source) -> CaptureIdentity:
        return cls(lake_uri, source.system_identifier, source.database_oid, source.dbname)

    @property
    def digest(self) -> str:
        text = json.dumps([self.lake, self.system_identifier, self.database_oid], separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def same_database(self, other: dict) -> bool:
        return (
            str(other.get("system_identifier")) == self.system_identifier
            and int(other.get("database_oid") or -1) == self.database_oid
        )


@dataclass(frozen=True)
class SlotState:
    database: str
    active_pid: int | None
    restart_lsn: str | None
    confirmed_flush_lsn: str | None
    wal_status: str | None


@dataclass(frozen=True)
class SlotCheck:
    """What :func:`check_slot` found before the run (to clean up after a first run)."""

    slot_existed: bool
    publication_existed: bool


class CaptureOffsets:
    """The offsets file of one engine name for one :class:`CaptureIdentity`, and its description."""

    def __init__(self, state_dir: Path, name: str, identity: CaptureIdentity, topic_prefix: str):
        self.state_dir = state_dir
        self.name = name
        self.identity = identity
        self.topic_prefix = topic_prefix
        self.slot = f"lakehouse_{name}"
        self.publication = f"lakehouse_{name}"
        stem = f"{name}.{identity.digest}"
        self.file = state_dir / f"{stem}.offsets"
        self.meta_file = state_dir / f"{stem}.json"
        self.legacy_file = state_dir / f"{name}.offsets"  # before offsets were tied to a lake

    def describe(self) -> dict:
        return {
            "engine": f"lakehouse-{self.name}",
            "topic_prefix": self.topic_prefix,
            "slot": self.slot,
            "lake": self.identity.lake,
            "database": self.identity.dbname,
            "system_identifier": self.identity.system_identifier,
            "database_oid": self.identity.database_oid,
            "offsets": self.file.name,
        }

    def write_meta(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.meta_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.describe(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(self.meta_file)

    def committed(self) -> dict | None:
        """Debezium's committed offset of this engine (``{"lsn": ..., "lsn_proc": ..., ...}``), or
        None when nothing was ever committed."""
        return read_offset(self.file, f"lakehouse-{self.name}", self.topic_prefix)

    def other_claims(self) -> list[tuple[dict, Path]]:
        """Descriptions of other identities' offsets in the state folder that hold a committed
        position of the same slot in the same database (another lake's capture)."""
        out = []
        for meta_path in sorted(self.state_dir.glob(f"{glob_escape(self.name)}.*.json")):
            if meta_path == self.meta_file:
                continue
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if (
                not isinstance(meta, dict)
                or meta.get("slot") != self.slot
                or not self.identity.same_database(meta)
            ):
                continue
            offsets = meta_path.with_name(str(meta.get("offsets") or ""))
            if meta.get("offsets") and read_offset(
                offsets, str(meta.get("engine")), str(meta.get("topic_prefix"))
            ):
                out.append((meta, offsets))
        return out

    # -- messages ------------------------------------------------------------------------------

    def restart_advice(self, slot_exists: bool) -> str:
        drop = f" and drop the slot (SELECT pg_drop_replication_slot('{self.slot}');)" if slot_exists else ""
        return (
            f"to capture {self.identity.dbname} into {self.identity.lake} again from a new snapshot, delete "
            f"{self.file}{drop}, then start the capture (compaction applies the new snapshot as a re-snapshot)"
        )

    def unusable_message(self, why: str, slot_exists: bool) -> str:
        return f"the offsets in {self.file} cannot be resumed: {why}; {self.restart_advice(slot_exists)}"


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


# --------------------------------------------------------------------------------------------
# Kafka's FileOffsetBackingStore file: a Java-serialized HashMap<byte[], byte[]> of JSON texts
# --------------------------------------------------------------------------------------------

_JSON_START = re.compile(rb'[\[{]"')


def read_offsets_file(path: Path) -> list[tuple[object, object]]:
    """The (key, value) JSON pairs of a FileOffsetBackingStore file; [] if there is none.

    Each ``byte[]`` is serialized as its 4-byte big-endian length and the bytes; keys and values
    alternate (``HashMap.writeObject``). Only complete JSON texts of the announced length count."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    texts: list[object] = []
    pos = 0
    while (m := _JSON_START.search(data, pos)) is not None:
        start = m.start()
        if start >= 4:
            length = int.from_bytes(data[start - 4 : start], "big")
            if 0 < length <= len(data) - start:
                try:
                    texts.append(json.loads(data[start : start + length].decode("utf-8")))
                    pos = start + length
                    continue
                except (UnicodeDecodeError, ValueError):
                    pass
        pos = start + 1
    return [(texts[i], texts[i + 1]) for i in range(0, len(texts) - 1, 2)]


def read_offset(path: Path, engine: str, topic_prefix: str) -> dict | None:
    for key, value in read_offsets_file(path):
        if (
            isinstance(key, list)
            and len(key) == 2
            and key[0] == engine
            and isinstance(key[1], dict)
            and key[1].get("server") == topic_prefix
            and isinstance(value, dict)
        ):
            return value
    return None


def parse_lsn(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def offset_position(committed: dict) -> int | None:
    """The furthest WAL position the committed offset speaks for (snapshot ``lsn``, last
    processed ``lsn_proc``, last commit ``lsn_commit``): Debezium never flushes a slot past it."""
    lsns = [v for k, v in committed.items() if k in ("lsn", "lsn_proc", "lsn_commit") and isinstance(v, int)]
    return max(lsns) if lsns else None


def lsn_text(value: object) -> str:
    """Debezium keeps LSNs as 64-bit integers; PostgreSQL shows them as ``X/Y``."""
    if isinstance(value, int):
        return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"
    return str(value)


# --------------------------------------------------------------------------------------------
# the slot, before and after a run
# --------------------------------------------------------------------------------------------


def _slot_state(conn: psycopg.Connection, slot: str) -> SlotState | None:
    row = conn.execute(
        """
        SELECT database, active_pid, restart_lsn::text, confirmed_flush_lsn::text, wal_status
        FROM pg_replication_slots WHERE slot_name = %s""",
        (slot,),
    ).fetchone()
    return SlotState(*row) if row else None


def check_slot(dsn: str, source: Source, offsets: CaptureOffsets) -> SlotCheck:
    """Refuse (one line, :class:`CaptureSetupError`) a start whose offsets and slot disagree."""
    committed = offsets.committed()
    with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
        slot = _slot_state(conn, offsets.slot)
        publication = (
            conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (offsets.publication,)).fetchone()
            is not None
        )
    where = source.describe()
    if slot is not None and slot.database != source.dbname:
        raise CaptureSetupError(
            f"replication slot {offsets.slot} on {where} belongs to database {slot.database!r}, not "
            f"{source.dbname!r}: the engine name {offsets.name!r} is taken there; give this capture its own "
            "--name (the slot is lakehouse_<name>)"
        )
    if committed is not None:
        at = lsn_text(committed.get("lsn_proc", committed.get("lsn")))
        if slot is None:
            raise CaptureSetupError(
                offsets.unusable_message(
                    f"they hold position {at} of replication slot {offsets.slot}, and {where} has no such slot "
                    "(dropped, or the database was restored or re-created)",
                    slot_exists=False,
                )
            )
        position = offset_position(committed)
        if (
            position is not None
            and slot.confirmed_flush_lsn
            and parse_lsn(slot.confirmed_flush_lsn) > position
        ):
            # Debezium would stream on from the slot and skip everything in between (it only
            # compares the slot's restart LSN with a processed change, which a snapshot-only or
            # idle capture does not have)
            raise CaptureSetupError(
                offsets.unusable_message(
                    f"replication slot {offsets.slot} on {where} has confirmed changes up to "
                    f"{slot.confirmed_flush_lsn}, past their position {lsn_text(position)} (the slot was created "
                    f"again, or another consumer read it): the changes in between are not in {offsets.identity.lake}",
                    slot_exists=True,
                )
            )
        if slot.wal_status == "lost":
            raise CaptureSetupError(
                offsets.unusable_message(
                    f"replication slot {offsets.slot} on {where} has lost the WAL after {slot.restart_lsn} "
                    "(max_slot_wal_keep_size)",
                    slot_exists=True,
                )
            )
        return SlotCheck(slot_existed=True, publication_existed=publication)
    if offsets.legacy_file.exists():
        log.warning(
            "%s is an offsets file of an earlier version, not tied to a lake or database: not used "
            "(this capture starts with a snapshot); delete it",
            offsets.legacy_file,
        )
    if slot is not None:
        claims = offsets.other_claims()
        if claims:
            meta, other = claims[0]
            raise CaptureSetupError(
                f"replication slot {offsets.slot} on {where} is the position of the capture into "
                f"{meta.get('lake')} (offsets {other}); a capture into {offsets.identity.lake} needs its own "
                f"slot: give it another --name (the slot is lakehouse_<name>); if {offsets.identity.lake} is "
                f"that lake moved, rename {other} to {offsets.file} and {other.with_suffix('.json')} to "
                f"{offsets.meta_file}"
            )
        log.info(
            "slot %s exists but %s holds no offsets: Debezium takes a new snapshot and streams on from "
            "the slot",
            offsets.slot,
            offsets.file,
        )
    return SlotCheck(slot_existed=slot is not None, publication_existed=publication)


def drop_unused_slot(dsn: str, offsets: CaptureOffsets, check: SlotCheck, timeout: float = 20.0) -> bool:
    """After a run: if this run created the slot and Debezium never committed an offset, nothing
    can resume from it, so drop it (and the publication the run created) instead of leaving it to
    hold WAL. Returns whether it dropped the slot; failures are logged with the statement to run."""
    if check.slot_existed or offsets.committed() is not None:
        return False
    try:
        with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
            deadline = time.monotonic() + timeout
            dropped = False
            while True:
                slot = _slot_state(conn, offsets.slot)
                if slot is None:
                    break
                if slot.active_pid is None:
                    try:
                        conn.execute("SELECT pg_drop_replication_slot(%s)", (offsets.slot,))
                        dropped = True
                        break
                    except psycopg.errors.ObjectInUse:
                        pass  # the walsender attached again for a moment
                if time.monotonic() > deadline:
                    raise TimeoutError(f"slot still in use by pid {slot.active_pid}")
                time.sleep(0.2)
            if not check.publication_existed:
                with contextlib.suppress(psycopg.Error):
                    conn.execute(f'DROP PUBLICATION IF EXISTS "{offsets.publication}"')
    except (psycopg.Error, TimeoutError) as exc:
        log.warning(
            "could not drop replication slot %s that this run created (%s): drop it with "
            "SELECT pg_drop_replication_slot('%s'); it holds WAL",
            offsets.slot,
            exc,
            offsets.slot,
        )
        return False
    if dropped:
        log.info("dropped replication slot %s: this run created it and committed no offset", offsets.slot)
    return dropped
