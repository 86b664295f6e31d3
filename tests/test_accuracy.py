"""The accuracy bar on scikit-learn's digits: convolution features beat raw pixels.

Everything here is deterministic: fixed filters, lbfgs logistic regression,
5-fold cross-validation without shuffling (the folds follow the data order).
"""

import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skconv import BatchConv2DTransformer


@pytest.fixture(scope="module")
def digits():
    return load_digits(return_X_y=True)


def score(step, X, y):
    model = make_pipeline(step, StandardScaler(), LogisticRegression(max_iter=2000))
    return cross_val_score(model, X, y, cv=5).mean()


def test_gabor_features_reach_the_bar(digits):
    X, y = digits
    raw = score("passthrough", X, y)
    conv = BatchConv2DTransformer(
        filters="gabor",
        filter_params={"size": 5, "n_orientations": 8},
        activation="abs",
        pooling="max",
        pool_size=2,
        pool_stride=1,
    )
    features = score(conv, X, y)
    # Measured 0.986 (raw pixels 0.920 here; a J=1 scattering transform with kymatio
    # measured 0.977 on the same folds):
    # the bar of 0.980 leaves half a point of margin, about 10 digits of 1797.
    assert features >= 0.980, features
    assert features - raw >= 0.05, (features, raw)


def test_learned_kmeans_filters_beat_raw_pixels(digits):
    X, y = digits
    conv = BatchConv2DTransformer(
        filters="kmeans",
        filter_params={"n_filters": 16, "size": 5},
        random_state=0,
        activation="abs",
        pooling="max",
    )
    # Measured 0.973 with random_state=0; learned inside each training fold.
    assert score(conv, X, y) >= 0.96
