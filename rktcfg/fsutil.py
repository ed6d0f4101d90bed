"""Small file-system helpers every store uses. Imports only ``os``."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO


class AtomicFile:
    """Write a file so that readers see the old content or all of the new, never a part:
    write ``<path>.<pid>.tmp``, fsync, rename over ``path``. On an exception nothing changes.

    ``with AtomicFile(path) as handle: handle.write(...)``
    """

    def __init__(self, path: str, mode: str = "wb") -> None:
        self.path = path
        self.tmp = f"{path}.{os.getpid()}.tmp"
        self.mode = mode
        self.handle: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes]:
        self.handle = open(self.tmp, self.mode)
        return self.handle

    def __exit__(self, kind: object, value: object, tb: object) -> None:
        assert self.handle is not None
        try:
            if kind is None:
                self.handle.flush()
                os.fsync(self.handle.fileno())
        finally:
            self.handle.close()
        if kind is None:
            os.replace(self.tmp, self.path)
        else:
            try:  # noqa: SIM105 - contextlib costs start-up time where this is used
                os.unlink(self.tmp)
            except OSError:
                pass


def flock_fd(fd: int, *, blocking: bool) -> bool:
    """Take an exclusive flock on ``fd``: True when taken, False when another open file
    description holds it and ``blocking`` is False. On any other error ``fd`` is closed."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except BaseException:
        os.close(fd)
        raise
    return True


def fsync_dir(path: str) -> None:
    """fsync the directory ``path``: a rename or unlink in it is then on disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def same_file(fd: int, path: str) -> bool:
    """Whether ``path`` (not followed if a symlink) is still the file open as ``fd``."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)
