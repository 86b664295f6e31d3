"""scikit-learn conformance of BatchConv2DTransformer.

``check_estimator`` on the default instance, ``parametrize_with_checks`` on
configured instances, and the checks that ``check_estimator`` does not run,
called directly.
"""

import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.utils import estimator_checks
from sklearn.utils.estimator_checks import check_estimator, parametrize_with_checks

from skconv import BatchConv2DTransformer

_rng = np.random.RandomState(0)

# check_estimator feeds data with 1, 2, 3, 4, 5 and 10 features (and 1 or 2
# features for its blobs): with image_shape=None these rows are read as 1x1,
# 1x2, 1x3, 2x2, 1x5 and 1x10 images, so every instance below is configured
# to fit such images (or, for 1 feature, to fail with a message naming
# n_features=1, which check_fit2d_1feature accepts).
INSTANCES = [
    # the defaults: the "default" bank of 3x3 filters, "same" padding
    BatchConv2DTransformer(),
    # a (K, p, q) array given in the instance
    BatchConv2DTransformer(filters=_rng.randn(3, 3, 3)),
    # a list of two filter sizes: 2x2 (array) and 3x3 (a named bank)
    BatchConv2DTransformer(filters=[_rng.randn(2, 2, 2), "sobel"], activation="relu"),
    # valid padding with stride 2: 1x2 filters fit every strip; the 1x1
    # image of 1 feature is refused with a message naming n_features=1
    BatchConv2DTransformer(filters=_rng.randn(2, 1, 2), padding="valid", stride=2),
    # split activation and 2x2 max pooling; "full" padding makes even a 1x1
    # image give 3x3 maps, which a 2x2 window fits
    BatchConv2DTransformer(filters="edges", padding="full", activation="split", pooling="max"),
    # mean pooling into a fixed grid, reflect padding, dilation
    BatchConv2DTransformer(
        filters="gaussian",
        filter_params={"size": 3, "sigmas": (0.5, 1.0)},
        pad_mode="reflect",
        dilation=(1, 2),
        padding="full",
        pooling="mean",
        pool_grid=(1, 2),
    ),
    # multichannel (K, p, q, 1) filters on single-channel images
    BatchConv2DTransformer(filters=_rng.randn(2, 1, 3, 1), activation="abs"),
    # a learned PCA bank (1x2 patches fit every strip)
    BatchConv2DTransformer(
        filters="pca", filter_params={"n_filters": 1, "size": (1, 2)}, random_state=0
    ),
    # a learned k-means bank next to a fixed one
    BatchConv2DTransformer(
        filters=["kmeans", "laplacian"],
        filter_params={"kmeans": {"n_filters": 2, "size": (1, 2), "n_patches": 50}},
        random_state=0,
    ),
    # 3-channel images: (K, p, q) filters applied depthwise to each channel
    BatchConv2DTransformer(filters=_rng.randn(2, 3, 3), image_shape=(2, 2, 3)),
]

# A fixed image_shape=(2, 2, 3) needs exactly 12 features, and check_estimator
# only ever makes data with 1 to 10: every check that fits on its own data is
# refused with "X has n_features=... but image_shape=(2, 2, 3) needs 12".
# That refusal is the correct behaviour; channels are covered by
# test_channels_conformance below and by tests/test_transformer.py.
_FIXED_SHAPE_REASON = "image_shape=(2, 2, 3) needs 12 features; the check's data has 1 to 10"
_FIXED_SHAPE_FAILURES = [
    "check_dict_unchanged",
    "check_dont_overwrite_parameters",
    "check_dtype_object",
    "check_estimators_dtypes",
    "check_estimators_fit_returns_self",
    "check_estimators_nan_inf",
    "check_estimators_overwrite_params",
    "check_estimators_pickle",
    "check_f_contiguous_array_estimator",
    "check_fit2d_1sample",
    "check_fit2d_predict1d",
    "check_fit_check_is_fitted",
    "check_fit_idempotent",
    "check_fit_score_takes_y",
    "check_methods_sample_order_invariance",
    "check_methods_subset_invariance",
    "check_n_features_in",
    "check_n_features_in_after_fitting",
    "check_pipeline_consistency",
    "check_positive_only_tag_during_fit",
    "check_readonly_memmap_input",
    "check_transformer_data_not_an_array",
    "check_transformer_general",
    "check_transformer_preserve_dtypes",
    "check_transformers_unfitted_stateless",
]


def _expected_failed_checks(estimator):
    if estimator.image_shape is not None:
        return {check: _FIXED_SHAPE_REASON for check in _FIXED_SHAPE_FAILURES}
    return {}


def test_check_estimator_default():
    """The default instance passes every check, with no expected failure."""
    check_estimator(BatchConv2DTransformer())


@parametrize_with_checks(INSTANCES, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


# The checks check_estimator does not run (sklearn 1.9), called directly.
DIRECT_CHECKS = [
    "check_set_output_transform",
    "check_set_output_transform_pandas",
    "check_set_output_transform_polars",
    "check_global_output_transform_pandas",
    "check_global_set_output_transform_polars",
    "check_transformer_get_feature_names_out",
    "check_transformer_get_feature_names_out_pandas",
    "check_get_feature_names_out_error",
    "check_dataframe_column_names_consistency",
    "check_param_validation",
]
_NEEDS = {
    "check_set_output_transform_pandas": "pandas",
    "check_global_output_transform_pandas": "pandas",
    "check_transformer_get_feature_names_out_pandas": "pandas",
    "check_dataframe_column_names_consistency": "pandas",
    "check_set_output_transform_polars": "polars",
    "check_global_set_output_transform_polars": "polars",
}


def _instance_id(estimator):
    return repr(estimator).replace("\n", "").replace(" ", "")[:80]


@pytest.mark.parametrize("check_name", DIRECT_CHECKS)
@pytest.mark.parametrize(
    "estimator", [e for e in INSTANCES if e.image_shape is None], ids=_instance_id
)
def test_direct_checks(estimator, check_name):
    if check_name in _NEEDS:
        pytest.importorskip(_NEEDS[check_name])
    check = getattr(estimator_checks, check_name, None)
    if check is None:  # not in this scikit-learn version
        pytest.skip(f"{check_name} is not in this scikit-learn")
    check(type(estimator).__name__, estimator)


@pytest.mark.parametrize(
    "check_name", ["check_param_validation", "check_get_feature_names_out_error"]
)
def test_direct_checks_channels(check_name):
    estimator = INSTANCES[-1]
    getattr(estimator_checks, check_name)(type(estimator).__name__, estimator)


# What the expected failures of the fixed-shape instance would have checked,
# on multichannel data of the right width: depthwise (K, p, q) filters and
# (K, p, q, c) filters summing over channels.
_CHANNEL_ESTIMATORS = {
    "depthwise": BatchConv2DTransformer(
        filters=_rng.randn(2, 3, 3),
        image_shape=(4, 5, 3),
        activation="split",
        pooling="max",
    ),
    "multichannel": BatchConv2DTransformer(
        filters=[_rng.randn(2, 3, 3, 3), _rng.randn(1, 2, 2, 3)],
        image_shape=(4, 5, 3),
        padding="valid",
    ),
    "learned": BatchConv2DTransformer(
        filters="pca",
        filter_params={"n_filters": 3, "size": 3},
        image_shape=(4, 5, 3),
        random_state=0,
    ),
}


@pytest.fixture(params=sorted(_CHANNEL_ESTIMATORS))
def channel_estimator(request):
    return clone(_CHANNEL_ESTIMATORS[request.param])


def _channel_data(n=12, dtype=np.float64):
    return np.random.RandomState(1).randn(n, 60).astype(dtype)


def test_channels_fit_transform_consistent(channel_estimator):
    X = _channel_data()
    a = clone(channel_estimator).fit_transform(X)
    b = clone(channel_estimator).fit(X).transform(X)
    assert_allclose(a, b)
    assert a.shape[0] == 12
    channel_estimator.fit(X)
    assert len(channel_estimator.get_feature_names_out()) == a.shape[1]
    assert len(set(channel_estimator.get_feature_names_out())) == a.shape[1]


def test_channels_subset_and_order_invariance(channel_estimator):
    X = _channel_data()
    est = channel_estimator.fit(X)
    full = est.transform(X)
    assert_allclose(np.vstack([est.transform(X[i : i + 5]) for i in range(0, 12, 5)]), full)
    order = np.random.RandomState(2).permutation(12)
    assert_allclose(est.transform(X[order]), full[order])


def test_channels_dtypes_and_layouts(channel_estimator):
    X = _channel_data()
    est = channel_estimator.fit(X)
    ref = est.transform(X)
    assert est.transform(X.astype(np.float32)).dtype == np.float32
    assert_allclose(est.transform(X.astype(np.float32)), ref, rtol=1e-4, atol=1e-4)
    assert_allclose(est.transform(np.asfortranarray(X)), ref)
    assert_allclose(est.transform(X.tolist()), ref)
    readonly = X.copy()
    readonly.flags.writeable = False
    assert_allclose(est.transform(readonly), ref)


def test_channels_pickle_and_refit(channel_estimator):
    X = _channel_data()
    est = channel_estimator.fit(X)
    ref = est.transform(X)
    assert_array_equal(pickle.loads(pickle.dumps(est)).transform(X), ref)
    filters = est.filters
    est.fit(X)
    assert_array_equal(est.transform(X), ref)  # fit is idempotent
    assert est.filters is filters  # parameters are never replaced


def test_channels_errors(channel_estimator):
    X = _channel_data()
    with pytest.raises(ValueError, match="n_features=59"):
        clone(channel_estimator).fit(X[:, :59])
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clone(channel_estimator).fit(bad)
    est = clone(channel_estimator).fit(X)
    with pytest.raises(ValueError, match="60 features"):
        est.transform(X[:, :30])
