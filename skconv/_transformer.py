"""BatchConv2DTransformer: convolution features as a scikit-learn transformer.

The transformer holds no numerics of its own: it reads each row of ``X`` as
an image (a free reshape), calls :func:`skconv.conv2d`, :func:`rectify
<skconv._pool.rectify>` and :func:`skconv.pool2d` on chunks of rows, and
writes each chunk's features into a preallocated output.
"""

import functools
import math
import sys
import time
from dataclasses import dataclass
from numbers import Integral

import numpy as np
from sklearn import config_context, get_config
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.utils import check_random_state, gen_batches
from sklearn.utils._chunking import get_chunk_n_rows
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    _check_feature_names_in,
    check_is_fitted,
    validate_data,
)

from . import filters as _banks
from ._conv import PAD_MODES, PADDING_NAMES, conv2d, plan_conv2d
from ._methods import METHODS
from ._pool import ACTIVATIONS, POOL_OPS, pool2d, rectify

__all__ = ["BatchConv2DTransformer"]

_FEATURE_PREFIX = "conv"


@dataclass(frozen=True)
class _Group:
    """One size group of filters and where its features go in the output."""

    filters: np.ndarray  # (K, p, q) or (K, p, q, c), float64
    first_filter: int  # global number of the group's first filter
    add_channel_axis: bool  # 4-D filters on images without a channel axis
    n_channels: int  # channels each filter is applied to depthwise (0: none)
    n_maps: int  # maps after activation (split doubles them)
    conv_shape: tuple  # (out_h, out_w) of conv2d
    out_shape: tuple  # (rows, columns) after pooling
    start: int  # first output column
    stop: int  # one past the last output column


def _is_dask_array(X):
    # Recognised without importing dask: the package must import without it.
    return type(X).__module__.split(".")[0] == "dask" and hasattr(X, "map_blocks")


def _is_int(value):
    return isinstance(value, Integral) and not isinstance(value, bool)


def _contextual(exc, context):
    """The same kind of exception with ``context`` appended to its message."""
    new = type(exc)(f"{exc} ({context})")
    return new.with_traceback(exc.__traceback__)


class BatchConv2DTransformer(
    ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator
):
    """Convolution features: correlate images with a filter bank, rectify, pool.

    Each row of ``X`` is one image, flattened in C order (channels last).
    The transformer reshapes the rows into images (a free view, no copy),
    correlates every image with every filter (a cross-correlation, like
    ``torch.nn.functional.conv2d``; ``flip=True`` gives a true convolution),
    optionally rectifies and pools the maps, and returns them flattened,
    one row per image.  All the work is done in chunks of rows that fit in
    scikit-learn's ``working_memory``, with :func:`skconv.conv2d` and
    :func:`skconv.pool2d`.

    With fixed filters (an array or a built-in bank such as ``"edges"``) the
    transformer is stateless: ``transform`` works without ``fit``.  With a
    learned bank (``"pca"``, ``"kmeans"``) ``fit`` learns the filters from the
    training images.

    Parameters
    ----------
    filters : str, array-like or list, default="default"
        The filters:

        - the name of a built-in bank (see :func:`skconv.filters.bank_names`),
          e.g. ``"edges"``, ``"gabor"``, ``"random"``, or the learned banks
          ``"pca"`` and ``"kmeans"``;
        - one filter of shape (p, q);
        - a bank of shape (K, p, q), applied to each channel of
          multichannel images separately (depthwise);
        - a bank of shape (K, p, q, c) of multichannel filters, each summed
          over the c channels of the images (``image_shape=(h, w, c)``);
        - a list (or tuple) whose items are any of the above (arrays or bank
          names); the items may have different filter sizes.  Their feature
          maps are concatenated in list order.  A nested Python list is
          read as such a list of items, never as one array: pass one filter
          as ``np.asarray(...)``.

        Filters must be finite real numbers; they are cast to the images'
        dtype.

    filter_params : dict, default=None
        Keyword arguments of the named banks (like ``kernel_params`` of
        :class:`~sklearn.kernel_approximation.Nystroem`).  When ``filters``
        is one name, ``filter_params`` holds that bank's keyword arguments,
        e.g. ``{"n_orientations": 8}`` for ``"gabor"``.  When ``filters`` is
        a list, it maps bank names to such dicts, e.g.
        ``{"gabor": {"size": 5}, "pca": {"n_filters": 4}}``.  Unknown names
        or keyword arguments raise an error.  ``random_state`` is not
        accepted here: set the transformer's own ``random_state``.

    random_state : int, RandomState instance or None, default=None
        Seeds the banks that draw random numbers (``"random"``, and the
        patch sampling and k-means of the learned banks).  One generator is made from it and passed to these
        banks in list order.  ``fit`` draws the filters once and keeps them in
        ``filters_``; a stateless ``transform`` called without ``fit`` draws
        them at each call, so pass an int for reproducible features.
        See :term:`Glossary <random_state>`.

    image_shape : tuple of int, default=None
        Shape of one image: ``(height, width)`` or ``(height, width,
        n_channels)`` channels-last; ``height * width * n_channels`` must equal
        the number of features of ``X``.  None reads each row as a square
        image when the number of features is a perfect square (64 features:
        8x8 images) and as a 1 x n_features strip otherwise.

    padding : {"valid", "same", "full"}, int, (int, int) or \
            ((int, int), (int, int)), default="same"
        Padding of the images before correlation, as in
        :func:`skconv.conv2d`: "same" keeps the image size at stride 1,
        "valid" does not pad, "full" takes every overlap; an int pads every
        side, a pair each side of rows and columns, a pair of pairs each
        side separately.

    pad_mode : {"constant", "reflect", "symmetric", "edge", "wrap"}, \
            default="constant"
        How padded pixels are filled (:func:`numpy.pad` modes; "constant"
        pads with zeros).

    stride : int or (int, int), default=1
        Step between filter windows.

    dilation : int or (int, int), default=1
        Spacing between filter taps.

    flip : bool, default=False
        Flip the filters along both axes: true convolution instead of
        cross-correlation.

    activation : {"relu", "abs", "square", "split"}, default=None
        Pointwise rectification of the maps, before pooling.  None keeps the
        signed responses; "split" keeps relu(x) and relu(-x) as two maps.

    pooling : {"max", "mean", "sum"}, default=None
        Pooling of each map; None does not pool (``pool_size``,
        ``pool_stride`` and ``pool_grid`` are then ignored).

    pool_size : int, (int, int) or "global", default=2
        Pooling window; windows that do not fit at the bottom/right edge are
        dropped.  "global" pools each whole map to one value.

    pool_stride : int or (int, int), default=None
        Step between pooling windows; None means ``pool_size``.

    pool_grid : int or (int, int), default=None
        Pool each map into a fixed grid of regions instead of windows
        (``pool_grid=2``: its four quadrants), whatever the map size;
        ``pool_size`` is then ignored and ``pool_stride`` must be None.

    method : str, default="auto"
        The contraction strategy of :func:`skconv.conv2d`; "auto" picks the
        fastest by a cost model.  Every method gives the same result up to
        rounding.

    n_jobs : int, default=None
        ``n_jobs`` of :func:`skconv.conv2d`: threads it splits each chunk
        over when its strategy splits the batch (BLAS then runs
        single-threaded inside them).  None means 1 unless in a
        :func:`joblib.parallel_config` context; -1 means all cores.  Keep
        the default when the transformer runs inside a parallel
        ``GridSearchCV``.

    verbose : int, default=0
        When > 0, ``transform`` prints one progress line per chunk of rows to
        stderr.

    Attributes
    ----------
    filters_ : list of ndarray
        The filters used by ``transform``, float64, one array per size
        group: consecutive items of ``filters`` with the same filter shape
        are stacked into one (K, p, q) or (K, p, q, c) array; a single
        (p, q) filter becomes (1, p, q).  Learned banks hold the filters
        learned in ``fit``.

    image_shape_ : tuple of int
        The shape each row was read as in ``fit``: ``image_shape``, or the
        shape deduced from ``n_features_in_`` when ``image_shape`` is None.

    n_features_in_ : int
        Number of features seen during :term:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`. Defined only when `X`
        has feature names that are all strings.

    See Also
    --------
    skconv.conv2d : The batched correlation this transformer runs.
    skconv.pool2d : The pooling this transformer runs.
    skconv.filters : The built-in and learned filter banks.
    sklearn.feature_extraction.image.PatchExtractor : Extract patches from
        images.
    sklearn.kernel_approximation.RBFSampler : Random Fourier features.

    Notes
    -----
    **Output layout.** ``transform`` returns an array of shape (n_samples,
    n_features_out), flattened filter-major: with one size group and no
    channels, ``Xt.reshape(n_samples, K, h_out, w_out)[i, k]`` is the map of
    filter k on image i.  The maps are ordered as follows.

    - Channels: (K, p, q) filters on c-channel images are applied to each
      channel separately, channel-major: map ``ch * K + k`` is filter k on
      channel ch.  (K, p, q, c) filters sum over channels and give K maps.
    - ``activation="split"``: maps ``2 m`` and ``2 m + 1`` are relu(x) and
      relu(-x) of map m.
    - Several size groups (a list of filters of different sizes): the
      features of each group, laid out as above, are concatenated in list
      order; their maps may have different sizes (e.g. with
      ``padding="valid"``).

    **Feature names.** ``get_feature_names_out`` names each feature
    ``conv_f{k}[pos|neg][_ch{c}]_r{i}_c{j}``: filter k numbered across all
    groups in list order, "pos"/"neg" with ``activation="split"``, the
    channel for depthwise filters on images with a channel axis, and the
    row i and column j in the (pooled) map.  The prefix "conv" replaces the
    lowercased class name of :class:`~sklearn.base.ClassNamePrefixFeaturesOutMixin`
    for readability.

    **Learned banks on multichannel images.** ``"pca"`` and ``"kmeans"``
    learn (K, p, q) filters from the training images with their channels
    folded into separate single-channel images (a copy of the training set,
    in ``fit`` only); the filters are then applied depthwise.

    **Input.** ``X`` must be dense: sparse input raises a TypeError (images
    are dense; densify chunks of rows with ``.toarray()``).  float32 input
    gives float32 features, any other real dtype float64; the dtype cast and
    any contiguous copy are done chunk by chunk, never on the whole ``X``
    (except in ``fit`` of a learned bank, which casts the training images
    it samples patches from once).  ``X`` is never modified.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from skconv import BatchConv2DTransformer
    >>> X, y = load_digits(return_X_y=True)
    >>> conv = BatchConv2DTransformer(filters="edges", activation="split",
    ...                               pooling="max")
    >>> Xt = conv.fit_transform(X)  # 64 features: 8x8 images
    >>> Xt.shape  # 4 filters x 2 signs x (4 x 4) pooled pixels
    (1797, 128)
    >>> conv.get_feature_names_out()[[0, 16, 127]]
    array(['conv_f0pos_r0_c0', 'conv_f0neg_r0_c0', 'conv_f3neg_r3_c3'],
          dtype=object)
    >>> BatchConv2DTransformer(filters=np.ones((2, 2))).transform(X[:2]).shape
    (2, 64)
    >>> pca = BatchConv2DTransformer(filters="pca", random_state=0,
    ...                              filter_params={"n_filters": 4, "size": 3})
    >>> pca.fit(X[:100]).filters_[0].shape
    (4, 3, 3)
    """

    _parameter_constraints: dict = {
        "filters": [StrOptions(set(_banks.bank_names())), "array-like"],
        "filter_params": [None, dict],
        "random_state": ["random_state"],
        "image_shape": [None, tuple, list],
        "padding": [
            StrOptions(set(PADDING_NAMES)),
            Interval(Integral, 0, None, closed="left"),
            tuple,
            list,
        ],
        "pad_mode": [StrOptions(set(PAD_MODES))],
        "stride": [Interval(Integral, 1, None, closed="left"), tuple, list],
        "dilation": [Interval(Integral, 1, None, closed="left"), tuple, list],
        "flip": ["boolean"],
        "activation": [None, StrOptions(set(ACTIVATIONS))],
        "pooling": [None, StrOptions(set(POOL_OPS))],
        "pool_size": [
            Interval(Integral, 1, None, closed="left"),
            tuple,
            list,
            StrOptions({"global"}),
        ],
        "pool_stride": [None, Interval(Integral, 1, None, closed="left"), tuple, list],
        "pool_grid": [None, Interval(Integral, 1, None, closed="left"), tuple, list],
        "method": [StrOptions({"auto", *METHODS})],
        "n_jobs": [None, Integral],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        *,
        filters="default",
        filter_params=None,
        random_state=None,
        image_shape=None,
        padding="same",
        pad_mode="constant",
        stride=1,
        dilation=1,
        flip=False,
        activation=None,
        pooling=None,
        pool_size=2,
        pool_stride=None,
        pool_grid=None,
        method="auto",
        n_jobs=None,
        verbose=0,
    ):
        self.filters = filters
        self.filter_params = filter_params
        self.random_state = random_state
        self.image_shape = image_shape
        self.padding = padding
        self.pad_mode = pad_mode
        self.stride = stride
        self.dilation = dilation
        self.flip = flip
        self.activation = activation
        self.pooling = pooling
        self.pool_size = pool_size
        self.pool_stride = pool_stride
        self.pool_grid = pool_grid
        self.method = method
        self.n_jobs = n_jobs
        self.verbose = verbose

    # --- scikit-learn API ---------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Resolve (or learn) the filters and check the image geometry.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training images, one flattened image per row.  Only used by the
            learned banks and to record ``n_features_in_``.

        y : None
            Ignored.

        Returns
        -------
        self : object
            Fitted transformer.
        """
        X = self._check_X(X, reset=True)
        image_shape = self._image_shape(X.shape[1])
        dtype = np.float32 if X.dtype == np.float32 else np.float64
        items = self._filter_items()
        filters = self._make_filters(items, X, image_shape)
        groups = self._layout(filters, image_shape, dtype, X.shape[1])
        self.filters_ = filters
        self.image_shape_ = image_shape
        self._n_features_out = groups[-1].stop
        return self

    def transform(self, X):
        """Correlate each image with the filters, rectify and pool.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Images, one flattened image per row (channels last).

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features_out)
            The features, float32 for float32 input and float64 otherwise,
            laid out as described in the Notes.
        """
        self._validate_params()
        fitted = hasattr(self, "filters_")
        if not fitted and self._needs_learning():
            check_is_fitted(self, "filters_")  # raises NotFittedError
        if _is_dask_array(X):
            return self._transform_dask(X)
        X = self._check_X(X, reset=False)
        image_shape = self._image_shape(X.shape[1])
        dtype = np.dtype(np.float32 if X.dtype == np.float32 else np.float64)
        filters = self._current_filters(image_shape)
        groups = self._layout(filters, image_shape, dtype, X.shape[1])
        return self._transform_array(X, image_shape, groups, dtype)

    def _current_filters(self, image_shape):
        """The fitted filters, or the fixed banks built now for a stateless call."""
        if hasattr(self, "filters_"):
            return self.filters_
        return self._make_filters(self._filter_items(), None, image_shape)

    def _transform_dask(self, X):
        """A lazy dask array of the features of a dask array of rows.

        Nothing is computed here: each block of rows becomes a block of
        features on whichever worker holds it.  Column chunks are merged first
        (an image is a whole row); the output's chunks are given explicitly
        (dask-ml's ParallelPostFit omits them and reports the input's shape).
        """
        if X.ndim != 2:
            raise ValueError(
                "X must be 2-D (n_samples, n_features) with one flattened image "
                f"per row; got a {X.ndim}-D dask array of shape {X.shape}."
            )
        if X.dtype.kind not in "fiub":
            raise TypeError(f"X must hold real numbers; got a dask array of dtype {X.dtype}.")
        n_features = X.shape[1]
        if hasattr(self, "n_features_in_") and n_features != self.n_features_in_:
            raise ValueError(
                f"X has {n_features} features, but {type(self).__name__} is "
                f"expecting {self.n_features_in_} features as input."
            )
        image_shape = self._image_shape(n_features)
        dtype = np.dtype(np.float32 if X.dtype == np.float32 else np.float64)
        # Resolved once, here: every block must use the same filters.
        groups = self._layout(self._current_filters(image_shape), image_shape, dtype, n_features)
        n_out = groups[-1].stop
        X = X.rechunk({1: -1})
        return X.map_blocks(
            functools.partial(self._transform_array, image_shape=image_shape, groups=groups, dtype=dtype),
            dtype=dtype,
            chunks=(X.chunks[0], (n_out,)),
            meta=np.empty((0, 0), dtype),
        )

    def _transform_array(self, X, image_shape, groups, dtype):
        """The features of a validated 2-D numpy X, chunk by chunk of rows."""
        n_samples, n_features = X.shape
        out = np.empty((n_samples, groups[-1].stop), dtype)
        if n_samples == 0:
            return out

        # Chunks of rows sized so that the maps before pooling (and the cast
        # copy of the rows) fit in half of working_memory; conv2d's own
        # temporaries get the other half.
        budget = get_config()["working_memory"] / 2
        row_bytes = dtype.itemsize * (
            (n_features if X.dtype != dtype else 0)
            + max(self._maps_per_row(g) for g in groups)
        )
        chunk = get_chunk_n_rows(
            max(row_bytes, 1), max_n_rows=max(n_samples, 1), working_memory=budget
        )
        engine_shape = tuple(image_shape)
        start_time = time.perf_counter()
        with config_context(working_memory=budget):
            for sl in gen_batches(n_samples, chunk):
                rows = X[sl]
                if rows.dtype != dtype:
                    rows = rows.astype(dtype)
                images = rows.reshape((rows.shape[0],) + engine_shape)
                for group in groups:
                    self._transform_group(images, group, out[sl, group.start : group.stop])
                if self.verbose > 0:
                    self._report(sl, n_samples, start_time)
        return out

    def get_feature_names_out(self, input_features=None):
        """Get output feature names for transformation.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Only used to validate feature names with the names seen in
            :meth:`fit`.

        Returns
        -------
        feature_names_out : ndarray of str objects
            ``conv_f{k}[pos|neg][_ch{c}]_r{i}_c{j}``, in the order of the
            columns of ``transform`` (see the Notes of the class).
        """
        check_is_fitted(self, "_n_features_out")
        _check_feature_names_in(self, input_features, generate_names=False)
        dtype = np.float64
        groups = self._layout(self.filters_, self.image_shape_, dtype, self.n_features_in_)
        names = []
        split = self.activation == "split"
        for g in groups:
            n_filters = g.filters.shape[0]
            rows, cols = g.out_shape
            cells = [f"_r{i}_c{j}" for i in range(rows) for j in range(cols)]
            for m in range(g.n_maps):
                conv_map, sign = (m // 2, ("pos", "neg")[m % 2]) if split else (m, "")
                k = g.first_filter + conv_map % n_filters
                label = f"{_FEATURE_PREFIX}_f{k}{sign}"
                if g.n_channels:
                    label += f"_ch{conv_map // n_filters}"
                names.extend(label + cell for cell in cells)
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = self._needs_learning()
        tags.input_tags.sparse = False
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # --- input --------------------------------------------------------------

    def _check_X(self, X, reset):
        """Validate X without casting or copying it as a whole."""
        if hasattr(X, "nnz") and hasattr(X, "toarray"):  # scipy sparse
            raise TypeError(
                f"{type(self).__name__} takes dense images; X is a sparse "
                f"{type(X).__name__}. Convert it with X.toarray() (chunk by chunk "
                "of rows for a large X)."
            )
        ndim = getattr(X, "ndim", None)
        if isinstance(ndim, int) and ndim != 2:
            shape = getattr(X, "shape", None)
            if ndim < 2:
                hint = (
                    "Reshape your data: for a single image use X.reshape(1, -1)"
                    if ndim == 1
                    else "Reshape your data to (n_samples, n_features)"
                )
            else:
                image = ", ".join(("h", "w", "c")[: ndim - 1]) if ndim <= 4 else "..."
                hint = (
                    "Reshape your data: flatten each image into a row with "
                    f"X.reshape(len(X), -1) and pass image_shape=({image})"
                )
            raise ValueError(
                f"X must be 2-D (n_samples, n_features) with one flattened image "
                f"per row; got a {ndim}-D array of shape {shape}: {hint}."
            )
        # dtype="numeric" keeps float32, float64 and integers as they are:
        # the cast to the working float dtype is done per chunk in transform.
        return validate_data(
            self,
            X,
            reset=reset,
            accept_sparse=False,
            dtype="numeric",
            ensure_all_finite=True,
            # transform maps 0 rows to 0 rows (dask blocks can be empty);
            # fit still refuses empty data.
            ensure_min_samples=1 if reset else 0,
        )

    def _image_shape(self, n_features):
        """The (h, w) or (h, w, c) shape each row of n_features is read as."""
        shape = self.image_shape
        if shape is None:
            side = math.isqrt(n_features)
            return (side, side) if side * side == n_features else (1, n_features)
        if len(shape) not in (2, 3) or not all(_is_int(s) for s in shape):
            raise TypeError(
                "image_shape must be None, (height, width) or (height, width, "
                f"n_channels) of ints; got {shape!r}."
            )
        if min(shape) < 1:
            raise ValueError(f"image_shape must hold positive ints; got {shape!r}.")
        shape = tuple(int(s) for s in shape)
        if math.prod(shape) != n_features:
            product = " * ".join(str(s) for s in shape)
            raise ValueError(
                f"X has n_features={n_features} per row, but image_shape="
                f"{self.image_shape!r} needs {product} = {math.prod(shape)} "
                "features (height * width * n_channels)."
            )
        return shape

    @staticmethod
    def _describe_images(n_features, image_shape, given):
        return (
            f"X has n_features={n_features}, read as images of shape {image_shape} "
            f"(image_shape={given!r})"
        )

    # --- filters ------------------------------------------------------------

    def _needs_learning(self):
        """Whether the filters include a learned bank (never raises)."""
        f = self.filters
        if isinstance(f, str):
            items = [f]
        elif isinstance(f, (list, tuple)):
            items = f
        else:
            items = []
        return any(isinstance(i, str) and i in _banks.LEARNED_BANKS for i in items)

    def _filter_items(self):
        """``filters`` as a list of (name, kwargs) or (None, float64 array)."""
        f = self.filters
        params = {} if self.filter_params is None else self.filter_params
        if isinstance(f, str):
            return [(self._check_name(f), self._check_kwargs(f, params))]
        if isinstance(f, (list, tuple)):
            if len(f) == 0:
                raise ValueError(
                    "filters is an empty list; pass at least one filter array or "
                    f"bank name (known banks: {', '.join(_banks.bank_names())})."
                )
            names = {item for item in f if isinstance(item, str)}
            for key in params:
                if key not in names:
                    raise ValueError(
                        "when filters is a list, filter_params maps the bank names "
                        "of that list to dicts of keyword arguments, e.g. "
                        f"{{'gabor': {{'size': 5}}}}; got key {key!r}, which is not "
                        f"a bank name in filters (names there: {sorted(names)})."
                    )
            items = []
            for i, item in enumerate(f):
                if isinstance(item, str):
                    kwargs = params.get(item, {})
                    if not isinstance(kwargs, dict):
                        raise TypeError(
                            f"filter_params[{item!r}] must be a dict of keyword "
                            f"arguments of bank {item!r}; got {kwargs!r}."
                        )
                    items.append((self._check_name(item), self._check_kwargs(item, kwargs)))
                else:
                    items.append((None, self._check_array(item, f"filters[{i}]")))
            return items
        if params:
            raise ValueError(
                "filter_params only applies to named banks, but filters is an "
                f"array; got filter_params={params!r}. Set filter_params=None."
            )
        return [(None, self._check_array(f, "filters"))]

    @staticmethod
    def _check_name(name):
        if name not in _banks.FIXED_BANKS and name not in _banks.LEARNED_BANKS:
            raise ValueError(
                f"unknown filter bank {name!r} in filters; known banks: "
                f"{', '.join(_banks.bank_names())}."
            )
        return name

    @staticmethod
    def _check_kwargs(name, kwargs):
        if "random_state" in kwargs:
            raise ValueError(
                f"filter_params for bank {name!r} contains 'random_state'; set the "
                "transformer's random_state parameter instead."
            )
        return dict(kwargs)

    @staticmethod
    def _check_array(value, what):
        if hasattr(value, "nnz") and hasattr(value, "toarray"):
            raise TypeError(f"{what} is a sparse matrix; pass a dense array.")
        try:
            array = np.asarray(value)
        except Exception as exc:  # ragged nested sequences
            raise TypeError(
                f"{what} could not be read as an array of numbers: {exc}"
            ) from exc
        if array.dtype.kind not in "fiub":
            raise TypeError(
                f"{what} must hold real numbers (a float array); got dtype "
                f"{array.dtype}."
            )
        if array.ndim not in (2, 3, 4):
            raise ValueError(
                f"{what} must be 2-D (p, q), 3-D (n_filters, p, q) or 4-D "
                f"(n_filters, p, q, n_channels); got {array.ndim}-D with shape "
                f"{array.shape}."
            )
        if 0 in array.shape:
            raise ValueError(f"{what} must not be empty; got shape {array.shape}.")
        if not np.isfinite(array).all():
            raise ValueError(f"{what} contains NaN or infinity; filters must be finite.")
        array = np.array(array, dtype=np.float64)  # a copy: the user's array stays theirs
        return array[None] if array.ndim == 2 else array

    def _make_filters(self, items, X, image_shape):
        """Build the banks (learning those that need X) and group them by shape."""
        rng = check_random_state(self.random_state)
        banks = []
        for name, value in items:
            if name is None:
                banks.append(value)
                continue
            try:
                if name in _banks.LEARNED_BANKS:
                    bank = _banks.learn_bank(
                        name,
                        self._training_images(X, image_shape),
                        random_state=rng,
                        **value,
                    )
                else:
                    bank = _banks.make_bank(name, random_state=rng, **value)
            except (TypeError, ValueError) as exc:
                context = f"filter bank {name!r} with filter_params {value!r}"
                if name in _banks.LEARNED_BANKS:
                    context += "; " + self._describe_images(
                        X.shape[1], image_shape, self.image_shape
                    )
                raise _contextual(exc, context) from exc
            banks.append(np.asarray(bank, dtype=np.float64))
        groups = [banks[0]]
        for bank in banks[1:]:
            if bank.shape[1:] == groups[-1].shape[1:]:
                groups[-1] = np.concatenate([groups[-1], bank])
            else:
                groups.append(bank)
        return groups

    @staticmethod
    def _training_images(X, image_shape):
        """The training rows as (n, h, w) images, channels folded into images."""
        if X.dtype.kind != "f":
            X = X.astype(np.float64)
        images = X.reshape((X.shape[0],) + tuple(image_shape))
        if images.ndim == 4:
            h, w, c = image_shape
            images = np.moveaxis(images, -1, 1).reshape(-1, h, w)
        return images

    # --- geometry -----------------------------------------------------------

    def _layout(self, filters, image_shape, dtype, n_features):
        """Validate every shape and place each group's features in the output."""
        context = self._describe_images(n_features, image_shape, self.image_shape)
        has_channels = len(image_shape) == 3
        groups = []
        start = 0
        first_filter = 0
        for bank in filters:
            add_axis = bank.ndim == 4 and not has_channels
            if bank.ndim == 4 and not has_channels and bank.shape[3] != 1:
                raise ValueError(
                    f"filters of shape {bank.shape} have {bank.shape[3]} channels, "
                    "but the images have no channel axis; pass image_shape=(height, "
                    f"width, {bank.shape[3]}) or (K, p, q) filters ({context})."
                )
            if bank.ndim == 4 and has_channels and bank.shape[3] != image_shape[2]:
                raise ValueError(
                    f"filters of shape {bank.shape} have {bank.shape[3]} channels, "
                    f"but the images have {image_shape[2]} ({context})."
                )
            images_shape = (1,) + tuple(image_shape) + ((1,) if add_axis else ())
            try:
                plan = plan_conv2d(images_shape, dtype, bank.shape, **self._conv_kwargs())
            except (TypeError, ValueError) as exc:
                raise _contextual(exc, context) from exc
            _, n_maps, out_h, out_w = plan.out_shape
            if self.activation == "split":
                n_maps *= 2
            pooled = self._pooled_shape((out_h, out_w), dtype, context)
            size = n_maps * pooled[0] * pooled[1]
            groups.append(
                _Group(
                    filters=bank,
                    first_filter=first_filter,
                    add_channel_axis=add_axis,
                    n_channels=image_shape[2] if plan.depthwise else 0,
                    n_maps=n_maps,
                    conv_shape=(out_h, out_w),
                    out_shape=pooled,
                    start=start,
                    stop=start + size,
                )
            )
            start += size
            first_filter += bank.shape[0]
        return groups

    def _conv_kwargs(self):
        return dict(
            padding=self.padding,
            pad_mode=self.pad_mode,
            stride=self.stride,
            dilation=self.dilation,
            flip=self.flip,
            method=self.method,
        )

    def _pool_kwargs(self):
        return dict(
            size=self.pool_size, stride=self.pool_stride, op=self.pooling, grid=self.pool_grid
        )

    def _pooled_shape(self, map_shape, dtype, context):
        if self.pooling is None:
            return map_shape
        # pool2d validates its arguments on a one-map dummy: the shape
        # arithmetic lives in one place, the engine.
        try:
            pooled = pool2d(np.zeros((1, 1) + map_shape, dtype), **self._pool_kwargs())
        except (TypeError, ValueError) as exc:
            where = (
                f"pooling={self.pooling!r}, pool_size={self.pool_size!r}, "
                f"pool_stride={self.pool_stride!r}, pool_grid={self.pool_grid!r} on "
                f"maps of {map_shape[0]}x{map_shape[1]}; {context}"
            )
            raise _contextual(exc, where) from exc
        return pooled.shape[-2:]

    def _maps_per_row(self, group):
        """Elements of the temporaries one row needs, before pooling."""
        conv_maps = group.filters.shape[0] * max(group.n_channels, 1)
        elements = conv_maps * group.conv_shape[0] * group.conv_shape[1]
        if self.activation == "split":
            elements *= 3  # the signed maps and the two rectified halves
        return elements

    # --- the work -----------------------------------------------------------

    def _transform_group(self, images, group, target):
        """Write one group's features of one chunk into ``target`` (rows, cols)."""
        if group.add_channel_axis:
            images = images[..., None]
        n = images.shape[0]
        conv_kwargs = dict(self._conv_kwargs(), n_jobs=self.n_jobs)
        direct = self.pooling is None and self.activation != "split"
        if direct:
            # The maps are the features: let conv2d write into the output
            # through a view (splitting the column axis never copies).
            maps = target.reshape((n, group.n_maps) + group.conv_shape)
            if np.may_share_memory(maps, target):
                conv2d(images, group.filters, out=maps, **conv_kwargs)
                rectify(maps, self.activation, copy=False)
                return
        maps = conv2d(images, group.filters, **conv_kwargs)
        maps = rectify(maps, self.activation, copy=False)
        if self.pooling is not None:
            maps = pool2d(maps, **self._pool_kwargs())
        target[...] = maps.reshape(n, -1)

    def _report(self, sl, n_samples, start_time):
        done = sl.stop
        elapsed = time.perf_counter() - start_time
        print(
            f"[{type(self).__name__}] rows {sl.start}-{sl.stop} of {n_samples} "
            f"({100 * done / max(n_samples, 1):.0f}%), {elapsed:.2f} s",
            file=sys.stderr,
            flush=True,
        )
