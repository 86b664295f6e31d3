"""The command line: ``python -m skconv demo``, ``bench`` and ``calibrate``."""

import argparse
import sys
import time

# The demo's pipelines: (label, transformer parameters or None for raw pixels).
# Every fixed configuration is stateless; learned ones fit inside each fold.
DEMO_CONFIGS = [
    ("raw pixels", None),
    ("edges, split, 2x2 max", dict(filters="edges", activation="split", pooling="max")),
    ("default bank, split, 2x2 max", dict(filters="default", activation="split", pooling="max")),
    (
        "random 16 3x3, split, 2x2 max",
        dict(
            filters="random",
            filter_params={"n_filters": 16},
            random_state=0,
            activation="split",
            pooling="max",
        ),
    ),
    (
        "gabor 5x5 x8, abs, 2x2 max stride 1",
        dict(
            filters="gabor",
            filter_params={"size": 5, "n_orientations": 8},
            activation="abs",
            pooling="max",
            pool_stride=1,
        ),
    ),
    (
        "pca 8 5x5 (learned), abs, 2x2 max",
        dict(
            filters="pca",
            filter_params={"n_filters": 8, "size": 5},
            random_state=0,
            activation="abs",
            pooling="max",
        ),
    ),
    (
        "kmeans 32 5x5 (learned), abs, 2x2 max",
        dict(
            filters="kmeans",
            filter_params={"n_filters": 32, "size": 5},
            random_state=0,
            activation="abs",
            pooling="max",
        ),
    ),
]


def demo(args):
    """Features for scikit-learn's digits: size, time and 5-fold accuracy per pipeline."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skconv import BatchConv2DTransformer

    X, y = load_digits(return_X_y=True)
    print(
        f"scikit-learn digits: {X.shape[0]} images of 8x8 pixels, 5-fold cross-validation "
        "(no shuffling) of StandardScaler + LogisticRegression"
    )
    header = f"{'pipeline':40s} {'n_features':>10s} {'fit+transform':>13s} {'accuracy':>9s}"
    print(header)
    print("-" * len(header))
    configs = DEMO_CONFIGS if not args.quick else DEMO_CONFIGS[:3]
    for i, (label, params) in enumerate(configs, 1):
        print(f"[{i}/{len(configs)}] {label} ...", file=sys.stderr, flush=True)
        step = "passthrough" if params is None else BatchConv2DTransformer(**params)
        if params is None:
            n_features, elapsed = X.shape[1], 0.0
        else:
            start = time.perf_counter()
            n_features = step.fit(X, y).transform(X).shape[1]
            elapsed = time.perf_counter() - start
        model = make_pipeline(step, StandardScaler(), LogisticRegression(max_iter=2000))
        score = cross_val_score(model, X, y, cv=5, n_jobs=args.n_jobs).mean()
        timing = "-" if params is None else f"{elapsed * 1e3:.1f} ms"
        print(f"{label:40s} {n_features:10d} {timing:>13s} {score:9.3f}", flush=True)
    return 0


def main(argv=None):
    """Run the command line; returns the exit code (0, or 2 for bad arguments)."""
    parser = argparse.ArgumentParser(
        prog="python -m skconv",
        description="Batched 2-D convolution features for scikit-learn, in pure NumPy.",
    )
    from . import __version__
    from ._calibration import DEFAULT_SECONDS, MIN_SECONDS, check_max_seconds

    parser.add_argument("--version", action="version", version=f"skconv {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{demo,bench,calibrate}")
    demo_parser = sub.add_parser(
        "demo",
        help="convolution features for scikit-learn's digits: size, time, accuracy",
        description="Transform scikit-learn's digits with several filter banks and print, for "
        "each pipeline, n_features, transform time and 5-fold accuracy next to raw pixels.",
    )
    demo_parser.add_argument("--quick", action="store_true", help="only the first three pipelines")
    demo_parser.add_argument(
        "--n-jobs",
        type=int,
        default=-1,
        help="processes for cross-validation (joblib convention; default -1: all cores)",
    )
    sub.add_parser(
        "bench",
        help="time auto and every strategy of conv2d on this machine (see 'bench --help')",
        add_help=False,
    )
    cal_parser = sub.add_parser(
        "calibrate",
        help="fit the cost model of method='auto' to this machine and BLAS (cached)",
        description="Time every conv2d strategy on small probe problems, refit the cost "
        "model of method='auto' to this machine and cache it per CPU, NumPy and BLAS "
        "(SKCONV_CACHE_DIR, else $XDG_CACHE_HOME/skconv, else ~/.cache/skconv).",
    )
    cal_parser.add_argument(
        "--refresh", action="store_true", help="measure again even if a calibration is cached"
    )
    cal_parser.add_argument(
        "--max-seconds",
        type=float,
        default=DEFAULT_SECONDS,
        help=f"time budget of the measurement, >= {MIN_SECONDS:g} (default {DEFAULT_SECONDS:g})",
    )
    args, rest = parser.parse_known_args(argv)
    if args.command is None:
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        parser.error("a command is required: demo, bench or calibrate (see --help)")
    if args.command == "bench":
        from ._quickbench import main as bench_main

        return bench_main(rest)
    if args.command == "calibrate":
        if rest:
            cal_parser.error(f"unrecognized arguments: {' '.join(rest)}")
        try:
            # (argparse reads "inf", "nan" and "1e309" as floats)
            check_max_seconds(args.max_seconds, "--max-seconds")
        except ValueError as exc:
            cal_parser.error(str(exc))
        from ._calibration import calibrate

        print(calibrate(max_seconds=args.max_seconds, refresh=args.refresh))
        return 0
    if rest:
        demo_parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.n_jobs == 0:
        demo_parser.error("n_jobs (--n-jobs) must be a nonzero int (-1: all cores); got 0.")
    return demo(args)


if __name__ == "__main__":
    sys.exit(main())
