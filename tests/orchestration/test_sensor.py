"""The lake sensor on a local folder and on S3 (moto's server on loopback): new objects -> one run
request per affected table, restarts with the cursor -> no duplicate runs, unknown topics reported."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from support.lake_copy import copy_companions, keys_by_partition, land_step

from assets.keys import table_key
from assets.raw import lake_sensor
from assets.resources import LakeResource, StateResource
from lakehouse.generate import GeneratorOptions, generate_lake
from lakehouse.lake.reader import LakeReader
from lakehouse.lake.store import LocalStore, open_store


@pytest.fixture(scope="module")
def source_lake(tmp_path_factory) -> Path:
    lake = tmp_path_factory.mktemp("sensor") / "lake"
    generate_lake(lake, GeneratorOptions(events=3_000, seed=12, flush_size=300, partitions=2))
    return lake


class Target:
    """A lake to watch (local folder or S3 bucket) that objects can be landed into."""

    def __init__(self, uri: str, staging: Path):
        self.uri, self.staging = uri, staging
        self.store = open_store(uri)

    def land(self, source: Path, step: int, steps: int) -> None:
        copied = land_step(source, self.staging, step, steps) if step >= 0 else 0
        if not isinstance(self.store, LocalStore) and copied:  # mirror the staging folder to S3
            for path in self.staging.rglob("*"):
                if path.is_file():
                    self.store.put_bytes(path.relative_to(self.staging).as_posix(), path.read_bytes())


@pytest.fixture(params=["local", "s3"])
def target(request, tmp_path, source_lake) -> Target:
    staging = tmp_path / "lake"
    copy_companions(source_lake, staging)
    uri = str(staging) if request.param == "local" else request.getfixturevalue("moto_s3")("lake")
    return Target(uri, staging)


def tick(target: Target, cursor: str | None, instance: dg.DagsterInstance) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            "lake": LakeResource(uri=target.uri),
            "state": StateResource(uri=str(target.staging.parent / "state")),
        },
    )
    result = lake_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def requested(result: dg.SensorResult) -> dict[str, dg.RunRequest]:
    return {r.tags["lakehouse/table"]: r for r in result.run_requests or []}


def test_new_objects_request_exactly_the_affected_tables(target, source_lake):
    instance = dg.DagsterInstance.ephemeral()
    first = tick(target, None, instance)  # empty lake (companions only)
    assert not first.run_requests and first.skip_reason

    target.land(source_lake, 0, 2)
    second = tick(target, first.cursor, instance)
    tables = requested(second)
    landed_topics = LakeReader(str(target.staging)).scan().topics
    assert len(landed_topics) >= 3
    assert set(tables) == {t.split(".", 1)[1] for t in landed_topics}  # eco2.<schema>.<table>
    for table, request in tables.items():
        assert request.asset_selection == [table_key("current_state", table)]
    assert {e.asset_key for e in second.asset_events} == {table_key("raw", t) for t in tables}

    idle = tick(target, second.cursor, instance)
    assert not idle.run_requests and "no new objects" in idle.skip_reason.skip_message

    # only the feedback topic gets new objects
    fb = [
        k
        for (topic, _), keys in keys_by_partition(source_lake).items()
        if topic == "eco2.scan.feedback"
        for k in keys
    ]
    landed = [k for k in fb if not (target.staging / k).exists()][:3]
    for k in landed:
        (target.staging / k).parent.mkdir(parents=True, exist_ok=True)
        (target.staging / k).write_bytes((source_lake / k).read_bytes())
        if not isinstance(target.store, LocalStore):
            target.store.put_bytes(k, (source_lake / k).read_bytes())
    third = tick(target, idle.cursor, instance)
    assert list(requested(third)) == ["scan.feedback"]
    assert third.asset_events[0].metadata["new_objects"].value == len(landed)

    # a restart re-evaluates from the stored cursor: nothing is requested twice
    assert not tick(target, third.cursor, instance).run_requests
    # and the same objects always make the same run key (Dagster drops a repeated key)
    assert (
        requested(tick(target, idle.cursor, instance))["scan.feedback"].run_key
        == requested(third)["scan.feedback"].run_key
    )


def test_unknown_topics_are_reported_not_run(target, source_lake, capfd):
    instance = dg.DagsterInstance.ephemeral()
    target.land(source_lake, 0, 1)
    cursor = tick(target, None, instance).cursor
    stray = "topics/eco2.billing.invoices/partition=0/eco2.billing.invoices+0+0000000000.snappy.parquet"
    (target.staging / stray).parent.mkdir(parents=True, exist_ok=True)
    (target.staging / stray).write_bytes(b"x")
    if not isinstance(target.store, LocalStore):
        target.store.put_bytes(stray, b"x")
    result = tick(target, cursor, instance)
    assert not result.run_requests
    assert "eco2.billing.invoices" in result.skip_reason.skip_message
    assert "lakehouse discover" in capfd.readouterr().err  # the sensor log, on the tick


def test_new_objects_coalesce_into_a_run_still_queued_for_the_table(target, source_lake):
    instance = dg.DagsterInstance.ephemeral()
    target.land(source_lake, 0, 2)
    first = tick(target, None, instance)
    queued = {t: r for t, r in requested(first).items()}
    # the run for scan.scans has not started yet (e.g. waiting behind a long one); the others finished
    instance.add_run(
        dg.DagsterRun(
            job_name="compact_tables",
            run_id="waiting-scans",
            status=dg.DagsterRunStatus.NOT_STARTED,
            tags=queued["scan.scans"].tags,
        )
    )
    target.land(source_lake, 1, 2)
    second = tick(target, first.cursor, instance)
    with_news = {e.asset_key.path[1] + "." + e.asset_key.path[2] for e in second.asset_events}
    assert "scan.scans" in with_news
    # the waiting run lists the topic when it starts, so it applies these objects too
    assert set(requested(second)) == with_news - {"scan.scans"} != set()
