"""The lake watcher behind the sensor: exactly the new objects, without re-listing the lake,
on a local folder and on S3 (moto's server on loopback)."""

from __future__ import annotations

import pytest

from lakehouse.lake.store import LocalStore, open_store
from lakehouse.lake.watch import WatchCursor, watch

T = "eco2.scan.scans"
U = "eco2.scan.feedback"


def key(topic: str, partition: int, offset: int, folder: str | None = None) -> str:
    folder = folder if folder is not None else f"partition={partition}"
    return f"topics/{topic}/{folder}/{topic}+{partition}+{offset:010d}.snappy.parquet"


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "lake")
    return open_store(request.getfixturevalue("moto_s3")("lake"))


def put(store, *keys: str) -> None:
    for k in keys:
        store.put_bytes(k, b"x")  # the watcher never reads contents


def news(result) -> set[str]:
    return {o.key for objs in result.new.values() for o in objs}


def roundtrip(cursor: WatchCursor) -> WatchCursor:
    restored = WatchCursor.from_json(cursor.to_json())  # what Dagster stores between ticks
    assert restored is not None
    return restored


def test_first_tick_sees_everything_then_only_what_lands(store):
    first = [key(T, p, o) for p in (0, 1) for o in (0, 100, 200)] + [key(U, 0, 0)]
    put(
        store,
        *first,
        f"topics/{T}/partition=0/{T}+0+0000000000.keys.avro",  # a companion: not news
        "topics/__debezium-heartbeat.eco2/partition=0/__debezium-heartbeat.eco2+0+0000000000.snappy.parquet",
    )
    r1 = watch(store, None, now=1000.0)
    assert r1.full_listing and news(r1) == set(first)
    assert r1.topics == [U, T]  # heartbeat topics are not tables

    r2 = watch(store, roundtrip(r1.cursor), now=1010.0)
    assert not r2.full_listing and not r2.new
    assert r2.listed == 0  # StartAfter the newest key of each folder: nothing comes back

    landed = [key(T, 0, 300), key(T, 1, 300), key(T, 2, 0), key(U, 0, 50)]  # partition 2 is a new folder
    put(store, *landed)
    r3 = watch(store, roundtrip(r2.cursor), now=1020.0)
    assert news(r3) == set(landed)
    assert r3.listed == len(landed)  # only the new objects were listed
    assert watch(store, roundtrip(r3.cursor), now=1030.0).new == {}  # a restart with the cursor: no repeats


def test_time_based_folders_with_several_partitions(store):
    hour = "year=2026/month=11/day=23/hour={:02d}"
    put(store, key(T, 0, 0, hour.format(8)), key(T, 1, 0, hour.format(8)), key(T, 0, 10, hour.format(9)))
    r1 = watch(store, None, now=0.0)
    # partition 1 writes again in hour 08 (behind partition 0's newest key), partition 0 in hour 09
    landed = [key(T, 1, 5, hour.format(8)), key(T, 0, 20, hour.format(9)), key(T, 1, 30, hour.format(10))]
    put(store, *landed)
    r2 = watch(store, roundtrip(r1.cursor), now=10.0)
    assert news(r2) == set(landed)


def test_an_object_behind_the_marks_is_found_by_the_periodic_full_listing(store):
    put(store, key(T, 0, 100), key(T, 0, 200))
    r1 = watch(store, None, full_listing_every=3600, now=0.0)
    put(store, key(T, 0, 150))  # a late object sorting before the mark
    r2 = watch(store, roundtrip(r1.cursor), full_listing_every=3600, now=60.0)
    assert not r2.full_listing and not r2.new  # the cheap listing cannot see it
    r3 = watch(store, roundtrip(r2.cursor), full_listing_every=3600, now=3700.0)
    assert r3.full_listing
    assert T in r3.behind and "3 objects" in r3.behind[T]


def test_offsets_longer_than_the_padding_list_the_folder_whole(store):
    put(store, key(T, 0, 9_999_999_990))
    r1 = watch(store, None, now=0.0)
    later = f"topics/{T}/partition=0/{T}+0+10000000010.snappy.parquet"  # 11 digits: sorts before the mark
    put(store, later)
    r2 = watch(store, roundtrip(r1.cursor), now=1.0)
    assert news(r2) == {later}


def test_unparsable_keys_are_news_so_the_compactor_can_name_them(store):
    put(store, key(T, 0, 0))
    r1 = watch(store, None, now=0.0)
    odd = f"topics/{T}/partition=0/not-a-sink-file.parquet"
    put(store, odd)
    r2 = watch(store, roundtrip(r1.cursor), now=1.0)
    assert news(r2) == {odd}
    assert watch(store, roundtrip(r2.cursor), now=2.0).new == {}


def test_a_cursor_from_another_format_starts_over():
    assert WatchCursor.from_json('{"v": 99}') is None
    assert WatchCursor.from_json(None) is None
