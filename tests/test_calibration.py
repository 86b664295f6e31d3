"""skconv.calibrate: the machine key, the cache, the fit, and auto's choices after it."""

import json
import math
import warnings

import numpy as np
import pytest
from _oracles import naive_conv2d

import skconv
from skconv import _calibration, conv2d, explain_conv2d
from skconv._calibration import VARIANT_MARGIN
from skconv._costmodel import choose_method, estimate, load_model, shipped_estimate
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


def test_shipped_weights_are_kept_when_the_refit_chooses_no_better(cache):
    # timings exactly as the shipped model says, but for a mild noise of
    # +-30% per timing: a refit can only chase the noise
    rng = np.random.default_rng(0)
    report = _calibration.calibrate(
        max_seconds=30, timer=scaled_timer(lambda name, spec: float(rng.uniform(0.7, 1.3)))
    )
    assert report.variant == "shipped" and "weights in use: shipped" in str(report)
    assert report.regret["shipped"] <= VARIANT_MARGIN * min(report.regret.values())
    spec = plan_conv2d((100, 64, 64), np.float32, (4, 15, 15)).spec
    for name in METHODS:
        for mode in ("blas", "threads"):
            assert estimate(name, spec, mode) == pytest.approx(shipped_estimate(name, spec, mode))


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


@pytest.mark.parametrize("content", ["{not json", '{"key": null}', "[1, 2]", "negative"])
def test_corrupted_calibration_is_ignored_with_a_warning(cache, content):
    path = _calibration.cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    if content == "negative":
        data = {"key": _calibration.machine_key(), "coefficients": {"rowgemm": {"float32": {
            "blas": {"const": -1.0}}}}}  # fmt: skip
        content = json.dumps(data)
    elif content == '{"key": null}':
        content = json.dumps({"key": _calibration.machine_key()})  # no coefficients
    path.write_text(content)
    _calibration.reset()
    if content == "[1, 2]":
        with pytest.warns(UserWarning, match="corrupted calibration"):
            assert _calibration.current() is None
    else:
        with pytest.warns(UserWarning, match="corrupted calibration"):
            assert load_model()["calibrated"] is None
    # auto still works, on the shipped weights, and a calibration replaces the file
    x = np.random.default_rng(0).standard_normal((3, 9, 9))
    w = np.ones((2, 3, 3))
    np.testing.assert_allclose(conv2d(x, w), naive_conv2d(x[..., None], w[..., None]), atol=1e-12)
    report = _calibration.calibrate(timer=scaled_timer({}))
    assert report.measured and _calibration.current() is not None


# --- the real thing, tiny ---------------------------------------------------------------


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


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"max_seconds": 0}, ValueError, "max_seconds must be a positive number; got 0"),
        ({"max_seconds": float("nan")}, ValueError, "max_seconds"),
        ({"max_seconds": "10"}, TypeError, "max_seconds must be a positive number; got '10'"),
        ({"max_seconds": True}, TypeError, "max_seconds"),
        ({"refresh": "yes"}, TypeError, "refresh must be a bool; got 'yes'"),
        ({"timer": 3}, TypeError, "timer must be None or a callable; got 3"),
        ({"random_state": 1.5}, TypeError, "random_state must be an int; got 1.5"),
    ],
)
def test_bad_arguments(cache, kwargs, error, match):
    with pytest.raises(error, match=match):
        skconv.calibrate(**kwargs)
    assert not list(cache.iterdir())  # nothing measured, nothing written
