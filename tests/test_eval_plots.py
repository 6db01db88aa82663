"""Evaluation plots: real PNG files, optional metrics only when present, NaN-safe heat-maps."""

from __future__ import annotations

import math

import pytest

from selfguard_guardrails.evaluation.metrics import Rate, awareness_compliance_gap
from selfguard_guardrails.evaluation.plots import heatmap, write_eval_plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert len(data) > 2000, f"{path} is suspiciously small ({len(data)} bytes)"


def entry(refused: int, benign: int, *, optional: bool) -> dict:
    values = {"harmful_refusal": Rate(refused, 10).as_dict(), "benign_refusal": Rate(benign, 8).as_dict(),
              "degeneration": Rate(0, 18).as_dict(), "tokens_per_prompt": 40.0, "seconds_per_prompt": 0.5}
    if optional:
        values["utility_accuracy"] = Rate(3, 5).as_dict()
        values["benign_next_token_kl"] = 0.02 * refused
        values["awareness_compliance_gap"] = awareness_compliance_gap(
            [1.0] * 8 + [-1.0] * 2, [True] * refused + [False] * (10 - refused)).as_dict()
    return values


def test_full_report_writes_all_four_plots(tmp_path):
    report = {"modes": {"plain": entry(1, 0, optional=True), "self-guard": entry(9, 2, optional=True)}}
    written = write_eval_plots(report, tmp_path)
    assert [p.name for p in written] == ["rates.png", "awareness_gap.png", "utility.png", "benign_kl.png"]
    for path in written:
        assert_png(path)


def test_missing_optional_metrics_give_only_the_rates_plot_and_remove_stale_ones(tmp_path):
    for stale in ("utility.png", "benign_kl.png"):
        (tmp_path / stale).write_bytes(b"left over from an earlier run")
    report = {"modes": {"plain": entry(1, 0, optional=False), "steer": entry(6, 1, optional=False)}}
    report["modes"]["steer"]["benign_refusal"] = Rate(0, 0).as_dict()  # no benign set: an empty rate, no bar
    written = write_eval_plots(report, tmp_path)
    assert [p.name for p in written] == ["rates.png"]
    assert_png(tmp_path / "rates.png")
    assert not any((tmp_path / name).exists() for name in ("utility.png", "benign_kl.png", "awareness_gap.png"))


def test_heatmap_draws_nan_cells_and_a_mark(tmp_path):
    values = [[0.1, math.nan, 0.7], [0.4, 0.9, math.nan]]
    path = heatmap(values, ["0.5", "1.0"], ["L10", "L12", "L14"], "refusal by strength and layer",
                   tmp_path / "sub" / "sweep.png", mark=(1, 1), fmt=".1f", cbar_label="refusal rate")
    assert path == tmp_path / "sub" / "sweep.png"
    assert_png(path)
    assert_png(heatmap([[math.nan]], ["a"], ["b"], "all blank", tmp_path / "blank.png"))


@pytest.mark.parametrize("rows, mark", [(["r1", "r2"], None), (["r1"], (5, 0))])
def test_heatmap_rejects_a_grid_that_does_not_fit_its_labels_or_mark(tmp_path, rows, mark):
    with pytest.raises(ValueError, match="grid"):
        heatmap([[1.0, 2.0]], rows, ["c1", "c2"], "bad", tmp_path / "bad.png", mark=mark)
    assert not (tmp_path / "bad.png").exists()
