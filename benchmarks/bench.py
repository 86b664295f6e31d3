"""The benchmark harness: conv2d against its peers, timed in one run.

Run from the repository root::

    python benchmarks/bench.py [--quick | --smoke] [--json PATH] [--calibrate]

Workloads (valid padding, float32 and float64): W1-W6 as before, W7 50x96x96
with 4 filters 31x31, W8 100x128x128 with 8 filters 11x11, W9 1000x32x32x3
with 16 filters 3x3x3 summed over channels, W10 1000x28x28 with 8 filters
5x5 at stride 2.  Each is timed for ``auto`` (n_jobs=-1 and n_jobs=1), every
strategy that supports it, the stride-tricks einsum of the well-known
StackOverflow answer (one ``np.einsum`` over a ``sliding_window_view`` per
filter), a Python loop of ``scipy.signal.correlate2d`` (single channel,
stride 1) and ``torch.nn.functional.conv2d`` (``torch.set_num_threads(2)``)
when they are importable; torch as called by default (its oneDNN kernels
for float32) is the peer of the targets, and torch with oneDNN disabled
(``torch.backends.mkldnn.flags(enabled=False)``) is timed for reference
(on these AMD cores torch's own kernels were ~12x faster than its default
on W1 and ~17x slower on W7, the large filters).  T1 times the
whole ``BatchConv2DTransformer`` transform (20000x28x28 float32, 8 filters
5x5, padding same, abs, 2x2 max pooling) against torch's conv2d + abs +
max_pool2d and against skconv's conv2d alone, and measures its temporaries
under ``working_memory=64``.

Timing: every candidate runs in its own block (a pause so that the previous
library's spinning threads go idle, 0.5 s of untimed calls, then N timed
calls), the blocks side by side in one run, in two passes (the second in
reverse order) at the full level; the best of the N is reported (other
processes on a shared machine only ever add time) with the median next to
it, and ratios are taken between bests of the same run.  Whether auto
picked well is then timed again interleaved in shuffled rounds: auto against
the strategies that came within 1.5x of the fastest block (``check_auto``).
A random sweep compares auto with the fastest strategy, timing skconv's
candidates interleaved too (see ``run_sweep``), a memory case
checks the bound of ``working_memory``, and the results are compared with
the thresholds of ``evaluate_targets`` (reported, never asserted).  The machine, NumPy, BLAS,
its kernels (threadpoolctl's ``architecture``, ``OPENBLAS_CORETYPE``) and
whether ``auto`` ran on a calibrated cost model (``skconv.calibrate``;
``--calibrate`` runs it first) are recorded.

It uses skconv's public API (``conv2d(method=...)``, ``explain_conv2d``,
``BatchConv2DTransformer``, ``calibrate``) and reads whether a calibration is
in use from ``skconv._costmodel``.  torch and scipy are peers, not
dependencies: imported lazily, and skipped when missing.
"""

import argparse
import json
import math
import os
import platform
import sys
import time
import tracemalloc
import warnings

import numpy as np

from skconv import conv2d, explain_conv2d
from skconv._validation import check_output_path

WORKLOADS = {
    # name: (n_images, height, width, channels, n_filters, p, q, stride)
    "W1": (1000, 28, 28, 1, 1, 5, 5, 1),
    "W2": (1000, 28, 28, 1, 8, 5, 5, 1),
    "W3": (200, 64, 64, 1, 16, 7, 7, 1),
    "W4": (100, 64, 64, 1, 4, 15, 15, 1),
    "W5": (5000, 8, 8, 1, 4, 3, 3, 1),
    "W6": (20000, 28, 28, 1, 16, 3, 3, 1),
    "W7": (50, 96, 96, 1, 4, 31, 31, 1),
    "W8": (100, 128, 128, 1, 8, 11, 11, 1),
    "W9": (1000, 32, 32, 3, 16, 3, 3, 1),
    "W10": (1000, 28, 28, 1, 8, 5, 5, 2),
}
TORCH_TARGETS = ("W1", "W2", "W3", "W4", "W5", "W7", "W8", "W9", "W10")
MEMORY_WORKLOAD = (20000, 28, 28, 8, 5, 5)  # float32 under working_memory=32
MEMORY_WORKING_MEMORY = 32
MEMORY_TARGET_MIB = 48
TRANSFORM_WORKLOAD = (20000, 28, 28, 8, 5, 5)  # T1, float32, padding same, abs, 2x2 max
TRANSFORM_WORKING_MEMORY = 64
TRANSFORM_TARGET_MIB = 64

# Slow candidates run on a subset of the batch sized to take about this long,
# and their time is scaled up to the whole batch (said in the output).
SLOW_BUDGET_S = {"full": 0.4, "quick": 0.08, "smoke": 0.01}
SLOW = ("stride_tricks_einsum", "scipy_loop", "einsum")


def _log(*args):
    print(*args, file=sys.stderr, flush=True)


# --- peers -------------------------------------------------------------------


def _torch():
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(2)
    # torch.backends.mkldnn.flags() warns about Intel GPUs on every call
    warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
    return torch


def _scipy_signal():
    try:
        from scipy import signal
    except ImportError:
        return None
    return signal


def stride_tricks_einsum(x, bank, stride=1):
    """The well-known StackOverflow answer: one einsum over the window view per filter.

    Exactly the answer for single-channel images at stride 1; channels are
    one more summed axis of the view, a stride a step of it.
    """
    from numpy.lib.stride_tricks import sliding_window_view

    results = []
    for f in bank:
        p, q = f.shape[:2]
        M = sliding_window_view(x, (p, q), axis=(1, 2))
        if stride != 1:
            M = M[:, ::stride, ::stride]
        if x.ndim == 3:
            results.append(np.einsum("ijkmn,mn->ijk", M, f))
        else:
            results.append(np.einsum("ijkcmn,mnc->ijk", M, f))
    return results


def scipy_loop(signal, x, bank):
    """A Python loop of ``scipy.signal.correlate2d`` over images and filters."""
    return [[signal.correlate2d(image, f, mode="valid") for f in bank] for image in x]


# --- timing --------------------------------------------------------------------


def time_interleaved(
    candidates, rounds, rng, pause=0.02, min_sample=2e-3, warmup=0.0, sample_warmup=0.0
):
    """Seconds per call of each candidate, timed interleaved in shuffled order.

    The random sweep times skconv's candidates this way, and so do
    :func:`check_auto` and ``fit_cost_model.py``'s sweep; the workloads time
    in blocks, :func:`time_blocks`.  What a block cannot escape, a state of
    the machine that lasts for seconds, falls on every candidate alike
    here: Google Benchmark interleaves its repetitions at random for the
    same reason ("Random Interleaving",
    https://google.github.io/benchmark/random_interleaving.html).

    Parameters
    ----------
    candidates : dict of str to callable
        Zero-argument callables.
    rounds : int
        Samples per candidate; each round visits every candidate once, in a
        fresh random order.
    rng : numpy.random.Generator
        Shuffles the rounds.
    pause : float
        Seconds of sleep before each sample, so that the worker threads the
        previous candidate's library left spinning do not steal the cores
        (0: none).
    min_sample : float
        A call faster than this is repeated within one sample (the sample is
        the mean), so that timer resolution and one-off hiccups matter less.
    warmup : float
        Seconds of untimed calls, round after round of every candidate,
        before the first sample (caches, page faults, BLAS threads; at least
        one call each).
    sample_warmup : float
        Seconds of untimed calls of its candidate before each sample (at
        least one call).

    Each sample follows untimed calls of its candidate, which wake its own
    threads up and warm its caches after the previous candidate: what is
    timed is the steady state of repeated calls.  One call is not always
    enough: after an idle moment (a pause), conv2d's own threads splitting
    a batch ran slower for about 50 ms (measured: 5000 8x8 float64 images,
    4 3x3 filters, toeplitz split over 2 threads, median 0.82 ms a call in
    the first 50 ms after a 0.2 s sleep, 0.50 ms after; BLAS's own threads,
    the operator strategy, were back to speed after 2 ms).

    Returns
    -------
    dict of str to list of float
        Every sample, in seconds per call.
    """
    if not candidates:
        return {}
    _settle_after_torch(pause)
    repeats = {}
    warm_until = time.perf_counter() + warmup
    while not repeats or time.perf_counter() < warm_until:
        for name, fn in candidates.items():  # warm up: caches, page faults, BLAS threads
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
            repeats[name] = max(1, min(50, int(min_sample / max(elapsed, 1e-7))))
    samples = {name: [] for name in candidates}
    names = list(candidates)
    for _ in range(rounds):
        rng.shuffle(names)
        for name in names:
            fn, reps = candidates[name], repeats[name]
            if pause:
                time.sleep(pause)
            warm_until = time.perf_counter() + sample_warmup
            fn()
            while time.perf_counter() < warm_until:
                fn()
            start = time.perf_counter()
            for _ in range(reps):
                fn()
            samples[name].append((time.perf_counter() - start) / reps)
        _LAST_TIMED[0] = names[-1]
    return samples


TORCH_SETTLE_S = 1.0
WARMUP_S = 0.5
# Untimed calls before each interleaved sample (see time_interleaved).
SAMPLE_WARMUP_S = 0.06


def _interleaved_warmups(pause):
    """time_interleaved's warm-ups: none when nothing pauses (smoke runs and tests)."""
    return {
        "warmup": WARMUP_S if pause else 0.0,
        "sample_warmup": SAMPLE_WARMUP_S if pause else 0.0,
    }


# The last candidate timed, by any of the timing functions: the first block
# or sample after torch's waits for its workers to go idle, also when they
# are timed by separate calls (the sweep times torch after each shape).
_LAST_TIMED = [None]


def _settle_after_torch(pause):
    """Sleep ``TORCH_SETTLE_S`` when the last candidate timed was torch's.

    torch's OpenMP workers keep spinning long after its last call and take
    the cores from whatever runs next (measured: a 10 ms conv2d timed at
    74 ms right after torch's block): let them go idle.  Nothing with
    ``pause`` 0 (``--smoke``).
    """
    last = _LAST_TIMED[0]
    if pause and last is not None and last.startswith("torch"):
        time.sleep(TORCH_SETTLE_S)
        _LAST_TIMED[0] = None


def time_blocks(candidates, rounds, pause=0.02, min_sample=2e-3, passes=1):
    """Seconds per call of each candidate, each timed in its own block.

    A block: ``pause`` seconds of sleep (the previous library's spinning
    worker threads, OpenBLAS's or OpenMP's, go idle), ``WARMUP_S`` seconds of
    untimed calls (one call when ``pause`` is 0, as in ``--smoke``: the
    candidate's own threads wake up, caches and pages are warm, the cores are
    back to speed), then ``rounds`` timed samples.  A call faster than ``min_sample`` is repeated
    within a sample (the sample is the mean).

    With ``passes`` > 1 every candidate gets a block in each pass, the
    order reversed from one pass to the next, and its samples are pooled: a
    block that one pass's neighbour spoiled (measured: a strategy timed at
    5x its own time in the block right after torch's, once in a run) does not
    decide the best.

    Returns
    -------
    dict of str to list of float
        Every sample, in seconds per call.
    """
    samples = {}
    # torch's blocks first, so that the settle pause follows them
    first = {name: fn for name, fn in candidates.items() if name.startswith("torch")}
    candidates = {**first, **candidates}
    order = list(candidates.items())
    blocks = [item for k in range(passes) for item in (order if k % 2 == 0 else order[::-1])]
    for name, fn in blocks:
        _settle_after_torch(pause)
        if pause:
            time.sleep(pause)
        _LAST_TIMED[0] = name
        # Warm up for WARMUP_S, not one call: after a pause the first calls of
        # a block run up to 4x slower for ~0.4 s (measured: 41-53 ms, then 12 ms
        # for the same conv2d), which best-of-7 of 10-70 ms calls cannot escape.
        # For WARMUP_S whatever the number of calls: a batch split over
        # conv2d's threads runs slow for ~50 ms after idling (see
        # time_interleaved), longer than 30 calls of a 0.6 ms candidate.
        warm_until = time.perf_counter() + (WARMUP_S if pause else 0.0)
        while True:  # at least one call; the last one sizes the samples
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
            if start + elapsed >= warm_until:
                break
        reps = max(1, min(50, int(min_sample / max(elapsed, 1e-7))))
        mine = samples.setdefault(name, [])
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(reps):
                fn()
            mine.append((time.perf_counter() - start) / reps)
    return samples


def peak_bytes(fn):
    """Peak bytes allocated through Python/NumPy while ``fn()`` runs (tracemalloc)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        result = fn()
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    del result
    return peak


def gemm_gflops(dtype, size=2048, repeats=5):
    """GFLOP/s of one large ``np.matmul`` (BLAS's default threads), best of ``repeats``."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(dtype)
    b = rng.standard_normal((size, size)).astype(dtype)
    c = np.empty_like(a)
    np.matmul(a, b, out=c)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.matmul(a, b, out=c)
        times.append(time.perf_counter() - start)
    return 2.0 * size**3 / float(np.min(times)) / 1e9


def calibration_info():
    """Whether ``auto`` runs on a calibrated cost model here, and which."""
    from skconv._calibration import current
    from skconv._costmodel import load_model

    about = load_model().get("calibrated")
    if not about:
        return {"used": False}
    data = current()
    return {
        "used": True,
        **about,
        "variant": data.get("variant"),
        "local": bool(data.get("local")),
        "regret": data.get("regret", {}),
    }


def machine_info():
    """CPU, cores, NumPy/BLAS versions and kernels, the OpenBLAS environment."""
    from threadpoolctl import threadpool_info

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    flags = ""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "")
    except OSError:
        pass
    blas = [
        {k: info.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    ]
    import sklearn

    info = {
        "cpu": cpu,
        "avx512": " avx512f" in flags,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "blas": blas,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"),
    }
    torch = _torch()
    if torch is not None:
        info["torch"] = torch.__version__
    return info


def haswell_kernels(machine):
    """True when OpenBLAS runs its Haswell kernels (the environment's default here)."""
    return machine.get("OPENBLAS_CORETYPE", "") == "Haswell" or any(
        (b.get("architecture") or "") == "Haswell" for b in machine["blas"]
    )


# --- one workload ----------------------------------------------------------------


def _subset_size(n, seconds_full_estimate, budget):
    if seconds_full_estimate <= budget:
        return n
    return max(1, int(n * budget / seconds_full_estimate))


def _entry(times, scale, flops, peak):
    best = float(np.min(times)) * scale
    return {
        "best_ms": best * 1e3,
        "median_ms": float(np.median(times)) * scale * 1e3,
        "samples_ms": [t * 1e3 * scale for t in times],
        "gflops": flops / best / 1e9,
        "peak_fraction": flops / best / 1e9 / peak if peak else None,
    }


def run_workload(
    name,
    shape,
    dtype,
    *,
    rounds,
    rng,
    level,
    methods=True,
    peers=True,
    memory=True,
    pause=0.02,
    gemm=None,
    passes=1,
    order=None,
):
    """Time every candidate on one workload; returns a JSON-able dict.

    With ``order`` (a ``numpy.random.Generator``) the candidates are timed
    interleaved in orders it shuffles (:func:`time_interleaved`, ``rounds``
    times ``passes`` samples each), else each in its own blocks
    (:func:`time_blocks`).
    """
    n, h, w, c, k, p, q, stride = shape
    x = rng.standard_normal((n, h, w) if c == 1 else (n, h, w, c)).astype(dtype)
    bank = rng.standard_normal((k, p, q) if c == 1 else (k, p, q, c)).astype(dtype)
    oh, ow = (h - p) // stride + 1, (w - q) // stride + 1
    flops = 2.0 * n * k * oh * ow * p * q * c
    peak = (gemm or {}).get(np.dtype(dtype).name)
    chosen = {jobs: explain_conv2d(x, bank, n_jobs=jobs, stride=stride) for jobs in (-1, 1)}
    strategies = list(chosen[-1].estimates)  # every strategy that supports the problem

    candidates, scale, subset = {}, {}, {}
    candidates["auto"] = lambda: conv2d(x, bank, n_jobs=-1, stride=stride)
    candidates["auto[n_jobs=1]"] = lambda: conv2d(x, bank, n_jobs=1, stride=stride)
    budget = SLOW_BUDGET_S[level]
    if methods:
        for mname in strategies:
            estimate = chosen[-1].estimates[mname]
            m = _subset_size(n, estimate, budget) if mname == "einsum" else n
            if mname == "einsum":
                m = min(m, _subset_size(n, flops / 2 / 0.3e9, budget))
            xs = x[:m]
            candidates[mname] = lambda xs=xs, mname=mname: conv2d(
                xs, bank, method=mname, n_jobs=-1, stride=stride
            )
            if m < n:
                scale[mname], subset[mname] = n / m, m
            if level == "full" and mname != "einsum":
                candidates[mname + "[n_jobs=1]"] = lambda mname=mname: conv2d(
                    x, bank, method=mname, n_jobs=1, stride=stride
                )
    if peers:
        m = _subset_size(n, flops / 2 / 0.3e9, budget)
        xs = x[:m]
        candidates["stride_tricks_einsum"] = lambda: stride_tricks_einsum(xs, bank, stride)
        scale["stride_tricks_einsum"], subset["stride_tricks_einsum"] = n / m, m
        signal = _scipy_signal()
        if signal is not None and c == 1 and stride == 1:
            m = _subset_size(n, n * k * (2e-5 + h * w * p * q * 1.5e-9), budget)
            xs2 = x[:m]
            candidates["scipy_loop"] = lambda: scipy_loop(signal, xs2, bank)
            scale["scipy_loop"], subset["scipy_loop"] = n / m, m
        torch = _torch()
        if torch is not None:
            tx = torch.from_numpy(
                np.ascontiguousarray(x[:, None] if c == 1 else x.transpose(0, 3, 1, 2))
            )
            tw = torch.from_numpy(
                np.ascontiguousarray(bank[:, None] if c == 1 else bank.transpose(0, 3, 1, 2))
            )

            def run_torch():
                with torch.no_grad():
                    return torch.nn.functional.conv2d(tx, tw, stride=stride)

            def run_torch_no_onednn():
                # torch's own kernels, without oneDNN (which its default
                # call uses for float32): for reference, the targets use
                # torch as called by default
                with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
                    return torch.nn.functional.conv2d(tx, tw, stride=stride)

            candidates["torch"] = run_torch
            candidates["torch_no_onednn"] = run_torch_no_onednn

    if order is None:
        samples = time_blocks(candidates, rounds, pause=pause, passes=passes)
    else:
        samples = time_interleaved(
            candidates, rounds * passes, order, pause=pause, **_interleaved_warmups(pause)
        )
    results = {}
    for cname, times in samples.items():
        entry = _entry(times, scale.get(cname, 1.0), flops, peak)
        if cname in subset:
            entry["timed_on_images"] = subset[cname]
            entry["scaled_by"] = scale[cname]
        if cname.startswith("auto"):
            entry["method"] = chosen[1 if "n_jobs=1" in cname else -1].method
        results[cname] = entry
    out_bytes = n * k * oh * ow * np.dtype(dtype).itemsize
    if memory:
        for cname in results:
            if cname.startswith("torch"):
                results[cname]["peak_extra_mib"] = None  # torch's allocator: invisible
                continue
            peak_b = peak_bytes(candidates[cname])
            own_out = out_bytes / scale.get(cname, 1.0)
            results[cname]["peak_extra_mib"] = max(0.0, peak_b - own_out) / 2**20
    for entry in results.values():
        for peer in ("torch", "stride_tricks_einsum", "scipy_loop"):
            if peer in results:
                entry[f"ratio_to_{peer}"] = entry["best_ms"] / results[peer]["best_ms"]
    fastest = min(
        (s for s in results if s in strategies), key=lambda s: results[s]["best_ms"], default=None
    )
    check = None
    if order is None and fastest is not None:
        check = check_auto(candidates, results, fastest, chosen[-1].method, rounds * passes, pause)
    return {
        "workload": name,
        "dtype": np.dtype(dtype).name,
        "shape": {
            "n_images": n,
            "height": h,
            "width": w,
            "channels": c,
            "n_filters": k,
            "p": p,
            "q": q,
            "stride": stride,
        },
        "gflop": flops / 1e9,
        "chosen": {"n_jobs=-1": chosen[-1].method, "n_jobs=1": chosen[1].method},
        "reason": str(chosen[-1]),
        "fastest_method": fastest,
        "auto_over_fastest": (
            results["auto"]["best_ms"] / results[fastest]["best_ms"] if fastest else None
        ),
        "auto_check": check,
        "results": results,
    }


# Strategies whose block best is within this factor of the fastest's are
# timed again against auto, interleaved.
CHECK_CLOSE = 1.5


def check_auto(candidates, results, fastest, method, rounds, pause):
    """auto against the strategies that came close in the blocks, timed interleaved.

    ``auto`` runs exactly the strategy it picks, so between its block and
    that strategy's own block only the machine differs, and blocks of the
    same code differed by up to 1.5x (W3 float64, natively: 13.8 ms in
    auto's block, median 59, against 9.3 in the block of rowgemm, the
    strategy it ran).  Timed interleaved,
    as the sweep times its shapes (:func:`time_interleaved`), a state of the
    machine falls on every candidate alike, so their ratio measures the
    choice.  The candidates: ``auto``, the strategy it runs, and every
    strategy (on the whole batch, n_jobs=-1) whose block best is within
    ``CHECK_CLOSE`` of the fastest block's.

    Returns
    -------
    dict
        ``best_ms`` of each candidate (interleaved samples), the
        ``fastest`` strategy among them and ``auto_over_fastest``.
    """
    limit = CHECK_CLOSE * results[fastest]["best_ms"]
    names = [
        name
        for name, entry in results.items()
        if (name in (method, fastest) or entry["best_ms"] <= limit)
        # strategies on the whole batch with n_jobs=-1, as auto runs
        and not name.startswith(("auto", "torch"))
        and name not in SLOW
        and "[" not in name
        and "timed_on_images" not in entry
    ]
    if not names:
        return None
    timed = {"auto": candidates["auto"], **{n: candidates[n] for n in names}}
    samples = time_interleaved(
        timed, rounds, np.random.default_rng(0), pause=pause, **_interleaved_warmups(pause)
    )
    best = {name: float(np.min(times)) * 1e3 for name, times in samples.items()}
    winner = min(names, key=best.get)
    return {
        "best_ms": best,
        "fastest": winner,
        "auto_over_fastest": best["auto"] / best[winner],
    }


def run_memory(rng, level):
    """Peak memory beyond the output of the 20000x28x28, 8x5x5 float32 case."""
    from sklearn import config_context

    n, h, w, k, p, q = MEMORY_WORKLOAD
    if level == "smoke":
        n = 2000
    x = rng.standard_normal((n, h, w)).astype(np.float32)
    bank = rng.standard_normal((k, p, q)).astype(np.float32)
    out_mib = n * k * (h - p + 1) * (w - q + 1) * 4 / 2**20
    result = {
        "shape": [n, h, w, k, p, q],
        "working_memory_mib": MEMORY_WORKING_MEMORY,
        "output_mib": out_mib,
        "target_mib": MEMORY_TARGET_MIB,
    }
    with config_context(working_memory=MEMORY_WORKING_MEMORY):
        for jobs in (1, -1):
            peak = peak_bytes(lambda jobs=jobs: conv2d(x, bank, n_jobs=jobs)) / 2**20
            start = time.perf_counter()
            conv2d(x, bank, n_jobs=jobs)
            elapsed = time.perf_counter() - start
            result[f"n_jobs={jobs}"] = {
                "peak_extra_mib": peak - out_mib,
                "ms": elapsed * 1e3,
                "measured_by": "tracemalloc",
            }
    return result


def run_transform(rng, level, rounds, pause, passes=1):
    """T1: the whole transformer against torch conv2d+abs+max_pool2d and conv2d alone."""
    from sklearn import config_context

    from skconv import BatchConv2DTransformer

    n, h, w, k, p, q = TRANSFORM_WORKLOAD
    if level == "smoke":
        n = 200
    elif level == "quick":
        n //= 4
    X = rng.random((n, h * w)).astype(np.float32)
    bank = rng.standard_normal((k, p, q)).astype(np.float32)
    conv = BatchConv2DTransformer(
        filters=bank, padding="same", activation="abs", pooling="max", pool_size=2, n_jobs=-1
    )
    images = X.reshape(n, h, w)
    flops = 2.0 * n * k * h * w * p * q
    candidates = {
        "transform": lambda: conv.transform(X),
        "conv2d_alone": lambda: conv2d(images, bank, padding="same", n_jobs=-1),
    }
    torch = _torch()
    if torch is not None:
        tx = torch.from_numpy(images[:, None].copy())
        tw = torch.from_numpy(bank[:, None].copy())

        def run_torch():
            with torch.no_grad():
                maps = torch.nn.functional.conv2d(tx, tw, padding="same")
                return torch.nn.functional.max_pool2d(torch.abs(maps), 2).reshape(n, -1)

        candidates["torch"] = run_torch
    samples = time_blocks(candidates, rounds, pause=pause, passes=passes)
    results = {c: _entry(t, 1.0, flops, None) for c, t in samples.items()}
    out_mib = n * k * (h // 2) * (w // 2) * 4 / 2**20
    with config_context(working_memory=TRANSFORM_WORKING_MEMORY):
        peak = peak_bytes(lambda: conv.transform(X)) / 2**20
    t = results["transform"]["best_ms"]
    return {
        "shape": [n, h, w, k, p, q],
        "pipeline": "padding same, abs, 2x2 max pooling, float32, n_jobs=-1",
        "results": results,
        "transform_over_torch": t / results["torch"]["best_ms"] if "torch" in results else None,
        "transform_over_conv2d": t / results["conv2d_alone"]["best_ms"],
        "working_memory_mib": TRANSFORM_WORKING_MEMORY,
        "output_mib": out_mib,
        "peak_extra_mib": peak - out_mib,
        "target_mib": TRANSFORM_TARGET_MIB,
    }


def run_recipes(rng, level, rounds, pause, passes=1):
    """Transform times of skconv.recipes on 5 000 random 28x28 float32 images (MNIST-5k's size).

    The recipes are fitted on the same rows first (pcanet learns its filters;
    the fit is not timed).  Pixel values do not change the work.
    """
    from skconv import recipes

    n = {"full": 5000, "quick": 1000, "smoke": 50}[level]
    X = rng.random((n, 28 * 28)).astype(np.float32)
    candidates, shapes = {}, {}
    for name, make in (("scattering", recipes.scattering), ("pcanet", recipes.pcanet)):
        for jobs in (None, 2):
            est = make(n_jobs=jobs).fit(X)
            label = f"{name}[n_jobs={jobs}]"
            candidates[label] = lambda est=est: est.transform(X)
            shapes[label] = int(est.transform(X[:1]).shape[1])
    samples = time_blocks(candidates, rounds, pause=pause, passes=passes)
    return {
        "n_images": n,
        "results": {
            c: {"best_ms": float(np.min(t)) * 1e3, "n_features": shapes[c]}
            for c, t in samples.items()
        },
    }


# --- the random sweep ----------------------------------------------------------


def random_shape(rng, max_macs=3e8):
    """A random problem in the range the workloads span (valid, stride 1)."""
    while True:
        h = int(rng.integers(6, 97))
        w = h if rng.random() < 0.6 else int(rng.integers(6, 97))
        p = int(rng.integers(1, min(h, 16) + 1))
        q = p if rng.random() < 0.7 else int(rng.integers(1, min(w, 16) + 1))
        k = int(rng.choice([1, 1, 2, 3, 4, 8, 16, 32]))
        macs = k * (h - p + 1) * (w - q + 1) * p * q
        n = int(np.exp(rng.uniform(np.log(10), np.log(5000))))
        n = max(1, min(n, int(max_macs / macs)))
        if n * macs >= 1e6:
            return n, h, w, k, p, q


def run_sweep(count, rng, rounds, level, pause, passes=1):
    """auto against every strategy and torch on random shapes (float32 and float64).

    skconv's candidates are timed interleaved (:func:`time_interleaved`):
    the sweep asks whether auto picks the fastest strategy, and timed in
    blocks, both of auto's blocks (two passes) on a shape sometimes ran
    3-14x slower than the blocks of the strategy it runs, in the same run
    (shapes with 60-130 MB results, in three of three recordings; the
    machine showed no steal time and no memory compaction).  Interleaved
    samples come out slower than the bests of blocks (the fastest strategy's
    best: 1.17-1.21x in geometric mean over the 40 shapes of two native
    runs; caches and threads are cold after another candidate), so the
    ratios of the sweep are between interleaved times only, and its auto /
    torch, against torch timed in its own blocks (its OpenMP workers would
    spin into the samples that follow its own), is conservative for skconv.
    The orders are shuffled by a generator of their own, so the shapes stay
    those of ``rng``.
    """
    order = np.random.default_rng(0)
    rows = []
    for i in range(count):
        n, h, w, k, p, q = random_shape(rng, max_macs=3e8 if level == "full" else 5e7)
        shape = (n, h, w, 1, k, p, q, 1)
        dtype = np.float32 if i % 2 == 0 else np.float64
        _log(f"sweep {i + 1}/{count}: {shape} {np.dtype(dtype).name}")
        res = run_workload(
            f"S{i + 1}",
            shape,
            dtype,
            rounds=rounds,
            rng=rng,
            level="quick",
            peers=False,
            memory=False,
            pause=pause,
            passes=passes,
            order=order,
        )
        torch = _torch()
        if torch is not None:
            tx = torch.from_numpy(rng.standard_normal((n, 1, h, w)).astype(dtype))
            tw = torch.from_numpy(rng.standard_normal((k, 1, p, q)).astype(dtype))
            times = time_blocks(
                {"torch": lambda tx=tx, tw=tw, torch=torch: torch.nn.functional.conv2d(tx, tw)},
                rounds,
                pause=pause,
                passes=passes,
            )
            res["results"]["torch"] = {"best_ms": float(np.min(times["torch"])) * 1e3}
        rows.append(res)
    ratios = [r["auto_over_fastest"] for r in rows if r["auto_over_fastest"]]
    torch_ratios = [
        r["results"]["auto"]["best_ms"] / r["results"]["torch"]["best_ms"]
        for r in rows
        if "torch" in r["results"]
    ]
    return {
        "shapes": rows,
        "auto_over_fastest_geomean": _geomean(ratios),
        "auto_over_fastest_worst": max(ratios) if ratios else None,
        "auto_over_torch_geomean": _geomean(torch_ratios),
    }


def _geomean(values):
    values = [v for v in values if v]
    return float(np.exp(np.mean(np.log(values)))) if values else None


# --- targets and printing ------------------------------------------------------


def evaluate_targets(report):
    """The benchmark's thresholds, each with the measured value and pass/fail."""
    by = {(w["workload"], w["dtype"]): w["results"] for w in report["workloads"]}
    targets = []

    def add(name, value, ok, detail=""):
        targets.append({"target": name, "value": value, "met": bool(ok), "detail": detail})

    haswell = haswell_kernels(report["machine"])
    bound = 0.45 if haswell else 0.30
    names = [w for w in WORKLOADS if (w, "float32") in by and "torch" in by[(w, "float32")]]
    ratios = [by[(w, "float32")]["auto"]["ratio_to_torch"] for w in names]
    if ratios:
        detail = " ".join(f"{w}:{r:.2f}" for w, r in zip(names, ratios, strict=True))
        add(
            "auto float32 faster than torch on every workload", max(ratios), max(ratios) < 1, detail
        )
        g = _geomean(ratios)
        kernels = "Haswell kernels" if haswell else "native kernels"
        add(f"auto float32 geomean time / torch <= {bound} ({kernels})", g, g <= bound, detail)
    w1 = by.get(("W1", "float64"), {}).get("auto", {})
    if "ratio_to_stride_tricks_einsum" in w1:
        speedup = 1 / w1["ratio_to_stride_tricks_einsum"]
        add(
            "auto float64 >= 10x faster than the stride-tricks einsum on W1", speedup, speedup >= 10
        )
    t1 = report.get("transform")
    if t1:
        if t1["transform_over_torch"] is not None:
            add(
                "T1 transform time / torch conv2d+abs+max_pool2d <= 0.15",
                t1["transform_over_torch"],
                t1["transform_over_torch"] <= 0.15,
            )
        add(
            "T1 transform time / conv2d alone <= 1.2",
            t1["transform_over_conv2d"],
            t1["transform_over_conv2d"] <= 1.2,
        )
        add(
            f"T1 temporaries beyond the output (working_memory={t1['working_memory_mib']}) "
            f"<= {t1['target_mib']} MiB",
            t1["peak_extra_mib"],
            t1["peak_extra_mib"] <= t1["target_mib"],
            "tracemalloc",
        )
    rec = report.get("recipes")
    if rec and rec["n_images"] == 5000:
        best = min(e["best_ms"] for c, e in rec["results"].items() if c.startswith("scattering"))
        add("recipes.scattering() transform of 5000 28x28 images <= 1 s", best / 1e3, best <= 1e3)
    rows = [w for w in report["workloads"] if w.get("auto_check")]
    if rows:
        worst = max(rows, key=lambda w: w["auto_check"]["auto_over_fastest"])
        ratio = worst["auto_check"]["auto_over_fastest"]
        add(
            "auto within 1.3x of the fastest strategy on every workload (interleaved)",
            ratio,
            ratio <= 1.3,
            f"worst {worst['workload']} {worst['dtype']}; in blocks "
            + " ".join(
                f"{w['workload']}{w['dtype'][5:]}:{w['auto_over_fastest']:.2f}" for w in rows
            ),
        )
    sweep = report.get("sweep")
    if sweep and sweep.get("auto_over_fastest_geomean"):
        add(
            "auto / fastest strategy geomean over the random sweep <= 1.15",
            sweep["auto_over_fastest_geomean"],
            sweep["auto_over_fastest_geomean"] <= 1.15,
            f"worst {sweep['auto_over_fastest_worst']:.2f}",
        )
    mem = report.get("memory")
    if mem:
        worst_mem = max(mem[k]["peak_extra_mib"] for k in mem if k.startswith("n_jobs"))
        add(
            f"20000x28x28, 8x5x5 float32, working_memory=32: extra peak <= {MEMORY_TARGET_MIB} MiB",
            worst_mem,
            worst_mem <= MEMORY_TARGET_MIB,
            "tracemalloc",
        )
    return targets


def _shape_label(s):
    channels = f"x{s['channels']}" if s["channels"] > 1 else ""
    stride = f" stride {s['stride']}" if s["stride"] > 1 else ""
    return (
        f"{s['n_images']}x{s['height']}x{s['width']}{channels}, {s['n_filters']} filters "
        f"{s['p']}x{s['q']}{channels}{stride}"
    )


def _check_label(check):
    if not check:
        return ""
    times = ", ".join(f"{name} {ms:.3f}" for name, ms in sorted(check["best_ms"].items()))
    return f" in blocks, {check['auto_over_fastest']:.2f} interleaved ({times} ms)"


def format_report(report):
    """The printed table (also kept in benchmarks/RESULTS.md)."""
    lines = []
    m = report["machine"]
    blas = ", ".join(
        f"{b['internal_api']} {b['version']} ({b['architecture']} kernels)" for b in m["blas"]
    )
    lines.append(
        f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, NumPy {m['numpy']}, "
        f"scikit-learn {m['scikit-learn']}, {blas}; torch {m.get('torch', 'not installed')}"
    )
    lines.append(
        f"OPENBLAS_CORETYPE={m['OPENBLAS_CORETYPE']}, OPENBLAS_L2_SIZE={m['OPENBLAS_L2_SIZE']}"
    )
    cal = report["calibration"]
    lines.append(
        "Cost model of auto: "
        + (
            f"calibrated on this machine ({cal.get('date')}, {cal.get('path')}; weights "
            f"{cal.get('variant')}{' with the local correction' if cal.get('local') else ''})"
            if cal["used"]
            else "shipped weights (not calibrated here)"
        )
    )
    g = report["gemm_gflops"]
    lines.append(
        f"Large np.matmul (2048^3, best): sgemm {g['float32']:.0f} GFLOP/s, "
        f"dgemm {g['float64']:.0f} GFLOP/s"
    )
    lines.append(
        f"Level {report['level']}, best of {report['rounds']} calls per candidate and block, "
        f"each candidate in its own block in each of {report.get('passes', 1)} pass(es) "
        "(alternate passes in reverse order); ratios of bests. Slow candidates marked * "
        "were timed on a subset of the batch and scaled (images timed in brackets). %peak: "
        "GFLOP/s over the gemm's. Extra MiB: tracemalloc peak minus the output."
    )
    lines.append("")
    header = (
        f"{'workload':<12}{'candidate':<26}{'best ms':>10}{'median':>9}{'/torch':>8}"
        f"{'/einsum':>9}{'/scipy':>8}{'GFLOP/s':>9}{'%peak':>7}{'extra MiB':>10}  method"
    )
    for w in report["workloads"]:
        lines.append(header)
        label = f"{w['workload']} {w['dtype'][5:]}"
        ratio = w["auto_over_fastest"]
        lines.append(
            f"{label:<12}{_shape_label(w['shape'])}; {w['gflop']:.3f} GFLOP; auto picks "
            f"{w['chosen']['n_jobs=-1']} (n_jobs=-1), {w['chosen']['n_jobs=1']} (n_jobs=1); "
            f"fastest strategy {w['fastest_method']}, auto/fastest "
            + (f"{ratio:.2f}" if ratio else "-")
            + _check_label(w.get("auto_check"))
        )
        for cname, e in sorted(w["results"].items(), key=lambda kv: kv[1]["best_ms"]):
            star = f"*[{e['timed_on_images']}]" if "timed_on_images" in e else ""

            def r(key, e=e):
                v = e.get(key)
                return f"{v:.3g}" if v is not None else "-"

            mem = e.get("peak_extra_mib")
            mem = f"{mem:.1f}" if mem is not None else "n/a"
            frac = e.get("peak_fraction")
            frac = f"{100 * frac:.0f}%" if frac is not None else "-"
            lines.append(
                f"{'':<12}{cname + star:<26}{e['best_ms']:>10.3f}{e['median_ms']:>9.3f}"
                f"{r('ratio_to_torch'):>8}{r('ratio_to_stride_tricks_einsum'):>9}"
                f"{r('ratio_to_scipy_loop'):>8}{e['gflops']:>9.1f}{frac:>7}{mem:>10}  "
                f"{e.get('method', '')}"
            )
        lines.append("")
    t1 = report.get("transform")
    if t1:
        n, h, w_, k, p, q = t1["shape"]
        lines.append(
            f"T1 transformer {n}x{h}x{w_} float32, {k} filters {p}x{q}, {t1['pipeline']}: "
            + ", ".join(f"{c} {e['best_ms']:.1f} ms" for c, e in sorted(t1["results"].items()))
        )
        torch_ratio = t1["transform_over_torch"]
        lines.append(
            "  transform / torch "
            + (f"{torch_ratio:.3f}" if torch_ratio is not None else "-")
            + f", transform / conv2d alone {t1['transform_over_conv2d']:.2f}; temporaries "
            f"beyond the {t1['output_mib']:.0f} MiB output with working_memory="
            f"{t1['working_memory_mib']}: {t1['peak_extra_mib']:.1f} MiB (tracemalloc)"
        )
        lines.append("")
    rec = report.get("recipes")
    if rec:
        lines.append(
            f"skconv.recipes, transform of {rec['n_images']} 28x28 float32 images: "
            + ", ".join(
                f"{c} {e['best_ms'] / 1e3:.2f} s ({e['n_features']} features)"
                for c, e in rec["results"].items()
            )
        )
        lines.append("")
    sweep = report.get("sweep")
    if sweep:
        torch_g = sweep["auto_over_torch_geomean"]
        lines.append(
            f"Random sweep ({len(sweep['shapes'])} shapes, n_jobs=-1; skconv's candidates "
            "interleaved, torch in blocks): auto / fastest strategy "
            f"geomean {sweep['auto_over_fastest_geomean']:.3f}, worst "
            f"{sweep['auto_over_fastest_worst']:.2f}; auto / torch geomean "
            + (f"{torch_g:.3f}" if torch_g else "-")
        )
        for row in sweep["shapes"]:
            s = row["shape"]
            t = row["results"].get("torch", {}).get("best_ms")
            lines.append(
                f"  {row['workload']:<5}{row['dtype'][5:]:<4}"
                f"{s['n_images']:>6}x{s['height']}x{s['width']}"
                f" K={s['n_filters']:<3}{s['p']}x{s['q']:<4} auto {row['chosen']['n_jobs=-1']:<13}"
                f"{row['results']['auto']['best_ms']:>9.3f} ms  "
                f"fastest {row['fastest_method']:<13}"
                f"x{row['auto_over_fastest']:.2f}"
                + (f"  /torch {row['results']['auto']['best_ms'] / t:.2f}" if t else "")
            )
        lines.append("")
    mem = report.get("memory")
    if mem:
        lines.append(
            f"Memory: {'x'.join(map(str, mem['shape'][:3]))}, {mem['shape'][3]} filters "
            f"{mem['shape'][4]}x{mem['shape'][5]} float32, "
            f"working_memory={mem['working_memory_mib']}: "
            f"output {mem['output_mib']:.0f} MiB; extra peak (tracemalloc) "
            f"n_jobs=1 {mem['n_jobs=1']['peak_extra_mib']:.1f} MiB "
            f"({mem['n_jobs=1']['ms']:.0f} ms), "
            f"n_jobs=-1 {mem['n_jobs=-1']['peak_extra_mib']:.1f} MiB "
            f"({mem['n_jobs=-1']['ms']:.0f} ms)"
        )
        lines.append("")
    lines.append("Targets (reported, not asserted):")
    for t in report["targets"]:
        lines.append(
            f"  [{'met' if t['met'] else 'MISSED'}] {t['target']}: {t['value']:.3g} {t['detail']}"
        )
    return "\n".join(lines)


# --- command line ---------------------------------------------------------------


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python benchmarks/bench.py",
        description=(
            "Time conv2d (auto and every strategy) against the stride-tricks einsum, a "
            "scipy.signal.correlate2d loop and torch.conv2d on the workloads W1-W10, the "
            "transformer (T1) against torch conv2d+abs+max_pool2d, a random sweep and a memory "
            "case; print a table and the targets (reported, not asserted)."
        ),
    )
    level = parser.add_mutually_exclusive_group()
    level.add_argument(
        "--quick", action="store_true", help="fewer calls, smaller batches, a small sweep"
    )
    level.add_argument("--smoke", action="store_true", help="tiny sizes, for tests (seconds)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--rounds", type=int, help="timed calls per candidate (best counts)")
    parser.add_argument(
        "--workloads", default=",".join(WORKLOADS), help="comma-separated subset of W1..W10"
    )
    parser.add_argument(
        "--dtypes", default="float32,float64", help="comma-separated float32,float64"
    )
    parser.add_argument("--sweep", type=int, help="random shapes in the sweep (0 to skip)")
    parser.add_argument("--no-memory", action="store_true", help="skip the working_memory case")
    parser.add_argument("--no-transform", action="store_true", help="skip the transformer (T1)")
    parser.add_argument(
        "--no-recipes", action="store_true", help="skip the transform times of skconv.recipes"
    )
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="run skconv.calibrate() first (uses the cached calibration when there is one)",
    )
    parser.add_argument("--pause", type=float, help="seconds of sleep before each block")
    parser.add_argument(
        "--passes",
        type=int,
        help="blocks per candidate, in passes of alternating order (default 2 at full level)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of the data and sweep")
    return parser


def main(argv=None):
    """Run the benchmark; returns the exit code (0 unless the arguments are wrong)."""
    args = build_parser().parse_args(argv)
    level = "smoke" if args.smoke else "quick" if args.quick else "full"
    rounds = args.rounds or {"full": 7, "quick": 3, "smoke": 2}[level]
    passes = args.passes or {"full": 2, "quick": 1, "smoke": 1}[level]
    sweep_count = (
        args.sweep if args.sweep is not None else {"full": 40, "quick": 4, "smoke": 1}[level]
    )
    pause = (
        args.pause if args.pause is not None else {"full": 0.05, "quick": 0.02, "smoke": 0.0}[level]
    )
    rng = np.random.default_rng(args.seed)
    names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    unknown = [w for w in names if w not in WORKLOADS] + [
        d for d in dtypes if d not in ("float32", "float64")
    ]
    if unknown:
        print(f"unknown workloads or dtypes: {unknown}", file=sys.stderr)
        return 2
    for flag, value in (
        ("--rounds", args.rounds),
        ("--sweep", args.sweep),
        ("--pause", args.pause),
        ("--passes", args.passes),
    ):
        low = 1 if flag in ("--rounds", "--passes") else 0
        if value is not None and value < low:
            print(f"{flag} must be >= {low}; got {value}.", file=sys.stderr)
            return 2
    if args.json:
        try:
            check_output_path(args.json, "--json")
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 2

    if args.calibrate:
        from skconv import calibrate

        _log("calibrating the cost model (skconv.calibrate)")
        _log(str(calibrate(max_seconds=2.0) if level == "smoke" else calibrate()))
    report = {
        "level": level,
        "rounds": rounds,
        "passes": passes,
        "machine": machine_info(),
        "calibration": calibration_info(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    report["machine"]["haswell_kernels"] = haswell_kernels(report["machine"])
    _log("timing large np.matmul")
    gemm_size = 512 if level == "smoke" else 2048
    report["gemm_gflops"] = {d: gemm_gflops(d, gemm_size) for d in ("float32", "float64")}
    report["workloads"] = []
    for name in names:
        shape = WORKLOADS[name]
        if level == "smoke":
            shape = (max(2, shape[0] // 200),) + shape[1:]
        elif level == "quick" and name in ("W6",):
            shape = (shape[0] // 4,) + shape[1:]
        for dtype in dtypes:
            if name == "W6" and dtype == "float64" and level != "full":
                continue
            _log(f"{name} {dtype} {shape}")
            report["workloads"].append(
                run_workload(
                    name,
                    shape,
                    np.dtype(dtype),
                    rounds=rounds,
                    rng=rng,
                    level=level,
                    memory=level != "smoke" or name == "W1",
                    pause=pause,
                    gemm=report["gemm_gflops"],
                    passes=passes,
                )
            )
    if not args.no_transform:
        _log("T1 transformer")
        report["transform"] = run_transform(rng, level, rounds, pause, passes)
    if not args.no_recipes:
        _log("recipes")
        report["recipes"] = run_recipes(rng, level, max(2, rounds // 2), pause, passes)
    if sweep_count:
        report["sweep"] = run_sweep(sweep_count, rng, max(2, rounds // 2), level, pause, passes)
    if not args.no_memory:
        _log("memory case")
        report["memory"] = run_memory(rng, level)
    # gemm again at the end: the machine's speed drifts; keep the better one.
    second = {d: gemm_gflops(d, gemm_size) for d in ("float32", "float64")}
    report["gemm_gflops"] = {d: max(report["gemm_gflops"][d], second[d]) for d in second}
    for w in report["workloads"]:
        peak = report["gemm_gflops"][w["dtype"]]
        for entry in w["results"].values():
            entry["peak_fraction"] = entry["gflops"] / peak
    report["targets"] = evaluate_targets(report)
    print(format_report(report))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1, default=_json_default)
        _log(f"wrote {args.json}")
    return 0


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    raise TypeError(f"not JSON serialisable: {value!r}")


if __name__ == "__main__":
    sys.exit(main())
