"""The "fft" strategy (skconv/_fft.py) against independent oracles.

Oracles: the definition one pixel at a time (tests/_oracles.py) for small
problems, ``scipy.signal.correlate2d`` (a direct sum) for large ones.  FFT
rounding is relative to the norms of image and filter, not to each output
pixel, so errors are measured against the largest output.
"""

import math
import tracemalloc

import numpy as np
import pytest
from _oracles import naive_conv2d

from skconv import _cache, _fft, conv2d
from skconv._costmodel import choose_method
from skconv._plan import plan_conv2d
from skconv._strategies import METHODS

TOL = {np.float32: 1e-5, np.float64: 1e-12}

CASES = [  # n, H, W, C, K, p, q, stride, dilation
    (3, 17, 19, 1, 2, 5, 4, (1, 1), (1, 1)),  # rectangular image and filter
    (2, 28, 28, 1, 8, 5, 5, (2, 2), (1, 1)),
    (2, 30, 23, 3, 4, 3, 3, (2, 3), (1, 1)),  # channels, unequal strides
    (2, 31, 29, 2, 3, 3, 4, (1, 1), (2, 3)),  # dilation only
    (2, 40, 37, 1, 2, 4, 3, (3, 2), (2, 1)),  # stride and dilation
    (2, 26, 26, 1, 2, 5, 5, (2, 2), (2, 2)),  # every tap in one phase
    (1, 50, 50, 2, 2, 1, 1, (4, 4), (1, 1)),  # 1x1 filters
    (2, 9, 9, 1, 1, 9, 9, (1, 1), (1, 1)),  # filter as large as the image
    (2, 7, 11, 3, 2, 7, 11, (1, 1), (1, 1)),
    (3, 1, 12, 1, 2, 1, 4, (1, 1), (1, 1)),  # one-row images
    (1, 5, 5, 1, 1, 5, 5, (1, 1), (1, 1)),  # one output pixel
]


def problem(case, dtype, seed=0):
    n, height, width, c, k, p, q, stride, dilation = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, height, width, c)).astype(dtype)
    w = rng.standard_normal((k, p, q, c)).astype(dtype)
    spec = plan_conv2d(x.shape, x.dtype, w.shape, stride=stride, dilation=dilation).spec
    return x, w, spec


def run_fft(x, w, spec):
    out = np.full((x.shape[0], w.shape[0], spec.out_height, spec.out_width), np.nan, x.dtype)
    METHODS["fft"].run(x, w, spec, out)
    return out


def assert_close(got, expected, dtype):
    scale = np.abs(expected).max()
    assert np.abs(got - expected).max() <= TOL[dtype] * scale, np.abs(got - expected).max() / scale


def scipy_correlate(x, w):
    """Valid cross-correlation of (n, H, W, 1) images with (K, p, q, 1) filters."""
    signal = pytest.importorskip("scipy.signal")
    return np.stack(
        [
            [signal.correlate2d(img[..., 0], f[..., 0], mode="valid") for f in w.astype(np.float64)]
            for img in x.astype(np.float64)
        ]
    )


@pytest.mark.parametrize("max_tile", [256, 8])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_matches_definition(case, dtype, max_tile, monkeypatch):
    # max_tile=8 forces many small tiles (and tiles just larger than the filter)
    monkeypatch.setattr(_fft, "FFT_MAX_TILE", max_tile)
    x, w, spec = problem(case, dtype)
    got = run_fft(x, w, spec)
    assert got.dtype == dtype
    expected = naive_conv2d(x, w, stride=spec.stride, dilation=spec.dilation)
    assert_close(got, expected, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 300, 280, 3, 31, 31), (3, 96, 96, 4, 31, 17)])
def test_large_images_several_tiles(shape, dtype):
    n, height, width, k, p, q = shape
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, height, width, 1)).astype(dtype)
    w = rng.standard_normal((k, p, q, 1)).astype(dtype)
    spec = plan_conv2d(x.shape, x.dtype, w.shape).spec
    base, fh, fw = _fft._geometry(spec)
    if height > _fft.FFT_MAX_TILE:
        assert fh - p + 1 < spec.out_height  # really several tiles
    got = run_fft(x, w, spec)
    assert_close(got, scipy_correlate(x, w), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_through_conv2d_same_padding_and_flip(dtype):
    signal = pytest.importorskip("scipy.signal")
    rng = np.random.default_rng(2)
    images = (rng.standard_normal((3, 40, 35)) * 10).astype(dtype)
    bank = rng.standard_normal((2, 15, 12))
    for flip, mode, func in [
        (False, "same", signal.correlate2d),
        (True, "full", signal.convolve2d),
    ]:
        y = conv2d(images, bank, padding=mode, flip=flip, method="fft")
        assert y.dtype == (np.float32 if dtype == np.float32 else np.float64)
        expected = np.stack(
            [[func(img.astype(np.float64), f, mode=mode) for f in bank] for img in images]
        )
        assert_close(y, expected, np.float32 if dtype == np.float32 else np.float64)


def test_float32_stays_float32_and_input_untouched():
    rng = np.random.default_rng(3)
    images = rng.standard_normal((4, 33, 30, 2)).astype(np.float32)
    before = images.copy()
    bank = rng.standard_normal((3, 9, 9, 2)).astype(np.float32)
    y = conv2d(images, bank, stride=2, method="fft")
    assert y.dtype == np.float32
    np.testing.assert_array_equal(images, before)
    expected = naive_conv2d(images, bank, stride=(2, 2))
    assert_close(y, expected, np.float32)


def test_tile_sides_are_fast_lengths():
    def smooth(f):
        for prime in (2, 3, 5, 7):
            while f % prime == 0:
                f //= prime
        return f == 1

    for out, span in [(1, 1), (26, 5), (600, 31), (10, 257), (5, 311)]:
        fh, fw = _fft.fft_tile(out, out, span, span, 1, 4)
        assert smooth(fh) and smooth(fw) and fh >= span and fw >= span
        # never larger than the first fast length that holds the whole output
        assert fh - span + 1 < out + min(f for f in range(span, 2 * span + out) if smooth(f))


def test_filter_larger_than_max_tile():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 280, 275, 1))
    w = rng.standard_normal((1, 263, 260, 1))  # 263 is prime: tile is the next fast length
    spec = plan_conv2d(x.shape, x.dtype, w.shape).spec
    assert_close(run_fft(x, w, spec), scipy_correlate(x, w), np.float64)


def traced_peak(fn):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("stride", [(1, 1), (2, 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_memory_bounded_on_large_images(dtype, stride):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 600, 300, 1)).astype(dtype)
    w = rng.standard_normal((4, 21, 21, 1)).astype(dtype)
    spec = plan_conv2d(x.shape, x.dtype, w.shape, stride=stride).spec
    out = np.empty((1, 4, spec.out_height, spec.out_width), dtype)
    strategy = METHODS["fft"]
    workspace, fixed = strategy.workspace_bytes(spec, 1), strategy.fixed_bytes(spec)
    # tiles keep the temporaries near FFT_GROUP_BYTES whatever the image size,
    # plus, with a stride, one image's sub-images; the products of
    # whole-image spectra alone would take more
    whole = 2 * 4 * 2 * 600 * (300 // 2 + 1) * x.itemsize
    assert workspace < 1.1 * _fft.FFT_GROUP_BYTES + x.nbytes < whole
    _cache.CACHE.clear()
    peak = traced_peak(lambda: strategy.run(x, w, spec, out))
    # building the spectra needs a float64 copy of them
    assert peak <= workspace + 3 * fixed + 64 * 2**10, (peak, workspace, fixed)
    expected = scipy_correlate(x, w)[:, :, :: stride[0], :: stride[1]]
    assert_close(out, expected, dtype)


def test_workspace_bound_independent_of_batch():
    spec = plan_conv2d((10, 2048, 2048), np.float32, (8, 31, 31)).spec
    assert METHODS["fft"].workspace_bytes(spec, 10) < 2 * _fft.FFT_GROUP_BYTES
    assert METHODS["fft"].workspace_bytes(spec, 1) <= METHODS["fft"].workspace_bytes(spec, 10)


def test_features_are_finite_and_grow_with_the_batch():
    for case in CASES:
        _, _, spec = problem(case, np.float32)
        counts = METHODS["fft"].features(spec)
        assert counts["flops"] > 0
        assert all(math.isfinite(v) and v >= 0 for v in counts.values())
    small = plan_conv2d((10, 64, 64), np.float32, (4, 15, 15)).spec
    large = plan_conv2d((100, 64, 64), np.float32, (4, 15, 15)).spec
    assert METHODS["fft"].features(large)["flops"] == 10 * METHODS["fft"].features(small)["flops"]


@pytest.mark.parametrize(
    "shape, picked",
    [
        ((50, 96, 96, 4, 31, 31), True),  # large filters: fft
        ((1000, 28, 28, 1, 5, 5), False),
        ((1000, 28, 28, 8, 5, 5), False),
        ((200, 64, 64, 16, 7, 7), False),
        ((5000, 8, 8, 4, 3, 3), False),
    ],
)
def test_auto_picks_fft_for_large_filters_only(shape, picked):
    n, height, width, k, p, q = shape
    for dtype in (np.float32, np.float64):
        spec = plan_conv2d((n, height, width), dtype, (k, p, q)).spec
        for threads in (1, 2):
            assert (choose_method(spec, threads)[0] == "fft") == picked, (dtype, threads)
