"""conv2d against independent oracles: a naive loop, scipy.signal, torch."""

import tracemalloc

import numpy as np
import pytest
from _oracles import naive_conv2d
from scipy import signal
from sklearn import config_context

import skconv._plan as plan_module
from skconv import conv2d
from skconv._plan import plan_conv2d

METHODS = ["auto", "einsum"]


def assert_close(actual, expected, images, filters):
    """Tolerance scaled by the magnitude of the sums (float32 rounds at 1e-7)."""
    eps = np.finfo(actual.dtype).eps
    scale = np.abs(images).max(initial=1) * np.abs(filters).sum() + 1
    np.testing.assert_allclose(actual, expected, rtol=0, atol=64 * eps * scale)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", range(8))
def test_definition_pixel_by_pixel(seed, method):
    # The definition: y[i][j][k] == (x[i, j:j+p, k:k+q] * f).sum().
    rng = np.random.default_rng(seed)
    b, m, n = rng.integers(1, 6), rng.integers(1, 12), rng.integers(1, 12)
    p, q = rng.integers(1, m + 1), rng.integers(1, n + 1)
    x = rng.standard_normal((b, m, n))
    f = rng.standard_normal((p, q))
    y = conv2d(x, f, method=method)
    assert y.shape == (b, m - p + 1, n - q + 1)
    assert all(
        np.allclose(y[i][j][k], (x[i, j : j + p, k : k + q] * f).sum())
        for i in range(b)
        for j in range(m - p + 1)
        for k in range(n - q + 1)
    )


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "mode, boundary, pad_mode",
    [("valid", "fill", "constant")]
    + [
        (mode, boundary, pad_mode)
        for mode in ("same", "full")
        for boundary, pad_mode in [("fill", "constant"), ("symm", "symmetric"), ("wrap", "wrap")]
    ],
)
@pytest.mark.parametrize("filter_shape", [(3, 3), (2, 4), (4, 1), (1, 1), (5, 2)])
def test_scipy_correlate_and_convolve(mode, boundary, pad_mode, filter_shape, method):
    rng = np.random.default_rng(sum(filter_shape))
    x = rng.standard_normal((3, 9, 7))
    f = rng.standard_normal(filter_shape)
    for flip, oracle in [(False, signal.correlate2d), (True, signal.convolve2d)]:
        y = conv2d(x, f, padding=mode, pad_mode=pad_mode, flip=flip, method=method)
        expected = np.stack([oracle(img, f, mode=mode, boundary=boundary) for img in x])
        assert y.shape == expected.shape
        assert_close(y, expected, x, f)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", range(12))
def test_random_problems_against_naive_loop(seed, method):
    rng = np.random.default_rng(100 + seed)
    b = int(rng.integers(1, 4))
    h, w = (int(v) for v in rng.integers(1, 10, size=2))
    channels = [None, 1, 3][seed % 3]
    K = int(rng.integers(1, 4))
    stride = tuple(int(v) for v in rng.integers(1, 4, size=2))
    dilation = tuple(int(v) for v in rng.integers(1, 3, size=2))
    pad = tuple(tuple(int(v) for v in rng.integers(0, 3, size=2)) for _ in range(2))
    pad_mode = ["constant", "reflect", "symmetric", "edge", "wrap"][seed % 5]
    dtype = [np.float64, np.float32][seed % 2]
    p = int(rng.integers(1, (h + sum(pad[0]) - 1) // dilation[0] + 2))
    q = int(rng.integers(1, (w + sum(pad[1]) - 1) // dilation[1] + 2))
    shape = (b, h, w) if channels is None else (b, h, w, channels)
    x = rng.standard_normal(shape).astype(dtype)
    c = 1 if channels is None else channels
    wts = rng.standard_normal((K, p, q, c)) if channels else rng.standard_normal((K, p, q))
    y = conv2d(
        x, wts, padding=pad, pad_mode=pad_mode, stride=stride, dilation=dilation, method=method
    )
    x4 = x if channels else x[..., None]
    w4 = wts if channels else wts[..., None]
    expected = naive_conv2d(x4, w4, pad, pad_mode, stride, dilation)
    assert y.dtype == dtype
    assert_close(y, expected, x, wts)


@pytest.mark.parametrize("method", METHODS)
def test_depthwise_bank_on_channels_is_channel_major(method):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 6, 5, 3))
    bank = rng.standard_normal((4, 2, 3))
    y = conv2d(x, bank, method=method)
    assert y.shape == (2, 3 * 4, 5, 3)
    for ch in range(3):
        expected = naive_conv2d(x[..., ch : ch + 1], bank[..., None])
        assert_close(y[:, ch * 4 : (ch + 1) * 4], expected, x, bank)
    single = conv2d(x, bank[1], method=method)
    assert single.shape == (2, 3, 5, 3)
    assert_close(single, y[:, 1::4], x, bank)


@pytest.fixture
def torch_module():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", range(6))
def test_against_torch(torch_module, seed, method):
    torch = torch_module
    F = torch.nn.functional
    rng = np.random.default_rng(seed)
    c, K = int(rng.integers(1, 4)), int(rng.integers(1, 5))
    x = rng.standard_normal((3, 11, 13, c)).astype(np.float32)
    wts = rng.standard_normal((K, 3, 2, c)).astype(np.float32)
    stride = (int(rng.integers(1, 3)), int(rng.integers(1, 4)))
    dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    padding = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
    y = conv2d(x, wts, padding=padding, stride=stride, dilation=dilation, method=method)
    t = F.conv2d(
        torch.from_numpy(x).permute(0, 3, 1, 2),
        torch.from_numpy(wts).permute(0, 3, 1, 2),
        stride=stride,
        dilation=dilation,
        padding=padding,
    ).numpy()
    assert y.dtype == np.float32
    assert_close(y, t, x, wts)
    # "same" at stride 1, even filter: torch puts the odd pixel bottom/right too.
    y = conv2d(x, wts, padding="same", dilation=dilation, method=method)
    t = F.conv2d(
        torch.from_numpy(x).permute(0, 3, 1, 2),
        torch.from_numpy(wts).permute(0, 3, 1, 2),
        dilation=dilation,
        padding="same",
    ).numpy()
    assert_close(y, t, x, wts)
    # torch's padding modes under their own names, and groups=c for depthwise.
    for pad_mode, torch_mode in [
        ("reflect", "reflect"),
        ("edge", "replicate"),
        ("wrap", "circular"),
    ]:
        y = conv2d(x, wts[:, :, :, 0], padding=1, pad_mode=pad_mode, method=method)
        xt = F.pad(torch.from_numpy(x).permute(0, 3, 1, 2), (1, 1, 1, 1), mode=torch_mode)
        t = F.conv2d(
            xt, torch.from_numpy(wts[:, None, :, :, 0]).repeat(c, 1, 1, 1), groups=c
        ).numpy()
        assert_close(y, t, x, wts)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "image_shape, filter_shape",
    [((5, 5), (1, 1)), ((5, 7), (5, 7)), ((1, 1), (1, 1)), ((1, 9), (1, 4)), ((6, 1), (6, 1))],
)
def test_edge_shapes(image_shape, filter_shape, method):
    rng = np.random.default_rng(3)
    for b in (1, 4):
        x = rng.standard_normal((b, *image_shape))
        f = rng.standard_normal(filter_shape)
        expected = np.stack([signal.correlate2d(img, f, mode="valid") for img in x])
        assert_close(conv2d(x, f, method=method), expected, x, f)


def test_empty_batch_gives_empty_result():
    y = conv2d(np.zeros((0, 6, 6), np.float32), np.ones((2, 3, 3)), padding="same")
    assert y.shape == (0, 2, 6, 6) and y.dtype == np.float32


def test_layouts_and_read_only_memmap(tmp_path):
    rng = np.random.default_rng(11)
    base = rng.standard_normal((6, 10, 12))
    f = rng.standard_normal((2, 3, 3))
    expected = naive_conv2d(base[..., None], f[..., None])
    fortran = np.asfortranarray(base)
    strided = np.ascontiguousarray(np.repeat(base, 2, axis=2))[:, :, ::2]
    reversed_ = np.ascontiguousarray(base[::-1])[::-1]
    read_only = base.copy()
    read_only.flags.writeable = False
    mm = np.lib.format.open_memmap(
        tmp_path / "x.npy", mode="w+", dtype=base.dtype, shape=base.shape
    )
    mm[:] = base
    mm.flush()
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    for x in (fortran, strided, reversed_, read_only, mm):
        np.testing.assert_array_equal(x, base)
        assert_close(conv2d(x, f, padding="valid"), expected, base, f)


def test_dtypes():
    rng = np.random.default_rng(5)
    ints = rng.integers(-5, 5, size=(2, 6, 6))
    f32 = np.ones((3, 3), np.float32)
    expected = naive_conv2d(ints[..., None], f32[None, ..., None])[:, 0]
    for x, f, dtype in [
        (ints.astype(np.float32), np.ones((3, 3)), np.float32),  # float64 filters cast down
        (ints.astype(np.float64), f32, np.float64),
        (ints, f32, np.float64),
        (ints.astype(np.int8), f32, np.float64),
        (ints > 0, f32, np.float64),
        (ints.astype(np.float16), f32, np.float64),
    ]:
        y = conv2d(x, f)
        assert y.dtype == dtype, (x.dtype, f.dtype)
        assert_close(
            y,
            naive_conv2d(np.asarray(x, float)[..., None], np.asarray(f, float)[None, ..., None])[
                :, 0
            ],
            x.astype(float),
            f,
        )
    assert_close(conv2d(ints, f32), expected, ints, f32)
    bools = rng.random((2, 5, 5)) > 0.5
    assert_close(
        conv2d(bools, np.ones((2, 2), int)),
        naive_conv2d(bools[..., None].astype(float), np.ones((1, 2, 2, 1)))[:, 0],
        bools,
        np.ones((2, 2)),
    )


def test_out_argument():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 8, 8)).astype(np.float32)
    f = rng.standard_normal((3, 3, 3)).astype(np.float32)
    expected = conv2d(x, f, method="einsum")
    out = np.full((5, 3, 6, 6), np.nan, np.float32)
    assert conv2d(x, f, out=out) is out
    assert_close(out, expected, x, f)
    # a non-contiguous out (every other image of a bigger array) is written in place
    big = np.full((10, 3, 6, 6), np.nan, np.float32)
    view = big[::2]
    assert conv2d(x, f, out=view) is view
    assert_close(big[::2], expected, x, f)
    assert np.isnan(big[1::2]).all()
    with pytest.raises(ValueError, match=r"out must have shape \(5, 3, 6, 6\) and dtype float32"):
        conv2d(x, f, out=np.empty((5, 3, 6, 6)))
    with pytest.raises(ValueError, match="out must not overlap images"):
        conv2d(x, f[0], out=x[:, :6, :6])


def test_n_jobs_matches_single_thread():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((37, 12, 12)).astype(np.float32)
    f = rng.standard_normal((4, 3, 3)).astype(np.float32)
    expected = naive_conv2d(x[..., None], f[..., None])
    with config_context(working_memory=0.01):  # several chunks per thread
        for n_jobs in (1, 2, -1):
            assert_close(conv2d(x, f, n_jobs=n_jobs), expected, x, f)


def test_memory_stays_within_working_memory():
    # Padded, cast and depthwise batches are copied chunk by chunk only.
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(4000, 28, 28, 2), dtype=np.uint8)  # cast to float64
    f = rng.standard_normal((3, 5, 5))
    plan = plan_conv2d(x.shape, x.dtype, f.shape, padding="same", pad_mode="reflect")
    out_bytes = np.prod(plan.out_shape) * 8
    window_bytes = 4000 * 2 * 28 * 28 * 25 * 8  # what a whole im2col would take
    working_memory_mib = 4
    tracemalloc.start()
    try:
        with config_context(working_memory=working_memory_mib):
            y = conv2d(x, f, padding="same", pad_mode="reflect")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert y.shape == plan.out_shape
    extra = peak - out_bytes
    assert extra <= working_memory_mib * 2**20 * 1.25, (extra / 2**20, window_bytes / 2**20)
    first = naive_conv2d(
        np.pad(x[:2, ..., :1].astype(float), ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect"),
        f[..., None],
    )
    assert_close(y[:2, :3], first, x[:2], f)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(images=np.zeros((4, 4))), ValueError, r"images must be 3-D .* got shape \(4, 4\)"),
        (dict(images=np.zeros((1, 2, 3, 4, 5))), ValueError, "images must be 3-D"),
        (dict(filters=np.zeros(3)), ValueError, r"filters must be 2-D .* got shape \(3,\)"),
        (dict(filters=np.zeros((0, 3, 3))), ValueError, "filters must not be empty"),
        (
            dict(filters=np.ones((7, 7))),
            ValueError,
            r"filters of size 7x7 .* do not fit in the padded images of 6x6",
        ),
        (dict(filters=np.ones((3, 3)), dilation=3), ValueError, "dilation 3x3: 7x7 pixels"),
        (dict(filters=np.ones((1, 3, 3, 2))), ValueError, "4-D filters .* images are 3-D"),
        (
            dict(images=np.zeros((2, 6, 6, 3)), filters=np.ones((1, 3, 3, 2))),
            ValueError,
            "filters have 2 channels .* images have 3",
        ),
        (dict(stride=0), ValueError, r"stride must be in \[1, \d+\] along both axes; got \(0, 0\)"),
        (dict(stride=(1, -2)), ValueError, r"stride must be in \[1, "),
        (dict(dilation=0), ValueError, r"dilation must be in \[1, "),
        (dict(stride=1.5), TypeError, "stride must be an int or a pair"),
        (dict(stride=True), TypeError, "stride must be an int or a pair"),
        (dict(padding="middle"), ValueError, "padding must be one of"),
        (dict(padding=-1), ValueError, r"padding must be in \[0, "),
        (dict(padding=((1, 2), (3, -1))), ValueError, r"padding .*left, right.* in \[0, "),
        (dict(padding=1.0), TypeError, "padding must be one of"),
        (dict(pad_mode="zeros"), ValueError, r"pad_mode must be one of \('constant'"),
        (dict(method="fft9"), ValueError, r"method must be one of \('auto', 'einsum'"),
        (dict(flip="yes"), TypeError, "flip must be a bool"),
        (dict(n_jobs=0), ValueError, "n_jobs must be None or a nonzero int"),
        (dict(n_jobs=1.5), TypeError, "n_jobs must be None or an int"),
        (
            dict(images=np.zeros((2, 6, 6), complex)),
            TypeError,
            "images must hold real numbers; got complex",
        ),
        (dict(images=np.array([[["a"]]])), TypeError, "images must hold real numbers"),
        (dict(filters=np.array([["a"]])), TypeError, "filters must hold real numbers"),
        (dict(filters=np.array([[np.nan]])), ValueError, "filters must be finite"),
        (
            dict(images=np.zeros((2, 6, 6), np.float32), filters=np.full((2, 2), 1e39)),
            ValueError,
            "filters must be finite in float32",
        ),
        (
            dict(images=np.full((2, 6, 6), np.inf)),
            ValueError,
            "images must be finite; got NaN or infinity",
        ),
        (dict(images=[[[1, 2]], [[1]]]), TypeError, "images must be an array of real numbers"),
    ],
)
def test_bad_input_raises_clear_errors(kwargs, error, match):
    args = dict(images=np.zeros((2, 6, 6)), filters=np.ones((3, 3)))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        conv2d(args.pop("images"), args.pop("filters"), **args)


def test_nan_found_even_when_sum_overflows():
    x = np.full((3, 5, 5), 3e38, np.float32)
    f = np.ones((1, 1), np.float32)
    conv2d(x, f)  # the sum overflows but every pixel is finite
    x[2, 4, 4] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        conv2d(x, f)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("order", ["C", "F"])
def test_one_non_finite_pixel_is_found_in_any_layout(dtype, bad, order):
    # C-contiguous batches are summed by a matrix-vector product, others by
    # np.sum: both must see a single bad pixel anywhere.
    rng = np.random.default_rng(3)
    for _ in range(5):
        x = np.asarray(rng.standard_normal((40, 9, 7)), dtype=dtype, order=order)
        x[tuple(rng.integers(0, n) for n in x.shape)] = bad
        with pytest.raises(ValueError, match="NaN or infinity"):
            conv2d(x, np.ones((2, 2)))


def test_sparse_input_is_refused():
    sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(TypeError, match="sparse"):
        conv2d(sparse.csr_matrix(np.eye(3)), np.ones((1, 1)))


def test_input_never_modified():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 7, 7))
    f = rng.standard_normal((2, 3, 3))
    x_before, f_before = x.copy(), f.copy()
    conv2d(x, f, padding="same", pad_mode="reflect", flip=True)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(f, f_before)


# --- float32 images far from zero are centred ------------------------------------


def _relative_error(actual, truth, images, filters):
    """|error| in units of float32 rounding of the output and of the centred sums."""
    spread = np.ptp(images.astype(np.float64))
    scale = spread * np.abs(filters).sum() + np.abs(truth)
    return float((np.abs(actual - truth) / (np.finfo(np.float32).eps * scale)).max())


@pytest.mark.parametrize("pad_mode", ["constant", "reflect", "wrap"])
@pytest.mark.parametrize(
    "padding, stride, dilation",
    [("valid", 1, 1), ("same", 1, 1), ("full", (2, 3), 1), (((3, 0), (1, 4)), 1, (2, 1))],
)
@pytest.mark.parametrize("layout", ["single", "depthwise", "channels"])
@pytest.mark.parametrize("method", ["auto", "einsum", "rowgemm", "toeplitz"])
def test_float32_offset_images_exact_to_rounding(
    method, layout, padding, stride, dilation, pad_mode
):
    # Images 1e4 (and -5e3 on a second channel) away from zero under zero-sum
    # filters: uncentred float32 sums would be all cancellation error.  The
    # result must be as accurate as the rounding of the output and of sums of
    # the images' spread (the truth is the float64 naive loop of the float32
    # inputs), borders of zero padding included.
    rng = np.random.default_rng(3)
    if layout == "single":
        x, f = rng.random((3, 9, 8, 1)) * 3 + 1e4, rng.standard_normal((2, 3, 4, 1))
    else:
        x = rng.random((3, 9, 8, 2)) * 3 + np.array([1e4, -5e3])
        f = rng.standard_normal((2, 3, 4, 1 if layout == "depthwise" else 2))
    f -= f.mean(axis=(1, 2), keepdims=True)
    x, f = x.astype(np.float32), f.astype(np.float32)
    images = x[..., 0] if layout == "single" else x
    filters = f[..., 0] if layout != "channels" else f
    kwargs = dict(padding=padding, pad_mode=pad_mode, stride=stride, dilation=dilation)
    plan = plan_conv2d(images.shape, images.dtype, filters.shape, **kwargs)
    y = conv2d(images, filters, method=method, **kwargs)
    assert y.dtype == np.float32 and y.shape == plan.out_shape
    (sh, sw), (dh, dw) = plan.spec.stride, plan.spec.dilation
    if layout == "depthwise":  # channel-major maps: each channel is an image
        xs = x.transpose(0, 3, 1, 2).reshape(-1, 9, 8, 1)
        truth = naive_conv2d(xs, f, plan.pad, pad_mode, (sh, sw), (dh, dw))
        truth = truth.reshape(y.shape)
    else:
        truth = naive_conv2d(x, f, plan.pad, pad_mode, (sh, sw), (dh, dw)).reshape(y.shape)
    assert _relative_error(y, truth, x, f) <= 2.0


@pytest.mark.parametrize("method", ["auto", "rowgemm", "toeplitz", "fft"])
@pytest.mark.parametrize("dtype", [">f4", ">f8", ">i2"])
def test_big_endian_input_is_read_in_its_own_byte_order(dtype, method):
    # Data read from files written on another machine arrive big-endian.  A
    # NumPy reduction refused such a dtype, and ">f4" was not recognised as
    # float32 (np.dtype(">f4") != np.float32 on a little-endian machine).
    rng = np.random.default_rng(3)
    images = (rng.random((5, 9, 10)) * 100).astype(dtype)
    bank = rng.standard_normal((3, 3, 4)).astype(">f8")
    before = images.copy()
    result = conv2d(images, bank, stride=(1, 2), method=method)
    assert result.dtype == (np.float32 if dtype == ">f4" else np.float64)
    assert result.dtype.isnative
    expected = naive_conv2d(images.astype(np.float64)[..., None], bank.astype(float)[..., None])
    rtol = 1e-5 if dtype == ">f4" else 1e-12
    np.testing.assert_allclose(result, expected[:, :, :, ::2], rtol=rtol, atol=rtol * 1e3)
    np.testing.assert_array_equal(images, before)
    assert images.dtype == np.dtype(dtype)


def test_float32_centring_per_image_and_not_for_float64():
    # Images at different offsets in one batch are each centred on their own:
    # the result of an image does not depend on its neighbours.
    rng = np.random.default_rng(4)
    f = rng.standard_normal((3, 5)).astype(np.float32)
    f -= f.mean()
    x = (rng.random((4, 12, 12)) + np.array([0.0, 1e5, -3e4, 7.0])[:, None, None]).astype(
        np.float32
    )
    together = conv2d(x, f, method="einsum")  # einsum: the same sums whatever the batch
    for i in range(4):
        np.testing.assert_array_equal(together[i], conv2d(x[i : i + 1], f, method="einsum")[0])
    truth = naive_conv2d(x[..., None], f[None, ..., None])[:, 0]
    assert _relative_error(together, truth, x, f) <= 2.0
    # float64 computations are never centred (bit-identical to before).
    from skconv._padding import centring_offsets

    plan = plan_conv2d(x.shape, np.float64, f.shape)
    assert centring_offsets(x.astype(np.float64), plan) is None


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("method", ["operator", "rowgemm", "toeplitz"])
def test_float32_few_centred_images_among_many(method, padding):
    # Two images of thirty far from zero: only their maps get the shift added
    # back (a gathered subset), and every image is exact to its own rounding.
    rng = np.random.default_rng(5)
    f = rng.standard_normal((3, 3, 4)).astype(np.float32)
    f -= f.mean(axis=(1, 2), keepdims=True)
    x = rng.random((30, 10, 9)).astype(np.float32)
    x[[4, 17]] += np.float32(2e4)
    y = conv2d(x, f, method=method, padding=padding)
    plan = plan_conv2d(x.shape, x.dtype, f.shape, padding=padding)
    truth = naive_conv2d(x[..., None], f[..., None], plan.pad).reshape(y.shape)
    for i in range(30):
        assert _relative_error(y[i], truth[i], x[i], f) <= 2.0, i


def test_out_overlapping_filters_is_refused():
    images = np.random.default_rng(1).random((2, 7, 7))
    out = np.zeros((2, 2, 4, 4))
    with pytest.raises(ValueError, match="out must not overlap filters"):
        conv2d(images, out[0], out=out)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(stride=10**30), ValueError, "stride must be in"),
        (dict(dilation=(1, 10**19)), ValueError, "dilation must be in"),
        (dict(padding=10**19), ValueError, "padding must be in"),
        (dict(padding=10**17), ValueError, "padding must leave each padded image"),
        # 2000016x2000016 pixels, 30 TiB: more than any machine these tests run on
        (dict(padding=10**6), ValueError, "padding must leave each padded image"),
        (dict(padding="same", dilation=10**6), ValueError, r"dilation=\(1000000"),
        (dict(padding="same", dilation=10**9), ValueError, r"dilation=\(1000000000"),
        (dict(method=["auto"]), TypeError, "method must be 'auto' or one of"),
    ],
)
def test_huge_geometry_and_method_type_name_the_parameter(kwargs, error, match):
    with pytest.raises(error, match=match):
        conv2d(np.ones((2, 8, 8)), np.ones((3, 3)), **kwargs)


def test_a_result_larger_than_memory_is_refused_before_anything_is_written(monkeypatch):
    # NumPy reserves such an array without complaint and the system kills
    # the process when the pages are written; here "memory" is 1 MiB.
    monkeypatch.setattr(plan_module, "_memory_bytes", lambda: 2**20)
    images = np.random.default_rng(5).random((40, 64, 64))
    bank = np.ones((1, 3, 3))
    with pytest.raises(MemoryError, match=r"result of shape \(40, 1, 62, 62\) in float64 needs"):
        conv2d(images, bank)
    # with out= the caller holds the result (e.g. a memory-mapped file)
    out = np.empty((40, 1, 62, 62))
    conv2d(images, bank, out=out)
    np.testing.assert_allclose(out[:2], naive_conv2d(images[:2, ..., None], bank[..., None]))


def test_an_unknown_memory_size_refuses_nothing(monkeypatch):
    # sysconf answers -1 where the system does not know: that must not make
    # every padded image "larger than memory".
    monkeypatch.setattr(plan_module.os, "sysconf", lambda name: -1)
    plan_module._memory_bytes.cache_clear()
    try:
        assert plan_module._memory_bytes() == np.iinfo(np.intp).max
        images, bank = np.random.default_rng(6).random((2, 6, 6)), np.ones((1, 3, 3))
        expected = naive_conv2d(images[..., None], bank[..., None])
        np.testing.assert_allclose(conv2d(images, bank, padding=1)[:, :, 1:-1, 1:-1], expected)
    finally:
        plan_module._memory_bytes.cache_clear()
