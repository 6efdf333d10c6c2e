"""Small charts drawn on the server as SVG geometry (the template writes the elements).

No script draws them and no inline style colours them (CSP `style-src 'self'`): the template
gives each element a class, `wakedock.css` colours it (light and dark). Each chart also carries
a sentence saying what it shows, for a screen reader and for anyone who would rather read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

# The drawing area of every chart (the SVG's viewBox); it scales to the width of its box.
WIDTH = 320
HEIGHT = 120
_LEFT = 40  # room for the scale's labels
_TOP = 8
_BOTTOM = 104


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    # What hovering over the bar says (its <title>).
    label: str


@dataclass(frozen=True)
class Chart:
    """One chart: bars or a line (points), its scale's top and its summary sentence."""

    key: str
    title: str
    summary: str
    top_label: str
    bars: list[Bar] = field(default_factory=list)
    points: str = ""
    first_label: str = ""
    last_label: str = ""
    empty: bool = False

    width: int = WIDTH
    height: int = HEIGHT
    left: int = _LEFT
    top: int = _TOP
    bottom: int = _BOTTOM


def _scale_top(peak: float) -> float:
    """A round number at or above `peak` for the top of the scale (1, 2, 5 x 10^n)."""
    if peak <= 0:
        return 1.0
    step = 1.0
    while step * 10 <= peak:
        step *= 10
    while step > peak * 10:
        step /= 10
    for factor in (1, 2, 5, 10):
        if step * factor >= peak:
            return step * factor
    return step * 10  # pragma: no cover - the loop above always returns


def _number(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def bar_chart(
    key: str,
    title: str,
    values: Sequence[float],
    labels: Sequence[str],
    unit: str,
    summary: str,
    *,
    first_label: str = "",
    last_label: str = "",
) -> Chart:
    """Bars of `values` (one per slot, left to right), each with its hover label."""
    if not values:
        return Chart(key, title, summary, "", empty=True)
    top = _scale_top(max(values))
    span = (WIDTH - _LEFT) / len(values)
    gap = min(2.0, span * 0.2)
    bars = []
    for index, (value, label) in enumerate(zip(values, labels, strict=True)):
        height = (_BOTTOM - _TOP) * value / top
        bars.append(
            Bar(
                x=round(_LEFT + index * span + gap / 2, 2),
                y=round(_BOTTOM - height, 2),
                width=round(max(span - gap, 0.5), 2),
                height=round(height, 2),
                label=label,
            )
        )
    return Chart(
        key,
        title,
        summary,
        f"{_number(top)} {unit}",
        bars=bars,
        first_label=first_label,
        last_label=last_label,
    )


def line_chart(
    key: str,
    title: str,
    values: Sequence[float],
    unit: str,
    summary: str,
    *,
    first_label: str = "",
    last_label: str = "",
) -> Chart:
    """A line through `values` (evenly spaced, left to right)."""
    if not values:
        return Chart(key, title, summary, "", empty=True)
    top = _scale_top(max(values))
    step = (WIDTH - _LEFT) / max(len(values) - 1, 1)
    points = " ".join(
        f"{_LEFT + index * step:.1f},{_BOTTOM - (_BOTTOM - _TOP) * value / top:.1f}"
        for index, value in enumerate(values)
    )
    return Chart(
        key,
        title,
        summary,
        f"{_number(top)} {unit}",
        points=points,
        first_label=first_label,
        last_label=last_label,
    )
