"""Calibrate the embedded model's shipped setting on public benchmark data, then report it on held-out data.

Splits (by id, so they never move): calibration = HarmBench *val* `standard` rows + the half of
`benign_edgy_80.json` whose ids come first, per category, when sorted by SHA-256; report =
HarmBench *test* `standard` rows + the other half + `gsm8k_100.json`. Benchmark rows stay in
the ignored `benchmarks/runs/`; only figures, tables and plots are copied to `docs/report/`.

    python benchmarks/calibrate_embedded.py                 # calibrate, ship, evaluate, copy to docs
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
MODES = "plain,prompt,steer,self-guard"


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
    """Run the modes in `parallel` one-thread processes (one output directory each), merge their
    records, then let one last eval (which finds every record done) compute the metrics."""
    modes = MODES.split(",")
    balanced = [modes[0], modes[3], modes[1], modes[2]]  # plain+self-guard, prompt+steer: similar loads
    groups = [balanced[i::parallel] for i in range(parallel)] if parallel > 1 else []
    processes = [selfguard(*eval_args, "--modes", ",".join(g), "--out", RUNS / f"report-{i}", "-q", wait=False)
                 for i, g in enumerate(groups)]
    if any(p.wait() != 0 for p in processes):
        raise SystemExit("an eval process failed; rerun to resume")
    merged = RUNS / "report" / "records.jsonl"
    merged.parent.mkdir(parents=True, exist_ok=True)
    seen = set()
    lines = merged.read_text(encoding="utf-8").splitlines() if merged.is_file() else []
    for i in range(len(groups)):
        lines += (RUNS / f"report-{i}" / "records.jsonl").read_text(encoding="utf-8").splitlines()
    kept = []
    for line in lines:
        record = json.loads(line)
        key = (record["set"], record["id"], record["mode"])
        if key not in seen:
            seen.add(key)
            kept.append(line)
    merged.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    selfguard(*eval_args, "--modes", MODES, "--out", RUNS / "report")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-calibrate", action="store_true", help="keep the shipped setting; only evaluate")
    parser.add_argument("--strengths", default="0.25,0.5,0.75,1,1.5")
    parser.add_argument("--gate-recalls", default="own,0.9")
    parser.add_argument("--max-new-tokens", default="64", help="eval's token budget per answer")
    parser.add_argument("--parallel", type=int, default=2, help="eval processes, one torch thread each (default 2)")
    args = parser.parse_args()
    RUNS.mkdir(parents=True, exist_ok=True)
    calibration, report = split_benign(DATA / "benign_edgy_80.json")
    for name, rows in (("benign-calibration", calibration), ("benign-report", report)):
        (RUNS / f"{name}.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    (shipped,) = SHIPPED.glob("*.safetensors")
    if not args.skip_calibrate:
        selfguard("calibrate", "--harmful", DATA / "harmbench_behaviors_text_val.csv",
                  "--where", "FunctionalCategory=standard", "--benign", RUNS / "benign-calibration.json",
                  "--strengths", args.strengths, "--gate-recalls", args.gate_recalls, "--out", RUNS / "calibration",
                  "-o", RUNS / "calibration" / "vector.safetensors")
        shutil.copyfile(RUNS / "calibration" / "vector.safetensors", shipped)
        for stale in RUNS.glob("report*"):  # the setting changed: old records are stale
            shutil.rmtree(stale)
    evaluate(["eval", "--harmful", DATA / "harmbench_behaviors_text_test.csv", "--where",
              "FunctionalCategory=standard", "--benign", RUNS / "benign-report.json", "--utility",
              DATA / "gsm8k_100.json", "--max-new-tokens", args.max_new_tokens], args.parallel)
    DOCS.mkdir(parents=True, exist_ok=True)
    for source in [*(RUNS / "calibration").glob("*.png"), RUNS / "calibration" / "calibration.md",
                   RUNS / "calibration" / "calibration.json", *(RUNS / "report").glob("*.png"),
                   RUNS / "report" / "metrics.json", RUNS / "report" / "report.md"]:
        if source.is_file():
            shutil.copyfile(source, DOCS / source.name)
    print(f"copied figures to {DOCS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
