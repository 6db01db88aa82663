"""What `selfguard calibrate` writes: the report as JSON and Markdown, and a heat map per steered mode."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..evaluation.plots import heatmap
from .grid import window_label
from .search import CalibrationReport, CandidateResult


def _rate(measured: dict[str, Any] | None, key: str) -> str:
    if measured is None:
        return "–"
    value = measured[key]
    return f"{value['rate']:.1%} ({value['count']}/{value['total']})"


def _row(result: CandidateResult, chosen: CandidateResult | None) -> str:
    measured = None if result.measured is None else result.measured.as_dict()
    verdict = "chosen" if result is chosen else "; ".join(result.violations) or "within limits"
    return (f"| {result.candidate.label} | {result.harmful_refusal_logprob:.2f} | {result.benign_kl:.3f} | "
            f"{_rate(measured, 'harmful_refusal')} | {_rate(measured, 'benign_refusal')} | "
            f"{_rate(measured, 'degeneration')} | {verdict} |")


def markdown(report: CalibrationReport) -> str:
    """The measured shortlist (and plain) as a table, with the pick and the limits."""
    limits = report.limits
    lines = [f"Calibration on {report.counts['harmful']} harmful and {report.counts['benign']} benign prompts: "
             f"{report.counts['grid']} settings scored, {report.counts['shortlist']} generated "
             f"({report.max_new_tokens} new tokens, {report.judge} judge).",
             "",
             f"Limits: over-refusal at most +{limits.max_over_refusal:.0%} above plain, degeneration at most "
             f"{limits.max_degeneration:.0%}, benign KL at most {limits.max_kl:g} nats.",
             "",
             *([] if (gate := report.gate) is None else [
                 f"Awareness gate: {gate['method']} probe at layer {gate['layer']} (held-out AUC {gate['auc']:.3f}); "
                 f"its own threshold ({gate['threshold']:.4g}) flags {gate['harmful_flagged']:.0%} of these harmful "
                 f"and {gate['benign_flagged']:.0%} of these benign prompts.", ""]),
             "| setting | refusal log-prob (harmful) | benign KL | harmful refusal | benign refusal | degenerate "
             "| verdict |",
             "|---|---|---|---|---|---|---|",
             _row(report.plain, None).replace("| within limits |", "| baseline |"),
             *(_row(r, report.chosen) for r in report.shortlist)]
    if report.chosen is None:
        lines += ["", "No shortlisted setting met the limits: loosen them, widen the grid or lower the strengths."]
    else:
        chosen = report.chosen.candidate
        gated = ""
        if chosen.mode.gated and report.gate:
            threshold = report.gate["threshold"] + report.chosen.gate_offset
            gated = f" In `guarded` mode the gate fires at threshold {threshold:.4g} and applies λ {chosen.strength:g}."
        lines += ["", f"Chosen: **{chosen.label}**.{gated}"]
    return "\n".join(lines) + "\n"


def draw_heatmaps(report: CalibrationReport, out_dir: Path) -> list[Path]:
    """Per steered mode and gate level: windows × λ coloured by the stage-1 rank score above plain;
    the chosen cell outlined."""
    baseline = report.plain.rank_score
    written = []
    def panel(result: CandidateResult) -> tuple[Any, ...]:
        return result.candidate.mode, result.candidate.gate_recall, result.candidate.max_tokens

    for mode, recall, budget in dict.fromkeys(panel(r) for r in report.results if r.candidate.mode.uses_steering):
        mine = [r for r in report.results if panel(r) == (mode, recall, budget)]
        windows = list(dict.fromkeys(r.candidate.layers for r in mine))
        strengths = sorted({r.candidate.strength for r in mine})
        grid = [[math.nan] * len(strengths) for _ in windows]
        mark = None
        for result in mine:
            row, col = windows.index(result.candidate.layers), strengths.index(result.candidate.strength)
            grid[row][col] = result.rank_score - baseline
            if result is report.chosen:
                mark = (row, col)
        gate = ("" if recall is None else f", gate {recall:.0%}") + ("" if budget is None else f", {budget} tokens")
        suffix = ("" if recall is None else f"-gate{round(recall * 100)}") + ("" if budget is None else f"-{budget}tok")
        written.append(heatmap(
            grid, [f"L{window_label(w)}" for w in windows], [f"λ {s:g}" for s in strengths],
            f"{mode.value}{gate}: refusal log-prob gain, harmful − benign",
            out_dir / f"heatmap-{mode.value}{suffix}.png", mark=mark, fmt=".1f", cbar_label="nats above plain"))
    return written


def write_report(report: CalibrationReport, out_dir: str | Path) -> list[Path]:
    """calibration.json, calibration.md and the heat maps in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(report.as_dict(), indent=2, ensure_ascii=False) + "\n",
                                          encoding="utf-8")
    (out / "calibration.md").write_text(markdown(report), encoding="utf-8")
    return [out / "calibration.json", out / "calibration.md", *draw_heatmaps(report, out)]
