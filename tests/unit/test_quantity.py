from __future__ import annotations

from fractions import Fraction

import pytest

from rktcfg.isolators.quantity import (
    QuantityError,
    parse_cpu_millis,
    parse_memory_bytes,
    parse_quantity,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Fraction(1, 2)),
        ("2", Fraction(2)),
        ("1.5", Fraction(3, 2)),
        ("128M", Fraction(128 * 10**6)),
        ("42Mi", Fraction(44040192)),
        ("1Gi", Fraction(2**30)),
        ("1e3", Fraction(1000)),
        ("1E-3", Fraction(1, 1000)),
        (".5", Fraction(1, 2)),
        (3, Fraction(3)),
        (0.25, Fraction(1, 4)),
    ],
)
def test_parse_quantity(text: object, value: Fraction) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("bad", ["lots", "", "1.2.3", "-1", "5 Mi", "1iB", True, None, [1], -2])
def test_bad_quantities(bad: object) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(bad)


def test_cpu_and_memory() -> None:
    assert parse_cpu_millis("500m") == 500
    assert parse_cpu_millis(2) == 2000
    with pytest.raises(QuantityError, match="whole millicores"):
        parse_cpu_millis("0.5m")
    assert parse_memory_bytes("128M") == 128_000_000
    assert parse_memory_bytes(8192) == 8192
    with pytest.raises(QuantityError, match=r"at least 4096 bytes.*did you mean M"):
        parse_memory_bytes("16m")  # milli-bytes: the classic typo for 16M
    with pytest.raises(QuantityError, match="whole number of bytes"):
        parse_memory_bytes("4096.5")
