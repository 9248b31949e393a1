"""Column lifetimes (lakehouse.state.columns): the timeline rules on their own, across runs and
out of order. The same rules on real PostgreSQL and Debezium: tests/test_truth.py."""

from __future__ import annotations

import pyarrow as pa
import pytest

from lakehouse.lake.reader import SchemaConflictError
from lakehouse.lake.semantic import DEFAULT_META, encode_value, field_default
from lakehouse.state.columns import DEFAULT, NULL, ObjectColumns, lives_of, walk

KEY = ("id",)


def col(name: str, type_: pa.DataType = pa.int32(), default=None) -> pa.Field:
    meta = {DEFAULT_META: encode_value(pa.array([default], type_))} if default is not None else None
    return pa.field(name, type_, metadata=meta)


def obj(key: str, time: int, *fields: pa.Field) -> ObjectColumns:
    return ObjectColumns(key, time, [col("id"), *fields])


def resume(timeline, keep: bool = False):
    """The lifetimes a state would record after this walk (what the next run starts from)."""
    return lives_of(pa.schema(timeline.row_fields(keep)), timeline.dropped(keep))


def test_added_column_defaults_older_objects_and_keeps_its_first_default():
    t = walk(
        "t", {}, [obj("a", 10), obj("b", 20, col("c", default=42)), obj("c", 30, col("c", default=7))], KEY
    )
    assert t.fills == {"a": {"c": DEFAULT}}
    assert t.started == ["c"]
    assert field_default(t.lives["c"].field).to_pylist() == [42]  # SET DEFAULT later changes nothing
    # the next run: an old object (a replay) still reads the first default
    again = walk("t", resume(t), [obj("old", 5)], KEY)
    assert again.fills == {"old": {"c": DEFAULT}} and again.started == []


def test_drop_then_add_again_is_a_new_column_even_with_another_type():
    first = walk("t", {}, [obj("a", 10, col("c")), obj("b", 20)], KEY)
    assert not first.lives["c"].alive and [f.name for f in first.row_fields(False)] == ["id"]
    kept = [f.name for f in first.row_fields(True)]
    assert kept == ["id", "c"] and first.fills["b"] == {"c": NULL}
    second = walk(
        "t", resume(first), [obj("c", 30, col("c", pa.string(), default="x")), obj("a2", 12, col("c"))], KEY
    )
    assert second.started == ["c"] and second.lives["c"].field.type == pa.string()
    assert second.fills == {"a2": {"c": DEFAULT}}  # the old column's object: its values never come back
    assert second.resets()["c"].to_pylist() == ["x"]


def test_objects_of_other_partitions_arriving_later_and_older_extend_the_column():
    first = walk("t", {}, [obj("p0-late", 50, col("c"))], KEY)
    second = walk("t", resume(first), [obj("p1-early", 20, col("c")), obj("p1-before", 10)], KEY)
    assert second.lives["c"].alive and second.lives["c"].since == 20
    assert second.fills == {"p1-before": {"c": DEFAULT}} and second.started == []


def test_widening_is_promoted_and_an_incompatible_change_names_the_object():
    t = walk("t", {}, [obj("a", 10, col("c", pa.int32())), obj("b", 20, col("c", pa.int64()))], KEY)
    assert t.lives["c"].field.type == pa.int64()
    with pytest.raises(SchemaConflictError) as err:
        walk("t", resume(t), [obj("bad", 30, col("c", pa.string()))], KEY)
    assert (err.value.key, err.value.column, err.value.old, err.value.new) == (
        "bad",
        "c",
        pa.int64(),
        pa.string(),
    )
