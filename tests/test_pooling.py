"""pool2d against naive loops."""

import numpy as np
import pytest

from skconv import pool2d
from skconv._pooling import pool_into, pool_work_items, pooled_shape

NAIVE_OPS = {"max": max, "sum": sum, "mean": lambda values: sum(values) / len(values)}


def naive_pool(maps, size, stride, op):
    """Window by window over a 4-D (n, k, h, w) array."""
    n, k, h, w = maps.shape
    (ph, pw), (sh, sw) = size, stride
    out_h, out_w = (h - ph) // sh + 1, (w - pw) // sw + 1
    out = np.zeros((n, k, out_h, out_w))
    for a in range(n):
        for b in range(k):
            for i in range(out_h):
                for j in range(out_w):
                    values = [
                        maps[a, b, i * sh + u, j * sw + v] for u in range(ph) for v in range(pw)
                    ]
                    out[a, b, i, j] = NAIVE_OPS[op](values)
    return out


def naive_grid_pool(maps, grid, op):
    """Regions [floor(i*h/g), ceil((i+1)*h/g)) as torch's adaptive pooling."""
    n, k, h, w = maps.shape
    gh, gw = grid
    out = np.zeros((n, k, gh, gw))
    for i in range(gh):
        r0, r1 = int(np.floor(i * h / gh)), int(np.ceil((i + 1) * h / gh))
        for j in range(gw):
            c0, c1 = int(np.floor(j * w / gw)), int(np.ceil((j + 1) * w / gw))
            for a in range(n):
                for b in range(k):
                    out[a, b, i, j] = NAIVE_OPS[op](list(maps[a, b, r0:r1, c0:c1].ravel()))
    return out


@pytest.mark.parametrize("op", ["max", "mean", "sum"])
@pytest.mark.parametrize(
    "shape, size, stride",
    [
        ((2, 3, 8, 8), 2, None),
        ((2, 3, 7, 9), 2, None),  # windows that do not fit are dropped
        ((1, 2, 6, 5), (3, 2), (1, 2)),  # overlapping rows
        ((3, 1, 5, 5), 5, None),
        ((2, 4, 4, 6), 1, None),
        ((2, 2, 9, 9), 3, 2),
    ],
)
def test_window_pooling_against_naive(shape, size, stride, op):
    rng = np.random.default_rng(sum(shape))
    maps = rng.standard_normal(shape)
    size2 = (size, size) if isinstance(size, int) else size
    stride2 = size2 if stride is None else ((stride, stride) if isinstance(stride, int) else stride)
    expected = naive_pool(maps, size2, stride2, op)
    np.testing.assert_allclose(pool2d(maps, size, stride=stride, op=op), expected, rtol=1e-12)
    # 3-D maps pool the same way
    np.testing.assert_allclose(
        pool2d(maps[:, 0], size, stride=stride, op=op), expected[:, 0], rtol=1e-12
    )


@pytest.mark.parametrize("op", ["max", "mean", "sum"])
@pytest.mark.parametrize(
    "shape, grid", [((2, 3, 8, 8), 2), ((2, 1, 7, 5), (3, 2)), ((1, 2, 5, 5), 5), ((2, 2, 6, 4), 1)]
)
def test_grid_and_global_pooling(shape, grid, op):
    rng = np.random.default_rng(1)
    maps = rng.standard_normal(shape)
    grid2 = (grid, grid) if isinstance(grid, int) else grid
    np.testing.assert_allclose(
        pool2d(maps, grid=grid, op=op), naive_grid_pool(maps, grid2, op), rtol=1e-12
    )
    np.testing.assert_allclose(
        pool2d(maps, "global", op=op), naive_pool(maps, shape[-2:], (1, 1), op), rtol=1e-12
    )


def test_float32_preserved_and_ints_become_float64():
    maps32 = np.arange(32, dtype=np.float32).reshape(2, 4, 4)
    assert pool2d(maps32, 2, op="mean").dtype == np.float32
    ints = np.arange(32).reshape(2, 4, 4)
    pooled = pool2d(ints, 2, op="mean")
    assert pooled.dtype == np.float64
    np.testing.assert_allclose(
        pooled, naive_pool(ints[:, None].astype(float), (2, 2), (2, 2), "mean")[:, 0]
    )


def test_big_endian_float32_stays_float32():
    maps = np.arange(48, dtype=">f4").reshape(3, 4, 4)
    pooled = pool2d(maps, 2, op="max")
    assert pooled.dtype == np.float32
    np.testing.assert_array_equal(
        pooled, naive_pool(maps[:, None].astype(np.float64), (2, 2), (2, 2), "max")[:, 0]
    )


@pytest.mark.parametrize("op", ["sum", "mean", "max"])
def test_float16_maps_are_reduced_in_float64(op):
    # 16 pixels of 60 000 sum to 960 000, beyond float16's 65 504
    maps = np.full((1, 2, 8, 8), 60_000, np.float16)
    maps[0, 1, ::2] = 1_000
    pooled = pool2d(maps, 4, op=op)
    assert pooled.dtype == np.float64
    np.testing.assert_array_equal(pooled, naive_pool(maps.astype(np.float64), (4, 4), (4, 4), op))


@pytest.mark.parametrize("op", ["sum", "mean", "max"])
def test_nan_and_infinity_stay_in_their_windows(op):
    maps = np.arange(32.0).reshape(2, 4, 4)
    maps[0, 0, 1], maps[1, 3, 3] = np.nan, np.inf
    reduce = {"max": np.max, "sum": np.sum, "mean": np.mean}[op]  # (Python's max skips NaN)
    expected = np.array(
        [
            [[reduce(m[2 * i : 2 * i + 2, 2 * j : 2 * j + 2]) for j in range(2)] for i in range(2)]
            for m in maps
        ]
    )
    np.testing.assert_array_equal(pool2d(maps, 2, op=op), expected)
    assert np.isnan(expected[0, 0, 0]) and np.isinf(expected[1, 1, 1])
    assert np.isfinite(expected[0, 1]).all() and np.isfinite(expected[1, 0]).all()


def test_activation_before_pooling():
    maps = np.array([[[-4.0, 1.0], [2.0, -3.0]]])
    np.testing.assert_array_equal(pool2d(maps, 2, activation="abs"), [[[4.0]]])
    np.testing.assert_array_equal(
        pool2d(maps, 2, activation="split", op="sum")[0, :, 0, 0], [3.0, 7.0]
    )


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        ((np.zeros((4, 4)),), {}, ValueError, r"maps must be 3-D .* got shape \(4, 4\)"),
        (
            (np.zeros((1, 3, 3)), 4),
            {},
            ValueError,
            "pooling window 4x4 is larger than the 3x3 maps",
        ),
        ((np.zeros((1, 3, 3)), 0), {}, ValueError, "size must be >= 1"),
        ((np.zeros((1, 3, 3)), 2.5), {}, TypeError, "size must be an int or a pair"),
        ((np.zeros((1, 3, 3)), "all"), {}, ValueError, "size must be an int, a pair or 'global'"),
        ((np.zeros((1, 3, 3)), 2), {"stride": 0}, ValueError, "stride must be >= 1"),
        (
            (np.zeros((1, 3, 3)),),
            {"op": "median"},
            ValueError,
            r"op must be one of \('max', 'mean', 'sum'\)",
        ),
        (
            (np.zeros((1, 3, 3)),),
            {"activation": "tanh"},
            ValueError,
            r"activation must be one of \(None",
        ),
        (
            (np.zeros((1, 3, 3)),),
            {"grid": 4},
            ValueError,
            "grid 4x4 has more regions than the 3x3 maps",
        ),
        (
            (np.zeros((1, 3, 3)),),
            {"grid": 2, "stride": 1},
            ValueError,
            "stride cannot be given with grid",
        ),
        (
            (np.zeros((1, 3, 3), complex),),
            {},
            TypeError,
            "maps must hold real numbers; got complex",
        ),
    ],
)
def test_bad_input(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        pool2d(*args, **kwargs)


@pytest.mark.parametrize(
    "map_shape, size, stride, grid",
    [
        ((8, 8), 2, None, None),
        ((7, 9), (3, 2), (1, 2), None),
        ((5, 5), 5, None, None),
        ((9, 9), 3, 2, None),
        ((7, 5), 2, None, (3, 2)),
        ((6, 4), "global", None, None),
    ],
)
def test_pooled_shape_is_the_shape_pool2d_returns(map_shape, size, stride, grid):
    maps = np.random.default_rng(0).standard_normal((1, 2, *map_shape))
    if grid is not None:
        expected = naive_grid_pool(maps, grid, "max").shape[-2:]
    else:
        pair = map_shape if size == "global" else (size, size) if isinstance(size, int) else size
        steps = pair if stride is None else (stride, stride) if isinstance(stride, int) else stride
        expected = naive_pool(maps, pair, (1, 1) if size == "global" else steps, "max").shape[-2:]
    assert pooled_shape(map_shape, size, stride=stride, grid=grid) == expected
    assert pool2d(maps, size, stride=stride, grid=grid).shape[-2:] == expected


@pytest.mark.parametrize("op", ["max", "mean", "sum"])
@pytest.mark.parametrize(
    "size, stride",
    [((2, 1), None), ((1, 3), (2, 1)), (2, 3), ((3, 1), (1, 2)), (1, 2), ((1, 1), None)],
)
def test_row_and_column_passes_against_naive(size, stride, op):
    """Windows of one row or one column, gaps between windows, strided input maps."""
    maps = np.random.default_rng(3).standard_normal((2, 9, 3, 8)).transpose(0, 3, 1, 2)
    assert not maps.flags.c_contiguous  # (2, 8, 9, 3) view
    size2 = (size, size) if isinstance(size, int) else size
    stride2 = size2 if stride is None else ((stride, stride) if isinstance(stride, int) else stride)
    expected = naive_pool(maps, size2, stride2, op)
    np.testing.assert_allclose(pool2d(maps, size, stride=stride, op=op), expected, rtol=1e-12)


@pytest.mark.parametrize("size, grid", [(2, None), ((3, 2), None), ("global", None), (2, 3)])
def test_out_receives_the_result(size, grid):
    maps = np.random.default_rng(5).standard_normal((3, 4, 7, 7)).astype(np.float32)
    expected = pool2d(maps, size, grid=grid, op="mean")
    # A strided view, as the transformer passes its output's columns.
    big = np.full((3, 2 * expected[0].size), np.nan, np.float32)
    out = big[:, 1::2].reshape(expected.shape)
    assert not out.flags.c_contiguous
    result = pool2d(maps, size, grid=grid, op="mean", out=out)
    assert result is out
    np.testing.assert_array_equal(out, expected)
    assert np.isnan(big[:, 0::2]).all()


def test_out_with_split_and_integer_maps():
    maps = np.arange(2 * 4 * 4).reshape(2, 1, 4, 4) - 10
    out = np.empty((2, 2, 2, 2))
    pool2d(maps, 2, activation="split", op="sum", out=out)
    pos, neg = np.maximum(maps, 0), np.maximum(-maps, 0)
    np.testing.assert_array_equal(out[:, 0], naive_pool(pos, (2, 2), (2, 2), "sum")[:, 0])
    np.testing.assert_array_equal(out[:, 1], naive_pool(neg, (2, 2), (2, 2), "sum")[:, 0])


@pytest.mark.parametrize(
    "out, error, match",
    [
        (np.empty((2, 3, 2)), ValueError, r"out must have shape \(2, 3, 3\) and dtype float64"),
        (np.empty((2, 3, 3), np.float32), ValueError, "dtype float32"),
        ([[0.0]], TypeError, "out must be a numpy array; got list"),
        (np.broadcast_to(np.empty(3), (2, 3, 3)), ValueError, "out must be writeable"),
    ],
)
def test_bad_out(out, error, match):
    maps = np.zeros((2, 7, 7))
    with pytest.raises(error, match=match):
        pool2d(maps, 2, out=out)


def test_out_overlapping_maps_is_refused():
    maps = np.zeros((2, 8, 8))
    with pytest.raises(ValueError, match="out must not overlap maps"):
        pool2d(maps, 2, out=maps[:, :4, :4])


@pytest.mark.parametrize(
    "shape, size, grid", [((2, 0, 4), "global", None), ((2, 3, 0), 1, None), ((1, 2, 0, 5), 2, 2)]
)
def test_maps_without_pixels_are_refused(shape, size, grid):
    with pytest.raises(ValueError, match=r"maps must have at least one pixel per map; got shape"):
        pool2d(np.zeros(shape), size, grid=grid)
    with pytest.raises(ValueError, match="maps must have at least one pixel per map"):
        pooled_shape(shape[-2:], size, grid=grid)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"size": 10**30}, "size"),
        ({"size": 2, "stride": 10**30}, "stride"),
        ({"size": 2, "stride": (1, 2**63)}, "stride"),
        ({"grid": 10**30}, "grid"),
    ],
)
def test_huge_ints_are_value_errors_naming_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        pool2d(np.zeros((1, 4, 4)), **kwargs)


def test_largest_stride_still_pools():
    # One window per axis whatever the stride: the stride only has to fit a slice.
    maps = np.random.default_rng(0).standard_normal((2, 5, 5))
    got = pool2d(maps, 2, stride=2**62)
    np.testing.assert_array_equal(got, naive_pool(maps[:, None], (2, 2), (5, 5), "max")[:, 0])


@pytest.mark.parametrize("size, stride, grid", [(2, None, None), ((3, 2), 1, None), (2, None, 3)])
def test_pool_into_with_a_work_buffer(size, stride, grid):
    rng = np.random.default_rng(6)
    maps = rng.standard_normal((4, 3, 9, 9))
    expected = pool2d(maps, size, stride=stride, grid=grid, op="sum")
    out = np.empty_like(expected)
    items = pool_work_items((9, 9), size, stride=stride, grid=grid)
    work = np.full(12 * items, np.nan)
    pool_into(maps, out, size, stride=stride, grid=grid, op="sum", work=work)
    np.testing.assert_array_equal(out, expected)
    if items:
        assert not np.isnan(work).all()  # the buffer was used, not a fresh one


@pytest.mark.parametrize("order", [(2, 1, 0, 3), (3, 2, 1, 0)])
@pytest.mark.parametrize("size, stride", [((2, 2), (2, 2)), ((3, 2), (1, 1))])
def test_pool_into_maps_stored_in_another_order(order, size, stride):
    # The fused transform pools maps stored (row, filter, image, column): the
    # work buffer follows that order; the result must not depend on it.
    rng = np.random.default_rng(7)
    maps = rng.standard_normal((5, 3, 9, 8))
    stored = np.ascontiguousarray(maps.transpose(order)).transpose(np.argsort(order))
    assert not stored.flags.c_contiguous
    out = np.empty_like(pool2d(maps, size, stride=stride))
    items = pool_work_items((9, 8), size, stride=stride)
    work = np.full(15 * items, np.nan)
    pool_into(stored, out, size, stride=stride, work=work)
    np.testing.assert_array_equal(out, naive_pool(maps, size, stride, "max"))


@pytest.mark.parametrize("op", ["max", "sum", "mean"])
@pytest.mark.parametrize(
    "size, stride", [(2, None), (3, None), ((3, 2), (4, 2)), (3, 2), (3, 1), ((2, 3), 1)]
)
@pytest.mark.parametrize("order", [(0, 1, 2, 3), (2, 1, 0, 3)])
def test_pool_into_may_overwrite_its_maps(op, size, stride, order):
    # With overwrite=True the row pass of non-overlapping windows runs in
    # the maps themselves (the fused transform's scratch), in the work
    # buffer pool_work_items(overwrite=True) sizes; overlapping windows
    # (stride 2 < size 3, stride 1) still use the buffer.  Sums keep their
    # order: the result is bit-identical to pool2d's.
    rng = np.random.default_rng(8)
    maps = rng.standard_normal((4, 3, 10, 9))
    expected = pool2d(maps, size, stride=stride, op=op)
    stored = maps.transpose(order).copy().transpose(np.argsort(order))  # maps stay as they are
    out = np.empty_like(expected)
    items = pool_work_items((10, 9), size, stride=stride, overwrite=True)
    assert items <= pool_work_items((10, 9), size, stride=stride)
    work = np.full(12 * items, np.nan)
    pool_into(stored, out, size, stride=stride, op=op, work=work, overwrite=True)
    np.testing.assert_array_equal(out, expected)
    pair = (size, size) if isinstance(size, int) else size
    step = pair if stride is None else (stride, stride) if isinstance(stride, int) else stride
    np.testing.assert_allclose(out, naive_pool(maps, pair, step, op), rtol=1e-12)
