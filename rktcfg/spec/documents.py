"""Split a pod file's text into documents, each with the line of every key.

YAML files may hold several ``---`` documents; a JSON file is one document. Each document
comes back as ``(index, Parsed)`` with its 0-based index in the file (empty documents are
counted, then dropped). Values are built by :mod:`rktcfg.config.readers`'s builder, so
duplicate keys, non-string keys and alias bombs are refused here as in configuration files.

libyaml composes about ten times faster than PyYAML's pure-Python parser, so it is used
when PyYAML has it; a file it refuses is parsed again by the pure-Python parser, whose
messages (and lines) are the ones reported, as for configuration files.

Pure: text in, values out.
"""

from __future__ import annotations

from typing import Any

from rktcfg.config import readers
from rktcfg.errors import Problem, ValidationError, describe_value


class Document:
    """One non-empty document of a file."""

    __slots__ = ("index", "line", "parsed")

    def __init__(self, index: int, line: int, parsed: readers.Parsed) -> None:
        self.index = index
        self.line = line  # where the document starts
        self.parsed = parsed


_STR_TAG = "tag:yaml.org,2002:str"


class _Builder(readers._YamlBuilder):
    """The configuration reader's builder, with a short way for plain strings (most values)."""

    def build(self, node: Any, path: readers.KeyPath) -> Any:
        if node.tag == _STR_TAG and node.id == "scalar" and self.count < readers.MAX_NODES:
            self.count += 1
            return node.value
        return super().build(node, path)

    def _mapping(self, node: Any, path: readers.KeyPath) -> dict[str, Any]:
        pairs = node.value
        if not all(k.tag == _STR_TAG and k.id == "scalar" for k, _ in pairs):
            return super()._mapping(node, path)  # merge keys (<<), keys that are not strings
        out: dict[str, Any] = {}
        for key_node, value_node in pairs:
            key = key_node.value
            key_path = (*path, key)
            line = key_node.start_mark.line + 1
            if key in out:
                field = readers._dotted(key_path)
                self.problems.append(
                    Problem("duplicate key", file=self.file, line=line, field=field)
                )
            self.lines[key_path] = line
            out[key] = self.build(value_node, key_path)
        return out


class _Retry(Exception):
    """libyaml refused the text: parse it again with the pure-Python parser."""


def split_documents(text: str, fmt: str, file: str) -> tuple[list[Document], list[Problem]]:
    """The good documents of ``text`` (``fmt`` is ``yaml`` or ``json``), and the problems of
    the others: a document with a duplicate key does not hide the problems of the next one.
    After a syntax error nothing more is read."""
    if fmt == "json":
        if not text.strip():
            return [], []
        try:
            parsed = readers.parse_text(text, "json", file)
        except ValidationError as exc:
            return [], list(exc.problems)
        return [Document(0, 1, parsed)], []
    import yaml

    fast = _fast_loader()
    if fast is not None:
        try:
            return _yaml_documents(fast, text, file, fast=True)
        except _Retry:
            pass
    return _yaml_documents(yaml.SafeLoader, text, file, fast=False)


_FAST_LOADER: list[Any] = []


def _fast_loader() -> Any:
    """libyaml's SafeLoader, remembering the tag of each plain scalar it resolves (pod files
    repeat their values, and resolving tries a regular expression per implicit type)."""
    if _FAST_LOADER:
        return _FAST_LOADER[0]
    import yaml

    base = getattr(yaml, "CSafeLoader", None)
    if base is None:
        _FAST_LOADER.append(None)
        return None
    tags: dict[tuple[str, Any], str] = {}

    class _Loader(base):  # type: ignore[misc,valid-type]
        def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
            if kind is not yaml.ScalarNode or len(value) > 64:
                return super().resolve(kind, value, implicit)
            key = (value, implicit)
            tag = tags.get(key)
            if tag is None:
                if len(tags) >= 8192:
                    tags.clear()
                tag = tags[key] = super().resolve(kind, value, implicit)
            return tag

    _FAST_LOADER.append(_Loader)
    return _Loader


def _yaml_documents(
    loader_class: Any, text: str, file: str, *, fast: bool
) -> tuple[list[Document], list[Problem]]:
    import yaml

    problems: list[Problem] = []
    documents: list[Document] = []
    try:
        loader = loader_class(text)
    except yaml.YAMLError as exc:
        if fast:
            raise _Retry from None
        return [], [_syntax_error(exc, text, file)]
    try:
        index = 0
        while True:
            try:
                if not loader.check_node():
                    break
                node = loader.get_node()
            except yaml.YAMLError as exc:
                if fast:
                    raise _Retry from None
                problems.append(_syntax_error(exc, text, file))
                break
            builder = _Builder(loader, file)
            value = builder.build(node, ())
            problems.extend(builder.problems)
            line = node.start_mark.line + 1
            if value is not None and not isinstance(value, dict):
                problems.append(
                    Problem(
                        "a pod document must be a table with apiVersion, kind, metadata and spec",
                        file=file,
                        line=line,
                        got=describe_value(value),
                    )
                )
            elif value is not None and not builder.problems:
                documents.append(Document(index, line, readers.Parsed(value, builder.lines)))
            index += 1
    finally:
        loader.dispose()
    return documents, problems


def _syntax_error(exc: Any, text: str, file: str) -> Problem:
    import yaml

    if isinstance(exc, yaml.reader.ReaderError):
        return readers._reader_error(exc, text, file).problems[0]
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        message = exc.problem or exc.context or "syntax error"
        context = exc.context_mark
        if exc.problem and exc.context and context is not None and context.line + 1 != line:
            message += f" ({exc.context} on line {context.line + 1})"
        return Problem(f"invalid YAML: {message}", file=file, line=line)
    return Problem(f"invalid YAML: {exc}", file=file)
