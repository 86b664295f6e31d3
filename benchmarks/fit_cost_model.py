"""Fit the coefficients of skconv's cost model (``method="auto"``) on this machine.

Usage::

    python benchmarks/fit_cost_model.py measure   # ~10 min: times the sweep
    python benchmarks/fit_cost_model.py fit       # fits, reports, prints the block
    python benchmarks/fit_cost_model.py fit --write   # ... and writes it into skconv/_methods.py

The reasoning
-------------
``auto`` must pick, before touching any image, the strategy that will run
fastest.  Their speeds differ for reasons that are easy to count but hard to
weigh by hand: a row-window GEMM does exactly the useful multiply-adds but in
many small products (K filters by out_w columns) and copies q shifted rows of
every image; a Toeplitz product wastes the zeros of a banded matrix but runs
a few long GEMMs on free views; the whole-image operator wastes even more
zeros in one single GEMM; the low-rank path does far fewer flops in two passes.
So each strategy describes a problem by the counts that drive its time (see
the ``*_features`` functions in skconv/_methods.py):

    const  1 (Python and NumPy call overhead, a few tens of microseconds)
    flops  flops its GEMMs execute, zeros of banded/operator matrices included
    small  flops lost to GEMM sides shorter than the BLAS micro-tile
    bytes  bytes its copies move
    calls  GEMMs issued (BLAS call + NumPy loop step each)
    pack   operand elements BLAS packs, summed over calls (skinny products)
    out    bytes of the result (fresh pages cost more than the write)

and its time is modelled as a nonnegative combination of them,
t = c . features.  The weights are what this script measures: for each
strategy, dtype and threading mode ("blas": one stream of products on
BLAS's own threads; "threads": the batch split over 2 threads with
single-threaded BLAS; "single": the same on one thread) it fits c >= 0 to
minimise sum_i log(c . f_i / t_i)^2, the squared *relative* (log) error,
because a choice is only as good as the ratio between the estimate of the
winner and of the others, small problems matter as much as large ones, and
an estimate 5x too low must cost as much as one 5x too high (see fit_log;
each t_i is the fastest of its samples: on a shared machine other processes
only ever add time).  Nonnegativity keeps the model
physical (no strategy gets faster by doing more), so it extrapolates sanely
to shapes outside the sweep.

The sweep (``measure``) is a set of random problems drawn over the ranges
the workloads span (images 6-96 px, 1-32 filters, filters 1-15 px, batches
10-5000, some with 3 channels, stride 2, dilation 2, and filter banks of
rank 1, 2 or full), plus the benchmark's W1-W6.  Every strategy is timed in
both modes, interleaved in a shuffled order (the machine is noisy; ratios
within one shape are what the fit needs).  The data are kept in
cost_model_sweep.json so that the fit can be re-run, or checked, without
re-measuring.

``fit`` then reports, in-sample and by 2-fold cross-validation over shapes,
how far from the fastest measured strategy the model's choice would have
been (geometric mean and worst ratio), for n_jobs=1 and n_jobs=2.
"""

import argparse
import json
import os
import re
import sys
import time
from dataclasses import replace

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from skconv import conv2d  # noqa: E402
from skconv import _methods  # noqa: E402
from skconv._bench import forced_split, machine_info, time_interleaved  # noqa: E402
from skconv._conv import plan_conv2d  # noqa: E402

SWEEP_PATH = os.path.join(HERE, "cost_model_sweep.json")
METHODS_PATH = os.path.join(ROOT, "skconv", "_methods.py")
MODES = ("blas", "threads", "single")
WORKLOADS = [
    (1000, 28, 28, 1, 1, 5, 5),
    (1000, 28, 28, 1, 8, 5, 5),
    (200, 64, 64, 1, 16, 7, 7),
    (100, 64, 64, 1, 4, 15, 15),
    (5000, 8, 8, 1, 4, 3, 3),
    (20000, 28, 28, 1, 16, 3, 3),
]


def random_problem(rng):
    """(n, h, w, c, k, p, q, stride, dilation, rank) in the workloads' range."""
    while True:
        h = int(rng.integers(6, 97))
        w = h if rng.random() < 0.6 else int(rng.integers(6, 97))
        c = 3 if rng.random() < 0.15 else 1
        stride = 2 if rng.random() < 0.12 else 1
        dilation = 2 if rng.random() < 0.08 else 1
        p = int(rng.integers(1, min((h - 1) // dilation + 1, 15) + 1))
        q = p if rng.random() < 0.7 else int(rng.integers(1, min((w - 1) // dilation + 1, 15) + 1))
        k = int(rng.choice([1, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32]))
        rank = int(rng.choice([1, 2, 0])) if c == 1 and min(p, q) > 2 else 0
        oh = (h - dilation * (p - 1) - 1) // stride + 1
        ow = (w - dilation * (q - 1) - 1) // stride + 1
        macs = k * oh * ow * p * q * c
        n = int(np.exp(rng.uniform(np.log(10), np.log(5000))))
        n = max(1, min(n, int(3e8 / macs)))
        if n * macs >= 3e5:
            return n, h, w, c, k, p, q, stride, dilation, rank


def make_filters(rng, k, p, q, c, rank):
    if rank:
        bank = sum(
            rng.standard_normal((k, p, 1)) * rng.standard_normal((k, 1, q)) for _ in range(rank)
        )
        return bank if c == 1 else np.repeat(bank[..., None], c, axis=-1)
    return rng.standard_normal((k, p, q) if c == 1 else (k, p, q, c))


def spec_fields(spec):
    return {
        "n_images": spec.n_images, "height": spec.height, "width": spec.width,
        "n_channels": spec.n_channels, "n_filters": spec.n_filters,
        "filter_height": spec.filter_height, "filter_width": spec.filter_width,
        "stride": list(spec.stride), "dilation": list(spec.dilation),
        "out_height": spec.out_height, "out_width": spec.out_width,
        "dtype": np.dtype(spec.dtype).name, "filter_rank": spec.filter_rank,
    }


def spec_from(fields):
    f = dict(fields)
    f["stride"], f["dilation"] = tuple(f["stride"]), tuple(f["dilation"])
    f["dtype"] = np.dtype(f["dtype"])
    return _methods.ConvSpec(**f)


def measure_one(problem, dtype, rng, rounds, pause):
    n, h, w, c, k, p, q, stride, dilation, rank = problem
    x = rng.standard_normal((n, h, w) if c == 1 else (n, h, w, c)).astype(dtype)
    bank = make_filters(rng, k, p, q, c, rank).astype(dtype)
    spec = plan_conv2d(x.shape, x.dtype, bank.shape, stride=stride, dilation=dilation).spec
    wts = bank if bank.ndim == 4 else bank[..., None]
    spec = replace(spec, filter_rank=_methods.filter_rank(np.ascontiguousarray(wts)))
    records = []
    for mode in MODES:
        jobs = 2 if mode == "threads" else 1
        candidates = {}
        for name, method in _methods.METHODS.items():
            if not method.supports(spec):
                continue
            if name == "einsum" and n * spec.macs_per_image > 3e7:
                continue
            candidates[name] = (
                lambda name=name: conv2d(x, bank, stride=stride, dilation=dilation, method=name, n_jobs=jobs)
            )
        with forced_split(mode):
            # A strategy taking over 0.3 s is far from the best one: time it
            # twice (the first call is cold) rather than hold up the sweep.
            slow = {}
            for name, fn in list(candidates.items()):
                start = time.perf_counter()
                fn()
                elapsed = time.perf_counter() - start
                if elapsed > 0.3:
                    start = time.perf_counter()
                    fn()
                    slow[name] = [elapsed, time.perf_counter() - start]
                    del candidates[name]
            samples = time_interleaved(candidates, rounds, rng, pause=pause)
            samples.update(slow)
        for name, times in samples.items():
            records.append({
                "spec": spec_fields(spec), "method": name, "mode": mode,
                "seconds": float(np.median(times)), "samples": [float(t) for t in times],
            })
    return records


def measure(args):
    rng = np.random.default_rng(args.seed)
    problems = [tuple(wl) + (1, 1, 0) for wl in WORKLOADS]
    problems += [random_problem(rng) for _ in range(args.count)]
    records = []
    start = time.time()
    for i, problem in enumerate(problems):
        for dtype in (np.float32, np.float64):
            print(f"[{i + 1}/{len(problems)} {time.time() - start:.0f}s] {problem} {np.dtype(dtype).name}",
                  file=sys.stderr, flush=True)
            records += measure_one(problem, dtype, rng, args.rounds, args.pause)
    data = {"machine": machine_info(), "date": time.strftime("%Y-%m-%d %H:%M"),
            "rounds": args.rounds, "records": records}
    with open(args.out, "w") as fh:
        json.dump(data, fh, indent=0)
    print(f"wrote {len(records)} timings to {args.out}", file=sys.stderr)


# --- fitting -------------------------------------------------------------------


def features(name, spec):
    f = _methods._FEATURE_FUNCTIONS[name](spec)
    f["const"] = 1.0
    f["out"] = _methods._out_bytes(spec)
    return np.array([f.get(k, 0.0) for k in _methods.FEATURES])


def fit_log(rows, times):
    """Nonnegative c minimising sum(log((rows @ c) / times) ** 2).

    Started from the nonnegative least-squares solution on relative error,
    sum((rows @ c) / times - 1) ** 2, which is linear but lopsided: it
    charges an estimate 5x too high 16, one 5x too low at most 1, so it
    under-estimates the strategies' bad cases, exactly the ones "auto" must
    avoid.  The log error is symmetric.
    """
    from scipy.optimize import least_squares, nnls

    a = rows / times[:, None]
    scale = np.abs(a).max(axis=0)
    scale[scale == 0] = 1.0
    start, _ = nnls(a / scale, np.ones(len(times)))
    start = np.maximum(start, 1e-9)

    def residuals(c):
        return np.log(np.maximum((a / scale) @ c, 1e-12))

    result = least_squares(residuals, start, bounds=(0, np.inf))
    return result.x / scale


def fit_groups(records):
    groups = {}
    for r in records:
        spec = spec_from(r["spec"])
        key = (r["method"], r["spec"]["dtype"], r["mode"])
        # The fastest sample: other processes on this shared machine only
        # ever add time, so the minimum is the best estimate of the cost.
        groups.setdefault(key, []).append((features(r["method"], spec), min(r["samples"])))
    coefficients, quality = {}, {}
    for key, rows in sorted(groups.items()):
        x = np.array([f for f, _ in rows])
        t = np.array([s for _, s in rows])
        used = np.abs(x).max(axis=0) > 0  # a strategy's unused features get 0
        coef = np.zeros(x.shape[1])
        coef[used] = fit_log(x[:, used], t)
        pred = x @ coef
        coefficients[key] = tuple(float(f"{c:.4g}") for c in coef)
        quality[key] = (len(t), float(np.sqrt(np.mean(np.log(pred / t) ** 2))))
    return coefficients, quality


def choice_quality(records, coefficients):
    """How far the model's pick is from the fastest measured strategy.

    As conv2d runs them: a strategy splits the batch over threads when the
    model says its "threads" time beats its "blas" time, whatever n_jobs; so
    with n_jobs=1 it runs in mode "single" or "blas", with n_jobs=2 in
    "threads" or "blas".  The pick is compared with the fastest measured
    (strategy, mode) that n_jobs allows.
    """
    by_problem = {}
    for r in records:
        key = json.dumps(r["spec"], sort_keys=True)
        by_problem.setdefault(key, {})[(r["method"], r["mode"])] = min(r["samples"])
    ratios = {1: [], 2: []}
    worst = {1: (0, None), 2: (0, None)}
    for key, times in by_problem.items():
        spec = spec_from(json.loads(key))
        dtype = spec.dtype.name

        def estimate(name, mode):
            coef = coefficients.get((name, dtype, mode))
            return None if coef is None else float(features(name, spec) @ np.array(coef))

        for jobs in (1, 2):
            split_mode = "single" if jobs == 1 else "threads"
            picks = {}
            for name in {m for m, _ in times}:
                est_blas, est_split = estimate(name, "blas"), estimate(name, split_mode)
                if est_blas is None or est_split is None:
                    continue
                split = estimate(name, "threads") < est_blas
                mode = split_mode if split else "blas"
                if (name, mode) in times:
                    picks[name] = (est_split if split else est_blas, times[(name, mode)], mode)
            allowed = [t for (m, mode), t in times.items() if mode in ("blas", split_mode)]
            if not picks:
                continue
            pick = min(picks, key=lambda m: picks[m][0])
            ratio = picks[pick][1] / min(allowed)
            ratios[jobs].append(ratio)
            if ratio > worst[jobs][0]:
                best = min(((m, mode) for (m, mode) in times if mode in ("blas", split_mode)), key=times.get)
                worst[jobs] = (ratio, (key, (pick, picks[pick][2]), best))
    return {
        jobs: (float(np.exp(np.mean(np.log(r)))), max(r), len(r), worst[jobs][1])
        for jobs, r in ratios.items() if r
    }


def cross_validate(records, folds=2, seed=0):
    keys = sorted({json.dumps(r["spec"], sort_keys=True) for r in records})
    rng = np.random.default_rng(seed)
    fold_of = dict(zip(keys, rng.integers(0, folds, len(keys))))
    result = {1: [], 2: []}
    for fold in range(folds):
        train = [r for r in records if fold_of[json.dumps(r["spec"], sort_keys=True)] != fold]
        test = [r for r in records if fold_of[json.dumps(r["spec"], sort_keys=True)] == fold]
        coefficients, _ = fit_groups(train)
        for jobs, (g, w, n, _) in choice_quality(test, coefficients).items():
            result[jobs].append((g, w, n))
    return {
        jobs: (float(np.exp(sum(np.log(g) * n for g, _, n in v) / sum(n for *_, n in v))), max(w for _, w, _ in v))
        for jobs, v in result.items()
    }


def write_block(coefficients):
    text = open(METHODS_PATH).read()
    body = "{\n" + "".join(
        f"    {key!r}: ({', '.join(f'{c:.4g}' for c in coef)}),\n"
        for key, coef in sorted(coefficients.items())
    ) + "}"
    block = (
        "# BEGIN FITTED COEFFICIENTS (benchmarks/fit_cost_model.py writes this block)\n"
        f"# (method, dtype, mode): coefficients of {_methods.FEATURES}\n"
        f"COEFFICIENTS = {body}\n"
        "# END FITTED COEFFICIENTS"
    )
    new, count = re.subn(
        r"# BEGIN FITTED COEFFICIENTS.*?# END FITTED COEFFICIENTS", lambda m: block, text, flags=re.S
    )
    if count != 1:
        raise SystemExit("could not find the coefficient block in skconv/_methods.py")
    with open(METHODS_PATH, "w") as fh:
        fh.write(new)
    print(f"wrote {len(coefficients)} coefficient sets into {METHODS_PATH}")


def fit(args):
    with open(args.sweep) as fh:
        data = json.load(fh)
    records = data["records"]
    coefficients, quality = fit_groups(records)
    print(f"{len(records)} timings, machine: {data['machine']['cpu']}, "
          f"OPENBLAS_CORETYPE={data['machine']['OPENBLAS_CORETYPE']}")
    print(f"{'method':<14}{'dtype':<9}{'mode':<9}{'n':>4}{'rms log err':>12}  coefficients {_methods.FEATURES}")
    for key, (n, err) in quality.items():
        print(f"{key[0]:<14}{key[1]:<9}{key[2]:<9}{n:>4}{err:>12.3f}  {coefficients[key]}")
    for jobs, (g, w, n, worst) in choice_quality(records, coefficients).items():
        print(f"in-sample, n_jobs={jobs}: picked / fastest geomean {g:.3f}, worst {w:.2f} over {n} problems")
        print(f"    worst: {worst}")
    for jobs, (g, w) in cross_validate(records).items():
        print(f"2-fold cross-validation, n_jobs={jobs}: geomean {g:.3f}, worst {w:.2f}")
    if args.write:
        write_block(coefficients)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="time every strategy on the sweep")
    m.add_argument("--count", type=int, default=70, help="random problems (plus W1-W6)")
    m.add_argument("--rounds", type=int, default=5)
    m.add_argument("--pause", type=float, default=0.01)
    m.add_argument("--seed", type=int, default=1)
    m.add_argument("--out", default=SWEEP_PATH)
    f = sub.add_parser("fit", help="fit the coefficients on the sweep")
    f.add_argument("--sweep", default=SWEEP_PATH)
    f.add_argument("--write", action="store_true", help="write them into skconv/_methods.py")
    args = parser.parse_args(argv)
    return measure(args) if args.command == "measure" else fit(args)


if __name__ == "__main__":
    sys.exit(main())
