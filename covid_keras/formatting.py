"""How reports write numbers: shared by the code that writes evaluation reports and the tools that
read them back, so it imports nothing (reading a report must not load TensorFlow)."""

from __future__ import annotations


def fixed(value, digits: int = 3) -> str:
    """A number to `digits` decimals; "n/a" for a figure that was not measured (None)."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def significant(value) -> str:
    """A KID: its scale depends on the extractor's features, so significant digits, not decimals."""
    return "n/a" if value is None else f"{value:.4g}"


def points(value) -> str:
    """A fraction as percentage points, one decimal."""
    return "n/a" if value is None else f"{100 * value:.1f}"


def interval(section, signed: bool = False) -> str:
    """A figure with its 95 % interval, `mean [low, high]` (3 decimals; with signs for a difference)."""
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(section['mean'])} [{f.format(section['low'])}, {f.format(section['high'])}]"
