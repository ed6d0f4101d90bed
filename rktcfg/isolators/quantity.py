"""Kubernetes-style resource quantities, as appc's resource isolators use them.

``500m`` is half a CPU, ``2`` two CPUs; ``128M`` is 128 * 10**6 bytes and ``1Gi`` 2**30.
Suffixes: decimal ``n u m k M G T P E`` (``m`` = 1/1000, ``n`` and ``u`` smaller still),
binary ``Ki Mi Gi Ti Pi Ei``, and exponents ``1e3``. ``K`` is read as ``k``: the appc spec
lists it although Go's parser refuses it. Negative quantities are refused. Pure: no I/O.
"""

from __future__ import annotations

import re
from fractions import Fraction

_SUFFIXES: dict[str, Fraction] = {
    "": Fraction(1),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "k": Fraction(10**3),
    "K": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}

_QUANTITY = re.compile(
    r"^(?P<sign>[+-]?)(?P<number>\d+(?:\.\d*)?|\.\d+)"
    r"(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|K|M|G|T|P|E)|[eE](?P<exp>[+-]?\d{1,3}))?$"
)

#: The largest limits the kernel takes (a signed 64-bit count; rkt's bounds).
MAX_MEMORY_BYTES = 2**63 - 1
MAX_CPU_MILLIS = (2**63 - 1) // 1000
#: Memory limits below this are refused (rkt's guard against typing ``16m`` for 16 MB).
MIN_MEMORY_BYTES = 4096


class QuantityError(ValueError):
    """Not a quantity; the message says what was expected."""


class NegativeQuantityError(QuantityError):
    """A well-formed quantity below zero."""


def parse_quantity(value: object) -> Fraction:
    """The exact value of a quantity given as a string or a number (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise QuantityError("must be a quantity")
    if isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")):
            raise QuantityError("must be a quantity")
        if value < 0:
            raise NegativeQuantityError("must not be negative")
        # A float's decimal text, not its binary value: 0.1 means one tenth.
        return Fraction(repr(value)) if isinstance(value, float) else Fraction(value)
    match = _QUANTITY.match(value.strip())
    if match is None:
        raise QuantityError("must be a quantity")
    number = Fraction(match.group("number"))
    if match.group("sign") == "-" and number != 0:
        raise NegativeQuantityError("must not be negative")
    if match.group("exp") is not None:
        return number * Fraction(10) ** int(match.group("exp"))
    return number * _SUFFIXES[match.group("suffix") or ""]


def parse_cpu_millis(value: object) -> int:
    """CPU as millicores: ``500m`` -> 500, ``2`` -> 2000. Must be at least 1m."""
    try:
        millis = parse_quantity(value) * 1000
    except NegativeQuantityError:
        raise QuantityError("must be a CPU quantity like 500m or 2, not negative") from None
    except QuantityError:
        raise QuantityError("must be a CPU quantity like 500m or 2") from None
    if millis < 1 or millis.denominator != 1:
        raise QuantityError("must be a CPU quantity of at least 1m, in whole millicores")
    if millis > MAX_CPU_MILLIS:
        raise QuantityError(f"must be a CPU quantity of at most {MAX_CPU_MILLIS // 1000} cores")
    return int(millis)


def parse_memory_bytes(value: object) -> int:
    """Memory as bytes: ``128M`` -> 128000000, ``1Gi`` -> 1073741824."""
    try:
        amount = parse_quantity(value)
    except NegativeQuantityError:
        raise QuantityError("must be a memory quantity like 128M or 1Gi, not negative") from None
    except QuantityError:
        raise QuantityError("must be a memory quantity like 128M or 1Gi") from None
    if amount < MIN_MEMORY_BYTES:
        hint = " (m means thousandths: did you mean M?)" if str(value).endswith("m") else ""
        raise QuantityError(f"must be at least {MIN_MEMORY_BYTES} bytes, like 128M or 1Gi{hint}")
    if amount.denominator != 1:
        raise QuantityError("must be a whole number of bytes, like 128M or 1Gi")
    if amount > MAX_MEMORY_BYTES:
        raise QuantityError("must be a memory quantity of at most 8Ei (2^63 - 1 bytes)")
    return int(amount)
