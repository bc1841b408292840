"""One typed reader for every SensorLedger configuration: the agent's and the collector's TOML
files and each driver's settings table.

Pure: text in, typed values or a list of problems out. A :class:`Table` reads one TOML table
key by key; a value of the wrong type or out of range becomes a :class:`Problem` (with the key's
line, when the text is known) and the read returns the default, so reading goes on and one run
reports *every* problem in a file. :meth:`Table.finish` refuses keys nobody read, with a "did
you mean" for the likely misspelling: a typo must not silently fall back to a default.

What a file names on disk (key files, TLS files) is checked by the callers, which may touch the
filesystem; this module never does.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .errors import ProvenanceError
from .toml_lines import KeyPath, TomlLines

__all__ = [
    "ConfigFileError",
    "KeyPath",
    "Located",
    "Problem",
    "Source",
    "Table",
    "describe",
    "key_name",
    "parse_toml",
]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a configuration, located by key (and line, when known)."""

    key: str
    message: str
    line: int | None = None

    def render(self, path: str) -> str:
        where = f"{path}:{self.line}" if self.line is not None else path
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


def describe(path: str, problems: Sequence[Problem]) -> str:
    """Every problem on its own line (``file:line: key: message``), then their count."""
    count = len(problems)
    return "\n".join([*(p.render(path) for p in problems),
                      f"{count} problem{'s' if count != 1 else ''} in {path}"])


class ConfigFileError(ProvenanceError):
    """A configuration file cannot be used as written; ``problems`` lists every reason."""

    code = "config"

    def __init__(self, path: str, problems: Sequence[Problem]) -> None:
        self.path = path
        self.problems = list(problems)
        super().__init__(describe(path, self.problems))


class Located(Protocol):
    """Anything that can say where a key sits in a config file (for error messages)."""

    @property
    def path(self) -> Path: ...

    def line_of(self, path: KeyPath) -> int | None: ...


def key_name(path: KeyPath) -> str:
    """``("sensors", 1, "port")`` -> ``sensors[1].port``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


class Source:
    """Where the values of one document came from: the file's lines, and the keys whose value
    was given elsewhere (a command-line flag), which have no line in the file."""

    def __init__(
        self, lines: TomlLines | None = None, *, elsewhere: Mapping[KeyPath, str] | None = None
    ) -> None:
        self.lines = lines
        self.elsewhere = dict(elsewhere or {})

    def line_of(self, path: KeyPath) -> int | None:
        if path in self.elsewhere or self.lines is None:
            return None
        return self.lines.line_of(path)

    def origin(self, path: KeyPath) -> str | None:
        """Where a value set outside the file came from ("given on the command line")."""
        return self.elsewhere.get(path)


def parse_toml(text: str, path: str | Path) -> tuple[dict[str, Any], TomlLines]:
    """The document and its key lines; ConfigFileError (with the line) for malformed TOML."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib puts the position into the message: "... (at line 3, column 7)".
        match = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        line = int(match.group(1)) if match else None
        detail = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigFileError(str(path), [Problem(
            "", f"malformed TOML: {detail} (not valid TOML, so nothing else was checked)", line,
        )]) from None
    return doc, TomlLines(text)


def _show(bound: float) -> str:
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


class Table:
    """Typed, located reads of one table; problems accumulate instead of raising.

    Every read marks its key as known; :meth:`finish` then reports the keys nobody read.
    ``noun`` names what a key is in messages ("config key", or a driver's "setting").
    """

    noun = "config key"

    def __init__(
        self, table: Mapping[str, Any], source: Source | None = None, *, prefix: KeyPath = (),
        problems: list[Problem] | None = None,
    ) -> None:
        self.table = table
        self.source = source if source is not None else Source()
        self.prefix = prefix
        self.problems: list[Problem] = [] if problems is None else problems
        self.used: set[str] = set()

    # -- structure ---------------------------------------------------------------------------

    def child(self, table: Mapping[str, Any], *keys: str | int) -> Table:
        """A reader for a sub-table, sharing this reader's problem list."""
        return type(self)(table, self.source, prefix=(*self.prefix, *keys),
                          problems=self.problems)

    def name(self, key: str | int | None = None) -> str:
        return key_name((*self.prefix, *(() if key is None else (key,))))

    def line(self, key: str | None = None) -> int | None:
        return self.source.line_of(self.prefix if key is None else (*self.prefix, key))

    def problem(self, key: str | None, message: str) -> None:
        path = self.prefix if key is None else (*self.prefix, key)
        origin = self.source.origin(path)
        if origin is not None:
            message = f"{message} ({origin})"
        self.problems.append(Problem(self.name(key), message, self.source.line_of(path)))

    def range_text(self, low: float | None, high: float | None) -> str:
        """How an allowed range reads in a message (a driver's settings say ``in 1..247``)."""
        if low is not None and high is not None:
            return f"between {_show(low)} and {_show(high)}"
        return f"at least {_show(low)}" if low is not None else f"at most {_show(high or 0)}"

    # -- typed reads -------------------------------------------------------------------------

    def has(self, key: str) -> bool:
        return key in self.table

    def get(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        return self.table.get(key, default)

    def text(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.get(key)
        if value is None:
            if required:
                self.problem(key, "is required")
            return default
        if not isinstance(value, str) or not value:
            self.problem(key, f"must be non-empty text, got {value!r}")
            return default
        return value

    def number(
        self, key: str, default: float, *, low: float | None = None, high: float | None = None,
    ) -> float:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
            value
        ):
            self.problem(key, f"must be a number, got {value!r}")
            return default
        if (low is not None and value < low) or (high is not None and value > high):
            self.problem(key, f"must be {self.range_text(low, high)}, got {value!r}")
            return default
        return float(value)

    def integer(
        self, key: str, default: int, *, low: int | None = None, high: int | None = None,
    ) -> int:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(key, f"must be an integer, got {value!r}")
            return default
        if (low is not None and value < low) or (high is not None and value > high):
            self.problem(key, f"must be {self.range_text(low, high)}, got {value}")
            return default
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(key, f"must be true or false, got {value!r}")
            return default
        return value

    def choice(self, key: str, choices: Sequence[str], default: str) -> str:
        value = self.get(key)
        if value is None:
            return default
        if value not in choices:
            self.problem(key, f"must be one of {', '.join(choices)}; got {value!r}")
            return default
        return str(value)

    def path(self, key: str, base: Path, *, required: bool = False) -> Path | None:
        """A file path; relative paths in the file are taken relative to ``base`` (the file's
        folder), those given elsewhere (a flag) relative to the working directory."""
        value = self.text(key, required=required)
        if value is None:
            return None
        if self.source.origin((*self.prefix, key)) is not None:
            return Path(value).expanduser()
        return base / Path(value).expanduser()

    def table_at(self, key: str) -> Mapping[str, Any] | None:
        value = self.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.problem(key, f"must be a table ([{self.name(key)}]), got {value!r}")
            return None
        return value

    # -- the end -----------------------------------------------------------------------------

    def unread(self, known: frozenset[str] = frozenset()) -> list[str]:
        """Keys of the table that no read asked for (and that are not in ``known``)."""
        return [key for key in self.table if key not in self.used and key not in known]

    def suggestion(self, key: str, known: frozenset[str] = frozenset()) -> str:
        """``"; did you mean 'size'?"`` for the closest known key, else empty."""
        hint = difflib.get_close_matches(key, sorted(self.used | known), n=1)
        return f"; did you mean {hint[0]!r}?" if hint else ""

    def finish(self, known: frozenset[str] = frozenset()) -> None:
        """Report keys nobody read: a misspelt key must not be silently ignored."""
        for key in self.unread(known):
            self.problem(key, f"unknown {self.noun} {self.name(key)!r}"
                              f"{self.suggestion(key, known)}")
