"""Hypothesis strategies for hostile protobuf input: random bytes, bit-flipped and cut
copies of valid messages, and structurally valid messages with random field values."""

from __future__ import annotations

from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import strategies as st

_FD = FieldDescriptor
_INT_RANGES = {
    _FD.TYPE_INT32: (-(2**31), 2**31 - 1),
    _FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    _FD.TYPE_UINT32: (0, 2**32 - 1),
    _FD.TYPE_FIXED32: (0, 2**32 - 1),
    _FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    _FD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    _FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    _FD.TYPE_UINT64: (0, 2**64 - 1),
    _FD.TYPE_FIXED64: (0, 2**64 - 1),
}
NASTY_TEXT = [
    "",
    "../../etc/passwd",
    "C:\\Windows\\system32",
    "\x00",
    "pos\x00evil",
    "\x1b[31m",
    "x" * 5000,
    "NaN",
    "-1",
    "18446744073709551615",
    "default",
]


def integers_of(field: FieldDescriptor) -> st.SearchStrategy[int]:
    low, high = _INT_RANGES[field.type]
    edges = [v for v in (low, high, -1, 0, 1, 2**31 - 1, 2**31, 2**53) if low <= v <= high]
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


def scalar(field: FieldDescriptor, texts: list[str]) -> st.SearchStrategy[Any]:
    t = field.type
    if t in _INT_RANGES:
        return integers_of(field)
    if t == _FD.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-(2**31), 2**31 - 1))
    if t in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
        return st.floats(width=64 if t == _FD.TYPE_DOUBLE else 32)
    if t == _FD.TYPE_BOOL:
        return st.booleans()
    if t == _FD.TYPE_BYTES:
        return st.binary(max_size=64)
    return st.one_of(
        st.sampled_from(texts),
        st.text(st.characters(exclude_categories=("Cs",)), max_size=80),
    )


def messages(descriptor: Descriptor, *, texts: list[str] = NASTY_TEXT, depth: int = 4) -> Any:
    """Messages of `descriptor`'s type with random values in random fields (nested
    messages down to `depth`, up to 3 entries in repeated fields and maps)."""
    cls = message_factory.GetMessageClass(descriptor)

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        msg = cls()
        for field in descriptor.fields:
            if not draw(st.booleans()):
                continue
            _fill(draw, msg, field, texts, depth)
        return msg

    return build()


def _fill(draw: st.DrawFn, msg: Any, field: FieldDescriptor, texts: list[str], depth: int) -> None:
    target = field.message_type
    if target is not None and target.GetOptions().map_entry:
        key_f, value_f = target.fields_by_name["key"], target.fields_by_name["value"]
        for _ in range(draw(st.integers(0, 3))):
            key = draw(scalar(key_f, texts))
            if value_f.message_type is not None:
                if depth > 0:
                    getattr(msg, field.name)[key].CopyFrom(
                        draw(messages(value_f.message_type, texts=texts, depth=depth - 1))
                    )
            else:
                getattr(msg, field.name)[key] = draw(scalar(value_f, texts))
        return
    if field.is_repeated:
        for _ in range(draw(st.integers(0, 3))):
            if target is not None:
                if depth > 0:
                    getattr(msg, field.name).add().CopyFrom(
                        draw(messages(target, texts=texts, depth=depth - 1))
                    )
            else:
                getattr(msg, field.name).append(draw(scalar(field, texts)))
        return
    if target is not None:
        if depth > 0:
            getattr(msg, field.name).CopyFrom(draw(messages(target, texts=texts, depth=depth - 1)))
        return
    setattr(msg, field.name, draw(scalar(field, texts)))


def mutated(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    """Valid serialized messages with a few bits flipped, or cut short."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        seed = bytearray(draw(st.sampled_from(seeds)))
        if not seed:
            return bytes(seed)
        if draw(st.booleans()):
            return bytes(seed[: draw(st.integers(0, len(seed) - 1))])
        for bit in draw(st.lists(st.integers(0, len(seed) * 8 - 1), min_size=1, max_size=4)):
            seed[bit // 8] ^= 1 << (bit % 8)
        return bytes(seed)

    return build()


def hostile_bytes(descriptor: Descriptor, seeds: list[bytes], texts: list[str]) -> Any:
    """Random bytes, mutated seeds, and serialized random messages of the type."""
    return st.one_of(
        st.binary(max_size=256),
        mutated(seeds),
        messages(descriptor, texts=texts).map(lambda m: m.SerializeToString()),
    )
