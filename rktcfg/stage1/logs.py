"""App logs: the supervisor writes each app's stdout and stderr to rotating files; ``rktcfg
logs`` reads and follows them.

Layout in the app directory (``<pod>/apps/<app>/``), per stream (``stdout``, ``stderr``)::

    stdout.log       the file being written
    stdout.log.1     the previous one (complete, never written again)
    ...
    stdout.log.N     the oldest kept; N = keep - 1

Each file is a sequence of records, one a line::

    <time> <tag> <data>\\n

    2026-01-02T03:04:05.123456789Z F GET /index.html 200
    2026-01-02T03:04:05.200000000Z P progress: 10%...

* ``<time>``: when the record was written, RFC 3339 in UTC with exactly nine fractional
  digits, so every timestamp is 30 bytes and sorts as text. The records one writer writes
  never go back in time (it clamps a clock that steps back).
* ``<tag>``: ``F`` if the app wrote a newline after ``<data>``, ``P`` (partial) if it did not:
  the line was longer than :data:`MAX_LINE` and goes on in the next record, or the app
  stopped without ending its last line. The tags are those of the CRI log format (kubelet,
  containerd), minus its stream field, which here is the file name.
* ``<data>``: the app's bytes as they were, without the newline: any byte but ``\\n``,
  including NUL and invalid UTF-8, at most :data:`MAX_LINE` bytes.

So the app's output is ``data + b"\\n"`` for each ``F`` record and ``data`` for each ``P``
record, concatenated (:meth:`LogLine.as_written`), and ``cat stdout.log`` shows it readably.
A line that does not parse (a file damaged by hand) is read as an ``F`` record whose data is
the whole line, at the time of the record before it.

Writing: the supervisor feeds :class:`RotatingLog` chunks as they come from the pipe. Complete
lines are written at once, with one ``write(2)`` per chunk (no user-space buffer: a reader sees
them immediately); the unterminated tail of a chunk waits in memory for its newline, and is
written as a ``P`` record when it grows beyond :data:`MAX_LINE` or on :meth:`RotatingLog.close`.
Before a record that would take the file beyond ``max_bytes`` the file is rotated
(``.log.k-1`` -> ``.log.k``, ..., ``.log`` -> ``.log.1``, the oldest dropped), so no record is
ever split across files; a record larger than ``max_bytes`` by itself gets a file of its own.
There is no fsync: ``close()`` hands everything to the kernel.

Reading copes with a writer at work: a record without its newline yet at the end of the file is
held back until it is complete (and returned as it is when reading stops), rotation is noticed
by the inode behind the name changing (truncation by the size shrinking), and the files are
opened so that a rotation during the opening is detected and the opening redone.

Imported by the supervisor: the standard library only, and only cheap modules (no
``dataclasses``, which costs tens of milliseconds through ``inspect``).
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from typing import Any

DEFAULT_MAX_BYTES = 10 << 20
DEFAULT_KEEP = 3
#: The most data one record holds; longer lines are split into ``P`` records.
MAX_LINE = 64 << 10
STREAMS = ("stdout", "stderr")

_TIME_LEN = 30  # len("2026-01-02T03:04:05.123456789Z")
_HEADER_LEN = _TIME_LEN + 3  # time, space, tag, space
_MAX_RECORD = _HEADER_LEN + MAX_LINE + 1
_READ_SIZE = 1 << 16
_OPEN_ATTEMPTS = 100


def log_path(app_dir: str, stream: str) -> str:
    """The file being written for one stream of an app."""
    return os.path.join(app_dir, f"{stream}.log")


# --- timestamps ------------------------------------------------------------------------------


def format_time(time_ns: int) -> bytes:
    """``2026-01-02T03:04:05.123456789Z`` (UTC, always nine fractional digits)."""
    seconds, fraction = divmod(time_ns, 1_000_000_000)
    return _format_seconds(seconds) + b"%09dZ" % fraction


def _format_seconds(seconds: int) -> bytes:
    tm = time.gmtime(seconds)
    return b"%04d-%02d-%02dT%02d:%02d:%02d." % (
        tm.tm_year,
        tm.tm_mon,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
    )


def parse_time(text: bytes) -> int | None:
    """Nanoseconds since the epoch from :func:`format_time`'s form, or None if it is not that."""
    if len(text) != _TIME_LEN or text[29:30] != b"Z" or not text[20:29].isdigit():
        return None
    seconds = _parse_seconds(text[:20])
    return None if seconds is None else seconds + int(text[20:29])


def _parse_seconds(text: bytes) -> int | None:
    """``2026-01-02T03:04:05.`` in nanoseconds since the epoch, or None."""
    if text[4:5] != b"-" or text[7:8] != b"-" or text[10:11] != b"T":
        return None
    if text[13:14] != b":" or text[16:17] != b":" or text[19:20] != b".":
        return None
    fields = (text[0:4], text[5:7], text[8:10], text[11:13], text[14:16], text[17:19])
    if not all(field.isdigit() for field in fields):
        return None
    year, month, day, hour, minute, second = (int(field) for field in fields)
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        return None
    days = _days_from_civil(year, month, day)
    return (((days * 24 + hour) * 60 + minute) * 60 + second) * 1_000_000_000


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


# --- writing ---------------------------------------------------------------------------------


class RotatingLog:
    """The writer of one stream's files (``apps/<app>/stdout.log``), appending to what is there.

    Not thread-safe: one writer per stream. ``write`` raises ``OSError`` when the file system
    does (full disk): the records of that call that were not written are lost, the writer stays
    usable.
    """

    def __init__(
        self,
        path: str,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        keep: int = DEFAULT_KEEP,
        now: Callable[[], int] = time.time_ns,
    ) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes: must be at least 1 (got {max_bytes})")
        if keep < 1:
            raise ValueError(f"keep: must be at least 1 (got {keep})")
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self._now = now
        self._pending = bytearray()
        self._last_ns = 0
        self._second = -1
        self._second_text = b""
        self._fd: int | None = None
        self._size = 0
        self._open()

    def _open(self) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        self._fd = os.open(self.path, flags, 0o640)
        self._size = os.fstat(self._fd).st_size

    def _time(self) -> bytes:
        time_ns = max(self._now(), self._last_ns)
        self._last_ns = time_ns
        seconds, fraction = divmod(time_ns, 1_000_000_000)
        if seconds != self._second:
            self._second, self._second_text = seconds, _format_seconds(seconds)
        return self._second_text + b"%09dZ" % fraction

    def write(self, data: bytes) -> None:
        """Log a chunk of the app's output: complete lines now, an unterminated tail later."""
        if self._fd is None:
            raise ValueError(f"{self.path}: write to a closed log")
        if not data:
            return
        stamp = self._time()
        pending = self._pending
        pending += data
        records: list[bytes] = []
        start = 0
        while (end := pending.find(b"\n", start)) >= 0:
            start = self._split(records, stamp, pending, start, end)
            records.append(b"%s F %s\n" % (stamp, pending[start:end]))
            start = end + 1
        start = self._split(records, stamp, pending, start, len(pending))
        del pending[:start]
        if records:
            self._emit(records)

    @staticmethod
    def _split(records: list[bytes], stamp: bytes, buf: bytearray, start: int, end: int) -> int:
        """Cut ``P`` records off the line ``buf[start:end]`` while it is longer than MAX_LINE;
        where the rest begins."""
        while end - start > MAX_LINE:
            records.append(b"%s P %s\n" % (stamp, buf[start : start + MAX_LINE]))
            start += MAX_LINE
        return start

    def _emit(self, records: list[bytes]) -> None:
        batch = bytearray()
        for record in records:
            size = self._size + len(batch)
            if size > 0 and size + len(record) > self.max_bytes:
                self._write_all(batch)
                batch.clear()
                self._rotate()
            batch += record
        self._write_all(batch)

    def _write_all(self, batch: bytearray) -> None:
        assert self._fd is not None
        view = memoryview(batch)
        while view:
            written = os.write(self._fd, view)
            self._size += written
            view = view[written:]

    def _rotate(self) -> None:
        assert self._fd is not None
        os.close(self._fd)
        self._fd = None
        base = self.path
        try:
            if self.keep == 1:
                _unlink(base)
            else:
                for k in range(self.keep - 1, 1, -1):  # the oldest is replaced, so dropped
                    try:  # noqa: SIM105 - contextlib costs the supervisor start-up time
                        os.replace(f"{base}.{k - 1}", f"{base}.{k}")
                    except FileNotFoundError:
                        pass
                os.replace(base, f"{base}.1")
            k = self.keep  # left over from a larger keep
            while _unlink(f"{base}.{k}"):
                k += 1
        finally:
            self._open()  # if a rename failed, go on appending to the current file

    def close(self) -> None:
        """Write the unterminated tail as a ``P`` record and close the file. Idempotent."""
        if self._fd is None:
            return
        try:
            if self._pending:
                record = b"%s P %s\n" % (self._time(), self._pending)
                self._pending.clear()
                self._emit([record])
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> RotatingLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


# --- reading ---------------------------------------------------------------------------------


_set = object.__setattr__


class LogLine:
    """One record of an app's output: a frozen value.

    ``data`` is a line without its newline; ``partial`` says the app wrote no newline after it
    (a line longer than :data:`MAX_LINE` that goes on in the next record of the stream, or the
    app's last output). Written by hand rather than as a dataclass, which would cost the
    supervisor ~50 ms of imports.
    """

    __slots__ = ("app", "data", "partial", "stream", "time_ns")
    __match_args__ = ("time_ns", "stream", "app", "data", "partial")

    time_ns: int
    stream: str
    app: str
    data: bytes
    partial: bool

    def __init__(
        self, *, time_ns: int, stream: str, app: str, data: bytes, partial: bool = False
    ) -> None:
        _set(self, "time_ns", time_ns)
        _set(self, "stream", stream)
        _set(self, "app", app)
        _set(self, "data", data)
        _set(self, "partial", partial)

    def as_written(self) -> bytes:
        """The bytes as the app wrote them: ``data``, and the newline unless partial."""
        return self.data if self.partial else self.data + b"\n"

    def _fields(self) -> tuple[int, str, str, bytes, bool]:
        return (self.time_ns, self.stream, self.app, self.data, self.partial)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LogLine):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return (
            f"LogLine(time_ns={self.time_ns!r}, stream={self.stream!r}, app={self.app!r}, "
            f"data={self.data!r}, partial={self.partial!r})"
        )

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"LogLine is frozen: cannot set {name}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"LogLine is frozen: cannot delete {name}")


def _file_id(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def _rotated_names(path: str) -> list[str]:
    """``<path>.N`` in the directory, oldest (highest N) first."""
    directory, base = os.path.split(path)
    prefix = base + "."
    numbers = []
    try:
        names = os.listdir(directory or ".")
    except FileNotFoundError:
        return []
    for name in names:
        suffix = name[len(prefix) :]
        if name.startswith(prefix) and suffix.isdigit() and suffix.isascii():
            numbers.append(int(suffix))
    return [f"{path}.{n}" for n in sorted(numbers, reverse=True)]


def _open_chain(path: str) -> list[tuple[tuple[int, int], int]]:
    """Open a stream's files, oldest first: (file id, fd) each.

    A rotation renames ``path`` last (after moving ``.k-1`` to ``.k`` from the top down), so the
    opening is consistent when ``path`` names the same file before the listing and after the
    last open, every listed name opened, and every opened file is still under its name.
    Otherwise, close everything and start again; after many attempts (a writer that rotates
    all the time, with many files), go on with the last, which may miss or repeat a file.
    """
    chain: list[tuple[tuple[int, int], int]] = []
    for attempt in range(_OPEN_ATTEMPTS):
        try:
            before: tuple[int, int] | None = _file_id(os.stat(path))
        except FileNotFoundError:
            before = None
        names = [*_rotated_names(path), path]
        chain, opened, stable = [], [], True
        for name in names:
            try:
                fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                stable = name == path and before is None
                if not stable:
                    break
                continue
            ident = _file_id(os.fstat(fd))
            chain.append((ident, fd))
            opened.append((name, ident))
        if stable:
            stable = all(_same_file(name, ident) for name, ident in opened)
            if before is not None and (not opened or opened[-1] != (path, before)):
                stable = False
        if stable or attempt == _OPEN_ATTEMPTS - 1:
            return chain  # the last attempt as it is: the writer rotates without a pause
        for _, fd in chain:
            os.close(fd)
        time.sleep(attempt / 100_000)  # let a rotation under way finish
    return chain


def _same_file(name: str, ident: tuple[int, int]) -> bool:
    try:
        return _file_id(os.stat(name)) == ident
    except FileNotFoundError:
        return False


class _Stream:
    """A reader of one stream's files that remembers where it is, across rotations."""

    def __init__(self, app_dir: str, app: str, stream: str) -> None:
        self.path = log_path(app_dir, stream)
        self.app = app
        self.stream = stream
        self._fd: int | None = None
        self._ident: tuple[int, int] | None = None
        self._offset = 0
        self._pending = bytearray()
        self._last_ns = 0
        self._second_text = b""
        self._second_ns: int | None = None

    def read_new(self) -> list[LogLine]:
        """The complete records written since the last call."""
        out: list[LogLine] = []
        if self._fd is not None:
            self._drain(out)
            try:
                st: os.stat_result | None = os.stat(self.path)
            except FileNotFoundError:
                st = None
            if st is not None and _file_id(st) == self._ident:
                if st.st_size < self._offset:  # truncated: start again from its beginning
                    self._offset = 0
                    self._pending.clear()
                    self._drain(out)
                return out
            self._drain(out)  # what was written before the rename
        chain = _open_chain(self.path)
        successors = chain
        for index, (ident, _) in enumerate(chain):
            if ident == self._ident:
                successors = chain[index + 1 :]
                for _, fd in chain[: index + 1]:  # older files, and ours opened again
                    os.close(fd)
                break
        if self._fd is not None:
            if chain and not successors:
                return out  # ours is still the newest (the new file is not there yet)
            self._leave(out)
        for number, (ident, fd) in enumerate(successors):
            self._fd, self._ident, self._offset = fd, ident, 0
            self._drain(out)
            if number < len(successors) - 1:
                self._leave(out)
        return out

    def _drain(self, out: list[LogLine]) -> None:
        assert self._fd is not None
        pending = self._pending
        while chunk := os.pread(self._fd, _READ_SIZE, self._offset):
            self._offset += len(chunk)
            start = len(pending)
            pending += chunk
            end = pending.rfind(b"\n", start)
            if end < 0:
                if len(pending) > _MAX_RECORD:  # not a record being written: not our format
                    out.append(self._parse(bytes(pending)))
                    pending.clear()
                continue
            for raw in bytes(pending[:end]).split(b"\n"):
                out.append(self._parse(raw))
            del pending[: end + 1]

    def _parse(self, raw: bytes) -> LogLine:
        time_ns = None
        if raw[29:33] in (b"Z F ", b"Z P ") and raw[20:29].isdigit():
            second = raw[:20]
            if second != self._second_text:  # records come in bursts: parse a second once
                self._second_text, self._second_ns = second, _parse_seconds(second)
            if self._second_ns is not None:
                time_ns = self._second_ns + int(raw[20:29])
        if time_ns is None:
            return LogLine(time_ns=self._last_ns, stream=self.stream, app=self.app, data=raw)
        self._last_ns = time_ns
        return LogLine(
            time_ns=time_ns,
            stream=self.stream,
            app=self.app,
            data=raw[_HEADER_LEN:],
            partial=raw[31] == 0x50,  # P
        )

    def _leave(self, out: list[LogLine]) -> None:
        """Done with the current file: a torn last record as it is, then close."""
        if self._pending:
            out.append(self._parse(bytes(self._pending)))
            self._pending.clear()
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._ident, self._offset = None, None, 0

    def close(self, out: list[LogLine]) -> None:
        """Stop reading: a torn last record as it is."""
        self._leave(out)


def _merge(batches: list[list[LogLine]]) -> list[LogLine]:
    """Merge in time order; on equal times the earlier batch first (each batch keeps its order)."""
    import heapq

    return list(heapq.merge(*batches, key=lambda line: line.time_ns))


def _select(lines: list[LogLine], since_ns: int | None, tail: int | None) -> list[LogLine]:
    if since_ns is not None:
        lines = [line for line in lines if line.time_ns >= since_ns]
    if tail is not None:
        lines = lines[len(lines) - tail :] if tail else []
    return lines


def _check_tail(tail: int | None) -> None:
    if tail is not None and tail < 0:
        raise ValueError(f"tail: must be 0 or more (got {tail})")


def read_lines(
    app_dir: str,
    app: str,
    *,
    streams: Sequence[str] = STREAMS,
    since_ns: int | None = None,
    tail: int | None = None,
) -> list[LogLine]:
    """The kept records of an app, oldest file first, the streams merged in time order (on equal
    times in the order of ``streams``: stdout before stderr), those at or after ``since_ns``,
    the last ``tail`` of them. Missing files read as empty."""
    _check_tail(tail)
    batches = []
    for stream in streams:
        reader = _Stream(app_dir, app, stream)
        lines = reader.read_new()
        reader.close(lines)
        batches.append(lines)
    return _select(_merge(batches), since_ns, tail)


def follow(
    app_dirs: dict[str, str],
    *,
    streams: Sequence[str] = STREAMS,
    since_ns: int | None = None,
    tail: int | None = None,
    stop: Callable[[], bool],
    poll: float = 0.1,
    wake: Any = None,
) -> Iterator[LogLine]:
    """The records of several apps (name -> app directory): first those kept, as
    :func:`read_lines` across the apps (ties in the order of ``app_dirs``, then of ``streams``),
    then new ones as they are written, through rotations (looked for after 5 ms, backing
    off to every ``poll`` seconds while nothing comes). Lines written
    in one poll interval are merged in time order; ``since_ns`` applies to them too, ``tail``
    only to the kept ones.

    ``stop`` is asked before each look at the files; once it has said True, the records written
    until then are yielded (a torn last record as it is) and the iteration ends. A writer that
    rotates through all ``keep`` files between two looks loses the records of the files dropped
    in between; the reader goes on from the oldest kept file. ``wake`` (an Event) cuts a wait
    short, so the end is seen at once.
    """
    _check_tail(tail)
    readers = [
        _Stream(app_dir, app, stream) for app, app_dir in app_dirs.items() for stream in streams
    ]
    try:
        first = True
        idle = 0.005  # a quiet pod is looked at less often, up to every ``poll`` seconds
        while True:
            stopping = stop()
            batches = [reader.read_new() for reader in readers]
            if stopping:
                for reader, batch in zip(readers, batches, strict=True):
                    reader.close(batch)
            lines = _select(_merge(batches), since_ns, tail if first else None)
            first = False
            yield from lines
            if stopping:
                return
            if any(batches):
                idle = 0.005
            elif wake is not None:  # a threading.Event set when ``stop`` turns true
                wake.wait(min(idle, poll))
                idle *= 2
            else:
                time.sleep(min(idle, poll))
                idle *= 2
    finally:
        for reader in readers:
            reader.close([])
