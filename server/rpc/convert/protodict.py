"""Protobuf messages as the dicts MessageToDict makes, at a fraction of its cost.

The run details and Firebird health are stored (and judged, server/domain/details.py)
in this JSON form: 64-bit integers as strings, enums by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor


def scalar_dict_converter(descriptor: Any) -> Any:
    """A fast stand-in for MessageToDict(msg, preserving_proto_field_name=True,
    always_print_fields_with_no_presence=True), for messages of plain scalar fields.

    Gives the same dict, keys in the same order: set fields by field number, then
    the unset ones in declaration order; 64-bit integers as strings. For any other
    kind of message it is MessageToDict itself.
    """
    fd = FieldDescriptor
    as_str = {fd.TYPE_INT64, fd.TYPE_UINT64, fd.TYPE_SINT64, fd.TYPE_FIXED64, fd.TYPE_SFIXED64}
    plain = {fd.TYPE_INT32, fd.TYPE_UINT32, fd.TYPE_SINT32, fd.TYPE_FIXED32, fd.TYPE_SFIXED32}
    plain |= {fd.TYPE_BOOL, fd.TYPE_STRING}
    fields = list(descriptor.fields)
    simple = bool(fields) and all(
        (f.type in as_str or f.type in plain) and not f.has_presence and not f.is_repeated
        for f in fields
    )
    if not simple:

        def slow(msg: Any) -> dict[str, Any]:
            out: dict[str, Any] = json_format.MessageToDict(
                msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
            )
            return out

        return slow
    by_number = sorted(fields, key=lambda f: f.number)
    spec = [(f.name, f.type in as_str) for f in by_number]
    declared = [f.name for f in fields]

    def fast(msg: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, stringify in spec:
            value = getattr(msg, name)
            if value:
                out[name] = str(value) if stringify else value
        if len(out) < len(declared):
            for name in declared:
                if name not in out:
                    value = getattr(msg, name)
                    out[name] = str(value) if name in stringified else value
        return out

    stringified = {name for name, s in spec if s}
    return fast


_INT64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}
_FLOATS = {FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT}


def message_dict(msg: Any) -> dict[str, Any]:
    """MessageToDict(msg, preserving_proto_field_name=True) for the run details messages,
    at a fraction of its cost (it walks descriptors in Python for every call).

    Handles scalars, enums, nested messages, repeated fields and maps with scalar
    values, through converters made once per message type; a message with anything
    else set (bytes, floats, doubles that are not finite, well-known types) goes to
    MessageToDict itself, so the result is always the same dict.
    """
    plan = _PLANS.get(msg.DESCRIPTOR.full_name)
    if plan is None:
        plan = _PLANS[msg.DESCRIPTOR.full_name] = {
            f.number: _field_converter(f) for f in msg.DESCRIPTOR.fields
        }
    out: dict[str, Any] = {}
    for field, value in msg.ListFields():
        converted = plan[field.number](value)
        if converted is _SLOW:
            return _slow_dict(msg)
        out[field.name] = converted
    return out


_SLOW = object()
Convert = Callable[[Any], Any]
_PLANS: dict[str, dict[int, Convert]] = {}


def _slow_dict(msg: Any) -> dict[str, Any]:
    out: dict[str, Any] = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    return out


def _field_converter(field: Any) -> Convert:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value_field = field.message_type.fields_by_name["value"]
        if value_field.message_type is not None:
            return _to_slow
        one = _single_converter(value_field)
        return lambda m: _or_slow({str(k): one(v) for k, v in m.items()})
    one = _single_converter(field)
    if field.is_repeated:
        return lambda items: _or_slow([one(v) for v in items])
    return one


def _or_slow(converted: Any) -> Any:
    values = converted.values() if isinstance(converted, dict) else converted
    return _SLOW if any(v is _SLOW for v in values) else converted


def _single_converter(field: Any) -> Convert:
    t = field.type
    if t == FieldDescriptor.TYPE_MESSAGE:
        if field.message_type.full_name.startswith("google.protobuf."):
            return _to_slow
        return message_dict
    if t in _INT64:
        return str
    if t == FieldDescriptor.TYPE_ENUM:
        names = {v.number: v.name for v in field.enum_type.values}
        return lambda v: names.get(v, v)
    if t == FieldDescriptor.TYPE_DOUBLE:
        return lambda v: float(v) if math.isfinite(v) else _SLOW
    if t in {FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_BYTES, FieldDescriptor.TYPE_GROUP}:
        return _to_slow
    return _same


def _same(value: Any) -> Any:
    return value


def _to_slow(_value: Any) -> Any:
    return _SLOW
