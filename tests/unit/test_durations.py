from __future__ import annotations

import pytest

from rktcfg.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("24h", 24 * 3600 * 10**9),
        ("1h30m", 5400 * 10**9),
        ("90s", 90 * 10**9),
        ("500ms", 5 * 10**8),
        ("1.5s", 15 * 10**8),
    ],
)
def test_durations(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize("bad", ["", "soon", "10", "1d", "h1", "1h 30m", "-1s"])
def test_bad_durations(bad: str) -> None:
    with pytest.raises(ValueError, match="must be a duration"):
        parse_duration(bad)
