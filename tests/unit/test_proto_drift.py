"""The committed generated gRPC code matches the .proto sources."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "proto" / "storesafe" / "v1"


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen-proto"), str(tmp_path)],
        check=True,
        capture_output=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    fresh = sorted(p.name for p in (tmp_path / "storesafe" / "v1").iterdir())
    committed = sorted(
        p.name for p in GENERATED.iterdir() if p.name.endswith((".py", ".pyi")) and "_pb2" in p.name
    )
    assert fresh == committed, "generated files differ: run scripts/gen-proto"
    stale = [
        n
        for n in fresh
        if not filecmp.cmp(tmp_path / "storesafe" / "v1" / n, GENERATED / n, shallow=False)
    ]
    assert not stale, f"out of date: {stale}; run scripts/gen-proto and commit"
