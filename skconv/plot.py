"""Plots of filter banks, feature maps and linear models' weights.

matplotlib is an optional dependency (``pip install "skconv[plot]"``): it is
imported when a plotting function runs, never when this module is imported.
Every function returns a :class:`matplotlib.figure.Figure` with one titled
axes per image, at most ``MAX_PANELS`` (500) axes: matplotlib spends seconds
per few hundred axes, so a larger figure raises a ValueError naming what to
select instead of running for minutes.  :func:`coef_to_maps` needs no
matplotlib.

The map layout (which columns of ``transform`` form which map) is read from
the transformer's ``get_feature_names_out()``
(``conv_f{k}[pos|neg][_ch{c}]_r{i}_c{j}``) and its ``filters_``, so it follows
whatever options produced the columns.

Examples
--------
>>> import matplotlib
>>> matplotlib.use("Agg")
>>> from sklearn.datasets import load_digits
>>> from skconv import BatchConv2DTransformer
>>> from skconv.plot import plot_filters, plot_maps
>>> X = load_digits().data
>>> conv = BatchConv2DTransformer(filters="edges", activation="split",
...                               pooling="max").fit(X)
>>> len(plot_filters(conv).axes)
4
>>> fig = plot_maps(conv, X[0])
>>> [ax.get_title() for ax in fig.axes[:3]]
['f0 pos', 'f0 neg', 'f1 pos']
"""

import math
import re

import numpy as np

from ._validation import as_real_array, check_finite, check_int

__all__ = ["coef_to_maps", "plot_coef", "plot_filters", "plot_maps"]

# matplotlib takes milliseconds per axes: 100 000 filters would run for many
# minutes, and a few hundred axes are already too small to read.
MAX_PANELS = 500

_NAME = re.compile(r"^.*_f(?P<k>\d+)(?P<sign>pos|neg)?(?:_ch(?P<ch>\d+))?_r(?P<r>\d+)_c(?P<c>\d+)$")


def _pyplot(caller):
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            f"{caller} needs matplotlib; install it with: pip install 'skconv[plot]'."
        ) from exc
    return plt


def _is_transformer(obj):
    from . import BatchConv2DTransformer

    return isinstance(obj, BatchConv2DTransformer)


def _resolved(transformer, X=None):
    """The transformer itself when fitted, else a fitted clone if it is stateless.

    A stateless transformer (fixed filters) is fitted on ``X`` (or one zero
    image of its ``image_shape``): fit only resolves the filters and the
    geometry.  A transformer with a learned bank must be fitted by the user.
    """
    if hasattr(transformer, "filters_"):
        return transformer
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError
    from sklearn.utils import get_tags

    if get_tags(transformer).requires_fit:
        raise NotFittedError(
            f"This {type(transformer).__name__} learns its filters (filters="
            f"{transformer.filters!r}): call fit(X) before plotting it."
        )
    if X is None:
        # Fixed banks do not depend on the images: any image they fit on will do
        # (an axis left to inference, None, is given 64 pixels or channels).
        shape = [64, 64] if transformer.image_shape is None else transformer.image_shape
        X = np.zeros((1, math.prod(64 if s is None else s for s in shape)))
    return clone(transformer).fit(X)


def _check_n_cols(n_cols):
    return None if n_cols is None else check_int(n_cols, "n_cols", minimum=1)


def _check_fig(fig):
    from matplotlib.figure import FigureBase

    # FigureBase: a SubFigure holds axes like a Figure does.
    if fig is not None and not isinstance(fig, FigureBase):
        raise TypeError(
            "fig must be a matplotlib Figure or SubFigure to add the axes to, or None to "
            f"create one; got {_describe(fig)}."
        )
    return fig


def _check_cmap(cmap):
    import matplotlib
    from matplotlib.colors import Colormap

    if isinstance(cmap, Colormap) or (isinstance(cmap, str) and cmap in matplotlib.colormaps):
        return cmap
    # Checked before the figure is made: pyplot would keep a half-drawn figure open.
    error = ValueError if isinstance(cmap, str) else TypeError
    raise error(
        "cmap must be the name of a registered matplotlib colormap (e.g. 'RdBu_r') or a "
        f"Colormap; got {_describe(cmap)}."
    )


def _check_panels(n_panels, name, fewer):
    if n_panels > MAX_PANELS:
        raise ValueError(
            f"{name} must give at most {MAX_PANELS} axes (MAX_PANELS) for one figure; got "
            f"{n_panels} axes. {fewer}"
        )


def _grid(plt, fig, n_panels, n_cols, panel_size=1.8):
    n_cols = min(n_panels, n_cols or math.ceil(math.sqrt(n_panels)))
    n_rows = max(1, math.ceil(n_panels / n_cols))
    if fig is None:
        fig = plt.figure(figsize=(panel_size * n_cols, panel_size * n_rows + 0.3))
    grid = fig.add_gridspec(n_rows, n_cols)
    axes = [fig.add_subplot(grid[i // n_cols, i % n_cols]) for i in range(n_panels)]
    return fig, axes


def _show(ax, image, title, cmap, limit=None):
    if limit is None:
        limit = float(np.abs(image).max(initial=0.0)) or 1.0
    ax.imshow(image, cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


# --- filters ---------------------------------------------------------------


def plot_filters(filters, *, n_cols=None, cmap="RdBu_r", fig=None):
    """Plot a filter bank, one axes per filter (and per channel).

    Parameters
    ----------
    filters : ndarray, list of ndarrays or BatchConv2DTransformer
        A (p, q) filter, a (K, p, q) bank, a (K, p, q, c) multichannel bank
        (one axes per filter and channel, titled ``f{k} ch{c}``), a list of
        those (filters numbered across the list, as in feature names), or a
        :class:`~skconv.BatchConv2DTransformer`.  A fitted transformer shows
        its ``filters_``; an unfitted one with fixed filters shows the
        filters ``fit`` would build (``"random"`` draws them now: set an int
        ``random_state`` to see the filters ``transform`` uses); one with a
        learned bank raises :class:`~sklearn.exceptions.NotFittedError`.
        Filters are shown as stored: ``flip=True`` flips them only when
        correlating.  Values must be finite.  At most ``MAX_PANELS`` (500)
        axes: more raise a ValueError; plot a slice of the bank (of
        ``filters_`` for a transformer).
    n_cols : int >= 1, default=None
        Axes per row (at most the number of axes); None makes a square-ish
        grid (the channels of a (K, p, q, c) bank when all filters are
        multichannel).
    cmap : str or matplotlib.colors.Colormap, default="RdBu_r"
        Colormap, centred on 0 (each filter scaled to its own largest
        magnitude).
    fig : matplotlib.figure.Figure or matplotlib.figure.SubFigure, default=None
        Figure to draw in; None creates one.

    Returns
    -------
    fig : matplotlib.figure.Figure
        One axes per filter (per filter and channel), in filter order.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from skconv.plot import plot_filters
    >>> fig = plot_filters(np.ones((2, 3, 3, 3)))
    >>> [ax.get_title() for ax in fig.axes]
    ['f0 ch0', 'f0 ch1', 'f0 ch2', 'f1 ch0', 'f1 ch1', 'f1 ch2']
    """
    plt = _pyplot("plot_filters")
    n_cols, cmap, fig = _check_n_cols(n_cols), _check_cmap(cmap), _check_fig(fig)
    if _is_transformer(filters):
        banks = _resolved(filters).filters_
    elif isinstance(filters, (list, tuple)):
        banks = [_check_bank(f, f"filters[{i}]") for i, f in enumerate(filters)]
    else:
        banks = [_check_bank(filters, "filters")]
    if not banks:
        raise ValueError(
            f"filters must hold at least one filter; got an empty {type(filters).__name__}."
        )
    panels = []
    first = 0
    for bank in banks:
        bank = np.asarray(bank)
        if bank.ndim == 2:
            bank = bank[None]
        for k in range(bank.shape[0]):
            if bank.ndim == 4:
                for ch in range(bank.shape[3]):
                    panels.append((bank[k, :, :, ch], f"f{first + k} ch{ch}"))
            else:
                panels.append((bank[k], f"f{first + k}"))
        first += bank.shape[0]
    _check_panels(
        len(panels),
        "filters",
        "Plot fewer filters: a slice of the bank (of filters_ for a transformer).",
    )
    if n_cols is None and all(np.ndim(b) == 4 for b in banks):
        n_cols = max(np.shape(b)[3] for b in banks)
    fig, axes = _grid(plt, fig, len(panels), n_cols)
    for ax, (image, title) in zip(axes, panels, strict=True):
        _show(ax, image, title, cmap)
    return fig


def _check_bank(value, name):
    array = as_real_array(value, name)
    if array.ndim not in (2, 3, 4) or 0 in array.shape:
        raise ValueError(
            f"{name} must be a non-empty real (p, q), (K, p, q) or (K, p, q, c) array; "
            f"got {_describe(array)}."
        )
    # A NaN or infinite value would void the colour scale of its whole panel.
    check_finite(array, name)
    return array


def _describe(value):
    """``repr(value)``, but shape and dtype for an array (its values could fill pages)."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    return repr(value)


def _check_transformer(transformer):
    if not _is_transformer(transformer):
        raise TypeError(
            f"transformer must be a fitted BatchConv2DTransformer; got {_describe(transformer)}."
        )
    return transformer


# --- map layout ------------------------------------------------------------


def _layout(transformer):
    """Per size group, the list of maps (label, first column, rows, cols)."""
    names = transformer.get_feature_names_out()
    maps = []  # [key, label, first column, cells]
    for column, name in enumerate(names):
        match = _NAME.match(str(name))
        if match is None:
            raise ValueError(
                "feature names must read prefix_f{k}[pos|neg][_ch{c}]_r{i}_c{j}; got "
                f"{name!r}."
            )
        k, sign, ch = int(match["k"]), match["sign"], match["ch"]
        cell = (int(match["r"]), int(match["c"]))
        key = (k, sign, ch)
        if not maps or maps[-1][0] != key or cell == (0, 0):
            label = f"f{k}" + (f" {sign}" if sign else "") + (f" ch{ch}" if ch else "")
            maps.append([key, label, column, []])
        maps[-1][3].append(cell)
    # The filters' global numbers say which size group each map belongs to.
    bounds = np.cumsum([np.shape(bank)[0] for bank in transformer.filters_])
    groups = [[] for _ in bounds]
    for key, label, start, cells in maps:
        rows = max(r for r, _ in cells) + 1
        cols = max(c for _, c in cells) + 1
        if cells != [(r, c) for r in range(rows) for c in range(cols)]:
            raise ValueError(
                f"the columns of map {label!r} are not a row-major {rows}x{cols} grid."
            )
        groups[int(np.searchsorted(bounds, key[0], side="right"))].append(
            (label, start, rows, cols)
        )
    return [group for group in groups if group]


def coef_to_maps(transformer, coef):
    """Put weights over the transformer's output columns back into maps.

    Parameters
    ----------
    transformer : BatchConv2DTransformer
        A fitted transformer (e.g. ``pipeline["conv"]``).
    coef : array-like of shape (n_features_out,) or (n_classes, n_features_out)
        One value per output column of ``transform``, e.g. the ``coef_`` of
        a linear model fitted on its features (after a
        :class:`~sklearn.preprocessing.StandardScaler`, which keeps the
        columns), or one transformed row.

    Returns
    -------
    maps : list of ndarray
        One array per size group of ``filters_``, of shape (n_maps, rows,
        cols) for 1-D ``coef`` and (n_classes, n_maps, rows, cols) for 2-D
        ``coef``; maps in column order (channel-major, then pos/neg pairs
        with ``activation="split"``, as the feature names say).

    Examples
    --------
    >>> import numpy as np
    >>> from skconv import BatchConv2DTransformer
    >>> from skconv.plot import coef_to_maps
    >>> X = np.random.default_rng(0).random((5, 64))
    >>> conv = BatchConv2DTransformer(filters="edges", pooling="max").fit(X)
    >>> [m.shape for m in coef_to_maps(conv, conv.transform(X)[0])]
    [(4, 4, 4)]
    >>> coef_to_maps(conv, np.zeros((3, 64)))[0].shape
    (3, 4, 4, 4)
    """
    groups = _layout(_check_transformer(transformer))
    n_out = sum(rows * cols for group in groups for _, _, rows, cols in group)
    array = as_real_array(coef, "coef")
    if array.ndim not in (1, 2) or array.shape[-1] != n_out:
        raise ValueError(
            f"coef must be an array of shape ({n_out},) or (n_classes, {n_out}), one "
            f"weight per output column of the transformer; got {_describe(array)}."
        )
    result = []
    for group in groups:
        start = group[0][1]
        rows, cols = group[0][2:]
        if any((r, c) != (rows, cols) for *_, r, c in group):
            raise ValueError("the maps of one size group must share their shape.")
        stop = start + len(group) * rows * cols
        block = array[..., start:stop]
        result.append(block.reshape(array.shape[:-1] + (len(group), rows, cols)).copy())
    return result


def _labels(transformer):
    return [label for group in _layout(transformer) for label, *_ in group]


# --- maps and weights ------------------------------------------------------


def _layers(model):
    """[(name, step)] of a transformer, a Pipeline or a list of transformers."""
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline):
        return [(name, step) for name, step in model.steps if step not in (None, "passthrough")]
    if isinstance(model, (list, tuple)):
        return [(f"layer{i}", step) for i, step in enumerate(model)]
    return [("", model)]


def plot_maps(transformer, row, *, n_cols=None, cmap="viridis", fig=None):
    """Plot the feature maps of one image, for one or several layers.

    Parameters
    ----------
    transformer : BatchConv2DTransformer, Pipeline or list of transformers
        A transformer (fitted, or stateless: then fitted on ``row`` by a
        clone), or a cascade: a :class:`~sklearn.pipeline.Pipeline` or a list
        whose steps transform the row in turn; the maps of every
        :class:`~skconv.BatchConv2DTransformer` among them are plotted (other
        transformers only pass their output on; a final step without
        ``transform``, e.g. a classifier, is ignored).
        At most ``MAX_PANELS`` (500) maps over all layers: more raise a
        ValueError.
    row : array-like of shape (n_features,) or (1, n_features)
        One image, flattened as a row of ``X``.
    n_cols : int >= 1, default=None
        Axes per row of the figure (at most the maps of the largest layer);
        None makes a square-ish grid per layer.
    cmap : str or matplotlib.colors.Colormap, default="viridis"
        Colormap, centred on 0 (one scale per map).
    fig : matplotlib.figure.Figure or matplotlib.figure.SubFigure, default=None
        Figure to draw in; None creates one.

    Returns
    -------
    fig : matplotlib.figure.Figure
        One axes per map, in column order, titled ``f{k} [pos|neg] [ch{c}]``,
        prefixed with the step name when several layers are plotted; each
        layer starts a new row of axes.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from skconv import BatchConv2DTransformer
    >>> from skconv.plot import plot_maps
    >>> cascade = make_pipeline(
    ...     BatchConv2DTransformer(filters=np.ones((2, 3, 3)), activation="abs"),
    ...     BatchConv2DTransformer(filters="edges", image_shape=(16, 8)))
    >>> X = np.random.default_rng(0).random((3, 64))
    >>> fig = plot_maps(cascade.fit(X), X[0])
    >>> len(fig.axes), fig.axes[2].get_title()
    (6, 'batchconv2dtransformer-2 f0')
    """
    plt = _pyplot("plot_maps")
    n_cols, cmap, fig = _check_n_cols(n_cols), _check_cmap(cmap), _check_fig(fig)
    x = as_real_array(row, "row")
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[0] != 1:
        raise ValueError(
            f"row must be one image, of shape (n_features,) or (1, n_features); got shape "
            f"{x.shape}."
        )
    layers = []  # (step name, [(map, label)])
    for name, step in _layers(transformer):
        if _is_transformer(step):
            step = _resolved(step, x)
            features = step.transform(x)
            maps = coef_to_maps(step, features[0])
            labels = _labels(step)
            flat = [m for group in maps for m in group]
            layers.append((name, list(zip(flat, labels, strict=True))))
            x = features
        elif hasattr(step, "transform"):
            x = step.transform(x)
        else:
            break
    if not layers:
        raise ValueError(
            "transformer must be a BatchConv2DTransformer or a Pipeline or list holding "
            f"some; got {_describe(transformer)}."
        )
    _check_panels(
        sum(len(panels) for _, panels in layers),
        "transformer",
        "Plot fewer layers, or a transformer with fewer filters.",
    )
    prefix = len(layers) > 1
    largest = max(len(panels) for _, panels in layers)
    width = min(largest, n_cols or math.ceil(math.sqrt(largest)))
    rows = [math.ceil(len(panels) / width) for _, panels in layers]
    if fig is None:
        fig = plt.figure(figsize=(1.8 * width, 1.8 * sum(rows) + 0.3))
    grid = fig.add_gridspec(sum(rows), width)
    top = 0
    for (name, panels), n_rows in zip(layers, rows, strict=True):
        for i, (image, label) in enumerate(panels):
            ax = fig.add_subplot(grid[top + i // width, i % width])
            _show(ax, image, f"{name} {label}" if prefix else label, cmap)
        top += n_rows
    return fig


def plot_coef(transformer, coef, *, class_names=None, cmap="RdBu_r", fig=None):
    """Plot a linear model's weights over the transformer's columns as maps.

    Parameters
    ----------
    transformer : BatchConv2DTransformer
        The fitted transformer whose features the model was fitted on.
    coef : array-like of shape (n_features_out,) or (n_classes, n_features_out)
        The model's weights, e.g. ``LogisticRegression().coef_``; finite,
        at least one row.  At most ``MAX_PANELS`` (500) axes (classes times
        maps): more raise a ValueError; plot some classes, e.g. ``coef[:k]``
        with ``class_names[:k]``.
    class_names : list, tuple or 1-D ndarray, default=None
        Names of the rows of ``coef``, one per row, e.g. a list of str or
        the model's ``classes_`` (a str is refused, not read as one name per
        character); None numbers the rows of a 2-D ``coef``.
    cmap : str or matplotlib.colors.Colormap, default="RdBu_r"
        Colormap, centred on 0, one scale per class (the largest weight).
    fig : matplotlib.figure.Figure or matplotlib.figure.SubFigure, default=None
        Figure to draw in; None creates one.

    Returns
    -------
    fig : matplotlib.figure.Figure
        One row of axes per class (one row for 1-D ``coef``), one axes per
        map, titled as in :func:`plot_maps` (prefixed with the class).

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skconv import BatchConv2DTransformer
    >>> from skconv.plot import plot_coef
    >>> X, y = load_digits(return_X_y=True)
    >>> conv = BatchConv2DTransformer(filters="edges", pooling="max").fit(X)
    >>> clf = LogisticRegression(max_iter=200).fit(conv.transform(X[:300]), y[:300] == 0)
    >>> fig = plot_coef(conv, clf.coef_, class_names=["zero"])
    >>> len(fig.axes), fig.axes[1].get_title()
    (4, 'zero: f1')
    """
    plt = _pyplot("plot_coef")
    cmap, fig = _check_cmap(cmap), _check_fig(fig)
    maps = coef_to_maps(transformer, coef)
    coef = as_real_array(coef, "coef")
    if coef.ndim == 2 and coef.shape[0] == 0:
        raise ValueError(f"coef must have at least one row (one per class); got {_describe(coef)}.")
    # A NaN or infinite weight would void the colour scale of its whole class.
    check_finite(coef, "coef")
    labels = _labels(transformer)
    two_d = coef.ndim == 2
    n_rows = coef.shape[0] if two_d else 1
    _check_panels(
        n_rows * len(labels),
        "coef",
        f"{n_rows} rows x {len(labels)} maps: plot some classes, e.g. coef[:k] with "
        "class_names[:k].",
    )
    per_class = [
        [m for group in maps for m in (group[c] if two_d else group)] for c in range(n_rows)
    ]
    if class_names is None:
        class_names = [str(c) for c in range(n_rows)] if two_d else None
    else:
        class_names = _check_class_names(class_names, n_rows)
    n_cols = len(labels)
    if fig is None:
        fig = plt.figure(figsize=(1.8 * n_cols, 1.8 * len(per_class) + 0.3))
    grid = fig.add_gridspec(len(per_class), n_cols)
    for c, class_maps in enumerate(per_class):
        limit = max(float(np.abs(m).max(initial=0.0)) for m in class_maps) or 1.0
        for j, (image, label) in enumerate(zip(class_maps, labels, strict=True)):
            title = label if class_names is None else f"{class_names[c]}: {label}"
            _show(fig.add_subplot(grid[c, j]), image, title, cmap, limit)
    return fig


def _check_class_names(class_names, n_rows):
    # A str is a sequence too: "abc" would name three classes "a", "b" and "c".
    if not isinstance(class_names, (list, tuple, np.ndarray)) or (
        isinstance(class_names, np.ndarray) and class_names.ndim != 1
    ):
        raise TypeError(
            "class_names must be a list of names, one per row of coef (a str is one name, "
            f"not a list); got {_describe(class_names)}."
        )
    if len(class_names) != n_rows:
        raise ValueError(
            f"class_names must have {n_rows} names, one per row of coef; got "
            f"{_describe(class_names)}."
        )
    return list(class_names)
