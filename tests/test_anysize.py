"""Images of any size: a list of arrays -> fixed-length rows (transform_images)."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import load_digits

from skconv import BatchConv2DTransformer, transform_images
from skconv.filters import sobel

RNG = np.random.RandomState(0)
MIXED = [RNG.rand(*s) for s in [(8, 8), (13, 21), (8, 8), (30, 9), (13, 21), (5, 6)]]


def grid_bounds(n, g):
    """Regions of adaptive pooling (torch's AdaptiveMaxPool2d): floor / ceil."""
    return [(i * n // g, -(-(i + 1) * n // g)) for i in range(g)]


def oracle(image, bank, op, grid):
    """Valid cross-correlation by a loop, abs, then pooling into a grid (None: global)."""
    k, p, q = bank.shape
    h, w = image.shape[0] - p + 1, image.shape[1] - q + 1
    maps = np.zeros((k, h, w))
    for f in range(k):
        for i in range(h):
            for j in range(w):
                maps[f, i, j] = np.sum(image[i : i + p, j : j + q] * bank[f])
    maps = np.abs(maps)
    reduce = {"max": np.max, "mean": np.mean}[op]
    if grid is None:
        return reduce(maps, axis=(1, 2))
    return np.array(
        [
            [
                [reduce(m[r0:r1, c0:c1]) for c0, c1 in grid_bounds(w, grid)]
                for r0, r1 in grid_bounds(h, grid)
            ]
            for m in maps
        ]
    ).ravel()


@pytest.mark.parametrize("op, grid", [("max", None), ("mean", 2), ("max", 3)])
def test_mixed_sizes_match_loop_oracle(op, grid):
    pool = {"pool_size": "global"} if grid is None else {"pool_grid": grid}
    conv = BatchConv2DTransformer(
        filters="sobel", padding="valid", activation="abs", pooling=op, **pool
    )
    out = transform_images(conv, MIXED)
    expected = np.array([oracle(image, sobel(), op, grid) for image in MIXED])
    assert out.shape == expected.shape
    assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "params",
    [
        dict(filters="default", activation="split", pooling="max", pool_grid=(2, 3)),
        dict(filters=["edges", np.ones((2, 5, 5))], pooling="mean", pool_size="global"),
    ],
)
def test_same_size_equals_the_rows_path(params, dtype):
    images = [image.astype(dtype) for image in RNG.rand(7, 9, 11)]
    conv = BatchConv2DTransformer(image_shape=(9, 11), **params)
    rows = conv.transform(np.stack(images).reshape(7, -1))
    out = transform_images(conv, images)
    assert out.dtype == dtype
    assert_array_equal(out, rows)


def test_channels_and_input_order():
    images = [RNG.rand(h, w, 3) for h, w in [(6, 7), (9, 9), (6, 7), (12, 5)]]
    conv = BatchConv2DTransformer(filters="edges", pooling="max", pool_grid=2)
    out = transform_images(conv, images)
    for i, image in enumerate(images):
        alone = BatchConv2DTransformer(
            filters="edges", pooling="max", pool_grid=2, image_shape=image.shape
        ).transform(image.reshape(1, -1))
        assert_allclose(out[i], alone[0], rtol=1e-12)
    # channels first, read with channel_axis=0
    first = BatchConv2DTransformer(filters="edges", pooling="max", pool_grid=2, channel_axis=0)
    out0 = transform_images(first, [np.moveaxis(image, -1, 0) for image in images])
    assert_allclose(out0, out, rtol=1e-12)


def test_learned_filters_fitted_on_rows_apply_to_any_size():
    X = load_digits().data
    conv = BatchConv2DTransformer(
        filters="pca", filter_params={"n_filters": 4, "size": 3}, pooling="max", pool_grid=2
    ).fit(X)
    images = [X[0].reshape(8, 8), RNG.rand(20, 16) * 16, X[1].reshape(8, 8)]
    out = transform_images(conv, images)
    assert out.shape == (3, 16)
    assert_allclose(out[[0, 2]], conv.transform(X[:2]), rtol=1e-12)
    assert_allclose(transform_images(conv, images[1:2])[0], out[1], rtol=1e-12)


def test_transform_takes_a_list_and_fit_refuses_it():
    conv = BatchConv2DTransformer(filters="edges", pooling="max", pool_size="global")
    assert_array_equal(conv.transform(MIXED), transform_images(conv, MIXED))
    assert_array_equal(conv.transform(tuple(MIXED)), transform_images(conv, MIXED))
    with pytest.raises(ValueError, match="list of 6 image arrays"):
        conv.fit(MIXED)
    # rows given as a list of 1-D arrays are still rows
    rows = RNG.rand(3, 64)
    assert_array_equal(conv.transform(list(rows)), conv.transform(rows))


def test_dtypes():
    conv = BatchConv2DTransformer(filters="edges", pooling="max", pool_size="global")
    f32 = [image.astype(np.float32) for image in MIXED]
    assert transform_images(conv, f32).dtype == np.float32
    mixed = f32[:2] + MIXED[2:]
    assert transform_images(conv, mixed).dtype == np.float64
    ints = [(image * 10).astype(np.int16) for image in MIXED]
    assert_allclose(
        transform_images(conv, ints),
        transform_images(conv, [i.astype(np.float64) for i in ints]),
    )
    before = [image.copy() for image in MIXED]
    transform_images(conv, MIXED)
    for a, b in zip(MIXED, before, strict=True):
        assert_array_equal(a, b)


def test_pandas_output_has_the_feature_names():
    pd = pytest.importorskip("pandas")
    conv = BatchConv2DTransformer(filters="edges", pooling="max", pool_grid=2)
    conv.set_output(transform="pandas")
    frame = transform_images(conv, MIXED)
    assert isinstance(frame, pd.DataFrame)
    names = conv.fit(RNG.rand(2, 64)).get_feature_names_out()
    assert list(frame.columns) == list(names)


@pytest.mark.parametrize(
    "params, images, exc, words",
    [
        (dict(pooling=None), MIXED, ValueError, ["pooling", "pool_grid", "pool_size='global'"]),
        (dict(pooling="max", pool_size=2), MIXED, ValueError, ["pool_grid", "pool_size=2"]),
        (dict(pooling="max", pool_grid=2), [], ValueError, ["at least one image"]),
        (dict(pooling="max", pool_grid=2), RNG.rand(3, 8, 8), TypeError, ["list or tuple"]),
        (dict(pooling="max", pool_grid=2), [RNG.rand(8)], ValueError, ["images[0]", "(8,)"]),
        (
            dict(pooling="max", pool_grid=2),
            [RNG.rand(8, 8), RNG.rand(8, 8, 2)],
            ValueError,
            ["images[1]", "no channel axis"],
        ),
        (
            dict(pooling="max", pool_grid=2),
            [RNG.rand(8, 8, 3), RNG.rand(9, 9, 2)],
            ValueError,
            ["images[1]", "3 channels"],
        ),
        (
            dict(pooling="max", pool_grid=2),
            [RNG.rand(8, 8), np.full((4, 4), np.nan)],
            ValueError,
            ["images[1]", "NaN"],
        ),
        (
            dict(pooling="max", pool_grid=2, padding="valid"),
            [RNG.rand(8, 8), RNG.rand(2, 9)],
            ValueError,
            ["images[1]", "(2, 9)"],
        ),
        (
            dict(pooling="max", pool_grid=2),
            [RNG.rand(8, 8) + 1j],
            TypeError,
            ["images[0]", "complex"],
        ),
    ],
)
def test_errors_name_what_is_wrong(params, images, exc, words):
    conv = BatchConv2DTransformer(filters="edges", **params)
    with pytest.raises(exc) as info:
        transform_images(conv, images)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_learned_filters_must_be_fitted_and_keep_their_channels():
    from sklearn.exceptions import NotFittedError

    conv = BatchConv2DTransformer(filters="pca", pooling="max", pool_grid=2)
    with pytest.raises(NotFittedError):
        transform_images(conv, MIXED)
    conv.set_params(filter_params={"n_filters": 2, "size": 3}).fit(RNG.rand(5, 64))
    with pytest.raises(ValueError, match="no channel axis"):
        transform_images(conv, [RNG.rand(8, 8, 3)])
