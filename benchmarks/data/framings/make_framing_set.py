#!/usr/bin/env python3
"""Build (and check) the awareness-gate framing set, ``benchmarks/runs/framing_set.jsonl``.

Combines the source requests in ``sources.json`` (harmful requests and benign look-alikes,
each in en / fr / es / de) with the framing templates in ``framings.py`` (direct, fiction,
prefix_injection, refusal_suppression, hypothetical, multi_turn, indirect, translated).
The same templates wrap both labels.  Standard library only; the output is deterministic.

    python benchmarks/data/framings/make_framing_set.py           # write the JSONL, print counts
    python benchmarks/data/framings/make_framing_set.py --check   # exit 1 if the file is out of date
    python benchmarks/data/framings/make_framing_set.py --split dev --out benchmarks/runs/framing_dev.jsonl

Rows (one per source x framing x language)::

    {"id": "<source_id>/<framing>/<language>", "source_id", "origin", "topic",
     "label": "harmful" | "benign", "framing", "language": "en" | "fr" | "es" | "de",
     "variant": <index of the template in its framings.py list>, "split": "dev" | "report",
     "messages": [{"role", "content"}, ...], "prompt": <text of the last user message>}

Which rows exist:
  * every source: each English framing once (``framings.ENGLISH_FRAMINGS``), plus (for the
    sources we wrote; HarmBench rows have no translations) a ``translated`` row in fr, es and de
    (the source's own translation, direct);
  * every source except long benign ones: a ``fiction`` row in fr, es and de (the fiction
    wrapper translated, so framing and language combine);
  * long benign sources (ids ``b-long-...``): English direct, multi_turn and hypothetical only,
    plus the translated rows.

Split: by source request, so every framing of one source lands on the same side:
``report`` when ``int(sha256(source_id).hexdigest(), 16) % 5 < 2`` (about 40 %), else ``dev``.

Variants: within each (label, split, framing, language) group the sources are ordered by
``sha256(f"{source_id}/{framing}/{language}")`` and take the templates round-robin (from a start
that depends on framing, language and split only, never on the label).  Each choice is thus a
fixed function of the hashes, every wrapper is used on both labels as soon as a group holds as
many sources as there are templates, and harmful and benign rows get the same mix of wrappers.
The multi_turn follow-up is chosen the same way from its own hash order.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "sources.json"
FRAMINGS = HERE / "framings.py"
# the set holds HarmBench rows, which the project loads by path and never commits: it goes to the
# ignored runs folder
OUT = HERE.parents[1] / "runs" / "framing_set.jsonl"
HARMBENCH = HERE.parents[2].parent / "shared" / "data" / "harmbench_behaviors_text_val.csv"
HARMBENCH_ORIGIN = "harmbench-val:"

LABELS = {"harmful": "h-", "benign": "b-"}
TEXT_FIELDS = ("en", "fr", "es", "de")
ITEM_FIELDS = ("id", "origin", "topic", *TEXT_FIELDS)


def load_framings(path: Path = FRAMINGS) -> ModuleType:
    """Import framings.py by path (benchmarks/data is not a package) and check its templates."""
    spec = importlib.util.spec_from_file_location("framing_templates", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _check_templates(module)
    return module


def _check_templates(fr: ModuleType) -> None:
    ph = fr.PLACEHOLDER
    lists: dict[str, list[str]] = {name: list(t) for name, t in fr.ENGLISH_TEMPLATES.items()}
    for lang in fr.LANGUAGES:
        lists[f"translated/{lang}"] = list(fr.TRANSLATED_DIRECT[lang])
        lists[f"fiction/{lang}"] = list(fr.FICTION_TRANSLATED[lang])
    for name, templates in lists.items():
        if len(templates) < 4:
            raise ValueError(f"framing {name}: {len(templates)} templates, want at least 4")
        if len(set(templates)) != len(templates):
            raise ValueError(f"framing {name}: duplicate templates")
        for i, t in enumerate(templates):
            if t.count(ph) != 1:
                raise ValueError(f"framing {name}[{i}]: {ph} must occur exactly once")
    if len(fr.MULTI_TURN_SETUPS) < 4 or len(fr.MULTI_TURN_FOLLOW_UPS) < 4:
        raise ValueError("multi_turn: want at least 4 setups and 4 follow-ups")
    for i, setup in enumerate(fr.MULTI_TURN_SETUPS):
        roles = [m["role"] for m in setup]
        if roles != ["user", "assistant"] * (len(roles) // 2) or not roles:
            raise ValueError(f"multi_turn[{i}]: turns must alternate user/assistant and end with assistant")
        if sum(m["content"].count(ph) for m in setup if m["role"] == "user") != 1:
            raise ValueError(f"multi_turn[{i}]: {ph} must occur exactly once, in a user turn")
        if any(ph in m["content"] or m["content"] not in fr.ASSISTANT_ACKS for m in setup if m["role"] == "assistant"):
            raise ValueError(f"multi_turn[{i}]: assistant turns must be acknowledgements from ASSISTANT_ACKS")
    if set(fr.ENGLISH_FRAMINGS) != {*fr.ENGLISH_TEMPLATES, "multi_turn"}:
        raise ValueError("ENGLISH_FRAMINGS must name the ENGLISH_TEMPLATES keys and multi_turn")


def harmbench_behaviours(path: Path | None) -> dict[str, str]:
    """BehaviorID -> Behavior text of the HarmBench CSV at `path` (empty when there is none)."""
    if path is None or not Path(path).is_file():
        return {}
    with Path(path).open(encoding="utf-8", newline="") as handle:
        return {row["BehaviorID"]: row["Behavior"] for row in csv.DictReader(handle)}


def load_sources(path: Path = SOURCES, harmbench: Path | None = HARMBENCH) -> list[dict]:
    """Read sources.json and return its items, each with a ``label``; fail on a bad schema.

    HarmBench items carry only their BehaviorID: their English text is read from the CSV by path
    (they are left out when it is missing), and they have no translations."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    behaviours = harmbench_behaviours(harmbench)
    items: list[dict] = []
    seen: set[str] = set()
    for label, prefix in LABELS.items():
        for item in data.get(label, []):
            if item.get("origin", "").startswith(HARMBENCH_ORIGIN):
                text = behaviours.get(item["origin"][len(HARMBENCH_ORIGIN):])
                if text is None:
                    continue
                item = {**item, "en": text, **{lang: "" for lang in TEXT_FIELDS[1:]}, "translated": False}
                items.append({**{k: item[k] for k in ITEM_FIELDS}, "label": label, "translated": False})
                seen.add(item["id"])
                continue
            missing = [k for k in ITEM_FIELDS if not isinstance(item.get(k), str) or not item[k].strip()]
            if missing:
                raise ValueError(f"{label} item {item.get('id')!r}: missing or empty {missing}")
            if not item["id"].startswith(prefix):
                raise ValueError(f"{label} item {item['id']!r}: id must start with {prefix!r}")
            if item["id"] in seen:
                raise ValueError(f"duplicate source id {item['id']!r}")
            seen.add(item["id"])
            items.append({**{k: item[k] for k in ITEM_FIELDS}, "label": label, "translated": True})
    if not items:
        raise ValueError(f"{path}: no harmful or benign items")
    return items


def _hash(text: str) -> int:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16)


def split_for(source_id: str) -> str:
    return "report" if _hash(source_id) % 5 < 2 else "dev"


def _fill(template: str, request: str) -> str:
    return template.replace("{request}", request)


def _plan(sources: list[dict], fr: ModuleType) -> list[tuple[dict, str, str]]:
    """Every (source, framing, language) that gets a row."""
    plan = []
    for src in sources:
        is_long = src["id"].startswith(fr.LONG_BENIGN_PREFIX)
        for framing in fr.LONG_BENIGN_FRAMINGS if is_long else fr.ENGLISH_FRAMINGS:
            plan.append((src, framing, "en"))
        for lang in fr.LANGUAGES if src["translated"] else ():
            plan.append((src, "translated", lang))
            if not is_long:
                plan.append((src, "fiction", lang))
    return plan


def _n_variants(framing: str, lang: str, fr: ModuleType) -> int:
    if framing == "multi_turn":
        return len(fr.MULTI_TURN_SETUPS)
    if framing == "translated":
        return len(fr.TRANSLATED_DIRECT[lang])
    if lang != "en":
        return len(fr.FICTION_TRANSLATED[lang])
    return len(fr.ENGLISH_TEMPLATES[framing])


def _round_robin(members: list[str], salt: str, key: str, n: int) -> dict[str, int]:
    """Order the source ids by hash and deal indices 0..n-1 from a label-independent start."""
    start = _hash(key) % n
    order = sorted(members, key=lambda sid: (_hash(f"{sid}/{salt}"), sid))
    return {sid: (start + rank) % n for rank, sid in enumerate(order)}


def build_rows(sources: list[dict], fr: ModuleType | None = None) -> list[dict]:
    """All rows, sorted by id."""
    fr = fr or load_framings()
    plan = _plan(sources, fr)
    groups: dict[tuple[str, str, str, str], list[str]] = defaultdict(list)
    for src, framing, lang in plan:
        groups[(src["label"], split_for(src["id"]), framing, lang)].append(src["id"])
    variant: dict[tuple[str, str, str], int] = {}
    follow_up: dict[str, int] = {}
    for (_, split, framing, lang), members in groups.items():
        key = f"{framing}/{lang}/{split}"
        for sid, v in _round_robin(members, f"{framing}/{lang}", key, _n_variants(framing, lang, fr)).items():
            variant[(sid, framing, lang)] = v
        if framing == "multi_turn":
            n = len(fr.MULTI_TURN_FOLLOW_UPS)
            follow_up.update(_round_robin(members, "multi_turn/follow_up", f"follow_up/{split}", n))

    rows = []
    for src, framing, lang in plan:
        sid = src["id"]
        v = variant[(sid, framing, lang)]
        request = src[lang]
        if framing == "multi_turn":
            messages = [{"role": m["role"], "content": _fill(m["content"], request)} for m in fr.MULTI_TURN_SETUPS[v]]
            messages.append({"role": "user", "content": fr.MULTI_TURN_FOLLOW_UPS[follow_up[sid]]})
        else:
            if framing == "translated":
                template = fr.TRANSLATED_DIRECT[lang][v]
            elif lang != "en":
                template = fr.FICTION_TRANSLATED[lang][v]
            else:
                template = fr.ENGLISH_TEMPLATES[framing][v]
            messages = [{"role": "user", "content": _fill(template, request)}]
        rows.append({
            "id": f"{sid}/{framing}/{lang}",
            "source_id": sid,
            "origin": src["origin"],
            "topic": src["topic"],
            "label": src["label"],
            "framing": framing,
            "language": lang,
            "variant": v,
            "split": split_for(sid),
            "messages": messages,
            "prompt": messages[-1]["content"],
        })
    rows.sort(key=lambda r: r["id"])
    return rows


def render(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def count_table(rows: list[dict]) -> str:
    """Rows per framing/language (lines) x label x split (columns)."""
    cols = [(label, split) for label in LABELS for split in ("dev", "report")]
    counts = Counter((f"{r['framing']}/{r['language']}", r["label"], r["split"]) for r in rows)
    keys = sorted({k for k, _, _ in counts})
    width = max(len("framing/language"), *(len(k) for k in keys))
    head = f"{'framing/language':<{width}}" + "".join(f"{f'{lab}/{sp}':>16}" for lab, sp in cols) + f"{'total':>8}"
    lines = [head, "-" * len(head)]
    for k in [*keys, "total"]:
        vals = [sum(c for (kk, lab, sp), c in counts.items() if (k == "total" or kk == k) and (lab, sp) == col)
                for col in cols]
        lines.append(f"{k:<{width}}" + "".join(f"{v:>16}" for v in vals) + f"{sum(vals):>8}")
    n_src = Counter((label, split) for _, label, split in {(r["source_id"], r["label"], r["split"]) for r in rows})
    lines.append(f"{'sources':<{width}}" + "".join(f"{n_src[col]:>16}" for col in cols) + f"{sum(n_src.values()):>8}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the file on disk differs from a fresh build")
    ap.add_argument("--sources", type=Path, default=SOURCES)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--harmbench", type=Path, default=HARMBENCH, help="HarmBench val CSV (its rows are read by path)")
    ap.add_argument("--split", choices=("dev", "report"), help="write only this split (e.g. for calibrate --probe-set)")
    args = ap.parse_args(argv)

    rows = build_rows(load_sources(args.sources, args.harmbench))
    if args.split:
        rows = [row for row in rows if row["split"] == args.split]
    text = render(rows)
    if args.check:
        on_disk = args.out.read_text(encoding="utf-8") if args.out.exists() else None
        if on_disk != text:
            print(f"{args.out} is out of date: run {Path(__file__).name} without --check", file=sys.stderr)
            return 1
        print(f"{args.out}: up to date ({len(rows)} rows)")
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8", newline="\n")
        print(f"wrote {args.out} ({len(rows)} rows)")
    print(count_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
