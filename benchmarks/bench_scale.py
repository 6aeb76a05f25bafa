"""Fit time and peak memory of the estimators by data size, on heavy-tailed synthetic data.

Every (size, estimator) pair runs in a fresh Python process, so its peak RSS is its own. The
child generates ``make_implicit_interactions(size, random_state=seed)`` (timed, with its own
peak RSS), takes its RSS after generation as the baseline, resets the kernel's peak-RSS counter
(``/proc/self/clear_refs``; without it the peak covers generation too) and fits. It reports
rows, users, items, the longest history, fit seconds, seconds per epoch (mean of
``history_[:, "dur"]``), preprocessing seconds (fit time minus the epochs: validation,
encoding, building the catalogue and index), the peak RSS of the fit and its increase over the
baseline. The child's address space is capped (``--memory-limit-gb``, RLIMIT_AS), so a run
that would exhaust the machine fails cleanly and is reported as out of memory; a run longer
than ``--timeout`` is killed and reported as such (with the peak RSS it had reached).

``--estimator retriever`` fits ``TwoTowerRetriever`` on the positive rows (timestamp kept:
the default bag tower uses the most recent items). ``--estimator dssm`` fits
``DSSMRecommender`` on the positives plus one negative per positive (the same user, an item
drawn uniformly; about 0.2% of them are accidental positives, left as label noise); building
those pairs counts as generation. ``--params`` overrides constructor arguments of either.

Usage::

    python benchmarks/bench_scale.py --sizes 100000 300000 --estimator retriever \\
        --params '{"max_epochs": 1}' --threads 2 --out scale.md

It prints a markdown table (with the command) ready for benchmarks/RESULTS.md; ``--out``
writes it too (``.json``: the raw records).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULT_TAG = "BENCH_SCALE_RESULT "
GIB = 2**30
OOM_MARKERS = ("MemoryError", "can't allocate memory", "Cannot allocate memory", "bad_alloc",
               "out of memory")
POLL_SECONDS = 0.2


# ------------------------------------------------------------------------------------ child


def _status_bytes(field: str) -> int:
    """``VmHWM`` (peak) or ``VmRSS`` (current) of this process, in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"/proc/self/status has no {field} line")


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def _labelled_pairs(data, seed: int):
    """DSSMRecommender's input: the positives and as many (user, uniform item) negatives."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    positives = data.frame.drop(columns="timestamp")
    user_pos = positives["user_id"].to_numpy() - 1
    item_pos = rng.integers(len(data["items"]), size=len(positives))
    negatives = pd.concat(
        [
            data["users"].iloc[user_pos].reset_index(drop=True),
            data["items"].iloc[item_pos].reset_index(drop=True),
        ],
        axis=1,
    )[positives.columns]
    X = pd.concat([positives, negatives], ignore_index=True)
    y = np.repeat(np.array([1, 0], dtype=np.int64), len(positives))
    return X, y


def _training_data(data, estimator: str, seed: int):
    if estimator == "retriever":
        return data.frame, None
    return _labelled_pairs(data, seed)


def run_child(spec: dict) -> None:
    """Generate, fit, and print one tagged JSON record on stdout."""
    import gc

    import torch

    from skdssm import DSSMRecommender, TwoTowerRetriever
    from skdssm.datasets import make_implicit_interactions

    torch.set_num_threads(spec["threads"])
    record = {"size": spec["size"], "estimator": spec["estimator"], "status": "ok"}
    start = time.perf_counter()
    data = make_implicit_interactions(spec["size"], random_state=spec["seed"])
    X, y = _training_data(data, spec["estimator"], spec["seed"])
    lengths = data.interactions.groupby("user_id").size()
    record.update(
        rows=len(data.interactions), fit_rows=len(X), users=len(data["users"]),
        items=len(data["items"]), max_history=int(lengths.max()),
        generation_s=time.perf_counter() - start, generation_peak_gib=_status_bytes("VmHWM") / GIB,
    )
    del data, lengths
    gc.collect()
    baseline = _status_bytes("VmRSS")
    record["baseline_gib"] = baseline / GIB
    record["peak_covers_generation"] = not _reset_peak_rss()
    estimator = {"retriever": TwoTowerRetriever, "dssm": DSSMRecommender}[spec["estimator"]]
    model = estimator(**{"random_state": spec["seed"], **spec["params"]})
    start = time.perf_counter()
    try:
        model.fit(X, y)
    except MemoryError:
        record["status"] = "out of memory"
    except RuntimeError as error:  # torch's allocator raises RuntimeError
        if not any(marker in str(error) for marker in OOM_MARKERS):
            raise
        record["status"] = "out of memory"
    fit_seconds = time.perf_counter() - start
    peak = _status_bytes("VmHWM")
    record.update(peak_gib=peak / GIB, delta_gib=(peak - baseline) / GIB)
    if record["status"] == "ok":
        epoch_seconds = [float(d) for d in model.history_[:, "dur"]]
        record.update(fit_s=fit_seconds, epochs=len(epoch_seconds),
                      epoch_s=sum(epoch_seconds) / len(epoch_seconds),
                      preprocessing_s=fit_seconds - sum(epoch_seconds))
    print(RESULT_TAG + json.dumps(record), flush=True)


# ----------------------------------------------------------------------------------- parent


def _limit_address_space(limit_gib: float):
    limit = int(limit_gib * GIB)

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


def _wait(process: subprocess.Popen, timeout: float):
    """Wait for ``process`` up to ``timeout`` seconds (killing it after); return
    (exit status or None when killed for the timeout, its peak RSS in bytes)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            process.kill()
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = -signal.SIGKILL
            return None, usage.ru_maxrss * 1024
        time.sleep(POLL_SECONDS)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_maxrss * 1024


def run_one(spec: dict, *, timeout: float, memory_limit_gib: float) -> dict:
    """Run one configuration in a fresh process; the record it printed, or why it has none."""
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]),
           "MKL_NUM_THREADS": str(spec["threads"])}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(
            [sys.executable, __file__, "--child", json.dumps(spec)], stdout=out, stderr=err,
            env=env, preexec_fn=_limit_address_space(memory_limit_gib),
        )
        code, peak_bytes = _wait(process, timeout)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    for line in stdout.splitlines():
        if line.startswith(RESULT_TAG):
            record = json.loads(line[len(RESULT_TAG):])
            if record["status"] == "out of memory":
                record["status"] += f" (limit {memory_limit_gib:g} GiB)"
            return record
    record = {"size": spec["size"], "estimator": spec["estimator"],
              "peak_gib": peak_bytes / GIB}
    if code is None:
        record["status"] = f"timeout (> {timeout:g} s)"
    elif any(marker in stderr for marker in OOM_MARKERS):
        record["status"] = f"out of memory (limit {memory_limit_gib:g} GiB)"
    elif code < 0:
        record["status"] = f"killed by {signal.Signals(-code).name}"
    else:
        last = stderr.strip().splitlines()[-1:] or ["no output"]
        record["status"] = f"failed (exit {code}): {last[0][:120]}"
    return record


COLUMNS = [
    ("estimator", "estimator", "{}"), ("size", "requested rows", "{:,}"),
    ("status", "status", "{}"), ("rows", "rows", "{:,}"), ("fit_rows", "fit rows", "{:,}"),
    ("users", "users", "{:,}"),
    ("items", "items", "{:,}"), ("max_history", "max history", "{:,}"),
    ("generation_s", "generation s", "{:.1f}"), ("fit_s", "fit s", "{:.1f}"),
    ("epoch_s", "s / epoch", "{:.1f}"), ("preprocessing_s", "preprocessing s", "{:.1f}"),
    ("baseline_gib", "RSS after generation GiB", "{:.2f}"), ("peak_gib", "peak RSS GiB", "{:.2f}"),
    ("delta_gib", "fit RSS increase GiB", "{:.2f}"),
]


def markdown_table(records: list) -> str:
    lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|" + "|".join("---" for _ in COLUMNS) + "|"]
    for record in records:
        cells = [fmt.format(record[key]) if key in record else "" for key, _, fmt in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(records: list, command: str, threads: int) -> str:
    notes = [f"Command: `{command}`", "",
             f"{os.cpu_count()} CPUs, torch threads {threads}, one fresh process per row; "
             "peak RSS of the fit (generation excluded), increase over the RSS after generation.",
             ""]
    if any(r.get("peak_covers_generation") for r in records):
        notes.append("(peak-RSS reset unavailable here: the peaks include generation.)\n")
    return "\n".join(notes) + markdown_table(records)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000],
                        help="requested interactions per run")
    parser.add_argument("--estimator", nargs="+", choices=["retriever", "dssm"],
                        default=["retriever"], help="one run per size for each")
    parser.add_argument("--params", type=json.loads, default={"max_epochs": 1},
                        help='JSON constructor overrides, e.g. \'{"max_epochs": 1}\'')
    parser.add_argument("--threads", type=int, default=2, help="torch (and OpenMP) threads")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds before a run is killed and reported as a timeout")
    parser.add_argument("--memory-limit-gb", type=float, default=20.0,
                        help="address-space cap of each run (GiB); beyond it the run fails as "
                             "out of memory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None,
                        help="also write the table (.md) or the records (.json) here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(json.loads(args.child))
        return
    if not isinstance(args.params, dict):
        parser.error(f"--params must be a JSON object; got {args.params!r}")

    command = shlex.join(["python", "benchmarks/bench_scale.py", *sys.argv[1:]])
    records = []
    for estimator in args.estimator:
        for size in args.sizes:
            spec = {"size": size, "estimator": estimator, "params": args.params,
                    "threads": args.threads, "seed": args.seed}
            print(f"running {estimator} at {size:,} rows ...", file=sys.stderr, flush=True)
            records.append(run_one(spec, timeout=args.timeout,
                                   memory_limit_gib=args.memory_limit_gb))
            print(f"  {records[-1]['status']}", file=sys.stderr, flush=True)
    table = report(records, command, args.threads)
    print(table)
    if args.out is not None:
        text = (json.dumps({"command": command, "records": records}, indent=2)
                if args.out.suffix == ".json" else table)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
