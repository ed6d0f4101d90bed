"""Read TOML, YAML and JSON configuration text into plain data plus the line of every key.

``parse_text`` returns a :class:`Parsed` or raises :class:`~rktcfg.errors.ConfigError` whose
problems name the file and line. YAML keeps its own marks; ``tomllib`` and ``json`` give no
positions for keys, so small scanners find each key's line in the (already valid) text.
Duplicate keys are errors in every format.

Pure: text in, values out.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rktcfg.errors import ConfigError, Problem, describe_value

#: A key path inside a document; list indices are ints.
KeyPath = tuple[str | int, ...]

#: Files larger than this are refused: configuration is small, and parsers are not free.
MAX_BYTES = 1 << 20
#: YAML aliases can expand a small file into a huge tree; refuse beyond this many values.
MAX_NODES = 100_000

FORMATS = {".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".json": "json"}


class Parsed:
    """A document's data (top level always a dict) and the line of every key path."""

    __slots__ = ("data", "lines")

    def __init__(self, data: dict[str, Any], lines: dict[KeyPath, int]) -> None:
        self.data = data
        self.lines = lines

    def line_of(self, path: KeyPath) -> int | None:
        """The line of ``path``, else of its nearest ancestor that has one."""
        for end in range(len(path), 0, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None


def format_of(name: str) -> str | None:
    """``toml``, ``yaml`` or ``json`` from a file name's extension; None for other files."""
    dot = name.rfind(".")
    return FORMATS.get(name[dot:].lower()) if dot > 0 else None


def parse_bytes(raw: bytes, fmt: str, file: str) -> Parsed:
    """Decode and parse one file's bytes."""
    if len(raw) > MAX_BYTES:
        raise _error(file, None, f"file is larger than {MAX_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _error(file, line, "not valid UTF-8 text") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return parse_text(text, fmt, file)


def parse_text(text: str, fmt: str, file: str) -> Parsed:
    if fmt == "toml":
        return _parse_toml(text, file)
    if fmt == "yaml":
        return _parse_yaml(text, file)
    if fmt == "json":
        return _parse_json(text, file)
    raise ValueError(f"unknown format {fmt!r}")


def _error(file: str, line: int | None, message: str) -> ConfigError:
    return ConfigError([Problem(message, file=file, line=line)])


def _top_level(value: Any, file: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(
            [
                Problem(
                    "the top level must be a table of settings",
                    file=file,
                    line=1,
                    got=describe_value(value),
                )
            ]
        )
    return value


# --- TOML ----------------------------------------------------------------------------------

_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column \d+\)$|\s*\(at end of document\)$")


def _parse_toml(text: str, file: str) -> Parsed:
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_POSITION.search(message)
        line: int | None = None
        if match:
            line = int(match.group(1)) if match.group(1) else text.count("\n") + 1
            message = message[: match.start()]
        raise _error(file, line, f"invalid TOML: {message}") from None
    try:
        lines = toml_key_lines(text)
    except (ValueError, IndexError):  # the scanner is best effort; values are already parsed
        lines = {}
    return Parsed(data, lines)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_key_lines(text: str) -> dict[KeyPath, int]:
    """The line of every key and table header in valid TOML text.

    Keys inside inline tables are not located; lookups fall back to the enclosing key's line.
    """
    scanner = _TomlScanner(text)
    return scanner.run()


def _toml_basic_string(literal: str) -> str:
    """Decode a quoted TOML key with TOML's own escapes (``\\U0001F600``, ``\\e``)."""
    import tomllib

    value: str = tomllib.loads(f"k = {literal}")["k"]
    return value


class _TomlScanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.lines: dict[KeyPath, int] = {}
        self.table: KeyPath = ()
        self.array_index: dict[KeyPath, int] = {}

    def run(self) -> dict[KeyPath, int]:
        text = self.text
        while True:
            self._skip_blank_and_comments()
            if self.pos >= len(text):
                return self.lines
            if text[self.pos] == "[":
                self._header()
            else:
                keys = self._key()
                for end in range(1, len(keys) + 1):
                    self.lines.setdefault((*self.table, *keys[:end]), self.line)
                self._skip_ws()
                if self.pos < len(text) and text[self.pos] == "=":
                    self.pos += 1
                self._skip_value()

    def _skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def _skip_blank_and_comments(self) -> None:
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch in " \t\r":
                self.pos += 1
            elif ch == "\n":
                self.pos += 1
                self.line += 1
            elif ch == "#":
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            else:
                return

    def _header(self) -> None:
        text = self.text
        is_array = text.startswith("[[", self.pos)
        self.pos += 2 if is_array else 1
        self._skip_ws()
        keys = self._key()
        self._skip_ws()
        self.pos += 2 if is_array else 1
        path: KeyPath = tuple(keys)
        self.lines.setdefault(path, self.line)
        if is_array:
            index = self.array_index.get(path, -1) + 1
            self.array_index[path] = index
            path = (*path, index)
            self.lines.setdefault(path, self.line)
        self.table = path

    def _key(self) -> list[str]:
        keys: list[str] = []
        text = self.text
        while True:
            self._skip_ws()
            ch = text[self.pos]
            if ch == '"':
                end = self._basic_string_end(self.pos)
                keys.append(_toml_basic_string(text[self.pos : end]))
                self.pos = end
            elif ch == "'":
                end = text.index("'", self.pos + 1)
                keys.append(text[self.pos + 1 : end])
                self.pos = end + 1
            else:
                match = _BARE_KEY.match(text, self.pos)
                if match is None:
                    raise ValueError("no key")
                keys.append(match.group())
                self.pos = match.end()
            self._skip_ws()
            if self.pos < len(text) and text[self.pos] == ".":
                self.pos += 1
                continue
            return keys

    def _basic_string_end(self, start: int) -> int:
        """Index just past the closing quote of a one-line basic string starting at ``start``."""
        text = self.text
        i = start + 1
        while text[i] != '"':
            i += 2 if text[i] == "\\" else 1
        return i + 1

    def _skip_value(self) -> None:
        """Move past one value, through nested arrays, inline tables and multi-line strings."""
        text = self.text
        depth = 0
        while self.pos < len(text):
            ch = text[self.pos]
            if text.startswith('"""', self.pos) or text.startswith("'''", self.pos):
                quote = text[self.pos : self.pos + 3]
                end = self._multiline_end(quote)
                self.line += text.count("\n", self.pos, end)
                self.pos = end
            elif ch == '"':
                self.pos = self._basic_string_end(self.pos)
            elif ch == "'":
                self.pos = text.index("'", self.pos + 1) + 1
            elif ch in "[{":
                depth += 1
                self.pos += 1
            elif ch in "]}":
                depth -= 1
                self.pos += 1
            elif ch == "#":
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            elif ch == "\n":
                if depth <= 0:
                    return
                self.line += 1
                self.pos += 1
            else:
                self.pos += 1

    def _multiline_end(self, quote: str) -> int:
        text = self.text
        i = self.pos + 3
        while True:
            if quote == '"""' and text[i] == "\\":
                i += 2
                continue
            if text.startswith(quote, i):
                end = i + 3
                while end < len(text) and text[end] == quote[0] and end - i < 5:
                    end += 1  # up to two quotes may end the content: """a"""""
                return end
            i += 1


# --- YAML ----------------------------------------------------------------------------------


def _parse_yaml(text: str, file: str) -> Parsed:
    import yaml

    try:
        # The pure-Python loader: its messages do not depend on how PyYAML was built.
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, file) from None
    try:
        try:
            node = loader.get_single_node()
        except yaml.reader.ReaderError as exc:
            raise _reader_error(exc, text, file) from None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            problem = exc.problem or exc.context or "syntax error"
            if "expected a single document" in str(exc.context or ""):
                problem = "expected a single YAML document, found more"
            raise _error(file, line, f"invalid YAML: {problem}") from None
        except yaml.YAMLError as exc:
            raise _error(file, None, f"invalid YAML: {exc}") from None
        if node is None:
            return Parsed({}, {})
        builder = _YamlBuilder(loader, file)
        value = builder.build(node, ())
        if builder.problems:
            raise ConfigError(builder.problems)
        return Parsed(_top_level(value, file), builder.lines)
    finally:
        loader.dispose()


def _reader_error(exc: Any, text: str, file: str) -> ConfigError:
    line = text.count("\n", 0, max(exc.position, 0)) + 1
    return _error(file, line, f"invalid YAML: {exc.reason} (character #x{exc.character:04x})")


class _YamlBuilder:
    """Constructs plain values from a composed YAML node graph, recording key lines.

    Checks what PyYAML's constructor does not: duplicate keys, non-string keys, recursive
    aliases and alias bombs.
    """

    def __init__(self, loader: Any, file: str) -> None:
        self.loader = loader
        self.file = file
        self.lines: dict[KeyPath, int] = {}
        self.problems: list[Problem] = []
        self.count = 0
        self.active: set[int] = set()

    def _problem(self, node: Any, message: str, got: str | None = None) -> None:
        self.problems.append(
            Problem(message, file=self.file, line=node.start_mark.line + 1, got=got)
        )

    def build(self, node: Any, path: KeyPath) -> Any:
        import yaml

        self.count += 1
        if self.count > MAX_NODES:
            if self.count == MAX_NODES + 1:
                self._problem(node, f"document has more than {MAX_NODES} values (alias bomb?)")
            return None
        if id(node) in self.active:
            self._problem(node, "recursive alias")
            return None
        if isinstance(node, yaml.ScalarNode):
            try:
                return self.loader.construct_object(node, deep=True)
            except yaml.YAMLError as exc:
                self._problem(node, f"invalid YAML value: {getattr(exc, 'problem', exc)}")
                return None
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(child, (*path, i)) for i, child in enumerate(node.value)]
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
        finally:
            self.active.discard(id(node))
        self._problem(node, "unsupported YAML node")
        return None

    def _mapping(self, node: Any, path: KeyPath) -> dict[str, Any]:
        import yaml

        explicit: set[str] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(
                key_node, yaml.ScalarNode
            ):
                continue
            key = key_node.value
            if key in explicit and key_node.tag == "tag:yaml.org,2002:str":
                self.problems.append(
                    Problem(
                        "duplicate key",
                        file=self.file,
                        line=key_node.start_mark.line + 1,
                        field=_dotted((*path, key)),
                    )
                )
            explicit.add(key)
        try:
            self.loader.flatten_mapping(node)  # merged pairs first, explicit ones after
        except yaml.YAMLError as exc:
            self._problem(node, f"invalid YAML merge: {getattr(exc, 'problem', exc)}")
            return {}
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self.build(key_node, path) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                self._problem(key_node, "keys must be strings", describe_value(key))
                continue
            key_path = (*path, key)
            self.lines[key_path] = key_node.start_mark.line + 1
            out[key] = self.build(value_node, key_path)  # an explicit key overrides a merged one
        return out


def _dotted(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


# --- JSON ----------------------------------------------------------------------------------


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _parse_json(text: str, file: str) -> Parsed:
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise _error(file, exc.lineno, f"invalid JSON: {exc.msg}") from None
    except _DuplicateKey as exc:
        key = str(exc.args[0])
        seen: set[KeyPath] = set()
        for path, line in json_key_lines(text, all_occurrences=True):
            if path in seen and path[-1] == key:
                problem = Problem("duplicate key", file=file, line=line, field=_dotted(path))
                raise ConfigError([problem]) from None
            seen.add(path)
        raise _error(file, None, f"duplicate key {key!r}") from None
    except RecursionError:
        raise _error(file, None, "invalid JSON: nested too deeply") from None
    top = _top_level(data, file)
    return Parsed(top, dict(json_key_lines(text)))


def json_key_lines(text: str, *, all_occurrences: bool = False) -> list[tuple[KeyPath, int]]:
    """(key path, line) for every object key in JSON text, in document order."""
    from json.decoder import scanstring  # type: ignore[attr-defined]

    found: list[tuple[KeyPath, int]] = []
    # Each frame: [path of the container, is_object, current key or index, expecting a key]
    stack: list[list[Any]] = []
    pos, line, end = 0, 1, len(text)

    def slot() -> KeyPath:
        if not stack:
            return ()
        frame = stack[-1]
        return (*frame[0], frame[2])

    while pos < end:
        ch = text[pos]
        if ch == "\n":
            line += 1
        elif ch == '"':
            value, after = scanstring(text, pos + 1)
            if stack and stack[-1][1] and stack[-1][3]:
                stack[-1][2] = value
                stack[-1][3] = False
                found.append(((*stack[-1][0], value), line))
            pos = after
            continue
        elif ch == "{":
            stack.append([slot(), True, None, True])
        elif ch == "[":
            stack.append([slot(), False, 0, False])
        elif ch in "}]":
            if stack:
                stack.pop()
        elif ch == "," and stack:
            if stack[-1][1]:
                stack[-1][3] = True
            else:
                stack[-1][2] += 1
        pos += 1
    if all_occurrences:
        return found
    first: dict[KeyPath, int] = {}
    for path, ln in found:
        first.setdefault(path, ln)
    return list(first.items())
