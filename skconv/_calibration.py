"""Measured calibration of the cost model on this machine: ``skconv.calibrate``.

The weights shipped in ``skconv/cost_model.json`` were fitted on one machine
and one set of BLAS kernels.  Another CPU, another BLAS (MKL, Accelerate) or
other OpenBLAS kernels (``OPENBLAS_CORETYPE``) change what each count of work
costs, and not by one common factor: a BLAS may run one strategy's many small
products much slower than another's few long ones.  :func:`calibrate` times
every strategy of the registry (``_strategies.METHODS``), in each threading
mode and dtype, on a fixed set of small probe problems spread over the shapes
``auto`` chooses between, each at two batch sizes, and refits the shipped
weights to those timings.

What is fitted
--------------
For each (strategy, dtype, mode) group, the estimate becomes::

    t = exp(s) * sum_f exp(a_f) * w_f * x_f

with ``w_f`` the shipped weight of count ``x_f`` (``_costmodel.FEATURES``),
``s`` a free common scale (this machine is simply faster or slower) and
``a_f`` one log-multiplier per weight, which lets the fit move the dominant
weights separately when a common factor cannot explain the timings (a BLAS
slow on products with a short side raises the weight of the ``small`` count,
say).  ``s`` and the ``a_f`` minimise the squared log error over the probes,
``sum_i log(t_i / measured_i) ** 2``, as ``benchmarks/fit_cost_model.py``
does, plus a ridge penalty ``RIDGE * sum_f a_f ** 2`` that keeps the shape of
the shipped model where the few probes say nothing (Gauss-Newton with
Levenberg-Marquardt damping, in NumPy).  A strategy without shipped weights
starts from the median weight of each of its counts over the other strategies.

Which weights are kept
----------------------
Three candidates: the full refit, the shipped weights times one scale per
group, and the shipped weights.  Leaving one probe out of a fit and scoring
the choices on it (a candidate's regret on a probe is the measured time of
the strategy and threading mode it picks over the fastest measured, for
``n_jobs`` 1 and 2) tests the candidates at the edges of the probe set,
where a refit extrapolates: it once favoured the shipped weights (1.15
against 1.21 for the refit) on native OpenBLAS kernels, and one scale per
group (1.08-1.09 against 1.15-1.19) on Haswell ones, while on 40 random
shapes between the probes (two calibrations' timings per setting, replayed
against every strategy's time on the benchmark's sweep), the refit chose
best in both: geometric-mean regret 1.04-1.07
against 1.12 (shipped) and 1.08 (scale) natively, 1.09-1.13 against 1.21
and 1.21-1.26 with Haswell kernels (and, kept by this rule, 1.03-1.07
natively and 1.10-1.12 with Haswell kernels on 20 other random shapes, in
two recordings of the benchmark).  Since every strategy is timed at two
batch sizes (``SMALL_BATCH_DIVISOR``), replayed on the 40 random shapes
of the benchmark's sweeps recorded on 2026-11-30 (three calibrations per
setting): the refit with its local correction 1.08-1.09 natively and
1.07-1.08 with Haswell kernels (1.07-1.10 and 1.13 timed at one batch
size); the shipped weights 1.06 and 1.17; one scale per group 1.12-1.14
with Haswell kernels, although on the held-out probes it came out at 1.07
against the refit's 1.15-1.19.  So the refit is
kept unless a simpler candidate chooses better on the held-out probes by
more than ``SIMPLER_MARGIN`` (a refit gone wrong: it once picked a
strategy 2.4x slower than the shipped weights' pick on a 64x64 problem
with 15x15 filters); :func:`choose_variant` decides, and the report says
which.

What the weights cannot say
---------------------------
A few weights per group cannot follow every quirk of a BLAS: with
OpenBLAS's Haswell kernels on an AVX-512 machine, the Toeplitz strategy ran
28x28 images with 8 5x5 filters 1.6x slower per image than its group's best
scale says, while the same weights fit its other probes, and the choice
there against the row GEMMs came down to 1 %.  The calibration therefore
keeps, per group, the log residual ``log(measured / estimated)`` of each
probe, and the model multiplies its estimate of a problem by
``exp(sum_i K_i r_i / (LOCAL_PRIOR + sum_i K_i))``, the residuals smoothed
by a Gaussian kernel ``K_i = exp(-d_i ** 2 / (2 * LOCAL_LENGTH ** 2))`` of
the distance ``d_i`` between the problem's and probe ``i``'s log sizes
(height, width, channels, filters, filter height and width, strides and
dilations): the Nadaraya-Watson kernel regression (Nadaraya 1964; Watson
1964), shrunk towards no correction where no probe is near.  At a measured
shape the estimate is then close to the measurement; a factor of 2 away in
one size (distance 0.69) the correction has mostly faded.  It is kept
unless it chooses worse on the probes it was not fitted to (leave one probe
out, as above) by more than ``LOCAL_TOLERANCE`` (:func:`choose_variant`).
On two calibrations of each kernel set of this machine (native and Haswell
OpenBLAS kernels), the correction of the full refit, fitted to one and
judged on the other's timings, lowered the regret from 1.10 to 1.07
natively and from 1.05 to 1.03 with Haswell kernels; on probes left out
of it, it changed by -0.7 % to +0.1 %.

Where it is cached
------------------
One JSON file per machine key, in ``$SKCONV_CACHE_DIR``, else
``$XDG_CACHE_HOME/skconv``, else ``~/.cache/skconv`` (never in the package).
The key is the CPU model, the number of cores, NumPy's version, every BLAS
library threadpoolctl finds (``internal_api``, ``version``, ``architecture``,
i.e. the kernels in use, and ``num_threads``), the registered strategies and
a digest of the shipped weights: any change of these selects another file,
so a calibration is only ever used where it was measured.  The cost model
(``_costmodel.load_model``) reads the matching file lazily, once per process;
without one it uses the shipped weights.

Examples
--------
>>> from skconv._calibration import cache_dir, machine_key
>>> key = machine_key()
>>> sorted(key)[:3]
['blas', 'cores', 'cpu']
>>> cache_dir().is_absolute()
True
"""

import hashlib
import json
import math
import numbers
import os
import platform
import tempfile
import time
import warnings
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

FORMAT = 2
# Ridge on the per-weight log-multipliers (in units of squared log error of
# one probe): a weight moves by a factor e (2.7) only when that lowers the
# probes' squared log errors by more than RIDGE.
RIDGE = 0.25
# Multipliers are clipped to [1 / LIMIT, LIMIT]: beyond that a probe is more
# likely broken (a stall of the machine) than the BLAS.
LIMIT = 1000.0
# What a calibration file may hold: at most LIMIT times the largest shipped
# weight (about 0.7 ms, a call's fixed cost), rounded up to a second per
# count, and a few tens of KiB (a file far larger is not one).
MAX_WEIGHT = 1.0
MAX_FILE_BYTES = 2**22
# The local correction (see the module's notes): kernel width in log units
# of the sizes, and the prior weight of "no correction" against the probes'.
LOCAL_LENGTH = 0.5
LOCAL_PRIOR = 0.3
# The correction is dropped when it makes the leave-one-probe-out regret
# worse by more than this factor (it is meant for the measured shapes, and
# may cost a little between them).
LOCAL_TOLERANCE = 1.03
DEFAULT_SECONDS = 20.0
# Timed calls of the "threads" mode per call of the others (see calibrate).
THREADS_ROUNDS = 3
# Seconds of untimed calls before the "threads" mode is timed: after an idle
# moment, conv2d's own threads splitting a batch ran ~1.6x slower for about
# 50 ms on a 2-core virtual machine (5000 8x8 float64 images, 4 3x3
# filters, toeplitz split: median 0.82 ms a call in the first 50 ms after a
# 0.2 s sleep, 0.50 ms after), while BLAS's own threads were back to speed
# within 2 ms.  A probe times a few milliseconds of calls: without this, the
# calibration priced the split at its slow start.  Only after an idle moment
# of more than THREADS_IDLE_S (the probes of one problem are timed one mode
# at a time, so the threads' calls mostly follow each other).
THREADS_WARMUP_S = 0.06
THREADS_IDLE_S = 0.005
TINY_SECONDS = 3.0
# The smallest budget calibrate accepts.  The budget is checked between
# probes: the first probe (one dtype) took about 0.08 s on a 2-core virtual
# machine, however small the budget, while max_seconds=1e-9 ran out before it
# started, timed nothing and cached the shipped weights as a calibration.
# Below this, a budget cannot mean what it says.
MIN_SECONDS = 0.1
# Each strategy is timed on a batch sized to take the target time and on one
# SMALL_BATCH_DIVISOR times smaller, so that the fixed cost of a call and the
# cost per image are told apart.  With one size, every timing took about the
# same time, and the fit could trade the one for the other: with Haswell
# kernels a calibration estimated toeplitz at 2.2 us per image on 41 18x18
# float32 images with 8 14x14 filters (measured: 4.5) and the operator at 3.2
# (measured: 2.6), and auto ran toeplitz there, 1.7x slower.
SMALL_BATCH_DIVISOR = 8

# Probe problems: (height, width, channels, filters, p, q, stride, rank);
# rank 1 makes the filters separable (the low-rank strategy's case), 0 full.
# Over the range of the benchmark's workloads: one filter, a few, many; tiny,
# small and large images; 1x1 to 31x31 filters; channels; stride 2.  The
# first ones run in every calibration (also the tiny one).
PROBES = (
    (28, 28, 1, 8, 5, 5, 1, 0),
    (64, 64, 1, 4, 15, 15, 1, 0),
    (28, 28, 1, 1, 5, 5, 1, 0),
    (8, 8, 1, 4, 3, 3, 1, 0),
    (64, 64, 1, 16, 7, 7, 1, 0),
    (32, 32, 3, 16, 3, 3, 1, 0),
    (28, 28, 1, 16, 3, 3, 1, 0),
    (96, 96, 1, 4, 31, 31, 1, 0),
    (64, 64, 1, 8, 9, 9, 1, 1),
    (28, 28, 1, 8, 5, 5, 2, 0),
    (128, 128, 1, 8, 11, 11, 1, 0),
    (40, 40, 1, 32, 1, 1, 1, 0),
    (16, 16, 1, 2, 5, 5, 1, 0),
    (48, 48, 1, 24, 5, 5, 1, 0),
)


# --- where, and for what ------------------------------------------------------


def cache_dir():
    """The directory calibrations are cached in (not created here).

    ``$SKCONV_CACHE_DIR``, else ``$XDG_CACHE_HOME/skconv``, else
    ``~/.cache/skconv`` (the XDG base directory convention).

    Returns
    -------
    pathlib.Path
    """
    explicit = os.environ.get("SKCONV_CACHE_DIR")
    if explicit:
        # (a relative path is taken from the current directory, once)
        return Path(explicit).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "skconv"


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_info():
    """threadpoolctl's view of NumPy's BLAS (the key's part), sorted.

    The libraries shipped inside NumPy's installation (a wheel's
    ``numpy.libs``); when none is (NumPy linked to a system BLAS: MKL,
    Accelerate, a distribution's OpenBLAS), every BLAS loaded.  Other
    packages' copies (scipy's, torch's) come and go with imports and do not
    run conv2d's products.
    """
    from threadpoolctl import threadpool_info

    from ._threads import blas_threads_before_limit

    infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    numpy_dir = os.path.dirname(os.path.abspath(np.__file__))
    own = [i for i in infos if str(i.get("filepath", "")).startswith((numpy_dir, numpy_dir + "."))]
    keys = ("internal_api", "version", "architecture", "num_threads")
    rows = [{k: i.get(k) for k in keys} for i in (own or infos)]
    # While a batch-splitting conv2d in another thread holds BLAS at one
    # thread, the key must name the count it will go back to: a calibration
    # made then was filed under one thread and never found again.
    before = blas_threads_before_limit()
    if before:
        for row, info in zip(rows, own or infos, strict=True):
            row["num_threads"] = before.get(info.get("filepath"), row["num_threads"])
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))


def _shipped_digest():
    data = resources.files("skconv").joinpath("cost_model.json").read_bytes()
    return hashlib.sha256(data).hexdigest()[:16]


def machine_key(blas=None):
    """What a calibration is valid for: a JSON-able dict.

    Parameters
    ----------
    blas : list of dict, optional
        The BLAS libraries (as :func:`blas_info` returns them); the ones
        loaded now by default.

    Returns
    -------
    dict
    """
    from ._strategies import METHODS

    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "numpy": np.__version__,
        "blas": blas_info() if blas is None else blas,
        "strategies": sorted(METHODS),
        "shipped_model": _shipped_digest(),
        "format": FORMAT,
    }


def cache_path(key=None):
    """The file of the calibration for ``key`` (this machine's by default)."""
    key = machine_key() if key is None else key
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir() / f"calibration-{digest}.json"


# --- loading ----------------------------------------------------------------------


def _read(path, key):
    """The calibration stored at ``path`` for ``key``; None when absent or not for it.

    A file that cannot be read or holds what no calibration writes is
    ignored with a warning: conv2d then uses the shipped weights, as it must
    keep working whatever the cache holds.  Checked: the size (a real file
    holds a few tens of KiB), the encoding, the JSON, and every number: each
    group of weights names known counts, with weights in [0, MAX_WEIGHT]
    and one at least positive (else every estimate would be 0, or infinite,
    and ``auto`` would pick by name), local sizes positive and residuals
    within ``log(LIMIT)``.
    """
    from ._costmodel import FEATURES

    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ValueError(f"it holds more than {MAX_FILE_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # (UnicodeDecodeError is a ValueError)
        warnings.warn(
            f"skconv: cannot read the calibration {path} ({exc}); ignoring it.", stacklevel=2
        )
        return None
    try:
        data = json.loads(text)
        if data.get("key") != key:
            return None  # another machine's or BLAS's calibration: not ours
        coefficients = data["coefficients"]
        for by_dtype in coefficients.values():
            for by_mode in by_dtype.values():
                for weights in by_mode.values():
                    values = [_number(w) for w in weights.values()]
                    if not (
                        set(weights) <= set(FEATURES)
                        and all(0 <= w <= MAX_WEIGHT for w in values)
                        and any(w > 0 for w in values)
                    ):
                        raise ValueError(f"a group of weights is not one: {weights!r}")
        bound = math.log(LIMIT)
        for by_dtype in data.get("local", {}).values():
            for by_mode in by_dtype.values():
                for points in by_mode.values():
                    for point in points:
                        values = [_number(v) for v in point]
                        if not (
                            len(values) == 11
                            and all(0 < v < 2**63 for v in values[:-1])
                            and abs(values[-1]) <= bound
                        ):
                            raise ValueError(f"a local residual is malformed: {point!r}")
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError) as exc:
        warnings.warn(
            f"skconv: ignoring the corrupted calibration file {path} ({exc}); the cost model "
            "uses its shipped weights. Run `python -m skconv calibrate --refresh` to redo it.",
            stacklevel=2,
        )
        return None
    return data


def _number(value):
    """``value`` as a finite float: a JSON number, not a bool (ValueError otherwise)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{value!r} is not a number")
    number = float(value)  # (OverflowError for an int beyond any float)
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not finite")
    return number


@lru_cache(maxsize=1)
def current():
    """This machine's cached calibration (a dict), or None: read once per process."""
    key = machine_key()
    return _read(cache_path(key), key)


def reset():
    """Forget what was read (the cost model re-reads on its next estimate)."""
    from . import _costmodel

    current.cache_clear()
    _costmodel.reset()


# --- measuring ----------------------------------------------------------------------


def _modes():
    from ._costmodel import MODES

    return [m for m in MODES if m != "threads" or (os.cpu_count() or 1) > 1]


def _probe_bank(rng, k, p, q, c, rank, dtype):
    if rank:
        bank = sum(
            rng.standard_normal((k, p, 1)) * rng.standard_normal((k, 1, q)) for _ in range(rank)
        )
    else:
        bank = rng.standard_normal((k, p, q))
    if c > 1:
        bank = np.repeat(bank[..., None], c, axis=-1)
    return bank.astype(dtype)


class _ForcedCall:
    """conv2d(x, bank, method=name) with its threading mode forced to ``mode``.

    The images are drawn on first use (:meth:`prepare`): a test's timer that
    never calls it costs nothing.
    """

    def __init__(self, shape, dtype, bank, name, mode, stride, rng):
        self.shape, self.dtype, self.bank = shape, dtype, bank
        self.name, self.mode, self.stride, self.rng = name, mode, stride, rng
        self.x = None

    def prepare(self):
        if self.x is None:
            self.x = self.rng.standard_normal(self.shape).astype(self.dtype)

    def __call__(self):
        from ._conv import _setup, run_plan

        self.prepare()
        jobs = 2 if self.mode == "threads" else 1
        images, weights, plan, choice = _setup(
            self.x, self.bank, method=self.name, n_jobs=jobs, stride=self.stride
        )
        result = np.empty(plan.out_shape, plan.dtype)
        choice = replace(choice, split_batch=self.mode != "blas")
        run_plan(images, weights, plan, choice, result)
        return result


def best_of(call, rounds, cap):
    """Fastest of ``rounds`` calls after a warm-up one (other processes only add time).

    A call slower than ``cap`` seconds is not repeated: it is far from the
    best strategy and its warm-up time is good enough.
    """
    start = time.perf_counter()
    call()
    best = time.perf_counter() - start
    if best > cap:
        return best
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def measure_time(name, spec, mode, call, rounds=3, cap=0.05, warmup=0.0):
    """The default timer: best seconds of ``call`` (see :func:`calibrate`'s ``timer``).

    ``warmup`` seconds of untimed calls come first (see ``THREADS_WARMUP_S``).
    """
    if hasattr(call, "prepare"):
        call.prepare()
    warm_until = time.perf_counter() + warmup
    while time.perf_counter() < warm_until:
        call()
    return best_of(call, rounds, cap)


def _batch_size(name, spec_one, mode, target):
    """Images that make strategy ``name`` take about ``target`` seconds (shipped model)."""
    from ._costmodel import shipped_estimate

    def per_image(strategy):
        # the marginal cost: the fixed cost of a call is not per image (with
        # it, calls came out 5-10x shorter than the target and timed mostly
        # the call's overhead)
        small, large = (
            shipped_estimate(strategy, replace(spec_one, n_images=m), mode) for m in (16, 64)
        )
        return (large - small) / 48, small - 16 * (large - small) / 48

    slope, fixed = per_image(name)
    if not math.isfinite(slope):
        # no shipped weights (a new strategy): size it like the reference GEMM one
        slope, fixed = per_image("rowgemm")
    return int(max(1, min(4096, (target - max(fixed, 0.0)) / max(slope, 1e-9))))


def _measure(probes, dtypes, modes, deadline, target, timer, rng):
    """Timings of every strategy that supports each probe: a list of records."""
    from ._conv import _setup
    from ._costmodel import features
    from ._strategies import METHODS

    records = []
    for h, w, c, k, p, q, stride, rank in probes:
        for dtype in dtypes:
            if time.perf_counter() > deadline:
                return records
            bank = _probe_bank(rng, k, p, q, c, rank, dtype)
            shape = (1, h, w) if c == 1 else (1, h, w, c)
            one = rng.standard_normal(shape).astype(dtype)
            spec_one = _setup(one, bank, stride=stride)[3].spec  # knows the filters' rank
            # mode by mode: a mode's calls follow each other with no idle
            # moment in between (see THREADS_WARMUP_S)
            for mode in modes:
                for name, strategy in METHODS.items():
                    if not strategy.supports(spec_one):
                        continue
                    n = _batch_size(name, spec_one, mode, target)
                    small = max(1, round(n / SMALL_BATCH_DIVISOR))
                    sizes = [(n, False)] + ([(small, True)] if small < n else [])
                    for size, small_batch in sizes:
                        spec = replace(spec_one, n_images=size)
                        if not METHODS[name].supports(spec):
                            continue
                        shape_n = (size,) + shape[1:]
                        call = _ForcedCall(shape_n, dtype, bank, name, mode, stride, rng)
                        seconds = float(timer(name, spec, mode, call))
                        if not (seconds > 0 and math.isfinite(seconds)):
                            continue
                        records.append(
                            {
                                "method": name,
                                "dtype": np.dtype(dtype).name,
                                "mode": mode,
                                "probe": [h, w, c, k, p, q, stride, rank, size],
                                "small_batch": small_batch,
                                "counts": features(name, spec),
                                "seconds": seconds,
                            }
                        )
    return records


# --- fitting ------------------------------------------------------------------------


def fit_multipliers(x, t, ridge=RIDGE, iterations=100):
    """Common log-scale s and per-column log-multipliers a fitting x to t.

    Minimises ``sum_i log(exp(s) * sum_f exp(a_f) x[i, f] / t[i]) ** 2 +
    ridge * sum_f a_f ** 2`` (Levenberg-Marquardt).  ``x[i, f]`` is the
    model's term f of probe i (weight times count), all >= 0.

    Returns
    -------
    s : float
    a : ndarray of shape (n_columns,)
    """
    x = np.asarray(x, float)
    t = np.asarray(t, float)
    n_cols = x.shape[1]
    theta = np.zeros(n_cols + 1)  # s, then a
    bound = math.log(LIMIT)

    def objective(th):
        est = np.exp(th[0]) * (x @ np.exp(th[1:]))
        r = np.log(np.maximum(est, 1e-300) / t)
        return r, float(r @ r + ridge * th[1:] @ th[1:]), est

    # Start from the common scale alone: it is the exact answer when the
    # shipped weights are right up to a factor.
    base = x.sum(axis=1)
    theta[0] = float(np.mean(np.log(t / np.maximum(base, 1e-300))))
    r, cost, est = objective(theta)
    damping = 1e-3
    for _ in range(iterations):
        terms = x * np.exp(theta[1:]) * np.exp(theta[0])
        shares = terms / np.maximum(est, 1e-300)[:, None]
        jac = np.hstack([np.ones((len(t), 1)), shares])
        grad = jac.T @ r + np.concatenate([[0.0], ridge * theta[1:]])
        hess = jac.T @ jac + np.diag(np.concatenate([[0.0], np.full(n_cols, ridge)]))
        improved = False
        while damping < 1e8:
            step = np.linalg.solve(hess + damping * np.eye(n_cols + 1), -grad)
            trial = theta + step
            trial[1:] = np.clip(trial[1:], -bound, bound)
            r_new, cost_new, est_new = objective(trial)
            if cost_new < cost:
                theta, r, cost, est = trial, r_new, cost_new, est_new
                damping = max(damping / 10, 1e-9)
                improved = True
                break
            damping *= 10
        if not improved or np.abs(step).max() < 1e-7:
            break
    return float(theta[0]), theta[1:]


def _prior_weights(name, dtype, mode, shipped, feature_names):
    """Shipped weights of a group, or for a strategy without any, the median
    weight of each count over the strategies that have one."""
    weights = shipped.get(name, {}).get(dtype, {}).get(mode)
    if weights:
        return dict(weights)
    prior = {}
    for f in feature_names:
        values = [by_dtype.get(dtype, {}).get(mode, {}).get(f) for by_dtype in shipped.values()]
        values = [v for v in values if v]
        if values:
            prior[f] = float(np.median(values))
    return prior


def fit_calibration(records, shipped, scale_only=False):
    """Calibrated weights, per (strategy, dtype, mode), from timing records.

    Parameters
    ----------
    records : list of dict
        As measured (``method``, ``dtype``, ``mode``, ``counts``, ``seconds``).
    shipped : dict
        The shipped ``coefficients``.
    scale_only : bool, default=False
        Fit the common scale ``s`` of each group only (every ``a_f`` = 0).

    Returns
    -------
    coefficients : dict
        ``{strategy: {dtype: {mode: {feature: weight}}}}`` for the groups
        that were measured.
    errors : dict
        ``{(strategy, dtype, mode): (probes, rms log error shipped, calibrated)}``.
    """
    from ._costmodel import FEATURES

    groups = {}
    for r in records:
        groups.setdefault((r["method"], r["dtype"], r["mode"]), []).append(r)
    coefficients, errors = {}, {}
    for (name, dtype, mode), rows in sorted(groups.items()):
        present = [f for f in FEATURES if any(r["counts"].get(f) for r in rows)]
        prior = _prior_weights(name, dtype, mode, shipped, present)
        cols = [f for f in present if prior.get(f)]
        if not cols:
            continue
        x = np.array([[prior[f] * r["counts"].get(f, 0.0) for f in cols] for r in rows])
        t = np.array([r["seconds"] for r in rows])
        keep = x.sum(axis=1) > 0
        if not keep.any():
            continue
        x, t = x[keep], t[keep]
        if scale_only:
            s, a = float(np.mean(np.log(t / x.sum(axis=1)))), np.zeros(len(cols))
        else:
            s, a = fit_multipliers(x, t)
        weights = {
            f: float(f"{prior[f] * math.exp(s + af):.4g}") for f, af in zip(cols, a, strict=True)
        }
        coefficients.setdefault(name, {}).setdefault(dtype, {})[mode] = weights
        before = np.log(x.sum(axis=1) / t)
        after = np.log(np.exp(s) * (x @ np.exp(a)) / t)
        errors[(name, dtype, mode)] = (
            len(t),
            float(np.sqrt(np.mean(before**2))),
            float(np.sqrt(np.mean(after**2))),
        )
    return coefficients, errors


# --- the local correction -------------------------------------------------------------


def probe_sizes(probe):
    """The sizes :func:`local_factor` compares, of a probe (valid padding, no dilation)."""
    h, w, c, k, p, q, stride = probe[:7]
    return (h, w, c, k, p, q, stride, stride, 1, 1)


def spec_sizes(spec):
    """The sizes :func:`local_factor` compares, of a ``ConvSpec``."""
    return (
        spec.height,
        spec.width,
        spec.n_channels,
        spec.n_filters,
        spec.filter_height,
        spec.filter_width,
        *spec.stride,
        *spec.dilation,
    )


def _record_estimate(record, coefficients):
    """Seconds ``coefficients`` estimate for a timing record; None without weights."""
    weights = coefficients.get(record["method"], {}).get(record["dtype"], {}).get(record["mode"])
    if not weights:
        return None
    return sum(w * record["counts"].get(f, 0.0) for f, w in weights.items())


def local_residuals(records, coefficients):
    """Each probe's log residual under ``coefficients``, per group.

    Returns
    -------
    dict
        ``{strategy: {dtype: {mode: [[*probe_sizes, residual], ...]}}}``, the
        residual being ``log(measured / estimated seconds)``.
    """
    local = {}
    for r in records:
        est = _record_estimate(r, coefficients)
        if not est:  # no weights, or no counts they weigh
            continue
        # (clipped as the multipliers are: beyond, a probe is more likely a
        # stall of the machine, and _read would refuse the file)
        bound = math.log(LIMIT)
        residual = float(f"{min(max(math.log(r['seconds'] / est), -bound), bound):.4g}")
        group = local.setdefault(r["method"], {}).setdefault(r["dtype"], {})
        group.setdefault(r["mode"], []).append([*probe_sizes(r["probe"]), residual])
    return local


class LocalCorrection:
    """A calibration's smoothed residuals, ready for the cost model's estimates.

    Every group was measured on (some of) the same probes, so the kernel
    weights of a problem's sizes are computed once for all groups, and
    remembered: ``auto`` asks about the same few shapes again and again.

    Parameters
    ----------
    local : dict
        ``{strategy: {dtype: {mode: [[*sizes, residual], ...]}}}``, as
        :func:`local_residuals` returns it (and the calibration file holds).
    """

    def __init__(self, local):
        rows = [
            (name, dtype, mode, tuple(point[:-1]), float(point[-1]))
            for name, by_dtype in local.items()
            for dtype, by_mode in by_dtype.items()
            for mode, points in by_mode.items()
            for point in points
        ]
        sizes = sorted({row[3] for row in rows})
        where = {s: i for i, s in enumerate(sizes)}
        self._logs = np.log(np.array(sizes, float)) if sizes else None
        groups = {}
        for name, dtype, mode, probe, residual in rows:
            groups.setdefault((name, dtype, mode), []).append((where[probe], residual))
        self._groups = {
            key: (np.array([i for i, _ in pairs]), np.array([r for _, r in pairs]))
            for key, pairs in groups.items()
        }
        self._kernels = {}

    def __bool__(self):
        return bool(self._groups)

    def factor(self, name, dtype, mode, sizes):
        """The multiplier of the estimate of ``name`` in ``dtype`` and ``mode`` at ``sizes``."""
        group = self._groups.get((name, dtype, mode))
        if group is None:
            return 1.0
        kernel = self._kernels.get(sizes)
        if kernel is None:
            d2 = ((self._logs - np.log(np.array(sizes, float))) ** 2).sum(axis=1)
            kernel = np.exp(-d2 / (2 * LOCAL_LENGTH**2))
            if len(self._kernels) > 4096:
                self._kernels.clear()
            self._kernels[sizes] = kernel
        index, residuals = group
        weights = kernel[index]
        return math.exp(float(weights @ residuals) / (LOCAL_PRIOR + float(weights.sum())))


def local_factor(points, sizes):
    """The correction of an estimate at ``sizes``: exp of the smoothed residuals.

    ``exp(sum_i K_i r_i / (LOCAL_PRIOR + sum_i K_i))`` with
    ``K_i = exp(-d_i ** 2 / (2 * LOCAL_LENGTH ** 2))``, ``d_i`` the distance
    of the log sizes to probe ``i``'s and ``r_i`` its residual.

    Parameters
    ----------
    points : list of list
        One group's ``[*sizes, residual]`` (see :func:`local_residuals`).
    sizes : tuple
        The problem's sizes (:func:`spec_sizes`).

    Returns
    -------
    float

    Examples
    --------
    >>> import math
    >>> from skconv._calibration import LOCAL_PRIOR, local_factor
    >>> at = (28, 28, 1, 8, 5, 5, 1, 1, 1, 1)
    >>> math.isclose(local_factor([[*at, 0.5]], at), math.exp(0.5 / (1 + LOCAL_PRIOR)))
    True
    >>> round(local_factor([[*at, 0.5]], (512, 512, 1, 8, 5, 5, 1, 1, 1, 1)), 9)  # far: none
    1.0
    """
    return LocalCorrection({"": {"": {"": points}}}).factor("", "", "", tuple(sizes))


# --- which weights to keep ------------------------------------------------------------
#
# See the module's notes: the full refit, unless a simpler candidate chooses
# clearly better on probes it was not fitted to.

VARIANTS = ("shipped", "scale", "full")
# A simpler candidate replaces a more complex one when its held-out regret
# is lower by more than this factor: leaving out the probes at the edges
# penalises the refit where it chooses best between them.  With Haswell
# kernels, six calibrations gave one scale per group 1.07 against the
# refit's 1.15-1.19 on held-out probes, and 1.12-1.14 against 1.05-1.08 on
# the benchmark's random shapes (see the module's notes); with 1.10, one of
# the six would have kept the scale.
SIMPLER_MARGIN = 1.15


def _regrets(records, coefficients, local=None):
    """Measured / fastest measured per-image time of the pick, per probe and n_jobs.

    ``local`` (as :func:`local_residuals` returns it) corrects the estimates.
    """
    correction = LocalCorrection(local or {})
    units = {}
    for r in records:
        # the strategies of one probe, dtype and batch size compete
        key = (tuple(r["probe"][:8]), r["dtype"], r.get("small_batch", False))
        units.setdefault(key, []).append(r)
    regrets = []
    for rows in units.values():
        for modes in (("blas", "single"), ("blas", "threads")):
            scored = []
            for r in rows:
                if r["mode"] not in modes:
                    continue
                est = _record_estimate(r, coefficients)
                if est is None:
                    continue
                est *= correction.factor(
                    r["method"], r["dtype"], r["mode"], probe_sizes(r["probe"])
                )
                n = r["probe"][8]
                scored.append((est / n, r["seconds"] / n))
            if len(scored) > 1:
                pick = min(scored)[1]
                regrets.append(pick / min(t for _, t in scored))
    return regrets


def _geomean(values):
    return float(np.exp(np.mean(np.log(values)))) if values else 1.0


def _fit_variant(variant, records, shipped):
    """The weights of one candidate, for every group measured in ``records``."""
    if variant == "full":
        return fit_calibration(records, shipped)[0]
    scaled = fit_calibration(records, shipped, scale_only=True)[0]
    if variant == "scale":
        return scaled
    # the shipped weights, and scaled priors for strategies that have none
    return {
        name: {
            dtype: {
                mode: dict(shipped.get(name, {}).get(dtype, {}).get(mode) or weights)
                for mode, weights in by_mode.items()
            }
            for dtype, by_mode in by_dtype.items()
        }
        for name, by_dtype in scaled.items()
    }


def kept_variant(regret):
    """The full refit, or a simpler variant whose regret is lower by more than
    ``SIMPLER_MARGIN`` than the one kept so far (``regret``: by variant).

    Examples
    --------
    >>> from skconv._calibration import kept_variant
    >>> kept_variant({"shipped": 1.15, "scale": 1.24, "full": 1.21})
    'full'
    >>> kept_variant({"shipped": 1.05, "scale": 1.24, "full": 1.21})
    'shipped'
    """
    best = VARIANTS[-1]
    for variant in reversed(VARIANTS[:-1]):  # simpler and simpler
        if regret[variant] * SIMPLER_MARGIN < regret[best]:
            best = variant
    return best


def choose_variant(records, shipped):
    """The candidate weights kept: the full refit unless a simpler one chooses
    better on held-out probes by more than ``SIMPLER_MARGIN``.

    Returns
    -------
    variant : str
        One of ``VARIANTS``.
    use_local : bool
        Whether the local correction (see the module's notes) is kept on top.
    regret : dict
        Geometric-mean regret of each candidate on the probes it was not
        fitted to (the shipped weights were fitted to none), and of the
        chosen one with the local correction (key ``variant + "+local"``).
    """
    probes = sorted({tuple(r["probe"][:8]) for r in records})

    def held_out(variant, local):
        if variant == "shipped" and not local:
            return _geomean(_regrets(records, _fit_variant(variant, records, shipped)))
        values = []
        for probe in probes:
            seen = [r for r in records if tuple(r["probe"][:8]) != probe]
            held = [r for r in records if tuple(r["probe"][:8]) == probe]
            coefficients = _fit_variant(variant, seen, shipped)
            correction = local_residuals(seen, coefficients) if local else None
            values += _regrets(held, coefficients, correction)
        return _geomean(values)

    regret = {variant: held_out(variant, False) for variant in VARIANTS}
    best = kept_variant(regret)
    regret[best + "+local"] = held_out(best, True)
    use_local = regret[best + "+local"] <= LOCAL_TOLERANCE * regret[best]
    return best, use_local, regret


# --- the public function -----------------------------------------------------------


@dataclass(frozen=True)
class CalibrationReport:
    """What :func:`skconv.calibrate` did.

    Attributes
    ----------
    path : pathlib.Path
        The cached calibration file.
    measured : bool
        True when timings were taken now; False when a cached calibration
        for this machine was found and used as it is.
    seconds : float
        Time the measurement took (0 when cached).
    n_timings : int
        Timings fitted.
    date : str
        When the calibration was measured.
    key : dict
        What it is valid for (see :func:`machine_key`).
    errors : dict
        ``{(strategy, dtype, mode): (probes, rms log error of the shipped
        weights, of the full refit)}`` on the probes.
    variant : str
        The weights in use: ``"shipped"`` (the refit did not choose better
        on probes it had not seen), ``"scale"`` (the shipped weights times
        one factor per strategy, dtype and threading mode) or ``"full"``
        (the refit of every weight).
    regret : dict
        Each variant's leave-one-probe-out regret: the geometric mean, over
        the probes and ``n_jobs`` 1 and 2, of the measured time of its pick
        over the fastest measured; ``variant + "+local"`` for the variant in
        use with the local correction.
    local : bool
        Whether the estimates are corrected by the probes' smoothed
        residuals (see the module's notes).
    """

    path: Path
    measured: bool
    seconds: float
    n_timings: int
    date: str
    key: dict = field(repr=False)
    errors: dict = field(repr=False)
    variant: str = "full"
    regret: dict = field(default_factory=dict, repr=False)
    local: bool = False

    def __str__(self):
        blas = ", ".join(
            f"{b['internal_api']} {b['version']} ({b['architecture']}, {b['num_threads']} threads)"
            for b in self.key["blas"]
        )
        how = (
            f"measured now: {self.n_timings} timings in {self.seconds:.1f} s"
            if self.measured
            else f"cached, measured {self.date} ({self.n_timings} timings)"
        )
        lines = [
            f"skconv cost model calibrated for {self.key['cpu']}, {self.key['cores']} cores, "
            f"NumPy {self.key['numpy']}, {blas or 'no BLAS found'}",
            f"{how}; file {self.path}",
        ]
        if self.regret:
            scores = ", ".join(f"{v} {r:.3f}" for v, r in self.regret.items())
            local = " with the local correction" if self.local else ""
            lines.append(
                f"weights in use: {self.variant}{local} (leave-one-probe-out regret, "
                f"pick / fastest: {scores})"
            )
        if self.errors:
            lines.append(
                f"{'strategy':<14}{'dtype':<9}{'mode':<9}{'probes':>7}"
                f"{'shipped err':>13}{'calibrated err':>16}  (rms log error)"
            )
            for (name, dtype, mode), (n, before, after) in sorted(self.errors.items()):
                lines.append(f"{name:<14}{dtype:<9}{mode:<9}{n:>7}{before:>13.2f}{after:>16.2f}")
        return "\n".join(lines)


def _report(data, path, measured):
    errors = {tuple(k.split("/")): tuple(v) for k, v in data.get("errors", {}).items()}
    return CalibrationReport(
        path=path,
        measured=measured,
        seconds=float(data.get("seconds", 0.0)) if measured else 0.0,
        n_timings=int(data.get("n_timings", 0)),
        date=str(data.get("date", "")),
        key=data["key"],
        errors=errors,
        variant=str(data.get("variant", "full")),
        regret={str(k): float(v) for k, v in data.get("regret", {}).items()},
        local=bool(data.get("local")),
    )


def check_max_seconds(value, name="max_seconds"):
    """``value`` as float seconds, finite and at least ``MIN_SECONDS``.

    ``name`` is the parameter as the caller spells it (``--max-seconds`` on
    the command line).
    """
    expected = f"a finite number of seconds >= {MIN_SECONDS:g}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {expected}; got {value!r}.")
    try:
        seconds = float(value)
    except OverflowError:  # an int beyond any float: not a finite budget either
        seconds = math.inf
    if not (math.isfinite(seconds) and seconds >= MIN_SECONDS):
        raise ValueError(f"{name} must be {expected}; got {value!r}.")
    return seconds


def calibrate(*, max_seconds=DEFAULT_SECONDS, refresh=False, timer=None, random_state=0):
    """Fit the cost model of ``method="auto"`` to this machine, and cache it.

    ``conv2d(method="auto")`` picks the strategy its cost model estimates
    fastest; the model's shipped weights were measured on one machine and
    one BLAS.  This times every strategy (in each threading mode, float32
    and float64) on small probe problems, each at two batch sizes, refits
    the weights to the timings (a common scale per strategy, dtype and
    mode, and multipliers of the individual weights where one scale does
    not explain the timings), keeps the refit unless a simpler candidate
    chooses clearly better on probes it was not fitted to (see the
    module's notes), and caches the result for this CPU, NumPy, BLAS
    (library, version, kernels, threads) and set of strategies.  Every
    later process on the same machine and BLAS uses it; elsewhere the
    shipped weights are used.
    ``python -m skconv calibrate`` does the same from the shell.

    Parameters
    ----------
    max_seconds : float, default=20.0
        Time budget of the measurement.  Below 3 seconds a tiny calibration
        runs (fewer probes, shorter calls; for tests).  Probes are measured
        in a fixed order until the budget is spent.  At least 0.1 (a
        ValueError otherwise): the budget is checked between probes, and a
        shorter one may run out before the first probe, timing nothing.
    refresh : bool, default=False
        Measure again even when a calibration for this machine is cached.
    timer : callable, optional
        ``timer(method, spec, mode, call) -> seconds`` replaces the timing of
        ``call()`` (conv2d with that method and threading mode on the
        problem ``spec``); for tests and simulations.
    random_state : int, numpy Generator or None, default=0
        Seeds the probe data: an int in [0, 2**32 - 1] (as in scikit-learn),
        a ``numpy.random.Generator`` used as it is, or None for fresh entropy.

    Returns
    -------
    CalibrationReport
        Where it is cached, whether it was measured now, and the model's
        error on the probes before and after.

    Examples
    --------
    >>> import skconv
    >>> report = skconv.calibrate(max_seconds=1)  # doctest: +SKIP
    >>> print(report)  # doctest: +SKIP
    """
    from ._costmodel import shipped_model
    from ._validation import check_bool, check_int, check_output_path, is_int

    # Every argument is checked here, before the cache is looked at: a bad
    # one fails the same way whether a calibration is cached or not.
    max_seconds = check_max_seconds(max_seconds)
    refresh = check_bool(refresh, "refresh")
    if timer is not None and not callable(timer):
        raise TypeError(f"timer must be None or a callable; got {timer!r}.")
    if random_state is not None and not isinstance(random_state, np.random.Generator):
        if not is_int(random_state):
            raise TypeError(
                f"random_state must be an int, a numpy Generator or None; got {random_state!r}."
            )
        # scikit-learn's range for seeds (check_random_state)
        check_int(random_state, "random_state", 0, 2**32 - 1)

    key = machine_key()
    path = cache_path(key)
    if not refresh:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a corrupted file is simply redone
            cached = _read(path, key)
        if cached is not None:
            reset()
            return _report(cached, path, measured=False)

    # The result is written after the whole measurement: a cache that cannot
    # be written is reported before it.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        check_output_path(str(path), "the calibration file")
    except (OSError, ValueError) as exc:
        raise OSError(
            f"skconv.calibrate cannot write its cache in {path.parent} ({exc}); set "
            "SKCONV_CACHE_DIR to a writable directory."
        ) from exc

    tiny = max_seconds < TINY_SECONDS
    probes = PROBES[:3] if tiny else PROBES
    # Each call ~0.3 ms (tiny) or ~1.5 ms at the default budget: long enough
    # to see the BLAS's steady state, short enough to cover every probe.
    target = 3e-4 if tiny else 1.5e-3 * min(4.0, max(0.5, max_seconds / DEFAULT_SECONDS))
    if timer is None:
        rounds = 1 if tiny else 3
        cap = 20 * target

        threads_done = -math.inf  # when the last "threads" timing ended

        def timer(name, spec, mode, call):
            nonlocal threads_done
            # Two threads of ours, scheduled by the OS, vary the most (the
            # wide row GEMM's threads on 1889 28x28 images at stride 2 took 1.0
            # to 1.7 us per image, call after call), and a refit took the
            # slow calls for their cost: conv2d then ran a large FFT on one
            # stream, 4.0 ms instead of 2.4.  Estimated threads / one stream
            # over three calibrations each (two with 18), against 0.6-0.7 in the
            # benchmark's best of 14: with 3 timed calls 0.83-1.02 (50 96x96
            # images, 4 31x31 filters), 0.82-0.99 (1000 28x28, 8 5x5); with
            # 9 0.86-0.92, 0.63-0.86; with 18 0.81-0.82, 0.58-0.59.  Much
            # of that was the split's slow start after idling, now warmed up
            # (THREADS_WARMUP_S): since then, replayed on the benchmark's
            # sweeps (three calibrations per kernel setting), 9 timed calls
            # chose as well as 18 (1.07-1.08 against 1.06-1.08 natively,
            # 1.06-1.07 against 1.05-1.08 with Haswell kernels) and took
            # 10-12.5 s instead of 13-17.
            if mode != "threads":
                return measure_time(name, spec, mode, call, rounds=rounds, cap=cap)
            if hasattr(call, "prepare"):
                call.prepare()  # (drawing the images first: the threads idle meanwhile)
            idle = time.perf_counter() - threads_done > THREADS_IDLE_S
            seconds = measure_time(
                name,
                spec,
                mode,
                call,
                rounds=THREADS_ROUNDS * rounds,
                cap=cap,
                warmup=THREADS_WARMUP_S if idle and not tiny else 0.0,
            )
            threads_done = time.perf_counter()
            return seconds

    start = time.perf_counter()
    records = _measure(
        probes,
        ("float32", "float64"),
        _modes(),
        start + max_seconds,
        target,
        timer,
        np.random.default_rng(random_state),
    )
    elapsed = time.perf_counter() - start
    shipped = shipped_model()["coefficients"]
    _, errors = fit_calibration(records, shipped)
    variant, use_local, regret = choose_variant(records, shipped)
    coefficients = _fit_variant(variant, records, shipped)
    local = local_residuals(records, coefficients) if use_local else {}
    data = {
        "about": "skconv cost model calibrated on this machine by skconv.calibrate(); "
        "the weights replace the shipped ones (skconv/cost_model.json) where given.",
        "format": FORMAT,
        "key": key,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "seconds": elapsed,
        "n_timings": len(records),
        "max_seconds": float(max_seconds),
        "variant": variant,
        "regret": regret,
        "coefficients": coefficients,
        "local": local,
        "errors": {"/".join(k): list(v) for k, v in errors.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # A file of its own for each writer (two threads of one process, or two
    # processes with the same pid in containers sharing the directory, wrote
    # into one and left a mixed file), then an atomic rename: a concurrent
    # reader sees the old file or the new one.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(data, indent=1) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    reset()
    return _report(data, path, measured=True)
