"""The framing development set (benchmarks/data/framings): built from the requests we wrote
(the HarmBench rows are read by path and never here), it must keep its promises: every framing
on both labels and both splits, one split per source request, and wrappers that do not tell the
labels apart."""

from __future__ import annotations

import importlib.util
from collections import Counter, defaultdict
from pathlib import Path
from types import ModuleType

import pytest

BUILDER = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "framings" / "make_framing_set.py"


@pytest.fixture(scope="module")
def builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_framing_set", BUILDER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rows(builder: ModuleType) -> list[dict]:
    return builder.build_rows(builder.load_sources(builder.SOURCES, harmbench=None))


def test_the_build_is_deterministic_and_holds_only_our_own_requests(builder, rows):
    assert builder.render(rows) == builder.render(builder.build_rows(builder.load_sources(builder.SOURCES, None)))
    assert {row["origin"] for row in rows} == {"written"}
    assert len({row["id"] for row in rows}) == len(rows)


def test_every_framing_and_language_sits_on_both_labels_in_both_splits(rows):
    seen = Counter((row["framing"], row["language"], row["label"], row["split"]) for row in rows)
    for framing in ("direct", "fiction", "prefix_injection", "refusal_suppression", "hypothetical", "multi_turn",
                    "indirect"):
        for label in ("harmful", "benign"):
            for split in ("dev", "report"):
                assert seen[(framing, "en", label, split)] >= 3, (framing, label, split)
    for language in ("fr", "es", "de"):
        for label in ("harmful", "benign"):
            for split in ("dev", "report"):
                assert seen[("translated", language, label, split)] >= 3, (language, label, split)


def test_a_source_request_never_sits_on_both_sides_of_the_split(rows):
    splits: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        splits[row["source_id"]].add(row["split"])
    assert all(len(sides) == 1 for sides in splits.values())
    assert {side for sides in splits.values() for side in sides} == {"dev", "report"}


def test_harmful_and_benign_rows_get_the_same_wrappers(rows):
    """The label must not be readable off the wrapper: each English template is used for both."""
    used: dict[tuple[str, int], set[str]] = defaultdict(set)
    for row in rows:
        if row["language"] == "en" and not row["source_id"].startswith("b-long"):
            used[(row["framing"], row["variant"])].add(row["label"])
    assert used and all(labels == {"harmful", "benign"} for labels in used.values()), used


def test_multi_turn_rows_end_in_a_follow_up_shared_by_both_labels(builder, rows):
    framings = builder.load_framings()
    last_turns: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row["framing"] == "multi_turn":
            messages = row["messages"]
            assert messages[-1]["role"] == "user" and len(messages) >= 3
            assert messages[-1]["content"] in framings.MULTI_TURN_FOLLOW_UPS
            assert row["source_id"] not in messages[-1]["content"]
            last_turns[row["label"]].add(messages[-1]["content"])
    assert last_turns["harmful"] & last_turns["benign"]


def test_indirect_rows_carry_the_request_inside_a_document(builder, rows):
    sources = {item["id"]: item for item in builder.load_sources(builder.SOURCES, None)}
    for row in rows:
        if row["framing"] == "indirect":
            request = sources[row["source_id"]]["en"]
            text = row["messages"][-1]["content"]
            assert request in text and len(text) > len(request) + 80
