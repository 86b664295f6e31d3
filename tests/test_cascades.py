"""Cascades: a transformer reading another's maps as channels-first images (channel_axis=0)."""

import numpy as np
import pytest
import sklearn
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import FeatureUnion, Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from skconv import BatchConv2DTransformer, conv2d, pool2d
from skconv import filters as F

RNG = np.random.default_rng(0)
BANK1 = RNG.standard_normal((3, 3, 3))
BANK2 = RNG.standard_normal((2, 3, 3))
MULTI = RNG.standard_normal((4, 3, 3, 3))  # sums over the 3 maps of layer 1


def _images(shape, n=6, dtype=np.float64):
    return RNG.random((n,) + shape).astype(dtype)


def _layer1(**kwargs):
    return BatchConv2DTransformer(filters=BANK1, activation="abs", **kwargs)


@pytest.mark.parametrize("image_shape", [(3, 9, 10), (3, None, 10), (None, 9, 10)])
def test_depthwise_cascade_equals_hand_written_chain(image_shape):
    images = _images((9, 10))
    X = images.reshape(len(images), -1)
    second = BatchConv2DTransformer(
        filters=BANK2, image_shape=image_shape, channel_axis=0, activation="relu", pooling="max"
    )
    cascade = make_pipeline(_layer1(image_shape=(9, 10)), second)
    # The oracle: conv2d/pool2d by hand, layer-1 maps moved channels-last.
    maps1 = np.abs(conv2d(images, BANK1, padding="same"))
    maps2 = conv2d(np.moveaxis(maps1, 1, -1), BANK2, padding="same")
    expected = pool2d(np.maximum(maps2, 0), 2, op="max").reshape(len(X), -1)
    np.testing.assert_allclose(cascade.fit_transform(X), expected, rtol=1e-12, atol=1e-12)
    assert second.image_shape_ == (3, 9, 10)


def test_channel_summing_cascade_equals_hand_written_chain():
    images = _images((8, 8))
    X = images.reshape(len(images), -1)
    second = BatchConv2DTransformer(
        filters=MULTI, image_shape=(3, None, None), channel_axis=0, padding="valid", stride=2
    )
    cascade = make_pipeline(_layer1(), second)
    maps1 = np.abs(conv2d(images, BANK1, padding="same"))
    expected = conv2d(np.moveaxis(maps1, 1, -1), MULTI, stride=2).reshape(len(X), -1)
    np.testing.assert_allclose(cascade.fit_transform(X), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.filterwarnings("ignore:Could not adhere:UserWarning")
@pytest.mark.filterwarnings("ignore:working_memory of:UserWarning")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("filters", [BANK2, MULTI, [BANK2, MULTI, "edges"]])
def test_channels_first_rows_give_the_channels_last_features(filters, dtype):
    # Same images stored (h, w, c) and (c, h, w): same features, same names,
    # also when transform cuts the rows into many chunks.
    last = _images((7, 6, 3), n=20, dtype=dtype)
    first = np.ascontiguousarray(last.transpose(0, 3, 1, 2))
    X_last, X_first = last.reshape(20, -1), first.reshape(20, -1)
    common = dict(filters=filters, activation="split", pooling="mean")
    ref = BatchConv2DTransformer(image_shape=(7, 6, 3), **common).fit(X_last)
    model = BatchConv2DTransformer(image_shape=(3, 7, 6), channel_axis=0, **common).fit(X_first)
    expected = ref.transform(X_last)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    got = model.transform(X_first)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)
    np.testing.assert_array_equal(model.get_feature_names_out(), ref.get_feature_names_out())
    with sklearn.config_context(working_memory=0.01):  # a few rows per chunk
        np.testing.assert_allclose(model.transform(X_first), expected, rtol=tol, atol=tol)


def test_learned_second_stage_sees_each_map_as_an_image():
    # PCANet's second stage: PCA filters of the patches of all layer-1 maps.
    images = _images((10, 10), n=8)
    X = images.reshape(8, -1)
    second = BatchConv2DTransformer(
        filters="pca",
        filter_params={"n_filters": 4, "size": 3},
        image_shape=(3, None, None),
        channel_axis=0,
    )
    make_pipeline(_layer1(), second).fit(X)
    maps1 = np.abs(conv2d(images, BANK1, padding="same"))
    expected = F.pca(maps1.reshape(-1, 10, 10), n_filters=4, size=3)
    np.testing.assert_allclose(second.filters_[0], expected, rtol=1e-10, atol=1e-12)
    # The same filters from the same maps stored channels-last.
    last = BatchConv2DTransformer(
        filters="pca", filter_params={"n_filters": 4, "size": 3}, image_shape=(10, 10, 3)
    ).fit(np.moveaxis(maps1, 1, -1).reshape(8, -1))
    np.testing.assert_allclose(second.filters_[0], last.filters_[0], rtol=1e-10, atol=1e-12)


def test_learned_filters_refuse_another_channel_axis():
    X = _images((3, 4, 4), n=5).reshape(5, -1)
    model = BatchConv2DTransformer(
        filters="pca",
        filter_params={"n_filters": 2, "size": 3},
        image_shape=(3, 4, 4),
        channel_axis=0,
    ).fit(X)
    model.set_params(channel_axis=-1)  # the same tuple now reads h=3, w=4, c=4
    with pytest.raises(ValueError, match="channel_axis=-1 reads the rows as images"):
        model.transform(X)


def test_grid_search_over_either_layer():
    X, y = load_digits(return_X_y=True)
    X, y = X[:200], y[:200]
    pipe = Pipeline(
        [
            ("layer1", BatchConv2DTransformer(filters="edges", activation="abs")),
            (
                "layer2",
                # (None, 8, 8): the number of maps follows layer 1's filters
                BatchConv2DTransformer(
                    filters="gabor",
                    image_shape=(None, 8, 8),
                    channel_axis=0,
                    activation="abs",
                    pooling="max",
                    pool_size=4,
                ),
            ),
            ("scale", StandardScaler()),
            ("clf", LogisticRegression(max_iter=500)),
        ]
    )
    grid = {
        "layer1__filters": ["edges", "laplacian"],
        "layer2__filter_params": [{"size": 3, "n_orientations": 2}, {"size": 5}],
    }
    search = GridSearchCV(pipe, grid, cv=2).fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    best = search.best_estimator_
    n_maps = {"edges": 4, "laplacian": 1}[best["layer1"].filters]
    assert best["layer2"].image_shape_ == (n_maps, 8, 8)


def test_orders_side_by_side_have_named_features():
    X = load_digits().data[:10]
    pool_only = dict(filters=np.ones((1, 1)), image_shape=(4, None, None), channel_axis=0)
    orders = FeatureUnion(
        [
            ("order0", BatchConv2DTransformer(filters=np.ones((1, 1)), pooling="mean")),
            (
                "layer1",
                Pipeline(
                    [
                        ("conv", BatchConv2DTransformer(filters="edges", activation="abs")),
                        (
                            "orders",
                            FeatureUnion(
                                [
                                    ("order1", BatchConv2DTransformer(pooling="mean", **pool_only)),
                                    (
                                        "order2",
                                        BatchConv2DTransformer(
                                            filters=BANK2,
                                            image_shape=(4, 8, 8),
                                            channel_axis=0,
                                            activation="abs",
                                            pooling="mean",
                                        ),
                                    ),
                                ]
                            ),
                        ),
                    ]
                ),
            ),
        ]
    ).fit(X)
    names = orders.get_feature_names_out()
    features = orders.transform(X)
    assert len(names) == features.shape[1] == 16 + 4 * 16 + 8 * 16
    assert names[0] == "order0__conv_f0_r0_c0"
    assert names[16] == "layer1__order1__conv_f0_ch0_r0_c0"
    # order 2: filter 1 of layer 2 on map 3 of layer 1
    assert names[16 + 64 + 7 * 16] == "layer1__order2__conv_f1_ch3_r0_c0"
    # oracle for that block: mean-pooled |BANK2[1] * |edges[3] * x||
    maps1 = np.abs(conv2d(X.reshape(-1, 8, 8), F.edges(), padding="same"))
    block = pool2d(np.abs(conv2d(maps1[:, 3], BANK2[1], padding="same")), 2, op="mean")
    np.testing.assert_allclose(features[:, 16 + 64 + 7 * 16 :][:, :16], block.reshape(10, -1))


@pytest.mark.parametrize(
    "params, error, match",
    [
        ({"channel_axis": 0}, ValueError, r"channel_axis=0 .* needs image_shape"),
        ({"channel_axis": 0, "image_shape": (8, 8)}, ValueError, "needs a 3-D image_shape"),
        ({"channel_axis": None, "image_shape": (4, 4, 4)}, ValueError, "channel_axis=None"),
        ({"channel_axis": 1}, ValueError, "channel_axis"),
        ({"channel_axis": "0"}, ValueError, "channel_axis"),
        ({"channel_axis": 0, "image_shape": (None, None, 4)}, ValueError, "too much to infer"),
        ({"channel_axis": 0, "image_shape": (3, None, None)}, ValueError, "3 \\* 4 \\* 4 = 48"),
        ({"channel_axis": 0, "image_shape": (4, "a", 4)}, TypeError, "image_shape must be"),
    ],
)
def test_bad_channel_axis_or_image_shape(params, error, match):
    X = np.zeros((2, 64))
    with pytest.raises(error, match=match):
        BatchConv2DTransformer(filters="edges", **params).fit(X)


def test_channel_axis_true_is_refused():
    with pytest.raises(ValueError, match="channel_axis"):
        BatchConv2DTransformer(channel_axis=True, image_shape=(4, 4, 4)).fit(np.zeros((2, 64)))


def test_inferred_shapes_and_defaults():
    X = np.zeros((2, 4 * 6 * 6))
    shapes = {
        (4, None, None): (4, 6, 6),
        (None, 6, 6): (4, 6, 6),
        (4, 6, None): (4, 6, 6),
    }
    for given, expected in shapes.items():
        model = BatchConv2DTransformer(image_shape=given, channel_axis=0).fit(X)
        assert model.image_shape_ == expected
    # channels last (the default) infers the same way; None keeps square images
    assert BatchConv2DTransformer(image_shape=(None, None, 4)).fit(X).image_shape_ == (6, 6, 4)
    assert BatchConv2DTransformer(channel_axis=None).fit(np.zeros((1, 64))).image_shape_ == (8, 8)
    assert clone(BatchConv2DTransformer(channel_axis=0)).get_params()["channel_axis"] == 0
