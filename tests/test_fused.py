"""The fused transform (conv -> activation -> pooling per block) against the unfused pipeline.

The oracle is conv2d on the whole batch, then rectify, then pool2d (each tested
against naive loops in its own file): with the same strategy, whose products do not
depend on how the images are grouped, float64 features must be bit-identical.
"""

import tracemalloc

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn import config_context

import skconv._fused as fused_module
import skconv._layout as layout_module
from skconv import BatchConv2DTransformer, conv2d, pool2d
from skconv._activation import rectify
from skconv._fused import plan_fused, run_fused
from tests._oracles import naive_conv2d

RNG = np.random.default_rng(7)
POOL = {"size": 2, "stride": None, "op": "max", "grid": None}


def pipeline(
    X, shape, banks, *, conv, activation, pooling, pool_size=2, pool_stride=None, pool_grid=None
):
    """conv2d -> rectify -> pool2d on the whole batch, groups concatenated."""
    images = X.reshape((len(X),) + shape)
    features = []
    for bank in banks:
        maps = conv2d(images, bank, **conv)
        maps = rectify(maps, activation)
        if pooling is not None:
            maps = pool2d(maps, pool_size, stride=pool_stride, op=pooling, grid=pool_grid)
        features.append(maps.reshape(len(X), -1))
    return np.concatenate(features, axis=1)


def naive_same_maps(images, bank):
    """Naive "same" maps of (n, h, w, c) images: a (K, p, q, c) bank sums over
    channels; a (K, p, q) bank runs on each channel, channel-major maps."""
    pad = ((1, 1), (1, 1))  # "same" for the 3x3 banks of these tests
    if bank.ndim == 3:
        channels = range(images.shape[-1])
        return np.concatenate(
            [naive_conv2d(images[..., c : c + 1], bank[..., None], pad) for c in channels], axis=1
        )
    return naive_conv2d(images, bank, pad)


CASES = [
    # (activation, pooling, pool_size, pool_stride, pool_grid, conv)
    ("abs", "max", 2, None, None, {"padding": "same"}),
    ("relu", "mean", 3, 2, None, {"padding": "valid", "stride": 1}),  # stride < size: overlapping
    ("square", "sum", (2, 3), (1, 3), None, {"padding": 1, "pad_mode": "reflect"}),
    (None, "max", 2, 3, None, {"padding": "full", "dilation": 2}),  # gaps between windows
    ("split", "max", 2, None, None, {"padding": "same", "flip": True}),
    ("split", "mean", 2, None, None, {"padding": "same", "pad_mode": "wrap", "stride": 2}),
    ("split", None, 2, None, None, {"padding": "valid"}),  # split without pooling
    ("relu", "max", 2, None, 3, {"padding": "same"}),  # grid
    ("abs", "mean", 2, None, (2, 1), {"padding": "valid", "pad_mode": "edge"}),
    ("relu", "sum", "global", None, None, {"padding": "same"}),
]


# rowgemm_wide leaves its maps in its own (row, filter, image, column) order
@pytest.mark.parametrize("method", ["rowgemm", "rowgemm_wide", "einsum"])
@pytest.mark.parametrize("activation, pooling, size, stride, grid, conv", CASES)
def test_float64_bit_identical_to_the_pipeline(
    activation, pooling, size, stride, grid, conv, method
):
    X = RNG.standard_normal((37, 121))
    banks = [RNG.standard_normal((3, 3, 3)), RNG.standard_normal((2, 4, 2))]  # two size groups
    params = dict(
        activation=activation, pooling=pooling, pool_size=size, pool_stride=stride, pool_grid=grid
    )
    est = BatchConv2DTransformer(filters=banks, method=method, **params, **conv)
    # A tiny working_memory: several chunks of rows, several blocks per chunk.
    with config_context(working_memory=0.05):
        got = est.fit_transform(X)
    expected = pipeline(X, (11, 11), banks, conv=dict(conv, method=method), **params)
    assert got.dtype == np.float64
    if method == "rowgemm_wide":
        # its products are as wide as its group of images, which differs
        # between a block and the whole batch: BLAS rounds them differently
        assert_allclose(got, expected, rtol=1e-13, atol=1e-13 * np.abs(expected).max())
    else:
        assert_array_equal(got, expected)


@pytest.mark.parametrize("activation, pooling, size, stride, grid, conv", CASES[:6])
def test_float32_auto_close_to_the_pipeline(activation, pooling, size, stride, grid, conv):
    X = RNG.standard_normal((150, 100)).astype(np.float32)
    bank = RNG.standard_normal((4, 5, 5))
    params = dict(
        activation=activation, pooling=pooling, pool_size=size, pool_stride=stride, pool_grid=grid
    )
    got = BatchConv2DTransformer(filters=bank, n_jobs=2, **params, **conv).fit_transform(X)
    # auto may pick another strategy for a block than for the whole batch:
    # float32 rounding of the products then differs.
    expected = pipeline(X.astype(np.float64), (10, 10), [bank], conv=conv, **params)
    assert got.dtype == np.float32
    assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("bank_shape", [(3, 3, 3), (2, 3, 3, 2)])  # depthwise, multichannel
@pytest.mark.parametrize("activation", ["split", "relu"])
def test_channels_against_naive_oracle(bank_shape, activation):
    X = RNG.standard_normal((9, 8 * 7 * 2))
    bank = RNG.standard_normal(bank_shape)
    est = BatchConv2DTransformer(
        filters=bank, image_shape=(8, 7, 2), activation=activation, pooling="max", padding="same"
    )
    got = est.fit_transform(X)
    images = X.reshape(9, 8, 7, 2)
    maps = naive_same_maps(images, bank)
    if activation == "split":
        rect = np.stack([np.maximum(maps, 0), np.maximum(-maps, 0)], axis=2)
        rect = rect.reshape(9, -1, 8, 7)
    else:
        rect = np.maximum(maps, 0)
    expected = rect[..., :8, :6].reshape(9, rect.shape[1], 4, 2, 3, 2).max(axis=(3, 5))
    assert_allclose(got, expected.reshape(9, -1), rtol=1e-12, atol=1e-12)


def test_threads_and_block_sizes_give_identical_features():
    images = RNG.standard_normal((203, 16, 16))
    bank = RNG.standard_normal((4, 3, 3))
    outs = []
    for n_jobs, block_bytes in [(1, 2**20), (2, 2**20), (2, 3000), (1, 1)]:
        plan = plan_fused(
            (16, 16),
            np.float64,
            bank,
            conv={"padding": "same", "method": "rowgemm"},
            activation="abs",
            pool=POOL,
            n_jobs=n_jobs,
            block_bytes=block_bytes,
        )
        out = np.full((203, 4, 8, 8), np.nan)
        outs.append(run_fused(plan, images, out))
    for out in outs[1:]:
        assert_array_equal(out, outs[0])
    expected = pool2d(np.abs(conv2d(images, bank, padding="same", method="rowgemm")), 2)
    assert_array_equal(outs[0], expected)


def test_int_images_are_cast_per_block():
    images = RNG.integers(-50, 50, (30, 9, 9)).astype(np.int16)
    bank = RNG.standard_normal((2, 3, 3))
    plan = plan_fused(
        (9, 9), images.dtype, bank, conv={"method": "rowgemm"}, activation="relu", pool=POOL
    )
    out = run_fused(plan, images, np.empty((30, 2, 3, 3)))
    expected = pool2d(
        conv2d(images.astype(np.float64), bank, method=plan.method), 2, activation="relu"
    )
    assert_array_equal(out, expected)


def test_block_fits_working_memory_and_covers_the_batch():
    bank = np.ones((8, 5, 5))
    for budget in (2**20, 2**18, 2**22):
        plan = plan_fused(
            (28, 28),
            np.float32,
            bank,
            conv={"padding": "same"},
            activation="abs",
            pool=POOL,
            n_jobs=2,
            budget=budget,
        )
        assert 1 <= plan.block and 2 * plan.thread_bytes <= budget
    with pytest.warns(UserWarning, match="too small for one image"):
        plan = plan_fused(
            (28, 28),
            np.float32,
            bank,
            conv={"padding": "same"},
            activation="abs",
            pool=POOL,
            n_jobs=2,
            budget=1000,
        )
    assert plan.block == 1
    assert (
        plan_fused(
            (28, 28), np.float32, bank, conv={}, activation=None, pool=POOL, max_images=5
        ).block
        == 5
    )


def test_planned_once_per_transform(monkeypatch):
    """Planning (validation, decision) happens per group and transform, not per block or chunk."""
    calls = []
    original = fused_module.decide
    monkeypatch.setattr(fused_module, "decide", lambda *a: calls.append(a) or original(*a))
    X = RNG.standard_normal((500, 100)).astype(np.float32)
    est = BatchConv2DTransformer(
        filters=[np.ones((3, 3, 3)), np.ones((2, 5, 5))], activation="relu", pooling="max"
    )
    with config_context(working_memory=0.2):  # many chunks and blocks
        est.fit_transform(X)
    assert len(calls) == 2


def test_no_conv2d_call_per_block(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the fused path must not call conv2d")

    monkeypatch.setattr(layout_module, "conv2d", refuse)
    X = RNG.standard_normal((50, 64))
    BatchConv2DTransformer(activation="split", pooling="mean").fit_transform(X)


def test_memory_of_the_fused_transform_stays_within_working_memory():
    """T1 at a smaller scale: 4000 28x28 float32 images, 8 filters 5x5, abs, 2x2 max pool."""
    X = RNG.standard_normal((4000, 784)).astype(np.float32)
    est = BatchConv2DTransformer(
        filters=RNG.standard_normal((8, 5, 5)), activation="abs", pooling="max", n_jobs=2
    ).fit(X[:1])
    est.transform(X[:100])  # warm caches (filter rank, cost model)
    working_memory = 4  # MiB; the un-pooled maps would be 100 MiB
    with config_context(working_memory=working_memory):
        tracemalloc.start()
        try:
            out = est.transform(X)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    extra = peak - out.nbytes
    assert extra <= working_memory * 2**20, extra / 2**20


def test_verbose_progress_of_the_fused_path(capsys):
    X = RNG.standard_normal((300, 64))
    with config_context(working_memory=0.5):  # several chunks of rows
        BatchConv2DTransformer(activation="relu", pooling="max", verbose=1).fit_transform(X)
    err = capsys.readouterr().err
    assert err.count("[BatchConv2DTransformer] rows") > 1 and "of 300 (100%)" in err


def test_dask_blocks_match_numpy():
    da = pytest.importorskip("dask.array")
    X = RNG.standard_normal((90, 64))
    est = BatchConv2DTransformer(activation="split", pooling="max", pool_grid=2)
    expected = est.fit_transform(X)
    got = est.transform(da.from_array(X, chunks=(25, 64))).compute(scheduler="synchronous")
    # The same strategy runs on every block, whatever the batch (products of a
    # few images may still round differently from those of many).
    assert_allclose(got, expected, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_images_raise_as_in_conv2d(bad):
    images = RNG.standard_normal((50, 8, 8)).astype(np.float32)
    images[37, 3, 4] = bad
    plan = plan_fused(
        (8, 8),
        np.float32,
        np.ones((2, 3, 3)),
        conv={},
        activation="relu",
        pool=POOL,
        n_jobs=2,
        block_bytes=1000,
    )
    with pytest.raises(ValueError, match="images must be finite"):
        run_fused(plan, images, np.empty((50, 2, 3, 3), np.float32))


def test_huge_finite_images_are_not_refused():
    # Their sum overflows: the exact check then runs and passes.
    images = np.full((4, 8, 8), 3e38, np.float32)
    plan = plan_fused((8, 8), np.float32, np.ones((1, 1, 1)), conv={}, activation=None, pool=POOL)
    out = run_fused(plan, images, np.empty((4, 1, 4, 4), np.float32))
    assert_array_equal(out, np.float32(3e38))


def test_bad_arguments_are_refused():
    bank = np.ones((2, 3, 3))
    with pytest.raises(ValueError, match="activation must be one of"):
        plan_fused((8, 8), np.float64, bank, conv={}, activation="tanh", pool=None)
    with pytest.raises(ValueError, match="filters must be finite"):
        plan_fused(
            (8, 8), np.float64, np.full((2, 3, 3), np.nan), conv={}, activation=None, pool=POOL
        )
    with pytest.raises(ValueError, match="pooling window"):
        plan_fused((8, 8), np.float64, bank, conv={}, activation=None, pool=dict(POOL, size=7))


def test_float32_offset_images_are_centred_like_conv2d():
    # Images far from zero lose their float32 precision to the offset unless the
    # engine centres them (conv2d does, chunk by chunk); the fused path must too.
    rng = np.random.default_rng(0)
    X = rng.random((300, 28 * 28)) + 1e5
    f = np.outer([1.0, -2.0, 1.0, 0.0, 0.0], [1.0, 2.0, 1.0])
    f -= f.mean()  # zero mean, rank 1: the filter cancels the offset
    t = BatchConv2DTransformer(filters=f[None], activation="abs", pooling="max")
    truth = t.fit_transform(X)  # float64
    fused_error = np.abs(t.transform(X.astype(np.float32)) - truth).max()
    images = X.reshape(-1, 28, 28).astype(np.float32)
    unfused = pool2d(np.abs(conv2d(images, f[None], padding="same")), 2)
    unfused_error = np.abs(unfused.reshape(len(X), -1) - truth).max()
    assert fused_error <= 1.5 * unfused_error


@pytest.mark.parametrize("method", ["rowgemm", "rowgemm_wide"])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("activation", [None, "split"])
def test_offsets_added_back_to_maps_in_any_order(method, padding, activation):
    # float32 images far from zero are centred per block and the offset's
    # response added back to the maps, whichever order they are stored in;
    # filters with a nonzero sum make a lost add-back a large error.
    rng = np.random.default_rng(1)
    X = rng.random((200, 12 * 12)) + 1000.0
    bank = rng.random((3, 3, 3))
    t = BatchConv2DTransformer(
        filters=bank, method=method, padding=padding, activation=activation, pooling="max"
    )
    got = t.fit_transform(X.astype(np.float32))
    expected = t.transform(X)  # float64
    assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize("bank_shape", [(3, 3, 3), (2, 3, 3, 2)])  # depthwise, multichannel
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_offset_images_in_some_blocks_only(bank_shape, n_jobs):
    # Which float32 images are centred is decided once for the batch and
    # sliced per block (per image and channel; a depthwise block holds each
    # image's channels as images of their own).  Offset images in the middle
    # blocks only, in one channel, next to blocks with none: a lost or
    # misplaced offset is an error of ~1000 times the filter's sum.
    rng = np.random.default_rng(3)
    images = rng.random((40, 8, 7, 2))
    images[17:23, ..., 1] += 1000.0
    bank = rng.random(bank_shape)
    plan = plan_fused(
        (8, 7, 2),
        np.float32,
        bank,
        conv={"padding": "same"},
        activation="relu",
        pool=POOL,
        n_jobs=n_jobs,
        block_bytes=1000,
    )
    assert plan.block <= 3  # the offset images span several blocks
    out = np.empty((40, plan.n_maps) + plan.out_shape, np.float32)
    run_fused(plan, images.astype(np.float32), out)
    maps = naive_same_maps(images, bank)
    expected = np.maximum(maps, 0)[..., :8, :6].reshape(40, -1, 4, 2, 3, 2).max(axis=(3, 5))
    # float32 rounding of the centred pixels, not of the 1000 offset
    assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
