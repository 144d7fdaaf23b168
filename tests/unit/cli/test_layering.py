"""Only the `cli/client/` package may talk gRPC or touch generated protobuf code."""

from __future__ import annotations

import ast
from pathlib import Path

import cli

CLI_DIR = Path(cli.__file__).parent
EDGE = CLI_DIR / "client"


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_the_client_imports_grpc_or_protobuf() -> None:
    offenders = {}
    for path in sorted(CLI_DIR.rglob("*.py")):
        if path.is_relative_to(EDGE):
            continue
        bad = {
            name
            for name in _imported_modules(path)
            if name.split(".")[0] in {"grpc", "google", "storesafe"}
        }
        if bad:
            offenders[str(path.relative_to(CLI_DIR))] = sorted(bad)
    assert offenders == {}
