"""Calibrate the embedded model's shipped setting on public benchmark data, then report it on held-out data.

Splits (by id, so they never move): calibration = HarmBench *val* `standard` rows + the half of
`benign_edgy_80.json` whose ids come first, per category, when sorted by SHA-256; report =
HarmBench *test* `standard` rows + the other half + `gsm8k_100.json`. Benchmark rows stay in
the ignored `benchmarks/runs/`; only figures, tables and plots are copied to `docs/report/`.

    python benchmarks/calibrate_embedded.py                  # calibrate, evaluate the shipped setting, copy to docs
    python benchmarks/calibrate_embedded.py --ship           # ... and ship the calibrated vector first
    python benchmarks/calibrate_embedded.py --skip-calibrate  # evaluate the shipped setting again (resumes)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
RUNS = ROOT / "benchmarks" / "runs" / "embedded"
DOCS = ROOT / "docs" / "report"
SHIPPED = ROOT / "selfguard_guardrails" / "data"
MODES = "plain,prompt,steer,self-guard,guarded"
# split two ways: guarded+steer+prompt and self-guard+plain (plain and prompt do not depend on the
# setting, so after a new one only the first three are stale: guarded+steer against self-guard)
BALANCED = ["guarded", "self-guard", "steer", "plain", "prompt"]


def split_benign(path: Path) -> tuple[list[dict], list[dict]]:
    """Half of each category for calibration, the rest for the report, chosen by hashed id."""
    by_category: dict[str, list[dict]] = defaultdict(list)
    for row in json.loads(path.read_text(encoding="utf-8")):
        by_category[row["category"]].append(row)
    calibration, report = [], []
    for rows in by_category.values():
        rows.sort(key=lambda r: hashlib.sha256(r["id"].encode()).hexdigest())
        half = len(rows) // 2
        calibration += rows[:half]
        report += rows[half:]
    return calibration, report


def selfguard(*args: str | Path, wait: bool = True) -> subprocess.Popen:
    command = [sys.executable, "-m", "selfguard_guardrails.cli", *map(str, args)]
    print("$ selfguard", " ".join(map(str, args)), file=sys.stderr, flush=True)
    process = subprocess.Popen(command, cwd=ROOT)
    if wait and process.wait() != 0:
        raise SystemExit(f"selfguard {args[0]} failed with status {process.returncode}")
    return process


def evaluate(eval_args: list[str | Path], parallel: int) -> None:
    """Run the modes in `parallel` one-thread processes (one output directory each, seeded with the
    records already made), merge their records, then let one last eval (which finds every record
    done) compute the metrics."""
    merged = RUNS / "report" / "records.jsonl"
    merged.parent.mkdir(parents=True, exist_ok=True)
    done = merged.read_text(encoding="utf-8") if merged.is_file() else ""
    groups = [BALANCED[i::parallel] for i in range(parallel)] if parallel > 1 else []
    for i in range(len(groups)):
        (RUNS / f"report-{i}").mkdir(parents=True, exist_ok=True)
        (RUNS / f"report-{i}" / "records.jsonl").write_text(done, encoding="utf-8")
    processes = [selfguard(*eval_args, "--modes", ",".join(g), "--out", RUNS / f"report-{i}", "-q", wait=False)
                 for i, g in enumerate(groups)]
    if any(p.wait() != 0 for p in processes):
        raise SystemExit("an eval process failed; rerun to resume")
    seen, kept = set(), []
    for i in range(len(groups)):
        for line in (RUNS / f"report-{i}" / "records.jsonl").read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            key = (record["set"], record["id"], record["mode"])
            if key not in seen:
                seen.add(key)
                kept.append(line)
    if groups:
        merged.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    selfguard(*eval_args, "--modes", MODES, "--out", RUNS / "report")


def keep_records_without_the_vector() -> None:
    """A new setting makes every steered or gated record stale; plain and prompt-only answers do
    not depend on the vector."""
    merged = RUNS / "report" / "records.jsonl"
    if not merged.is_file():
        return
    kept = [line for line in merged.read_text(encoding="utf-8").splitlines()
            if json.loads(line)["mode"] in ("plain", "prompt")]
    merged.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-calibrate", action="store_true", help="keep the shipped setting; only evaluate")
    parser.add_argument("--ship", action="store_true",
                        help="copy the calibrated vector into the package (check it against the behaviour tests "
                             "first: a lowered gate can over-refuse benign prompts unlike the calibration set)")
    parser.add_argument("--strengths", default="0.25,0.5,0.75")
    parser.add_argument("--gate-recalls", default="own")
    parser.add_argument("--token-budgets", default="all")
    parser.add_argument("--repetition-penalties", default="1,1.15")
    parser.add_argument("--shortlist", default="6", help="steered settings calibrate generates for")
    parser.add_argument("--modes", default="prompt,self-guard,guarded", help="modes calibrate searches")
    parser.add_argument("--scopes", default="generated,answer", help="token scopes calibrate searches")
    parser.add_argument("--windows", default="", help="layer windows to search, e.g. 16-18,17-19 (default: "
                                                      "calibrate's own spread of windows)")
    parser.add_argument("--calibration-tokens", default="64", help="calibrate's token budget (as eval's)")
    parser.add_argument("--max-new-tokens", default="64", help="eval's token budget per answer")
    parser.add_argument("--parallel", type=int, default=2, help="eval processes, one torch thread each (default 2)")
    args = parser.parse_args()
    RUNS.mkdir(parents=True, exist_ok=True)
    calibration, report = split_benign(DATA / "benign_edgy_80.json")
    for name, rows in (("benign-calibration", calibration), ("benign-report", report)):
        (RUNS / f"{name}.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    (shipped,) = SHIPPED.glob("*.safetensors")
    if not args.skip_calibrate:
        base = RUNS / "base-vector.safetensors"  # the vector and probe as extracted, before any calibration
        if not base.is_file():
            selfguard("extract", "--output", base, "-q")
        selfguard("calibrate", "--vector", base, "--harmful", DATA / "harmbench_behaviors_text_val.csv",
                  "--where", "FunctionalCategory=standard", "--benign", RUNS / "benign-calibration.json",
                  "--strengths", args.strengths, "--gate-recalls", args.gate_recalls, "--token-budgets",
                  args.token_budgets, "--repetition-penalties", args.repetition_penalties,
                  "--shortlist", args.shortlist, "--modes", args.modes, "--scopes", args.scopes,
                  *[arg for window in args.windows.split(",") if window for arg in ("--window", window)],
                  "--max-new-tokens", args.calibration_tokens,
                  "--out", RUNS / "calibration",
                  "-o", RUNS / "calibration" / "vector.safetensors")
        if args.ship:
            shutil.copyfile(RUNS / "calibration" / "vector.safetensors", shipped)
            keep_records_without_the_vector()
    evaluate(["eval", "--harmful", DATA / "harmbench_behaviors_text_test.csv", "--where",
              "FunctionalCategory=standard", "--benign", RUNS / "benign-report.json", "--utility",
              DATA / "gsm8k_100.json", "--max-new-tokens", args.max_new_tokens], args.parallel)
    DOCS.mkdir(parents=True, exist_ok=True)
    search = f"search-{args.calibration_tokens}-tokens"
    copies = {**{p: p.name for p in (RUNS / "calibration").glob("*.png")},
              RUNS / "calibration" / "calibration.md": f"{search}.md",
              RUNS / "calibration" / "calibration.json": f"{search}.json",
              **{p: p.name for p in (RUNS / "report").glob("*.png")},
              RUNS / "report" / "metrics.json": "metrics.json", RUNS / "report" / "report.md": "report.md"}
    for source, name in copies.items():
        if source.is_file():
            shutil.copyfile(source, DOCS / name)
    print(f"copied figures to {DOCS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
