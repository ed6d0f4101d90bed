"""Find, read, render and build pod files: the I/O half of :func:`rktcfg.spec.load`.

Pod files are ``*.yaml``, ``*.yml``, ``*.json`` and the same with ``.j2`` (Jinja2
templates). A directory contributes the pod files directly in it, in name order (below it
too with ``recursive``); every other entry (README.md, ``web.yaml.bak``, ``*~``, dotfiles,
subdirectories when not recursive) is skipped with a note, never read: the kubelet reads
``*.bak`` files as pods, rktcfg does not. A file named on the command line must have a pod
file suffix.

Every problem of every file is collected and raised as one ValidationError.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rktcfg.config import readers
from rktcfg.errors import Problem, UsageError, ValidationError, describe_value
from rktcfg.spec.model import DesiredPod, Loaded

#: Pod file suffixes and the format of what they hold (after rendering, for ``.j2``).
SUFFIXES = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}
TEMPLATE_SUFFIX = ".j2"
VALIDATE_MODES = ("strict", "warn")
_SUFFIX_WORDS = "*.yaml, *.yml, *.json, or one of those with .j2 (a template)"


def pod_file_format(name: str) -> tuple[str, bool] | None:
    """(``yaml`` or ``json``, whether it is a template) from a file name; None otherwise."""
    lower = name.lower()
    template = lower.endswith(TEMPLATE_SUFFIX)
    if template:
        lower = lower[: -len(TEMPLATE_SUFFIX)]
    dot = lower.rfind(".")
    fmt = SUFFIXES.get(lower[dot:]) if dot > 0 else None
    return None if fmt is None else (fmt, template)


class _File:
    """A pod file to read: its absolute path and the path shown in messages."""

    __slots__ = ("display", "fmt", "path", "template")

    def __init__(self, path: str, display: str, fmt: str, template: bool) -> None:
        self.path = path
        self.display = display
        self.fmt = fmt
        self.template = template


class _Load:
    """The state of one load."""

    def __init__(self, *, recursive: bool, warn: bool) -> None:
        self.recursive = recursive
        self.warn = warn
        self.files: list[_File] = []
        self.seen: set[str] = set()
        self.notes: list[str] = []
        self.problems: list[Problem] = []
        self.sources: set[str] = set()

    # --- finding files ---------------------------------------------------------------------

    def find(self, arg: str) -> None:
        path = os.path.abspath(arg)
        try:
            info = os.stat(path)
        except OSError as exc:
            self.problems.append(Problem(f"cannot read: {exc.strerror}", file=arg))
            return
        if stat.S_ISDIR(info.st_mode):
            before = len(self.files)
            self._directory(path, os.path.normpath(arg), {os.path.realpath(path)})
            if len(self.files) == before:
                self.notes.append(f"{os.path.normpath(arg)}: no pod files ({_SUFFIX_WORDS})")
            return
        found = pod_file_format(os.path.basename(path))
        if found is None:
            self.problems.append(
                Problem(
                    f"not a pod file: the name must end in {_SUFFIX_WORDS}",
                    file=arg,
                    got=describe_value(os.path.basename(path)),
                )
            )
            return
        self._add(path, arg, found)

    def _add(self, path: str, display: str, found: tuple[str, bool]) -> None:
        if path not in self.seen:
            self.seen.add(path)
            self.files.append(_File(path, display, found[0], found[1]))

    def _directory(self, path: str, display: str, visiting: set[str]) -> None:
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError as exc:
            self.problems.append(Problem(f"cannot read directory: {exc.strerror}", file=display))
            return
        for entry in entries:
            shown = os.path.join(display, entry.name)
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                real = os.path.realpath(entry.path)
                if not self.recursive:
                    self.notes.append(f"skipped {shown}/ (a directory; not recursive)")
                elif entry.name.startswith("."):
                    self.notes.append(f"skipped {shown}/ (a hidden directory)")
                elif real in visiting:
                    self.notes.append(f"skipped {shown}/ (a symlink loop)")
                else:
                    self._directory(entry.path, shown, visiting | {real})
                continue
            found = pod_file_format(entry.name)
            if entry.name.startswith("."):
                self.notes.append(f"skipped {shown} (a hidden file)")
                continue
            if found is None:
                self.notes.append(f"skipped {shown} (not a pod file)")
                continue
            self._add(os.path.abspath(entry.path), shown, found)

    # --- reading ---------------------------------------------------------------------------

    def read_text(self, path: str, display: str) -> str | None:
        """A file's text, recorded as a source; None (a problem noted) when unreadable."""
        try:
            raw = _read_bytes(path)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            self.problems.append(Problem(f"cannot read file: {reason}", file=display))
            return None
        self.sources.add(path)
        if len(raw) > readers.MAX_BYTES:
            self.problems.append(
                Problem(f"file is larger than {readers.MAX_BYTES} bytes", file=display)
            )
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            self.problems.append(Problem("not valid UTF-8 text", file=display, line=line))
            return None
        return text[1:] if text.startswith("\ufeff") else text


def _read_bytes(path: str) -> bytes:
    # O_NONBLOCK: a FIFO named like a pod file must not hang rktcfg.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(0, "not a regular file")
        return handle.read(readers.MAX_BYTES + 1)


def _read_template(path: str) -> str:
    raw = _read_bytes(path)
    if len(raw) > readers.MAX_BYTES:
        raise OSError(0, f"larger than {readers.MAX_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise OSError(0, "not valid UTF-8 text") from None


def _variables(
    state: _Load,
    vars_files: Iterable[str],
    variables: Mapping[str, Any] | None,
    environ: Mapping[str, str],
) -> dict[str, Any]:
    from rktcfg.spec.templates import ENV, merge_variables

    merged: dict[str, Any] = {}
    for name in vars_files:
        path = os.path.abspath(name)
        fmt = readers.format_of(path)
        if fmt is None:
            state.problems.append(
                Problem(
                    "a vars file must be *.yaml, *.yml, *.json or *.toml",
                    file=name,
                    got=describe_value(os.path.basename(path)),
                )
            )
            continue
        text = state.read_text(path, name)
        if text is None:
            continue
        try:
            parsed = readers.parse_text(text, fmt, name)
        except ValidationError as exc:
            state.problems.extend(exc.problems)
            continue
        if ENV in parsed.data:
            state.problems.append(
                Problem(
                    f"{ENV!r} is the environment in templates and cannot be set",
                    file=name,
                    line=parsed.line_of((ENV,)),
                    field=ENV,
                )
            )
        merged = merge_variables(merged, parsed.data)
    for key, value in (variables or {}).items():
        if key == ENV:
            raise UsageError(f"--var {ENV}=...: {ENV!r} is the environment in templates")
        merged[key] = value
    merged[ENV] = dict(environ)
    return merged


def load(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    recursive: bool = False,
    variables: Mapping[str, Any] | None = None,
    vars_files: Iterable[str] = (),
    validate: str = "strict",
    environ: Mapping[str, str] | None = None,
    is_file: Callable[[str], bool] = os.path.isfile,
) -> Loaded:
    """See :func:`rktcfg.spec.load`."""
    from rktcfg.spec.build import Context, build_pod
    from rktcfg.spec.documents import split_documents

    if validate not in VALIDATE_MODES:
        raise UsageError(f"validate must be strict or warn (got {validate!r})")
    args = [os.fspath(p) for p in ([paths] if isinstance(paths, str | os.PathLike) else paths)]
    if not args:
        raise UsageError("give at least one pod file or directory")
    state = _Load(recursive=recursive, warn=validate == "warn")
    for arg in args:
        state.find(arg)
    renderer = None
    if any(f.template for f in state.files):
        from rktcfg.spec.templates import Renderer

        context = _variables(
            state, vars_files, variables, os.environ if environ is None else environ
        )
        renderer = Renderer(context, _read_template)
    else:
        _variables(state, vars_files, variables, {})  # still read and checked

    defined: dict[str, tuple[_File, int, int | None]] = {}
    pods: list[DesiredPod] = []
    for file in state.files:
        text = state.read_text(file.path, file.display)
        if text is None:
            continue
        if renderer is not None and file.template:
            try:
                text = renderer.render(text, file.path, file.display)
            except ValidationError as exc:
                state.problems.extend(exc.problems)
                continue
        documents, found = split_documents(text, file.fmt, file.display)
        state.problems.extend(found)
        if not documents and not found:
            # A file caught half-written (truncated, then rewritten) must never read as "its
            # pods are gone": under --prune that would remove them.
            state.problems.append(
                Problem(
                    "holds no pod (an empty pod file is an error, so that a file being "
                    "rewritten never prunes its pods; delete the file to remove them)",
                    file=file.display,
                    line=None,
                    field="",
                )
            )
            continue
        directory = os.path.dirname(file.path)
        for document in documents:
            ctx = Context(
                file=file.display,
                directory=directory,
                parsed=document.parsed,
                index=document.index,
                line=document.line,
                warn=state.warn,
                is_file=is_file,
            )
            built = build_pod(document.parsed.data, ctx)
            state.problems.extend(ctx.problems)
            state.notes.extend(ctx.notes)
            if built is None:
                continue
            first = defined.get(built.name)
            if first is not None:
                other, index, line = first
                state.problems.append(
                    Problem(
                        f'pod names must be unique: "{built.name}" is defined in '
                        f"{_at(other.display, line)} (document {index}) and "
                        f"{_at(file.display, built.line)} (document {document.index})",
                        file=file.display,
                        line=built.line,
                        field="metadata.name",
                    )
                )
                continue
            defined[built.name] = (file, document.index, built.line)
            pods.append(
                DesiredPod(
                    name=built.name,
                    source=file.path,
                    document=document.index,
                    spec=built.spec,
                    host_files=built.host_files,
                )
            )
    if renderer is not None:
        state.sources.update(renderer.read)
    if state.problems:
        raise ValidationError(state.problems, what="the pod files")
    return Loaded(
        pods=tuple(sorted(pods, key=lambda p: p.name)),
        notes=tuple(state.notes),
        sources=tuple(sorted(state.sources)),
        apply_set=apply_set_of(args),
    )


def _at(display: str, line: int | None) -> str:
    return display if line is None else f"{display}:{line}"


def apply_set_of(paths: Iterable[str]) -> str:
    """The default apply set: the directory applied, or the directory holding the file
    applied; for several paths, those directories sorted and joined with commas."""
    dirs = set()
    for path in paths:
        absolute = os.path.abspath(path)
        dirs.add(absolute if os.path.isdir(absolute) else os.path.dirname(absolute))
    return ",".join(sorted(dirs))
