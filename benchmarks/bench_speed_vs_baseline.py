"""TwoTowerRetriever() fit time and Recall@10 on MovieLens-100K: this checkout against a baseline.

Absolute seconds drift on a shared machine, so the two are measured side by side in one run:
for every model seed, ``sweep_retriever.py '{"seed": S}'`` (the defaults of each version, the
split of ``--split-seed``) runs once with the baseline's code (a ``git worktree`` of
``--baseline-rev``, removed afterwards) and once with this checkout's, alternately, each in a
fresh process on one thread (with several ``--spec``, each runs after the baseline). It prints
the fit times, their ratio to the baseline's and the Recall@10 of every run, then the means.

Usage::

    python benchmarks/bench_speed_vs_baseline.py --data-home ../shared/data \\
        [--baseline-rev 6603f06] [--seeds 0 1 2] [--split-seed 0] [--spec '{}' ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINE = re.compile(r"Recall@10 (?P<recall>[0-9.]+) .* fit (?P<seconds>[0-9.]+) s")


def run(source: Path, spec: dict, data_home: str, split_seed: int) -> tuple[float, float]:
    """(fit seconds, Recall@10) of one sweep_retriever.py run with the code under ``source``."""
    env = dict(os.environ, PYTHONPATH=str(source), OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    command = [sys.executable, str(source / "benchmarks" / "sweep_retriever.py"),
               "--data-home", str(Path(data_home).resolve()), "--split-seed", str(split_seed),
               json.dumps(spec)]
    out = subprocess.run(command, env=env, cwd=source, capture_output=True, text=True, check=True)
    match = LINE.search(out.stdout)
    if match is None:
        raise RuntimeError(f"unexpected output from {command}:\n{out.stdout}\n{out.stderr}")
    return float(match["seconds"]), float(match["recall"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", required=True)
    parser.add_argument("--baseline-rev", default="6603f06",
                        help="git revision of the baseline (default: before the data-path rebuild)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--spec", action="append", default=None,
                        help="JSON parameters for this checkout's runs (repeat for several; "
                        "default '{}': the defaults); the baseline always runs its defaults")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        baseline = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(baseline),
                        args.baseline_rev], check=True, capture_output=True)
        try:
            specs = args.spec or ["{}"]
            print(f"| seed | baseline {args.baseline_rev} fit s | Recall@10 | "
                  + " | ".join(f"{spec} fit s | speed-up | Recall@10" for spec in specs)
                  + " |\n|---|---|---|" + "---|---|---|" * len(specs))
            rows = []
            for seed in args.seeds:
                old = run(baseline, {"seed": seed}, args.data_home, args.split_seed)
                new = [run(REPO, {**json.loads(spec), "seed": seed}, args.data_home,
                           args.split_seed) for spec in specs]
                rows.append((old, new))
                print(f"| {seed} | {old[0]:.0f} | {old[1]:.4f} | " + " | ".join(
                    f"{seconds:.0f} | {old[0] / seconds:.1f}x | {recall:.4f}"
                    for seconds, recall in new) + " |", flush=True)
            old_seconds = sum(old[0] for old, _ in rows)
            means = [(sum(new[i][0] for _, new in rows), sum(new[i][1] for _, new in rows))
                     for i in range(len(specs))]
            print(f"| all | {old_seconds / len(rows):.0f} | "
                  f"{sum(old[1] for old, _ in rows) / len(rows):.4f} | " + " | ".join(
                      f"{seconds / len(rows):.0f} | {old_seconds / seconds:.1f}x | "
                      f"{recall / len(rows):.4f}" for seconds, recall in means) + " |")
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(baseline)],
                           check=False, capture_output=True)


if __name__ == "__main__":
    main()
