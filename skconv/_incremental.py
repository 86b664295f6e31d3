"""Out-of-core learning of the learned banks: the state behind ``partial_fit``.

``BatchConv2DTransformer.partial_fit`` feeds chunks of rows to one stream
per item of ``filters``.  A learned bank keeps running statistics of the
patches seen so far and can give its filters after every chunk:

- ``"pca"`` accumulates the scatter matrix ``sum x x^T`` of the mean-removed
  patches.  With every patch position (``n_patches=None``, the default of
  :func:`skconv.filters.pca`) that matrix is a sum over images, so any
  chunking gives the filters of one ``fit`` on all the rows, up to rounding.
- ``"kmeans"`` runs mini-batch k-means (Sculley 2010,
  :class:`sklearn.cluster.MiniBatchKMeans`) on each chunk's whitened patches;
  see :class:`KMeansStream` for the exact procedure.

Fixed banks are built, and ``"random"`` drawn, at the first chunk.
"""

import copy
import inspect

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.utils import check_random_state
from threadpoolctl import threadpool_limits

from . import _layout
from . import filters as _banks
from ._validation import check_bool, check_int, contextual

__all__ = ["KMeansStream", "PCAStream", "partial_fit", "reset"]

# Attributes of the transformer that partial_fit sets and fit removes.
STREAM_ATTRIBUTES = ("stream_state_", "n_samples_seen_")

# Rows of patches per MiniBatchKMeans step: scikit-learn's default batch_size.
KMEANS_BATCH = 1024


def _defaults(func):
    """The keyword defaults of a bank function, so the streams share them."""
    return {
        name: param.default
        for name, param in inspect.signature(func).parameters.items()
        if param.default is not inspect.Parameter.empty
    }


def _check_kwargs(name, func, kwargs):
    """``func``'s defaults updated with ``kwargs``; unknown keywords raise as make_bank does."""
    accepted = [
        a for a in inspect.signature(func).parameters if a not in ("images", "random_state")
    ]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(
            f"filter bank {name!r} got unexpected parameter(s) {', '.join(unknown)}; "
            f"it accepts: {', '.join(accepted)}."
        )
    params = _defaults(func)
    params.pop("random_state", None)
    params.update(kwargs)
    return params


def _seed(rng):
    """A seed drawn from the transformer's generator, for one stream's own generator."""
    return int(rng.randint(np.iinfo(np.int32).max))


def _centred(patches):
    x = patches.reshape(len(patches), -1)
    return x - x.mean(axis=1, keepdims=True)


class PCAStream:
    """The running scatter matrix of :func:`skconv.filters.pca`.

    ``n_patches=None`` takes every patch position of every image: the
    scatter matrix is then a sum over images and the filters after any
    sequence of chunks equal those of :func:`skconv.filters.pca` on all of
    them, up to rounding.  An int ``n_patches`` draws up to that many patches
    from each chunk.
    """

    def __init__(self, rng, **kwargs):
        params = _check_kwargs("pca", _banks.pca, kwargs)
        self.n_filters = check_int(params["n_filters"], "n_filters", 1)
        self.size = _banks._check_size(params["size"])
        p, q = self.size
        _banks._check_patch_pixels(p, q, params["size"])
        if self.n_filters > p * q - 1:
            raise ValueError(
                f"n_filters must be at most p * q - 1 = {p * q - 1} for size "
                f"{params['size']!r}; got {self.n_filters}."
            )
        self.n_patches = params["n_patches"]
        if self.n_patches is not None:
            self.n_patches = check_int(self.n_patches, "n_patches", 1)
            # Only a sampling stream draws: fit's generator is then used
            # alike (pca ignores it with n_patches=None).
            self.rng = np.random.RandomState(_seed(rng))
        self.scatter = np.zeros((p * q, p * q))
        self.count = 0
        # The scatter is kept in units of 4**exponent, the patches divided by
        # 2**exponent (exact), as pca() does: squares of pixels of 1e300
        # overflow, of 1e-300 underflow.  A chunk of larger pixels raises the
        # exponent and the sum so far is divided to match.
        self.exponent = None

    def update(self, images):
        if self.n_patches is None:
            images = _banks._check_images(images)
            exponent = self._units(_banks._unit_exponent(images))
            scatter, count = _banks._patch_scatter(images, self.size, exponent)
        else:
            patches = _banks._sample_patches(images, self.size, self.n_patches, self.rng)
            exponent = self._units(_banks._unit_exponent(patches))
            x = _centred(np.ldexp(patches, -exponent))
            scatter, count = x.T @ x, len(x)
        self.scatter += scatter
        self.count += count

    def _units(self, exponent):
        """The exponent to divide a chunk by, after raising the stream's to it if needed."""
        if self.exponent is None or not self.count:
            self.exponent = exponent
        elif exponent > self.exponent:
            self.scatter = np.ldexp(self.scatter, 2 * (self.exponent - exponent))
            self.exponent = exponent
        return self.exponent

    def filters(self, shape):
        _banks._check_patch_scatter(self.scatter, self.count, self.n_filters, shape, self.n_patches)
        p, q = self.size
        return _banks._pca_from_scatter(self.scatter, self.n_filters).reshape(-1, p, q)


class KMeansStream:
    """Mini-batch k-means filters of normalised, whitened patches.

    The streaming counterpart of :func:`skconv.filters.kmeans`, chunk by chunk:

    1. Draw up to ``n_patches`` distinct patches from the chunk, uniformly.
    2. Contrast-normalise them with ``contrast_eps``; when it is None it is
       computed from the FIRST chunk's range (as :func:`~skconv.filters.kmeans`
       does from all images) and then kept: later patches must be normalised
       like earlier ones.
    3. With ``whiten``: update the running mean ``m`` and covariance ``C`` of
       all normalised patches seen (Chan, Golub & LeVeque's pairwise update),
       recompute the ZCA matrix ``W`` from them, and move the centroids into
       the new whitened space (``c <- (W_old^-1 c + m_old - m) W``: the same
       points of patch space).
    4. Clustering: the first chunk's whitened patches initialise the
       centroids with :class:`sklearn.cluster.KMeans` (k-means++,
       ``n_init=3``, as the full fit); then every chunk, the first included,
       makes mini-batch steps (:meth:`sklearn.cluster.MiniBatchKMeans.partial_fit`,
       batches of 1024 patches in a random order).
    5. Filters: the centroids folded with the current whitening, ``W c_k``.
    """

    def __init__(self, rng, **kwargs):
        params = _check_kwargs("kmeans", _banks.kmeans, kwargs)
        self.n_filters = check_int(params["n_filters"], "n_filters", 1)
        self.size = p, q = _banks._check_size(params["size"])
        _banks._check_patch_pixels(p, q, params["size"])
        if p * q < 2:
            raise ValueError(f"size must hold at least 2 pixels; got {params['size']!r}.")
        self.n_patches = check_int(params["n_patches"], "n_patches", 1)
        self.whiten = check_bool(params["whiten"], "whiten")
        self.whiten_eps = _banks._check_float(params["whiten_eps"], "whiten_eps")
        self.contrast_eps = params["contrast_eps"]
        if self.contrast_eps is not None:
            self.contrast_eps = _banks._check_float(self.contrast_eps, "contrast_eps")
        # contrast_eps is kept in units of 4**eps_exponent (see update)
        self.eps_exponent = 0
        self.rng = np.random.RandomState(_seed(rng))
        d = p * q
        self.count, self.mean, self.m2 = 0, np.zeros(d), np.zeros((d, d))
        self.w, self.w_inv = np.eye(d), np.eye(d)
        self.km = None

    def update(self, images):
        # As skconv.filters.kmeans: the patches divided by a power of two near
        # their largest magnitude (exact) and contrast_eps by its square, so
        # that pixels of 1e300 or 1e-300 neither overflow nor underflow.  The
        # normalised patches do not depend on it: each chunk has its own.
        patches = _banks._sample_patches(images, self.size, self.n_patches, self.rng)
        exponent = _banks._unit_exponent(patches)
        x = _centred(np.ldexp(patches, -exponent))
        if self.km is None:
            if len(x) < self.n_filters:
                raise ValueError(
                    f"only {len(x)} patches can be drawn from the first chunk, of shape "
                    f"{np.shape(images)}, with n_patches={self.n_patches}, fewer than "
                    f"n_filters={self.n_filters}: start with a larger chunk."
                )
            if not x.any():
                raise ValueError(
                    "images must vary within patches; got only flat (constant) sampled "
                    "patches in the first chunk: there is nothing to learn."
                )
            if self.contrast_eps is None:
                self.contrast_eps = _banks._default_contrast_eps(images, exponent)
                self.eps_exponent = exponent
        _banks._contrast_normalise(x, exponent, self.contrast_eps, self.eps_exponent)
        if self.whiten:
            self._update_whitening(x)
            x = (x - self.mean) @ self.w
        # One OpenMP thread: these are small problems (batches of 1024 rows),
        # and k-means' OpenMP threads on a busy machine measured 10-25x slower
        # (digits, 2 shared cores: a stream of 9 chunks 2.9 s, 0.10 s with one).
        with threadpool_limits(limits=1, user_api="openmp"):
            self._cluster(x)

    def _cluster(self, x):
        if self.km is None:
            init = KMeans(n_clusters=self.n_filters, n_init=3, random_state=self.rng).fit(x)
            self.km = MiniBatchKMeans(
                n_clusters=self.n_filters,
                init=init.cluster_centers_,
                n_init=1,
                batch_size=KMEANS_BATCH,
                compute_labels=False,
                random_state=self.rng,
            )
        order = self.rng.permutation(len(x))
        for start in range(0, len(x), KMEANS_BATCH):
            self.km.partial_fit(x[order[start : start + KMEANS_BATCH]])

    def _update_whitening(self, x):
        n_b = len(x)
        mean_b = x.mean(axis=0)
        dev = x - mean_b
        total = self.count + n_b
        delta = mean_b - self.mean
        old_mean, old_w_inv = self.mean, self.w_inv
        self.m2 = self.m2 + dev.T @ dev + np.outer(delta, delta) * (self.count * n_b / total)
        self.mean = self.mean + delta * (n_b / total)
        self.count = total
        # np.cov's normalisation (n - 1), as skconv.filters.kmeans
        eigvals, eigvecs = np.linalg.eigh(self.m2 / max(total - 1, 1))
        scale = np.sqrt(np.maximum(eigvals, 0) + self.whiten_eps)
        self.w = (eigvecs / scale) @ eigvecs.T
        self.w_inv = (eigvecs * scale) @ eigvecs.T
        if self.km is not None:
            centres = self.km.cluster_centers_ @ old_w_inv + old_mean
            self.km.cluster_centers_ = np.ascontiguousarray((centres - self.mean) @ self.w)

    def filters(self, shape):
        p, q = self.size
        return (self.km.cluster_centers_ @ self.w).reshape(-1, p, q)


STREAMS = {"pca": PCAStream, "kmeans": KMeansStream}


class Stream:
    """One entry per item of ``filters``: a fixed float64 bank or a learning stream."""

    def __init__(self, items, random_state, context):
        rng = check_random_state(random_state)
        self.entries = []
        for name, value in items:
            if name is None:
                self.entries.append((name, value, value))
                continue
            try:
                if name in STREAMS:
                    entry = STREAMS[name](rng, **value)
                elif name in _banks.FITTED_BANKS:
                    entry = _banks.make_bank(name, random_state=rng, **value)
                else:
                    entry = np.array(_banks._cached_bank(name, value))
            except (TypeError, ValueError) as exc:
                raise _where(exc, name, value, context) from exc
            self.entries.append((name, value, entry))

    def update(self, images, shape, context):
        """Feed one chunk of (n, h, w) images; return the banks after it."""
        banks = []
        for name, value, entry in self.entries:
            if isinstance(entry, np.ndarray):
                banks.append(entry)
                continue
            try:
                if len(images):
                    entry.update(images)
                banks.append(np.ascontiguousarray(entry.filters(shape), dtype=np.float64))
            except (TypeError, ValueError) as exc:
                raise _where(exc, name, value, context) from exc
        return banks


def _where(exc, name, value, context):
    return contextual(exc, f"filter bank {name!r} with filter_params {value!r}; {context}")


def reset(estimator):
    """Forget a stream (``fit`` starts afresh)."""
    for name in STREAM_ATTRIBUTES:
        estimator.__dict__.pop(name, None)


def partial_fit(estimator, X):
    """``BatchConv2DTransformer.partial_fit``: the parameters were validated by the caller.

    The first call (no ``stream_state_``) validates X with ``reset=True``
    and starts the streams from the current parameters; later calls check X
    against ``n_features_in_`` and the image shape.  The state is updated on
    a copy and stored only when the whole chunk succeeded, so an error leaves
    the estimator as it was.
    """
    first = not hasattr(estimator, "stream_state_")
    X = estimator._check_X(X, reset=first)
    axis = estimator.channel_axis
    shape = _layout.image_shape(X.shape[1], estimator.image_shape, axis)
    context = estimator._describe(X.shape[1], shape)
    if first:
        items = _banks._spec_items(estimator.filters, estimator.filter_params)
        stream = Stream(items, estimator.random_state, context)
        seen = 0
    else:
        if _layout.conv_shape(shape, axis) != estimator._fit_conv_shape():
            raise ValueError(
                f"image_shape={estimator.image_shape!r} with channel_axis={axis!r} reads "
                f"the rows as images of shape {shape}, but the previous partial_fit calls "
                f"read images of shape {tuple(estimator.image_shape_)} (axes in the order "
                "of the row); set image_shape and channel_axis back or call fit."
            )
        stream = copy.deepcopy(estimator.stream_state_)
        seen = estimator.n_samples_seen_
    images = _layout.training_images(X, shape, axis)
    filters = _layout.size_groups(stream.update(images, np.shape(images), context))
    estimator._plan(filters, shape, X.dtype, X.shape[1])
    estimator.filters_, estimator.image_shape_ = filters, shape
    estimator._fit_channel_axis = axis
    # What transform must keep (the class's "Fitted state"), from the items
    # the stream started with: parameters set since then wait for fit.
    names = {name for name, _, _ in stream.entries}
    if names & set(_banks.LEARNED_BANKS):
        estimator._fitted_filters = "learned"
    elif names & _banks.FITTED_BANKS:
        estimator._fitted_filters = "drawn"
    else:
        estimator._fitted_filters = "fixed"
    estimator.stream_state_, estimator.n_samples_seen_ = stream, seen + X.shape[0]
    return estimator
