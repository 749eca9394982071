"""A small braille plot: lines, steps and scatter points, with min/max axis labels.

textual-plotext is not a dependency; 2x4 braille dots per cell are enough for a best-so-far curve,
an intermediate-value curve or an accuracy-vs-throughput scatter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from rich.text import Text
from textual.widget import Widget

# Bit of each dot in a braille cell, indexed [row][column].
_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))


@dataclass
class Series:
    points: list[tuple[float, float]]
    style: str = "cyan"
    mode: str = "line"  # line, step or points


def _fmt(value: float) -> str:
    if abs(value) >= 10_000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


class BraillePlot(Widget):
    """Plots `series`; axis bounds cover every finite point."""

    DEFAULT_CSS = """
    BraillePlot { height: 8; }
    """

    def __init__(
        self,
        *,
        x_format: Callable[[float], str] = _fmt,
        y_format: Callable[[float], str] = _fmt,
        empty: str = "no data yet",
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.series: list[Series] = []
        self.x_format = x_format
        self.y_format = y_format
        self.empty = empty

    def set_series(self, series: list[Series]) -> None:
        self.series = series
        self.refresh()

    def render(self) -> Text:
        points = [
            (x, y) for s in self.series for x, y in s.points if math.isfinite(x) and math.isfinite(y)
        ]
        width, height = self.size.width, self.size.height
        if not points or width < 12 or height < 3:
            return Text(self.empty, style="dim")
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        if x1 == x0:
            x1 = x0 + 1
        if y1 == y0:
            pad = abs(y0) * 0.05 or 1.0
            y0, y1 = y0 - pad, y1 + pad
        top, bottom = self.y_format(y1), self.y_format(y0)
        margin = max(len(top), len(bottom)) + 1
        cols, rows = width - margin, height - 1
        if cols < 4:
            return Text(self.empty, style="dim")
        canvas = _Canvas(cols, rows, x0, x1, y0, y1)
        for s in self.series:
            canvas.draw(s)
        text = Text(no_wrap=True, overflow="crop")
        for row in range(rows):
            label = top if row == 0 else bottom if row == rows - 1 else ""
            text.append(label.rjust(margin - 1) + "┤" if label else " " * (margin - 1) + "│", style="dim")
            canvas.append_row(text, row)
            text.append("\n")
        left, right = self.x_format(x0), self.x_format(x1)
        text.append(" " * margin + left + right.rjust(cols - len(left)), style="dim")
        return text


class _Canvas:
    """`cols` x `rows` braille cells of 2x4 dots, onto which [x0, x1] x [y0, y1] is mapped (y up);
    a cell takes the style of the last series that drew in it."""

    def __init__(self, cols: int, rows: int, x0: float, x1: float, y0: float, y1: float) -> None:
        self.cols, self.rows = cols, rows
        self.x0, self.x1, self.y0, self.y1 = x0, x1, y0, y1
        self.px_w, self.px_h = cols * 2, rows * 4
        self.cells: dict[tuple[int, int], list] = {}  # (row, col) -> [dot bits, style]

    def plot(self, px: int, py: int, style: str) -> None:
        if 0 <= px < self.px_w and 0 <= py < self.px_h:
            cell = self.cells.setdefault((py // 4, px // 2), [0, style])
            cell[0] |= _DOTS[py % 4][px % 2]
            cell[1] = style

    def to_px(self, x: float, y: float) -> tuple[int, int]:
        return (
            round((x - self.x0) / (self.x1 - self.x0) * (self.px_w - 1)),
            round((self.y1 - y) / (self.y1 - self.y0) * (self.px_h - 1)),
        )

    def draw(self, s: Series) -> None:
        pts = [self.to_px(x, y) for x, y in s.points if math.isfinite(x) and math.isfinite(y)]
        # 10,000 trials on 80 dot columns: consecutive points on the same dot draw nothing new
        pts = [p for i, p in enumerate(pts) if i == 0 or p != pts[i - 1]]
        if s.mode == "points" or len(pts) == 1:
            for px, py in pts:
                self.plot(px, py, s.style)
            return
        for (ax, ay), (bx, by) in zip(pts, pts[1:]):
            if s.mode == "step":
                _line(ax, ay, bx, ay, self.plot, s.style)
                _line(bx, ay, bx, by, self.plot, s.style)
            else:
                _line(ax, ay, bx, by, self.plot, s.style)

    def append_row(self, text: Text, row: int) -> None:
        for col in range(self.cols):
            cell = self.cells.get((row, col))
            if cell:
                text.append(chr(0x2800 + cell[0]), style=cell[1])
            else:
                text.append(" ")


def _line(ax: int, ay: int, bx: int, by: int, plot: Callable[[int, int, str], None], style: str) -> None:
    """Bresenham from (ax, ay) to (bx, by)."""
    dx, dy = abs(bx - ax), -abs(by - ay)
    sx, sy = (1 if ax < bx else -1), (1 if ay < by else -1)
    err = dx + dy
    while True:
        plot(ax, ay, style)
        if ax == bx and ay == by:
            return
        e2 = 2 * err
        if e2 >= dy:
            err += dy
            ax += sx
        if e2 <= dx:
            err += dx
            ay += sy
