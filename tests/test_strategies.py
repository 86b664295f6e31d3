"""Every contraction strategy against independent oracles, and the registry.

Oracles: the einsum reference (``method="einsum"``), a naive loop written
from the definition (tests/_oracles.py), and torch.conv2d when it is
importable.  No test here is timed.
"""

import math
import tracemalloc
from dataclasses import replace

import numpy as np
import pytest
from _oracles import naive_conv2d, random_problem
from sklearn import config_context

from skconv import _buffers, _cache, _strategies, conv2d
from skconv._buffers import ordered_view
from skconv._plan import ConvSpec, plan_conv2d
from skconv._strategies import (
    METHODS,
    Strategy,
    _fill_rows,
    _splits_columns,
    filter_rank,
    register,
)

FAST = [name for name in METHODS if name != "einsum"]


def naive(x, w, stride=(1, 1), dilation=(1, 1)):
    """The definition on an already padded (n, H, W, C) x and (K, p, q, C) w."""
    return naive_conv2d(x, w, stride=stride, dilation=dilation)


def tolerance(dtype, x, w):
    """Absolute tolerance: rounding of sums of |x||w| terms in ``dtype``."""
    scale = np.abs(x).max(initial=0) * np.abs(w).reshape(len(w), -1).sum(axis=1).max(initial=0)
    return 32 * np.finfo(dtype).eps * (scale + 1)


def tap_sums(x, w, stride, dilation):
    """The definition as a sum of shifted slices (naive() is too slow for 300 images)."""
    (sh, sw), (dh, dw) = stride, dilation
    k, p, q, _ = w.shape
    oh = (x.shape[1] - dh * (p - 1) - 1) // sh + 1
    ow = (x.shape[2] - dw * (q - 1) - 1) // sw + 1
    out = np.zeros((x.shape[0], k, oh, ow))
    for u in range(p):
        for v in range(q):
            tap = x[:, u * dh :: sh, v * dw :: sw][:, :oh, :ow]  # (n, oh, ow, c)
            out += np.einsum("nijc,kc->nkij", tap, w[:, u, v])
    return out


def spec_for(x, w, stride=(1, 1), dilation=(1, 1)):
    return plan_conv2d(x.shape, x.dtype, w.shape, stride=stride, dilation=dilation).spec


def run_method(name, x, w, stride=(1, 1), dilation=(1, 1)):
    spec = spec_for(x, w, stride, dilation)
    out = np.full((x.shape[0], w.shape[0], spec.out_height, spec.out_width), np.nan, x.dtype)
    METHODS[name].run(x, w, spec, out)
    return out


# --- the registry ------------------------------------------------------------------


def test_registry_describes_every_strategy_once():
    assert list(METHODS) == [
        "einsum",
        "taps",
        "rowgemm",
        "rowgemm_wide",
        "toeplitz",
        "operator",
        "separable",
        "fft",
    ]
    spec = ConvSpec(10, 12, 12, 1, 2, 3, 3, (1, 1), (1, 1), 10, 10, np.dtype(np.float64))
    for name, strategy in METHODS.items():
        assert isinstance(strategy, Strategy) and strategy.name == name
        assert strategy.description and "\n" not in strategy.description
        counts = strategy.features(spec)
        assert counts and all(v >= 0 for v in counts.values())
        assert strategy.workspace_bytes(spec, 5) >= 0 and strategy.fixed_bytes(spec) >= 0
    with pytest.raises(ValueError, match="strategy name must be new"):
        register(METHODS["einsum"])


# --- every method against the oracles ----------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(METHODS))
@pytest.mark.parametrize("seed", range(12))
def test_method_matches_oracles(name, seed, dtype):
    rng = np.random.default_rng(seed)
    n, height, width, c, k, p, q, stride, dilation = random_problem(
        rng, channels=1 if name == "separable" else None
    )
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
    np.testing.assert_allclose(
        got, naive(x, w, stride, dilation), rtol=0, atol=tolerance(np.float64, x, w)
    )


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
    expected = naive(chans, bank[:, ::-1, ::-1, None], stride=(1, 2)).reshape(
        3, 2 * 3, *y.shape[2:]
    )
    np.testing.assert_allclose(y, expected, rtol=0, atol=tolerance(np.float32, x, bank[..., None]))
    np.testing.assert_allclose(
        y,
        conv2d(
            x, bank, padding="same", pad_mode=pad_mode, stride=(1, 2), flip=True, method="einsum"
        ),
        rtol=0,
        atol=tolerance(np.float32, x, bank[..., None]),
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
    # silent copy: matmul's out= must be a view of it) and nothing outside it.
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


@pytest.mark.parametrize("name", FAST)
@pytest.mark.parametrize("stride, dilation", [((1, 1), (1, 1)), ((2, 1), (1, 2))])
def test_writes_in_its_own_order_when_asked(name, stride, dilation):
    # The fused transform hands every strategy maps stored in its out_order:
    # the result must land in that buffer (no copy lost) and equal the oracle,
    # in the groups the strategy cuts a large batch into as well.
    rng = np.random.default_rng(8)
    x = rng.standard_normal((300, 40, 40, 1))  # rowgemm_wide: 8 groups of images
    w = rng.standard_normal((3, 3, 4, 1))
    spec = replace(spec_for(x, w, stride, dilation), maps_in_strategy_order=True)
    order = METHODS[name].out_order
    shape = (300, 3, spec.out_height, spec.out_width)
    flat = np.full(math.prod(shape) + 5, np.nan)
    out = ordered_view(flat, shape, order)
    assert np.shares_memory(out, flat)
    METHODS[name].run(x, w, spec, out)
    assert np.isnan(flat[-5:]).all()
    np.testing.assert_allclose(out, tap_sums(x, w, stride, dilation), rtol=0, atol=1e-12)


def test_wide_skips_its_copy_only_when_the_maps_stay_in_its_order():
    x = np.zeros((50, 28, 28, 1), np.float32)
    w = np.zeros((8, 5, 5, 1), np.float32)
    spec = spec_for(x, w)
    own = replace(spec, maps_in_strategy_order=True)
    wide = METHODS["rowgemm_wide"]
    assert wide.out_order == (2, 1, 0, 3)
    assert wide.workspace_bytes(own, 50) < wide.workspace_bytes(spec, 50)
    assert wide.features(own)["bytes"] < wide.features(spec)["bytes"]
    assert METHODS["rowgemm"].features(own) == METHODS["rowgemm"].features(spec)


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


# --- column stride 2: the row buffer filled through column phases ----------------------


@pytest.mark.parametrize(
    "n, height, width, q, dilation",
    [
        (3, 9, 10, 3, (1, 1)),
        (1, 1, 2, 1, (1, 1)),  # a single pair of pixels
        (4, 7, 16, 5, (2, 1)),  # row dilation: the rows in two phases
        (2, 5, 12, 4, (1, 1)),
    ],
)
def test_stride_two_fill_moves_every_pixel_bit_for_bit(n, height, width, q, dilation):
    rng = np.random.default_rng(20)
    x = rng.standard_normal((n, height, width, 1)).astype(np.float32)
    x[-1, -1, -2:, 0] = [-0.0, 1e-42]  # a negative zero and a subnormal, last in the batch
    w = np.ones((1, 1, q, 1), np.float32)
    spec = spec_for(x, w, stride=(1, 2), dilation=dilation)
    assert _splits_columns(spec)
    dh, ow = spec.dilation[0], spec.out_width
    rows = np.full((dh, -(-height // dh), q, 1, n, ow), np.nan, np.float32)
    _fill_rows(rows, x, spec, np.empty((2, n * height * width // 2), np.float32))
    for ph in range(dh):
        for t, row in enumerate(range(ph, height, dh)):
            for v in range(q):
                expected = x[:, row, v::2, 0][:, :ow]  # rows[ph, t, v, c, b, j], by definition
                np.testing.assert_array_equal(
                    rows[ph, t, v, 0].view(np.uint32), expected.view(np.uint32)
                )


def test_column_split_applies_to_float32_stride_two_single_channel_even_width():
    x = np.zeros((10, 28, 28, 1), np.float32)
    w = np.zeros((8, 5, 5, 1), np.float32)
    assert _splits_columns(spec_for(x, w, stride=(2, 2)))
    assert _splits_columns(spec_for(x, w, stride=(1, 2), dilation=(3, 1)))
    assert not _splits_columns(spec_for(x, w, stride=(2, 1)))
    assert not _splits_columns(spec_for(x, w, stride=(2, 2), dilation=(1, 2)))
    assert not _splits_columns(spec_for(x[:, :, :27], w, stride=(2, 2)))  # odd width
    assert not _splits_columns(spec_for(x.astype(np.float64), w, stride=(2, 2)))
    x3, w3 = np.zeros((10, 28, 28, 3), np.float32), np.zeros((8, 5, 5, 3), np.float32)
    assert not _splits_columns(spec_for(x3, w3, stride=(2, 2)))


@pytest.mark.parametrize("name", ["rowgemm", "rowgemm_wide"])
# padded widths 30, 32 and 32: even, so that the split runs
@pytest.mark.parametrize("padding", [((0, 0), (0, 0)), ((2, 2), (1, 1)), ((2, 1), (0, 2))])
def test_stride_two_gives_the_same_bits_with_and_without_the_column_split(
    name, padding, monkeypatch
):
    rng = np.random.default_rng(21)
    x = rng.standard_normal((300, 28, 30)).astype(np.float32)  # several groups of images
    bank = rng.standard_normal((4, 5, 4)).astype(np.float32)
    splits = []
    column_sources = _strategies._column_sources
    monkeypatch.setattr(
        _strategies, "_column_sources", lambda *args: splits.append(1) or column_sources(*args)
    )
    split = conv2d(x, bank, stride=2, padding=padding, method=name)
    assert splits  # the split ran
    monkeypatch.setattr(_strategies, "_splits_columns", lambda spec: False)
    plain = conv2d(x, bank, stride=2, padding=padding, method=name)
    np.testing.assert_array_equal(split, plain)
    expected = naive_conv2d(x[:5, ..., None], bank[..., None], padding, stride=(2, 2))
    np.testing.assert_allclose(split[:5], expected, rtol=0, atol=tolerance(np.float32, x, bank))


@pytest.mark.parametrize("name", ["rowgemm", "rowgemm_wide"])
def test_workspace_bytes_counts_the_column_split(name):
    rng = np.random.default_rng(22)
    x = rng.standard_normal((300, 28, 28, 1)).astype(np.float32)
    w = rng.standard_normal((8, 5, 5, 1)).astype(np.float32)
    spec = spec_for(x, w, stride=(2, 2))
    assert _splits_columns(spec)
    out = np.empty((300, 8, spec.out_height, spec.out_width), np.float32)
    _buffers._kept.buffers = {}  # this thread's kept workspaces: allocated (and traced) anew
    peak, _ = traced_peak(lambda: METHODS[name].run(x, w, spec, out))
    # the split's scratch (over 700 KiB here) is counted, beyond the slack
    assert peak <= METHODS[name].workspace_bytes(spec, 300) + 64 * 2**10, peak
    np.testing.assert_allclose(out, tap_sums(x, w, (2, 2), (1, 1)), rtol=0, atol=1e-3)


# --- low rank -----------------------------------------------------------------------


def test_filter_rank_detects_rank_one_and_full_rank():
    rng = np.random.default_rng(5)
    sobel = np.outer([1.0, 2.0, 1.0], [-1.0, 0.0, 1.0])
    gauss = np.outer(*(2 * [np.exp(-(np.linspace(-2, 2, 7) ** 2))]))
    assert filter_rank(sobel[None, :, :, None]) == 1
    assert filter_rank(np.stack([np.pad(sobel, 2), gauss])[..., None]) == 1
    assert filter_rank(gauss.astype(np.float32)[None, :, :, None]) == 1
    full = rng.standard_normal((3, 5, 4, 1))
    assert filter_rank(full) == 4
    two = rng.standard_normal((2, 6, 1)) * rng.standard_normal((2, 1, 6)) + rng.standard_normal(
        (2, 6, 1)
    ) * rng.standard_normal((2, 1, 6))
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
        np.testing.assert_allclose(
            got, naive(x, w, stride, dilation), rtol=0, atol=tolerance(dtype, x, w)
        )


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
    _cache.CACHE.clear()
    with config_context(working_memory=budget):
        peak, y = traced_peak(lambda: conv2d(x, bank, method=name, n_jobs=n_jobs, padding=1))
    # The output, the budget, and a little for Python objects and the filters.
    assert peak <= out_bytes + budget * 2**20 + 256 * 2**10, (peak - out_bytes) / 2**20
    np.testing.assert_allclose(
        y[:5],
        conv2d(x[:5], bank, method="einsum", padding=1),
        rtol=0,
        atol=tolerance(np.float32, x, bank),
    )


@pytest.mark.parametrize("name", FAST)
@pytest.mark.parametrize(
    "shape", [(200, 28, 28, 1, 8, 5, 5), (30, 40, 33, 3, 4, 7, 6), (800, 8, 8, 1, 4, 3, 3)]
)
def test_workspace_bytes_is_honest(name, shape):
    n, height, width, c, k, p, q = shape
    rng = np.random.default_rng(11)
    x = rng.standard_normal((n, height, width, c))
    w = rng.standard_normal((k, p, q, c))
    spec = spec_for(x, w, dilation=(2, 1))
    if not METHODS[name].supports(spec):
        pytest.skip("not supported")
    out = np.empty((n, k, spec.out_height, spec.out_width))
    _cache.CACHE.clear()
    peak, _ = traced_peak(lambda: METHODS[name].run(x, w, spec, out))
    bound = METHODS[name].workspace_bytes(spec, n) + METHODS[name].fixed_bytes(spec)
    # Building preprocessed filters needs index arrays and a transposed copy.
    slack = 2 * METHODS[name].fixed_bytes(spec) + 64 * 2**10
    assert peak <= bound + slack, (peak, bound)


# --- torch as an extra oracle -------------------------------------------------------------


@pytest.mark.parametrize("name", list(METHODS))
def test_against_torch(name):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(13)
    c = 1 if name in ("separable", "taps") else 3
    x = rng.standard_normal((4, 17, 15, c))
    w = rng.standard_normal((5, 4, 3, c))
    for stride, dilation, padding in [
        ((1, 1), (1, 1), 0),
        ((2, 1), (1, 2), 2),
        ((3, 2), (2, 2), 1),
    ]:
        y = conv2d(x, w, stride=stride, dilation=dilation, padding=padding, method=name)
        expected = torch.nn.functional.conv2d(
            torch.from_numpy(x.transpose(0, 3, 1, 2).copy()),
            torch.from_numpy(w.transpose(0, 3, 1, 2).copy()),
            stride=stride,
            dilation=dilation,
            padding=padding,
        ).numpy()
        np.testing.assert_allclose(y, expected, rtol=0, atol=tolerance(np.float64, x, w))


@pytest.mark.parametrize("name", sorted(set(METHODS) - {"fft"}))
@pytest.mark.parametrize("edge", [[[-1.0, 1.0]], [[-1.0], [1.0]]])
def test_differences_of_integer_images_are_exact_in_float32(name, edge):
    # Small integers and +-1 taps: every product and sum is exact in float32,
    # so the GEMM strategies (and separable, whose single-row filters need no
    # SVD) must give the differences exactly.  fft rounds by design.
    images = np.arange(3 * 6 * 6, dtype=np.float32).reshape(3, 6, 6)
    w = np.array(edge)
    expected = naive_conv2d(images[..., None].astype(np.float64), w[None, ..., None])[:, 0]
    if not METHODS[name].supports(plan_conv2d(images.shape, images.dtype, w.shape).spec):
        pytest.skip(f"{name} does not support the problem")
    np.testing.assert_array_equal(conv2d(images, w, method=name), expected.astype(np.float32))


def test_separable_is_exact_for_integer_rank_one_filters():
    # Sobel = [1, 2, 1]^T [-1, 0, 1]: factored through its largest entry, not by
    # the SVD's normalised vectors, the maps of integer images are exact.
    sobel = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    bank = np.stack([sobel, sobel.T, 2 * sobel])
    images = np.random.default_rng(0).integers(0, 17, (4, 9, 9)).astype(np.float64)
    expected = naive_conv2d(images[..., None], bank[..., None])
    for dtype in (np.float64, np.float32):
        got = conv2d(images.astype(dtype), bank.astype(dtype), method="separable")
        np.testing.assert_array_equal(got, expected.astype(dtype))
