"""The sans-I/O core imports no I/O or clock modules (ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import objtransport.sansio as sansio

FORBIDDEN = {"asyncio", "socket", "ssl", "time", "random", "selectors", "threading"}


def test_sansio_imports_nothing_with_io_or_clock() -> None:
    root = Path(sansio.__file__).parent
    files = sorted(root.glob("*.py"))
    assert len(files) >= 5
    offenders = []
    for path in files:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.ImportFrom) and node.level >= 2:
                # from ..x import y: only the pure modules of the package are allowed
                if node.module not in ("exceptions", "config"):
                    offenders.append(f"{path.name}: from ..{node.module}")
            for name in names:
                if name.split(".")[0] in FORBIDDEN:
                    offenders.append(f"{path.name}: import {name}")
    assert offenders == []
