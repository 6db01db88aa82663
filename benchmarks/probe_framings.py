"""What makes the awareness gate hold across framings: probe variants measured leave-one-framing-out.

Reads the framing set (``benchmarks/data/framings/make_framing_set.py``), our packaged
calibration prompts, the calibration half of ``benign_edgy_80.json`` and ``gsm8k_100.json``
(both from ``../shared/data``, read by path), runs the embedded model once over every text
(hidden states of every layer at the last prompt token, cached in ``benchmarks/runs/``), then
fits each probe variant and measures it two ways:

- **leave-one-framing-out** on the dev split: for each framing, fit on everything but that
  framing's dev rows, and report where the gate fires on them (harmful: should; benign: should not);
- **report split**: fit on all training rows, report per framing, and on GSM8K.

Training rows: the packaged calibration prompts, the benign-edgy calibration half and (for the
"framed" variants) the framing set's dev split. Prints a table and saves
``benchmarks/results/probe_framings.{json,md}``.

    python benchmarks/probe_framings.py
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from selfguard_guardrails import SelfGuard
from selfguard_guardrails.method.probe import auc
from selfguard_guardrails.method.probe_fitting import _best_threshold, _fit, fold_of, probe_texts
from selfguard_guardrails.method.prompt_sets import calibration_records
from selfguard_guardrails.runtime.chat import ChatRenderer
from selfguard_guardrails.runtime.layers import decoder_layers

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from calibrate_embedded import DATA, split_benign  # noqa: E402

FOLDS = 5
MAX_FALSE_POSITIVE = 0.05


@dataclass
class Row:
    """One text the probe reads, with where it belongs."""

    messages: list[dict]
    label: int  # 1 harmful, 0 benign, -1 unlabelled (GSM8K: benign, but only reported)
    group: str  # the source request: folds never split a group
    framing: str  # framing, with the language for non-English rows; "base" for the calibration prompts
    split: str  # "train" (calibration prompts), "dev", "report", "gsm8k"


def framing_name(row: dict) -> str:
    if row["language"] == "en":
        return row["framing"]
    return "translated" if row["framing"] == "translated" else f"{row['framing']} (translated)"


def load_rows(framing_set: Path) -> list[Row]:
    rows = [Row([{"role": "user", "content": r["prompt"]}], int(r["label"] == "harmful"), r["id"], "base", "train")
            for r in calibration_records()]
    calibration_half, report_half = split_benign(DATA / "benign_edgy_80.json")
    rows += [Row([{"role": "user", "content": r["text"]}], 0, r["id"], "base", "train") for r in calibration_half]
    rows += [Row([{"role": "user", "content": r["text"]}], 0, r["id"], "benign_edgy", "report")
             for r in report_half]
    for r in json.loads((DATA / "gsm8k_100.json").read_text(encoding="utf-8")):
        text = (r.get("text_clean") or r["question"]).strip()
        rows.append(Row([{"role": "user", "content": text}], -1, str(r.get("id", text[:40])), "gsm8k", "gsm8k"))
    for line in framing_set.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        rows.append(Row(r["messages"], int(r["label"] == "harmful"), r["source_id"], framing_name(r), r["split"]))
    return rows


def latest_turn(messages: list[dict]) -> list[dict]:
    """The reading before this change: the latest user turn alone."""
    return [next(m for m in reversed(messages) if m["role"] == "user")]


def read_states(engine: SelfGuard, rows: list[Row], reading: str, cache: Path) -> torch.Tensor:
    """[rows, layers, hidden] last-token states; each distinct text is read once, ever (cached by text)."""
    saved = torch.load(cache) if cache.is_file() else {"texts": [], "states": None}
    renderer = ChatRenderer(engine.runtime.tokenizer)
    conversations = [latest_turn(r.messages) if reading == "latest" else r.messages for r in rows]
    texts = probe_texts(renderer, conversations)
    known = {text: i for i, text in enumerate(saved["texts"])}
    missing = [t for t in dict.fromkeys(texts) if t not in known]
    if missing:
        read = engine.runtime.last_token_states(missing, batch_size=8, desc=f"states ({reading})", progress=True)
        saved["states"] = read if saved["states"] is None else torch.cat([saved["states"], read])
        saved["texts"] = [*saved["texts"], *missing]
        torch.save(saved, cache)
        known = {text: i for i, text in enumerate(saved["texts"])}
    return saved["states"][[known[t] for t in texts]]


def user_span_start(renderer: ChatRenderer, tokenizer: object) -> int:
    """Tokens of the rendered prompt before the user's text (the template's fixed opening)."""
    marker = "qqqq"
    text = renderer.render([{"role": "user", "content": marker}])
    return len(tokenizer(text[:text.index(marker)], add_special_tokens=False)["input_ids"])  # type: ignore[operator]


@torch.inference_mode()
def mean_states(engine: SelfGuard, texts: list[str], skip: int, batch_size: int = 8) -> torch.Tensor:
    """[texts, layers, hidden]: each layer's output averaged over the prompt's tokens after the
    template's opening (the user's text and the assistant header), one forward pass per batch."""
    model, tokenizer = engine.loaded.model, engine.loaded.tokenizer
    layers = decoder_layers(model)
    captured: list[torch.Tensor | None] = [None] * len(layers)
    weights: list[torch.Tensor] = []

    def hook_for(index: int) -> Callable:
        def hook(module: object, args: object, output: object) -> None:
            hidden = output[0] if isinstance(output, tuple) else output
            captured[index] = (hidden.float() * weights[0][..., None]).sum(1) / weights[0].sum(1, keepdim=True)
        return hook

    handles = [layer.register_forward_hook(hook_for(i)) for i, layer in enumerate(layers)]
    tokenizer.padding_side = "left"
    rows = []
    try:
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                              add_special_tokens=False)
            mask = batch["attention_mask"]
            counted = mask.cumsum(-1) > skip  # left padding: a row's own tokens start where its mask does
            weights[:] = [(counted & mask.bool()).float()]
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            model.model(input_ids=batch["input_ids"], attention_mask=mask, position_ids=positions, use_cache=False)
            rows.append(torch.stack(captured, dim=1))  # type: ignore[arg-type]
            print(f"\rmean states {start + len(texts[start:start + batch_size])}/{len(texts)}", end="",
                  file=sys.stderr, flush=True)
    finally:
        for handle in handles:
            handle.remove()
    return torch.cat(rows)


def read_mean_states(engine: SelfGuard, rows: list[Row], cache: Path) -> torch.Tensor:
    """Mean-pooled states of the user-turns reading, cached by text like `read_states`."""
    saved = torch.load(cache) if cache.is_file() else {"texts": [], "states": None}
    renderer = ChatRenderer(engine.runtime.tokenizer)
    texts = probe_texts(renderer, [r.messages for r in rows])
    known = {text: i for i, text in enumerate(saved["texts"])}
    missing = [t for t in dict.fromkeys(texts) if t not in known]
    if missing:
        read = mean_states(engine, missing, user_span_start(renderer, engine.runtime.tokenizer))
        saved["states"] = read if saved["states"] is None else torch.cat([saved["states"], read])
        saved["texts"] = [*saved["texts"], *missing]
        torch.save(saved, cache)
        known = {text: i for i, text in enumerate(saved["texts"])}
    return saved["states"][[known[t] for t in texts]]


Probe = Callable[[torch.Tensor], torch.Tensor]  # states [n, layers, hidden] -> score minus threshold


def direction_and_offset(states: torch.Tensor, labels: torch.Tensor, keys: list[str],
                         center: bool) -> tuple[torch.Tensor, float]:
    """Logistic fit on raw states, or on framing-centred ones with the offset re-set on the raw
    training scores (midway between the two labels' means)."""
    if not center:
        return _fit("logistic", states, labels)
    direction, _ = _fit("logistic", centred(states, keys), labels)
    raw = states @ direction
    return direction, -float(raw[labels == 1].mean() + raw[labels == 0].mean()) / 2


def fit_single(states: torch.Tensor, labels: torch.Tensor, groups: list[str], keys: list[str],
               layers: list[int], center: bool = False, top: int = 1) -> tuple[Probe, dict]:
    """The shipped recipe (logistic, best out-of-fold layer, threshold from out-of-fold scores),
    optionally fitted on framing-centred states and/or averaged over the `top` best layers."""
    fold = fold_of(labels, FOLDS, groups)
    per_layer = []
    for layer in layers:
        held_out = torch.empty(len(labels))
        for k in range(FOLDS):
            part = (fold != k).nonzero().flatten().tolist()
            direction, offset = direction_and_offset(states[part, layer], labels[part],
                                                     [keys[i] for i in part], center)
            held_out[fold == k] = states[fold == k, layer] @ direction + offset
        per_layer.append((auc(held_out[labels == 1], held_out[labels == 0]), layer, held_out))
    per_layer.sort(key=lambda t: -t[0])
    chosen = per_layer[:top]
    spreads = [float(h.std()) for _, _, h in chosen]
    held_out = sum(h / s for (_, _, h), s in zip(chosen, spreads, strict=True)) / top
    fits = [(layer, *direction_and_offset(states[:, layer], labels, keys, center), spread)
            for (_, layer, _), spread in zip(chosen, spreads, strict=True)]
    threshold = _best_threshold(held_out[labels == 1], held_out[labels == 0], MAX_FALSE_POSITIVE)

    def probe(x: torch.Tensor) -> torch.Tensor:
        total = sum((x[:, layer] @ direction + offset) / spread for layer, direction, offset, spread in fits)
        return total / top - threshold

    return probe, {"layers": [layer for _, layer, _ in chosen], "auc": round(chosen[0][0], 4)}


def centred(states: torch.Tensor, keys: list[str]) -> torch.Tensor:
    """States minus the mean of their framing (both labels): what is left is what differs within a framing."""
    out = states.clone()
    for key in set(keys):
        members = torch.tensor([k == key for k in keys])
        out[members] -= states[members].mean(0)
    return out


def shipped_probe(engine: SelfGuard) -> Probe:
    probe = engine.vector.probe
    threshold = engine.gate.threshold_for(probe)
    return lambda x: probe.score(x[:, probe.layer]) - threshold


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", type=Path, default=HERE / "runs" / "framing_set.jsonl")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--layers", default="8-29", help="layers the fits choose from, e.g. 8-29")
    parser.add_argument("--variants", default="", help="names separated by ; (default: all)")
    parser.add_argument("--readings", default="mean", help="extra readings to add: mean (mean-pooled states) or none")
    args = parser.parse_args(argv)
    rows = load_rows(args.set)
    engine = SelfGuard.from_pretrained(progress=False)
    first, last = (int(v) for v in args.layers.split("-"))
    layers = list(range(first, last + 1))
    states = {reading: read_states(engine, rows, reading, HERE / "runs" / "probe_states.pt")
              for reading in ("latest", "turns")}
    if "mean" in args.readings:
        states["mean"] = read_mean_states(engine, rows, HERE / "runs" / "probe_mean_states.pt")
        states["last+mean"] = torch.cat([states["turns"], states["mean"]], dim=2)

    def pick(where: Callable[[Row], bool]) -> list[int]:
        return [i for i, r in enumerate(rows) if where(r)]

    def train(framed: bool, translated: bool = True) -> Callable[[Row], bool]:
        def chosen(r: Row) -> bool:
            if r.split == "train":
                return True
            return framed and r.split == "dev" and (translated or "translated" not in r.framing)
        return chosen

    variants: dict[str, tuple[str, Callable[[Row], bool], dict]] = {
        "base (latest turn)": ("latest", train(False), {}),
        "base (user turns)": ("turns", train(False), {}),
        "framed": ("turns", train(True), {}),
        "framed, English only": ("turns", train(True, translated=False), {}),
        "framed, centred per framing": ("turns", train(True), {"center": True}),
        "framed, 3 layers": ("turns", train(True), {"top": 3}),
        "framed, mean-pooled": ("mean", train(True), {}),
        "framed, last + mean": ("last+mean", train(True), {}),
    }
    variants = {k: v for k, v in variants.items() if v[0] in states}
    if args.variants:
        variants = {k: v for k, v in variants.items() if k in args.variants.split(";")}
    framings = sorted({r.framing for r in rows if r.split == "dev"})
    results: dict[str, dict] = {"shipped": {}}

    def rates(scores: torch.Tensor, index: list[int]) -> dict[str, float | int]:
        fired = (scores >= 0).tolist()
        harm = [f for f, i in zip(fired, index, strict=True) if rows[i].label == 1]
        ben = [f for f, i in zip(fired, index, strict=True) if rows[i].label != 1]
        return {"harmful_fired": round(sum(harm) / len(harm), 3) if harm else None,
                "benign_fired": round(sum(ben) / len(ben), 3) if ben else None, "n": len(index)}

    def report(probe: Probe, reading: str) -> dict:
        out = {}
        for framing in [*framings, "benign_edgy", "gsm8k"]:
            index = pick(lambda r, f=framing: r.framing == f and r.split in ("report", "gsm8k"))
            out[framing] = rates(probe(states[reading][index]), index)
        return out

    shipped_reading = "last+mean" if engine.vector.probe.reading == "last+mean" else "turns"
    if shipped_reading in states:
        results["shipped"]["report"] = report(shipped_probe(engine), shipped_reading)
    for name, (reading, in_training, options) in variants.items():
        print(f"variant {name}", file=sys.stderr, flush=True)
        x = states[reading]
        entry: dict = {"lofo": {}}
        for held in framings:
            index = pick(lambda r, h=held, t=in_training: t(r) and r.framing != h)
            labels = torch.tensor([rows[i].label for i in index])
            probe, _ = fit_single(x[index], labels, [rows[i].group for i in index],
                                  [rows[i].framing for i in index], layers, **options)
            test = pick(lambda r, h=held: r.split == "dev" and r.framing == h)
            entry["lofo"][held] = rates(probe(x[test]), test)
        index = pick(in_training)
        labels = torch.tensor([rows[i].label for i in index])
        probe, entry["fit"] = fit_single(x[index], labels, [rows[i].group for i in index],
                                         [rows[i].framing for i in index], layers, **options)
        entry["report"] = report(probe, reading)
        results[name] = entry
        print(json.dumps({"fit": entry["fit"], "lofo": entry["lofo"]}), file=sys.stderr, flush=True)
    saved = args.out / "probe_framings.json"
    if args.variants and saved.is_file():  # a partial run adds to the variants measured before
        results = {**json.loads(saved.read_text(encoding="utf-8")), **results}
    markdown = to_markdown(results, framings)
    print(markdown)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "probe_framings.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    (args.out / "probe_framings.md").write_text(markdown, encoding="utf-8")
    return 0


def to_markdown(results: dict, framings: list[str]) -> str:
    def cell(entry: dict | None) -> str:
        if not entry:
            return ""
        harm, ben = entry["harmful_fired"], entry["benign_fired"]
        return f"{'' if harm is None else f'{harm:.2f}'} / {'' if ben is None else f'{ben:.2f}'}"

    names = list(results)
    lines = ["# Awareness probe variants per framing (gate fired: harmful / benign)", ""]
    for part, title, rows_ in (("lofo", "Leave-one-framing-out (dev split)", framings),
                               ("report", "Report split (fitted on all training rows)",
                                [*framings, "benign_edgy", "gsm8k"])):
        shown = [n for n in names if part in results[n]]
        lines += [f"## {title}", "", "| framing | " + " | ".join(shown) + " |", "|---|" + "---|" * len(shown)]
        lines += [f"| {f} | " + " | ".join(cell(results[n][part].get(f)) for n in shown) + " |" for f in rows_]
        lines.append("")
    fits = [f"- {n}: layers {results[n]['fit']['layers']}, out-of-fold AUC {results[n]['fit']['auc']}"
            for n in names if "fit" in results[n]]
    return "\n".join([*lines, "## Fits", "", *fits]) + "\n"


if __name__ == "__main__":
    sys.exit(main())
