"""Calibration on tiny random models: the grid, exact teacher-forced scores, the gate, the pick, the file."""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext

import pytest
import torch

from selfguard_guardrails import SelfGuard, SteeringSetting
from selfguard_guardrails.calibration import (
    CalibrationLimits,
    Calibrator,
    Candidate,
    build_grid,
    calibrated_vector,
    default_windows,
    write_report,
)
from selfguard_guardrails.calibration.scoring import PLAIN, REFUSAL_OPENINGS, CandidateScorer, CandidateScores, gated
from selfguard_guardrails.calibration.search import Measured, gate_offset
from selfguard_guardrails.errors import InvalidSettingError, VectorMismatchError
from selfguard_guardrails.evaluation.metrics import rate
from selfguard_guardrails.method.probe import AwarenessProbe
from selfguard_guardrails.method.steering import steer
from selfguard_guardrails.runtime.loading import LoadedModel
from selfguard_guardrails.settings import Mode
from tests.conftest import tiny_llama
from tests.tiny_engines import make_engine

PROMPTS = ["Tell me a story about a cat.", "Hi", "What is the capital of France and why is it famous?"]


# --------------------------------------------------------------------------- the grid


def test_default_windows_stay_inside_the_model_between_a_fifth_and_four_fifths():
    windows = default_windows(30)
    assert 5 <= len(windows) <= 12
    assert all(len(w) == 3 and list(w) == list(range(w[0], w[0] + 3)) for w in windows)
    assert windows[0][0] == 6 and windows[-1][0] <= 24 and windows[-1][-1] <= 29
    assert default_windows(2, width=3) == [(0, 1)]


def test_grid_has_prompt_once_and_every_window_and_strength_for_steered_modes():
    grid = build_grid(8, windows=[(2, 3), (4,)], strengths=(0.5, 1.0))
    assert [c for c in grid if c.mode is Mode.PROMPT] == [Candidate(Mode.PROMPT)]
    steered = [c for c in grid if c.mode.uses_steering]
    assert len(steered) == 2 * 2 * 2
    assert {(c.layers, c.strength) for c in steered if c.mode is Mode.STEER} == {
        ((2, 3), 0.5), ((2, 3), 1.0), ((4,), 0.5), ((4,), 1.0)}


@pytest.mark.parametrize("options, message", [
    ({"modes": ["plain", "steer"]}, "plain is the baseline"),
    ({"modes": ["yolo"]}, "Unknown mode"),
    ({"scopes": ["prompt"]}, "Unknown steering scope"),
    ({"strengths": [0.0]}, "must be positive"),
    ({"windows": [(7, 8)]}, "out of range"),
])
def test_bad_grids_are_refused_with_the_fix(options, message):
    with pytest.raises(InvalidSettingError, match=message):
        build_grid(8, **options)


# --------------------------------------------------------------------------- exact scores


def _reference(engine: SelfGuard, prompt: str, opening: list[int], candidate: Candidate
               ) -> tuple[float, torch.Tensor]:
    """log P(opening | prompt) and the distributions it is read from, by one uncached forward pass."""
    tokenizer, model = engine.loaded.tokenizer, engine.loaded.model
    ids = tokenizer(engine.render(prompt, Mode.PROMPT if candidate.mode.uses_prompt else Mode.PLAIN),
                    add_special_tokens=False)["input_ids"]
    context = steer(model, engine.vector, strength=candidate.strength, layers=candidate.layers,
                    scope=candidate.scope, prompt_lengths=[len(ids)]) if candidate.mode.uses_steering else nullcontext()
    with context, torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids + opening])).logits[0].float()
    dists = torch.log_softmax(logits, dim=-1)[len(ids) - 1: len(ids) - 1 + len(opening)]
    return float(dists[torch.arange(len(opening)), torch.tensor(opening)].sum()), dists


@pytest.fixture
def engine(smollm_tokenizer):
    return make_engine(smollm_tokenizer)


def test_cached_teacher_forced_scores_equal_uncached_forward_passes(engine):
    candidates = [Candidate(Mode.PROMPT), Candidate(Mode.STEER, (1, 2), 2.0, "generated"),
                  Candidate(Mode.SELF_GUARD, (1,), 3.0, "generated"), Candidate(Mode.SELF_GUARD, (2, 3), 1.5, "all")]
    scorer = CandidateScorer(engine, batch_size=2)  # 3 prompts: a full and a partial left-padded batch
    scores = scorer.score(PROMPTS, candidates, with_kl=True)
    own = scorer.own_openings(PROMPTS)
    refusals = [engine.loaded.tokenizer(t, add_special_tokens=False)["input_ids"][:6] for t in REFUSAL_OPENINGS]
    for candidate in [PLAIN, *candidates]:
        for row, prompt in enumerate(PROMPTS):
            expected = torch.logsumexp(torch.tensor([_reference(engine, prompt, r, candidate)[0] for r in refusals]), 0)
            assert scores[candidate].refusal_logprobs[row] == pytest.approx(float(expected), abs=1e-3)
            _, plain_dists = _reference(engine, prompt, own[row], PLAIN)
            _, dists = _reference(engine, prompt, own[row], candidate)
            kl = (plain_dists.exp() * (plain_dists - dists)).sum(-1).clamp(min=0).mean()
            assert scores[candidate].kl[row] == pytest.approx(float(kl), abs=1e-3)
    assert scores[PLAIN].mean_kl == pytest.approx(0.0, abs=1e-5)
    assert scores[candidates[1]].mean_kl > 1e-3  # steering moved the distribution


def test_prompts_the_gate_passes_keep_plain_scores_and_cost_no_kl():
    candidate = CandidateScores(refusal_logprobs=[-1.0, -2.0, -3.0], kl=[0.5, 0.6, 0.7])
    plain = CandidateScores(refusal_logprobs=[-9.0, -8.0, -7.0], kl=[0.0, 0.0, 0.0])
    merged = gated(candidate, plain, [True, False, True])
    assert merged.refusal_logprobs == [-1.0, -8.0, -3.0]
    assert merged.kl == [0.5, 0.0, 0.7]


def test_gate_levels_flag_the_asked_share_of_harmful_prompts():
    awareness = [3.0, -1.0, 0.5, -4.0]
    assert gate_offset(awareness, None) == 0.0
    assert gate_offset(awareness, 1.0) == -4.0
    assert gate_offset(awareness, 0.5) == 0.5
    assert gate_offset(awareness, 0.75) == -1.0
    assert sum(a >= gate_offset(awareness, 0.75) for a in awareness) == 3


def _gated_engine(tokenizer) -> SelfGuard:
    engine = make_engine(tokenizer)
    generator = torch.Generator().manual_seed(3)
    probe = AwarenessProbe(layer=2, direction=torch.randn(32, generator=generator), threshold=0.0, auc=0.9)
    engine.use_vector(dataclasses.replace(engine.vector, probe=probe))
    return engine


def test_a_lower_gate_is_scored_and_written_into_the_probe(smollm_tokenizer, tmp_path, monkeypatch):
    engine = _gated_engine(smollm_tokenizer)
    harmful, benign = [*PROMPTS, "Why?"], [*PROMPTS, "How?"]
    grid = build_grid(engine.num_layers, modes=["self-guard", "guarded"], windows=[(1, 2)], strengths=(2.0,),
                      gate_recalls=(None, 1.0))
    assert [(c.mode.value, c.gate_recall) for c in grid] == [("self-guard", None), ("guarded", None),
                                                             ("guarded", 1.0)]  # gate levels: guarded only
    monkeypatch.setattr(Calibrator, "_measure", lambda self, result, h, b: _measured(
        4 if result.candidate.gate_recall == 1.0 else 1, 0, 0, n=4))
    report = Calibrator(engine, shortlist=3, progress=False, limits=CalibrationLimits(max_kl=1e9)).run(
        harmful, benign, grid)
    everything = CandidateScorer(engine).score(harmful, [grid[0]], with_kl=False)
    ungated = next(r for r in report.results if r.candidate.mode is Mode.SELF_GUARD)
    assert ungated.harmful_refusal_logprob == pytest.approx(everything[grid[0]].refusal_logprob, abs=1e-4)
    full_gate = next(r for r in report.results if r.candidate.gate_recall == 1.0)
    assert full_gate.harmful_refusal_logprob == pytest.approx(everything[grid[0]].refusal_logprob, abs=1e-4)
    assert report.chosen is full_gate
    path = calibrated_vector(engine.vector, report).save(tmp_path / "gated.safetensors")
    fresh = SelfGuard(engine.loaded, vector=path, progress=False)
    assert fresh.default_mode is Mode.GUARDED and fresh.gate.source == "vector file"
    assert fresh.gate.strength == 2.0 and fresh.setting.strength == 2.0  # no ungated cell measured: the same λ
    assert all(score >= -1e-4 for score in fresh.awareness(harmful))  # the written gate flags every harmful prompt
    assert fresh.vector.probe.threshold == pytest.approx(engine.vector.probe.threshold + full_gate.gate_offset)


def test_gate_levels_need_a_probe(engine):
    grid = build_grid(engine.num_layers, modes=["guarded"], windows=[(1,)], strengths=(1.0,), gate_recalls=(0.9,))
    with pytest.raises(InvalidSettingError, match="Mode guarded needs a steering vector with an awareness probe"):
        Calibrator(engine, progress=False).run([*PROMPTS, "x"], [*PROMPTS, "y"], grid)
    with pytest.raises(InvalidSettingError, match="share of harmful prompts"):
        build_grid(engine.num_layers, gate_recalls=(1.5,))


# --------------------------------------------------------------------------- the pick


def _measured(harmful: int, benign: int, broken: int, n: int = 10) -> Measured:
    flags = lambda k: [True] * k + [False] * (n - k)  # noqa: E731
    return Measured(rate(flags(harmful)), rate(flags(benign)), rate(flags(broken)), 0.0)


def test_the_pick_is_the_highest_harmful_refusal_within_the_limits(engine, monkeypatch):
    grid = build_grid(engine.num_layers, windows=[(1,), (2,), (3,)], strengths=(1.0,))  # all shortlisted
    outcome = {PLAIN: _measured(1, 0, 0), Candidate(Mode.PROMPT): _measured(3, 0, 0),
               Candidate(Mode.SELF_GUARD, (1,), 1.0): _measured(9, 4, 0),   # too many benign refusals
               Candidate(Mode.SELF_GUARD, (2,), 1.0): _measured(7, 0, 0),   # the best that fits
               Candidate(Mode.SELF_GUARD, (3,), 1.0): _measured(5, 0, 0),
               Candidate(Mode.STEER, (1,), 1.0): _measured(8, 0, 2)}        # degenerate
    monkeypatch.setattr(Calibrator, "_measure", lambda self, result, h, b: outcome.get(result.candidate,
                                                                                      _measured(0, 0, 0)))
    report = Calibrator(engine, shortlist=6, progress=False, limits=CalibrationLimits(max_kl=1e9)).run(
        [*PROMPTS, "One more?"], ["a?", "b?", "c?", "d?"], grid)
    assert report.chosen.candidate == Candidate(Mode.SELF_GUARD, (2,), 1.0)
    verdicts = {r.candidate: r.violations for r in report.shortlist}
    assert any("over-refusal" in v for v in verdicts[Candidate(Mode.SELF_GUARD, (1,), 1.0)])
    assert any("degeneration" in v for v in verdicts[Candidate(Mode.STEER, (1,), 1.0)])
    assert report.counts == {"harmful": 4, "benign": 4, "grid": len(grid), "shortlist": 7}


def test_a_repetition_penalty_shares_its_cells_score_and_is_written_into_the_file(engine, monkeypatch, tmp_path):
    grid = build_grid(engine.num_layers, modes=["self-guard"], windows=[(1,)], strengths=(1.0,),
                      repetition_penalties=(1.0, 1.5))
    plain_cell, penalised = Candidate(Mode.SELF_GUARD, (1,), 1.0), Candidate(Mode.SELF_GUARD, (1,), 1.0,
                                                                            repetition_penalty=1.5)
    assert [c for c in grid if c.mode.uses_steering] == [plain_cell, penalised]
    assert "rep 1.5" in penalised.label and "rep" not in plain_cell.label
    assert penalised.setting(engine.setting).repetition_penalty == 1.5  # what stage 2 generates with
    outcome = {PLAIN: _measured(0, 0, 0), plain_cell: _measured(8, 0, 3), penalised: _measured(7, 0, 0)}
    monkeypatch.setattr(Calibrator, "_measure", lambda self, r, h, b: outcome.get(r.candidate, _measured(0, 0, 0)))
    report = Calibrator(engine, shortlist=4, progress=False, limits=CalibrationLimits(0.05, 0.1, 1e9)).run(
        [*PROMPTS, "x?"], [*PROMPTS, "y?"], grid)
    scores = {r.candidate: (r.harmful_refusal_logprob, r.benign_refusal_logprob) for r in report.results}
    assert scores[plain_cell] == scores[penalised]
    assert report.chosen.candidate == penalised  # the unpenalised cell loops too often
    fresh = SelfGuard(engine.loaded, vector=calibrated_vector(engine.vector, report).save(tmp_path / "v.safetensors"),
                      progress=False)
    assert fresh.setting.repetition_penalty == 1.5
    with pytest.raises(InvalidSettingError, match="repetition_penalty"):
        build_grid(engine.num_layers, repetition_penalties=(0.5,))


def test_no_feasible_setting_means_no_file(engine, monkeypatch, tmp_path):
    monkeypatch.setattr(Calibrator, "_measure", lambda self, r, h, b: _measured(0, 0, 0) if r.candidate == PLAIN
                        else _measured(9, 9, 9))
    report = Calibrator(engine, shortlist=2, progress=False).run(
        [*PROMPTS, "x?"], [*PROMPTS, "y?"], build_grid(engine.num_layers, windows=[(1,)], strengths=(1.0,)))
    assert report.chosen is None
    with pytest.raises(InvalidSettingError, match="No candidate met the limits"):
        calibrated_vector(engine.vector, report)
    assert "No shortlisted setting met the limits" in (write_report(report, tmp_path)[1]).read_text()


def test_too_few_prompts_and_bad_limits_are_refused(engine):
    with pytest.raises(InvalidSettingError, match="at least 4 harmful and 4 benign"):
        Calibrator(engine, progress=False).run(["a", "b"], ["c", "d", "e", "f"], [Candidate(Mode.PROMPT)])
    with pytest.raises(InvalidSettingError, match="max_kl must be a number >= 0"):
        CalibrationLimits(max_kl=-1)


# --------------------------------------------------------------------------- the file


def test_a_real_calibration_writes_a_vector_the_engine_steers_with(engine, tmp_path, smollm_tokenizer):
    grid = build_grid(engine.num_layers, modes=["self-guard"], windows=[(1, 2), (2, 3)], strengths=(0.5, 1.0))
    report = Calibrator(engine, shortlist=2, max_new_tokens=3, progress=False,
                        limits=CalibrationLimits(1.0, 1.0, 1e9), judge=lambda prompt, answer: True).run(
        [*PROMPTS, "Why?"], [*PROMPTS, "How?"], grid)
    assert report.chosen is not None and report.chosen.measured is not None
    written = write_report(report, tmp_path)
    assert (tmp_path / "heatmap-self-guard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {p.name for p in written} >= {"calibration.json", "calibration.md"}
    path = calibrated_vector(engine.vector, report).save(tmp_path / "vector.safetensors")

    chosen = report.chosen.candidate
    fresh = SelfGuard(engine.loaded, vector=path, progress=False)
    assert fresh.setting == SteeringSetting(layers=chosen.layers, strength=chosen.strength, scope=chosen.scope)
    assert fresh.setting.source == "vector file"
    assert fresh.default_mode is Mode.SELF_GUARD
    assert SelfGuard(engine.loaded, vector=path, mode="plain", progress=False).default_mode is Mode.PLAIN

    other = LoadedModel(model=tiny_llama(vocab_size=len(smollm_tokenizer), layers=5), tokenizer=smollm_tokenizer,
                        name="other", fingerprint="other", context_window=256, source="object")
    with pytest.raises(VectorMismatchError, match="made for another model"):
        SelfGuard(other, vector=path, progress=False).vector  # noqa: B018


def test_a_prompt_only_pick_is_recorded_as_the_default_mode(engine, monkeypatch, tmp_path):
    monkeypatch.setattr(Calibrator, "_measure", lambda self, r, h, b: _measured(5, 0, 0)
                        if r.candidate.mode is Mode.PROMPT else _measured(0, 0, 0))
    report = Calibrator(engine, shortlist=1, progress=False, limits=CalibrationLimits(max_kl=1e9)).run(
        [*PROMPTS, "x?"], [*PROMPTS, "y?"], build_grid(engine.num_layers, windows=[(2,)], strengths=(1.0,)))
    assert report.chosen.candidate == Candidate(Mode.PROMPT)
    path = calibrated_vector(engine.vector, report).save(tmp_path / "v.safetensors")
    fresh = SelfGuard(engine.loaded, vector=path, progress=False)
    assert fresh.default_mode is Mode.PROMPT
    assert fresh.setting.layers == (2,)  # the shortlisted steering is kept for the steered modes


def test_calibration_leaves_the_engine_setting_as_it_was(engine):
    before = engine.setting
    Calibrator(engine, shortlist=1, max_new_tokens=2, progress=False, limits=CalibrationLimits(1, 1, 1e9)).run(
        [*PROMPTS, "x?"], [*PROMPTS, "y?"], build_grid(engine.num_layers, windows=[(3,)], strengths=(1.0,)))
    assert engine.setting == before and engine.setting.source == before.source
