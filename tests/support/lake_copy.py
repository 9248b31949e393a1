"""Land a generated lake's objects into another lake step by step (as the S3 sink would, later)."""

from __future__ import annotations

import shutil
from pathlib import Path

from lakehouse.lake.reader import LakeReader


def value_keys(lake: Path) -> list[str]:
    listing = LakeReader(str(lake)).scan()
    return [o.key for objs in listing.objects.values() for o in objs]


def keys_by_partition(lake: Path) -> dict[tuple[str, int], list[str]]:
    """Value-file keys per (topic, Kafka partition), in Kafka order."""
    out: dict[tuple[str, int], list[str]] = {}
    for objs in LakeReader(str(lake)).scan().objects.values():
        for o in sorted(objs, key=lambda o: o.ref):
            out.setdefault((o.ref.topic, o.ref.kafka_partition), []).append(o.key)
    return out


def copy_objects(src: Path, dst: Path, keys: list[str]) -> None:
    for k in keys:
        (dst / k).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / k, dst / k)


def copy_companions(src: Path, dst: Path) -> None:
    values = set(value_keys(src))
    for path in src.rglob("*"):
        rel = path.relative_to(src).as_posix()
        if path.is_file() and rel not in values:
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dst / rel)


def land_step(src: Path, dst: Path, step: int, steps: int) -> int:
    """Copy every partition's ``step``-th of ``steps`` slices of objects; returns objects copied."""
    n_copied = 0
    for keys in keys_by_partition(src).values():
        n = len(keys)
        part = keys[step * n // steps : (step + 1) * n // steps]
        copy_objects(src, dst, part)
        n_copied += len(part)
    return n_copied
