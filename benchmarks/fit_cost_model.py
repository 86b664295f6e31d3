"""Fit the weights of skconv's cost model (``method="auto"``) on this machine.

Usage, from the repository root::

    python benchmarks/fit_cost_model.py measure   # ~10 min: times the sweep
    python benchmarks/fit_cost_model.py fit       # fits and reports (stored model vs refit)
    python benchmarks/fit_cost_model.py fit --write > benchmarks/fit_report.txt
                                                  # ... and writes skconv/cost_model.json
    python benchmarks/fit_cost_model.py measure --methods fft
    python benchmarks/fit_cost_model.py fit --methods fft --write >> benchmarks/fit_report.txt
                                                  # one strategy added to the stored model

This is a maintainer's tool for the package's internals: it reads the
strategies' counts of work (skconv._costmodel.features) and runs conv2d's
driver with the threading mode forced both ways (skconv._conv.run_plan with
a modified choice), which the public API does not offer.

The reasoning
-------------
``auto`` must pick, before touching any image, the strategy that will run
fastest.  Their speeds differ for reasons that are easy to count but hard to
weigh by hand: a row-window GEMM does exactly the useful multiply-adds but in
many small products (K filters by out_w columns) and copies q shifted rows of
every image; a Toeplitz product wastes the zeros of a banded matrix but runs
a few long GEMMs on free views; the whole-image operator wastes even more
zeros in one single GEMM; the low-rank path does far fewer flops in two passes.
So each strategy describes a problem by the counts that drive its time (their
``features`` in skconv/_strategies.py):

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

Which weights are kept
----------------------
A feature that is a linear combination of the ones before it over a group's
problems gets no weight: its weight would be arbitrary.  That drops unused
features, constant ones (collinear with ``const``) and exact multiples (taps
moves 2 * itemsize bytes per flop).  After the fit, a weight whose term never makes
more than ``KEEP_SHARE`` (0.1 %) of any estimate on the sweep is set to zero
and the others are refitted: such a term cannot move a choice (the model's
own error is 6-60 %) and its value is whatever the optimiser stopped at
(values like 1e-29 before this rule).  Repeated until every kept term
matters somewhere.

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

One strategy at a time (``--methods NAME``)
-------------------------------------------
A strategy added or changed after the last full sweep gets its weights
without re-measuring the others: ``measure --methods fft`` times it on a sweep drawn
where it can matter (``METHOD_SWEEPS``) together with rowgemm, interleaved,
on the same shapes and in the same run (written to
``cost_model_sweep_<name>.json``).  On a machine busier than during the full
sweep everything runs slower by some factor; ``fit --methods fft`` estimates
it per threading mode as the median over the run of measured rowgemm /
rowgemm's stored estimate, divides the new strategy's times by it, fits its
weights as above and adds them to the stored model, every other weight left
as it is.  The report then compares, per problem, the model's choice
between the new strategy and rowgemm with the measured one.
"""

import argparse
import json
import os
import sys
import time
from dataclasses import replace

import numpy as np

# benchmarks/bench.py, next to this file
from bench import SAMPLE_WARMUP_S, machine_info, time_interleaved

from skconv._conv import _check_finite_images, _setup, run_plan
from skconv._costmodel import FEATURES, MODES, features
from skconv._plan import ConvSpec
from skconv._strategies import METHODS

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SWEEP_PATH = os.path.join(HERE, "cost_model_sweep.json")
MODEL_PATH = os.path.join(ROOT, "skconv", "cost_model.json")
KEEP_SHARE = 1e-3
WORKLOADS = [
    (1000, 28, 28, 1, 1, 5, 5),
    (1000, 28, 28, 1, 8, 5, 5),
    (200, 64, 64, 1, 16, 7, 7),
    (100, 64, 64, 1, 4, 15, 15),
    (5000, 8, 8, 1, 4, 3, 3),
    (20000, 28, 28, 1, 16, 3, 3),
]


def fft_problem(rng):
    """A problem where the "fft" strategy can matter: filters 7x7 to 31x31."""
    while True:
        h = int(rng.choice([32, 48, 64, 96, 128, 160, 256]))
        w = h if rng.random() < 0.7 else int(rng.choice([32, 64, 96, 128, 200]))
        c = int(rng.choice([1, 1, 1, 2, 3]))
        stride = int(rng.choice([1, 1, 1, 1, 2, 3]))
        dilation = 2 if rng.random() < 0.1 else 1
        p = int(rng.choice([7, 9, 11, 13, 15, 19, 23, 27, 31]))
        q = p if rng.random() < 0.8 else int(rng.choice([7, 11, 15, 21, 31]))
        k = int(rng.choice([1, 2, 4, 8, 16]))
        if dilation * (p - 1) + 1 > h - 4 or dilation * (q - 1) + 1 > w - 4:
            continue
        oh = (h - dilation * (p - 1) - 1) // stride + 1
        ow = (w - dilation * (q - 1) - 1) // stride + 1
        macs = k * oh * ow * p * q * c
        n = max(1, min(2000, int(np.exp(rng.uniform(np.log(2e7), np.log(3e8))) / macs)))
        return n, h, w, c, k, p, q, stride, dilation, 0


REFERENCE = "rowgemm"  # the load-factor yardstick of --methods sweeps


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


# Sweeps of the strategies fitted on their own (``--methods``): a problem
# generator, how many of its problems, and fixed problems.  fft: the small
# workloads, where it must learn that it loses, and W7 and W8.  toeplitz
# (to refit it after its products for all filters became one matmul call;
# that refit was measured, replayed and not kept): the full sweep's range
# and W1-W6.
METHOD_SWEEPS = {
    "fft": (
        fft_problem,
        40,
        [tuple(wl) + (1, 1, 0) for wl in WORKLOADS[:5]]
        + [(50, 96, 96, 1, 4, 31, 31, 1, 1, 0), (100, 128, 128, 1, 8, 11, 11, 1, 1, 0)],
    ),
    "toeplitz": (random_problem, 50, [tuple(wl) + (1, 1, 0) for wl in WORKLOADS]),
}


def make_filters(rng, k, p, q, c, rank):
    if rank:
        bank = sum(
            rng.standard_normal((k, p, 1)) * rng.standard_normal((k, 1, q)) for _ in range(rank)
        )
        return bank if c == 1 else np.repeat(bank[..., None], c, axis=-1)
    return rng.standard_normal((k, p, q) if c == 1 else (k, p, q, c))


def spec_fields(spec):
    return {
        "n_images": spec.n_images,
        "height": spec.height,
        "width": spec.width,
        "n_channels": spec.n_channels,
        "n_filters": spec.n_filters,
        "filter_height": spec.filter_height,
        "filter_width": spec.filter_width,
        "stride": list(spec.stride),
        "dilation": list(spec.dilation),
        "out_height": spec.out_height,
        "out_width": spec.out_width,
        "dtype": np.dtype(spec.dtype).name,
        "filter_rank": spec.filter_rank,
    }


def spec_from(fields):
    f = dict(fields)
    f["stride"], f["dilation"] = tuple(f["stride"]), tuple(f["dilation"])
    f["dtype"] = np.dtype(f["dtype"])
    return ConvSpec(**f)


def forced_call(x, bank, split, **kwargs):
    """conv2d(x, bank, **kwargs) with the threading mode forced (split_batch=split)."""

    def call():
        images, weights, plan, choice = _setup(x, bank, **kwargs)
        result = np.empty(plan.out_shape, plan.dtype)
        _check_finite_images(images)
        run_plan(images, weights, plan, replace(choice, split_batch=split), result)
        return result

    return call


def measure_one(problem, dtype, rng, rounds, pause, methods=None):
    n, h, w, c, k, p, q, stride, dilation, rank = problem
    x = rng.standard_normal((n, h, w) if c == 1 else (n, h, w, c)).astype(dtype)
    bank = make_filters(rng, k, p, q, c, rank).astype(dtype)
    spec = _setup(x, bank, stride=stride, dilation=dilation)[3].spec  # with the filters' rank
    records = []
    for mode in MODES:
        jobs = 2 if mode == "threads" else 1
        candidates = {}
        for name, strategy in METHODS.items():
            if not strategy.supports(spec) or (methods and name not in methods):
                continue
            if name == "einsum" and n * spec.macs_per_image > 3e7:
                continue
            candidates[name] = forced_call(
                x, bank, mode != "blas", stride=stride, dilation=dilation, method=name, n_jobs=jobs
            )
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
        # the split after 60 ms of calls: it starts slow after idling (see
        # bench.time_interleaved; cost_model_sweep.json was measured before)
        warm = SAMPLE_WARMUP_S if mode == "threads" else 0.0
        samples = time_interleaved(candidates, rounds, rng, pause=pause, sample_warmup=warm)
        samples.update(slow)
        for name, times in samples.items():
            records.append(
                {
                    "spec": spec_fields(spec),
                    "method": name,
                    "mode": mode,
                    "seconds": float(np.median(times)),
                    "samples": [float(t) for t in times],
                }
            )
    return records


def measure(args):
    rng = np.random.default_rng(args.seed)
    methods = None
    if args.methods:
        methods = set(args.methods.split(",")) | {REFERENCE}
        generator, count, fixed = METHOD_SWEEPS[args.methods]
        problems = fixed + [generator(rng) for _ in range(count)]
        if args.out == SWEEP_PATH:
            args.out = os.path.join(HERE, f"cost_model_sweep_{args.methods}.json")
    else:
        problems = [tuple(wl) + (1, 1, 0) for wl in WORKLOADS]
        problems += [random_problem(rng) for _ in range(args.count)]
    records = []
    start = time.time()
    for i, problem in enumerate(problems):
        for dtype in (np.float32, np.float64):
            print(
                f"[{i + 1}/{len(problems)} {time.time() - start:.0f}s] {problem} "
                f"{np.dtype(dtype).name}",
                file=sys.stderr,
                flush=True,
            )
            records += measure_one(problem, dtype, rng, args.rounds, args.pause, methods)
    data = {
        "machine": machine_info(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "rounds": args.rounds,
        "records": records,
    }
    with open(args.out, "w") as fh:
        json.dump(data, fh, indent=0)
    print(f"wrote {len(records)} timings to {args.out}", file=sys.stderr)


# --- fitting -------------------------------------------------------------------


def feature_vector(name, spec):
    counts = features(name, spec)
    return np.array([counts.get(f, 0.0) for f in FEATURES])


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


def fit_group(x, t):
    """Weights for one (strategy, dtype, mode): see "Which weights are kept"."""
    n_features = x.shape[1]
    # Features that are linear combinations of the ones before them over the
    # group's problems get no weight of their own (it would be arbitrary):
    # unused ones (all zero), constant ones (collinear with const) and exact
    # multiples (taps moves 2 * itemsize bytes per flop).
    scaled = x / np.maximum(np.abs(x).max(axis=0), 1e-300)
    used = np.zeros(n_features, bool)
    for j in range(n_features):
        trial = used.copy()
        trial[j] = True
        if np.linalg.matrix_rank(scaled[:, trial], tol=1e-9) == trial.sum():
            used = trial
    while True:
        coef = np.zeros(n_features)
        coef[used] = fit_log(x[:, used], t)
        pred = x @ coef
        share = (x * coef / pred[:, None]).max(axis=0)  # largest part of any estimate
        negligible = used & (share < KEEP_SHARE)
        if not negligible.any() or negligible.sum() == used.sum():
            return coef
        used &= ~negligible


def fit_groups(records):
    groups = {}
    for r in records:
        spec = spec_from(r["spec"])
        key = (r["method"], r["spec"]["dtype"], r["mode"])
        # The fastest sample: other processes on this shared machine only
        # ever add time, so the minimum is the best estimate of the cost.
        groups.setdefault(key, []).append((feature_vector(r["method"], spec), min(r["samples"])))
    coefficients = {}
    for key, rows in sorted(groups.items()):
        x = np.array([f for f, _ in rows])
        t = np.array([s for _, s in rows])
        coef = fit_group(x, t)
        coefficients[key] = {
            f: float(f"{c:.4g}") for f, c in zip(FEATURES, coef, strict=True) if c > 0
        }
    return coefficients


def model_coefficients(model):
    """{(strategy, dtype, mode): {feature: weight}} of a stored model."""
    return {
        (name, dtype, mode): weights
        for name, by_dtype in model["coefficients"].items()
        for dtype, by_mode in by_dtype.items()
        for mode, weights in by_mode.items()
    }


def predict(coefficients, key, vector):
    weights = coefficients.get(key)
    if weights is None:
        return None
    return float(sum(weights.get(f, 0.0) * v for f, v in zip(FEATURES, vector, strict=True)))


def fit_errors(records, coefficients):
    """Per group: (problems, rms log error of the estimates, weights kept)."""
    errors = {}
    for r in records:
        key = (r["method"], r["spec"]["dtype"], r["mode"])
        est = predict(coefficients, key, feature_vector(r["method"], spec_from(r["spec"])))
        if est:
            errors.setdefault(key, []).append(np.log(est / min(r["samples"])))
    return {
        key: (len(e), float(np.sqrt(np.mean(np.square(e)))), len(coefficients[key]))
        for key, e in sorted(errors.items())
    }


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
        vectors = {}

        def estimate(name, mode, spec=spec, dtype=dtype, vectors=vectors):
            if name not in vectors:
                vectors[name] = feature_vector(name, spec)
            return predict(coefficients, (name, dtype, mode), vectors[name])

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
                best = min(
                    ((m, mode) for (m, mode) in times if mode in ("blas", split_mode)),
                    key=times.get,
                )
                worst[jobs] = (ratio, (key, (pick, picks[pick][2]), best))
    return {
        jobs: (float(np.exp(np.mean(np.log(r)))), max(r), len(r), worst[jobs][1])
        for jobs, r in ratios.items()
        if r
    }


def cross_validate(records, folds=2, seed=0):
    keys = sorted({json.dumps(r["spec"], sort_keys=True) for r in records})
    rng = np.random.default_rng(seed)
    fold_of = dict(zip(keys, rng.integers(0, folds, len(keys)), strict=True))
    result = {1: [], 2: []}
    for fold in range(folds):
        train = [r for r in records if fold_of[json.dumps(r["spec"], sort_keys=True)] != fold]
        test = [r for r in records if fold_of[json.dumps(r["spec"], sort_keys=True)] == fold]
        coefficients = fit_groups(train)
        for jobs, (g, w, n, _) in choice_quality(test, coefficients).items():
            result[jobs].append((g, w, n))
    return {
        jobs: (
            float(np.exp(sum(np.log(g) * n for g, _, n in v) / sum(n for *_, n in v))),
            max(w for _, w, _ in v),
        )
        for jobs, v in result.items()
    }


def report(title, records, coefficients, cv=None):
    print(f"== {title}")
    print(
        f"{'method':<14}{'dtype':<9}{'mode':<9}{'n':>4}{'rms log err':>12}{'weights':>8}  weights"
    )
    for key, (n, err, kept) in fit_errors(records, coefficients).items():
        weights = ", ".join(f"{f}={c:.4g}" for f, c in coefficients[key].items())
        print(f"{key[0]:<14}{key[1]:<9}{key[2]:<9}{n:>4}{err:>12.3f}{kept:>8}  {weights}")
    n_weights = sum(len(w) for w in coefficients.values())
    print(f"{n_weights} weights in {len(coefficients)} sets")
    for jobs, (g, w, n, worst) in choice_quality(records, coefficients).items():
        print(
            f"in-sample, n_jobs={jobs}: picked / fastest geomean {g:.3f}, worst {w:.2f} "
            f"over {n} problems"
        )
        print(f"    worst: {worst}")
    for jobs, (g, w) in (cv or {}).items():
        print(f"2-fold cross-validation, n_jobs={jobs}: geomean {g:.3f}, worst {w:.2f}")
    print()


def write_model(coefficients, data, path):
    nested = {}
    for (name, dtype, mode), weights in sorted(coefficients.items()):
        nested.setdefault(name, {}).setdefault(dtype, {})[mode] = weights
    model = {
        "about": "Weights of skconv's cost model (skconv/_costmodel.py), written by "
        "benchmarks/fit_cost_model.py from benchmarks/cost_model_sweep.json.",
        "fitted_on": data["machine"],
        "sweep_date": data["date"],
        "fit_date": time.strftime("%Y-%m-%d"),
        "keep_share": KEEP_SHARE,
        "features": list(FEATURES),
        "coefficients": nested,
    }
    with open(path, "w") as fh:
        json.dump(model, fh, indent=1)
        fh.write("\n")
    print(f"wrote {len(coefficients)} weight sets into {os.path.relpath(path, ROOT)}")


def load_factors(records, stored):
    """Per mode: median over the run of measured / stored estimate of REFERENCE."""
    ratios = {}
    for r in records:
        if r["method"] != REFERENCE:
            continue
        key = (REFERENCE, r["spec"]["dtype"], r["mode"])
        est = predict(stored, key, feature_vector(REFERENCE, spec_from(r["spec"])))
        ratios.setdefault(r["mode"], []).append(min(r["samples"]) / est)
    return {mode: float(np.median(v)) for mode, v in ratios.items()}


def fit_methods(args):
    """Fit the strategies of a ``measure --methods`` sweep; add them to the stored model."""
    names = set(args.methods.split(","))
    if args.sweep == SWEEP_PATH:
        args.sweep = os.path.join(HERE, f"cost_model_sweep_{args.methods}.json")
    with open(args.sweep) as fh:
        data = json.load(fh)
    with open(args.model) as fh:
        model = json.load(fh)
    stored = model_coefficients(model)
    factors = load_factors(data["records"], stored)
    records = []
    for r in data["records"]:
        r = dict(r, samples=[t / factors[r["mode"]] for t in r["samples"]])
        r["seconds"] /= factors[r["mode"]]
        records.append(r)
    m = data["machine"]
    print(
        f"{len(records)} timings of {data['date']} ({', '.join(sorted(names))} and {REFERENCE}); "
        f"NumPy {m['numpy']}, OPENBLAS_CORETYPE={m['OPENBLAS_CORETYPE']}"
    )
    print(
        "load factors (median measured / stored estimate of "
        f"{REFERENCE}): " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(factors.items()))
    )
    ours = [r for r in records if r["method"] in names]
    coefficients = fit_groups(ours)
    reference = {k: v for k, v in stored.items() if k[0] == REFERENCE}
    report(f"{', '.join(sorted(names))}: refit on normalised times", ours, coefficients)
    report(
        f"{REFERENCE}: stored weights on normalised times",
        [r for r in records if r["method"] == REFERENCE],
        reference,
    )
    print(
        "choice between them (model vs measured, normalised): "
        + ", ".join(
            f"n_jobs={j}: geomean {g:.3f}, worst {w:.2f} over {n}"
            for j, (g, w, n, _) in choice_quality(records, {**reference, **coefficients}).items()
        )
    )
    if args.write:
        for (name, dtype, mode), weights in sorted(coefficients.items()):
            model["coefficients"].setdefault(name, {}).setdefault(dtype, {})[mode] = weights
        model.setdefault("added", {})
        for name in sorted(names):
            model["added"][name] = {
                "sweep": os.path.basename(args.sweep),
                "sweep_date": data["date"],
                "fit_date": time.strftime("%Y-%m-%d"),
                "load_factors": factors,
                "machine": m,
            }
        with open(args.model, "w") as fh:
            json.dump(model, fh, indent=1)
            fh.write("\n")
        print(f"added {len(coefficients)} weight sets to {os.path.relpath(args.model, ROOT)}")
    print()


def fit(args):
    if args.methods:
        return fit_methods(args)
    with open(args.sweep) as fh:
        data = json.load(fh)
    records = data["records"]
    m = data["machine"]
    blas = ", ".join(f"{b['internal_api']} {b['version']} ({b['architecture']})" for b in m["blas"])
    print(
        f"{len(records)} timings of {data['date']}; machine: {m['cpu']}, {m['cores']} cores, "
        f"NumPy {m['numpy']}, {blas}, OPENBLAS_CORETYPE={m['OPENBLAS_CORETYPE']}"
    )
    print()
    if os.path.exists(args.model):
        with open(args.model) as fh:
            stored = model_coefficients(json.load(fh))
        report(
            f"stored model ({os.path.relpath(args.model, ROOT)}), on this sweep", records, stored
        )
    coefficients = fit_groups(records)
    report("refit", records, coefficients, cross_validate(records))
    if args.write:
        write_model(coefficients, data, args.model)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="time every strategy on the sweep")
    m.add_argument("--count", type=int, default=70, help="random problems (plus W1-W6)")
    m.add_argument("--rounds", type=int, default=5)
    m.add_argument("--pause", type=float, default=0.01)
    m.add_argument("--seed", type=int, default=1, help="random seed of the sweep's shapes")
    m.add_argument("--out", default=SWEEP_PATH)
    m.add_argument("--methods", help="time only this strategy (and rowgemm) on its own sweep")
    f = sub.add_parser("fit", help="fit the weights on the sweep")
    f.add_argument("--sweep", default=SWEEP_PATH)
    f.add_argument("--model", default=MODEL_PATH, help="the stored model (compared, and written)")
    f.add_argument("--write", action="store_true", help="write the refit into --model")
    f.add_argument("--methods", help="fit only this strategy, from its own sweep")
    args = parser.parse_args(argv)
    return measure(args) if args.command == "measure" else fit(args)


if __name__ == "__main__":
    sys.exit(main())
