"""Kafka Connect schemas, as they survive in the lake.

The S3 sink keeps the Connect value schema in two places: the ``parquet.avro.schema`` footer of
Parquet objects (Avro JSON with ``connect.*`` properties, written by Confluent's AvroData) and the
``schema`` half of JSON lines written with embedded schemas (Connect's JsonConverter format). Both
are parsed into one model, :class:`ConnectSchema`, so semantic decoding happens once
(spec lake-format.md §4.2–§4.4).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

# Connect logical types that AvroData maps to Avro logical types (spec §4.3).
DECIMAL = "org.apache.kafka.connect.data.Decimal"
CONNECT_DATE = "org.apache.kafka.connect.data.Date"
CONNECT_TIME = "org.apache.kafka.connect.data.Time"
CONNECT_TIMESTAMP = "org.apache.kafka.connect.data.Timestamp"

PRIMITIVES = {"int8", "int16", "int32", "int64", "float32", "float64", "boolean", "string", "bytes"}


class SchemaParseError(ValueError):
    """A schema in a footer or a JSON line that is not a Connect schema we understand."""


@dataclass(frozen=True)
class ConnectSchema:
    """One Connect schema node (struct, array, map or primitive)."""

    type: str  # int8..int64, float32, float64, boolean, string, bytes, struct, array, map
    name: str | None = None
    version: int | None = None
    parameters: tuple[tuple[str, str], ...] = ()
    optional: bool = False
    default: Any = None
    fields: tuple[ConnectField, ...] = ()
    items: ConnectSchema | None = None  # array element
    keys: ConnectSchema | None = None  # map key
    values: ConnectSchema | None = None  # map value

    @property
    def params(self) -> dict[str, str]:
        return dict(self.parameters)

    def field(self, name: str) -> ConnectField | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    # -- conversions -------------------------------------------------------------------------

    def to_connect_json(self) -> dict[str, Any]:
        """Connect JsonConverter schema form (what ``schemas.enable=true`` embeds)."""
        out: dict[str, Any] = {"type": self.type}
        if self.type == "struct":
            out["fields"] = [dict(f.schema.to_connect_json(), field=f.name) for f in self.fields]
        elif self.type == "array":
            assert self.items is not None  # an array has its element schema
            out["items"] = self.items.to_connect_json()
        elif self.type == "map":
            assert self.keys is not None and self.values is not None  # a map has both
            out["keys"] = self.keys.to_connect_json()
            out["values"] = self.values.to_connect_json()
        out["optional"] = self.optional
        if self.default is not None:
            out["default"] = (
                base64.b64encode(self.default).decode("ascii")
                if isinstance(self.default, bytes)
                else self.default
            )
        if self.name:
            out["name"] = self.name
        if self.version is not None:
            out["version"] = self.version
        if self.parameters:
            out["parameters"] = dict(self.parameters)
        return out

    def to_avro(self, namespace_hint: str | None = None, _seen: set[str] | None = None) -> Any:
        """Avro schema as Confluent's AvroData writes it (with ``connect.*`` properties).

        Optional fields become ``["null", X]`` (or ``[X, "null"]`` when a default exists) at the
        *field* level; this method returns the non-optional branch.
        """
        seen = set() if _seen is None else _seen
        props: dict[str, Any] = {}
        if self.version is not None:
            props["connect.version"] = self.version
        if self.parameters and self.name != DECIMAL:
            props["connect.parameters"] = dict(self.parameters)
        if self.default is not None:
            props["connect.default"] = self._avro_default()
        if self.name:
            props["connect.name"] = self.name
        if self.type == "struct":
            full = self.name or "io.confluent.connect.avro.ConnectDefault"
            if full in seen:  # Avro refers to a record's second occurrence by name
                return (
                    full.rsplit(".", 1)[-1]
                    if namespace_hint and full.startswith(namespace_hint + ".")
                    else full
                )
            seen.add(full)
            ns, _, short = full.rpartition(".")
            fields = []
            for f in self.fields:
                ftype = f.schema.to_avro(ns or namespace_hint, seen)
                entry: dict[str, Any] = {"name": f.name}
                if f.schema.optional:
                    if f.schema.default is not None:
                        entry["type"] = [ftype, "null"]
                        entry["default"] = f.schema._avro_default()
                    else:
                        entry["type"] = ["null", ftype]
                        entry["default"] = None
                else:
                    entry["type"] = ftype
                    if f.schema.default is not None:
                        entry["default"] = f.schema._avro_default()
                fields.append(entry)
            rec: dict[str, Any] = {"type": "record", "name": short}
            if ns and ns != namespace_hint:
                rec["namespace"] = ns
            rec["fields"] = fields
            rec.update(props)
            return rec
        if self.type == "array":
            assert self.items is not None
            item = self.items.to_avro(namespace_hint, seen)
            if self.items.optional:
                item = ["null", item]
            return {"type": "array", "items": item, **props}
        if self.type == "map":
            assert self.values is not None
            val = self.values.to_avro(namespace_hint, seen)
            if self.values.optional:
                val = ["null", val]
            return {"type": "map", "values": val, **props}
        base = {
            "int8": "int",
            "int16": "int",
            "int32": "int",
            "int64": "long",
            "float32": "float",
            "float64": "double",
            "boolean": "boolean",
            "string": "string",
            "bytes": "bytes",
        }[self.type]
        if self.type in ("int8", "int16"):
            props["connect.type"] = self.type
        if self.name == DECIMAL:
            scale = int(self.params.get("scale", "0"))
            precision = int(self.params.get("connect.decimal.precision", "64"))
            if scale < 0 or scale > precision:  # no decimal logical type possible: legacy props only
                out = {
                    "type": "bytes",
                    "connect.version": self.version or 1,
                    "connect.parameters": dict(self.parameters),
                    "connect.name": DECIMAL,
                }
                if self.default is not None:
                    out["connect.default"] = self._avro_default()
                return out
            out = {
                "type": "bytes",
                "scale": scale,
                "precision": precision,
                "connect.version": self.version or 1,
                "connect.parameters": dict(self.parameters),
                "connect.name": DECIMAL,
                "logicalType": "decimal",
            }
            if self.default is not None:
                out["connect.default"] = self._avro_default()
            return out
        if self.name == CONNECT_DATE:
            return {"type": "int", **props, "logicalType": "date"}
        if self.name == CONNECT_TIME:
            return {"type": "int", **props, "logicalType": "time-millis"}
        if self.name == CONNECT_TIMESTAMP:
            return {"type": "long", **props, "logicalType": "timestamp-millis"}
        return {"type": base, **props} if props else base

    def _avro_default(self) -> Any:
        # Avro JSON writes bytes as a string of code points 0-255
        return self.default.decode("latin-1") if isinstance(self.default, bytes) else self.default

    def physical_arrow_type(self) -> pa.DataType:
        """The Arrow type pyarrow gives when reading what parquet-avro wrote for this schema."""
        t = self.type
        if t == "struct":
            return pa.struct(
                [pa.field(f.name, f.schema.physical_arrow_type(), f.schema.optional) for f in self.fields]
            )
        if t == "array":
            assert self.items is not None
            return pa.list_(pa.field("element", self.items.physical_arrow_type(), self.items.optional))
        if t == "map":
            assert self.keys is not None and self.values is not None
            return pa.map_(
                self.keys.physical_arrow_type(),
                pa.field("value", self.values.physical_arrow_type(), self.values.optional),
            )
        if self.name == DECIMAL:
            scale = int(self.params.get("scale", "0"))
            precision = int(self.params.get("connect.decimal.precision", "64"))
            if scale < 0 or scale > precision:  # AvroData writes plain bytes (legacy form)
                return pa.binary()
            if precision <= 38:
                return pa.decimal128(precision, scale)
            return pa.decimal256(min(precision, 76), scale)
        if self.name == CONNECT_DATE:
            return pa.date32()
        if self.name == CONNECT_TIME:
            return pa.time32("ms")
        if self.name == CONNECT_TIMESTAMP:
            return pa.timestamp("ms", tz="UTC")
        return {
            "int8": pa.int32(),
            "int16": pa.int32(),
            "int32": pa.int32(),
            "int64": pa.int64(),
            "float32": pa.float32(),
            "float64": pa.float64(),
            "boolean": pa.bool_(),
            "string": pa.string(),
            "bytes": pa.binary(),
        }[t]

    def fingerprint(self) -> str:
        return json.dumps(self.to_connect_json(), sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class ConnectField:
    name: str
    schema: ConnectSchema


def struct(
    name: str | None,
    fields: list[tuple[str, ConnectSchema]],
    *,
    optional: bool = False,
    version: int | None = None,
) -> ConnectSchema:
    return ConnectSchema(
        "struct",
        name=name,
        version=version,
        optional=optional,
        fields=tuple(ConnectField(n, s) for n, s in fields),
    )


# --------------------------------------------------------------------------------------------
# Parsing Avro (parquet.avro.schema footer)
# --------------------------------------------------------------------------------------------

_AVRO_PRIMITIVE = {
    "int": "int32",
    "long": "int64",
    "float": "float32",
    "double": "float64",
    "boolean": "boolean",
    "string": "string",
    "bytes": "bytes",
}


def parse_avro_schema(text: str | dict) -> ConnectSchema:
    """Parse the Avro JSON that AvroData wrote into a :class:`ConnectSchema`."""
    doc = json.loads(text) if isinstance(text, str) else text
    named: dict[str, Any] = {}
    return _from_avro(doc, None, named, optional=False, field_default=None)


def _from_avro(
    node: Any, namespace: str | None, named: dict[str, Any], *, optional: bool, field_default: Any
) -> ConnectSchema:
    if isinstance(node, list):  # union: AvroData only writes [null, X] or [X, null]
        branches = [b for b in node if b != "null"]
        if len(branches) != 1:
            raise SchemaParseError(f"unsupported Avro union {json.dumps(node)[:200]}")
        return _from_avro(branches[0], namespace, named, optional=True, field_default=field_default)
    if isinstance(node, str):
        if node in _AVRO_PRIMITIVE:
            default = _latin1_bytes(field_default) if node == "bytes" else field_default
            return ConnectSchema(_AVRO_PRIMITIVE[node], optional=optional, default=default)
        full = node if "." in node or namespace is None else f"{namespace}.{node}"
        ref = named.get(full) or named.get(node)
        if ref is None:
            raise SchemaParseError(f"Avro schema refers to unknown type {node!r}")
        return _replace(ref, optional=optional, default=field_default)
    if not isinstance(node, dict) or "type" not in node:
        raise SchemaParseError(f"not an Avro schema node: {str(node)[:200]}")
    avro_type = node["type"]
    name = node.get("connect.name")
    version = node.get("connect.version")
    params = tuple((node.get("connect.parameters") or {}).items())  # AvroData keeps insertion order
    default = node.get("connect.default", field_default)
    if isinstance(avro_type, (dict, list)):
        return _from_avro(avro_type, namespace, named, optional=optional, field_default=field_default)
    if avro_type == "record":
        ns = node.get("namespace", namespace)
        full = node["name"] if "." in node["name"] or not ns else f"{ns}.{node['name']}"
        fields = []
        placeholder = ConnectSchema("struct", name=name or full)
        named[full] = placeholder
        for f in node["fields"]:
            fields.append(
                ConnectField(
                    f["name"],
                    _from_avro(f["type"], ns, named, optional=False, field_default=f.get("default")),
                )
            )
        schema = ConnectSchema(
            "struct",
            name=name or (None if full.startswith("io.confluent.connect.avro.ConnectDefault") else full),
            version=version,
            optional=optional,
            fields=tuple(fields),
        )
        named[full] = _replace(schema, optional=False, default=None)
        return schema
    if avro_type == "array":
        return ConnectSchema(
            "array",
            name=name,
            version=version,
            parameters=params,
            optional=optional,
            default=default,
            items=_from_avro(node["items"], namespace, named, optional=False, field_default=None),
        )
    if avro_type == "map":
        return ConnectSchema(
            "map",
            name=name,
            version=version,
            parameters=params,
            optional=optional,
            default=default,
            keys=ConnectSchema("string"),
            values=_from_avro(node["values"], namespace, named, optional=False, field_default=None),
        )
    if avro_type in ("enum",):
        return ConnectSchema("string", name=name, optional=optional, default=default)
    if avro_type == "fixed":
        return ConnectSchema("bytes", name=name, optional=optional, default=_latin1_bytes(default))
    if avro_type == "bytes":
        default = _latin1_bytes(default)
    if avro_type in _AVRO_PRIMITIVE:
        ctype = node.get("connect.type") or _AVRO_PRIMITIVE[avro_type]
        logical = node.get("logicalType")
        if logical == "decimal" and name is None:
            name = DECIMAL
            params = tuple(
                {
                    "scale": str(node.get("scale", 0)),
                    "connect.decimal.precision": str(node.get("precision", 64)),
                }.items()
            )
        elif logical == "date" and name is None:
            name = CONNECT_DATE
        elif logical == "time-millis" and name is None:
            name = CONNECT_TIME
        elif logical == "timestamp-millis" and name is None:
            name = CONNECT_TIMESTAMP
        return ConnectSchema(
            ctype, name=name, version=version, parameters=params, optional=optional, default=default
        )
    raise SchemaParseError(f"unsupported Avro type {avro_type!r}")


def _latin1_bytes(default: Any) -> Any:
    """Avro JSON defaults of bytes are strings of code points 0-255 (one per byte)."""
    if isinstance(default, str):
        try:
            return default.encode("latin-1")
        except UnicodeEncodeError:
            return None  # not an Avro bytes default: unknown
    return default


def _replace(s: ConnectSchema, **changes: Any) -> ConnectSchema:
    from dataclasses import replace

    return replace(s, **changes)


# --------------------------------------------------------------------------------------------
# Parsing Connect JSON schemas (JsonConverter with schemas.enable=true)
# --------------------------------------------------------------------------------------------


def parse_connect_json_schema(doc: dict[str, Any]) -> ConnectSchema:
    if not isinstance(doc, dict) or "type" not in doc:
        raise SchemaParseError(f"not a Connect JSON schema: {str(doc)[:200]}")
    t = doc["type"]
    common: dict[str, Any] = dict(
        name=doc.get("name"),
        version=doc.get("version"),
        parameters=tuple((doc.get("parameters") or {}).items()),
        optional=bool(doc.get("optional", False)),
        default=doc.get("default"),
    )
    if t == "struct":
        return ConnectSchema(
            "struct",
            fields=tuple(
                ConnectField(f["field"], parse_connect_json_schema(f)) for f in doc.get("fields", [])
            ),
            **common,
        )
    if t == "array":
        return ConnectSchema("array", items=parse_connect_json_schema(doc["items"]), **common)
    if t == "map":
        return ConnectSchema(
            "map",
            keys=parse_connect_json_schema(doc["keys"]),
            values=parse_connect_json_schema(doc["values"]),
            **common,
        )
    if t in PRIMITIVES:
        if t == "bytes" and isinstance(common["default"], str):  # JsonConverter writes bytes as base64
            try:
                common["default"] = base64.b64decode(common["default"], validate=True)
            except (binascii.Error, ValueError):
                common["default"] = None
        return ConnectSchema(t, **common)
    raise SchemaParseError(f"unsupported Connect schema type {t!r}")


def avro_schema_json(schema: ConnectSchema) -> str:
    return json.dumps(schema.to_avro(), separators=(",", ":"), ensure_ascii=False)


__all__ = [
    "ConnectField",
    "ConnectSchema",
    "SchemaParseError",
    "avro_schema_json",
    "parse_avro_schema",
    "parse_connect_json_schema",
    "struct",
]
