"""The tier policy in conftest: privileged tests skip with a reason, but fail under CI."""

from __future__ import annotations

from conftest import privilege_outcome


def test_privileged_outcomes() -> None:
    assert privilege_outcome(None, ci=False) == "run"
    assert privilege_outcome(None, ci=True) == "run"
    assert privilege_outcome("needs root", ci=False) == "skip"
    assert privilege_outcome("needs root", ci=True) == "fail"
