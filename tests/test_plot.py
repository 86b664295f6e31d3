"""skconv.plot: axes, titles and the image data of every axes, against naive loops."""

import importlib
import sys

import numpy as np
import pytest
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


@pytest.mark.parametrize("bad", [np.ones(3), np.ones((0, 3, 3)), np.array(["a", "b"])])
def test_bad_bank(bad):
    with pytest.raises(ValueError, match="filters must be"):
        plot_filters(bad)


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


def test_importable_without_matplotlib(monkeypatch):
    import skconv.plot

    # A None entry in sys.modules makes any import of that name fail.
    for name in [m for m in sys.modules if m.split(".")[0] == "matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    module = importlib.reload(skconv.plot)
    with pytest.raises(ImportError, match=r"pip install 'skconv\[plot\]'"):
        module.plot_filters(np.ones((3, 3)))
