"""The cost model: a strategy's counts of work -> estimated seconds -> ``auto``'s pick.

Like opt_einsum's path choice, ``method="auto"`` compares strategies by an
estimate of their cost rather than by hard-coded thresholds, but here the
estimate is in seconds and its weights are measured, not assumed.  Each
strategy reports what it will do as a few counts (its ``features``, see
``_strategies.py``):

=======  ==================================================================
const    1 (Python and NumPy call overhead; added here)
flops    floating-point operations of its GEMMs, zeros of banded or operator
         matrices included (they are multiplied all the same)
small    extra flops a GEMM with a short side wastes, BLAS kernels working on
         ~16x16 tiles
bytes    bytes its copies move (row-window buffers, transposed output)
calls    GEMMs (or ufunc loops) it issues
pack     elements of the operands of its GEMMs, summed over the calls (BLAS
         copies both operands into its packed layout on every call)
out      bytes of the result (the first touch of fresh pages costs more
         than the write itself; added here)
=======  ==================================================================

Its time is a nonnegative linear combination of them, with one set of
weights per strategy, dtype and threading mode ("blas": one stream of
products on BLAS's threads; "threads": the batch split over 2 threads, BLAS
single-threaded; "single": that on 1 thread).  The weights are package data,
``skconv/cost_model.json``, written by ``benchmarks/fit_cost_model.py`` from
timings of every strategy on a sweep of random shapes; the file records the
machine, NumPy and BLAS they were measured on.  :func:`skconv.calibrate`
refits them to timings of this machine and caches the result per machine and
BLAS (``_calibration.py``); the model in use (:func:`load_model`) is the
shipped one with that calibration, when there is one.  A strategy without
weights (a new one, before the next fit or calibration) is never picked by
``auto``.

Examples
--------
>>> import numpy as np
>>> from skconv._plan import plan_conv2d
>>> from skconv._costmodel import choose_method
>>> spec = plan_conv2d((1000, 28, 28), np.float32, (8, 5, 5)).spec
>>> name, reason = choose_method(spec)
>>> reason.startswith("lowest estimated time")
True
"""

import json
import math
from functools import lru_cache
from importlib import resources

from . import _calibration
from ._strategies import METHODS

FEATURES = ("const", "flops", "small", "bytes", "calls", "pack", "out")
MODES = ("blas", "threads", "single")
MODEL_FILE = "cost_model.json"

# The estimates are of best times.  A batch split over two of our threads
# varies more than one stream of products on BLAS's threads: after an idle
# moment it runs ~1.6x slower for about 50 ms (measured natively on 2
# cores: W5 float64, toeplitz split, median 0.82 ms a call in the first
# 50 ms after a 0.2 s sleep, 0.50 ms after; the operator on BLAS's threads
# was back to speed within 2 ms), so calls made now and then, rather than
# one after the other, see the split slower than its best.  So with several
# threads a split must be estimated faster than the best unsplit strategy
# by more than this share, which is also about the model's own error.
# Replayed on the estimates and timings of 4 earlier benchmark recordings
# (about 130 shapes), it changed 2 to 4 picks in each, losing at most 3 % of
# the measured best where it lost.
SPLIT_MARGIN = 0.10


@lru_cache(maxsize=1)
def shipped_model():
    """The shipped model: a dict with ``fitted_on`` and ``coefficients``.

    ``coefficients[strategy][dtype][mode]`` maps feature names to weights
    (features with no weight are left out).
    """
    text = resources.files("skconv").joinpath(MODEL_FILE).read_text(encoding="utf-8")
    return json.loads(text)


@lru_cache(maxsize=1)
def load_model():
    """The model in use: the shipped one, with this machine's calibration if any.

    A calibration (:func:`skconv.calibrate`, cached per machine and BLAS by
    ``_calibration.py``) replaces the weights of the (strategy, dtype, mode)
    groups it measured; ``calibrated`` then holds its date and file, and
    ``local`` its correction near the measured shapes (a
    ``_calibration.LocalCorrection``).  Read once per process, on the first
    estimate.
    """
    model = shipped_model()
    calibration = _calibration.current()
    if calibration is None:
        return dict(model, calibrated=None)
    coefficients = {
        name: {dtype: dict(by_mode) for dtype, by_mode in by_dtype.items()}
        for name, by_dtype in model["coefficients"].items()
    }
    for name, by_dtype in calibration["coefficients"].items():
        for dtype, by_mode in by_dtype.items():
            coefficients.setdefault(name, {}).setdefault(dtype, {}).update(by_mode)
    about = {"date": calibration.get("date"), "path": str(_calibration.cache_path())}
    local = _calibration.LocalCorrection(calibration.get("local", {}))
    return dict(model, coefficients=coefficients, local=local, calibrated=about)


def reset():
    """Forget the model in use and every cached estimate (after a calibration)."""
    load_model.cache_clear()
    candidates.cache_clear()


def features(name, spec):
    """The counts the model weighs for strategy ``name`` on ``spec`` (a dict)."""
    counts = dict(METHODS[name].features(spec))
    counts["const"] = 1.0
    counts["out"] = float(
        spec.n_images * spec.n_filters * spec.out_height * spec.out_width * spec.itemsize
    )
    return counts


def estimate(name, spec, mode, model=None):
    """Estimated seconds of strategy ``name`` on ``spec`` in threading ``mode``.

    ``math.inf`` when the model (by default the one in use, see
    :func:`load_model`) has no weights for it.  A calibration's local
    correction, when the model has one, multiplies the weighted counts.
    """
    dtype = spec.dtype.name
    model = load_model() if model is None else model
    weights = model["coefficients"].get(name, {}).get(dtype, {}).get(mode)
    if weights is None:
        return math.inf
    counts = features(name, spec)
    seconds = float(sum(c * counts.get(f, 0.0) for f, c in weights.items()))
    correction = model.get("local")
    if correction:
        seconds *= correction.factor(name, dtype, mode, _calibration.spec_sizes(spec))
    return seconds


def shipped_estimate(name, spec, mode):
    """:func:`estimate` with the shipped weights, whatever the calibration."""
    return estimate(name, spec, mode, shipped_model())


def split_batch(name, spec):
    """How conv2d uses the cores for strategy ``name`` on ``spec``.

    Two ways: its threads on parts of the batch with single-threaded BLAS
    (True), or one stream of products on BLAS's own threads (False).  Many
    small GEMMs gain from the first; a few large ones from the second (two
    half-size copies of a big product are no faster and share the caches).
    The model, fitted on both, decides.  The answer does not depend on
    ``n_jobs``, so neither do the products conv2d issues, and ``n_jobs=2``
    gives results identical to ``n_jobs=1``.
    """
    return estimate(name, spec, "threads") < estimate(name, spec, "blas")


def estimate_seconds(name, spec, n_threads=1):
    """The model's estimate of one strategy's time on ``spec``.

    Parameters
    ----------
    name : str
        A key of ``METHODS``.
    spec : ConvSpec
        The problem (``n_images`` is the whole batch).
    n_threads : int, default=1
        Threads conv2d will use (``n_jobs``).  A strategy that splits the
        batch (:func:`split_batch`) runs on that many threads with
        single-threaded BLAS; the others on BLAS's own threads whatever
        ``n_jobs`` is.

    Returns
    -------
    float
    """
    if not split_batch(name, spec):
        return estimate(name, spec, "blas")
    return estimate(name, spec, "threads" if n_threads > 1 else "single")


@lru_cache(maxsize=256)
def candidates(spec, n_threads, budget):
    """Every strategy that supports ``spec``, with the model's view of it.

    ``auto`` asks the same question for every chunk of rows a transformer
    converts, and the estimates take ~0.1 ms: the answers are cached.

    Returns
    -------
    tuple of (seconds, name, split_batch, fits)
        Cheapest first.  ``fits`` is False when the strategy's cached filters
        plus the workspace of one image per thread exceed ``budget`` bytes
        (the reference, einsum, needs neither and always fits).
    """
    rows = []
    for name, strategy in METHODS.items():
        if not strategy.supports(spec):
            continue
        need = strategy.fixed_bytes(spec) + n_threads * strategy.workspace_bytes(spec, 1)
        fits = name == "einsum" or need <= budget
        rows.append((estimate_seconds(name, spec, n_threads), name, split_batch(name, spec), fits))
    return tuple(sorted(rows))


def choose_method(spec, n_threads=1):
    """Pick the supported strategy with the lowest estimated time.

    Strategies whose cached filters plus the workspace of one image per
    thread would not fit in scikit-learn's ``working_memory`` are left out.

    Parameters
    ----------
    spec : ConvSpec
        The problem; ``spec.filter_rank`` (when known) lets the low-rank
        strategy compete.
    n_threads : int, default=1
        Threads conv2d will use.

    Returns
    -------
    name : str
        The chosen strategy.
    reason : str
        Why: the estimated times of the candidates, cheapest first.
    """
    from sklearn import get_config

    rows = candidates(spec, n_threads, get_config()["working_memory"] * 2**20)
    return rows_choice(rows, n_threads)


def rows_choice(rows, n_threads=1):
    """(name, reason) of the cheapest fitting row of :func:`candidates`.

    With ``n_threads`` > 1, a strategy that splits the batch over the
    threads gives way to an unsplit one estimated within ``SPLIT_MARGIN``
    of it.
    """
    fitting = [(t, name, split) for t, name, split, fits in rows if fits]
    fastest, name, split = fitting[0]
    reason = (
        "lowest estimated time (" + ", ".join(f"{n}: {t * 1e3:.3g} ms" for t, n, _ in fitting) + ")"
    )
    if split and n_threads > 1:
        steady = [n for t, n, s in fitting if not s and t <= fastest * (1 + SPLIT_MARGIN)]
        if steady:
            reason = (
                f"{steady[0]}, one stream of products, estimated within "
                f"{SPLIT_MARGIN:.0%} of {name} split over threads, whose speed varies more; "
                + reason
            )
            name = steady[0]
    skipped = [name for _, name, _, fits in rows if not fits]
    if skipped:
        reason += f"; over working_memory: {', '.join(skipped)}"
    return name, reason
