"""Geometry and colours of the report's pictures, as numbers the templates draw as inline SVG.

Two pictures: a heatmap of candidate layers against reference layers (mean
sketch correlation, the layer map outlined), and one small bar chart per
tensor role (correlation of each candidate layer with its mapped reference
layer). Nothing here reads checkpoint text, so everything returned is numbers
and colours; labels are added by the templates from the strings files. A
few lines of arithmetic replace a plotting library, which would bring fonts
and a renderer into a report that must be one self-contained file.
"""

from __future__ import annotations

import math
from typing import Any

from ..compare.thresholds import LAYER_MATCH_LOG10P

# Sequential blue scale (ColorBrewer "Blues"), for correlation 0 -> 1.
SCALE = ((0.0, (247, 251, 255)), (0.25, (198, 219, 239)), (0.5, (107, 174, 214)), (0.75, (33, 113, 181)),
         (1.0, (8, 48, 107)))
NOT_COMPARED = "#e4e4e4"
MAP_OUTLINE = "#d62728"
SIGNIFICANT_BAR, WEAK_BAR = "#2171b5", "#c6dbef"
SIGNIFICANT = LAYER_MATCH_LOG10P  # per-pair log10 p that colours a role bar dark (the engine's layer threshold)


def color(value: float) -> str:
    """Hex colour of a correlation on the blue scale (values below 0 get the lightest colour)."""
    v = min(1.0, max(0.0, float(value))) if math.isfinite(value) else 0.0
    for (x0, c0), (x1, c1) in zip(SCALE, SCALE[1:]):
        if v <= x1:
            f = (v - x0) / (x1 - x0)
            return "#" + "".join(f"{round(a + (b - a) * f):02x}" for a, b in zip(c0, c1))
    return "#%02x%02x%02x" % SCALE[-1][1]


def _tick_step(count: int, cell: float, min_gap: float = 16.0) -> int:
    """Label every k-th layer, k in 1, 2, 5, 10, 20, 50..., so labels do not overlap."""
    for step in (1, 2, 5, 10, 20, 50, 100, 200, 500):
        if step * cell >= min_gap or step >= count:
            return step
    return 1000


def heatmap(matrix: dict[str, list[list[float]]] | None, mapped: set[tuple[int, int]],
            max_side: int = 600) -> dict[str, Any] | None:
    """Cells, ticks and legend of the layer heatmap; None when nothing was compared."""
    if not matrix or not matrix.get("similarity") or not matrix["similarity"][0]:
        return None
    sim, logp, roles = matrix["similarity"], matrix.get("log10_p"), matrix.get("roles")
    rows, cols = len(sim), len(sim[0])
    if roles is not None and not any(any(r) for r in roles):
        return None
    cell = max(3.0, min(28.0, max_side / max(rows, cols)))
    left, top = 46.0, 34.0
    grid_w, grid_h = cols * cell, rows * cell
    cells = []
    for i in range(rows):
        for j in range(cols):
            compared = roles is None or roles[i][j] > 0
            cells.append({"i": i, "j": j, "x": round(left + j * cell, 2), "y": round(top + i * cell, 2),
                          "fill": color(sim[i][j]) if compared else NOT_COMPARED, "compared": compared,
                          "r": f"{sim[i][j]:.3f}", "logp": f"{logp[i][j]:.1f}" if logp else "?"})
    outlines = [{"x": round(left + j * cell, 2), "y": round(top + i * cell, 2)}
                for i, j in sorted(mapped) if 0 <= i < rows and 0 <= j < cols]
    col_step, row_step = _tick_step(cols, cell), _tick_step(rows, cell)
    legend_x = left + grid_w + 24
    return {
        "cell": round(cell, 2), "rows": rows, "cols": cols, "left": left, "top": top,
        "grid_w": round(grid_w, 2), "grid_h": round(grid_h, 2),
        "width": round(legend_x + 70, 2), "height": round(top + grid_h + 34, 2),
        "cells": cells, "outlines": outlines, "outline_color": MAP_OUTLINE,
        "outline_width": 2.0 if cell >= 8 else 1.0, "titles": rows * cols <= 2500,
        "col_ticks": [{"j": j, "x": round(left + (j + 0.5) * cell, 2)} for j in range(0, cols, col_step)],
        "row_ticks": [{"i": i, "y": round(top + (i + 0.5) * cell + 4, 2)} for i in range(0, rows, row_step)],
        "legend": {"x": round(legend_x, 2), "y": top, "w": 14, "h": min(160.0, max(60.0, grid_h)),
                   # top of the bar = correlation 1 (labelled "1"), bottom = 0 (labelled "<=0"): offset 1 - x
                   "stops": [{"offset": f"{round((1 - x) * 100)}%", "color": color(x)} for x, _ in reversed(SCALE)]},
        "not_compared": NOT_COMPARED,
    }


def role_bars(profile: list[dict[str, Any]], width: int = 320, height: int = 128) -> dict[str, Any]:
    """One role's bar chart: correlation of every candidate layer with its partner layer.

    `profile` holds per candidate layer {"layer", "partner", "r", "log10p"} (r None when not compared).
    The y axis runs from -0.25 to 1; lower correlations are drawn at -0.25.
    """
    left, right, top, bottom = 30.0, 6.0, 8.0, 22.0
    low, high = -0.25, 1.0
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(len(profile), 1)
    slot = plot_w / n
    gap = 1.0 if slot >= 4 else 0.0

    def y(v: float) -> float:
        return top + (high - min(high, max(low, v))) / (high - low) * plot_h

    zero = y(0.0)
    bars = []
    for k, point in enumerate(profile):
        if point["r"] is None:
            continue
        r = float(point["r"])
        top_y, bottom_y = (y(r), zero) if r >= 0 else (zero, y(r))
        bars.append({"x": round(left + k * slot + gap / 2, 2), "y": round(top_y, 2), "w": round(max(slot - gap, 0.8), 2),
                     "h": round(max(bottom_y - top_y, 0.6), 2), "layer": point["layer"], "partner": point["partner"],
                     "r": f"{r:.3f}", "log10p": point["log10p"],
                     "p": f"log10 p {point['log10p']:.1f}" if point["log10p"] is not None else "",
                     "fill": SIGNIFICANT_BAR if point["log10p"] is not None and point["log10p"] < SIGNIFICANT else WEAK_BAR})
    step = _tick_step(len(profile), slot, 18.0)
    return {"width": width, "height": height, "left": left, "top": top, "plot_w": round(plot_w, 2),
            "plot_h": round(plot_h, 2), "zero": round(zero, 2), "bars": bars,
            "grid": [{"v": v, "y": round(y(v), 2)} for v in (1.0, 0.5, 0.0)],
            "x_ticks": [{"layer": profile[k]["layer"], "x": round(left + (k + 0.5) * slot, 2)}
                        for k in range(0, len(profile), step)],
            "axis_y": round(top + plot_h + 14, 2)}


ASCII_SHADES = " .:-=+*#%@"


def ascii_heatmap(matrix: dict[str, list[list[float]]] | None, mapped: set[tuple[int, int]],
                  max_side: int = 64) -> list[str] | None:
    """The heatmap as text for Markdown: one character per cell, `[x]`-style brackets on the map."""
    if not matrix or not matrix.get("similarity") or not matrix["similarity"][0]:
        return None
    sim, roles = matrix["similarity"], matrix.get("roles")
    rows, cols = len(sim), len(sim[0])
    if rows > max_side or cols > max_side:
        return None
    width = len(str(rows - 1))
    header = " " * (width + 1) + "".join(str(j % 10) for j in range(cols))
    lines = [header]
    for i in range(rows):
        chars = []
        for j in range(cols):
            if roles is not None and roles[i][j] == 0:
                chars.append("?")
                continue
            v = min(1.0, max(0.0, sim[i][j]))
            ch = ASCII_SHADES[min(len(ASCII_SHADES) - 1, int(round(v * (len(ASCII_SHADES) - 1))))]
            chars.append("x" if (i, j) in mapped else ch)
        lines.append(f"{i:>{width}} " + "".join(chars))
    return lines
