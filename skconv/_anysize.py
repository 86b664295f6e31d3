"""Images of any size: a list of (h, w) or (h, w, c) arrays -> fixed-length rows.

Rows of ``X`` must all be images of one shape; images of different sizes
(kymatio's issue 306 asks for the same) come as a list instead.  Pooling into
a fixed grid of regions (``pool_grid``) or globally (``pool_size="global"``)
gives every image the same number of features whatever its size.  The images
are grouped by shape, each group runs through the transformer's own path
(one batched conv2d per chunk of rows) and the features are written back in
input order.
"""

import numpy as np
from sklearn import get_config
from sklearn.exceptions import NotFittedError
from sklearn.utils._set_output import ADAPTERS_MANAGER, _get_output_config
from sklearn.utils.validation import check_is_fitted

from . import _layout
from . import filters as _banks
from ._validation import as_real_array, check_finite, contextual, float_dtype

__all__ = ["is_image_list", "transform_images"]


def is_image_list(X):
    """Whether ``X`` is a list or tuple of 2-D or 3-D numpy arrays (images, not rows).

    Such input was never valid rows (it reads as a 3-D array or a ragged
    one), so ``transform`` can take it without changing what rows mean.
    """
    return (
        isinstance(X, (list, tuple))
        and len(X) > 0
        and all(isinstance(x, np.ndarray) and x.ndim in (2, 3) for x in X)
    )


def _check_pooling(transformer):
    t = transformer
    if t.pooling is not None and (t.pool_grid is not None or _is_global(t.pool_size)):
        return
    raise ValueError(
        "pooling must give the same number of features for every image size to transform "
        "images of any size: set pooling='max', 'mean' or 'sum' with pool_grid=(rows, "
        f"columns) or pool_size='global'; got pooling={t.pooling!r}, pool_grid="
        f"{t.pool_grid!r}, pool_size={t.pool_size!r}."
    )


def _is_global(pool_size):
    return isinstance(pool_size, str) and pool_size == "global"


def _check_images(images):
    if not isinstance(images, (list, tuple)):
        raise TypeError(
            "images must be a list or tuple of 2-D (height, width) or 3-D (height, width, "
            f"n_channels) arrays; got {type(images).__name__}: for images of one size, "
            "pass their flattened rows to transform."
        )
    if len(images) == 0:
        raise ValueError("images must hold at least one image; got an empty list.")
    checked = []
    for i, image in enumerate(images):
        name = f"images[{i}]"
        array = as_real_array(image, name)
        if array.ndim not in (2, 3) or 0 in array.shape:
            raise ValueError(
                f"{name} must be a 2-D (height, width) or 3-D (height, width, n_channels) "
                f"array with no empty axis; got shape {array.shape}."
            )
        check_finite(array, name)
        checked.append(array)
    return checked


def _channels(shape, channel_axis):
    """The number of channels of an image shape in row order, None without a channel axis."""
    if len(shape) == 2:
        return None
    return shape[0] if channel_axis == 0 else shape[2]


def _expected_channels(transformer, images):
    """The channel axis every image must have, checked against the transformer."""
    axis = transformer.channel_axis
    fitted = getattr(transformer, "_fitted_filters", None)
    if fitted == "learned":
        reference, source = tuple(transformer.image_shape_), "the images fit learned from"
        expected = _channels(reference, getattr(transformer, "_fit_channel_axis", -1))
    else:
        reference, source = images[0].shape, "images[0]"
        if transformer.image_shape is not None:
            given = _channels(tuple(transformer.image_shape), axis)
            if given is not None or len(transformer.image_shape) == 2:
                reference, source = tuple(transformer.image_shape), "image_shape"
        expected = _channels(reference, axis)
    if axis is None and expected is not None:
        raise ValueError(
            f"images must have no channel axis with channel_axis=None; got {source} of "
            f"shape {reference}."
        )
    where = "first" if axis == 0 else "last"
    for i, image in enumerate(images):
        if _channels(image.shape, axis) != expected:
            what = "no channel axis" if expected is None else f"{expected} channels ({where})"
            raise ValueError(
                f"images[{i}] must have {what}, as {source} (shape {reference}): only height "
                f"and width may vary; got shape {image.shape}."
            )


def _filters(transformer, shape):
    """The filters of a transform, as the transformer's "Fitted state" rule says."""
    fitted = getattr(transformer, "_fitted_filters", None)
    if fitted in ("learned", "drawn"):
        return transformer.filters_
    if _banks._learns(transformer.filters):
        raise NotFittedError(
            f"filters={transformer.filters!r} must be learned (or drawn) by fit, but this "
            f"{type(transformer).__name__} was fitted with fixed filters; call fit again."
        )
    return transformer._filters(shape)


def transform_images(transformer, images):
    """Features of images of any size, one fixed-length row per image.

    The images are grouped by shape; each group is transformed as the rows
    of a batch of images of that shape would be (the same filters, chunks
    and column layout), and the rows come back in input order.  Pooling must
    make the number of features independent of the image size: ``pooling``
    with ``pool_grid`` (a fixed grid of regions) or ``pool_size="global"``.

    Parameters
    ----------
    transformer : BatchConv2DTransformer
        Its parameters are used as in ``transform``.  Learned (or drawn)
        filters must have been fitted, on rows of images of one shape as
        usual (``fit`` does not take a list); they are then applied to images
        of any size with the same channel axis.  ``image_shape``, when set,
        only fixes the channel axis: height and width may vary.
    images : list or tuple of array-like of shape (height, width) or \
            (height, width, n_channels)
        The images, real-valued and finite; the channel axis (present or
        not, and its length) must be the same for all of them.  3-D images
        are read with the transformer's ``channel_axis``: (height, width,
        n_channels) for -1, (n_channels, height, width) for 0.

    Returns
    -------
    X_new : ndarray of shape (n_images, n_features_out)
        Row ``i`` holds the features of ``images[i]``; float32 when every
        image is float32, float64 otherwise.  A DataFrame under
        ``set_output(transform="pandas" | "polars")``.

    Examples
    --------
    >>> import numpy as np
    >>> from skconv import BatchConv2DTransformer, transform_images
    >>> rng = np.random.RandomState(0)
    >>> images = [rng.rand(8, 8), rng.rand(12, 20), rng.rand(8, 8)]
    >>> conv = BatchConv2DTransformer(filters="edges", activation="abs",
    ...                               pooling="max", pool_grid=2)
    >>> transform_images(conv, images).shape  # 4 filters x 2 x 2 regions
    (3, 16)
    >>> bool(np.all(conv.transform(images) == transform_images(conv, images)))
    True
    """
    from ._transformer import BatchConv2DTransformer  # (it imports this module)

    if not isinstance(transformer, BatchConv2DTransformer):
        raise TypeError(
            f"transformer must be a BatchConv2DTransformer; got {type(transformer).__name__}."
        )
    transformer._validate_params()
    if _banks._learns(transformer.filters) and not hasattr(transformer, "filters_"):
        check_is_fitted(transformer, "filters_")  # raises NotFittedError
    _check_pooling(transformer)
    images = _check_images(images)
    _expected_channels(transformer, images)
    dtype = np.result_type(*(float_dtype(image.dtype, "images") for image in images))
    groups = {}
    for i, image in enumerate(images):
        groups.setdefault(image.shape, []).append(i)
    # transform's budget (see BatchConv2DTransformer._features): chunks of a
    # group are stacked as the rows transform would cut them.
    budget = get_config()["working_memory"] / 2
    out = names = None
    for shape, index in groups.items():
        n_features = int(np.prod(shape))
        try:
            layout = transformer._plan(_filters(transformer, shape), shape, dtype, n_features)
        except (TypeError, ValueError) as exc:
            raise contextual(exc, f"images[{index[0]}] has shape {shape}") from exc
        if out is None:
            out = np.empty((len(images), layout.n_features_out), dtype)
            names = _layout.feature_names(layout)
        # Grid and global pooling make this hold; checked because a wrong
        # width would silently misplace features.
        assert layout.n_features_out == out.shape[1], (layout.n_features_out, out.shape)
        chunk = _layout.chunk_rows(layout, dtype, n_features, len(index), budget)
        for start in range(0, len(index), chunk):
            rows_index = index[start : start + chunk]
            rows = np.stack([images[i].reshape(-1) for i in rows_index]).astype(dtype, copy=False)
            out[rows_index] = transformer._features(rows, layout)
    output = _get_output_config("transform", transformer)["dense"]
    if output == "default":
        return out
    return ADAPTERS_MANAGER.adapters[output].create_container(
        out, None, columns=np.asarray(names, dtype=object)
    )
