"""Test tiers and isolation.

Tiers by directory: ``tests/unit`` (pure, fast), ``tests/integration`` (real files, processes,
locks), ``tests/privileged`` (root and kernel features). A privileged test on a machine without
the privilege is skipped with the reason -- except under ``CI=true``, where it fails, so CI can
never pass by skipping what it was meant to prove.

Every test runs with a private HOME, XDG directories and no RKTCFG_* variables, so nothing
reads or writes /etc/rktcfg, ~/.config or /var/lib/rktcfg.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VENDOR = REPO / "configs"
TIERS = ("unit", "integration", "privileged")


def privilege_missing() -> str | None:
    """Why privileged tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (namespaces, mounts, cgroups)"
    return None


def privilege_outcome(reason: str | None, ci: bool) -> str:
    """What a privileged test does: "run", "skip" or "fail" (under CI a skip is a failure)."""
    if reason is None:
        return "run"
    return "fail" if ci else "skip"


def require(ok: bool, reason: str) -> None:
    """In a privileged test: skip when this host lacks what ``reason`` names, except under
    CI=true, where that is a failure (the same policy as the privileged tier's)."""
    if ok:
        return
    if privilege_outcome(reason, os.environ.get("CI") == "true") == "fail":
        pytest.fail(f"privileged test cannot run under CI=true: {reason}")
    pytest.skip(f"privileged: {reason}")


def _unmount_test_leftovers() -> None:
    """Unmount anything left mounted below pytest's temporary directories.

    A fly pod bind-mounts the host's /dev, /proc and /sys into its rootfs. If a failed test
    left one mounted, pytest's own removal of old temporary directories would recurse into
    those binds, so every session makes sure nothing is mounted below them, first and last.
    """
    if os.geteuid() != 0 or not os.path.exists("/proc/self/mountinfo"):
        return
    import getpass
    import tempfile

    from rktcfg.stage1 import linux

    base = Path(tempfile.gettempdir()) / f"pytest-of-{getpass.getuser()}"
    if linux.mounts_below(str(base)):
        linux.unmount_below(str(base))


def pytest_sessionstart(session: pytest.Session) -> None:
    _unmount_test_leftovers()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _unmount_test_leftovers()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(REPO / "tests").parts
        tier = parts[0] if parts and parts[0] in TIERS else "unit"
        item.add_marker(getattr(pytest.mark, tier))
        if tier == "privileged":
            item.add_marker(pytest.mark.privileged)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("privileged") is None:
        return
    reason = privilege_missing()
    require(reason is None, reason or "")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HOME and XDG dirs; no RKTCFG_* from the caller's environment."""
    home = tmp_path_factory.mktemp("home")
    for name in list(os.environ):
        if name.startswith("RKTCFG_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("RKTCFG_SYSTEM_CONFIG", str(home / "etc-rktcfg"))
    return home


@pytest.fixture
def layers(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """Empty system and user layer directories for a test to fill."""
    made = {name: tmp_path / name for name in ("system", "user")}
    for path in made.values():
        path.mkdir()
    yield made
