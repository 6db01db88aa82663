"""PNG plots of an evaluation report, and a general annotated heat-map.

Figures are drawn on matplotlib's headless Agg canvas through `Figure` directly, not pyplot:
no display is needed and no global state is touched, so plotting is safe inside a library.
Rates are drawn with their 95 % Wilson intervals, since small benchmarks make them wide.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

RATES = (("harmful refusal", "harmful_refusal"), ("benign refusal", "benign_refusal"),
         ("degenerate", "degeneration"))
GAP = (("aware", "aware"), ("complied", "complied"), ("aware and complied", "aware_and_complied"))
DPI = 120


def _figure(width: float, height: float = 4.0) -> Figure:
    """A figure on the Agg canvas whose constrained layout keeps legends beside the axes in frame."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    return path


def _rate_bars(axes: Any, modes: Sequence[str], series: Sequence[tuple[str, Sequence[dict[str, Any] | None]]],
               title: str) -> None:
    """Grouped bars, one group per mode, with Wilson error bars and count/total labels; an empty rate is no bar."""
    width = 0.8 / len(series)
    for index, (label, rates) in enumerate(series):
        shown = [r if r and r["total"] else None for r in rates]
        x = np.arange(len(modes)) + (index - (len(series) - 1) / 2) * width
        heights = [r["rate"] if r else math.nan for r in shown]
        errors = [[r["rate"] - r["low"] if r else 0.0 for r in shown],
                  [r["high"] - r["rate"] if r else 0.0 for r in shown]]
        bars = axes.bar(x, heights, width, yerr=errors, capsize=3, label=label)
        axes.bar_label(bars, labels=[f"{r['count']}/{r['total']}" if r else "" for r in shown], fontsize=7,
                       padding=2)
    axes.set_xticks(np.arange(len(modes)), modes)
    axes.set_ylim(0, 1.1)
    axes.yaxis.set_major_formatter(lambda value, _: f"{value:.0%}")
    axes.set_title(title)
    if len(series) > 1:
        axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def write_eval_plots(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write one PNG per measured metric group, each named for what it plots:

    - `rates.png` (always): harmful refusal, benign refusal and degeneration per mode;
    - `awareness_gap.png` (the vector has a probe): aware, complied and aware-and-complied;
    - `utility.png` (a utility set was run, `--utility`): utility accuracy;
    - `benign_kl.png` (a benign set was run): benign next-token KL from plain, in nats;
    - `refusal_by_<column>.png` (the report has `groups`): harmful and benign refusal per group,
      one bar per mode.

    A plot whose metrics are absent is removed if an earlier run left one, so the PNGs always
    match metrics.json. Returns the paths written, in the order above.
    """
    out_dir = Path(out_dir)
    modes = list(report["modes"])
    entries = [report["modes"][m] for m in modes]
    width = 3.5 + 1.6 * len(modes)
    figure = _figure(width)
    _rate_bars(figure.add_subplot(), modes, [(label, [e.get(key) for e in entries]) for label, key in RATES],
               "Refusal and degeneration per mode (95 % Wilson intervals)")
    written = [_save(figure, out_dir / "rates.png")]

    def optional(name: str, values: list[Any], draw: Any, figure_width: float = width) -> None:
        if any(v is not None for v in values):
            figure = _figure(figure_width)
            draw(figure.add_subplot(), values)
            written.append(_save(figure, out_dir / name))
        else:
            (out_dir / name).unlink(missing_ok=True)

    def gap(axes: Any, gaps: list[Any]) -> None:
        _rate_bars(axes, modes, [(label, [g[key] if g else None for g in gaps]) for label, key in GAP],
                   "Harmful prompts: probe aware vs answer complied")

    def accuracy(axes: Any, values: list[Any]) -> None:
        _rate_bars(axes, modes, [("utility accuracy", values)], "Utility accuracy (95 % Wilson intervals)")

    def kl(axes: Any, values: list[Any]) -> None:
        bars = axes.bar(modes, [math.nan if v is None else v for v in values], color="tab:purple")
        axes.bar_label(bars, labels=["" if v is None else f"{v:.3f}" for v in values], fontsize=7, padding=2)
        axes.set_ylabel("nats")
        axes.set_title("Benign next-token KL from plain")

    small = 2.5 + 1.2 * len(modes)
    optional("awareness_gap.png", [e.get("awareness_compliance_gap") or None for e in entries], gap)
    optional("utility.png", [e.get("utility_accuracy") for e in entries], accuracy, small)
    optional("benign_kl.png", [e.get("benign_next_token_kl") for e in entries], kl, small)
    grouped = _group_plot(report["groups"], out_dir) if report.get("groups") else None
    for stale in out_dir.glob("refusal_by_*.png"):
        if stale != grouped:
            stale.unlink()
    return [*written, grouped] if grouped else written


def _group_plot(groups: dict[str, Any], out_dir: Path) -> Path | None:
    """Harmful and benign refusal per group, one bar per mode, one panel per set that was run:
    where a framing slips past a mode shows as a short bar in the harmful panel."""
    by_mode: dict[str, dict[str, dict[str, Any]]] = groups["modes"]
    names = list(dict.fromkeys(name for entries in by_mode.values() for name in entries))
    panels = [(label, key) for label, key in RATES[:2]
              if any((entry.get(key) or {}).get("total") for entries in by_mode.values() for entry in entries.values())]
    if not names or not panels:
        return None
    figure = _figure(3.5 + 0.5 * len(names) * len(by_mode), 3.2 * len(panels))
    for index, (label, key) in enumerate(panels, start=1):
        series = [(mode, [entries.get(name, {}).get(key) for name in names]) for mode, entries in by_mode.items()]
        _rate_bars(figure.add_subplot(len(panels), 1, index), names, series,
                   f"{label.capitalize()} per {groups['column']} (95 % Wilson intervals)")
    column = re.sub(r"[^\w-]+", "_", groups["column"]).strip("_") or "group"
    return _save(figure, out_dir / f"refusal_by_{column}.png")


def heatmap(values: Sequence[Sequence[float]] | np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str],
            title: str, path: Path | str, *,
            mark: tuple[int, int] | None = None, fmt: str = ".2f", cbar_label: str = "") -> Path:
    """An annotated heat-map PNG of a 2-D grid (rows x columns); NaN cells are left grey and blank.

    `mark` outlines one cell, e.g. the chosen setting of a sweep.
    """
    grid = np.asarray(values, dtype=float)
    if grid.ndim != 2 or grid.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"heatmap needs a {len(row_labels)} x {len(col_labels)} grid to match the labels, "
                         f"got shape {grid.shape}.")
    if mark is not None and not (0 <= mark[0] < grid.shape[0] and 0 <= mark[1] < grid.shape[1]):
        raise ValueError(f"mark {mark} is outside the {grid.shape[0]} x {grid.shape[1]} grid.")
    finite = grid[np.isfinite(grid)]
    norm = Normalize(float(finite.min()), float(finite.max())) if finite.size else Normalize(0.0, 1.0)
    rows, cols = grid.shape
    figure = _figure(min(2.5 + 0.8 * cols, 20), min(1.5 + 0.45 * rows, 20))
    axes = figure.add_subplot()
    axes.set_facecolor("#d9d9d9")  # masked (NaN) cells let the background show through
    image = axes.imshow(np.ma.masked_invalid(grid), cmap="viridis", norm=norm, aspect="auto")
    colorbar = figure.colorbar(image, ax=axes)
    colorbar.set_label(cbar_label)
    for (r, c), value in np.ndenumerate(grid):
        if np.isfinite(value):
            red, green, blue, _ = image.cmap(norm(value))
            dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
            axes.text(c, r, format(value, fmt), ha="center", va="center", fontsize=8,
                      color="white" if dark else "black")
    if mark is not None:
        axes.add_patch(Rectangle((mark[1] - 0.5, mark[0] - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5))
    crowded = cols > 6
    axes.set_xticks(range(cols), [str(label) for label in col_labels], rotation=45 if crowded else 0,
                    ha="right" if crowded else "center")
    axes.set_yticks(range(rows), [str(label) for label in row_labels])
    axes.set_title(title)
    return _save(figure, Path(path))
