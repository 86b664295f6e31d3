"""skconv.plot: axes, titles and the image data of every axes, against naive loops."""

import importlib
import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline

from skconv import BatchConv2DTransformer, filters
from skconv.plot import coef_to_maps, plot_coef, plot_filters, plot_maps

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
plt = pytest.importorskip("matplotlib.pyplot")

RNG = np.random.default_rng(0)
ODD = RNG.standard_normal((2, 3, 3))
EVEN = RNG.standard_normal((3, 4, 2))
MULTI = RNG.standard_normal((2, 3, 2, 3))


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _data(fig):
    return [np.asarray(ax.images[0].get_array()) for ax in fig.axes]


def _titles(fig):
    return [ax.get_title() for ax in fig.axes]


def _correlate(image, f, pad=0):
    """One 2-D cross-correlation, one output pixel at a time (zero padding)."""
    x = np.pad(image, pad)
    p, q = f.shape
    out = np.empty((x.shape[0] - p + 1, x.shape[1] - q + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = (x[i : i + p, j : j + q] * f).sum()
    return out


def _max_pool(m, size=2):
    h, w = m.shape[0] // size, m.shape[1] // size
    return np.array(
        [
            [m[i * size : (i + 1) * size, j * size : (j + 1) * size].max() for j in range(w)]
            for i in range(h)
        ]
    )


# --- plot_filters ----------------------------------------------------------


def test_filters_of_a_bank():
    fig = plot_filters(EVEN)
    assert _titles(fig) == ["f0", "f1", "f2"]
    for image, f in zip(_data(fig), EVEN, strict=True):
        np.testing.assert_array_equal(image, f)


def test_one_filter():
    fig = plot_filters(ODD[0])
    assert _titles(fig) == ["f0"]
    np.testing.assert_array_equal(_data(fig)[0], ODD[0])


def test_multichannel_bank_one_row_per_filter():
    fig = plot_filters(MULTI)
    assert _titles(fig) == ["f0 ch0", "f0 ch1", "f0 ch2", "f1 ch0", "f1 ch1", "f1 ch2"]
    for i, image in enumerate(_data(fig)):
        np.testing.assert_array_equal(image, MULTI[i // 3, :, :, i % 3])
    assert [ax.get_subplotspec().rowspan.start for ax in fig.axes] == [0, 0, 0, 1, 1, 1]


def test_list_and_transformer_number_filters_across_groups():
    expected = list(ODD) + list(EVEN)
    for source in ([ODD, EVEN], BatchConv2DTransformer(filters=[ODD, EVEN]).fit(np.ones((1, 64)))):
        fig = plot_filters(source)
        assert _titles(fig) == ["f0", "f1", "f2", "f3", "f4"]
        for image, f in zip(_data(fig), expected, strict=True):
            np.testing.assert_array_equal(image, f)


def test_stateless_transformer_is_not_fitted_in_place():
    conv = BatchConv2DTransformer(filters="sobel")
    fig = plot_filters(conv)
    bank = filters.sobel()
    assert len(fig.axes) == len(bank)
    for image, f in zip(_data(fig), bank, strict=True):
        np.testing.assert_array_equal(image, f)
    assert not hasattr(conv, "filters_")


def test_learned_bank_needs_fit():
    with pytest.raises(NotFittedError, match="fit"):
        plot_filters(BatchConv2DTransformer(filters="pca"))


@pytest.mark.parametrize("bad", [np.ones(3), np.ones((0, 3, 3))])
def test_bad_bank(bad):
    with pytest.raises(ValueError, match="filters must be"):
        plot_filters(bad)


def test_bank_of_strings():
    with pytest.raises(TypeError, match="filters must hold real numbers; got dtype <U1"):
        plot_filters(np.array([["a", "b"]]))


# --- plot_maps -------------------------------------------------------------


def test_maps_depthwise_split_pooled():
    h, w, c = 6, 7, 2
    image = RNG.standard_normal((h, w, c))
    conv = BatchConv2DTransformer(
        filters=ODD, image_shape=(h, w, c), activation="split", pooling="max"
    ).fit(image.reshape(1, -1))
    fig = plot_maps(conv, image.ravel())
    expected, titles = [], []
    for ch in range(c):  # channel-major, then pos/neg pairs
        for k in range(len(ODD)):
            m = _correlate(image[:, :, ch], ODD[k], pad=1)
            for sign, part in (("pos", np.maximum(m, 0)), ("neg", np.maximum(-m, 0))):
                expected.append(_max_pool(part))
                titles.append(f"f{k} {sign} ch{ch}")
    assert _titles(fig) == titles
    for got, want in zip(_data(fig), expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-12)


def test_maps_of_a_stateless_transformer_and_several_groups():
    image = RNG.standard_normal(30)  # a 1 x 30 strip
    strips = [RNG.standard_normal((1, 3)), RNG.standard_normal((2, 1, 5))]
    conv = BatchConv2DTransformer(filters=strips, padding="valid", activation="abs")
    fig = plot_maps(conv, image)
    expected = [np.abs(_correlate(image[None], f)) for f in [strips[0]] + list(strips[1])]
    assert _titles(fig) == ["f0", "f1", "f2"]
    for got, want in zip(_data(fig), expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-12)


@pytest.mark.parametrize("as_list", [False, True])
def test_maps_of_a_cascade(as_list):
    image = RNG.standard_normal((6, 7))
    first = BatchConv2DTransformer(
        filters=EVEN, image_shape=(6, 7), padding="valid", activation="abs"
    )
    second = BatchConv2DTransformer(filters=ODD, image_shape=(9, 6), padding="valid")
    pipe = Pipeline([("one", first), ("two", second)]).fit(image.reshape(1, -1))
    fig = plot_maps([first, second] if as_list else pipe, image.ravel())
    layer1 = [np.abs(_correlate(image, f)) for f in EVEN]  # 3 maps of 3 x 6
    layer2 = [_correlate(np.vstack(layer1), f) for f in ODD]  # read as one 9 x 6 image
    names = ("layer0", "layer1") if as_list else ("one", "two")
    assert _titles(fig) == [f"{names[0]} f{k}" for k in range(3)] + [
        f"{names[1]} f{k}" for k in range(2)
    ]
    for got, want in zip(_data(fig), layer1 + layer2, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-12)
    # Each layer starts a new row of axes.
    assert fig.axes[3].get_subplotspec().colspan.start == 0


def test_maps_bad_row():
    conv = BatchConv2DTransformer(filters=ODD).fit(np.ones((2, 64)))
    with pytest.raises(ValueError, match="row must be one image"):
        plot_maps(conv, np.ones((2, 64)))
    with pytest.raises(ValueError, match="transformer must be"):
        plot_maps([], np.ones(64))


# --- coef_to_maps and plot_coef ----------------------------------------------


def _fitted_two_groups():
    # Group 1: ODD 2 filters x 2 channels x 2 signs = 8 maps of 4 x 5;
    # group 2: EVEN 3 x 2 x 2 = 12 maps of 3 x 6 ("valid" on 6 x 7 images).
    conv = BatchConv2DTransformer(
        filters=[ODD, EVEN], image_shape=(6, 7, 2), padding="valid", activation="split"
    )
    return conv.fit(np.zeros((1, 84)))


def test_coef_to_maps_round_trip():
    conv = _fitted_two_groups()
    maps = [RNG.standard_normal((3, 8, 4, 5)), RNG.standard_normal((3, 12, 3, 6))]
    coef = np.concatenate([m.reshape(3, -1) for m in maps], axis=1)  # the README's layout
    assert coef.shape[1] == len(conv.get_feature_names_out())
    for got, want in zip(coef_to_maps(conv, coef), maps, strict=True):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(coef_to_maps(conv, coef[1]), maps, strict=True):
        np.testing.assert_array_equal(got, want[1])


def test_coef_to_maps_of_transformed_row_are_the_maps():
    conv = _fitted_two_groups()
    image = RNG.standard_normal((6, 7, 2))
    got = coef_to_maps(conv, conv.transform(image.reshape(1, -1))[0])
    for bank, maps in zip([ODD, EVEN], got, strict=True):
        want = []
        for ch in range(2):
            for f in bank:
                m = _correlate(image[:, :, ch], f)
                want += [np.maximum(m, 0), np.maximum(-m, 0)]
        np.testing.assert_allclose(maps, np.array(want), atol=1e-12)


def test_coef_to_maps_bad_coef():
    conv = _fitted_two_groups()
    # 8 maps of 4 x 5 and 12 maps of 3 x 6: 376 columns.
    with pytest.raises(ValueError, match=r"coef must be an array of shape \(376,\).*\(375,\)"):
        coef_to_maps(conv, np.ones(375))
    with pytest.raises(NotFittedError):
        coef_to_maps(BatchConv2DTransformer(), np.ones(64))


def test_plot_coef():
    conv = BatchConv2DTransformer(filters=ODD, image_shape=(6, 7), activation="split").fit(
        np.zeros((1, 42))
    )
    maps = RNG.standard_normal((2, 4, 6, 7))  # 2 classes x (f0 pos, f0 neg, f1 pos, f1 neg)
    fig = plot_coef(conv, maps.reshape(2, -1), class_names=["a", "b"])
    labels = ["f0 pos", "f0 neg", "f1 pos", "f1 neg"]
    assert _titles(fig) == [f"{c}: {lab}" for c in "ab" for lab in labels]
    for got, want in zip(_data(fig), maps.reshape(8, 6, 7), strict=True):
        np.testing.assert_array_equal(got, want)
    # One colour scale per class, centred on 0.
    for i, ax in enumerate(fig.axes):
        limit = np.abs(maps[i // 4]).max()
        np.testing.assert_allclose(ax.images[0].get_clim(), (-limit, limit))
    one = plot_coef(conv, maps[0].ravel())
    assert _titles(one) == labels
    with pytest.raises(ValueError, match="class_names must have 2 names"):
        plot_coef(conv, maps.reshape(2, -1), class_names=["a"])


# --- bad input ---------------------------------------------------------------


def _small_conv():
    """4 maps of 8 x 8 ("edges" on 8 x 8 images): 256 columns."""
    return BatchConv2DTransformer(filters="edges").fit(np.zeros((1, 64)))


def _call(function, **kwargs):
    """Call one plot function on small valid input with ``kwargs``."""
    if function is plot_filters:
        return plot_filters(ODD, **kwargs)
    if function is plot_maps:
        return plot_maps(_small_conv(), np.ones(64), **kwargs)
    return plot_coef(_small_conv(), np.ones((2, 256)), **kwargs)


@pytest.mark.parametrize("function", [plot_filters, plot_maps])
@pytest.mark.parametrize(
    "n_cols, error, message",
    [
        (1.5, TypeError, "n_cols must be an int; got 1.5."),
        (True, TypeError, "n_cols must be an int; got True."),
        ("2", TypeError, "n_cols must be an int; got '2'."),
        (0, ValueError, "n_cols must be an int >= 1; got 0."),
        (-1, ValueError, "n_cols must be an int >= 1; got -1."),
    ],
)
def test_n_cols_is_an_int_of_at_least_one(function, n_cols, error, message):
    with pytest.raises(error) as info:
        _call(function, n_cols=n_cols)
    assert str(info.value) == message
    assert not plt.get_fignums()  # refused before a figure was made


@pytest.mark.parametrize("function", [plot_filters, plot_maps])
def test_n_cols_beyond_the_axes_is_clamped(function):
    # A grid of a million empty columns would be a figure 1.8 million inches wide.
    fig = _call(function, n_cols=10**6)
    assert fig.axes[0].get_subplotspec().get_gridspec().ncols == len(fig.axes)
    assert fig.get_size_inches()[0] == pytest.approx(1.8 * len(fig.axes))


@pytest.mark.parametrize("function", [plot_filters, plot_maps, plot_coef])
def test_fig_is_a_figure(function):
    with pytest.raises(
        TypeError, match=r"^fig must be a matplotlib Figure or SubFigure .*; got 'x'\.$"
    ):
        _call(function, fig="x")
    axes = plt.figure().add_subplot()
    with pytest.raises(TypeError, match="fig must be a matplotlib Figure"):
        _call(function, fig=axes)
    sub = plt.figure().subfigures(1, 2)[1]
    assert _call(function, fig=sub) is sub


@pytest.mark.parametrize("function", [plot_filters, plot_maps, plot_coef])
def test_cmap_is_checked_before_drawing(function):
    with pytest.raises(ValueError, match=r"cmap must be the name of a registered .*; got 'nope'\."):
        _call(function, cmap="nope")
    with pytest.raises(TypeError, match=r"cmap must be .*; got None\."):
        _call(function, cmap=None)
    assert not plt.get_fignums()  # no half-drawn figure left open in pyplot
    gray = matplotlib.colormaps["gray"]
    assert _call(function, cmap=gray).axes[0].images[0].get_cmap().name == "gray"


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: plot_filters(ODD * 1j), "filters"),
        (lambda: plot_filters([ODD, EVEN * 1j]), r"filters\[1\]"),
        (lambda: coef_to_maps(_small_conv(), np.ones(256) * 1j), "coef"),
        (lambda: plot_coef(_small_conv(), np.ones((2, 256)) * 1j), "coef"),
        (lambda: plot_maps(_small_conv(), np.ones(64) * 1j), "row"),
    ],
)
def test_complex_arrays_are_described_not_printed(call, name):
    with pytest.raises(
        TypeError, match=rf"^{name} must hold real numbers; got complex dtype"
    ) as info:
        call()
    assert "j," not in str(info.value) and len(str(info.value)) < 200


def test_wrong_shapes_give_shape_and_dtype():
    with pytest.raises(ValueError, match=r"got an array of shape \(3,\) and dtype int64\.$"):
        plot_filters(np.arange(3))
    with pytest.raises(ValueError, match=r"got an array of shape \(2, 255\) and dtype float64\.$"):
        coef_to_maps(_small_conv(), np.ones((2, 255)))
    with pytest.raises(ValueError, match=r"got an array of shape \(5,\) and dtype float64\.$"):
        plot_maps(np.zeros(5), np.ones(64))


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: plot_filters(np.full((2, 3, 3), np.nan)), "filters"),
        (lambda: plot_filters([ODD, np.array([[1.0, np.inf]])]), r"filters\[1\]"),
        (lambda: plot_coef(_small_conv(), np.full(256, -np.inf)), "coef"),
    ],
)
def test_non_finite_values_are_refused(call, name):
    # NaN or infinity as colour limit would leave the panels blank or flat.
    with pytest.raises(ValueError, match=rf"^{name} must be finite"):
        call()


def test_transformer_of_coef_is_a_batchconv2dtransformer():
    for call in (coef_to_maps, plot_coef):
        with pytest.raises(TypeError, match=r"transformer must be a fitted .*; got 'x'\."):
            call("x", np.ones(256))


def test_coef_without_rows():
    with pytest.raises(ValueError, match=r"coef must have at least one row .*shape \(0, 256\)"):
        plot_coef(_small_conv(), np.ones((0, 256)))


@pytest.mark.parametrize("names", ["ab", b"ab", {"a", "b"}, 2, np.array([["a", "b"]])])
def test_class_names_is_a_list_not_a_str(names):
    with pytest.raises(TypeError, match="class_names must be a list of names"):
        plot_coef(_small_conv(), np.ones((2, 256)), class_names=names)


def test_class_names_from_classes_():
    conv = _small_conv()
    fig = plot_coef(conv, np.ones((2, 256)), class_names=np.array([3, 7]))
    assert _titles(fig)[::4] == ["3: f0", "7: f0"]
    fig = plot_coef(conv, np.ones((2, 256)), class_names=("a", "b"))
    assert _titles(fig)[::4] == ["a: f0", "b: f0"]
    with pytest.raises(ValueError, match=r"2 names.*shape \(3,\) and dtype int64\.$"):
        plot_coef(conv, np.ones((2, 256)), class_names=np.arange(3))


def test_figures_of_more_than_max_panels_are_refused(monkeypatch):
    import skconv.plot

    with pytest.raises(ValueError, match=r"filters must give at most 500 axes .*got 100000 axes"):
        plot_filters(np.zeros((100_000, 3, 3)))
    # The cap lowered to 4 axes: exactly 4 are drawn, 5 are refused, for each function.
    monkeypatch.setattr(skconv.plot, "MAX_PANELS", 4)
    assert len(plot_filters(np.ones((4, 2, 2))).axes) == 4
    with pytest.raises(ValueError, match=r"filters must give at most 4 axes .*got 6 axes"):
        plot_filters(np.ones((2, 2, 2, 3)))
    conv = _small_conv()
    assert len(plot_maps(conv, np.ones(64)).axes) == 4
    with pytest.raises(ValueError, match=r"transformer must give at most 4 axes .*got 8 axes"):
        plot_maps(clone(conv).set_params(activation="split").fit(np.zeros((1, 64))), np.ones(64))
    assert len(plot_coef(conv, np.ones(256)).axes) == 4
    with pytest.raises(ValueError, match=r"coef must give at most 4 axes .*got 8 axes.*coef\[:k\]"):
        plot_coef(conv, np.ones((2, 256)))
    assert len(plt.get_fignums()) == 3  # the three drawn figures only


def test_importable_without_matplotlib(monkeypatch):
    import skconv.plot

    # A None entry in sys.modules makes any import of that name fail.
    for name in [m for m in sys.modules if m.split(".")[0] == "matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    module = importlib.reload(skconv.plot)
    with pytest.raises(ImportError, match=r"pip install 'skconv\[plot\]'"):
        module.plot_filters(np.ones((3, 3)))
