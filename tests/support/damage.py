"""Damage a backup file on disk the way disks and copies do, for corruption tests."""

from __future__ import annotations

from pathlib import Path


def damage(path: Path, how: str = "flipped byte") -> None:
    """Flip a byte in the middle of `path` ("flipped byte") or cut it in half ("truncated")."""
    data = bytearray(path.read_bytes())
    if how == "truncated":
        del data[len(data) // 2 :]
    elif how == "flipped byte":
        data[len(data) // 2] ^= 0x55
    else:
        raise ValueError(f"unknown damage {how!r}")
    path.write_bytes(bytes(data))
