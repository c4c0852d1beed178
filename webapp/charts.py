"""Geometry of the overview's inline SVG charts (the templates only draw what is computed here).

Every text that reaches a chart is a class name or a number; the templates escape them.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlencode

from labelaudit.review.actions import ACTION_KIND_TEXT, IN_FORCE_ACTIONS


def _nice_ticks(vmax: float, n: int = 4, *, min_step: float = 0.0) -> list[float]:
    """Round ticks from 0 up to the first one at or above ``vmax`` (the axis top: no bar is clipped)."""
    if vmax <= 0:
        return [0.0]
    raw = vmax / n
    mag = 10 ** math.floor(math.log10(raw))
    step = max(next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), min_step)
    ticks = [0.0]
    while ticks[-1] < vmax * 0.9999:
        ticks.append(ticks[-1] + step)
    return ticks


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def heatmap(classes: list[str], matrix: list[list[float]], pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """Cells of the noise matrix; rows = given label, columns = (estimated) true label.

    Off-diagonal cells are shaded on their own scale (the diagonal would otherwise wash
    them out) and link to the grid of that (given -> suggested) pair.
    """
    k = len(classes)
    flagged = {(p["given"], p["suggested"]): p for p in pairs}
    cell = max(14, min(56, 560 // max(k, 1)))
    label_w = min(150, 12 + 7 * max((len(_short(c, 18)) for c in classes), default=4))
    show_values = k <= 12
    off = [matrix[i][j] for i in range(k) for j in range(k) if i != j]
    vmax = max(off, default=0) or 1.0
    cells = []
    for i in range(k):
        for j in range(k):
            v = float(matrix[i][j])
            diag = i == j
            p = flagged.get((classes[i], classes[j]))
            level = 0.0 if diag else min(1.0, v / vmax)
            cells.append({
                "x": label_w + j * cell, "y": 30 + i * cell, "size": cell - 2,
                "diag": diag, "opacity": round(0.06 + 0.94 * level, 3) if v > 0 else 0,
                "strong": level > 0.55,
                "text": (f"{v:.2f}".lstrip("0") if v < 1 else "1") if show_values and v > 0 else "",
                "title": (f"given {classes[i]} | true {classes[j]}: P = {v:.3f}"
                          + (f"; {p['n']} flagged, {p['n_reviewed']} reviewed" if p else "")),
                "href": None if diag else "/grid?" + urlencode(
                    {"given": classes[i], "suggested": classes[j], **({} if p else {"flagged": "all"})}),
                "count": p["n"] if p else 0,
            })
    return {
        "width": label_w + k * cell + 10,
        "height": 30 + k * cell + 10,
        "cell": cell,
        "label_w": label_w,
        "cells": cells,
        "rows": [{"y": 30 + i * cell + cell / 2, "text": _short(c, 18), "full": c} for i, c in enumerate(classes)],
        "cols": [{"x": label_w + j * cell + cell / 2, "text": _short(c, 3 if cell < 30 else 6), "full": c}
                 for j, c in enumerate(classes)],
        "vmax": vmax,
    }


def histogram(bins: list[dict[str, Any]], width: int = 560, height: int = 220) -> dict[str, Any]:
    """Stacked bars (unflagged below, flagged above) with a y axis and score ticks."""
    left, bottom, top = 44, 26, 10
    plot_w, plot_h = width - left - 8, height - bottom - top
    vmax = max((b["n_flagged"] + b["n_unflagged"] for b in bins), default=0)
    ticks = _nice_ticks(vmax, min_step=1.0)  # counts: whole ticks
    ymax = max(ticks[-1], 1)
    bw = plot_w / max(len(bins), 1)
    bars = []
    for i, b in enumerate(bins):
        x = left + i * bw
        hu = plot_h * b["n_unflagged"] / ymax
        hf = plot_h * b["n_flagged"] / ymax
        y0 = top + plot_h
        bars.append({
            "x": round(x + 0.5, 2), "w": round(max(bw - 1, 1), 2),
            "yu": round(y0 - hu, 2), "hu": round(hu, 2),
            "yf": round(y0 - hu - hf, 2), "hf": round(hf, 2),
            "title": f"score {b['lo']:.3f}–{b['hi']:.3f}: {b['n_flagged']} flagged, {b['n_unflagged']} not",
            "href": "/queue?" + urlencode({"flagged": "all", "score_min": f"{b['lo']:.4g}",
                                           "score_max": f"{b['hi']:.4g}"}),
        })
    return {
        "width": width, "height": height, "left": left, "top": top, "plot_w": plot_w, "plot_h": plot_h,
        "bars": bars,
        "yticks": [{"y": round(top + plot_h - plot_h * t / ymax, 2), "text": f"{int(t):,}"} for t in ticks],
        "xticks": [{"x": round(left + plot_w * t, 2), "text": f"{t:g}"} for t in (0, 0.25, 0.5, 0.75, 1)],
    }


def class_bars(rows: list[dict[str, Any]], width: int = 560) -> dict[str, Any]:
    """Per class: samples (long bar), flagged given-as-class and decisions (overlaid)."""
    label_w, row_h, num_w = 150, 22, 150
    plot_w = width - label_w - num_w
    vmax = max((r["n_samples"] for r in rows), default=0) or 1
    out = []
    for i, r in enumerate(rows):
        y = 6 + i * row_h
        scale = plot_w / vmax
        out.append({
            "y": y, "text": _short(r["name"], 20), "full": r["name"],
            "w_total": round(r["n_samples"] * scale, 2),
            "w_flagged": round(r["n_flagged"] * scale, 2),
            "w_fixed": round((r["n_relabeled_from"] + r["n_unusable"]) * scale, 2),
            "n": r["n_samples"], "n_flagged": r["n_flagged"],
            "n_fixed": r["n_relabeled_from"] + r["n_unusable"],
            "href": "/queue?" + urlencode({"given": r["name"]}),
            "title": (f"{r['name']}: {r['n_samples']} samples, {r['n_flagged']} flagged, "
                      f"{r['n_relabeled_from']} relabeled away, {r['n_relabeled_to']} relabeled to it, "
                      f"{r['n_unusable']} unusable"),
        })
    return {"width": width, "height": 12 + len(rows) * row_h, "label_w": label_w, "plot_w": plot_w,
            "row_h": row_h, "rows": out}


def decision_bar(by_action: dict[str, int], n_flagged: int, width: int = 560) -> dict[str, Any]:
    """One stacked bar of the flagged samples: each decision kind, then unreviewed."""
    order = [(action, ACTION_KIND_TEXT[action].split(" (")[0]) for action in IN_FORCE_ACTIONS]
    total = max(n_flagged, sum(by_action.values()), 1)
    x, parts = 0.0, []
    for key, text in order:
        n = by_action.get(key, 0)
        w = width * n / total
        parts.append({"key": key, "text": text, "n": n, "x": round(x, 2), "w": round(w, 2)})
        x += w
    return {"width": width, "parts": parts, "rest": round(width - x, 2), "rest_x": round(x, 2),
            "n_rest": max(total - sum(by_action.values()), 0)}


def count_heatmap(rows: list[str], cols: list[str], counts: dict[tuple[str, str], int], href) -> dict[str, Any]:
    """Counts of (row class, column class) pairs, e.g. an annotator's (consensus, their label) confusion.

    Off-diagonal cells are shaded on their own scale (the diagonal would wash them out);
    ``href(row, col)`` gives a cell's link (None: no link).
    """
    cell = max(16, min(56, 560 // max(len(cols), 1)))
    label_w = min(150, 12 + 7 * max((len(_short(c, 18)) for c in rows), default=4))
    off = [n for (r, c), n in counts.items() if r != c]
    vmax = max(off, default=0) or 1
    cells = []
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            n, diag = counts.get((r, c), 0), r == c
            level = 0.0 if diag else min(1.0, n / vmax)
            cells.append({
                "x": label_w + j * cell, "y": 30 + i * cell, "size": cell - 2, "diag": diag,
                "opacity": round(0.08 + 0.92 * level, 3) if n else 0, "strong": level > 0.55,
                "text": f"{n:,}" if n and cell >= 28 else "", "count": n,
                "title": f"consensus {r} | labelled {c}: {n} image{'s' if n != 1 else ''}",
                "href": href(r, c) if n else None,
            })
    return {
        "width": label_w + len(cols) * cell + 10, "height": 30 + len(rows) * cell + 10, "cell": cell,
        "label_w": label_w, "cells": cells, "vmax": vmax,
        "rows": [{"y": 30 + i * cell + cell / 2, "text": _short(c, 18), "full": c} for i, c in enumerate(rows)],
        "cols": [{"x": label_w + j * cell + cell / 2, "text": _short(c, 3 if cell < 30 else 6), "full": c}
                 for j, c in enumerate(cols)],
    }
