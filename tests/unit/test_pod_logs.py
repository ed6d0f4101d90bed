from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rktcfg.stage1.logs import (
    MAX_LINE,
    LogLine,
    RotatingLog,
    follow,
    format_time,
    log_path,
    parse_time,
    read_lines,
)

T0 = 1_767_323_045_123_456_789  # 2026-01-02T03:04:05.123456789Z


def clock(start: int = T0, step: int = 1000) -> Callable[[], int]:
    """A fake ``now``: start, start + step, ... (thread-safe enough: itertools.count)."""
    counter = itertools.count(start, step)
    return lambda: next(counter)


def writer(app_dir: Path, stream: str = "stdout", **kwargs: object) -> RotatingLog:
    kwargs.setdefault("now", clock())
    return RotatingLog(log_path(str(app_dir), stream), **kwargs)  # type: ignore[arg-type]


def datas(lines: list[LogLine]) -> list[bytes]:
    return [line.data for line in lines]


def files(app_dir: Path, stream: str = "stdout") -> list[str]:
    return sorted(name for name in os.listdir(app_dir) if name.startswith(f"{stream}.log"))


def output(lines: list[LogLine]) -> bytes:
    return b"".join(line.as_written() for line in lines)


# --- timestamps and the format ---------------------------------------------------------------


def test_time_format_round_trips() -> None:
    assert format_time(T0) == b"2026-01-02T03:04:05.123456789Z"
    assert format_time(0) == b"1970-01-01T00:00:00.000000000Z"
    for value in (0, 1, T0, 951_782_400 * 10**9 + 5, 4_102_444_799 * 10**9 + 999_999_999):
        assert parse_time(format_time(value)) == value


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"2026-01-02T03:04:05Z",
        b"2026-01-02 03:04:05.123456789Z",
        b"2026-13-02T03:04:05.1234567890",
    ],
)
def test_parse_time_rejects_other_forms(bad: bytes) -> None:
    assert parse_time(bad) is None


def test_records_on_disk(tmp_path: Path) -> None:
    log = writer(tmp_path, now=clock(T0, 10**9))
    log.write(b"hello\n\nworld")
    log.close()
    assert (tmp_path / "stdout.log").read_bytes() == (
        b"2026-01-02T03:04:05.123456789Z F hello\n"
        b"2026-01-02T03:04:05.123456789Z F \n"
        b"2026-01-02T03:04:06.123456789Z P world\n"
    )


def test_timestamps_and_since(tmp_path: Path) -> None:
    log = writer(tmp_path, now=clock(T0, 10**9))
    for n in range(5):
        log.write(b"line %d\n" % n)
    log.close()
    lines = read_lines(str(tmp_path), "web")
    assert [line.time_ns for line in lines] == [T0 + n * 10**9 for n in range(5)]
    assert {(line.app, line.stream) for line in lines} == {("web", "stdout")}
    since = read_lines(str(tmp_path), "web", since_ns=T0 + 2 * 10**9)
    assert datas(since) == [b"line 2", b"line 3", b"line 4"]
    assert read_lines(str(tmp_path), "web", since_ns=T0 + 5 * 10**9) == []


def test_a_clock_stepping_back_does_not_reorder(tmp_path: Path) -> None:
    times = iter([T0, T0 - 5, T0 + 7])
    log = writer(tmp_path, now=lambda: next(times))
    log.write(b"a\n")
    log.write(b"b\n")
    log.write(b"c\n")
    log.close()
    lines = read_lines(str(tmp_path), "web")
    assert [(line.data, line.time_ns) for line in lines] == [(b"a", T0), (b"b", T0), (b"c", T0 + 7)]


# --- lines -----------------------------------------------------------------------------------


def test_partial_lines_across_writes(tmp_path: Path) -> None:
    log = writer(tmp_path)
    log.write(b"hel")
    log.write(b"lo\nwor")
    assert datas(read_lines(str(tmp_path), "web")) == [b"hello"]  # the tail waits
    log.write(b"ld\nlast without newline")
    log.close()
    lines = read_lines(str(tmp_path), "web")
    assert datas(lines) == [b"hello", b"world", b"last without newline"]
    assert [line.partial for line in lines] == [False, False, True]
    assert output(lines) == b"hello\nworld\nlast without newline"


def test_binary_data_is_preserved(tmp_path: Path) -> None:
    data = bytes(range(256)).replace(b"\n", b"") + b"\xff\xfe\x00\x00\xc3(\r"
    log = writer(tmp_path)
    log.write(data + b"\n" + data)
    log.close()
    lines = read_lines(str(tmp_path), "web")
    assert datas(lines) == [data, data]
    assert output(lines) == data + b"\n" + data


def test_long_tail_is_flushed_as_partial_records(tmp_path: Path) -> None:
    log = writer(tmp_path)
    log.write(b"x" * MAX_LINE)  # not beyond the limit: still waits
    assert read_lines(str(tmp_path), "web") == []
    log.write(b"y" * 10)
    first = read_lines(str(tmp_path), "web")
    assert datas(first) == [b"x" * MAX_LINE] and first[0].partial
    log.write(b"z\n")
    log.close()
    lines = read_lines(str(tmp_path), "web")
    assert [(len(line.data), line.partial) for line in lines] == [(MAX_LINE, True), (11, False)]
    assert output(lines) == b"x" * MAX_LINE + b"y" * 10 + b"z\n"


def test_records_do_not_depend_on_chunking(tmp_path: Path) -> None:
    stream = b"short\n" + b"L" * (2 * MAX_LINE + 5) + b"\n" + b"M" * MAX_LINE + b"\nend\n"
    whole, chunked = tmp_path / "whole", tmp_path / "chunked"
    whole.mkdir()
    chunked.mkdir()
    with writer(whole, now=lambda: T0) as log:
        log.write(stream)
    with writer(chunked, now=lambda: T0) as log:
        for start in range(0, len(stream), 1000):
            log.write(stream[start : start + 1000])
    assert (whole / "stdout.log").read_bytes() == (chunked / "stdout.log").read_bytes()
    lines = read_lines(str(whole), "web")
    assert [(len(line.data), line.partial) for line in lines] == [
        (5, False),
        (MAX_LINE, True),
        (MAX_LINE, True),
        (5, False),
        (MAX_LINE, False),
        (3, False),
    ]
    assert output(lines) == stream


def test_damaged_lines_are_read_as_data(tmp_path: Path) -> None:
    good = format_time(T0) + b" F fine\n"
    (tmp_path / "stdout.log").write_bytes(good + b"garbage\n" + format_time(T0)[:20] + b"\n")
    lines = read_lines(str(tmp_path), "web")
    assert datas(lines) == [b"fine", b"garbage", format_time(T0)[:20]]
    assert [line.time_ns for line in lines] == [T0, T0, T0]


def test_appends_to_an_existing_log(tmp_path: Path) -> None:
    with writer(tmp_path) as log:
        log.write(b"first run\n")
    with writer(tmp_path) as log:
        log.write(b"second run\n")
    assert datas(read_lines(str(tmp_path), "web")) == [b"first run", b"second run"]


def test_write_after_close_is_an_error(tmp_path: Path) -> None:
    log = writer(tmp_path)
    log.close()
    log.close()
    with pytest.raises(ValueError, match="closed"):
        log.write(b"x\n")


def test_log_line_is_a_frozen_value() -> None:
    line = LogLine(time_ns=1, stream="stdout", app="web", data=b"x")
    assert line == LogLine(time_ns=1, stream="stdout", app="web", data=b"x", partial=False)
    assert line != LogLine(time_ns=1, stream="stdout", app="web", data=b"x", partial=True)
    assert len({line, LogLine(time_ns=1, stream="stdout", app="web", data=b"x")}) == 1
    assert "data=b'x'" in repr(line)
    with pytest.raises(AttributeError):
        line.data = b"y"


# --- rotation --------------------------------------------------------------------------------


def record_size(data: bytes) -> int:
    return 33 + len(data) + 1


def test_rotation_keeps_keep_files_and_never_splits_a_record(tmp_path: Path) -> None:
    per_record = record_size(b"line 00")
    log = writer(tmp_path, max_bytes=3 * per_record + 10, keep=3)
    for n in range(20):
        log.write(b"line %02d\n" % n)
    log.close()
    assert files(tmp_path) == ["stdout.log", "stdout.log.1", "stdout.log.2"]
    for name in files(tmp_path):
        content = (tmp_path / name).read_bytes()
        assert content.endswith(b"\n") and len(content) <= 3 * per_record + 10
        assert content.count(b"\n") == 3 or name == "stdout.log"
    # 20 records, 3 a file: the last two files hold 3 + 2, and the one before them 3
    assert datas(read_lines(str(tmp_path), "web")) == [b"line %02d" % n for n in range(12, 20)]


def test_rotation_inside_one_chunk(tmp_path: Path) -> None:
    log = writer(tmp_path, max_bytes=2 * record_size(b"n0"), keep=4)
    log.write(b"".join(b"n%d\n" % n for n in range(8)))
    log.close()
    assert files(tmp_path) == ["stdout.log", "stdout.log.1", "stdout.log.2", "stdout.log.3"]
    for name in files(tmp_path):
        assert (tmp_path / name).read_bytes().count(b"\n") == 2
    assert datas(read_lines(str(tmp_path), "web")) == [b"n%d" % n for n in range(8)]


def test_keep_one(tmp_path: Path) -> None:
    log = writer(tmp_path, max_bytes=record_size(b"n0"), keep=1)
    log.write(b"n0\nn1\nn2\n")
    log.close()
    assert files(tmp_path) == ["stdout.log"]
    assert datas(read_lines(str(tmp_path), "web")) == [b"n2"]


def test_an_oversize_record_goes_alone_into_a_file(tmp_path: Path) -> None:
    log = writer(tmp_path, max_bytes=100, keep=5)
    big = b"B" * 300
    log.write(b"before\n" + big + b"\nafter\n")
    log.close()
    assert files(tmp_path) == ["stdout.log", "stdout.log.1", "stdout.log.2"]
    assert (tmp_path / "stdout.log.1").read_bytes() == format_time(T0) + b" F " + big + b"\n"
    assert datas(read_lines(str(tmp_path), "web")) == [b"before", big, b"after"]


def test_rotation_drops_files_left_by_a_larger_keep(tmp_path: Path) -> None:
    with writer(tmp_path, max_bytes=1, keep=5) as log:
        log.write(b"a\nb\nc\nd\ne\n")
    assert len(files(tmp_path)) == 5
    with writer(tmp_path, max_bytes=1, keep=2) as log:
        log.write(b"f\n")
    assert files(tmp_path) == ["stdout.log", "stdout.log.1"]
    assert datas(read_lines(str(tmp_path), "web")) == [b"e", b"f"]


def test_bad_limits() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        RotatingLog("/nonexistent/x.log", max_bytes=0)
    with pytest.raises(ValueError, match="keep"):
        RotatingLog("/nonexistent/x.log", keep=0)


# --- merging and tail ------------------------------------------------------------------------


def test_streams_are_merged_in_time_order(tmp_path: Path) -> None:
    now = clock(T0, 10)
    out = writer(tmp_path, "stdout", now=now)
    err = writer(tmp_path, "stderr", now=now)
    out.write(b"o1\n")
    err.write(b"e1\n")
    err.write(b"e2\n")
    out.write(b"o2\n")
    out.close()
    err.close()
    lines = read_lines(str(tmp_path), "web")
    assert [(line.stream, line.data) for line in lines] == [
        ("stdout", b"o1"),
        ("stderr", b"e1"),
        ("stderr", b"e2"),
        ("stdout", b"o2"),
    ]
    assert datas(read_lines(str(tmp_path), "web", streams=("stderr",))) == [b"e1", b"e2"]


def test_ties_put_stdout_first(tmp_path: Path) -> None:
    err = writer(tmp_path, "stderr", now=lambda: T0)
    out = writer(tmp_path, "stdout", now=lambda: T0)
    err.write(b"e1\ne2\n")
    out.write(b"o1\no2\n")
    err.close()
    out.close()
    assert datas(read_lines(str(tmp_path), "web")) == [b"o1", b"o2", b"e1", b"e2"]
    swapped = read_lines(str(tmp_path), "web", streams=("stderr", "stdout"))
    assert datas(swapped) == [b"e1", b"e2", b"o1", b"o2"]


def test_tail(tmp_path: Path) -> None:
    now = clock(T0, 10)
    out = writer(tmp_path, "stdout", now=now, max_bytes=100, keep=10)
    err = writer(tmp_path, "stderr", now=now)
    for n in range(6):
        (out if n % 2 else err).write(b"%d\n" % n)
    out.close()
    err.close()
    assert datas(read_lines(str(tmp_path), "web", tail=3)) == [b"3", b"4", b"5"]
    assert datas(read_lines(str(tmp_path), "web", tail=100)) == [b"%d" % n for n in range(6)]
    assert read_lines(str(tmp_path), "web", tail=0) == []
    since = read_lines(str(tmp_path), "web", since_ns=T0 + 20, tail=10)
    assert datas(since) == [b"2", b"3", b"4", b"5"]
    with pytest.raises(ValueError, match="tail"):
        read_lines(str(tmp_path), "web", tail=-1)


def test_missing_logs_read_as_empty(tmp_path: Path) -> None:
    assert read_lines(str(tmp_path / "nope"), "web") == []


# --- follow ----------------------------------------------------------------------------------


def nothing() -> None:
    pass


def scripted(steps: list[Callable[[], None]]) -> Callable[[], bool]:
    """A ``stop`` that runs one step per call, each before the reader's next look (the first
    before the first), then says stop."""
    pending = iter(steps)

    def stop() -> bool:
        step = next(pending, None)
        if step is None:
            return True
        step()
        return False

    return stop


def test_follow_yields_kept_lines_then_stops(tmp_path: Path) -> None:
    with writer(tmp_path) as log:
        log.write(b"a\nb\nc")
    lines = list(follow({"web": str(tmp_path)}, stop=lambda: True, poll=0))
    assert datas(lines) == [b"a", b"b", b"c"] and lines[-1].partial


def test_follow_drains_what_was_written_before_stop(tmp_path: Path) -> None:
    log = writer(tmp_path, max_bytes=2 * record_size(b"n0"), keep=3)
    log.write(b"n0\n")
    calls = 0

    def stop() -> bool:
        nonlocal calls
        calls += 1
        if calls < 3:
            log.write(b"n%d\n" % calls)
            return False
        log.write(b"n3\nn4\nlast")  # rotates, then the writer ends
        log.close()
        return True

    lines = list(follow({"web": str(tmp_path)}, stop=stop, poll=0))
    assert datas(lines) == [b"n0", b"n1", b"n2", b"n3", b"n4", b"last"]
    assert calls == 3


def test_follow_applies_tail_to_kept_lines_and_since_to_all(tmp_path: Path) -> None:
    log = writer(tmp_path, now=clock(T0, 10))
    log.write(b"0\n1\n")
    log.write(b"2\n")
    log.write(b"3\n")
    steps = [nothing, lambda: log.write(b"4\n")]
    lines = list(follow({"web": str(tmp_path)}, tail=2, stop=scripted(steps), poll=0))
    assert datas(lines) == [b"2", b"3", b"4"]
    lines = list(follow({"web": str(tmp_path)}, since_ns=T0 + 20, stop=lambda: True, poll=0))
    assert datas(lines) == [b"3", b"4"]


def test_follow_across_apps(tmp_path: Path) -> None:
    now = clock(T0, 10)
    dirs = {name: tmp_path / name for name in ("web", "db")}
    for directory in dirs.values():
        directory.mkdir()
    web, db = writer(dirs["web"], now=now), writer(dirs["db"], "stderr", now=now)
    web.write(b"w1\n")
    db.write(b"d1\n")
    steps = [nothing, lambda: db.write(b"d2\n"), lambda: web.write(b"w2\n")]
    lines = list(follow({k: str(v) for k, v in dirs.items()}, stop=scripted(steps), poll=0))
    assert [(line.app, line.stream, line.data) for line in lines] == [
        ("web", "stdout", b"w1"),
        ("db", "stderr", b"d1"),
        ("db", "stderr", b"d2"),
        ("web", "stdout", b"w2"),
    ]


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_follow_through_rotations_between_looks(tmp_path: Path, keep: int) -> None:
    """Between two looks the writer rotates as often as its files allow without dropping one
    the reader has not finished: keep - 1 times (and for keep=1, once, replacing the file)."""
    log = writer(tmp_path, max_bytes=2 * record_size(b"n00"), keep=keep)
    expected = []
    counter = itertools.count()

    def burst() -> None:
        # fill the current file, then keep - 1 more (or, for keep=1, the next one)
        for _ in range(2 * max(keep - 1, 1)):
            name = b"n%02d" % next(counter)
            expected.append(name)
            log.write(name + b"\n")

    burst()
    lines = list(follow({"web": str(tmp_path)}, stop=scripted([nothing] + [burst] * 5), poll=0))
    assert datas(lines) == expected


def test_follow_after_the_writer_outran_it(tmp_path: Path) -> None:
    """Rotated past every kept file between two looks: what was dropped is lost, nothing twice."""
    log = writer(tmp_path, max_bytes=record_size(b"n0"), keep=2)
    log.write(b"n0\n")

    def burst() -> None:
        log.write(b"n1\nn2\nn3\n")

    lines = list(follow({"web": str(tmp_path)}, stop=scripted([nothing, burst]), poll=0))
    assert datas(lines) == [b"n0", b"n2", b"n3"]


def test_follow_sees_a_truncated_file_from_its_start(tmp_path: Path) -> None:
    log = writer(tmp_path)
    log.write(b"a\nb\n")

    def truncate() -> None:
        os.truncate(tmp_path / "stdout.log", 0)
        log.write(b"c\n")

    lines = list(follow({"web": str(tmp_path)}, stop=scripted([nothing, truncate]), poll=0))
    assert datas(lines) == [b"a", b"b", b"c"]


def test_follow_waits_for_a_file_to_appear(tmp_path: Path) -> None:
    logs: list[RotatingLog] = []
    steps = [nothing, lambda: logs.append(writer(tmp_path)), lambda: logs[0].write(b"x\n")]
    lines = list(follow({"web": str(tmp_path)}, stop=scripted(steps), poll=0))
    logs[0].close()
    assert datas(lines) == [b"x"]


class Flow:
    """Keeps a writer thread at most ``lag`` lines ahead of the reader."""

    def __init__(self, lag: int) -> None:
        self.lag = lag
        self.written = 0
        self.consumed = 0
        self.changed = threading.Condition()

    def wrote(self, count: int) -> None:
        with self.changed:
            self.written += count
            if not self.changed.wait_for(self.caught_up, timeout=5):
                raise TimeoutError("the reader stopped reading")

    def caught_up(self) -> bool:
        return self.written - self.consumed <= self.lag

    def read(self) -> None:
        with self.changed:
            self.consumed += 1
            self.changed.notify_all()


def test_follow_while_a_thread_writes_and_rotates(tmp_path: Path) -> None:
    """A writer thread on both streams rotating every two records, at most a few lines ahead of
    the reader (so that it never drops a file the reader has not read): every line is yielded
    once, in order per stream."""
    count, keep = 400, 5
    now = clock()
    max_bytes = 2 * record_size(b"stdout 000")
    logs = {
        s: writer(tmp_path, s, now=now, max_bytes=max_bytes, keep=keep)
        for s in ("stdout", "stderr")
    }
    flow = Flow(lag=6)
    done = threading.Event()
    failure: list[BaseException] = []

    def write() -> None:
        try:
            for n in range(count):
                for stream, log in logs.items():
                    data = b"%s %03d\n" % (stream.encode(), n)
                    log.write(data[:4])  # a line in two pieces
                    log.write(data[4:])
                flow.wrote(len(logs))
            for log in logs.values():
                log.close()
        except BaseException as exc:
            failure.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=write)
    thread.start()
    seen: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
    lines: Iterator[LogLine] = follow({"web": str(tmp_path)}, stop=done.is_set, poll=0.001)
    for line in lines:
        seen[line.stream].append(line.data)
        flow.read()
    thread.join()
    assert not failure
    for stream in seen:
        assert seen[stream] == [b"%s %03d" % (stream.encode(), n) for n in range(count)]
    assert len(files(tmp_path, "stdout")) == keep
