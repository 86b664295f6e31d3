"""Property tests of conv2d, pool2d and the transformer against naive float64 oracles.

hypothesis draws shapes, strides, dilations, paddings (names, ints, pairs, per side),
pad modes, layouts (Fortran, negative strides, non-contiguous), dtypes (float32/64,
ints, bool), channels (depthwise and summed) and every strategy.  The oracles are the
definitions, written here with one loop over filter taps.  The profile (conftest.py)
is small and derandomized by default; ``HYPOTHESIS_PROFILE=slow`` runs long.

The end of the file checks the transformer's state rules (set_output without fit,
set_params after fit, dask under pandas output) and integer input to the learned banks.
"""

import numpy as np
import pytest
import sklearn
from hypothesis import given, settings
from hypothesis import strategies as st

from skconv import BatchConv2DTransformer, conv2d, filters, pool2d

METHODS = ["auto", "einsum", "taps", "rowgemm", "rowgemm_wide", "toeplitz", "operator", "separable"]
PAD_MODES = ["constant", "reflect", "symmetric", "edge", "wrap"]
DTYPES = [np.float64, np.float32, np.int16, np.uint8, np.bool_]


# --- oracles --------------------------------------------------------------------


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _pad_widths(padding, span, flip):
    """((top, bottom), (left, right)) from the documented meaning of ``padding``."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "full":
        return (span[0] - 1, span[0] - 1), (span[1] - 1, span[1] - 1)
    if padding == "same":
        sides = []
        for s in span:
            small, big = (s - 1) // 2, s - 1 - (s - 1) // 2
            sides.append((big, small) if flip else (small, big))
        return tuple(sides)
    if isinstance(padding, int):
        return (padding, padding), (padding, padding)
    if isinstance(padding[0], int):
        return (padding[0], padding[0]), (padding[1], padding[1])
    return tuple(map(tuple, padding))


def naive_conv2d(images, bank, padding, pad_mode, stride, dilation, flip):
    """conv2d's definition in float64: (b, h, w[, c]) images, (p, q) / (K, p, q) / (K, p, q, c)."""
    x = np.asarray(images, dtype=np.float64)
    f = np.asarray(bank, dtype=np.float64)
    channels = x.ndim == 4
    squeeze = f.ndim == 2
    if squeeze:
        f = f[None]
    summed = f.ndim == 4
    if flip:
        f = f[:, ::-1, ::-1]
    if not channels:
        x = x[..., None]
    if not summed:  # depthwise: each channel is an image
        b, h, w, c = x.shape
        x = x.transpose(0, 3, 1, 2).reshape(b * c, h, w, 1)
        f = f[..., None]
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    k, p, q, _ = f.shape
    span = (dh * (p - 1) + 1, dw * (q - 1) + 1)
    pad = _pad_widths(padding, span, flip)
    x = np.pad(x, ((0, 0), pad[0], pad[1], (0, 0)), mode=pad_mode)
    oh = (x.shape[1] - span[0]) // sh + 1
    ow = (x.shape[2] - span[1]) // sw + 1
    out = np.zeros((x.shape[0], k, oh, ow))
    for u in range(p):
        for v in range(q):
            window = x[
                :,
                u * dh : u * dh + sh * (oh - 1) + 1 : sh,
                v * dw : v * dw + sw * (ow - 1) + 1 : sw,
            ]
            out += np.einsum("nijc,kc->nkij", window, f[:, u, v])
    if not summed:
        c = images.shape[3] if channels else 1
        out = out.reshape(-1, c * k, oh, ow)
    if squeeze and not channels:
        out = out[:, 0]
    return out


def naive_pool2d(maps, size, stride, op, grid):
    x = np.asarray(maps, dtype=np.float64)
    reduce = {"max": np.max, "mean": np.mean, "sum": np.sum}[op]
    h, w = x.shape[-2:]
    if grid is not None:
        gh, gw = _pair(grid)
        rows = [(i * h // gh, -(-(i + 1) * h // gh)) for i in range(gh)]
        cols = [(j * w // gw, -(-(j + 1) * w // gw)) for j in range(gw)]
        return np.stack(
            [
                np.stack([reduce(x[..., r0:r1, c0:c1], axis=(-2, -1)) for c0, c1 in cols], -1)
                for r0, r1 in rows
            ],
            -2,
        )
    if size == "global":
        return reduce(x, axis=(-2, -1))[..., None, None]
    ph, pw = _pair(size)
    sh, sw = (ph, pw) if stride is None else _pair(stride)
    oh, ow = (h - ph) // sh + 1, (w - pw) // sw + 1
    out = np.empty(x.shape[:-2] + (oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[..., i, j] = reduce(
                x[..., i * sh : i * sh + ph, j * sw : j * sw + pw], axis=(-2, -1)
            )
    return out


# --- strategies -----------------------------------------------------------------


def _layout(array, kind):
    """The same values in another memory layout."""
    if kind == "fortran":
        return np.asfortranarray(array)
    if kind == "negative":
        flipped = np.ascontiguousarray(array[:, ::-1])
        return flipped[:, ::-1]
    if kind == "strided":
        big = np.zeros((array.shape[0] * 2,) + array.shape[1:], array.dtype)
        big[::2] = array
        return big[::2]
    return array


def _values(rng, shape, dtype):
    if dtype == np.bool_:
        return rng.random(shape) > 0.5
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -50), min(info.max, 50), shape, endpoint=True).astype(
            dtype
        )
    return (rng.standard_normal(shape) * 3).astype(dtype)


ints_or_pairs = st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3)))
paddings = st.one_of(
    st.sampled_from(["valid", "same", "full"]),
    st.integers(0, 3),
    st.tuples(st.integers(0, 3), st.integers(0, 3)),
    st.tuples(
        st.tuples(st.integers(0, 3), st.integers(0, 3)),
        st.tuples(st.integers(0, 3), st.integers(0, 3)),
    ),
)


@st.composite
def conv_problems(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    b = draw(st.integers(0, 4))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    channels = draw(st.sampled_from([None, 1, 2, 3]))
    kind = draw(st.sampled_from(["single", "bank", "summed"] if channels else ["single", "bank"]))
    k = draw(st.integers(1, 3))
    p, q = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dtype = draw(st.sampled_from(DTYPES))
    image_shape = (b, h, w) + ((channels,) if channels else ())
    images = _layout(
        _values(rng, image_shape, dtype),
        draw(st.sampled_from(["c", "fortran", "negative", "strided"])),
    )
    if kind == "single":
        bank = rng.standard_normal((p, q))
    elif kind == "bank":
        bank = rng.standard_normal((k, p, q))
    else:
        bank = rng.standard_normal((k, p, q, channels))
    return dict(
        images=images,
        bank=bank,
        padding=draw(paddings),
        pad_mode=draw(st.sampled_from(PAD_MODES)),
        stride=draw(ints_or_pairs),
        dilation=draw(
            st.one_of(
                st.just(1), st.integers(1, 2), st.tuples(st.integers(1, 2), st.integers(1, 2))
            )
        ),
        flip=draw(st.booleans()),
        method=draw(st.sampled_from(METHODS)),
    )


def _fits(images, bank, padding, stride, dilation, flip):
    p, q = bank.shape[-2:] if bank.ndim < 4 else bank.shape[1:3]
    (dh, dw) = _pair(dilation)
    span = (dh * (p - 1) + 1, dw * (q - 1) + 1)
    (t, bt), (lf, r) = _pad_widths(padding, span, flip)
    return span[0] <= images.shape[1] + t + bt and span[1] <= images.shape[2] + lf + r


def _tolerance(images, bank, dtype):
    """Absolute tolerance: rounding of a sum of |f| |x| products in ``dtype``."""
    scale = float(np.abs(np.asarray(images, np.float64)).max(initial=0)) * float(np.abs(bank).sum())
    eps = np.finfo(dtype).eps
    return 64 * eps * max(scale, 1.0)


@given(conv_problems())
def test_conv2d_matches_naive_oracle(problem):
    images, bank, method = problem["images"], problem["bank"], problem["method"]
    geometry = {k: problem[k] for k in ("padding", "stride", "dilation", "flip")}
    if not _fits(images, bank, **geometry):
        with pytest.raises(ValueError):
            conv2d(images, bank, pad_mode=problem["pad_mode"], method=method, **geometry)
        return
    before = images.copy()
    try:
        result = conv2d(images, bank, pad_mode=problem["pad_mode"], method=method, **geometry)
    except ValueError as exc:
        if "does not support" in str(exc) or "method" in str(exc):
            return  # the strategy refuses this problem
        raise
    expected = naive_conv2d(images, bank, pad_mode=problem["pad_mode"], **geometry)
    dtype = np.float32 if images.dtype == np.float32 else np.float64
    assert result.dtype == dtype
    assert result.shape == expected.shape
    np.testing.assert_allclose(result, expected, rtol=0, atol=_tolerance(images, bank, dtype))
    np.testing.assert_array_equal(images, before)


@st.composite
def pool_problems(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    four_d = draw(st.booleans())
    h, w = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    shape = (draw(st.integers(0, 3)),) + ((draw(st.integers(1, 3)),) if four_d else ()) + (h, w)
    dtype = draw(st.sampled_from(DTYPES))
    maps = _layout(
        _values(rng, shape, dtype), draw(st.sampled_from(["c", "fortran", "negative", "strided"]))
    )
    mode = draw(st.sampled_from(["window", "global", "grid"]))
    size, stride, grid = 2, None, None
    if mode == "window":
        size = draw(st.tuples(st.integers(1, h), st.integers(1, w)))
        stride = draw(st.one_of(st.none(), ints_or_pairs))
    elif mode == "global":
        size = "global"
    else:
        grid = draw(st.tuples(st.integers(1, h), st.integers(1, w)))
    return maps, size, stride, draw(st.sampled_from(["max", "mean", "sum"])), grid


@given(pool_problems())
def test_pool2d_matches_naive_oracle(problem):
    maps, size, stride, op, grid = problem
    before = maps.copy()
    result = pool2d(maps, size, stride=stride, op=op, grid=grid)
    expected = naive_pool2d(maps, size, stride, op, grid)
    assert result.dtype == (np.float32 if maps.dtype == np.float32 else np.float64)
    assert result.shape == expected.shape
    tol = 1e-5 if maps.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(
        result, expected, rtol=tol, atol=tol * max(1.0, np.abs(expected).max(initial=0))
    )
    np.testing.assert_array_equal(maps, before)


@st.composite
def transformer_problems(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    h, w = draw(st.integers(3, 8)), draw(st.integers(3, 8))
    channels = draw(st.sampled_from([None, 2]))
    image_shape = (h, w) + ((channels,) if channels else ())
    n = draw(st.integers(0, 5))
    dtype = draw(st.sampled_from([np.float64, np.float32, np.int16]))
    X = _values(rng, (n, int(np.prod(image_shape))), dtype)
    k, p, q = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    summed = channels is not None and draw(st.booleans())
    bank = rng.standard_normal((k, p, q, channels) if summed else (k, p, q))
    params = dict(
        filters=bank,
        image_shape=image_shape,
        padding=draw(st.sampled_from(["valid", "same", 1])),
        pad_mode=draw(st.sampled_from(PAD_MODES)),
        stride=draw(st.integers(1, 2)),
        dilation=draw(st.integers(1, 2)),
        flip=draw(st.booleans()),
        activation=draw(st.sampled_from([None, "relu", "abs", "square", "split"])),
        pooling=draw(st.sampled_from([None, "max", "mean", "sum"])),
        pool_size=draw(st.sampled_from([1, 2, "global"])),
        method=draw(st.sampled_from(METHODS)),
    )
    return X, params


def _activate(maps, activation):
    if activation == "relu":
        return np.maximum(maps, 0)
    if activation == "abs":
        return np.abs(maps)
    if activation == "square":
        return maps**2
    if activation == "split":
        n, k, h, w = maps.shape
        return np.stack([np.maximum(maps, 0), np.maximum(-maps, 0)], axis=2).reshape(n, 2 * k, h, w)
    return maps


@given(transformer_problems())
def test_transformer_matches_naive_oracle(problem):
    X, params = problem
    conv = BatchConv2DTransformer(**params)
    before = X.copy()
    try:
        Xt = (
            conv.fit_transform(X)
            if len(X)
            else conv.fit(np.ones((1, X.shape[1]), X.dtype)).transform(X)
        )
    except ValueError as exc:
        message = str(exc)
        if "does not support" in message or "do not fit" in message or "larger than" in message:
            return  # strategy refusal, or filters / pooling window bigger than the maps
        raise
    images = X.reshape((len(X),) + params["image_shape"]).astype(np.float64)
    maps = naive_conv2d(
        images,
        params["filters"],
        params["padding"],
        params["pad_mode"],
        params["stride"],
        params["dilation"],
        params["flip"],
    )
    maps = _activate(maps, params["activation"])
    if params["pooling"] is not None:
        maps = naive_pool2d(maps, params["pool_size"], None, params["pooling"], None)
    expected = maps.reshape(len(X), int(np.prod(maps.shape[1:])))
    dtype = np.float32 if X.dtype == np.float32 else np.float64
    assert Xt.dtype == dtype and Xt.shape == expected.shape
    assert len(conv.get_feature_names_out()) == Xt.shape[1]
    atol = _tolerance(images, params["filters"], dtype)
    if params["activation"] == "square":
        atol *= 4 * max(1.0, float(np.abs(expected).max(initial=0)))
    np.testing.assert_allclose(Xt, expected, rtol=1e-5 if dtype == np.float32 else 1e-10, atol=atol)
    np.testing.assert_array_equal(X, before)


@pytest.mark.slow
@settings(max_examples=2000)
@given(conv_problems())
def test_conv2d_matches_naive_oracle_long(problem):
    test_conv2d_matches_naive_oracle.hypothesis.inner_test(problem)


# --- the transformer's state: set_output, set_params, dask ------------------------

X64 = np.random.default_rng(0).random((12, 64))


@pytest.mark.parametrize("output", ["pandas", "polars"])
def test_set_output_works_without_fit(output):
    pytest.importorskip(output)
    expected = BatchConv2DTransformer(filters="edges").transform(X64)
    names = BatchConv2DTransformer(filters="edges").fit(X64).get_feature_names_out()
    frame = BatchConv2DTransformer(filters="edges").set_output(transform=output).transform(X64)
    assert list(frame.columns) == list(names)
    np.testing.assert_array_equal(np.asarray(frame.to_numpy()), expected)


def test_global_transform_output_works_without_fit():
    pytest.importorskip("pandas")
    expected = BatchConv2DTransformer(filters="edges").transform(X64)
    with sklearn.config_context(transform_output="pandas"):
        frame = BatchConv2DTransformer(filters="edges").transform(X64)
    np.testing.assert_array_equal(frame.to_numpy(), expected)


# Alternative values for every parameter, valid on 8x8 images with the "edges" bank.
CHANGES = [
    ("filters", "gabor"),
    ("filters", np.ones((2, 3, 3))),
    ("filter_params", {"size": 5}),
    ("random_state", 3),
    ("image_shape", (4, 16)),
    ("padding", "valid"),
    ("padding", ((0, 1), (2, 0))),
    ("pad_mode", "reflect"),
    ("stride", 2),
    ("dilation", 2),
    ("flip", True),
    ("activation", "split"),
    ("pooling", "max"),
    ("pool_size", 4),
    ("pool_stride", 1),
    ("pool_grid", 2),
    ("method", "einsum"),
    ("n_jobs", 2),
    ("verbose", 0),
]
BASE = dict(filters="edges", padding="valid", pooling="mean", pool_size=2)


def _params_after(name, value):
    params = dict(BASE, **{name: value})
    if name == "filter_params":
        params["filters"] = "gabor"
    return params


@pytest.mark.parametrize(
    "name, value", CHANGES, ids=[f"{n}={v!r}"[:30].replace("\n", "") for n, v in CHANGES]
)
def test_set_params_after_fit_fixed_filters_read_live(name, value):
    """Fixed filters: fit learns nothing, so every parameter is read at transform."""
    start = dict(BASE)
    if name == "filter_params":
        start["filters"] = "gabor"
    conv = BatchConv2DTransformer(**start).fit(X64)
    conv.set_params(**_params_after(name, value))
    fresh = BatchConv2DTransformer(**_params_after(name, value))
    expected = fresh.fit(X64).transform(X64)
    result = conv.transform(X64)
    np.testing.assert_array_equal(result, expected)
    names = conv.get_feature_names_out()
    assert len(names) == result.shape[1]
    assert list(names) == list(fresh.get_feature_names_out())


LEARNED = dict(
    filters="pca",
    filter_params={"n_filters": 3, "size": 3},
    random_state=0,
    padding="valid",
    pooling="mean",
    pool_size=2,
)
LEARNED_PARAMS = {"filters", "filter_params", "random_state", "image_shape"}
LEARNED_CHANGES = [
    ("filters", "edges"),
    ("filters", "kmeans"),
    ("filter_params", {"n_filters": 2, "size": 3}),
    ("random_state", 5),
    ("image_shape", (4, 16)),
] + [c for c in CHANGES if c[0] not in LEARNED_PARAMS]


@pytest.mark.parametrize(
    "name, value",
    LEARNED_CHANGES,
    ids=[f"{n}={v!r}"[:30].replace("\n", "") for n, v in LEARNED_CHANGES],
)
def test_set_params_after_fit_learned_bank(name, value):
    """Learned filters are kept until the next fit; everything else is read live.

    A change to what fit learned either leaves the output exactly as fitted, or
    raises a ValueError naming the parameter; column names always match columns.
    """
    conv = BatchConv2DTransformer(**LEARNED).fit(X64)
    learned = [f.copy() for f in conv.filters_]
    before = conv.transform(X64)
    conv.set_params(**{name: value})
    try:
        result = conv.transform(X64)
    except ValueError as exc:
        assert name in LEARNED_PARAMS and name in str(exc), exc
        return
    names = conv.get_feature_names_out()
    assert len(names) == result.shape[1]
    if name in LEARNED_PARAMS:
        np.testing.assert_array_equal(result, before)
        return
    # Not learned: the fitted filters, as a fixed bank, with the new parameter.
    params = dict(LEARNED, filters=learned[0], filter_params=None, **{name: value})
    expected = BatchConv2DTransformer(**params).fit(X64).transform(X64)
    np.testing.assert_array_equal(result, expected)


RANDOM = dict(
    filters="random",
    filter_params={"n_filters": 3},
    random_state=0,
    padding="valid",
    pooling="mean",
    pool_size=2,
)
RANDOM_CHANGES = [
    ("random_state", 3),
    ("filter_params", {"n_filters": 2}),
    ("filters", "edges"),
    ("image_shape", (4, 16)),
    ("stride", 2),
    ("activation", "split"),
]


@pytest.mark.parametrize(
    "name, value", RANDOM_CHANGES, ids=[f"{n}={v!r}" for n, v in RANDOM_CHANGES]
)
def test_set_params_after_fit_random_bank_keeps_its_draw(name, value):
    """The "random" bank is drawn by fit, like RBFSampler's weights, and kept until the next fit.

    Its filters do not depend on the images, so every other parameter (image_shape
    included) is read live.
    """
    conv = BatchConv2DTransformer(**RANDOM).fit(X64)
    drawn = conv.filters_[0].copy()
    np.testing.assert_array_equal(drawn, filters.random(n_filters=3, random_state=0))
    conv.set_params(**{name: value})
    result = conv.transform(X64)
    names = conv.get_feature_names_out()
    live = {} if name in ("filters", "filter_params", "random_state") else {name: value}
    fixed = BatchConv2DTransformer(**dict(RANDOM, filters=drawn, filter_params=None, **live))
    np.testing.assert_array_equal(result, fixed.fit(X64).transform(X64))
    assert list(names) == list(fixed.get_feature_names_out())
    # The next fit draws (or builds) the filters of the new parameters.
    if name == "filters":
        conv.set_params(filter_params=None)  # {"n_filters": 3} is for "random" only
    refit = conv.fit(X64).transform(X64)
    fresh = BatchConv2DTransformer(**conv.get_params()).fit(X64).transform(X64)
    np.testing.assert_array_equal(refit, fresh)


def test_set_params_image_shape_pandas_output_after_fit():
    pytest.importorskip("pandas")
    conv = BatchConv2DTransformer(filters="edges", padding="valid").set_output(transform="pandas")
    conv.fit(X64).set_params(image_shape=(4, 16))
    frame = conv.transform(X64)
    assert frame.shape[1] == len(conv.get_feature_names_out())


def test_dask_input_stays_lazy_under_pandas_output():
    da = pytest.importorskip("dask.array")
    pytest.importorskip("pandas")
    computed = []

    def load(block):
        computed.append(block.shape)
        return block

    X = da.from_array(X64, chunks=(6, 64)).map_blocks(load, meta=np.empty((0, 0)))
    conv = BatchConv2DTransformer(filters="edges").fit(X64)
    with sklearn.config_context(transform_output="pandas"):
        try:
            result = conv.transform(X)
        except (TypeError, ValueError) as exc:
            assert "dask" in str(exc)
            result = None
    assert computed == [], "the dask input was computed by transform"
    if result is not None:
        assert type(result).__module__.split(".")[0] in ("dask", "dask_expr"), type(result)
        np.testing.assert_allclose(np.asarray(result.compute()), conv.transform(X64))


# --- integer input to the learned banks ---------------------------------------------

INT_IMAGES = np.random.default_rng(3).integers(-100, 100, (20, 8, 8), endpoint=True)


@pytest.mark.parametrize(
    "bank, dtype",
    [
        ("kmeans", np.int8),
        ("kmeans", np.uint8),
        ("pca", np.int8),
        ("pca", np.int16),
        ("pca", np.uint8),
    ],
)
def test_learned_banks_integer_images_equal_float(bank, dtype):
    images = (
        INT_IMAGES.astype(dtype)
        if np.dtype(dtype).kind == "i"
        else (INT_IMAGES + 100).astype(dtype)
    )
    params = dict(n_filters=3, size=3, n_patches=200, random_state=0)
    fn = getattr(filters, bank)
    np.testing.assert_allclose(
        fn(images, **params), fn(images.astype(np.float64), **params), rtol=1e-9, atol=1e-12
    )
