"""Bad input to every public entry point: a clear error that names the parameter.

One table drives the test: (label, callable, arrays it receives, expected error type(s),
a substring naming the parameter).  After the call every array handed over must be
unchanged (compared to a copy made before).  The command line is checked by a second,
small table run in subprocesses.
"""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from skconv import BatchConv2DTransformer, conv2d, explain_conv2d, filters, pool2d, transform_images

RNG = np.random.default_rng(0)
IMAGES = RNG.random((3, 8, 8))
IMAGES32 = IMAGES.astype(np.float32)
IMAGES_C = RNG.random((3, 8, 8, 2))
BANK = RNG.random((2, 3, 3))
X = RNG.random((6, 64))
X_INT8 = RNG.integers(-100, 100, (6, 64)).astype(np.int8)
TRAIN_IMAGES = RNG.random((4, 8, 8))


def _conv(**kwargs):
    images = kwargs.pop("images", IMAGES)
    bank = kwargs.pop("filters", BANK)
    return lambda: conv2d(images, bank, **kwargs), [images, bank]


def _fit_transform(X=X, **params):
    return lambda: BatchConv2DTransformer(**params).fit_transform(X), [X]


def _transform(X=X, **params):
    return lambda: BatchConv2DTransformer(**params).transform(X), [X]


def _aliased_out():
    """conv2d(x, out[0], out=out): the filters are a view of the output."""
    images = RNG.random((2, 7, 7))
    out = RNG.random((2, 2, 4, 4))
    return lambda: conv2d(images, out[0], out=out, method="taps"), [images]


def _aliased_out_auto():
    images = RNG.random((2, 7, 7))
    out = RNG.random((2, 2, 4, 4))
    return lambda: conv2d(images, out[0], out=out), [images]


def _float32_overflowing_filter():
    """1e39 is finite in float64 but infinite once cast to the images' float32."""
    images = IMAGES32.copy()
    bank = np.full((1, 2, 2), 1e39)
    return lambda: conv2d(images, bank), [images, bank]


def _bank(fn, *args, **kwargs):
    arrays = [a for a in args if isinstance(a, np.ndarray)]
    return lambda: fn(*args, **kwargs), arrays


VE, TE = ValueError, TypeError
EITHER = (TypeError, ValueError)

# (label, (callable, arrays), expected, substring naming the parameter)
CASES = [
    # --- conv2d --------------------------------------------------------------
    ("conv2d images 2-D", _conv(images=IMAGES[0]), VE, "images"),
    ("conv2d images complex", _conv(images=IMAGES.astype(complex)), TE, "images"),
    ("conv2d images NaN", _conv(images=np.where(IMAGES > 0.5, np.nan, IMAGES)), VE, "images"),
    ("conv2d filters 1-D", _conv(filters=np.ones(3)), VE, "filters"),
    ("conv2d filters empty", _conv(filters=np.ones((0, 3, 3))), VE, "filters"),
    ("conv2d filters inf", _conv(filters=np.full((3, 3), np.inf)), VE, "filters"),
    ("conv2d filters too big", _conv(filters=np.ones((9, 9))), VE, "filters"),
    # a masked array's mask would be dropped and the hidden values used
    ("conv2d images masked", _conv(images=np.ma.masked_array(IMAGES, IMAGES > 0.5)), TE, "images"),
    ("conv2d filters masked", _conv(filters=np.ma.masked_array(BANK)), TE, "filters"),
    ("pool2d maps masked", _bank(pool2d, np.ma.masked_array(IMAGES, IMAGES > 0.5)), TE, "maps"),
    ("T X masked", _transform(X=np.ma.masked_array(X, X > 0.5)), TE, "X"),
    ("T X strings", _transform(X=X.astype(str)), VE, "X must hold numbers"),
    (
        "explain_conv2d unknown keyword",
        _bank(explain_conv2d, IMAGES, BANK, strides=2),
        TE,
        "'strides'",
    ),
    (
        "transform_images not a transformer",
        _bank(transform_images, "conv", [IMAGES[0]]),
        TE,
        "transformer",
    ),
    ("conv2d float32 filter 1e39", _float32_overflowing_filter(), VE, "filters"),
    ("conv2d padding name", _conv(padding="middle"), VE, "padding"),
    ("conv2d padding negative", _conv(padding=-1), VE, "padding"),
    ("conv2d padding 10**18", _conv(padding=10**18), VE, "padding"),
    ("conv2d padding float", _conv(padding=1.5), TE, "padding"),
    ("conv2d pad_mode", _conv(pad_mode="mirror", padding=1), VE, "pad_mode"),
    ("conv2d stride 0", _conv(stride=0), VE, "stride"),
    ("conv2d stride 10**30", _conv(stride=10**30), VE, "stride"),
    ("conv2d stride float", _conv(stride=1.0), TE, "stride"),
    ("conv2d dilation 0", _conv(dilation=(1, 0)), VE, "dilation"),
    ("conv2d dilation 10**30", _conv(dilation=10**30, padding="same"), VE, "dilation"),
    ("conv2d flip str", _conv(flip="yes"), TE, "flip"),
    ("conv2d method name", _conv(method="winograd"), VE, "method"),
    ("conv2d method list", _conv(method=["auto"]), EITHER, "method"),
    ("conv2d n_jobs 0", _conv(n_jobs=0), VE, "n_jobs"),
    ("conv2d n_jobs float", _conv(n_jobs=1.5), TE, "n_jobs"),
    ("conv2d out shape", _conv(out=np.empty((3, 2, 5, 5))), VE, "out"),
    ("conv2d out list", _conv(out=[0.0]), TE, "out"),
    ("conv2d out aliases filters (taps)", _aliased_out(), VE, "out"),
    ("conv2d out aliases filters (auto)", _aliased_out_auto(), VE, "out"),
    (
        "conv2d channel mismatch",
        _conv(images=IMAGES_C, filters=np.ones((1, 3, 3, 3))),
        VE,
        "channels",
    ),
    # --- pool2d --------------------------------------------------------------
    ("pool2d maps 2-D", _bank(pool2d, IMAGES[0]), VE, "maps"),
    ("pool2d maps empty axis global", _bank(pool2d, np.zeros((2, 0, 4)), "global"), VE, "maps"),
    ("pool2d maps empty axis window", _bank(pool2d, np.zeros((2, 3, 0)), 1), VE, "maps"),
    ("pool2d maps complex", _bank(pool2d, IMAGES.astype(complex)), TE, "maps"),
    ("pool2d size 0", _bank(pool2d, IMAGES, 0), VE, "size"),
    ("pool2d size name", _bank(pool2d, IMAGES, "all"), VE, "size"),
    ("pool2d size too big", _bank(pool2d, IMAGES, 9), VE, "window"),
    ("pool2d size 10**30", _bank(pool2d, IMAGES, 10**30), VE, "size"),
    ("pool2d stride 0", _bank(pool2d, IMAGES, 2, stride=0), VE, "stride"),
    ("pool2d stride 10**30", _bank(pool2d, IMAGES, 2, stride=10**30), VE, "stride"),
    ("pool2d op", _bank(pool2d, IMAGES, op="median"), VE, "op"),
    ("pool2d grid 0", _bank(pool2d, IMAGES, grid=0), VE, "grid"),
    ("pool2d grid too big", _bank(pool2d, IMAGES, grid=9), VE, "grid"),
    ("pool2d activation", _bank(pool2d, IMAGES, activation="tanh"), VE, "activation"),
    # --- filters -------------------------------------------------------------
    ("edges size even", _bank(filters.edges, size=4), VE, "size"),
    ("edges kind", _bank(filters.edges, kind="canny"), VE, "kind"),
    ("laplacian size", _bank(filters.laplacian, size=1), VE, "size"),
    ("gaussian sigmas 0", _bank(filters.gaussian, sigmas=0.0), VE, "sigmas"),
    ("gaussian sigmas 1e-300", _bank(filters.gaussian, sigmas=1e-300), VE, "sigmas"),
    ("gaussian sigmas 1e300", _bank(filters.gaussian, sigmas=1e300), VE, "sigmas"),
    ("gabor sigma 1e-200", _bank(filters.gabor, sigma=1e-200), VE, "sigma"),
    ("gabor sigma 1e300", _bank(filters.gabor, sigma=1e300), VE, "sigma"),
    ("gabor frequencies 0.6", _bank(filters.gabor, frequencies=0.6), VE, "frequencies"),
    ("gabor n_orientations 0", _bank(filters.gabor, n_orientations=0), VE, "n_orientations"),
    ("log sigmas 1e-300", _bank(filters.log, sigmas=1e-300), VE, "sigmas"),
    ("log sigmas 1e-160", _bank(filters.log, sigmas=1e-160), VE, "sigmas"),
    ("log sigmas 1e300", _bank(filters.log, sigmas=1e300), VE, "sigmas"),
    ("dog sigmas 1e-300", _bank(filters.dog, sigmas=1e-300), VE, "sigmas"),
    ("dog sigmas 1e300", _bank(filters.dog, sigmas=1e300), VE, "sigmas"),
    ("dog ratio 1", _bank(filters.dog, ratio=1.0), VE, "ratio"),
    ("dog ratio 1e300", _bank(filters.dog, ratio=1e300), VE, "ratio"),
    ("random n_filters 0", _bank(filters.random, n_filters=0), VE, "n_filters"),
    ("random size float", _bank(filters.random, size=2.5), TE, "size"),
    ("default size", _bank(filters.default, size=0), VE, "size"),
    ("pca images 2-D", _bank(filters.pca, TRAIN_IMAGES[0]), VE, "images"),
    (
        "pca n_filters too many",
        _bank(filters.pca, TRAIN_IMAGES, n_filters=9, size=3),
        VE,
        "n_filters",
    ),
    ("pca images NaN", _bank(filters.pca, np.full((2, 8, 8), np.nan)), VE, "images"),
    ("kmeans whiten str", _bank(filters.kmeans, TRAIN_IMAGES, whiten="yes"), TE, "whiten"),
    (
        "kmeans contrast_eps -1",
        _bank(filters.kmeans, TRAIN_IMAGES, contrast_eps=-1.0),
        VE,
        "contrast_eps",
    ),
    ("make_bank unknown", _bank(filters.make_bank, "canny"), VE, "canny"),
    ("make_bank learned", _bank(filters.make_bank, "pca"), VE, "pca"),
    ("make_bank bad kwarg", _bank(filters.make_bank, "edges", colour=1), TE, "colour"),
    ("learn_bank fixed", _bank(filters.learn_bank, "edges", TRAIN_IMAGES), VE, "edges"),
    ("combine nothing", _bank(filters.combine), VE, "banks"),
    ("combine NaN", _bank(filters.combine, np.full((1, 3, 3), np.nan)), VE, "bank 0"),
    # --- the transformer, every parameter --------------------------------------
    ("T filters name", _transform(filters="canny"), VE, "filters"),
    ("T filters NaN", _transform(filters=np.full((3, 3), np.nan)), VE, "filters"),
    ("T filters empty list", _transform(filters=[]), VE, "filters"),
    (
        "T filters float32 1e39",
        _transform(X=X.astype(np.float32), filters=np.full((2, 2), 1e39)),
        VE,
        "filters",
    ),
    (
        "T filter_params unknown kwarg",
        _transform(filters="gabor", filter_params={"colour": 1}),
        TE,
        "colour",
    ),
    (
        "T filter_params on array",
        _transform(filters=BANK, filter_params={"size": 3}),
        VE,
        "filter_params",
    ),
    (
        "T filter_params random_state",
        _fit_transform(filters="random", filter_params={"random_state": 0}),
        VE,
        "random_state",
    ),
    (
        "T random_state str",
        _fit_transform(filters="random", random_state="zero"),
        VE,
        "random_state",
    ),
    ("T image_shape mismatch", _transform(image_shape=(7, 7)), VE, "image_shape"),
    ("T image_shape floats", _transform(image_shape=(8.0, 8.0)), TE, "image_shape"),
    ("T padding negative", _transform(padding=-1), VE, "padding"),
    ("T padding 10**12", _transform(filters="edges", padding=10**12), VE, "padding"),
    ("T pad_mode", _transform(pad_mode="mirror"), VE, "pad_mode"),
    ("T stride 0", _transform(stride=0), VE, "stride"),
    ("T stride 10**30", _transform(filters="edges", stride=10**30), VE, "stride"),
    ("T dilation 0", _transform(dilation=0), VE, "dilation"),
    ("T dilation 10**9 same", _transform(filters="edges", dilation=10**9), VE, "dilation"),
    ("T flip str", _transform(flip="yes"), VE, "flip"),
    ("T activation", _transform(activation="tanh"), VE, "activation"),
    ("T pooling", _transform(pooling="median"), VE, "pooling"),
    ("T pool_size 0", _transform(pooling="max", pool_size=0), VE, "pool_size"),
    ("T pool_size too big", _transform(pooling="max", pool_size=9), VE, "pool_size"),
    ("T pool_stride 0", _transform(pooling="max", pool_stride=0), VE, "pool_stride"),
    ("T pool_grid 0", _transform(pooling="max", pool_grid=0), VE, "pool_grid"),
    (
        "T pool_grid with pool_stride",
        _transform(pooling="max", pool_grid=2, pool_stride=1),
        VE,
        "pool_stride",
    ),
    ("T method", _transform(method="winograd"), VE, "method"),
    ("T n_jobs 0", _transform(n_jobs=0), VE, "n_jobs"),
    ("T n_jobs float", _transform(n_jobs=1.5), EITHER, "n_jobs"),
    ("T verbose str", _transform(verbose="loud"), EITHER, "verbose"),
    ("T X 3-D", _transform(X=X.reshape(6, 8, 8)), VE, "X"),
    ("T X NaN", _transform(X=np.where(X > 0.5, np.nan, X)), VE, "NaN"),
    ("T X complex", _transform(X=X.astype(complex)), EITHER, "X"),
    (
        "T pca n_filters too many",
        _fit_transform(filters="pca", filter_params={"n_filters": 9, "size": 3}),
        VE,
        "n_filters",
    ),
    (
        "T kmeans int8 bad size",
        _fit_transform(X=X_INT8, filters="kmeans", filter_params={"size": 1}),
        VE,
        "size",
    ),
]


@pytest.mark.parametrize("call, expected, name", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_names_the_parameter(call, expected, name):
    fn, arrays = call
    before = [np.array(a, copy=True) for a in arrays]
    with pytest.raises(expected, match=re.escape(name)):
        fn()
    for a, b in zip(arrays, before, strict=True):
        np.testing.assert_array_equal(a, b, err_msg="the input array was modified")


def test_aliased_out_would_be_wrong():
    """Why aliasing must be refused: the result differs from the unaliased one."""
    images = np.random.default_rng(1).random((2, 7, 7))
    out = np.random.default_rng(2).random((2, 2, 4, 4))
    expected = conv2d(images, out[0].copy(), method="einsum")
    try:
        result = conv2d(images, out[0], out=out, method="taps")
    except ValueError as exc:
        assert "out" in str(exc)
    else:
        np.testing.assert_allclose(result, expected, atol=1e-12)


# --- the command line ------------------------------------------------------------


def _cli(*args, timeout=60):
    env = dict(os.environ)
    return subprocess.run(
        [sys.executable, "-m", "skconv", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


CLI_CASES = [
    # (args, exit code, substring of stderr+stdout, max seconds)
    (["bench", "--json", "/nonexistent/x.json"], 2, "/nonexistent/x.json", 10),
    (["bench", "--sweep", "-1"], 2, "sweep", 10),
    (["bench", "--pause", "-1"], 2, "pause", 10),
    (["demo", "--n-jobs", "0"], 2, "n_jobs", 20),
    (["demo", "--bogus-flag"], 2, "--bogus-flag", 20),
    (["--bogus-flag"], 2, "--bogus-flag", 20),
    (["bench", "--bogus-flag"], 2, "--bogus-flag", 20),
]


@pytest.mark.parametrize(
    "args, code, text, seconds", CLI_CASES, ids=[" ".join(c[0]) for c in CLI_CASES]
)
def test_cli_bad_arguments_fail_fast_and_say_why(args, code, text, seconds):
    try:
        done = _cli(*args, timeout=seconds)
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"python -m skconv {' '.join(args)} ran over {seconds} s instead of failing fast"
        )
    output = done.stderr + done.stdout
    assert done.returncode == code, output[-2000:]
    assert "Traceback" not in output, output[-2000:]
    assert text in output, output[-2000:]


def test_cli_version_prints_the_version():
    import skconv

    done = _cli("--version", timeout=20)
    version = getattr(skconv, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version

        version = dist_version("skconv")
    assert done.returncode == 0, done.stderr[-2000:]
    assert version in done.stdout + done.stderr
    assert "usage" not in done.stdout.lower()
