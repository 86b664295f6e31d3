"""partial_fit: out-of-core learning of the learned banks.

"pca" must equal a full fit up to rounding (its scatter matrix is a sum over
images); "kmeans" must come close, measured on the digits.
"""

import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from skconv import BatchConv2DTransformer
from skconv._incremental import KMeansStream


@pytest.fixture(scope="module")
def digits():
    return load_digits(return_X_y=True)


def stream(estimator, X, chunk):
    for start in range(0, len(X), chunk):
        estimator.partial_fit(X[start : start + chunk])
    return estimator


def pca_oracle(images, size, n_filters):
    """Leading eigenvectors of sum x x^T over every mean-removed patch, by a loop."""
    p, q = size
    scatter = np.zeros((p * q, p * q))
    for image in images:
        for i in range(image.shape[0] - p + 1):
            for j in range(image.shape[1] - q + 1):
                x = image[i : i + p, j : j + q].ravel().astype(np.float64)
                x = x - x.mean()
                scatter += np.outer(x, x)
    vecs = np.linalg.eigh(scatter)[1][:, ::-1][:, :n_filters].T
    return vecs.reshape(n_filters, p, q)


PCA = dict(filters="pca", filter_params={"n_filters": 6, "size": 3})


@pytest.mark.parametrize("chunk", [1, 7, 250, 1797])
def test_pca_stream_equals_full_fit(digits, chunk):
    X = digits[0][:500] if chunk == 1 else digits[0]
    full = BatchConv2DTransformer(**PCA).fit(X)
    part = stream(BatchConv2DTransformer(**PCA), X, chunk)
    assert part.n_samples_seen_ == len(X)
    assert_allclose(part.filters_[0], full.filters_[0], atol=1e-10)
    assert_allclose(part.transform(X[:50]), full.transform(X[:50]), atol=1e-9)


def test_pca_matches_loop_oracle_up_to_sign(digits):
    X = digits[0][:300]
    part = stream(BatchConv2DTransformer(**PCA), X, 64)
    expected = pca_oracle(X.reshape(-1, 8, 8), (3, 3), 6)
    dots = np.sum(part.filters_[0] * expected, axis=(1, 2))
    assert_allclose(np.abs(dots), 1, atol=1e-8)


@pytest.mark.parametrize("n_patches", [None, 40])
@pytest.mark.parametrize("scales", [(1e300, 1e300), (1e-300, 1e-300), (1.0, 2.0**600)])
def test_pca_stream_on_pixels_of_any_scale(digits, scales, n_patches):
    # Squares of 1e300 overflow and of 1e-300 underflow: the stream keeps its
    # scatter in units of a power of two, raised when a chunk of larger pixels
    # arrives (the last case: the second chunk's pixels are 2**600 times the
    # first's, which then count for nothing, as in a fit on both).
    X = digits[0][:200]
    params = {"n_filters": 6, "size": 3, "n_patches": n_patches}
    est = BatchConv2DTransformer(filters="pca", filter_params=params, random_state=0)
    est.partial_fit(X[:100] * scales[0])
    est.partial_fit(X[100:] * scales[1])
    if n_patches is None:
        images = np.concatenate([X[:100] * scales[0], X[100:] * scales[1]])
        kept = images if scales[0] == scales[1] else images[100:]
        expected = pca_oracle(kept.reshape(-1, 8, 8) / scales[1], (3, 3), 6)
        dots = np.sum(est.filters_[0] * expected, axis=(1, 2))
        assert_allclose(np.abs(dots), 1, atol=1e-8)
    else:  # the same patches drawn as from the unscaled chunks
        unscaled = BatchConv2DTransformer(filters="pca", filter_params=params, random_state=0)
        unscaled.partial_fit(X[:100])
        unscaled.partial_fit(X[100:] * (scales[1] / scales[0]))
        assert_allclose(est.filters_[0], unscaled.filters_[0], atol=1e-10)


@pytest.mark.parametrize(
    "scale, contrast_eps", [(1e300, None), (1e-300, None), (2.0**100, 0.05), (2.0**-100, 0.05)]
)
def test_kmeans_stream_on_pixels_of_any_scale(digits, scale, contrast_eps):
    # Squares of 1e300 overflowed.  The same filters as on the unscaled
    # pixels; a given contrast_eps is in the pixels' units and scales with
    # their square (hence a smaller range of scales for it).
    X = digits[0][:300]
    params = {"n_filters": 4, "size": 3, "n_patches": 500}

    def streamed(factor):
        eps = None if contrast_eps is None else contrast_eps * factor**2
        est = BatchConv2DTransformer(
            filters="kmeans", filter_params={**params, "contrast_eps": eps}, random_state=0
        )
        return stream(est, X * factor, 100).filters_[0]

    assert_allclose(streamed(scale), streamed(1.0), rtol=1e-6, atol=1e-9)


def test_learned_streams_refuse_a_patch_size_whose_covariance_is_too_big():
    for name in ("pca", "kmeans"):
        est = BatchConv2DTransformer(filters=name, filter_params={"size": 200})
        with pytest.raises(ValueError, match="size must hold at most"):
            est.partial_fit(np.zeros((2, 40000)))


def test_list_with_pca_random_and_fixed_equals_full_fit(digits):
    X = digits[0].astype(np.float32)
    kw = dict(
        filters=["pca", "random", "edges"],
        filter_params={"pca": {"n_filters": 4, "size": 3}},
        random_state=3,
        activation="relu",
        pooling="max",
    )
    full = BatchConv2DTransformer(**kw).fit(X)
    part = stream(BatchConv2DTransformer(**kw), X, 300)
    assert [f.shape for f in part.filters_] == [f.shape for f in full.filters_] == [(16, 3, 3)]
    assert_allclose(part.filters_[0], full.filters_[0], atol=1e-6)
    out = part.transform(X[:20])
    assert out.dtype == np.float32
    assert_allclose(out, full.transform(X[:20]), rtol=1e-5, atol=1e-4)


def test_pca_stream_on_channels_equals_full_fit():
    X = np.random.RandomState(0).rand(40, 5 * 6 * 3)
    kw = dict(PCA, image_shape=(5, 6, 3))
    full = BatchConv2DTransformer(**kw).fit(X)
    part = stream(BatchConv2DTransformer(**kw), X, 9)
    assert_allclose(part.filters_[0], full.filters_[0], atol=1e-10)


def test_filters_usable_after_each_call_and_fit_resets(digits):
    X = digits[0]
    est = BatchConv2DTransformer(**PCA)
    for start in range(0, 600, 200):
        est.partial_fit(X[start : start + 200])
        # after each chunk: the filters of a full fit on the rows seen so far
        seen = BatchConv2DTransformer(**PCA).fit(X[: start + 200])
        assert_allclose(est.filters_[0], seen.filters_[0], atol=1e-10)
        assert est.transform(X[:3]).shape == (3, 6 * 64)
    est.fit(X[:100])
    assert not hasattr(est, "stream_state_") and not hasattr(est, "n_samples_seen_")
    est.partial_fit(X[:10])  # a new stream
    assert est.n_samples_seen_ == 10
    assert_allclose(est.filters_[0], BatchConv2DTransformer(**PCA).fit(X[:10]).filters_[0])


def test_errors_leave_the_stream_unchanged(digits):
    X = digits[0]
    est = BatchConv2DTransformer(**PCA).partial_fit(X[:100])
    before = est.filters_[0].copy()
    with pytest.raises(ValueError, match="expecting 64 features"):
        est.partial_fit(X[:10, :49])
    bad = X[100:110].copy()
    bad[3, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.partial_fit(bad)
    est.set_params(image_shape=(4, 16))
    with pytest.raises(ValueError, match=r"image_shape=\(4, 16\).*partial_fit"):
        est.partial_fit(X[100:110])
    assert est.n_samples_seen_ == 100
    assert_array_equal(est.filters_[0], before)


def test_first_chunk_errors_name_the_parameter():
    flat = np.ones((3, 64))
    with pytest.raises(ValueError, match="flat"):
        BatchConv2DTransformer(**PCA).partial_fit(flat)
    kmeans = dict(filters="kmeans", filter_params={"n_filters": 8, "size": 7})
    with pytest.raises(ValueError, match=r"only 4 patches.*n_filters=8"):
        BatchConv2DTransformer(**kmeans).partial_fit(np.random.rand(1, 64))
    with pytest.raises(TypeError, match="unexpected parameter"):
        BatchConv2DTransformer(filters="pca", filter_params={"bad": 1}).partial_fit(flat)


def test_fixed_filters_stream_is_stateless(digits):
    X = digits[0][:50]
    est = stream(BatchConv2DTransformer(filters="edges", pooling="max"), X, 20)
    assert_array_equal(
        est.transform(X), BatchConv2DTransformer(filters="edges", pooling="max").transform(X)
    )


def test_pickled_stream_continues_alike(digits):
    X = digits[0]
    kw = dict(filters="kmeans", filter_params={"n_filters": 6, "size": 3}, random_state=0)
    est = BatchConv2DTransformer(**kw).partial_fit(X[:300])
    copy = pickle.loads(pickle.dumps(est))
    est.partial_fit(X[300:600])
    copy.partial_fit(X[300:600])
    assert_array_equal(est.filters_[0], copy.filters_[0])
    assert not hasattr(clone(est), "stream_state_")


def test_kmeans_running_whitening_matches_batch_statistics():
    """The running mean and covariance are those of every normalised patch seen,
    and re-whitening keeps the centroids on the same points of patch space."""
    rng = np.random.RandomState(0)
    images = rng.rand(30, 6, 6)
    # n_patches above the positions of a chunk: every patch is taken
    s = KMeansStream(
        np.random.RandomState(1), n_filters=3, size=3, n_patches=10**6, contrast_eps=0.1
    )
    s.update(images[:10])
    centres_before = s.km.cluster_centers_ @ s.w_inv + s.mean
    x = np.asarray(np.lib.stride_tricks.sliding_window_view(images[10:], (3, 3), axis=(1, 2)))
    x = x.reshape(-1, 9)
    x = x - x.mean(axis=1, keepdims=True)
    x /= np.sqrt(x.var(axis=1, keepdims=True) + 0.1)
    s.km.partial_fit = lambda batch: None  # isolate the whitening step
    s.update(images[10:])
    assert_allclose(s.km.cluster_centers_ @ s.w_inv + s.mean, centres_before, atol=1e-10)
    patches = np.lib.stride_tricks.sliding_window_view(images, (3, 3), axis=(1, 2)).reshape(-1, 9)
    patches = patches - patches.mean(axis=1, keepdims=True)
    patches /= np.sqrt(patches.var(axis=1, keepdims=True) + 0.1)
    assert s.count == len(patches)
    assert_allclose(s.mean, patches.mean(axis=0), atol=1e-12)
    assert_allclose(s.m2 / (s.count - 1), np.cov(patches, rowvar=False), atol=1e-12)


def _matched_cosine(a, b):
    linear_sum_assignment = pytest.importorskip("scipy.optimize").linear_sum_assignment
    a = a.reshape(len(a), -1) / np.linalg.norm(a.reshape(len(a), -1), axis=1, keepdims=True)
    b = b.reshape(len(b), -1) / np.linalg.norm(b.reshape(len(b), -1), axis=1, keepdims=True)
    sim = a @ b.T
    rows, cols = linear_sum_assignment(-sim)
    return sim[rows, cols].mean()


def test_kmeans_stream_close_to_full_fit_on_digits(digits):
    """Fixed protocol: 5 unshuffled folds; the filters are learned on each
    training fold by fit and by partial_fit in chunks of 200 rows, then
    scaled logistic regression.  Measured (random_state=0): accuracy 0.974
    (fit) and 0.976 (partial_fit); mean cosine similarity of the matched
    filters 0.70, against 0.80 between two full fits with random_state 0
    and 1 (k-means optima are not unique)."""
    X, y = digits
    kw = dict(
        filters="kmeans",
        filter_params={"n_filters": 16, "size": 5},
        random_state=0,
        activation="abs",
        pooling="max",
    )
    scores = {"fit": [], "partial": []}
    cosines = []
    # One thread for k-means and BLAS: these small problems run far faster
    # that way on a busy machine (CI shares its cores), with the same result.
    with threadpool_limits(limits=1):
        for train, test in KFold(5).split(X):
            full = BatchConv2DTransformer(**kw).fit(X[train])
            part = stream(BatchConv2DTransformer(**kw), X[train], 200)
            cosines.append(_matched_cosine(full.filters_[0], part.filters_[0]))
            for key, conv in (("fit", full), ("partial", part)):
                clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
                clf.fit(conv.transform(X[train]), y[train])
                scores[key].append(clf.score(conv.transform(X[test]), y[test]))
    fit, partial = np.mean(scores["fit"]), np.mean(scores["partial"])
    assert partial >= 0.96, scores
    assert abs(partial - fit) <= 0.01, scores
    assert np.mean(cosines) >= 0.6, cosines


def test_dask_ml_incremental(digits):
    pytest.importorskip("dask_ml")
    da = pytest.importorskip("dask.array")
    from dask_ml.wrappers import Incremental

    X = digits[0]
    kw = dict(
        filters=["pca", "kmeans"],
        filter_params={"pca": {"size": 3}, "kmeans": {"n_filters": 4, "size": 3}},
        random_state=0,
    )
    # dask-ml asks for a scoring when the estimator has no score method.
    inc = Incremental(
        BatchConv2DTransformer(**kw), scoring=lambda est, X, y: 0.0, shuffle_blocks=False
    ).fit(da.from_array(X, chunks=(400, -1)))
    est = inc.estimator_
    assert est.n_samples_seen_ == len(X)
    by_hand = stream(BatchConv2DTransformer(**kw), X, 400)
    assert_array_equal(est.filters_[0], by_hand.filters_[0])
    full = BatchConv2DTransformer(**kw).fit(X)
    assert_allclose(est.filters_[0][:8], full.filters_[0][:8], atol=1e-10)  # the pca part
    # The transformer's own transform keeps a dask array lazy with the right width.
    assert est.transform(da.from_array(X, chunks=(400, -1))).shape == (len(X), 12 * 64)


def test_sklearn_partial_fit_check():
    from sklearn.utils.estimator_checks import check_estimators_partial_fit_n_features

    # the check's rows have few features: 1 x n strips, so 1x2 patches
    for name in ("pca", "kmeans"):
        params = {"n_filters": 1, "size": (1, 2)}
        est = BatchConv2DTransformer(filters=name, filter_params=params, random_state=0)
        check_estimators_partial_fit_n_features(type(est).__name__, est)
