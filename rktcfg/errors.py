"""Every error rktcfg raises on purpose, and the exit codes the CLI maps them to.

The tree::

    RktcfgError                 one-line message; file, line and field where known
    ├── InputError              the user's input is wrong                  -> exit 2
    │   ├── UsageError          the command line: unknown flag, bad argument
    │   ├── ValidationError     a document is invalid; carries every Problem found in one pass
    │   │   └── ConfigError     a configuration layer failed to read or validate
    │   ├── NotFoundError       a named thing (image, pod, network, file) does not exist
    │   ├── AmbiguousError      a name or prefix matches more than one thing
    │   └── ImageError          an image file is malformed or does not fit this host
    │       └── ArchiveError    a tar archive is corrupt, truncated, too large or hostile
    └── RuntimeFailure          the input was fine, carrying it out failed -> exit 1
        └── StoreError          the data directory is unusable or inconsistent

Anything else that escapes to the CLI is a bug in rktcfg: it exits 1 and says so.

The library raises; only ``rktcfg.cli`` catches, prints ``rktcfg: error: <message>`` and exits
with the :class:`ExitCode` of the error. This module is imported on every start, so it uses
nothing beyond ``enum`` (which ``argparse`` imports anyway).
"""

from __future__ import annotations

import enum
import json


class ExitCode(enum.IntEnum):
    """The one table of exit codes."""

    OK = 0
    FAILURE = 1  # runtime failure, or a bug in rktcfg
    BAD_INPUT = 2  # bad command line, invalid file, unknown name
    INTERRUPTED = 130  # SIGINT


def describe_value(value: object) -> str:
    """Show a value the way the user wrote it: strings quoted, tables and lists by kind."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str | bool | int | float) or value is None:
        return json.dumps(value)
    return type(value).__name__


class Problem:
    """One thing wrong with one document: ``<file>:<line>: <field>: <expected> (got <actual>)``.

    ``got`` is the offending value already rendered (see :func:`describe_value`), or None when
    there is nothing to show (a missing key, a syntax error).
    """

    __slots__ = ("expected", "field", "file", "got", "line")

    def __init__(
        self,
        expected: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        got: str | None = None,
    ) -> None:
        self.expected = expected
        self.file = file
        self.line = line
        self.field = field
        self.got = got

    def where(self) -> str:
        if self.file is None:
            return ""
        return f"{self.file}:{self.line}" if self.line is not None else self.file

    def __str__(self) -> str:
        parts = [p for p in (self.where(), self.field) if p]
        text = self.expected if self.got is None else f"{self.expected} (got {self.got})"
        return ": ".join([*parts, text])

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "field": self.field,
            "expected": self.expected,
            "got": self.got,
            "message": str(self),
        }

    def sort_key(self) -> tuple[str, int, str, str]:
        return (self.file or "", self.line or 0, self.field or "", self.expected)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Problem) and self.as_dict() == other.as_dict()

    def __hash__(self) -> int:
        return hash(str(self))

    def __repr__(self) -> str:
        return f"Problem({str(self)!r})"


class RktcfgError(Exception):
    """Base of every deliberate rktcfg error: a one-line message for the user."""

    exit_code = ExitCode.FAILURE

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.field = field

    def __str__(self) -> str:
        return self.message


class InputError(RktcfgError):
    """The user's input (command line, file, name) is wrong."""

    exit_code = ExitCode.BAD_INPUT


class UsageError(InputError):
    """The command line is wrong."""


class ValidationError(InputError):
    """A document is invalid. Carries every problem found, sorted by file and line."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...], *, what: str = "") -> None:
        self.problems = tuple(sorted(problems, key=Problem.sort_key))
        if len(self.problems) == 1:
            message = str(self.problems[0])
        else:
            head = f"{len(self.problems)} problems" + (f" in {what}" if what else "")
            message = head + ":\n" + "\n".join(f"  {p}" for p in self.problems)
        first = self.problems[0] if self.problems else None
        super().__init__(
            message,
            file=first.file if first else None,
            line=first.line if first else None,
            field=first.field if first else None,
        )


class ConfigError(ValidationError):
    """A configuration layer could not be read or is invalid."""


class NotFoundError(InputError):
    """A named thing does not exist."""


class AmbiguousError(InputError):
    """A name or prefix matches more than one thing."""


class ImageError(InputError):
    """An image (archive, manifest, OCI layout) is malformed or does not fit this host."""


class ArchiveError(ImageError):
    """A tar archive is corrupt, truncated, larger than allowed, or tries to escape its root."""


class RuntimeFailure(RktcfgError):
    """The input was fine, but carrying it out failed."""

    exit_code = ExitCode.FAILURE


class StoreError(RuntimeFailure):
    """The data directory is unusable or inconsistent."""
