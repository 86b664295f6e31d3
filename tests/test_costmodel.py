"""The cost model: its package data, its estimates, and auto's single decision."""

import json
from dataclasses import replace
from importlib import resources

import numpy as np
import pytest
from _oracles import naive_conv2d, random_problem
from sklearn import config_context

from skconv import conv2d, explain_conv2d
from skconv._costmodel import (
    FEATURES,
    MODES,
    SPLIT_MARGIN,
    choose_method,
    estimate_seconds,
    load_model,
    rows_choice,
    shipped_model,
)
from skconv._plan import ConvSpec, plan_conv2d
from skconv._strategies import METHODS


def naive(x, w):
    return naive_conv2d(x, w)


def tolerance(dtype, x, w):
    """Absolute tolerance: rounding of sums of |x||w| terms in ``dtype``."""
    scale = np.abs(x).max(initial=0) * np.abs(w).reshape(len(w), -1).sum(axis=1).max(initial=0)
    return 32 * np.finfo(dtype).eps * (scale + 1)


# --- the package data --------------------------------------------------------------


def test_model_ships_as_package_data_and_says_where_it_was_fitted():
    text = resources.files("skconv").joinpath("cost_model.json").read_text(encoding="utf-8")
    model = json.loads(text)
    assert model == shipped_model()
    machine = model["fitted_on"]
    assert machine["cpu"] and machine["cores"] >= 1 and machine["numpy"]
    assert all({"internal_api", "version", "architecture"} <= set(b) for b in machine["blas"])
    assert "OPENBLAS_CORETYPE" in machine
    for name in model["coefficients"]:  # every fitted strategy, dtype and mode has weights
        assert name in METHODS
        for dtype in ("float32", "float64"):
            for mode in MODES:
                weights = model["coefficients"][name][dtype][mode]
                assert weights and set(weights) <= set(FEATURES)
                assert all(w > 0 for w in weights.values())
    # the operator issues one GEMM per call: no weight for a count that is always 1
    assert all(
        "calls" not in w for d in model["coefficients"]["operator"].values() for w in d.values()
    )


def test_auto_never_picks_a_strategy_without_weights(monkeypatch):
    model = shipped_model()
    stripped = dict(
        model, coefficients={k: v for k, v in model["coefficients"].items() if k != "rowgemm"}
    )
    monkeypatch.setattr("skconv._costmodel.load_model", lambda: stripped)
    from skconv._costmodel import candidates

    candidates.cache_clear()
    try:
        spec = plan_conv2d((1000, 28, 28), np.float32, (8, 5, 5)).spec
        assert choose_method(spec)[0] != "rowgemm"
    finally:
        candidates.cache_clear()


# --- explain_conv2d: the one decision ---------------------------------------------------


def test_explain_reports_exactly_what_conv2d_runs(monkeypatch):
    rng = np.random.default_rng(14)
    x = rng.standard_normal((300, 20, 19)).astype(np.float32)
    bank = rng.standard_normal((3, 4, 5)).astype(np.float32)
    ran = []
    for name, strategy in list(METHODS.items()):

        def spy(x, w, spec, out, _run=strategy.run, _name=name):
            ran.append(_name)
            return _run(x, w, spec, out)

        monkeypatch.setitem(METHODS, name, replace(strategy, run=spy))
    for n_jobs in (1, 2):
        for method in ("auto", "toeplitz"):
            choice = explain_conv2d(x, bank, method=method, n_jobs=n_jobs)
            ran.clear()
            conv2d(x, bank, method=method, n_jobs=n_jobs)
            assert set(ran) == {choice.method}
            assert choice.n_threads == n_jobs
            assert choice.reason == "requested" if method != "auto" else "lowest" in choice.reason
            assert list(choice.estimates) == sorted(choice.estimates, key=choice.estimates.get)
            assert choice.method in str(choice)


def test_explain_validates_like_conv2d():
    with pytest.raises(ValueError, match="method must be one of"):
        explain_conv2d(np.zeros((2, 6, 6)), np.ones((3, 3)), method="fft9")
    with pytest.raises(TypeError, match="out"):
        explain_conv2d(np.zeros((2, 6, 6)), np.ones((3, 3)), out=np.zeros((2, 4, 4)))


# --- the choice ------------------------------------------------------------------------


def test_auto_uses_low_rank_only_when_filters_allow_it():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((50, 64, 64)).astype(np.float32)
    rank1 = np.stack([np.outer(rng.standard_normal(15), rng.standard_normal(15)) for _ in range(4)])
    full = rng.standard_normal((4, 15, 15))
    low = explain_conv2d(x, rank1.astype(np.float32))
    high = explain_conv2d(x, full.astype(np.float32))
    assert low.filter_rank == 1 and high.filter_rank == 15
    assert high.method != "separable"
    # Whatever auto picks for the rank-1 bank, it is exact.
    np.testing.assert_allclose(
        conv2d(x[:3], rank1.astype(np.float32)),
        naive(x[:3, ..., None], rank1[..., None]),
        rtol=0,
        atol=tolerance(np.float32, x[:3], rank1),
    )


@pytest.mark.parametrize("seed", range(30))
def test_choose_method_returns_a_supported_method_with_a_reason(seed):
    rng = np.random.default_rng(seed)
    n, height, width, c, k, p, q, stride, dilation = random_problem(rng)
    x_shape = (int(rng.integers(1, 5000)), height, width, c)
    spec = plan_conv2d(x_shape, np.float32, (k, p, q, c), stride=stride, dilation=dilation).spec
    if c == 1 and seed % 2:
        spec = replace(spec, filter_rank=1)
    for n_threads in (1, 2):
        name, reason = choose_method(spec, n_threads)
        assert name in METHODS and METHODS[name].supports(spec)
        assert isinstance(reason, str) and name in reason and "ms" in reason


def test_a_split_gives_way_to_a_steady_strategy_within_the_margin():
    # rows as candidates() returns them: (seconds, name, split_batch, fits),
    # cheapest first.  With threads, the split "a" gives way to the first
    # unsplit strategy within SPLIT_MARGIN of it ("c"), not to a split one
    # ("b") nor to one beyond the margin or over working_memory.
    near = 1.0 + SPLIT_MARGIN / 2
    rows = (
        (1.0, "a", True, True),
        (1.001, "big", False, False),
        (1.002, "b", True, True),
        (near, "c", False, True),
        (near, "d", False, True),
    )
    name, reason = rows_choice(rows, 2)
    assert name == "c" and "within 10% of a" in reason and "over working_memory: big" in reason
    assert rows_choice(rows, 1)[0] == "a"  # one thread: a split is no split
    far = ((1.0, "a", True, True), (1.0 + 2 * SPLIT_MARGIN, "c", False, True))
    assert rows_choice(far, 2)[0] == "a"
    unsplit_first = ((1.0, "c", False, True), (1.01, "a", True, True))
    assert rows_choice(unsplit_first, 2)[0] == "c"


def test_choose_method_respects_working_memory():
    # An operator matrix of ~20 MiB cannot be used under working_memory=8.
    spec = ConvSpec(5000, 24, 24, 1, 6, 3, 3, (1, 1), (1, 1), 22, 22, np.dtype(np.float64))
    assert METHODS["operator"].fixed_bytes(spec) > 8 * 2**20
    with config_context(working_memory=8):
        name, reason = choose_method(spec)
        assert name != "operator"
        assert (
            "over working_memory" in reason and "operator" in reason.split("over working_memory")[1]
        )


def test_cost_estimates_are_positive_and_grow_with_the_batch():
    spec = ConvSpec(100, 28, 28, 1, 8, 5, 5, (1, 1), (1, 1), 24, 24, np.dtype(np.float32))
    bigger = replace(spec, n_images=10000)
    for name in shipped_model()["coefficients"]:  # (a strategy without weights: inf)
        small_cost, large_cost = estimate_seconds(name, spec), estimate_seconds(name, bigger)
        assert 0 < small_cost < large_cost, name


def test_model_in_use_is_the_shipped_one_without_a_calibration(tmp_path, monkeypatch):
    from skconv import _calibration

    monkeypatch.setenv("SKCONV_CACHE_DIR", str(tmp_path))  # empty: no calibration
    _calibration.reset()
    try:
        model = load_model()
        assert model["calibrated"] is None
        assert model["coefficients"] == shipped_model()["coefficients"]
    finally:
        _calibration.reset()
