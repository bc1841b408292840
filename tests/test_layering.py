"""The layering docs/architecture.md promises, read from the import statements themselves.

* The core (``provenance/``) and the device protocol codecs (``hardware/*_protocol.py`` and the
  framing they share) are pure: no event loop, database, serial port, MQTT or HTTP, and no
  program's package.
* No program's package imports another's: the agent, the collector and the witness share only
  the core, the codecs and ``common/``; ``common/`` imports no program.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Modules whose import anywhere in the pure layers means I/O of a kind they must not do.
_IMPURE = frozenset({"asyncio", "sqlite3", "aiosqlite", "psycopg", "psycopg_pool", "serial",
                     "serial_asyncio", "paho", "aiomqtt", "http", "aiohttp", "socket",
                     "socketserver", "selectors", "pymodbus", "urllib.request"})
_PROGRAMS = ("agent", "collector", "witness")
_PURE_CODECS = ("arc_protocol", "contec_protocol", "jbd_protocol", "envelope_framing",
                "frame_hunt", "modbus_rtu", "registers")


def _imports(path: Path, root: Path = ROOT) -> Iterator[tuple[int, str]]:
    """(line, dotted module) of every import in ``path``, function-level ones included;
    relative imports resolved against the file's package (under ``root``)."""
    package = path.relative_to(root).parent.parts
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join((*base, node.module) if node.module else base)
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:  # ``from urllib import request``
                yield node.lineno, f"{module}.{alias.name}"


def _within(module: str, names: frozenset[str] | tuple[str, ...]) -> str | None:
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in names:
            return ".".join(parts[:i])
    return None


def _files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _offences(paths: list[Path], forbidden: frozenset[str] | tuple[str, ...],
              root: Path = ROOT) -> list[str]:
    return [f"{path.relative_to(root)}:{line} imports {module}"
            for path in paths for line, module in _imports(path, root)
            if _within(module, forbidden)]


def test_the_core_is_pure() -> None:
    paths = _files("provenance")
    assert len(paths) > 20
    assert _offences(paths, _IMPURE | frozenset(_PROGRAMS) | {"common", "hardware"}) == []


def test_the_protocol_codecs_are_pure() -> None:
    paths = [ROOT / "hardware" / f"{name}.py" for name in _PURE_CODECS]
    assert all(p.exists() for p in paths)
    assert _offences(paths, _IMPURE | frozenset(_PROGRAMS) | {"common"}) == []


@pytest.mark.parametrize("program", [*_PROGRAMS, "common"])
def test_no_program_imports_another(program: str) -> None:
    others = tuple(p for p in _PROGRAMS if p != program)
    assert _offences(_files(program), others) == []


def test_the_checker_sees_what_it_looks_for(tmp_path: Path) -> None:
    """The checks above can fail: each kind of import statement is seen and resolved."""
    sample = tmp_path / "collector" / "sample.py"
    sample.parent.mkdir()
    sample.write_text("import asyncio\nfrom agent.exposition import Health\n"
                      "def f():\n    from .ledger import store\n    from urllib import request\n")
    found = {module for _, module in _imports(sample, tmp_path)}
    assert _offences([sample], ("agent",), tmp_path) == [
        "collector/sample.py:2 imports agent.exposition",
        "collector/sample.py:2 imports agent.exposition.Health"]
    assert {"asyncio", "agent.exposition", "collector.ledger.store", "urllib.request"} <= found
