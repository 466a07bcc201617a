"""Charts drawn on the server: the geometry of a bar chart, turned into SVG by the
``charts.html`` template.

No script draws them, so the strict Content-Security-Policy holds (no inline script, no
chart library); colours come from the stylesheet's classes, so dark mode applies to them
too. Labels are the template's to escape.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

WIDTH = 600
"""The chart's drawing width in SVG units; the stylesheet scales it to the page."""
HEIGHT = 160
PAD_TOP = 14
PAD_BOTTOM = 18
GAP = 0.2
"""Share of each slot left empty between bars."""


@dataclass(frozen=True)
class Bar:
    """One bar: its box in SVG units, its label and its value as text (the tooltip)."""

    x: float
    y: float
    width: float
    height: float
    label: str
    shown: str


@dataclass(frozen=True)
class BarChart:
    """What the template draws: the bars, the top of the scale and the first and last labels."""

    bars: tuple[Bar, ...]
    top: str
    first: str
    last: str
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def base(self) -> int:
        """The y of the bars' foot (the axis)."""
        return self.height - PAD_BOTTOM


def bar_chart(points: Sequence[tuple[str, float]], shown: Callable[[float], str]) -> BarChart:
    """Bars for ``points`` (label, value) in order; ``shown`` writes a value for a person."""
    top = max((value for _, value in points), default=0.0)
    room = HEIGHT - PAD_TOP - PAD_BOTTOM
    slot = WIDTH / max(len(points), 1)
    bars = []
    for i, (label, value) in enumerate(points):
        tall = room * value / top if top > 0 else 0.0
        if value > 0:
            tall = max(tall, 1.0)  # a small spend still shows
        bars.append(
            Bar(
                x=round(i * slot + slot * GAP / 2, 2),
                y=round(HEIGHT - PAD_BOTTOM - tall, 2),
                width=round(slot * (1 - GAP), 2),
                height=round(tall, 2),
                label=label,
                shown=shown(value),
            )
        )
    return BarChart(
        bars=tuple(bars),
        top=shown(top),
        first=points[0][0] if points else "",
        last=points[-1][0] if points else "",
    )
