"""Human-readable numbers shared by the recommendation text, the terminal table and the report.

One place, so that "46 KB" in the recommendation paragraph and in the table are the same figure.
Byte sizes use decimal units (1 KB = 1000 bytes), as disk and download sizes are usually quoted.
"""

from __future__ import annotations

import math

_BYTE_UNITS = ("B", "KB", "MB", "GB", "TB")
_COUNT_UNITS = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K"))


def format_bytes(n: float | None) -> str:
    if n is None:
        return "–"
    value = float(n)
    for unit in _BYTE_UNITS:
        if abs(value) < 1000 or unit == _BYTE_UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" or value >= 100 else f"{value:.3g} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def format_count(n: float | None) -> str:
    """Parameter counts: exact below a million (a soft prompt's 11,520), 134.5M above."""
    if n is None:
        return "–"
    if abs(n) < 1_000_000:
        return f"{int(n):,}"
    for scale, unit in _COUNT_UNITS:
        if abs(n) >= scale:
            return f"{n / scale:.4g}{unit}"
    return f"{int(n):,}"


def format_p(p: float | None) -> str:
    if p is None:
        return "–"
    if p < 0.001:
        return "p<0.001"
    if p < 0.1:
        return f"p={p:.2g}"
    return f"p={p:.2f}"


def format_ms(ms: float | None) -> str:
    if ms is None or not math.isfinite(ms):
        return "–"
    if ms < 1:
        return f"{ms:.2f}"
    return f"{ms:.1f}" if ms < 100 else f"{ms:,.0f}"


def format_rate(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def format_ratio(small: float, large: float) -> str:
    """'1/11,000' for how small a fraction `small` is of `large`, to two significant figures."""
    if small <= 0 or large <= 0:
        raise ValueError("format_ratio needs two positive numbers")
    inverse = large / small
    if inverse < 1.5:
        return f"{small / large:.2g}×"
    digits = max(math.floor(math.log10(inverse)) - 1, 0)
    rounded = round(inverse / 10**digits) * 10**digits
    return f"1/{int(rounded):,}"


def pct(x: float | None, digits: int = 1) -> str:
    """A fraction as percent without the sign: 0.8123 -> '81.2'."""
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x * 100:.{digits}f}"
