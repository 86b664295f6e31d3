"""BatchConv2DTransformer: convolution features as a scikit-learn transformer.

The estimator holds its parameters and scikit-learn's protocol; the numerics
and the column layout live in :mod:`skconv._layout` (rows read as images,
conv2d -> activation -> pooling chunk by chunk) and the filter banks in
:mod:`skconv.filters`.
"""

import functools
from numbers import Integral

import numpy as np
from sklearn import config_context, get_config
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    _check_feature_names_in,
    check_is_fitted,
    validate_data,
)

from . import _layout
from . import filters as _banks
from ._activation import ACTIVATIONS
from ._conv import PAD_MODES, PADDING_NAMES
from ._pooling import POOL_OPS
from ._strategies import METHODS
from ._validation import check_real_dtype, float_dtype, is_dask_array, is_sparse

__all__ = ["BatchConv2DTransformer"]


class BatchConv2DTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
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
        patch sampling and k-means of the learned banks).  One generator is
        made from it and passed to these banks in list order.  ``fit`` draws
        the filters once and keeps them in ``filters_``; a stateless
        ``transform`` called without ``fit`` draws them at each call, so pass
        an int for reproducible features.
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
        shape = _layout.image_shape(X.shape[1], self.image_shape)
        filters = self._filters(shape, X)
        layout = self._plan(filters, shape, X.dtype, X.shape[1])
        self.filters_, self.image_shape_ = filters, shape
        self._n_features_out = layout.n_features_out
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
        if not hasattr(self, "filters_") and _banks._learns(self.filters):
            check_is_fitted(self, "filters_")  # raises NotFittedError
        if is_dask_array(X):
            return self._transform_dask(X)
        X = self._check_X(X, reset=False)
        return self._features(X, self._current_layout(X.shape[1], X.dtype))

    def _transform_dask(self, X):
        """A lazy dask array of the features of a dask array of rows.

        Nothing is computed here: each block of rows becomes a block of
        features on whichever worker holds it.  Column chunks are merged first
        (an image is a whole row); the output's chunks are given explicitly
        (dask-ml's ParallelPostFit omits them and reports the input's shape).
        """
        _layout.check_rows(X.ndim, X.shape)
        check_real_dtype(X.dtype, "X")
        if hasattr(self, "n_features_in_") and X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is "
                f"expecting {self.n_features_in_} features as input."
            )
        # Resolved once, here: every block must use the same filters.
        layout = self._current_layout(X.shape[1], X.dtype)
        X = X.rechunk({1: -1})
        return X.map_blocks(
            functools.partial(self._features, layout=layout),
            dtype=layout.dtype,
            chunks=(X.chunks[0], (layout.n_features_out,)),
            meta=np.empty((0, 0), layout.dtype),
        )

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
        layout = self._plan(self.filters_, self.image_shape_, np.float64, self.n_features_in_)
        return np.asarray(_layout.feature_names(layout), dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = _banks._learns(self.filters)
        tags.input_tags.sparse = False
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # --- helpers: each hands the parameters to the module that owns the rule ---

    def _check_X(self, X, reset):
        """Validate X without casting or copying it as a whole."""
        if is_sparse(X):
            raise TypeError(
                f"X must be dense images; got a sparse {type(X).__name__}: convert it "
                "with X.toarray() (chunk by chunk of rows for a large X)."
            )
        ndim = getattr(X, "ndim", None)
        if isinstance(ndim, int):
            _layout.check_rows(ndim, getattr(X, "shape", None))
        # dtype="numeric" keeps float32, float64 and integers as they are:
        # the cast to the working float dtype is done per chunk in transform.
        # transform maps 0 rows to 0 rows (dask blocks can be empty); fit
        # still refuses empty data.
        return validate_data(
            self,
            X,
            reset=reset,
            accept_sparse=False,
            dtype="numeric",
            ensure_all_finite=True,
            ensure_min_samples=1 if reset else 0,
        )

    def _filters(self, shape, X=None):
        """The banks of ``filters``, learned on X when needed, grouped by size."""
        items = _banks._spec_items(self.filters, self.filter_params)
        context = "" if X is None else _layout.describe_images(X.shape[1], shape, self.image_shape)
        images = functools.partial(_layout.training_images, X, shape)
        return _layout.size_groups(_banks._build_banks(items, self.random_state, images, context))

    def _current_layout(self, n_features, dtype):
        """The layout of a transform: fitted filters, or fixed banks built now."""
        shape = _layout.image_shape(n_features, self.image_shape)
        filters = self.filters_ if hasattr(self, "filters_") else self._filters(shape)
        return self._plan(filters, shape, dtype, n_features)

    def _plan(self, filters, shape, dtype, n_features):
        """The layout of ``filters`` on rows of ``n_features`` read as ``shape``."""
        conv = dict(
            padding=self.padding,
            pad_mode=self.pad_mode,
            stride=self.stride,
            dilation=self.dilation,
            flip=self.flip,
            method=self.method,
        )
        pool = dict(
            size=self.pool_size, stride=self.pool_stride, op=self.pooling, grid=self.pool_grid
        )
        context = _layout.describe_images(n_features, shape, self.image_shape)
        return _layout.plan_layout(
            filters,
            shape,
            float_dtype(dtype, "X"),
            conv=conv,
            activation=self.activation,
            pool=None if self.pooling is None else pool,
            context=context,
        )

    def _features(self, X, layout):
        """The features of a validated 2-D numpy X (or one dask block of it)."""
        # Half of working_memory for the maps of a chunk, half for conv2d's
        # own temporaries.
        budget = get_config()["working_memory"] / 2
        with config_context(working_memory=budget):
            return _layout.transform_rows(
                X,
                layout,
                n_jobs=self.n_jobs,
                working_memory=budget,
                verbose=self.verbose,
                label=type(self).__name__,
            )
