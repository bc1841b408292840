"""Line numbers for TOML keys, which ``tomllib`` does not report.

Every config problem is reported at its line (see :mod:`provenance.configfile`). This scanner
reads the config text once and records the line where each table header and each key appears,
keyed by the same path the parsed document uses (``("sensors", 1, "port")`` for the ``port``
key of the second ``[[sensors]]`` table). It understands what SensorLedger configs contain:
tables, arrays of tables, bare/quoted/dotted keys, and values that span lines (arrays, inline
tables, triple quoted strings). For anything it cannot place it falls back to the nearest
enclosing table.
"""

from __future__ import annotations

import re

__all__ = ["KeyPath", "TomlLines"]

KeyPath = tuple[str | int, ...]

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY_PART_RE = r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'"""
_KEY = re.compile(rf"^\s*((?:{_KEY_PART_RE})(?:\s*\.\s*(?:{_KEY_PART_RE}))*)\s*=")
_KEY_PART = re.compile(_KEY_PART_RE)


def _split_key(dotted: str) -> tuple[str, ...]:
    return tuple(part.strip("\"'") for part in _KEY_PART.findall(dotted))


class TomlLines:
    """Where each key of a TOML text sits (1-based line numbers)."""

    def __init__(self, text: str) -> None:
        self._lines: dict[KeyPath, int] = {}
        self._scan(text)

    def line_of(self, path: KeyPath) -> int | None:
        """Line of ``path``, else of its nearest ancestor that appears in the text."""
        probe = path
        while probe:
            line = self._lines.get(probe)
            if line is not None:
                return line
            probe = probe[:-1]
        return None

    def _scan(self, text: str) -> None:
        table: KeyPath = ()
        array_counts: dict[KeyPath, int] = {}
        depth = 0  # open brackets/braces of a value that spans lines
        in_multiline: str | None = None  # the triple quote that opened a multi-line string
        for number, line in enumerate(text.splitlines(), start=1):
            if in_multiline is not None:
                if in_multiline in line:
                    depth += _bracket_balance(line.split(in_multiline, 1)[1])
                    in_multiline = None
                continue
            if depth > 0:
                depth += _bracket_balance(line)
                continue
            header = _HEADER.match(line)
            if header:
                names = _split_key(header.group(2))
                if header.group(1) == "[[":
                    array = (*self._resolve(names[:-1]), names[-1])
                    index = array_counts.get(array, -1) + 1
                    array_counts[array] = index
                    table = (*array, index)
                else:
                    table = self._resolve(names)
                self._lines.setdefault(table, number)
                continue
            key = _KEY.match(line)
            if not key:
                continue
            path = (*table, *_split_key(key.group(1)))
            self._lines.setdefault(path, number)
            value = line[key.end():]
            for quote in ('"""', "'''"):
                if value.count(quote) == 1:
                    in_multiline = quote
                    break
            else:
                depth = max(0, _bracket_balance(value))

    def _resolve(self, names: tuple[str, ...]) -> KeyPath:
        """A header's path, with the index of the latest element of any array of tables in it
        (``[sensors.extra]`` after two ``[[sensors]]`` belongs to ``("sensors", 1)``)."""
        resolved: list[str | int] = []
        for name in names:
            resolved.append(name)
            indexes = [p[len(resolved)] for p in self._lines
                       if len(p) > len(resolved) and tuple(p[:len(resolved)]) == tuple(resolved)
                       and isinstance(p[len(resolved)], int)]
            if indexes:
                resolved.append(max(i for i in indexes if isinstance(i, int)))
        return tuple(resolved)


def _bracket_balance(fragment: str) -> int:
    """Net count of opening minus closing brackets/braces outside strings and comments."""
    balance = 0
    quote: str | None = None
    for ch in fragment:
        if quote is not None:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        elif ch in "[{":
            balance += 1
        elif ch in "]}":
            balance -= 1
    return balance
