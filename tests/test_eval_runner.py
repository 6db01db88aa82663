"""The evaluation runner: records per prompt, metrics per mode, and resuming after a crash."""

from __future__ import annotations

import json

import pytest

from selfguard_guardrails.errors import CorruptFileError, InvalidSettingError
from selfguard_guardrails.evaluation.datasets import EvalItem
from selfguard_guardrails.evaluation.runner import EvalRun, read_records
from tests.tiny_engines import make_engine


def items(prefix: str, count: int, target: str | None = None) -> list[EvalItem]:
    return [EvalItem(id=f"{prefix}-{i}", prompt=f"{prefix} question number {i}?", label=None,
                     target_answer=target, meta={}) for i in range(count)]


SETS = {"harmful": items("harmful", 5), "benign": items("benign", 3), "utility": items("maths", 2, "4")}


def test_every_prompt_and_mode_is_recorded_with_metrics(tmp_path, smollm_tokenizer):
    run = EvalRun(make_engine(smollm_tokenizer), tmp_path, ["plain", "self-guard"], max_new_tokens=4,
                  batch_size=2, progress=False)
    report = run.run(SETS)
    records = read_records(tmp_path / "records.jsonl")
    assert len(records) == 2 * (5 + 3 + 2)
    assert {r["mode"] for r in records} == {"plain", "self-guard"}
    for record in records:
        assert {"set", "prompt", "mode", "answer", "reasoning", "refused", "degenerate"} <= record.keys()
    assert all("correct" in r for r in records if r["set"] == "utility")
    plain = report["modes"]["plain"]
    assert plain["harmful_refusal"]["total"] == 5 and plain["benign_refusal"]["total"] == 3
    assert plain["benign_next_token_kl"] == 0.0
    assert report["modes"]["self-guard"]["benign_next_token_kl"] > 0
    assert plain["utility_accuracy"]["total"] == 2
    assert json.loads((tmp_path / "metrics.json").read_text()) == report
    table = (tmp_path / "report.md").read_text()
    assert "| plain |" in table and "| self-guard |" in table


def test_a_crash_loses_no_finished_rows_and_a_rerun_resumes(tmp_path, smollm_tokenizer, monkeypatch):
    engine = make_engine(smollm_tokenizer)
    real_batch = engine.batch
    calls: list[int] = []

    def crash_after_two_batches(prompts, **options):
        calls.append(len(prompts))
        if len(calls) > 2:
            raise KeyboardInterrupt
        return real_batch(prompts, **options)

    monkeypatch.setattr(engine, "batch", crash_after_two_batches)
    with pytest.raises(KeyboardInterrupt):
        EvalRun(engine, tmp_path, ["plain"], max_new_tokens=3, batch_size=2, progress=False).run(SETS)
    saved = read_records(tmp_path / "records.jsonl")
    assert len(saved) == 4  # two finished batches of two
    with (tmp_path / "records.jsonl").open("a") as sink:
        sink.write('{"set": "harm')  # a line torn by the crash
    calls.clear()
    monkeypatch.setattr(engine, "batch", lambda prompts, **o: calls.append(len(prompts)) or real_batch(prompts, **o))
    EvalRun(engine, tmp_path, ["plain"], max_new_tokens=3, batch_size=2, progress=False).run(SETS)
    assert sum(calls) == 10 - 4  # only what was missing
    records = read_records(tmp_path / "records.jsonl")
    keys = [(r["set"], r["id"], r["mode"]) for r in records]
    assert len(keys) == len(set(keys)) == 10


def test_damaged_records_and_bad_modes_are_refused(tmp_path, smollm_tokenizer):
    (tmp_path / "records.jsonl").write_text('not json\n{"set": "benign"}\n')
    with pytest.raises(CorruptFileError, match="line 1"):
        read_records(tmp_path / "records.jsonl")
    with pytest.raises(InvalidSettingError, match="Unknown mode"):
        EvalRun(make_engine(smollm_tokenizer), tmp_path / "x", ["plain", "yolo"])


def test_guarded_benign_kl_counts_prompts_the_gate_lets_through_as_their_below_mode(tmp_path, smollm_tokenizer):
    import math

    from selfguard_guardrails.settings import GateSetting
    from tests.tiny_engines import gated_engine

    benign = {"benign": items("benign", 3)}

    def kl(threshold: float, mode: str, out: str, **options) -> float:
        report = EvalRun(gated_engine(smollm_tokenizer, threshold=threshold, **options), tmp_path / out, [mode],
                         max_new_tokens=2, progress=False).run(benign)
        return report["modes"][mode]["benign_next_token_kl"]

    assert kl(math.inf, "guarded", "closed") == 0.0  # nothing flagged: all plain
    assert kl(math.inf, "guarded", "prompt", gate=GateSetting(below="prompt")) == pytest.approx(
        kl(math.inf, "prompt", "prompt-only"))
    stronger = kl(-math.inf, "guarded", "open", gate=GateSetting(strength=4.0))
    assert stronger > kl(-math.inf, "self-guard", "ungated") > 0.0  # the gate's λ 4 moves it more than λ 2


def test_the_report_measures_the_probe_on_its_own_sets(tmp_path, smollm_tokenizer):
    from tests.tiny_engines import gated_engine

    engine = gated_engine(smollm_tokenizer, threshold=0.0)
    sets = {"harmful": items("harmful", 3), "benign": items("benign", 3)}
    report = EvalRun(engine, tmp_path, ["plain"], max_new_tokens=2, progress=False).run(sets)
    harmful = engine.awareness([i.prompt for i in sets["harmful"]])
    benign = engine.awareness([i.prompt for i in sets["benign"]])
    expected_auc = sum((h > b) + 0.5 * (h == b) for h in harmful for b in benign) / 9
    probe = report["probe"]
    assert probe["layer"] == 2 and probe["auc"] == pytest.approx(expected_auc, abs=1e-4)
    assert probe["harmful_flagged"]["count"] == sum(s >= 0 for s in harmful)
    assert probe["benign_flagged"]["count"] == sum(s >= 0 for s in benign)
    assert "Awareness probe (mean_difference, layer 2) on these sets: AUC" in (tmp_path / "report.md").read_text()
