"""skconv.calibrate: the machine key, the cache, the fit, and auto's choices after it."""

import json
import math
import time
import warnings

import numpy as np
import pytest
from _oracles import naive_conv2d

import skconv
from skconv import _calibration, conv2d, explain_conv2d
from skconv._calibration import SIMPLER_MARGIN
from skconv._costmodel import (
    choose_method,
    estimate,
    load_model,
    shipped_estimate,
)
from skconv._costmodel import features as _calibration_features
from skconv._plan import plan_conv2d
from skconv._strategies import METHODS

HASWELL = [{"internal_api": "openblas", "version": "0.3.31", "architecture": "Haswell",
            "num_threads": 2}]  # fmt: skip


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private cache directory; the model in use is re-read before and after."""
    monkeypatch.setenv("SKCONV_CACHE_DIR", str(tmp_path))
    _calibration.reset()
    yield tmp_path
    _calibration.reset()


def scaled_timer(factors, calls=None):
    """Synthetic timings: the shipped estimate times a factor per strategy (or a function)."""

    def timer(name, spec, mode, call):
        if calls is not None:
            calls.append((name, mode))
        factor = factors(name, spec) if callable(factors) else factors.get(name, 1.0)
        seconds = shipped_estimate(name, spec, mode)
        if not math.isfinite(seconds):  # a strategy without shipped weights yet
            seconds = 2 * shipped_estimate("rowgemm", spec, mode)
        return seconds * factor

    return timer


def fail_timer(name, spec, mode, call):
    raise AssertionError("a cached calibration must not measure")


# --- the key and where it lives ------------------------------------------------------


def test_key_changes_with_the_blas_and_its_kernels_and_threads():
    skylake = [dict(HASWELL[0], architecture="SkylakeX")]
    one_thread = [dict(HASWELL[0], num_threads=1)]
    mkl = [dict(HASWELL[0], internal_api="mkl", version="2024.1")]
    keys = [_calibration.machine_key(b) for b in (HASWELL, skylake, one_thread, mkl)]
    paths = {_calibration.cache_path(k) for k in keys}
    assert len(paths) == 4
    assert _calibration.cache_path(keys[0]) == _calibration.cache_path(
        _calibration.machine_key(HASWELL)
    )
    key = _calibration.machine_key()
    assert {"cpu", "cores", "numpy", "blas", "strategies"} <= set(key)
    assert key["strategies"] == sorted(METHODS)  # a new strategy invalidates calibrations
    assert key["numpy"] == np.__version__


def test_cache_directory_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SKCONV_CACHE_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _calibration.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("SKCONV_CACHE_DIR")
    assert _calibration.cache_dir() == tmp_path / "xdg" / "skconv"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _calibration.cache_dir() == tmp_path / "home" / ".cache" / "skconv"


def test_a_relative_cache_directory_is_made_absolute(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SKCONV_CACHE_DIR", "rel")
    assert _calibration.cache_dir() == tmp_path / "rel"


def test_the_key_names_blas_threads_as_they_were_before_conv2d_limited_them():
    # A batch-splitting conv2d in another thread holds BLAS at one thread; a
    # calibration keyed then was filed under one thread and never found.
    from threadpoolctl import threadpool_limits

    from skconv._threads import single_threaded_blas

    with threadpool_limits(2, user_api="blas"):
        outside = _calibration.machine_key()
        with single_threaded_blas():
            inside = _calibration.machine_key()
    assert inside == outside


def test_calibrate_reports_an_unwritable_cache_before_measuring(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("SKCONV_CACHE_DIR", str(blocker / "skconv"))
    _calibration.reset()
    try:
        with pytest.raises(OSError, match="SKCONV_CACHE_DIR"):
            _calibration.calibrate(refresh=True, timer=fail_timer)
    finally:
        _calibration.reset()


def test_threads_calibrating_at_once_leave_a_whole_file(cache):
    # Both wrote the same temporary file (named after the process) and could
    # leave the tail of the longer write behind.
    import threading

    barrier = threading.Barrier(2)
    errors = []

    def calibrate():
        try:
            barrier.wait(5)
            _calibration.calibrate(max_seconds=1, refresh=True, timer=scaled_timer({}))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    for _ in range(10):
        threads = [threading.Thread(target=calibrate) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            _calibration.reset()
            assert _calibration.current() is not None
    assert [p.name for p in cache.iterdir()] == [_calibration.cache_path().name]


# --- the fit -----------------------------------------------------------------------


def test_fit_recovers_known_multipliers():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (40, 3))
    truth = np.array([2.0, 30.0, 0.5])
    t = x @ truth
    s, a = _calibration.fit_multipliers(x, t, ridge=1e-6)
    np.testing.assert_allclose(np.exp(s + a), truth, rtol=1e-3)
    # one common factor is found exactly, with no per-weight change
    s, a = _calibration.fit_multipliers(x, 3.0 * x.sum(axis=1))
    assert math.isclose(math.exp(s), 3.0, rel_tol=1e-9) and np.abs(a).max() < 1e-6


def test_calibrated_model_picks_what_the_timings_say(cache):
    spec = plan_conv2d((1000, 28, 28), np.float32, (8, 5, 5)).spec
    shipped_pick = choose_method(spec, 2)[0]
    # This "machine" runs every strategy 20x slower than the shipped model
    # says, except toeplitz, which runs as shipped.
    factors = {name: 20.0 for name in METHODS}
    factors["toeplitz"] = 1.0
    report = _calibration.calibrate(max_seconds=30, timer=scaled_timer(factors))
    assert report.measured and report.n_timings > 0 and report.path.exists()
    assert load_model()["calibrated"]["path"] == str(report.path)
    assert choose_method(spec, 2)[0] == "toeplitz"
    x = np.zeros((1000, 28, 28), np.float32)
    assert explain_conv2d(x, np.ones((8, 5, 5)) + np.eye(5), n_jobs=2).method == "toeplitz"
    # the other way round: the shipped pick is the only fast one
    factors = {name: 20.0 for name in METHODS}
    factors[shipped_pick] = 1.0
    _calibration.calibrate(max_seconds=30, refresh=True, timer=scaled_timer(factors))
    assert choose_method(spec, 2)[0] == shipped_pick


def test_calibration_captures_a_shape_dependent_slowdown(cache):
    # rowgemm_wide 40x slower with few large filters only (as some BLAS
    # kernels on products with a short side): one factor per strategy cannot
    # say it, the refit of its weights can.
    def factors(name, spec):
        few_large = spec.n_filters <= 4 and spec.filter_height >= 15
        return 40.0 if name == "rowgemm_wide" and few_large else 1.0

    _calibration.calibrate(max_seconds=30, timer=scaled_timer(factors))
    w4 = plan_conv2d((100, 64, 64), np.float32, (4, 15, 15)).spec
    assert choose_method(w4, 2)[0] != "rowgemm_wide"
    model = load_model()["coefficients"]["rowgemm_wide"]["float32"]["blas"]
    shipped = _calibration.current()  # the file's weights are what the model uses
    assert model == shipped["coefficients"]["rowgemm_wide"]["float32"]["blas"]


def test_noisy_timings_move_the_choices_by_no_more_than_the_noise(cache):
    # timings exactly as the shipped model says, but for a noise of +-30% per
    # timing: whatever is kept (refit, local correction) only chases it, and
    # the picks may cost at most the noise's range (1.3 / 0.7) of the true
    # best, the shipped model being the truth here
    rng = np.random.default_rng(0)
    report = _calibration.calibrate(
        max_seconds=30, timer=scaled_timer(lambda name, spec: float(rng.uniform(0.7, 1.3)))
    )
    assert f"weights in use: {report.variant}" in str(report)
    regrets = []
    for h, k, p in [(28, 8, 5), (64, 4, 15), (8, 4, 3), (40, 6, 7), (100, 2, 9), (20, 16, 3)]:
        spec = plan_conv2d((500, h, h), np.float32, (k, p, p)).spec
        truth = {
            name: min(shipped_estimate(name, spec, mode) for mode in ("blas", "single"))
            for name in METHODS
        }
        pick = choose_method(spec, 1)[0]
        regrets.append(truth[pick] / min(t for t in truth.values() if math.isfinite(t)))
    assert max(regrets) <= 1.3 / 0.7


@pytest.mark.parametrize(
    "regret, kept",
    [
        ({"shipped": 1.15, "scale": 1.24, "full": 1.21}, "full"),  # within the margin
        ({"shipped": 1.18, "scale": 1.08, "full": 1.15}, "full"),
        ({"shipped": 1.19, "scale": 1.07, "full": 1.15}, "full"),  # Haswell kernels, measured
        ({"shipped": 1.20, "scale": 0.99, "full": 1.15}, "scale"),  # 0.99 * 1.15 < 1.15
        ({"shipped": 0.95, "scale": 0.99, "full": 1.15}, "scale"),  # 0.95 * 1.15 > 0.99
        ({"shipped": 0.90, "scale": 1.04, "full": 1.15}, "shipped"),
    ],
)
def test_the_refit_is_kept_unless_a_simpler_variant_chooses_clearly_better(regret, kept):
    assert SIMPLER_MARGIN == 1.15
    assert _calibration.kept_variant(regret) == kept


def test_local_correction_follows_a_slowdown_at_one_measured_shape(cache):
    # The shipped pick for W2 runs 20x slower on this "machine" at W2's shape
    # only (one of the probes), as a BLAS kernel may on one product shape:
    # one scale per strategy cannot say it, the local correction does, and
    # leaves shapes far from that probe alone.
    w2 = plan_conv2d((1000, 28, 28), np.float32, (8, 5, 5)).spec
    far = plan_conv2d((50, 300, 300), np.float32, (2, 3, 3)).spec
    pick = choose_method(w2, 2)[0]

    def factors(name, spec):
        at_w2 = (spec.height, spec.width, spec.n_filters, spec.filter_height) == (28, 28, 8, 5)
        return 20.0 if name == pick and at_w2 else 1.0

    report = _calibration.calibrate(max_seconds=30, timer=scaled_timer(factors))
    assert report.local and "with the local correction" in str(report)
    assert choose_method(w2, 2)[0] != pick
    for mode in ("blas", "threads"):
        assert estimate(pick, w2, mode) > 5 * shipped_estimate(pick, w2, mode)
        # far from every probe: the model's own estimate
        ratio = estimate(pick, far, mode) / _estimate_without_local(pick, far, mode)
        assert ratio == pytest.approx(1.0, abs=1e-3)
    # the file holds each probe's residual: W2's stands out by most of
    # log 20 = 3.0 (the refit of the weights absorbs part of it, and
    # over-estimates the other probes a little)
    points = _calibration.current()["local"][pick]["float32"]["blas"]
    residuals = {tuple(p[:6]): p[-1] for p in points}
    others = [r for sizes, r in residuals.items() if sizes != (28, 28, 1, 8, 5, 5)]
    assert 2.0 < residuals[(28, 28, 1, 8, 5, 5)] - max(others) <= math.log(20)


def _estimate_without_local(name, spec, mode):
    model = dict(load_model(), local=None)
    return estimate(name, spec, mode, model)


def test_local_factor_is_the_kernel_average_of_the_residuals():
    at = (28, 28, 1, 8, 5, 5, 1, 1, 1, 1)
    prior = _calibration.LOCAL_PRIOR
    # one probe at the shape: its residual, shrunk by the prior
    assert _calibration.local_factor([[*at, 0.6]], at) == pytest.approx(math.exp(0.6 / (1 + prior)))
    # residuals of opposite signs at the same distance cancel
    up = (56, 28, 1, 8, 5, 5, 1, 1, 1, 1)
    down = (14, 28, 1, 8, 5, 5, 1, 1, 1, 1)
    assert _calibration.local_factor([[*up, 0.4], [*down, -0.4]], at) == pytest.approx(1.0)
    # a probe twice as tall weighs exp(-log(2)**2 / (2 * LENGTH**2)), by a direct sum
    kernel = math.exp(-(math.log(2) ** 2) / (2 * _calibration.LOCAL_LENGTH**2))
    expected = math.exp((0.6 + kernel * 0.4) / (prior + 1 + kernel))
    assert _calibration.local_factor([[*at, 0.6], [*up, 0.4]], at) == pytest.approx(expected)
    # many probes agreeing at the shape: nearly their residual
    assert _calibration.local_factor([[*at, 0.6]] * 100, at) == pytest.approx(math.exp(0.6), 0.01)


def _record(method, mode, seconds, estimate_weight, probe=(8, 8, 1, 4, 3, 3, 1, 0), n=10):
    return {
        "method": method,
        "dtype": "float32",
        "mode": mode,
        "probe": [*probe, n],
        "counts": {"const": 1.0, "flops": estimate_weight},
        "seconds": seconds,
    }


def test_regret_is_the_measured_time_of_the_pick_over_the_fastest():
    records = [
        _record("rowgemm", "blas", 3.0, 1.0),  # estimated fastest, measured 3x the best
        _record("toeplitz", "blas", 1.0, 2.0),
        _record("toeplitz", "threads", 2.0, 5.0),
    ]
    weights = {"flops": 1.0}
    coefficients = {
        "rowgemm": {"float32": {"blas": weights}},
        "toeplitz": {"float32": {"blas": weights, "threads": weights}},
    }
    # n_jobs=1 (blas, single) and n_jobs=2 (blas, threads) both pick rowgemm
    assert _calibration._regrets(records, coefficients) == pytest.approx([3.0, 3.0])
    coefficients["rowgemm"]["float32"]["blas"] = {"flops": 10.0}
    assert _calibration._regrets(records, coefficients) == pytest.approx([1.0, 1.0])


def test_regret_compares_the_strategies_of_one_batch_size():
    # seconds per image: toeplitz is the fastest on 10 images, rowgemm on one
    records = [
        _record("rowgemm", "blas", 3.0, 1.0, n=10),
        _record("toeplitz", "blas", 2.0, 2.0, n=10),
        {**_record("rowgemm", "blas", 0.4, 1.0, n=1), "small_batch": True},
        {**_record("toeplitz", "blas", 0.8, 2.0, n=1), "small_batch": True},
    ]
    coefficients = {name: {"float32": {"blas": {"flops": 1.0}}} for name in ("rowgemm", "toeplitz")}
    # rowgemm estimated fastest on both: right on one image, 1.5x on ten, for
    # n_jobs 1 and 2 (one unit of all four would score one pick, 1.5x)
    assert sorted(_calibration._regrets(records, coefficients)) == pytest.approx([1, 1, 1.5, 1.5])
    coefficients["rowgemm"]["float32"]["blas"] = {"flops": 10.0}
    assert sorted(_calibration._regrets(records, coefficients)) == pytest.approx([1, 1, 2, 2])


def test_every_strategy_is_timed_at_two_batch_sizes(cache):
    sizes = {}

    def timer(name, spec, mode, call):
        probe = (spec.dtype, spec.height, spec.width, spec.n_channels, spec.n_filters)
        probe += (spec.filter_height, spec.filter_width, spec.stride, spec.filter_rank)
        sizes.setdefault((name, mode, probe), []).append(spec.n_images)
        return scaled_timer({})(name, spec, mode, call)

    report = _calibration.calibrate(max_seconds=30, timer=timer)
    assert report.n_timings == sum(len(n) for n in sizes.values())
    divisor = _calibration.SMALL_BATCH_DIVISOR
    for n in sizes.values():
        # the batch sized to the target time, then one divisor times smaller
        # (at least one image; a single image is timed once)
        assert n == ([n[0], max(1, round(n[0] / divisor))] if n[0] > 1 else [1])
    assert sum(len(n) == 2 for n in sizes.values()) > 0.8 * len(sizes)


def test_every_registered_strategy_is_calibrated(cache):
    calls = []
    _calibration.calibrate(max_seconds=30, timer=scaled_timer({}, calls))
    assert {name for name, _ in calls} == set(METHODS)
    assert {mode for _, mode in calls} == set(_calibration._modes())
    coefficients = _calibration.current()["coefficients"]
    assert set(coefficients) == set(METHODS)


# --- the cache ------------------------------------------------------------------------


def test_cached_calibration_is_used_and_refresh_measures_again(cache):
    first = _calibration.calibrate(max_seconds=30, timer=scaled_timer({"rowgemm": 3.0}))
    slow = _calibration.current()["coefficients"]["rowgemm"]["float32"]["blas"]
    again = skconv.calibrate(timer=fail_timer)
    assert not again.measured and again.path == first.path and again.n_timings == first.n_timings
    assert "cached" in str(again)
    calls = []
    refreshed = _calibration.calibrate(refresh=True, timer=scaled_timer({}, calls))
    assert refreshed.measured and calls
    fast = _calibration.current()["coefficients"]["rowgemm"]["float32"]["blas"]
    spec = plan_conv2d((1000, 28, 28), np.float32, (8, 5, 5)).spec
    features = _calibration_features("rowgemm", spec)
    slow_t = sum(w * features.get(f, 0.0) for f, w in slow.items())
    fast_t = sum(w * features.get(f, 0.0) for f, w in fast.items())
    assert slow_t / fast_t == pytest.approx(3.0, rel=0.05)  # refitted from the new timings


def test_calibration_of_another_machine_is_ignored(cache):
    report = _calibration.calibrate(max_seconds=30, timer=scaled_timer({"toeplitz": 0.01}))
    data = json.loads(report.path.read_text())
    data["key"] = _calibration.machine_key([dict(HASWELL[0], architecture="Zen")])
    report.path.write_text(json.dumps(data))
    _calibration.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not corrupted: silently not ours
        assert _calibration.current() is None
        assert load_model()["calibrated"] is None
    spec = plan_conv2d((1000, 28, 28), np.float32, (8, 5, 5)).spec
    for mode in ("blas", "single"):  # the estimates are the shipped weights
        assert estimate("toeplitz", spec, mode) == shipped_estimate("toeplitz", spec, mode)


# Weights and local points no calibration writes (each replaces a valid group).
BAD_WEIGHTS = {
    "negative": {"const": -1.0},
    "huge int": {"const": 10**400},  # math.isfinite overflowed on it
    "empty": {},  # every estimate 0: auto would pick by name
    "all zero": {"const": 0.0, "flops": 0.0},
    "unknown count": {"bogus": 1e-5},
    "a day per call": {"const": 86400.0},  # estimates overflow to infinity
    "a bool": {"const": True},
}
BAD_POINTS = {
    "size 0": [0, 28, 1, 8, 5, 5, 1, 1, 1, 1, 0.1],  # a size of 0 has no logarithm
    "residual nan": [28, 28, 1, 8, 5, 5, 1, 1, 1, 1, float("nan")],
    "residual 1000": [28, 28, 1, 8, 5, 5, 1, 1, 1, 1, 1000.0],  # exp overflowed
    "huge size": [10**400, 28, 1, 8, 5, 5, 1, 1, 1, 1, 0.1],
    "too short": [28, 28, 0.1],
}


@pytest.mark.parametrize(
    "content",
    ["{not json", '{"key": null}', "[1, 2]", "not utf-8", "deeply nested", "too large"]
    + [f"weights: {name}" for name in BAD_WEIGHTS]
    + [f"local: {name}" for name in BAD_POINTS],
)
def test_corrupted_calibration_is_ignored_with_a_warning(cache, content):
    path = _calibration.cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = _calibration.machine_key()
    if content.startswith("weights: "):
        weights = BAD_WEIGHTS[content.removeprefix("weights: ")]
        data = {"key": key, "coefficients": {"rowgemm": {"float32": {"blas": weights}}}}
        text = json.dumps(data).encode()
    elif content.startswith("local: "):
        point = BAD_POINTS[content.removeprefix("local: ")]
        data = {"key": key, "coefficients": {},
                "local": {"rowgemm": {"float32": {"blas": [point]}}}}  # fmt: skip
        text = json.dumps(data).encode()
    elif content == '{"key": null}':
        text = json.dumps({"key": key}).encode()  # no coefficients
    elif content == "not utf-8":
        text = b"\xff\xfe garbage"
    elif content == "deeply nested":
        text = b"[" * 100_000 + b"]" * 100_000
    elif content == "too large":
        text = json.dumps({"key": key, "coefficients": {}, "pad": "x" * (5 << 20)}).encode()
    else:
        text = content.encode()
    path.write_bytes(text)
    _calibration.reset()
    with pytest.warns(UserWarning, match="calibration"):
        assert load_model()["calibrated"] is None
    # auto still works, on the shipped weights, and a calibration replaces the file
    x = np.random.default_rng(0).standard_normal((3, 9, 9))
    w = np.ones((2, 3, 3))
    np.testing.assert_allclose(conv2d(x, w), naive_conv2d(x[..., None], w[..., None]), atol=1e-12)
    report = _calibration.calibrate(timer=scaled_timer({}))
    assert report.measured and _calibration.current() is not None


# --- the real thing, tiny ---------------------------------------------------------------


def test_threads_mode_is_timed_more_often(cache, monkeypatch):
    # two threads of ours vary most from call to call: their best of more
    # calls is what conv2d gets at best, as for the other modes
    rounds_by_mode, warmup_by_mode = {}, {}

    def record(name, spec, mode, call, rounds, cap, warmup=0.0):
        rounds_by_mode.setdefault(mode, set()).add(rounds)
        warmup_by_mode.setdefault(mode, []).append(warmup)
        seconds = shipped_estimate(name, spec, mode)
        return seconds if math.isfinite(seconds) else 1e-3

    monkeypatch.setattr(_calibration, "measure_time", record)
    _calibration.calibrate(max_seconds=1)
    assert rounds_by_mode["blas"] == rounds_by_mode["single"] == {1}
    if "threads" in rounds_by_mode:  # (a machine with more than one core)
        assert rounds_by_mode["threads"] == {_calibration.THREADS_ROUNDS}
    # ... and, beyond the tiny calibration, after a warm-up of their own when
    # they follow an idle moment: here (instant timings) once per problem and
    # dtype, whose threads timings come one after the other
    warmup_by_mode.clear()
    _calibration.calibrate(max_seconds=5, refresh=True)
    assert set(warmup_by_mode["blas"]) == set(warmup_by_mode["single"]) == {0.0}
    if "threads" in warmup_by_mode:
        warm = warmup_by_mode["threads"]
        assert set(warm) == {0.0, _calibration.THREADS_WARMUP_S}
        assert warm.count(_calibration.THREADS_WARMUP_S) <= 2 * len(_calibration.PROBES)


def test_the_default_timer_warms_up_before_timing():
    calls = []
    seconds = _calibration.measure_time(
        "rowgemm", None, "threads", lambda: calls.append(time.sleep(0.001)), rounds=2, warmup=0.02
    )
    # ~10 untimed calls of 1 ms, then best_of's warm call and 2 timed ones
    assert len(calls) >= 5 + 3 and 0.001 <= seconds < 0.02


def test_tiny_real_calibration_runs_and_auto_stays_exact(cache):
    report = skconv.calibrate(max_seconds=1)
    assert report.measured and report.n_timings > 0 and report.path.parent == cache
    assert load_model()["calibrated"] is not None
    assert str(report).startswith("skconv cost model calibrated")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((20, 12, 12))
    w = rng.standard_normal((3, 4, 4))
    np.testing.assert_allclose(
        conv2d(x, w, n_jobs=2), naive_conv2d(x[..., None], w[..., None]), atol=1e-10
    )


SECONDS = r"max_seconds must be a finite number of seconds >= 0\.1; got"


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"max_seconds": 0}, ValueError, SECONDS + " 0"),
        ({"max_seconds": float("nan")}, ValueError, SECONDS + " nan"),
        ({"max_seconds": float("inf")}, ValueError, SECONDS + " inf"),
        ({"max_seconds": 10**400}, ValueError, SECONDS + " 1000"),  # beyond any float
        ({"max_seconds": 1e-9}, ValueError, SECONDS + " 1e-09"),  # too short to time a probe
        ({"max_seconds": 0.09}, ValueError, SECONDS + " 0.09"),
        ({"max_seconds": "10"}, TypeError, SECONDS + " '10'"),
        ({"max_seconds": True}, TypeError, SECONDS + " True"),
        ({"max_seconds": 1j}, TypeError, SECONDS + " 1j"),
        ({"refresh": "yes"}, TypeError, "refresh must be a bool; got 'yes'"),
        ({"timer": 3}, TypeError, "timer must be None or a callable; got 3"),
        (
            {"random_state": 1.5},
            TypeError,
            "random_state must be an int, a numpy Generator or None; got 1.5",
        ),
        ({"random_state": True}, TypeError, "random_state must be an int, a numpy Generator"),
        ({"random_state": np.random.RandomState(0)}, TypeError, "random_state must be an int"),
        ({"random_state": -1}, ValueError, r"random_state must be an int in \[0, 4294967295\]"),
        ({"random_state": 2**32}, ValueError, r"random_state must be an int in \[0, 4294967295\]"),
        ({"random_state": -1, "refresh": True}, ValueError, "random_state must be an int in"),
    ],
)
@pytest.mark.parametrize("cached", [False, True], ids=["no cache", "cached"])
def test_bad_arguments(cache, kwargs, error, match, cached):
    # the same error whether a calibration is cached (and would be returned) or not
    if cached:
        _calibration.calibrate(max_seconds=30, timer=scaled_timer({}))
    before = {p: p.read_bytes() for p in cache.iterdir()}
    with pytest.raises(error, match=match):
        skconv.calibrate(**kwargs)
    # nothing measured, nothing written
    assert {p: p.read_bytes() for p in cache.iterdir()} == before


@pytest.mark.parametrize(
    "random_state", [None, 0, 2**32 - 1, np.int64(7), np.random.default_rng(1)]
)
def test_seeds_accepted(cache, random_state):
    report = _calibration.calibrate(
        max_seconds=0.1, refresh=True, timer=scaled_timer({}), random_state=random_state
    )
    assert report.measured and report.n_timings > 0


def test_a_generator_seeds_like_its_seed(cache):
    # the probe data drawn from a Generator are those of default_rng(seed)
    drawn = {}

    def timer(name, spec, mode, call):
        images = drawn.setdefault(id(seed), [])
        if len(images) < 5:  # (drawing them all takes seconds)
            call.prepare()
            images.append(call.x.copy())
        return scaled_timer({})(name, spec, mode, call)

    for seed in (np.random.default_rng(5), 5):
        _calibration.calibrate(max_seconds=0.1, refresh=True, timer=timer, random_state=seed)
    first, second = drawn.values()
    assert len(first) == len(second) == 5
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
