"""Tests of BatchConv2DTransformer against an independent oracle.

The oracle below is written here, with plain Python loops over output pixels
(and scipy.signal.correlate2d as a second opinion): it never calls
skconv.conv2d or skconv.pool2d.
"""

import math
import pickle

import joblib
import numpy as np
import pytest
import scipy.signal
import sklearn
from numpy.testing import assert_allclose, assert_array_equal
from scipy import sparse
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state

import skconv
import skconv._layout as layout_module
from skconv import BatchConv2DTransformer
from skconv import filters as banks

# --- the oracle --------------------------------------------------------------


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _pad_widths(padding, span, flip=False):
    if padding == "valid":
        return [(0, 0), (0, 0)]
    if padding == "same":
        # The odd pixel of even filters goes bottom/right, as in
        # scipy.signal.correlate2d; with flip, top/left, as in convolve2d.
        widths = [((s - 1) // 2, s - 1 - (s - 1) // 2) for s in span]
        return [w[::-1] for w in widths] if flip else widths
    if padding == "full":
        return [(s - 1, s - 1) for s in span]
    if isinstance(padding, int):
        return [(padding, padding)] * 2
    if all(isinstance(p, (tuple, list)) for p in padding):
        return [tuple(p) for p in padding]
    return [(padding[0], padding[0]), (padding[1], padding[1])]


def naive_correlate(
    image, filt, padding="valid", pad_mode="constant", stride=1, dilation=1, flip=False
):
    """One 2-D image with one 2-D filter, by a loop over output pixels."""
    if flip:
        filt = filt[::-1, ::-1]
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    p, q = filt.shape
    span = (dh * (p - 1) + 1, dw * (q - 1) + 1)
    x = np.pad(image.astype(np.float64), _pad_widths(padding, span, flip), mode=pad_mode)
    out_h = (x.shape[0] - span[0]) // sh + 1
    out_w = (x.shape[1] - span[1]) // sw + 1
    out = np.zeros((out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            total = 0.0
            for u in range(p):
                for v in range(q):
                    total += x[i * sh + u * dh, j * sw + v * dw] * filt[u, v]
            out[i, j] = total
    return out


def naive_maps(image, bank, flip=False, **conv):
    """All maps of one image (h, w) or (h, w, c) for a bank, in skconv's order."""
    bank = np.asarray(bank, dtype=np.float64)
    if bank.ndim == 2:
        bank = bank[None]
    conv = dict(conv, flip=flip)
    if bank.ndim == 4:  # sum over channels
        img = image if image.ndim == 3 else image[..., None]
        return [
            sum(naive_correlate(img[..., c], f[..., c], **conv) for c in range(img.shape[2]))
            for f in bank
        ]
    if image.ndim == 3:  # depthwise, channel-major
        return [
            naive_correlate(image[..., c], f, **conv) for c in range(image.shape[2]) for f in bank
        ]
    return [naive_correlate(image, f, **conv) for f in bank]


def naive_activation(maps, activation):
    if activation is None:
        return maps
    if activation == "split":
        return [part for m in maps for part in (np.maximum(m, 0), np.maximum(-m, 0))]
    fn = {"relu": lambda m: np.maximum(m, 0), "abs": np.abs, "square": np.square}[activation]
    return [fn(m) for m in maps]


def naive_pool(m, op, size=2, stride=None, grid=None):
    reduce = {"max": np.max, "mean": np.mean, "sum": np.sum}[op]
    h, w = m.shape
    if grid is not None:
        gh, gw = _pair(grid)
        rows = [((i * h) // gh, math.ceil((i + 1) * h / gh)) for i in range(gh)]
        cols = [((j * w) // gw, math.ceil((j + 1) * w / gw)) for j in range(gw)]
        return np.array([[reduce(m[a:b, c:d]) for c, d in cols] for a, b in rows])
    if size == "global":
        return np.array([[reduce(m)]])
    ph, pw = _pair(size)
    sh, sw = (ph, pw) if stride is None else _pair(stride)
    out_h, out_w = (h - ph) // sh + 1, (w - pw) // sw + 1
    return np.array(
        [
            [reduce(m[i * sh : i * sh + ph, j * sw : j * sw + pw]) for j in range(out_w)]
            for i in range(out_h)
        ]
    )


def naive_features(
    X,
    image_shape,
    bank_list,
    *,
    activation=None,
    pooling=None,
    pool_size=2,
    pool_stride=None,
    pool_grid=None,
    flip=False,
    padding="same",
    **conv,
):
    """The oracle of transform (same defaults): one row of features per row of X."""
    rows = []
    for row in np.asarray(X, dtype=np.float64):
        image = row.reshape(image_shape)
        feats = []
        for bank in bank_list:
            maps = naive_activation(
                naive_maps(image, bank, flip=flip, padding=padding, **conv), activation
            )
            if pooling is not None:
                maps = [naive_pool(m, pooling, pool_size, pool_stride, pool_grid) for m in maps]
            feats.extend(m.ravel() for m in maps)
        rows.append(np.concatenate(feats))
    return np.array(rows)


# --- data --------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:300], y[:300]


def _rand(shape, seed=0, dtype=np.float64):
    return np.random.RandomState(seed).randn(*shape).astype(dtype)


# --- correctness against the oracle -----------------------------------------

BANK_3 = _rand((3, 3, 3), seed=1)
BANK_2x4 = _rand((2, 2, 4), seed=2)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"padding": "valid"},
        {"padding": "full"},
        {"padding": 1},
        {"padding": (0, 2)},
        {"padding": ((0, 1), (2, 0))},
        {"padding": "same", "pad_mode": "reflect"},
        {"padding": "same", "pad_mode": "symmetric"},
        {"padding": "same", "pad_mode": "edge"},
        {"padding": "same", "pad_mode": "wrap"},
        {"padding": "valid", "stride": 2},
        {"padding": "same", "stride": (2, 3)},
        {"padding": "valid", "dilation": 2},
        {"padding": "same", "dilation": (1, 2)},
        {"flip": True},
        {"activation": "relu"},
        {"activation": "abs"},
        {"activation": "square"},
        {"activation": "split"},
        {"pooling": "max"},
        {"pooling": "mean", "pool_size": 3},
        {"pooling": "sum", "pool_size": (2, 3), "pool_stride": 1},
        {"pooling": "max", "pool_size": "global"},
        {"pooling": "mean", "pool_grid": 2},
        {"pooling": "max", "pool_grid": (3, 2), "activation": "split"},
        {"padding": "valid", "activation": "split", "pooling": "max", "pool_size": 2},
    ],
)
@pytest.mark.parametrize("bank", [BANK_3, BANK_2x4], ids=["3x3", "2x4"])
def test_matches_oracle(params, bank):
    X = _rand((5, 7 * 8), seed=3)
    est = BatchConv2DTransformer(filters=bank, image_shape=(7, 8), **params)
    got = est.fit_transform(X)
    expected = naive_features(X, (7, 8), [bank], **params)
    assert got.shape == expected.shape
    assert_allclose(got, expected, rtol=1e-10, atol=1e-10)
    assert len(est.get_feature_names_out()) == got.shape[1]


def test_matches_scipy_correlate2d(digits):
    X, _ = digits
    bank = banks.make_bank("sobel")
    got = BatchConv2DTransformer(filters="sobel").transform(X[:50])
    for i in range(50):
        image = X[i].reshape(8, 8)
        for k in range(4):
            expected = scipy.signal.correlate2d(image, bank[k], mode="same")
            assert_allclose(got.reshape(50, 4, 8, 8)[i, k], expected, atol=1e-10)
    full = BatchConv2DTransformer(filters="sobel", padding="full").transform(X[:3])
    flipped = BatchConv2DTransformer(filters="sobel", flip=True, padding="valid").transform(X[:3])
    for i in range(3):
        image = X[i].reshape(8, 8)
        assert_allclose(
            full.reshape(3, 4, 10, 10)[i, 1], scipy.signal.correlate2d(image, bank[1], "full")
        )
        assert_allclose(
            flipped.reshape(3, 4, 6, 6)[i, 2], scipy.signal.convolve2d(image, bank[2], "valid")
        )


def test_named_bank_equals_its_array(digits):
    X, _ = digits
    for name, params in [("edges", {}), ("gabor", {"n_orientations": 6}), ("log", {"size": 5})]:
        est = BatchConv2DTransformer(filters=name, filter_params=params or None)
        arr = BatchConv2DTransformer(filters=banks.make_bank(name, **params))
        assert_allclose(est.transform(X[:20]), arr.transform(X[:20]))


def test_channels_depthwise_and_summed():
    X = _rand((4, 5 * 6 * 3), seed=4)
    depthwise = BatchConv2DTransformer(filters=BANK_3, image_shape=(5, 6, 3), padding="valid")
    got = depthwise.fit_transform(X)
    expected = naive_features(X, (5, 6, 3), [BANK_3], padding="valid")
    assert_allclose(got, expected, atol=1e-10)
    # map ch * K + k is filter k on channel ch
    maps = got.reshape(4, 3 * 3, 3, 4)
    image = X[2].reshape(5, 6, 3)
    assert_allclose(maps[2, 1 * 3 + 2], naive_correlate(image[..., 1], BANK_3[2]), atol=1e-10)
    assert depthwise.get_feature_names_out()[(1 * 3 + 2) * 12] == "conv_f2_ch1_r0_c0"

    bank4 = _rand((2, 3, 3, 3), seed=5)
    summed = BatchConv2DTransformer(filters=bank4, image_shape=(5, 6, 3), activation="split")
    got = summed.fit_transform(X)
    assert_allclose(got, naive_features(X, (5, 6, 3), [bank4], activation="split"), atol=1e-10)
    assert got.shape == (4, 2 * 2 * 30)
    assert list(summed.get_feature_names_out()[[0, 30, 60]]) == [
        "conv_f0pos_r0_c0",
        "conv_f0neg_r0_c0",
        "conv_f1pos_r0_c0",
    ]


def test_four_d_filters_with_one_channel_on_plain_images():
    X = _rand((3, 36), seed=6)
    bank4 = _rand((2, 3, 3, 1), seed=7)
    got = BatchConv2DTransformer(filters=bank4).transform(X)
    assert_allclose(got, BatchConv2DTransformer(filters=bank4[..., 0]).transform(X))


def test_several_sizes_concatenated_in_list_order(digits):
    X, _ = digits
    small = _rand((2, 2, 2), seed=8)
    items = [small, "edges", _rand((3, 5), seed=9), "laplacian"]
    est = BatchConv2DTransformer(filters=items, padding="valid", pooling="max", pool_size=2)
    got = est.fit_transform(X[:6])
    arrays = [small, banks.make_bank("edges"), _rand((3, 5), seed=9), banks.make_bank("laplacian")]
    expected = naive_features(X[:6], (8, 8), arrays, padding="valid", pooling="max")
    assert_allclose(got, expected, atol=1e-10)
    # the 2x2 group, then edges and laplacian apart (a 3x5 filter between them)
    assert [f.shape for f in est.filters_] == [(2, 2, 2), (4, 3, 3), (1, 3, 5), (1, 3, 3)]
    names = est.get_feature_names_out()
    assert names[0] == "conv_f0_r0_c0"
    assert names[2 * 9] == "conv_f2_r0_c0"  # 2 filters of 3x3 pooled maps before
    assert names[-1] == "conv_f7_r2_c2"  # filters numbered across groups
    assert len(set(names)) == len(names) == got.shape[1]


def test_consecutive_same_size_items_are_one_group(digits):
    X, _ = digits
    est = BatchConv2DTransformer(filters=["edges", "laplacian", BANK_3]).fit(X[:5])
    assert len(est.filters_) == 1 and est.filters_[0].shape == (8, 3, 3)
    assert_allclose(
        est.transform(X[:5]),
        naive_features(
            X[:5],
            (8, 8),
            [banks.make_bank("edges"), banks.make_bank("laplacian"), BANK_3],
            padding="same",
        ),
        atol=1e-10,
    )


def test_same_size_items_on_channels_interleave_as_one_bank():
    # Two 3x3 items on 3-channel images are one group of K = 2 + 3 filters,
    # channel-major over the group: map ch * K + k is filter k on channel ch.
    X = _rand((2, 5 * 6 * 3), seed=21)
    first = _rand((2, 3, 3), seed=22)
    est = BatchConv2DTransformer(filters=[first, BANK_3], image_shape=(5, 6, 3), padding="valid")
    maps = est.fit_transform(X).reshape(2, 3 * 5, 3, 4)
    filters = [*first, *BANK_3]
    for i in range(2):
        image = X[i].reshape(5, 6, 3)
        for ch in range(3):
            for k in range(5):
                expected = naive_correlate(image[..., ch], filters[k])
                assert_allclose(maps[i, ch * 5 + k], expected, atol=1e-10)
    names = est.get_feature_names_out()
    assert list(names[[0, 12, 2 * 12, 5 * 12]]) == [
        "conv_f0_ch0_r0_c0",
        "conv_f1_ch0_r0_c0",
        "conv_f2_ch0_r0_c0",
        "conv_f0_ch1_r0_c0",
    ]


def test_output_order_filter_major():
    X = _rand((3, 49), seed=10)
    est = BatchConv2DTransformer(filters=BANK_3, padding="valid")
    maps = est.fit_transform(X).reshape(3, 3, 5, 5)
    for i in range(3):
        for k in range(3):
            assert_allclose(maps[i, k], naive_correlate(X[i].reshape(7, 7), BANK_3[k]), atol=1e-10)
    names = est.get_feature_names_out().reshape(3, 5, 5)
    assert names[2, 1, 4] == "conv_f2_r1_c4"


def test_split_order_pos_then_neg():
    X = _rand((2, 25), seed=11)
    est = BatchConv2DTransformer(filters=BANK_3, activation="split")
    maps = est.fit_transform(X).reshape(2, 6, 5, 5)
    plain = BatchConv2DTransformer(filters=BANK_3).transform(X).reshape(2, 3, 5, 5)
    assert_allclose(maps[:, 2 * 1], np.maximum(plain[:, 1], 0))
    assert_allclose(maps[:, 2 * 1 + 1], np.maximum(-plain[:, 1], 0))
    assert est.get_feature_names_out().reshape(6, 25)[3, 7] == "conv_f1neg_r1_c2"


# --- image_shape -------------------------------------------------------------


def test_image_shape_none_square_or_strip():
    square = BatchConv2DTransformer(filters=BANK_3, padding="valid").fit(_rand((2, 49)))
    assert square.image_shape_ == (7, 7)
    assert square.transform(_rand((2, 49))).shape == (2, 3 * 5 * 5)
    strip = BatchConv2DTransformer(filters=_rand((1, 1, 3)), padding="valid").fit(_rand((2, 10)))
    assert strip.image_shape_ == (1, 10)
    X = _rand((2, 10), seed=1)
    expected = naive_features(X, (1, 10), [_rand((1, 1, 3))], padding="valid")
    assert_allclose(strip.transform(X), expected, atol=1e-12)


def test_image_shape_list_accepted():
    X = _rand((2, 24))
    a = BatchConv2DTransformer(filters=BANK_3, image_shape=[4, 6]).fit_transform(X)
    b = BatchConv2DTransformer(filters=BANK_3, image_shape=(4, 6)).fit_transform(X)
    assert_array_equal(a, b)


# --- stateless and learned -------------------------------------------------


def test_stateless_transform_without_fit(digits):
    X, _ = digits
    est = BatchConv2DTransformer(filters="edges")
    assert est.__sklearn_tags__().requires_fit is False
    assert_array_equal(est.transform(X[:10]), clone(est).fit(X).transform(X[:10]))
    assert not hasattr(est, "filters_")  # transform stores nothing
    with pytest.raises(NotFittedError):
        est.get_feature_names_out()


def test_random_bank_is_drawn_by_fit(digits):
    X, _ = digits
    est = BatchConv2DTransformer(filters="random", random_state=3)
    # drawn by fit, like RBFSampler's random weights: transform needs fit
    assert est.__sklearn_tags__().requires_fit is True
    with pytest.raises(NotFittedError):
        est.transform(X[:5])
    fitted = clone(est).fit(X)
    assert_array_equal(fitted.filters_[0], banks.make_bank("random", random_state=3))
    # an int seed reproduces the draw; the features are those of the drawn bank
    again = clone(est).fit(X[:2])
    assert_array_equal(again.transform(X[:5]), fitted.transform(X[:5]))
    fixed = BatchConv2DTransformer(filters=fitted.filters_[0])
    assert_array_equal(fitted.transform(X[:5]), fixed.transform(X[:5]))
    # with random_state=None, fit draws once and transform reuses the draw
    unseeded = BatchConv2DTransformer(filters="random").fit(X)
    assert_array_equal(unseeded.transform(X[:5]), unseeded.transform(X[:5]))
    # a new random_state is drawn by the next fit only (scikit-learn's rule)
    before = fitted.transform(X[:5])
    fitted.set_params(random_state=4)
    assert_array_equal(fitted.transform(X[:5]), before)
    fitted.fit(X)
    assert_array_equal(fitted.filters_[0], banks.make_bank("random", random_state=4))


def test_one_generator_for_several_random_banks(digits):
    X, _ = digits
    est = BatchConv2DTransformer(filters=["random", "random"], random_state=0).fit(X[:3])
    bank = est.filters_[0]
    assert bank.shape == (16, 3, 3)
    assert not np.allclose(bank[:8], bank[8:])  # two different draws
    rng = check_random_state(0)
    expected = np.concatenate([banks.make_bank("random", random_state=rng) for _ in range(2)])
    assert_array_equal(bank, expected)


@pytest.mark.parametrize("name", ["pca", "kmeans"])
def test_learned_bank(digits, name):
    X, _ = digits
    params = {"n_filters": 4, "size": 3, "n_patches": 500}
    est = BatchConv2DTransformer(filters=name, filter_params=params, random_state=0)
    assert est.__sklearn_tags__().requires_fit is True
    with pytest.raises(NotFittedError):
        est.transform(X)
    est.fit(X)
    expected = banks.learn_bank(
        name, X.reshape(-1, 8, 8), random_state=check_random_state(0), **params
    )
    assert_allclose(est.filters_[0], expected)
    assert_allclose(
        est.transform(X[:5]), naive_features(X[:5], (8, 8), [expected], padding="same"), atol=1e-9
    )
    # a refit on other data learns other filters
    other = clone(est).fit(X[::-1] ** 2)
    assert not np.allclose(other.filters_[0], est.filters_[0])


def test_learned_bank_in_a_list_and_channels():
    X = _rand((10, 6 * 6 * 2), seed=12)
    est = BatchConv2DTransformer(
        filters=["pca", "edges"],
        filter_params={"pca": {"n_filters": 2, "size": 3}},
        image_shape=(6, 6, 2),
        random_state=0,
    )
    assert est.__sklearn_tags__().requires_fit is True
    est.fit(X)
    folded = np.moveaxis(X.reshape(10, 6, 6, 2), -1, 1).reshape(20, 6, 6)
    expected = banks.learn_bank(
        "pca", folded, n_filters=2, size=3, random_state=check_random_state(0)
    )
    assert_allclose(est.filters_[0][:2], expected)
    assert est.filters_[0].shape == (6, 3, 3)  # pca's 2 and edges' 4, one 3x3 group
    Xt = est.transform(X)
    assert Xt.shape == (10, 2 * 6 * 36)  # 2 channels x 6 filters, depthwise
    assert est.get_feature_names_out()[6 * 36] == "conv_f0_ch1_r0_c0"


# --- filter_params -------------------------------------------------------------


def test_filter_params_flat_for_a_name():
    est = BatchConv2DTransformer(filters="gabor", filter_params={"n_orientations": 8})
    assert est.fit(_rand((2, 64))).filters_[0].shape == (16, 7, 7)


def test_filter_params_mapping_for_a_list():
    est = BatchConv2DTransformer(
        filters=["gabor", "edges"], filter_params={"gabor": {"size": 3, "n_orientations": 2}}
    )
    assert est.fit(_rand((2, 64))).filters_[0].shape == (2 * 2 + 4, 3, 3)


@pytest.mark.parametrize(
    "filters, filter_params, error, match",
    [
        (
            "gabor",
            {"orientations": 8},
            TypeError,
            r"unexpected parameter\(s\) orientations.*accepts",
        ),
        (["gabor", "edges"], {"size": 5}, ValueError, r"maps the bank names.*'size'"),
        (["gabor"], {"gabor": 5}, TypeError, r"filter_params\['gabor'\] must be a dict"),
        ("random", {"random_state": 0}, ValueError, "random_state"),
        (BANK_3, {"size": 3}, ValueError, "only applies to named banks"),
        ("gabor", {"frequencies": 0.9}, ValueError, r"frequencies.*\(0, 0.5\]"),
    ],
)
def test_filter_params_errors(filters, filter_params, error, match):
    est = BatchConv2DTransformer(filters=filters, filter_params=filter_params)
    with pytest.raises(error, match=match):
        est.fit(_rand((2, 64)))
    if isinstance(filters, str) and filters == "random":  # drawn by fit: transform asks for fit
        with pytest.raises(NotFittedError):
            est.transform(_rand((2, 64)))
        return
    with pytest.raises(error, match=match):
        est.transform(_rand((2, 64)))


# --- bad input gets a clear error -----------------------------------------------


@pytest.mark.parametrize(
    "params, X_shape, error, match",
    [
        (
            {"image_shape": (8, 8)},
            (3, 50),
            ValueError,
            r"n_features=50.*image_shape=\(8, 8\).*8 \* 8 = 64",
        ),
        ({"image_shape": (4, 4, 3)}, (3, 50), ValueError, r"n_features=50.*4 \* 4 \* 3 = 48"),
        ({"image_shape": (4, 4.0)}, (3, 16), TypeError, "image_shape must be"),
        ({"image_shape": (4, 2, 1, 2)}, (3, 16), TypeError, "image_shape must be"),
        ({"image_shape": (0, 4)}, (3, 0 + 16), ValueError, "positive"),
        (
            {"filters": np.ones((9, 9)), "padding": "valid"},
            (3, 64),
            ValueError,
            r"9x9.*do not fit.*8x8.*n_features=64",
        ),
        ({"filters": np.ones(3)}, (3, 64), ValueError, r"2-D \(p, q\), 3-D.*got 1-D"),
        ({"filters": np.ones((1, 1, 1, 1, 1))}, (3, 64), ValueError, r"got 5-D"),
        ({"filters": [[1.0, 0.0], [0.0, -1.0]]}, (3, 64), ValueError, r"filters\[0\] must be 2-D"),
        (
            {"filters": np.ones((2, 3, 3, 2)), "image_shape": (4, 4, 3)},
            (3, 48),
            ValueError,
            "have 2 channels, but the images have 3",
        ),
        ({"filters": np.ones((2, 3, 3, 2))}, (3, 64), ValueError, r"no channel axis.*image_shape"),
        ({"filters": []}, (3, 64), ValueError, "empty list"),
        ({"filters": np.zeros((0, 3, 3))}, (3, 64), ValueError, "must not be empty"),
        (
            {"filters": np.array([[np.nan, 1.0], [0.0, 1.0]])},
            (3, 64),
            ValueError,
            "NaN or infinity",
        ),
        (
            {"filters": [np.ones((3, 3)), np.full((2, 2), np.inf)]},
            (3, 64),
            ValueError,
            r"filters\[1\] must be finite; got NaN or infinity",
        ),
        ({"filters": np.array([["a", "b"], ["c", "d"]])}, (3, 64), TypeError, "real numbers"),
        ({"filters": np.ones((2, 2), dtype=complex)}, (3, 64), TypeError, "real numbers"),
        ({"filters": [np.ones((2, 2)), object()]}, (3, 64), TypeError, "real numbers"),
        ({"filters": "no_such_bank"}, (3, 64), ValueError, r"filters.*among.*'edges'"),
        (
            {"filters": ["edges", "no_such_bank"]},
            (3, 64),
            ValueError,
            r"unknown filter bank 'no_such_bank'.*known banks: default, dog, edges",
        ),
        ({"padding": "bogus"}, (3, 64), ValueError, "padding"),
        ({"padding": -1}, (3, 64), ValueError, "padding"),
        ({"padding": (1, 2, 3)}, (3, 64), TypeError, "padding"),
        ({"padding": (1, -2)}, (3, 64), ValueError, "padding"),
        ({"stride": 0}, (3, 64), ValueError, "stride"),
        ({"stride": (1, 0)}, (3, 64), ValueError, "stride"),
        ({"stride": 1.5}, (3, 64), TypeError, "stride"),
        ({"dilation": 0}, (3, 64), ValueError, "dilation"),
        ({"pad_mode": "zeros"}, (3, 64), ValueError, "pad_mode"),
        ({"activation": "tanh"}, (3, 64), ValueError, "activation"),
        ({"pooling": "median"}, (3, 64), ValueError, "pooling"),
        ({"pooling": "max", "pool_size": 0}, (3, 64), ValueError, "pool_size"),
        ({"pooling": "max", "pool_size": (2, 0)}, (3, 64), ValueError, "size must be >= 1"),
        (
            {"pooling": "max", "pool_size": 9},
            (3, 64),
            ValueError,
            r"pooling window 9x9 is larger than the 8x8 maps",
        ),
        (
            {"pooling": "max", "pool_size": 3, "padding": "valid", "filters": np.ones((7, 7))},
            (3, 64),
            ValueError,
            r"3x3 is larger than the 2x2 maps",
        ),
        ({"pooling": "max", "pool_grid": 9}, (3, 64), ValueError, "grid 9x9 has more regions"),
        (
            {"pooling": "max", "pool_grid": 2, "pool_stride": 1},
            (3, 64),
            ValueError,
            "stride cannot be given with grid",
        ),
        ({"pooling": "max", "pool_stride": 0}, (3, 64), ValueError, "pool_stride"),
        ({"method": "fastest"}, (3, 64), ValueError, "method"),
        ({"n_jobs": 1.5}, (3, 64), TypeError, "n_jobs"),
    ],
)
def test_errors(params, X_shape, error, match):
    X = _rand(X_shape)
    est = BatchConv2DTransformer(**params)
    with pytest.raises(error, match=match):
        est.fit(X)
    with pytest.raises(error, match=match):
        est.transform(X)  # transform validates on its own (stateless)


def test_errors_on_the_shape_of_X(digits):
    X, _ = digits
    est = BatchConv2DTransformer()
    with pytest.raises(ValueError, match=r"2-D.*1-D array of shape \(64,\).*reshape\(1, -1\)"):
        est.fit(X[0])
    with pytest.raises(ValueError, match=r"2-D.*1-D array of shape \(64,\)"):
        est.transform(X[0])
    images = X.reshape(-1, 8, 8)
    with pytest.raises(ValueError, match=r"3-D array of shape \(300, 8, 8\).*image_shape=\(h, w\)"):
        est.fit(images)
    with pytest.raises(ValueError, match=r"4-D array.*image_shape=\(h, w, c\)"):
        est.transform(images[..., None])
    with pytest.raises(ValueError, match="0 sample"):
        est.fit(X[:0])
    bad = X[:5].copy()
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.transform(bad)
    with pytest.raises(ValueError, match="infinity"):
        est.fit(np.where(bad == bad, bad, np.inf))
    fitted = BatchConv2DTransformer().fit(X)
    with pytest.raises(
        ValueError, match="X has 49 features, but BatchConv2DTransformer is expecting 64"
    ):
        fitted.transform(_rand((2, 49)))


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_input_is_refused_with_a_hint(fmt):
    X = sparse.random(5, 64, density=0.3, format=fmt, random_state=0)
    est = BatchConv2DTransformer()
    for method in (est.fit, est.transform, est.fit_transform):
        with pytest.raises(TypeError, match=r"dense.*toarray\(\)"):
            method(X)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
@pytest.mark.parametrize("order", ["C", "F"])
def test_input_never_modified(dtype, order, digits):
    X = np.array(digits[0][:40], dtype=dtype, order=order)
    before = X.copy(order="K")
    for params in [
        {},
        {"activation": "relu"},
        {"activation": "square", "pooling": "sum"},
        {"filters": "pca", "filter_params": {"n_filters": 2, "size": 3}},
    ]:
        BatchConv2DTransformer(**params).fit_transform(X)
        assert_array_equal(X, before)
        assert X.dtype == before.dtype and X.flags.f_contiguous == before.flags.f_contiguous


def test_filters_parameter_never_modified():
    bank = _rand((2, 3, 3))
    before = bank.copy()
    est = BatchConv2DTransformer(filters=bank, flip=True).fit(_rand((3, 64)))
    est.filters_[0][...] = 0  # the fitted copy is not the user's array
    assert_array_equal(bank, before)
    assert est.filters is bank


# --- dtypes, memory and chunks -------------------------------------------------


def test_float32_in_float32_out(digits):
    X = digits[0][:20]
    for params in [
        {},
        {"activation": "split", "pooling": "mean"},
        {"filters": ["edges", BANK_2x4]},
    ]:
        est = BatchConv2DTransformer(**params)
        out32 = est.fit_transform(X.astype(np.float32))
        out64 = est.fit_transform(X)
        assert out32.dtype == np.float32 and out64.dtype == np.float64
        assert_allclose(out32, out64, rtol=1e-4, atol=1e-3)
    assert BatchConv2DTransformer().transform(X.astype(np.int64)).dtype == np.float64


def test_big_endian_rows_give_the_native_rows_result(digits):
    # The same numbers in the other byte order: the same features, float32
    # kept (np.dtype(">f4") != np.float32 on a little-endian machine).
    X = digits[0][:20]
    for dtype in (np.float32, np.float64):
        est = BatchConv2DTransformer(filters=["edges", BANK_2x4], activation="abs", pooling="max")
        native = est.fit_transform(X.astype(dtype))
        swapped = X.astype(np.dtype(dtype).newbyteorder(">"))
        out = est.fit_transform(swapped)
        assert out.dtype == dtype
        assert_array_equal(out, native)


def _record_conv2d(monkeypatch):
    calls = []
    original = layout_module.conv2d

    def recording(images, filters, **kwargs):
        calls.append((images, kwargs))
        return original(images, filters, **kwargs)

    monkeypatch.setattr(layout_module, "conv2d", recording)
    return calls


def test_images_are_a_view_of_X(monkeypatch, digits):
    X = np.ascontiguousarray(digits[0])
    calls = _record_conv2d(monkeypatch)
    BatchConv2DTransformer(filters="edges").transform(X)
    assert calls and all(np.shares_memory(images, X) for images, _ in calls)
    assert calls[0][1]["n_jobs"] is None  # one thread by default


def test_chunks_follow_working_memory(monkeypatch, digits, capsys):
    X = digits[0]
    est = BatchConv2DTransformer(filters="default", verbose=1)
    reference = est.transform(X)
    calls = _record_conv2d(monkeypatch)
    n_maps = clone(est).fit(X).filters_[0].shape[0]
    # n_maps maps of 8x8 float64 per row; half of 0.1 MiB for the maps
    with sklearn.config_context(working_memory=0.1):
        chunked = est.transform(X)
    assert_allclose(chunked, reference, rtol=1e-12, atol=1e-12)  # sums in another order
    sizes = [len(images) for images, _ in calls]
    assert max(sizes) == int(0.05 * 2**20 // (n_maps * 64 * 8)) and sum(sizes) == len(X)
    err = capsys.readouterr().err
    assert err.count("[BatchConv2DTransformer] rows") == len(calls) + 1  # +1: reference
    assert "of 300 (100%)" in err


def test_int_input_cast_per_chunk(monkeypatch, digits):
    X = digits[0].astype(np.int64)
    calls = _record_conv2d(monkeypatch)
    with sklearn.config_context(working_memory=0.1):
        out = BatchConv2DTransformer().transform(X)
    assert out.dtype == np.float64 and len(calls) > 1
    assert all(images.dtype == np.float64 for images, _ in calls)
    expected = BatchConv2DTransformer().transform(X.astype(np.float64))
    assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_n_jobs_and_methods_agree(digits):
    X = digits[0]
    ref = BatchConv2DTransformer(activation="relu", pooling="max").transform(X)
    threads = BatchConv2DTransformer(activation="relu", pooling="max", n_jobs=2).transform(X)
    assert_allclose(threads, ref, rtol=1e-12, atol=1e-12)
    einsum = BatchConv2DTransformer(activation="relu", pooling="max", method="einsum")
    assert_allclose(einsum.transform(X), ref, rtol=1e-12, atol=1e-12)


def test_verbose_zero_is_silent(capsys, digits):
    BatchConv2DTransformer().transform(digits[0])
    assert capsys.readouterr().err == ""


# --- feature names and set_output ---------------------------------------------------


def test_feature_names_examples():
    est = BatchConv2DTransformer(filters="edges", activation="split", pooling="max").fit(
        _rand((2, 64))
    )
    names = est.get_feature_names_out()
    assert names.dtype == object and len(names) == 4 * 2 * 16 == len(set(names))
    assert names[0] == "conv_f0pos_r0_c0"
    assert names[16 * 7 + 4 * 2 + 3] == "conv_f3neg_r2_c3"
    with pytest.raises(ValueError, match="input_features should have length"):
        est.get_feature_names_out(["a"])
    assert_array_equal(est.get_feature_names_out([f"x{i}" for i in range(64)]), names)


def test_feature_names_global_pooling_and_grid():
    est = BatchConv2DTransformer(filters=BANK_3, pooling="mean", pool_size="global").fit(
        _rand((2, 64))
    )
    assert list(est.get_feature_names_out()) == ["conv_f0_r0_c0", "conv_f1_r0_c0", "conv_f2_r0_c0"]
    est = BatchConv2DTransformer(filters=BANK_3, pooling="max", pool_grid=(1, 2)).fit(
        _rand((2, 64))
    )
    assert list(est.get_feature_names_out()[:2]) == ["conv_f0_r0_c0", "conv_f0_r0_c1"]


def test_set_output_pandas(digits):
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame(digits[0][:10], columns=[f"px{i}" for i in range(64)])
    est = BatchConv2DTransformer(filters="edges", pooling="max").set_output(transform="pandas")
    out = est.fit_transform(X)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == list(est.get_feature_names_out())
    assert_allclose(
        out.to_numpy(),
        BatchConv2DTransformer(filters="edges", pooling="max").transform(X.to_numpy()),
    )
    assert_array_equal(est.feature_names_in_, X.columns)


def test_set_output_polars(digits):
    pl = pytest.importorskip("polars")
    X = digits[0][:10]
    est = BatchConv2DTransformer(filters="edges").set_output(transform="polars")
    out = est.fit_transform(X)
    assert isinstance(out, pl.DataFrame)
    assert out.columns == list(est.get_feature_names_out())


# --- in scikit-learn's machinery ---------------------------------------------------------


def test_pipeline_and_grid_search(digits):
    X, y = digits
    arr_a = _rand((4, 3, 3), seed=20)
    arr_b = _rand((2, 5, 5), seed=21)
    pipe = Pipeline(
        [
            ("conv", BatchConv2DTransformer(activation="relu")),
            ("scale", StandardScaler()),
            ("clf", LogisticRegression(max_iter=300)),
        ]
    )
    search = GridSearchCV(
        pipe,
        param_grid={"conv__filters": [arr_a, arr_b, "edges"], "conv__pooling": [None, "max"]},
        cv=3,
        n_jobs=2,
    )
    search.fit(X, y)
    assert len(search.cv_results_["params"]) == 6
    assert search.best_score_ > 0.8
    best = search.best_estimator_.named_steps["conv"]
    assert isinstance(best.filters, str) or any(
        np.array_equal(best.filters, f) for f in (arr_a, arr_b)
    )
    assert search.score(X, y) > 0.8
    names = search.best_estimator_[:-1].get_feature_names_out()
    assert len(names) == search.best_estimator_[:-2].transform(X[:1]).shape[1]


def test_grid_search_over_filter_params_and_learned(digits):
    X, y = digits
    pipe = Pipeline(
        [
            ("conv", BatchConv2DTransformer(filters="pca", random_state=0, pooling="max")),
            ("clf", LogisticRegression(max_iter=300)),
        ]
    )
    search = GridSearchCV(
        pipe,
        param_grid={
            "conv__filter_params": [{"n_filters": 2, "size": 3}, {"n_filters": 4, "size": 5}]
        },
        cv=2,
    )
    search.fit(X, y)
    assert search.best_estimator_.named_steps["conv"].filters_[0].shape[0] in (2, 4)


@pytest.mark.parametrize(
    "params",
    [
        {"filters": "default", "random_state": 0},
        {"filters": "random"},  # random_state=None: the draw of fit is kept
        {"filters": ["pca", "gabor"], "filter_params": {"pca": {"n_filters": 3, "size": 3}}},
        {"filters": [BANK_3, BANK_2x4], "activation": "split", "pooling": "max"},
    ],
)
def test_clone_pickle_joblib_round_trips(params, digits, tmp_path):
    X = digits[0][:50]
    est = BatchConv2DTransformer(**params).fit(X)
    ref = est.transform(X)
    assert_array_equal(pickle.loads(pickle.dumps(est)).transform(X), ref)
    joblib.dump(est, tmp_path / "conv.joblib")
    assert_array_equal(joblib.load(tmp_path / "conv.joblib").transform(X), ref)
    cloned = clone(est)
    assert not hasattr(cloned, "filters_")
    if params.get("filters") != "random":
        assert_array_equal(cloned.fit(X).transform(X), ref)


def test_repr_and_params_keep_arrays():
    est = BatchConv2DTransformer(filters=BANK_3, pool_size=(2, 2))
    assert "filters=array(" in repr(est)
    assert est.get_params()["filters"] is BANK_3
    assert clone(est).get_params()["filters"] is not BANK_3
    assert_array_equal(clone(est).filters, BANK_3)


def test_public_api():
    assert "BatchConv2DTransformer" in skconv.__all__
    assert skconv.BatchConv2DTransformer is BatchConv2DTransformer
    est = BatchConv2DTransformer()
    assert est.filters == "default" and est.padding == "same" and est.n_jobs is None


# --- the fitted state: learned filters kept, everything else read live ---------------


def test_learned_bank_refuses_an_image_shape_it_was_not_learned_on(digits):
    X, _ = digits
    est = BatchConv2DTransformer(
        filters="pca", filter_params={"n_filters": 2, "size": 3}, random_state=0
    ).fit(X)
    est.set_params(image_shape=(8, 8))  # the same reading of the rows: accepted
    assert est.transform(X[:2]).shape == (2, 2 * 64)
    est.set_params(image_shape=(4, 16))
    for call in (est.transform, lambda X: est.get_feature_names_out()):
        with pytest.raises(ValueError, match=r"image_shape=\(4, 16\).*\(8, 8\).*fit again"):
            call(X[:2])


def test_fixed_fit_then_learned_filters_asks_for_fit(digits):
    X, _ = digits
    est = BatchConv2DTransformer(filters="edges").fit(X)
    est.set_params(filters="pca")
    with pytest.raises(NotFittedError, match="filters='pca'.*fitted with fixed filters"):
        est.transform(X[:2])
    assert est.fit(X).transform(X[:2]).shape == (2, 8 * 64)


def test_fixed_banks_follow_their_parameters_in_place(digits):
    """A bank rebuilt at each transform sees a filter_params list changed in place."""
    X, _ = digits
    sigmas = [1.0]
    est = BatchConv2DTransformer(filters="gaussian", filter_params={"size": 3, "sigmas": sigmas})
    first = est.transform(X[:3])
    sigmas[0] = 2.0
    second = est.transform(X[:3])
    expected = BatchConv2DTransformer(filters=banks.gaussian(3, 2.0)).transform(X[:3])
    assert_array_equal(second, expected)
    assert not np.array_equal(first, second)
    # fit hands out its own writable copies, not the cached read-only banks
    fitted = est.fit(X)
    assert all(f.flags.writeable for f in fitted.filters_)


@pytest.mark.parametrize("output", ["pandas", "polars"])
def test_set_output_names_and_index_with_and_without_fit(digits, output):
    lib = pytest.importorskip(output)
    X = digits[0][:5]
    est = BatchConv2DTransformer(filters="edges", pooling="max", activation="split")
    names = list(clone(est).fit(X).get_feature_names_out())
    expected = est.transform(X)
    unfitted = clone(est).set_output(transform=output).transform(X)
    fitted = clone(est).set_output(transform=output).fit_transform(X)
    for frame in (unfitted, fitted):
        assert isinstance(frame, lib.DataFrame)
        assert list(frame.columns) == names
        assert_array_equal(frame.to_numpy(), expected)
    if output == "pandas":
        Xf = lib.DataFrame(X, index=[10, 11, 12, 13, 14])
        assert list(est.set_output(transform="pandas").transform(Xf).index) == [10, 11, 12, 13, 14]


@pytest.mark.parametrize("X", [[[1 + 1j] * 64], np.full((2, 64), 1j)], ids=["list", "array"])
def test_complex_X_names_X(X):
    with pytest.raises(ValueError, match="X must hold real numbers.*Complex data not supported"):
        BatchConv2DTransformer().transform(X)
