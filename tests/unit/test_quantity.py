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


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1k", Fraction(1000)),
        ("1K", Fraction(1000)),  # the appc spec's spelling; Go refuses it, we read it as k
        ("3n", Fraction(3, 10**9)),
        ("250000u", Fraction(1, 4)),
        ("1Ti", Fraction(2**40)),
        ("1Pi", Fraction(2**50)),
        ("1Ei", Fraction(2**60)),
        ("2T", Fraction(2 * 10**12)),
        ("2P", Fraction(2 * 10**15)),
        ("2E", Fraction(2 * 10**18)),  # exa, not an exponent
        ("2E2", Fraction(200)),
        ("1.5Gi", Fraction(3 * 2**29)),
        ("+5", Fraction(5)),
        ("-0", Fraction(0)),
    ],
)
def test_every_suffix(text: str, value: Fraction) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("bad", ["-1", "-500m", "-1Gi", -2, -0.5])
def test_negative_quantities_say_so(bad: object) -> None:
    with pytest.raises(QuantityError, match="must not be negative"):
        parse_quantity(bad)
    with pytest.raises(
        QuantityError, match=r"^must be a CPU quantity like 500m or 2, not negative"
    ):
        parse_cpu_millis(bad)
    with pytest.raises(QuantityError, match=r"^must be a memory quantity .*, not negative$"):
        parse_memory_bytes(bad)


@pytest.mark.parametrize("bad", ["1KI", "1kI", "1ki", "1e", "1Mb", "Ki", "1e1000"])
def test_bad_suffixes(bad: str) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(bad)


def test_integers_in_base_units() -> None:
    assert parse_cpu_millis("1") == 1000 and isinstance(parse_cpu_millis("1"), int)
    assert parse_cpu_millis("100000u") == 100
    assert parse_memory_bytes("4096") == 4096 and isinstance(parse_memory_bytes("4Ki"), int)
    assert parse_memory_bytes("4Ki") == 4096
    assert parse_memory_bytes("5K") == 5000
    assert parse_memory_bytes("42Mi") == 44040192
    assert parse_memory_bytes("1e9") == 10**9
    with pytest.raises(QuantityError, match="at least 4096 bytes"):
        parse_memory_bytes("4095")
    with pytest.raises(QuantityError, match="at least 4096 bytes"):
        parse_memory_bytes("4K")


@pytest.mark.parametrize(
    ("value", "parse"), [("1e20", "memory"), ("9Ei", "memory"), ("1e100", "cpu")]
)
def test_quantities_beyond_the_kernels_64_bits_are_refused(value: str, parse: str) -> None:
    from rktcfg.isolators.quantity import QuantityError, parse_cpu_millis, parse_memory_bytes

    with pytest.raises(QuantityError, match="at most"):
        (parse_memory_bytes if parse == "memory" else parse_cpu_millis)(value)
