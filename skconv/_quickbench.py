"""``python -m skconv bench``: what ``auto`` picks on this machine, and how fast it is.

Times ``conv2d(method="auto")`` and every strategy that supports each of a
few workloads, interleaved in shuffled order over a few rounds (the best
round counts: on a shared machine other processes only ever add time), and
prints what auto picks, the cost model's estimate next to the measured time
of each strategy, and auto's time over the fastest strategy's.  The cost
model was fitted on one machine (``skconv/cost_model.json`` records which);
this shows how well its choices carry over to yours.  The full benchmark
against torch, scipy and the stride-tricks einsum is ``benchmarks/bench.py``
in the repository.

Examples
--------
>>> from skconv._quickbench import WORKLOADS
>>> sorted(WORKLOADS)
['W1', 'W2', 'W3', 'W5']
"""

import argparse
import json
import sys
import time

import numpy as np

from ._validation import check_output_path

WORKLOADS = {
    # name: (n_images, height, width, n_filters, p, q)
    "W1": (1000, 28, 28, 1, 5, 5),
    "W2": (1000, 28, 28, 8, 5, 5),
    "W3": (200, 64, 64, 16, 7, 7),
    "W5": (5000, 8, 8, 4, 3, 3),
}
# A strategy estimated slower than this runs on a subset of the batch, its
# time scaled up (einsum, the reference, takes seconds on W3).
SLOW_SECONDS = 0.05


def best_times(candidates, rounds, rng):
    """Best seconds per call of each zero-argument callable, timed interleaved."""
    best = {}
    names = list(candidates)
    for fn in candidates.values():  # warm up: caches, page faults, threads
        fn()
    for _ in range(rounds):
        rng.shuffle(names)
        for name in names:
            start = time.perf_counter()
            candidates[name]()
            elapsed = time.perf_counter() - start
            best[name] = min(best.get(name, np.inf), elapsed)
    return best


def run_workload(name, shape, dtype, rounds, rng, n_jobs):
    """Time auto and every strategy on one workload; a JSON-able dict."""
    from . import conv2d, explain_conv2d

    n, h, w, k, p, q = shape
    x = rng.standard_normal((n, h, w)).astype(dtype)
    bank = rng.standard_normal((k, p, q)).astype(dtype)
    choice = explain_conv2d(x, bank, n_jobs=n_jobs)
    candidates, scale = {"auto": lambda: conv2d(x, bank, n_jobs=n_jobs)}, {}
    for method, estimate in choice.estimates.items():
        m = n if estimate <= SLOW_SECONDS else max(1, int(n * SLOW_SECONDS / estimate))
        candidates[method] = lambda m=m, method=method: conv2d(
            x[:m], bank, method=method, n_jobs=n_jobs
        )
        scale[method] = n / m
    times = best_times(candidates, rounds, rng)
    seconds = {c: t * scale.get(c, 1.0) for c, t in times.items()}
    fastest = min(choice.estimates, key=seconds.get)
    return {
        "workload": name,
        "dtype": np.dtype(dtype).name,
        "shape": list(shape),
        "auto_picks": choice.method,
        "reason": str(choice),
        "auto_ms": seconds["auto"] * 1e3,
        "fastest": fastest,
        "auto_over_fastest": seconds["auto"] / seconds[fastest],
        "strategies": {
            m: {
                "measured_ms": seconds[m] * 1e3,
                "estimated_ms": choice.estimates[m] * 1e3,
                "scaled_from_images": n / scale[m] if scale[m] > 1 else None,
            }
            for m in choice.estimates
        },
    }


def format_workload(row):
    from ._strategies import METHODS

    n, h, w, k, p, q = row["shape"]
    lines = [
        f"{row['workload']} {row['dtype']}: {n} images {h}x{w}, {k} filter(s) {p}x{q}; "
        f"auto picks {row['auto_picks']}: {row['auto_ms']:.3g} ms, "
        f"{row['auto_over_fastest']:.2f}x the fastest ({row['fastest']})"
    ]
    for m, e in sorted(row["strategies"].items(), key=lambda kv: kv[1]["measured_ms"]):
        note = (
            f"  (timed on {e['scaled_from_images']:.0f} images)" if e["scaled_from_images"] else ""
        )
        lines.append(
            f"  {m:<13}{e['measured_ms']:>10.3g} ms  estimated {e['estimated_ms']:>8.3g} ms  "
            f"{METHODS[m].description}{note}"
        )
    return "\n".join(lines)


def model_source():
    """One line: the cost model's weights in use, shipped or calibrated here."""
    from ._costmodel import load_model

    model = load_model()
    if model.get("calibrated"):
        about = model["calibrated"]
        return f"cost model: calibrated on this machine {about['date']} ({about['path']})"
    fitted = model["fitted_on"]
    blas = ", ".join(sorted({f"{b['internal_api']} {b['architecture']}" for b in fitted["blas"]}))
    return (
        f"cost model: shipped weights (fitted on {fitted['cpu']}, {blas}); "
        "`python -m skconv calibrate` fits them to this machine"
    )


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m skconv bench",
        description=(
            "Time conv2d's auto choice and every strategy on a few workloads on this "
            "machine; print what auto picks, the cost model's estimates and the measured times."
        ),
    )
    parser.add_argument("--quick", action="store_true", help="small batches, two rounds (seconds)")
    parser.add_argument("--rounds", type=int, help="timing rounds (default 5; 2 with --quick)")
    parser.add_argument(
        "--n-jobs", type=int, default=-1, help="n_jobs of conv2d (default -1: all cores)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    return parser


def main(argv=None):
    """Run the benchmark; returns the exit code (0, or 2 for bad arguments)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error(f"--rounds must be >= 1; got {args.rounds}.")
    if args.n_jobs == 0:
        parser.error("--n-jobs must be a nonzero int (-1: all cores); got 0.")
    if args.json:
        # The results are written after every workload is timed: a path that
        # cannot be written is refused before the first timing.
        try:
            check_output_path(args.json, "--json")
        except ValueError as exc:
            parser.error(str(exc))
    rounds = args.rounds or (2 if args.quick else 5)
    rng = np.random.default_rng(0)
    model = model_source()
    print(model, flush=True)
    rows = []
    for name, shape in WORKLOADS.items():
        if args.quick:
            shape = (max(2, shape[0] // 50),) + shape[1:]
        for dtype in ("float32", "float64"):
            print(f"timing {name} {dtype} ...", file=sys.stderr, flush=True)
            row = run_workload(name, shape, dtype, rounds, rng, args.n_jobs)
            print(format_workload(row), flush=True)
            rows.append(row)
    ratios = [row["auto_over_fastest"] for row in rows]
    print(
        f"auto / fastest strategy: geometric mean {np.exp(np.mean(np.log(ratios))):.2f}, "
        f"worst {max(ratios):.2f} (best of {rounds} round(s), n_jobs={args.n_jobs})"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"rounds": rounds, "n_jobs": args.n_jobs, "cost_model": model, "workloads": rows},
                fh,
                indent=1,
            )
    return 0
