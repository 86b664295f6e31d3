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
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils._set_output import ADAPTERS_MANAGER, _get_output_config
from sklearn.utils.validation import (
    _check_feature_names_in,
    check_is_fitted,
    validate_data,
)

from . import _anysize, _incremental, _layout
from . import filters as _banks
from ._activation import ACTIVATIONS
from ._conv import PAD_MODES, PADDING_NAMES
from ._pooling import POOL_OPS
from ._strategies import METHODS
from ._validation import (
    check_not_masked,
    check_real_dtype,
    float_dtype,
    is_dask_array,
    is_sparse,
)

__all__ = ["BatchConv2DTransformer"]


# transform wraps its own output (see set_output): the automatic wrapping of
# scikit-learn's _SetOutputMixin names the columns with get_feature_names_out(),
# which cannot know the number of input features of an unfitted stateless
# transformer, and it would turn a lazy dask result into an in-memory frame.
class BatchConv2DTransformer(
    ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator, auto_wrap_output_keys=None
):
    """Convolution features: correlate images with a filter bank, rectify, pool.

    Each row of ``X`` is one image, flattened in C order (channels last, or
    channels first with ``channel_axis=0``).  The transformer reshapes the
    rows into images (a free view, no copy), correlates every image with
    every filter (a cross-correlation, like ``torch.nn.functional.conv2d``;
    ``flip=True`` gives a true convolution),
    optionally rectifies and pools the maps, and returns them flattened,
    one row per image.  All the work is done in chunks of rows that fit in
    scikit-learn's ``working_memory``, with :func:`skconv.conv2d` and
    :func:`skconv.pool2d`.

    With fixed filters (an array or a built-in bank such as ``"edges"``) the
    transformer is stateless: ``transform`` works without ``fit``.  With a
    learned bank (``"pca"``, ``"kmeans"``) ``fit`` learns the filters from the
    training images; with ``"random"`` it draws them (like the random weights
    of :class:`~sklearn.kernel_approximation.RBFSampler`).  These three
    require ``fit``.

    **Fitted state.** As in scikit-learn, what ``fit`` learned is used until
    the next ``fit``, and every other parameter is read when ``transform``
    runs.  The filters of ``"pca"``, ``"kmeans"`` and ``"random"`` (alone or
    in a list) are learned: ``transform`` uses ``filters_``, and changes to
    ``filters``, ``filter_params`` or ``random_state`` take effect at the next
    ``fit``; an ``image_shape`` that reads the rows differently from the
    images ``"pca"`` or ``"kmeans"`` learned on raises a ValueError.  Fixed
    filters are rebuilt from the current parameters at every ``transform``
    (named banks come from a small cache).  ``get_feature_names_out`` follows
    the same rule, so its names always match the columns of ``transform``.

    Parameters
    ----------
    filters : str, array-like or list, default="default"
        The filters:

        - the name of a built-in bank (see :func:`skconv.filters.bank_names`),
          e.g. ``"edges"``, ``"gabor"``, the learned banks ``"pca"`` and
          ``"kmeans"``, or ``"random"`` (drawn by ``fit``);
        - one filter of shape (p, q);
        - a bank of shape (K, p, q), applied to each channel of
          multichannel images separately (depthwise);
        - a bank of shape (K, p, q, c) of multichannel filters, each summed
          over the c channels of the images (``image_shape=(h, w, c)``);
        - a list (or tuple) whose items are any of the above (arrays or bank
          names); the items may have different filter sizes.  Consecutive
          items with the same filter shape run as one bank of all their
          filters (a size group, see Notes), and the groups' feature maps
          are concatenated in list order.  A nested Python list is
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
        made from it in ``fit`` and passed to these banks in list order;
        ``fit`` keeps their filters in ``filters_``.  Pass an int for
        reproducible filters.
        See :term:`Glossary <random_state>`.

    image_shape : tuple of int, default=None
        Shape of one image, its axes listed in the order of the row:
        ``(height, width)``, ``(height, width, n_channels)`` with
        ``channel_axis=-1`` or ``(n_channels, height, width)`` with
        ``channel_axis=0``; the product must equal the number of features of
        ``X``.  One entry may be None, inferred from the number of features
        (as a -1 in :func:`numpy.reshape`), and height and width may both be
        None for square images: ``(8, None, None)`` reads 8 square maps.
        None reads each row as a square image when the number of features is
        a perfect square (64 features: 8x8 images) and as a 1 x n_features
        strip otherwise.

    channel_axis : {-1, 0} or None, default=-1
        Where the channels are in a row, as in scikit-image: -1 channels
        last (``(h, w, c)`` images, e.g. RGB pixels), 0 channels first
        (``(c, h, w)``: the filter-major output of another transformer, see
        *Cascades* in the Notes), None no channels (``image_shape`` must then
        be 2-D).  Only a 3-D ``image_shape`` has channels; ``channel_axis=0``
        requires one.  The features and their names do not depend on the
        axis: channels-first rows give the features of the same images
        stored channels-last.

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
        The filters resolved by ``fit``, float64, one array per size
        group: consecutive items of ``filters`` with the same filter shape
        are stacked into one (K, p, q) or (K, p, q, c) array; a single
        (p, q) filter becomes (1, p, q).  With ``"pca"``, ``"kmeans"`` or
        ``"random"`` these are the learned (drawn) filters that
        ``transform`` uses; fixed filters are rebuilt by ``transform`` from
        the current parameters (the same arrays unless they were changed
        with ``set_params`` after ``fit``).

    image_shape_ : tuple of int
        The shape each row was read as in ``fit``: ``image_shape``, or the
        shape deduced from ``n_features_in_`` when ``image_shape`` is None.

    n_features_in_ : int
        Number of features seen during :term:`fit`.

    n_samples_seen_ : int
        Rows seen by ``partial_fit`` since the stream started (set by
        ``partial_fit`` only; ``fit`` removes it).

    stream_state_ : object
        The running statistics of ``partial_fit`` (patch scatter matrix of
        ``"pca"``, whitening and mini-batch k-means of ``"kmeans"``); set by
        ``partial_fit`` only, removed by ``fit``.

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
    - Several size groups: in a list of filters, consecutive items with
      the same filter shape form one group, laid out as above as one bank
      of all their filters (K counts them all: with channels, the maps of
      two 3x3 items interleave channel by channel, as if stacked into one
      array).  The groups' features are concatenated in list order; their
      maps may have different sizes (e.g. with ``padding="valid"``).

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
    in ``fit`` only, none for channels-first rows); the filters are then
    applied depthwise.  On the maps of a previous layer this is the second
    stage of PCANet [1]_, which learns from the patches of all first-stage
    maps.

    **Cascades.** The output of one transformer, ``(n_samples, K * h' *
    w')`` filter-major, is a row of K channels-first maps: a second
    transformer with ``channel_axis=0`` and ``image_shape=(K, h', w')`` (or
    ``(K, None, None)`` for square maps, or ``(None, h', w')`` when K may
    change, e.g. in a grid search over the first layer) reads it as
    K-channel images, so ``make_pipeline(first, second)`` is a two-layer
    network.  (K, p, q) filters then run on each map of the first layer
    (map ``ch * K2 + k`` is filter k on map ch, named
    ``conv_f{k}_ch{ch}_...``); (K2, p, q, K) filters sum over the maps.
    Each chunk of channels-first rows is copied channels-last once before
    its convolution.  :mod:`skconv.recipes` builds such cascades, with
    several scattering orders side by side in a
    :class:`~sklearn.pipeline.FeatureUnion`.

    **Output containers.** ``set_output(transform="pandas")`` (or
    ``"polars"``, or the global ``transform_output``) names the columns as
    ``get_feature_names_out`` does, also without ``fit`` for fixed filters.
    A dask array ``X`` is never computed by ``transform``: with the
    "default" output the result is a lazy dask array, with "pandas" a lazy
    ``dask.dataframe.DataFrame`` with those column names, and "polars",
    which has no lazy dask counterpart, raises a ValueError.

    **Input.** ``X`` must be dense: sparse input raises a TypeError (images
    are dense; densify chunks of rows with ``.toarray()``).  float32 input
    gives float32 features, any other real dtype float64; the dtype cast and
    any contiguous copy are done chunk by chunk, never on the whole ``X``
    (except in ``fit`` of a learned bank, which casts the training images
    it samples patches from once).  ``X`` is never modified.

    References
    ----------
    .. [1] T.-H. Chan, K. Jia, S. Gao, J. Lu, Z. Zeng and Y. Ma, "PCANet: A
       Simple Deep Learning Baseline for Image Classification?", IEEE
       Transactions on Image Processing 24(12), 2015.

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

    A two-layer cascade: the second layer reads the 4 maps of 8x8 of the
    first as 4-channel images and applies its 2 filters to each map.

    >>> from sklearn.pipeline import make_pipeline
    >>> cascade = make_pipeline(
    ...     BatchConv2DTransformer(filters="edges", activation="abs"),
    ...     BatchConv2DTransformer(filters=np.ones((2, 3, 3)), channel_axis=0,
    ...                            image_shape=(4, None, None), pooling="max"))
    >>> cascade.fit_transform(X).shape  # 4 maps x 2 filters x (4 x 4)
    (1797, 128)
    >>> cascade[-1].image_shape_, cascade[-1].get_feature_names_out()[16]
    ((4, 8, 8), 'conv_f1_ch0_r0_c0')
    """

    _parameter_constraints: dict = {
        "filters": [StrOptions(set(_banks.bank_names())), "array-like"],
        "filter_params": [None, dict],
        "random_state": ["random_state"],
        "image_shape": [None, tuple, list],
        "channel_axis": [None, Options(Integral, {-1, 0})],
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
        channel_axis=-1,
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
        self.channel_axis = channel_axis
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
        _incremental.reset(self)  # fit forgets what partial_fit accumulated
        shape = _layout.image_shape(X.shape[1], self.image_shape, self.channel_axis)
        # Copies: fixed named banks come from a cache of read-only arrays.
        filters = [np.array(bank) for bank in self._filters(shape, X)]
        self._plan(filters, shape, X.dtype, X.shape[1])
        self.filters_, self.image_shape_ = filters, shape
        self._fit_channel_axis = self.channel_axis
        # What transform must keep from this fit (see "Fitted state").
        if _banks._learns_from_images(self.filters):
            self._fitted_filters = "learned"
        elif _banks._learns(self.filters):
            self._fitted_filters = "drawn"
        else:
            self._fitted_filters = "fixed"
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """Learn the filters from one more chunk of rows (out-of-core learning).

        The first call (or the first after ``fit``) starts from the current
        parameters; each later call adds a chunk, with the same number of
        features, and ``filters_`` is usable after every call.  With
        ``"pca"`` (every patch position, its default ``n_patches=None``) the
        filters after any chunking equal those of ``fit`` on all the rows,
        up to rounding.  With ``"kmeans"`` each chunk makes mini-batch
        k-means steps on its own sample of up to ``n_patches`` whitened
        patches (details in ``skconv._incremental.KMeansStream``): close to
        ``fit``, not equal.  Fixed banks are built, and ``"random"`` drawn,
        at the first call.  Works with dask-ml's ``Incremental`` wrapper.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A chunk of training images, one flattened image per row.

        y : None
            Ignored.

        Returns
        -------
        self : object
            The transformer, with ``filters_`` learned from every chunk so far.

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from skconv import BatchConv2DTransformer
        >>> X, _ = load_digits(return_X_y=True)
        >>> conv = BatchConv2DTransformer(filters="pca", filter_params={"size": 3})
        >>> for start in range(0, len(X), 500):
        ...     conv = conv.partial_fit(X[start : start + 500])
        >>> full = BatchConv2DTransformer(filters="pca", filter_params={"size": 3}).fit(X)
        >>> bool(abs(conv.filters_[0] - full.filters_[0]).max() < 1e-10)
        True
        """
        return _incremental.partial_fit(self, X)

    def transform(self, X):
        """Correlate each image with the filters, rectify and pool.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or list of arrays
            Images, one flattened image per row (channels last).  A list or
            tuple of 2-D (h, w) or 3-D (h, w, c) numpy arrays is read as
            images of any size: see :func:`skconv.transform_images`.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features_out)
            The features, float32 for float32 input and float64 otherwise,
            laid out as described in the Notes (a DataFrame under
            ``set_output``, a lazy dask array for a dask array ``X``).
        """
        if _anysize.is_image_list(X):  # images of any size: see skconv.transform_images
            return _anysize.transform_images(self, X)
        self._validate_params()
        if _banks._learns(self.filters) and not hasattr(self, "filters_"):
            check_is_fitted(self, "filters_")  # raises NotFittedError
        output = _get_output_config("transform", self)["dense"]
        if is_dask_array(X):
            return self._transform_dask(X, output)
        X_checked = self._check_X(X, reset=False)
        layout = self._current_layout(X_checked.shape[1], X_checked.dtype)
        features = self._features(X_checked, layout, checked=True)
        if output == "default":
            return features
        # The names come from the layout that made the columns: they match
        # whether or not the transformer was fitted.
        return ADAPTERS_MANAGER.adapters[output].create_container(
            features, X, columns=np.asarray(_layout.feature_names(layout), dtype=object)
        )

    def set_output(self, *, transform=None):
        """Set the output container of ``transform`` and ``fit_transform``.

        See :ref:`sphx_glr_auto_examples_miscellaneous_plot_set_output.py`
        for an example on how to use the API.

        Parameters
        ----------
        transform : {"default", "pandas", "polars"}, default=None
            Configure output of `transform` and `fit_transform`.

            - `"default"`: Default output format of a transformer
            - `"pandas"`: DataFrame output
            - `"polars"`: Polars output
            - `None`: Transform configuration is unchanged

        Returns
        -------
        self : estimator instance
            Estimator instance.
        """
        if transform is None:
            return self
        if not hasattr(self, "_sklearn_output_config"):
            self._sklearn_output_config = {}
        self._sklearn_output_config["transform"] = transform
        return self

    def _transform_dask(self, X, output):
        """The lazy features of a dask array of rows.

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
        if output not in ("default", "pandas"):
            raise ValueError(
                f"transform_output={output!r} would compute the dask array X in full "
                "(it has no lazy dask container); use set_output(transform='default') "
                "for a lazy dask array or 'pandas' for a lazy dask DataFrame, or "
                "compute X first."
            )
        # Resolved once, here: every block must use the same filters.
        layout = self._current_layout(X.shape[1], X.dtype)
        X = X.rechunk({1: -1})
        features = X.map_blocks(
            functools.partial(self._features, layout=layout),
            dtype=layout.dtype,
            chunks=(X.chunks[0], (layout.n_features_out,)),
            meta=np.empty((0, 0), layout.dtype),
        )
        if output == "default":
            return features
        try:
            import dask.dataframe as dd
        except ImportError as exc:
            raise ValueError(
                "transform_output='pandas' on a dask array X needs dask.dataframe, "
                f"which could not be imported ({exc}); use set_output(transform="
                "'default') for a lazy dask array, or compute X first."
            ) from exc
        return dd.from_dask_array(features, columns=list(_layout.feature_names(layout)))

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
            columns of ``transform`` with the current parameters (see the
            Notes of the class).
        """
        check_is_fitted(self, "n_features_in_")
        _check_feature_names_in(self, input_features, generate_names=False)
        self._validate_params()
        layout = self._current_layout(self.n_features_in_, np.float64)
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
        if _anysize.is_image_list(X):
            raise ValueError(
                "X must be 2-D (n_samples, n_features) with one flattened image per row; got "
                f"a list of {len(X)} image arrays: fit and partial_fit learn from images of "
                "one size, as rows (transform also takes a list of images of any size)."
            )
        dtype = getattr(X, "dtype", None)
        if isinstance(dtype, np.dtype) and dtype.kind == "c":
            raise ValueError(_complex_message(f"complex dtype {dtype}"))
        check_not_masked(X, "X")
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
        try:
            return validate_data(
                self,
                X,
                reset=reset,
                accept_sparse=False,
                dtype="numeric",
                ensure_all_finite=True,
                ensure_min_samples=1 if reset else 0,
            )
        except ValueError as exc:
            # Lists and DataFrames of complex numbers, and strings, reach
            # check_array, whose messages do not name X.
            if "Complex data not supported" in str(exc):
                raise ValueError(_complex_message("complex values")) from exc
            if "arrays of bytes/strings" in str(exc):
                raise ValueError(
                    f"X must hold numbers; got strings (dtype {np.asarray(X).dtype}): "
                    "convert them to numbers first."
                ) from exc
            raise

    def _filters(self, shape, X=None):
        """The banks of ``filters``, learned on X when needed, grouped by size."""
        items = _banks._spec_items(self.filters, self.filter_params)
        context = "" if X is None else self._describe(X.shape[1], shape)
        images = functools.partial(_layout.training_images, X, shape, self.channel_axis)
        return _layout.size_groups(_banks._build_banks(items, self.random_state, images, context))

    def _current_layout(self, n_features, dtype):
        """The layout of a transform: learned filters, or fixed banks built now.

        This is the "Fitted state" rule of the class docstring, in one place.
        """
        shape = _layout.image_shape(n_features, self.image_shape, self.channel_axis)
        fitted = getattr(self, "_fitted_filters", None)
        if fitted in ("learned", "drawn"):
            if fitted == "learned" and (
                _layout.conv_shape(shape, self.channel_axis) != self._fit_conv_shape()
            ):
                raise ValueError(
                    f"image_shape={self.image_shape!r} with channel_axis="
                    f"{self.channel_axis!r} reads the rows as images of shape {shape}, "
                    f"but fit learned the filters on images of shape {self.image_shape_} "
                    "(axes in the order of the row); set image_shape and channel_axis back "
                    "or call fit again."
                )
            filters = self.filters_
        elif _banks._learns(self.filters):
            raise NotFittedError(
                f"filters={self.filters!r} must be learned (or drawn) by fit, but this "
                f"{type(self).__name__} was fitted with fixed filters; call fit again."
            )
        else:
            filters = self._filters(shape)
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
        context = self._describe(n_features, shape)
        return _layout.plan_layout(
            filters,
            _layout.conv_shape(shape, self.channel_axis),
            float_dtype(dtype, "X"),
            conv=conv,
            activation=self.activation,
            pool=None if self.pooling is None else pool,
            context=context,
        )

    def _features(self, X, layout, checked=False):
        """The features of a validated 2-D numpy X (or one dask block of it).

        ``checked``: X went through ``_check_X`` (finite); a dask block did not.
        """
        # Half of working_memory for the maps of a chunk, half for conv2d's
        # own temporaries.
        budget = get_config()["working_memory"] / 2
        run = functools.partial(
            _layout.transform_rows,
            layout=layout,
            n_jobs=self.n_jobs,
            working_memory=budget,
            verbose=self.verbose,
            label=type(self).__name__,
            checked=checked,
        )
        with config_context(working_memory=budget):
            if len(layout.image_shape) == 2 or self.channel_axis != 0:
                return run(X)
            # Channels-first rows: each chunk (as transform_rows would cut it)
            # is copied channels-last once, then runs as channels-last rows.
            h, w, c = layout.image_shape
            n = X.shape[0]
            out = np.empty((n, layout.n_features_out), layout.dtype)
            step = _layout.chunk_rows(layout, X.dtype, X.shape[1], n, budget)
            for start in range(0, n, step):
                rows = _layout.channels_last(X[start : start + step], (c, h, w), layout.dtype)
                out[start : start + step] = run(rows)
            return out

    def _describe(self, n_features, shape):
        """How the rows were read, for error messages."""
        return _layout.describe_images(n_features, shape, self.image_shape, self.channel_axis)

    def _fit_conv_shape(self):
        """The channels-last shape fit read the images as (``image_shape_`` in row order)."""
        return _layout.conv_shape(tuple(self.image_shape_), getattr(self, "_fit_channel_axis", -1))


def _complex_message(got):
    # scikit-learn's check_array says "Complex data not supported" (a
    # ValueError, which its estimator checks expect) without naming X.
    return (
        f"X must hold real numbers; got {got}. Complex data not supported: convolve the "
        "real and imaginary parts separately."
    )
