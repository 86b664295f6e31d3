"""Every contraction strategy against independent oracles.

Oracles: the einsum reference (``method="einsum"``), a naive loop written
here from the definition, and torch.conv2d when it is importable.  No test
here is timed.
"""

import tracemalloc
from dataclasses import replace

import numpy as np
import pytest
from sklearn import config_context

from skconv import conv2d
from skconv import _methods
from skconv._bench import forced_split
from skconv._conv import _with_filters, plan_conv2d
from skconv._methods import (
    CACHE_MAX_BYTES,
    METHODS,
    ConvSpec,
    FilterCache,
    choose_method,
    filter_rank,
)

from _oracles import naive_conv2d

FAST = [name for name in METHODS if name != "einsum"]


def naive(x, w, stride=(1, 1), dilation=(1, 1)):
    """The definition on an already padded (n, H, W, C) x and (K, p, q, C) w."""
    return naive_conv2d(x, w, stride=stride, dilation=dilation)


def tolerance(dtype, x, w):
    """Absolute tolerance: rounding of sums of |x||w| terms in ``dtype``."""
    scale = np.abs(x).max(initial=0) * np.abs(w).reshape(len(w), -1).sum(axis=1).max(initial=0)
    return 32 * np.finfo(dtype).eps * (scale + 1)


def spec_for(x, w, stride=(1, 1), dilation=(1, 1)):
    return plan_conv2d(x.shape, x.dtype, w.shape, stride=stride, dilation=dilation).spec


def random_problem(rng, channels=None):
    n = int(rng.integers(1, 4))
    height, width = (int(v) for v in rng.integers(1, 13, 2))
    c = int(channels if channels is not None else rng.choice([1, 1, 2, 3]))
    k = int(rng.integers(1, 5))
    sh, sw, dh, dw = (int(v) for v in rng.integers(1, 4, 4))
    p = int(rng.integers(1, (height - 1) // dh + 2))
    q = int(rng.integers(1, (width - 1) // dw + 2))
    return n, height, width, c, k, p, q, (sh, sw), (dh, dw)


def run_method(name, x, w, stride=(1, 1), dilation=(1, 1)):
    spec = spec_for(x, w, stride, dilation)
    out = np.full((x.shape[0], w.shape[0], spec.out_height, spec.out_width), np.nan, x.dtype)
    METHODS[name].run(x, w, spec, out)
    return out


# --- every method against the oracles ----------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(METHODS))
@pytest.mark.parametrize("seed", range(12))
def test_method_matches_oracles(name, seed, dtype):
    rng = np.random.default_rng(seed)
    n, height, width, c, k, p, q, stride, dilation = random_problem(rng, channels=1 if name == "separable" else None)
    x = rng.standard_normal((n, height, width, c)).astype(dtype)
    w = rng.standard_normal((k, p, q, c)).astype(dtype)
    spec = spec_for(x, w, stride, dilation)
    if not METHODS[name].supports(spec):
        assert name in ("operator", "taps")  # size caps; everything else runs all
        pytest.skip(f"{name} declines this size")
    got = run_method(name, x, w, stride, dilation)
    assert got.dtype == dtype
    tol = tolerance(dtype, x, w)
    np.testing.assert_allclose(got, naive(x, w, stride, dilation), rtol=0, atol=tol)
    np.testing.assert_allclose(got, run_method("einsum", x, w, stride, dilation), rtol=0, atol=tol)


@pytest.mark.parametrize("name", list(METHODS))
@pytest.mark.parametrize(
    "case",
    [
        dict(n=1, h=9, w=7, k=3, p=1, q=1),  # 1x1 filters
        dict(n=4, h=6, w=5, k=2, p=6, q=5),  # filters as large as the image: 1 pixel out
        dict(n=1, h=5, w=5, k=1, p=5, q=5),  # b=1, one filter, one pixel
        dict(n=3, h=1, w=12, k=2, p=1, q=4),  # one-row images
        dict(n=3, h=12, w=1, k=2, p=4, q=1),  # one-column images
        dict(n=2, h=10, w=11, k=5, p=3, q=2, stride=(3, 2), dilation=(2, 3)),
        dict(n=2, h=13, w=9, k=2, p=4, q=3, stride=(2, 1), dilation=(3, 1)),
    ],
)
def test_edge_shapes(name, case):
    rng = np.random.default_rng(1)
    stride, dilation = case.get("stride", (1, 1)), case.get("dilation", (1, 1))
    x = rng.standard_normal((case["n"], case["h"], case["w"], 1))
    w = rng.standard_normal((case["k"], case["p"], case["q"], 1))
    if not METHODS[name].supports(spec_for(x, w, stride, dilation)):
        pytest.skip(f"{name} declines this size")
    got = run_method(name, x, w, stride, dilation)
    np.testing.assert_allclose(got, naive(x, w, stride, dilation), rtol=0, atol=tolerance(np.float64, x, w))


@pytest.mark.parametrize("name", list(METHODS))
@pytest.mark.parametrize("seed", range(3))
def test_through_conv2d_with_padding(name, seed):
    # Padding, pad modes, flips and depthwise channels go through the driver.
    rng = np.random.default_rng(100 + seed)
    x = rng.standard_normal((3, 9, 8, 2)).astype(np.float32)
    bank = rng.standard_normal((3, 3, 4)).astype(np.float32)
    pad_mode = ["constant", "reflect", "wrap"][seed]
    y = conv2d(x, bank, padding="same", pad_mode=pad_mode, stride=(1, 2), flip=True, method=name)
    # the driver's padding (where the odd pixel of "same" goes is its business)
    pad = plan_conv2d(x.shape, x.dtype, bank.shape, padding="same", stride=(1, 2), flip=True).pad
    assert [sum(side) for side in pad] == [2, 3]
    padded = np.pad(x, ((0, 0), *pad, (0, 0)), mode=pad_mode)
    # depthwise: every channel is an image; filters flipped for a true convolution
    chans = padded.transpose(0, 3, 1, 2).reshape(-1, padded.shape[1], padded.shape[2], 1)
    expected = naive(chans, bank[:, ::-1, ::-1, None], stride=(1, 2)).reshape(3, 2 * 3, *y.shape[2:])
    np.testing.assert_allclose(y, expected, rtol=0, atol=tolerance(np.float32, x, bank[..., None]))
    np.testing.assert_allclose(
        y, conv2d(x, bank, padding="same", pad_mode=pad_mode, stride=(1, 2), flip=True, method="einsum"),
        rtol=0, atol=tolerance(np.float32, x, bank[..., None]),
    )


@pytest.mark.parametrize("name", [n for n in METHODS if n != "separable"])
def test_multichannel_filters_through_conv2d(name):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 11, 10, 3))
    w = rng.standard_normal((5, 2, 2, 3) if name == "taps" else (5, 3, 4, 3))
    y = conv2d(x, w, padding=1, dilation=(2, 1), stride=2, method=name)
    expected = naive(np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), w, stride=(2, 2), dilation=(2, 1))
    np.testing.assert_allclose(y, expected, rtol=0, atol=tolerance(np.float64, x, w))


def test_separable_declines_channels_and_auto_still_works():
    spec = ConvSpec(10, 8, 8, 3, 2, 3, 3, (1, 1), (1, 1), 6, 6, np.dtype(np.float64))
    assert not METHODS["separable"].supports(spec)
    with pytest.raises(ValueError, match="does not support"):
        conv2d(np.zeros((2, 8, 8, 3)), np.ones((2, 3, 3, 3)), method="separable")


@pytest.mark.parametrize("name", FAST)
def test_writes_in_place_into_out(name):
    # Every pixel of the caller's block is written (no result lost to a
    # silent copy, NOTES pitfall 3) and nothing outside it.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 12, 10, 1)).astype(np.float32)
    w = rng.standard_normal((3, 3, 4, 1)).astype(np.float32)
    spec = spec_for(x, w)
    big = np.full((7, 3, spec.out_height, spec.out_width), np.nan, np.float32)
    block = big[1:6]
    assert block.flags.c_contiguous
    METHODS[name].run(x, w, spec, block)
    assert np.isfinite(block).all()
    assert np.isnan(big[0]).all() and np.isnan(big[6]).all()
    np.testing.assert_allclose(block, naive(x, w), rtol=0, atol=tolerance(np.float32, x, w))


def test_noncontiguous_out_through_conv2d():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 10, 10))
    bank = rng.standard_normal((2, 3, 3))
    holder = np.zeros((2, 6, 8, 8)).transpose(1, 0, 2, 3)
    for name in FAST:
        holder[...] = np.nan
        result = conv2d(x, bank, out=holder, method=name)
        assert result is holder
        np.testing.assert_allclose(holder, naive(x[..., None], bank[..., None]), atol=1e-12)


# --- low rank -----------------------------------------------------------------------


def test_filter_rank_detects_rank_one_and_full_rank():
    rng = np.random.default_rng(5)
    sobel = np.outer([1.0, 2.0, 1.0], [-1.0, 0.0, 1.0])
    gauss = np.outer(*(2 * [np.exp(-np.linspace(-2, 2, 7) ** 2)]))
    assert filter_rank(sobel[None, :, :, None]) == 1
    assert filter_rank(np.stack([np.pad(sobel, 2), gauss])[..., None]) == 1
    assert filter_rank(gauss.astype(np.float32)[None, :, :, None]) == 1
    full = rng.standard_normal((3, 5, 4, 1))
    assert filter_rank(full) == 4
    two = (rng.standard_normal((2, 6, 1)) * rng.standard_normal((2, 1, 6))
           + rng.standard_normal((2, 6, 1)) * rng.standard_normal((2, 1, 6)))
    assert filter_rank(two[..., None]) == 2
    assert filter_rank(np.zeros((1, 3, 3, 1))) == 1
    assert filter_rank(np.ones((2, 3, 3, 2))) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["rank1", "full"])
def test_separable_exact_for_rank_one_and_full_rank(kind, dtype):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((7, 30, 27, 1)).astype(dtype)
    if kind == "rank1":
        w = rng.standard_normal((4, 9, 1)) * rng.standard_normal((4, 1, 7))
    else:
        w = rng.standard_normal((4, 9, 7))
    w = w[..., None].astype(dtype)
    for stride, dilation in [((1, 1), (1, 1)), ((2, 3), (2, 1))]:
        got = run_method("separable", x, w, stride, dilation)
        np.testing.assert_allclose(got, naive(x, w, stride, dilation), rtol=0, atol=tolerance(dtype, x, w))


def test_auto_uses_low_rank_only_when_filters_allow_it():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((50, 64, 64)).astype(np.float32)
    rank1 = np.stack([np.outer(rng.standard_normal(15), rng.standard_normal(15)) for _ in range(4)])
    full = rng.standard_normal((4, 15, 15))
    plan = plan_conv2d(x.shape, x.dtype, rank1.shape)
    low = _with_filters(plan, rank1[..., None].astype(np.float32), 1)
    high = _with_filters(plan, full[..., None].astype(np.float32), 1)
    assert low.spec.filter_rank == 1 and high.spec.filter_rank == 15
    assert high.method != "separable"
    # Whatever auto picks for the rank-1 bank, it is exact.
    np.testing.assert_allclose(
        conv2d(x[:3], rank1.astype(np.float32)), naive(x[:3, ..., None], rank1[..., None]),
        rtol=0, atol=tolerance(np.float32, x[:3], rank1),
    )


# --- cache ---------------------------------------------------------------------------


def test_filter_cache_is_bounded():
    cache = FilterCache(max_bytes=10_000, max_entries=3)
    for i in range(10):
        w = np.full((1, 3, 3, 1), float(i))
        value = cache.get(FilterCache.key("t", w), lambda: np.zeros(400))  # 3200 bytes
        assert value.nbytes == 3200
        assert cache.nbytes <= 10_000 and len(cache) <= 3
    big = cache.get(FilterCache.key("t", np.ones(1)), lambda: np.zeros(2000))
    assert big.nbytes == 16000 and cache.nbytes <= 10_000  # built, not kept
    # Same contents, same entry; the key depends on contents, not identity.
    calls = []
    w = np.arange(9.0).reshape(1, 3, 3, 1)
    cache.get(FilterCache.key("u", w), lambda: calls.append(1) or np.zeros(1))
    cache.get(FilterCache.key("u", w.copy()), lambda: calls.append(1) or np.zeros(1))
    assert calls == [1]


def test_global_cache_stays_bounded_over_many_banks():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 16, 16))
    for _ in range(40):
        bank = rng.standard_normal((4, 3, 3))
        for name in ("toeplitz", "operator", "separable"):
            conv2d(x, bank, method=name)
    assert _methods.CACHE.nbytes <= CACHE_MAX_BYTES
    assert len(_methods.CACHE) <= _methods.CACHE_MAX_ENTRIES


# --- the choice ------------------------------------------------------------------------


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


def test_choose_method_respects_working_memory():
    # An operator matrix of ~20 MiB cannot be used under working_memory=8.
    spec = ConvSpec(5000, 24, 24, 1, 6, 3, 3, (1, 1), (1, 1), 22, 22, np.dtype(np.float64))
    assert METHODS["operator"].fixed_bytes(spec) > 8 * 2**20
    with config_context(working_memory=8):
        name, reason = choose_method(spec)
        assert name != "operator"
        assert "over working_memory" in reason and "operator" in reason.split("over working_memory")[1]


def test_cost_estimates_are_positive_and_grow_with_the_batch():
    spec = ConvSpec(100, 28, 28, 1, 8, 5, 5, (1, 1), (1, 1), 24, 24, np.dtype(np.float32))
    bigger = replace(spec, n_images=10000)
    for name, method in METHODS.items():
        small_cost, large_cost = method.cost(spec), method.cost(bigger)
        assert 0 < small_cost < large_cost, name


# --- memory --------------------------------------------------------------------------


def traced_peak(fn):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = fn()
        return tracemalloc.get_traced_memory()[1] - base, result
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("n_jobs", [1, 2])
@pytest.mark.parametrize("name", ["auto"] + FAST)
def test_memory_stays_within_working_memory(name, n_jobs):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((3000, 28, 28)).astype(np.float32)
    p = 3 if name == "taps" else 5
    bank = rng.standard_normal((8, p, p)).astype(np.float32)
    out_bytes = 3000 * 8 * (30 - p + 1) ** 2 * 4
    budget = 4
    if name == "operator":  # its 19 MiB matrix needs a larger budget
        x, out_bytes, budget = x[:500], out_bytes // 6, 24
    _methods.CACHE.clear()
    with config_context(working_memory=budget):
        peak, y = traced_peak(lambda: conv2d(x, bank, method=name, n_jobs=n_jobs, padding=1))
    # The output, the budget, and a little for Python objects and the filters.
    assert peak <= out_bytes + budget * 2**20 + 256 * 2**10, (peak - out_bytes) / 2**20
    np.testing.assert_allclose(
        y[:5], conv2d(x[:5], bank, method="einsum", padding=1), rtol=0, atol=tolerance(np.float32, x, bank)
    )


@pytest.mark.parametrize("name", FAST)
@pytest.mark.parametrize("shape", [(200, 28, 28, 1, 8, 5, 5), (30, 40, 33, 3, 4, 7, 6), (800, 8, 8, 1, 4, 3, 3)])
def test_workspace_bytes_is_honest(name, shape):
    n, height, width, c, k, p, q = shape
    rng = np.random.default_rng(11)
    x = rng.standard_normal((n, height, width, c))
    w = rng.standard_normal((k, p, q, c))
    spec = spec_for(x, w, dilation=(2, 1))
    if not METHODS[name].supports(spec):
        pytest.skip("not supported")
    out = np.empty((n, k, spec.out_height, spec.out_width))
    _methods.CACHE.clear()
    peak, _ = traced_peak(lambda: METHODS[name].run(x, w, spec, out))
    bound = METHODS[name].workspace_bytes(spec, n) + METHODS[name].fixed_bytes(spec)
    # Building preprocessed filters needs index arrays and a transposed copy.
    slack = 2 * METHODS[name].fixed_bytes(spec) + 64 * 2**10
    assert peak <= bound + slack, (peak, bound)


# --- threads ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["auto"] + FAST)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_n_jobs_gives_identical_results(name, dtype):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((301, 20, 19)).astype(dtype)
    bank = rng.standard_normal((3, 3, 4) if name == "taps" else (3, 4, 5)).astype(dtype)
    for memory in (1, 1024):  # several chunks per thread, or one per thread
        with config_context(working_memory=memory):
            one = conv2d(x, bank, method=name, n_jobs=1)
            two = conv2d(x, bank, method=name, n_jobs=2)
            plans = [_with_filters(plan_conv2d(x.shape, x.dtype, bank.shape), bank[..., None], jobs)
                     for jobs in (1, 2)]
        if name != "auto" or plans[0].method == plans[1].method:
            np.testing.assert_array_equal(one, two)
        else:  # auto may pick another strategy for two threads: same up to rounding
            np.testing.assert_allclose(one, two, rtol=0, atol=tolerance(dtype, x, bank))


def test_threads_do_not_oversubscribe_blas():
    # While conv2d's own threads run, BLAS is limited to one thread each.
    from threadpoolctl import threadpool_info

    seen = []
    original = METHODS["rowgemm"].run

    def spy(x, w, spec, out):
        seen.append([i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"])
        return original(x, w, spec, out)

    _methods.METHODS["rowgemm"] = replace(METHODS["rowgemm"], run=spy)
    try:
        with forced_split("threads"):
            conv2d(np.ones((4000, 10, 10)), np.ones((2, 3, 3)), method="rowgemm", n_jobs=2)
        assert len(seen) >= 2 and all(t == 1 for threads in seen for t in threads)
        seen.clear()
        with forced_split("blas"):  # one stream of products: BLAS keeps its threads
            conv2d(np.ones((4000, 10, 10)), np.ones((2, 3, 3)), method="rowgemm", n_jobs=2)
        assert len(seen) == 1 and seen[0] == [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    finally:
        _methods.METHODS["rowgemm"] = _methods.ROWGEMM


# --- torch as an extra oracle -------------------------------------------------------------


@pytest.mark.parametrize("name", list(METHODS))
def test_against_torch(name):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(13)
    c = 1 if name in ("separable", "taps") else 3
    x = rng.standard_normal((4, 17, 15, c))
    w = rng.standard_normal((5, 4, 3, c))
    for stride, dilation, padding in [((1, 1), (1, 1), 0), ((2, 1), (1, 2), 2), ((3, 2), (2, 2), 1)]:
        y = conv2d(x, w, stride=stride, dilation=dilation, padding=padding, method=name)
        expected = torch.nn.functional.conv2d(
            torch.from_numpy(x.transpose(0, 3, 1, 2).copy()),
            torch.from_numpy(w.transpose(0, 3, 1, 2).copy()),
            stride=stride, dilation=dilation, padding=padding,
        ).numpy()
        np.testing.assert_allclose(y, expected, rtol=0, atol=tolerance(np.float64, x, w))
