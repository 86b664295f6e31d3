"""ONNX export: onnxruntime's features equal transform's, for every option."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skconv import BatchConv2DTransformer
from skconv.onnx import register, to_onnx

pytest.importorskip("skl2onnx")
ort = pytest.importorskip("onnxruntime")

RNG = np.random.default_rng(0)
EVEN = RNG.standard_normal((3, 4, 2))  # even sizes: where "same" and flip matter
ODD = RNG.standard_normal((2, 3, 3))
MULTI = RNG.standard_normal((2, 3, 2, 3))  # (K, p, q, c): summed over 3 channels


def _session(onx):
    return ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])


def _run(model, X, **kwargs):
    sess = _session(to_onnx(model, X[:1], **kwargs))
    return sess.run(None, {sess.get_inputs()[0].name: X})


def _images(shape, n=4):
    return RNG.standard_normal((n, int(np.prod(shape)))).astype(np.float32)


def _assert_float32_close(actual, expected):
    # Both sides are float32 sums of products: they agree to float32
    # rounding of the largest terms, not bit for bit (different summation order).
    assert actual.dtype == np.float32 and actual.shape == expected.shape
    scale = float(np.abs(expected).max(initial=0.0)) + 1.0
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=2e-6 * scale)


CASES = {
    # padding
    "valid": dict(filters=EVEN, padding="valid"),
    "same-even": dict(filters=EVEN, padding="same"),
    "full": dict(filters=EVEN, padding="full"),
    "int": dict(filters=ODD, padding=2),
    "pair": dict(filters=ODD, padding=(0, 3)),
    "sides": dict(filters=EVEN, padding=((0, 2), (3, 1))),
    # pad modes, with pads wider than the image for numpy's repeated reflection
    "reflect": dict(filters=EVEN, padding="same", pad_mode="reflect"),
    "reflect-wide": dict(filters=ODD, padding=((7, 1), (0, 6)), pad_mode="reflect"),
    "symmetric": dict(filters=EVEN, padding=((2, 6), (1, 0)), pad_mode="symmetric"),
    "edge": dict(filters=ODD, padding=4, pad_mode="edge"),
    "wrap": dict(filters=EVEN, padding=((6, 0), (2, 9)), pad_mode="wrap"),
    # stride, dilation, flip
    "stride": dict(filters=EVEN, stride=2),
    "stride-pair": dict(filters=ODD, stride=(1, 3), padding="valid"),
    "dilation": dict(filters=ODD, dilation=2),
    "dilation-pair-stride": dict(filters=EVEN, dilation=(1, 2), stride=(2, 1), pad_mode="wrap"),
    "flip-same": dict(filters=EVEN, flip=True),
    "flip-reflect": dict(filters=EVEN, flip=True, pad_mode="reflect", padding="full"),
    # activations
    "relu": dict(filters=ODD, activation="relu"),
    "abs": dict(filters=ODD, activation="abs"),
    "square": dict(filters=ODD, activation="square"),
    "split": dict(filters=EVEN, activation="split"),
    # pooling
    "max": dict(filters=ODD, pooling="max"),
    "mean-3": dict(filters=ODD, pooling="mean", pool_size=3),
    "sum-overlap": dict(filters=EVEN, pooling="sum", pool_size=(2, 3), pool_stride=1),
    "max-strided": dict(filters=ODD, activation="split", pooling="max", pool_size=2, pool_stride=3),
    "global-max": dict(filters=ODD, pooling="max", pool_size="global"),
    "global-mean": dict(filters=ODD, pooling="mean", pool_size="global"),
    "global-sum": dict(filters=EVEN, activation="abs", pooling="sum", pool_size="global"),
    "grid-even": dict(filters=ODD, pooling="max", pool_grid=(3, 1), padding="valid"),
    "grid-overlap": dict(filters=ODD, pooling="max", pool_grid=(4, 3)),
    # Regions of unequal sizes or spacing (9 rows in 5, 10 columns in 4, 8 in 3).
    "grid-uneven-max": dict(filters=ODD, pooling="max", pool_grid=(5, 4)),
    "grid-uneven-mean": dict(filters=ODD, pooling="mean", pool_grid=3, padding="valid"),
    "grid-uneven-sum": dict(filters=ODD, activation="split", pooling="sum", pool_grid=(5, 2)),
    # filter banks and size groups
    "named": dict(filters="gabor", activation="abs", pooling="max"),
    "groups": dict(filters=[ODD, EVEN, "sobel"], padding="valid", activation="split"),
    "one-filter": dict(filters=EVEN[0], pooling="mean"),
}

# Image geometry (h, w) of 9 x 10: rows and columns differ, so a transposed
# reshape could not pass.
GEOMETRY = dict(image_shape=(9, 10))


@pytest.mark.parametrize("params", CASES.values(), ids=CASES.keys())
def test_features_match_transform(params):
    model = BatchConv2DTransformer(**GEOMETRY, **params)
    X = _images((9, 10))
    model.fit(X)
    (features,) = _run(model, X)
    _assert_float32_close(features, model.transform(X))


def test_uneven_grid_is_sliced():
    X = _images((9, 10))
    for grid, n_slices in [((4, 3), 0), ((5, 4), 9)]:
        model = BatchConv2DTransformer(filters=ODD, image_shape=(9, 10), pooling="max")
        model.set_params(pool_grid=grid).fit(X)
        ops = [node.op_type for node in to_onnx(model, X[:1]).graph.node]
        assert ops.count("Slice") == n_slices, (grid, ops)


CHANNEL_CASES = {
    "depthwise": dict(filters=EVEN),
    "depthwise-split-pool": dict(filters=ODD, activation="split", pooling="max", stride=2),
    "depthwise-groups": dict(filters=[ODD, EVEN], padding="valid", pad_mode="edge"),
    "summed": dict(filters=MULTI, pad_mode="symmetric", activation="relu"),
    "summed-flip-grid": dict(filters=MULTI, flip=True, pooling="mean", pool_grid=3),
    "mixed": dict(filters=[MULTI, ODD], activation="abs", pooling="sum", pool_size="global"),
}


@pytest.mark.parametrize("params", CHANNEL_CASES.values(), ids=CHANNEL_CASES.keys())
def test_channels_last_rows(params):
    model = BatchConv2DTransformer(image_shape=(7, 6, 3), **params)
    X = _images((7, 6, 3))
    (features,) = _run(model.fit(X), X)
    _assert_float32_close(features, model.transform(X))


def test_multichannel_filter_on_images_without_channels():
    model = BatchConv2DTransformer(filters=MULTI[..., :1], image_shape=(6, 8), padding="valid")
    X = _images((6, 8))
    (features,) = _run(model.fit(X), X)
    _assert_float32_close(features, model.transform(X))


def test_strip_images_and_learned_bank():
    # 30 features: not a square, read as 1 x 30 strips; pca learns the filters.
    X = _images((30,), n=40)
    model = BatchConv2DTransformer(
        filters="pca",
        filter_params={"n_filters": 3, "size": (1, 5)},
        random_state=0,
        activation="split",
        pooling="max",
        pool_size=(1, 3),
    ).fit(X)
    (features,) = _run(model, X)
    _assert_float32_close(features, model.transform(X))


def test_channels_first_rows():
    # channel_axis=0: rows hold the channels one after the other, and
    # image_shape lists the axes in that order (c, h, w).  The oracle is the
    # channels-last transformer on the same images.
    X_last = _images((7, 6, 3))
    reference = BatchConv2DTransformer(filters=[ODD, MULTI], image_shape=(7, 6, 3)).fit(X_last)
    X_first = X_last.reshape(-1, 7, 6, 3).transpose(0, 3, 1, 2).reshape(len(X_last), -1)
    model = clone(reference).set_params(channel_axis=0, image_shape=(3, 7, 6)).fit(X_first)
    (features,) = _run(model, np.ascontiguousarray(X_first))
    _assert_float32_close(features, reference.transform(X_last))


def test_cascade_of_two_transformers():
    # Layer 2 reads layer 1's 3 maps of 9 x 10 as one 27 x 10 image.
    X = _images((9, 10))
    first = BatchConv2DTransformer(filters=EVEN, image_shape=(9, 10), activation="abs")
    second = BatchConv2DTransformer(filters=ODD, image_shape=(27, 10), pooling="max")
    cascade = make_pipeline(first, second).fit(X)
    (features,) = _run(cascade, X)
    _assert_float32_close(features, cascade.transform(X))


def test_cascade_channel_axis():
    if "channel_axis" not in BatchConv2DTransformer().get_params():
        pytest.skip("BatchConv2DTransformer has no channel_axis parameter")
    X = _images((9, 10))
    first = BatchConv2DTransformer(filters=EVEN, image_shape=(9, 10), activation="relu")
    second = BatchConv2DTransformer(
        filters=MULTI, image_shape=(3, 9, 10), channel_axis=0, pooling="max"
    )
    cascade = make_pipeline(first, second).fit(X)
    (features,) = _run(cascade, X)
    _assert_float32_close(features, cascade.transform(X))


def test_pipeline_predictions():
    X, y = load_digits(return_X_y=True)
    X, y = X[:300].astype(np.float32), y[:300]
    pipe = make_pipeline(
        BatchConv2DTransformer(
            filters=["edges", "gabor"], activation="split", pooling="max", pool_size=4
        ),
        StandardScaler(),
        LogisticRegression(max_iter=200),
    ).fit(X, y)
    label, proba = _run(pipe, X, options={LogisticRegression: {"zipmap": False}})
    np.testing.assert_array_equal(label, pipe.predict(X))
    np.testing.assert_allclose(proba, pipe.predict_proba(X), atol=1e-4)


def test_skl2onnx_after_register():
    from skl2onnx import to_onnx as skl2onnx_to_onnx

    assert register() == "SkconvBatchConv2DTransformer"
    X = _images((9, 10))
    model = BatchConv2DTransformer(filters=ODD, image_shape=(9, 10)).fit(X)
    sess = _session(skl2onnx_to_onnx(model, X[:1], target_opset=13))
    _assert_float32_close(sess.run(None, {"X": X})[0], model.transform(X))


def test_fixed_filters_set_after_fit_are_exported_live():
    # Fixed filters are read with the current parameters, as transform reads
    # them: other filters and padding after fit change the graph too.
    X = _images((9, 10))
    model = BatchConv2DTransformer(filters=ODD, image_shape=(9, 10), pooling="max").fit(X)
    model.set_params(filters=EVEN, padding="valid", activation="split")
    (features,) = _run(model, X)
    _assert_float32_close(features, model.transform(X))
    refitted = clone(model).fit(X)
    _assert_float32_close(features, refitted.transform(X))


def test_empty_batch():
    X = _images((9, 10))
    model = BatchConv2DTransformer(filters=EVEN, image_shape=(9, 10), pooling="max").fit(X)
    (features,) = _run(model, X[:0])
    assert features.shape == (0, model.transform(X[:1]).shape[1])


# --- errors -----------------------------------------------------------------


def test_unfitted_transformer():
    with pytest.raises(ValueError, match="must be fitted"):
        to_onnx(BatchConv2DTransformer(filters="edges"), _images((8, 8)))


def test_float64_input():
    X = _images((8, 8)).astype(np.float64)
    model = BatchConv2DTransformer(filters="edges").fit(X)
    with pytest.raises(TypeError, match="float32"):
        to_onnx(model, X[:1])


@pytest.mark.parametrize(
    "name, value",
    [
        ("activation", "tanh"),
        ("pooling", "median"),
        ("pad_mode", "linear_ramp"),
        ("channel_axis", 1),
        ("padding", "causal"),
        ("pool_size", "local"),
    ],
)
def test_unsupported_option(name, value):
    # Options the transformer itself may gain later must be refused by name,
    # never exported as something else.
    X = _images((8, 8))
    model = BatchConv2DTransformer(filters="edges", pooling="max").fit(X)
    setattr(model, name, value)
    with pytest.raises(ValueError, match=rf"{name}\b.* must be .*{value!r}"):
        to_onnx(model, X[:1])


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int64, np.int32, np.uint8, bool])
def test_input_dtypes_other_than_float32(dtype):
    X = _images((8, 8))
    model = BatchConv2DTransformer(filters="edges").fit(X)
    with pytest.raises(TypeError) as info:
        to_onnx(model, X[:1].astype(dtype))
    assert str(info.value).startswith("X must be float32 for ONNX export")
    assert f"got dtype {np.dtype(dtype)}." in str(info.value)


def test_input_type_of_the_step_goes_through_the_same_rule():
    # skl2onnx called directly after register(): the converter reads the type.
    from skl2onnx import to_onnx as skl2onnx_to_onnx

    register()
    X = _images((8, 8)).astype(np.float64)
    model = BatchConv2DTransformer(filters="edges").fit(X)
    with pytest.raises(TypeError, match=r"^X must be float32 .*; got dtype float64\."):
        skl2onnx_to_onnx(model, X[:1])


@pytest.mark.parametrize("as_sample", [np.ndarray.tolist, lambda X: list(X)], ids=["lists", "rows"])
def test_list_input_is_read_as_float32_rows(as_sample):
    X = _images((9, 10))
    model = BatchConv2DTransformer(filters=ODD, image_shape=(9, 10), pooling="max").fit(X)
    sample = as_sample(X[:1])
    sess = _session(to_onnx(model, sample))
    _assert_float32_close(sess.run(None, {"X": X})[0], model.transform(X))
    assert isinstance(sample, list)  # the caller's list is left as it was


def test_dataframe_input():
    pd = pytest.importorskip("pandas")
    X = _images((9, 10))
    model = BatchConv2DTransformer(filters=ODD, image_shape=(9, 10)).fit(X)
    sess = _session(to_onnx(model, pd.DataFrame(X[:1])))
    _assert_float32_close(sess.run(None, {"X": X})[0], model.transform(X))
    with pytest.raises(TypeError, match=r"^X must be float32 .*; got dtype float64\."):
        to_onnx(model, pd.DataFrame(X[:1].astype(np.float64)))


def test_non_numeric_input():
    X = _images((8, 8))
    model = BatchConv2DTransformer(filters="edges").fit(X)
    with pytest.raises(TypeError, match=r"^X must hold real numbers; got complex dtype"):
        to_onnx(model, X[:1] * 1j)
    with pytest.raises(TypeError, match=r"^X must hold real numbers; got dtype <U1\."):
        to_onnx(model, [["a"] * 64])


def test_initial_types_instead_of_X():
    from skl2onnx.common.data_types import FloatTensorType

    X = _images((8, 8))
    model = BatchConv2DTransformer(filters="edges").fit(X)
    onx = to_onnx(model, None, initial_types=[("X", FloatTensorType([None, 64]))])
    _assert_float32_close(_session(onx).run(None, {"X": X})[0], model.transform(X))
