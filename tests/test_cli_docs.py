"""The API reference (``make docs``): every public name has a section with an example and a
mkdocstrings directive, every option of NetworkTransport is in the options table, the CLI
captures are in docs/, and ``mkdocs build --strict`` passes."""

from __future__ import annotations

import dataclasses
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import objtransport

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "docs" / "api"


def _sections() -> dict[str, str]:
    """``## Name`` heading -> its text, over every page of the API reference."""
    out: dict[str, str] = {}
    for page in sorted(API.glob("*.md")):
        parts = re.split(r"^## ", page.read_text(), flags=re.M)
        for part in parts[1:]:
            title, _, body = part.partition("\n")
            out[title.strip().replace("\\", "")] = body
    return out


def test_every_public_name_has_a_section_with_an_example() -> None:
    sections = _sections()
    for name in objtransport.__all__:
        assert name in sections, f"docs/api has no '## {name}' section"
        body = sections[name]
        assert "```python" in body, f"{name}: no example"
        if name != "__version__":
            assert re.search(rf"^::: objtransport\.{re.escape(name)}$", body, re.M), name


def test_every_option_is_in_the_options_table_with_its_default() -> None:
    table = (API / "options.md").read_text()
    for f in dataclasses.fields(objtransport.Options):
        row = re.search(rf"^\| `{f.name}` \| `([^`]+)` \| (.+) \|", table, re.M)
        assert row, f"option {f.name} is not in docs/api/options.md"
        assert len(row.group(2)) > 20, f.name  # described, with an example column


def test_every_directive_names_something_importable() -> None:
    for page in API.glob("*.md"):
        for target in re.findall(r"^::: ([\w.]+)$", page.read_text(), re.M):
            module, _, attr = target.rpartition(".")
            try:
                obj = importlib.import_module(target)
            except ImportError:
                obj = getattr(importlib.import_module(module), attr)
            assert obj is not None, target


def test_the_cli_captures_are_in_docs() -> None:
    captures = ROOT / "docs" / "captures"
    live = (captures / "serve-live.txt").read_text()
    assert "msg/s in" in live and "last events" in live and "Accepted conn" in live
    sent = (captures / "send-file.txt").read_text()
    assert re.search(r"ETA 0:00:0[1-9]", sent) and "verified: sha256" in sent
    assert (captures / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "captures/bench.png" in (ROOT / "docs" / "cli.md").read_text()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_mkdocs_builds_strict(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
                          timeout=170)
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = (tmp_path / "site" / "api" / "options" / "index.html").read_text()
    assert "half_open_max_probes" in page and "reliable" in page
    assert "serve_metrics" in (tmp_path / "site" / "api" / "network_transport" /
                               "index.html").read_text()
