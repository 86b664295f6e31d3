"""conv2d and the transformer under processes and threads.

- fork- and spawn-started children, after the parent already ran threaded calls
  (a fork copies the parent's thread pool object but not its threads);
- many Python threads calling at once: same results as one thread, and the BLAS
  thread count (threadpoolctl) is what it was before;
- GridSearchCV(n_jobs=2) on joblib's threading backend: same BLAS thread count after;
- multiprocessing.Pool workers (daemonic) with n_jobs=-1: no joblib warning leaks.

Every child runs under a timeout and is killed when it overruns, so a hang fails the
test instead of hanging CI.  The BLAS checks run in a fresh interpreter, so that the
state of this process (and of the other tests) does not matter.
"""

import json
import multiprocessing as mp
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from skconv import BatchConv2DTransformer, conv2d

TIMEOUT = 15  # seconds a child gets; the work itself takes well under one

RNG = np.random.default_rng(0)
# Big enough that conv2d splits the batch over its threads for several methods.
IMAGES = RNG.random((400, 28, 28))
BANK = RNG.standard_normal((8, 3, 3))
SPLITTING_METHODS = ["auto", "einsum", "taps", "rowgemm", "rowgemm_wide", "separable"]


def _naive(images, bank):
    """The definition in float64, vectorised over the batch only."""
    k, p, q = bank.shape
    b, h, w = images.shape
    out = np.zeros((b, k, h - p + 1, w - q + 1))
    for u in range(p):
        for v in range(q):
            out += (
                bank[None, :, u, v, None, None]
                * images[:, None, u : u + h - p + 1, v : v + w - q + 1]
            )
    return out


EXPECTED = _naive(IMAGES, BANK)


def _warm_parent_threads():
    """Threaded calls in this process, so that conv2d's thread pool exists."""
    for method in SPLITTING_METHODS:
        try:
            conv2d(IMAGES, BANK, method=method, n_jobs=2)
        except ValueError:
            pass


def _child_conv(queue):
    queue.put(conv2d(IMAGES, BANK, n_jobs=2))


def _child_transformer(queue):
    conv = BatchConv2DTransformer(filters=BANK, padding="valid", n_jobs=-1)
    queue.put(conv.transform(IMAGES.reshape(len(IMAGES), -1)))


def _run_child(context, target):
    """Run target(queue) in a child; its result, or fail when it hangs or dies."""
    ctx = mp.get_context(context)
    queue = ctx.Queue()
    child = ctx.Process(target=target, args=(queue,))
    child.start()
    try:
        result = queue.get(timeout=TIMEOUT)
    except Exception:  # queue.Empty: nothing within the timeout
        result = None
    child.join(5)
    if child.is_alive():
        child.kill()
        child.join()
    if result is None:
        pytest.fail(
            f"a {context}-started child calling {target.__name__} did not return within "
            f"{TIMEOUT} s (exit code {child.exitcode}); it was killed"
        )
    return result


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method is Linux-only here")
@pytest.mark.parametrize("target", [_child_conv, _child_transformer])
def test_fork_child_after_threaded_parent(target):
    _warm_parent_threads()
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork in a multi-threaded process: that is the case tested.
        warnings.simplefilter("ignore", DeprecationWarning)
        result = _run_child("fork", target)
    np.testing.assert_allclose(result.reshape(EXPECTED.shape), EXPECTED, rtol=1e-10, atol=1e-10)


def test_spawn_child():
    _warm_parent_threads()
    result = _run_child("spawn", _child_transformer)
    np.testing.assert_allclose(result.reshape(EXPECTED.shape), EXPECTED, rtol=1e-10, atol=1e-10)


def _pool_worker(n_jobs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = conv2d(IMAGES[:50], BANK, n_jobs=n_jobs)
        conv = BatchConv2DTransformer(filters=BANK, padding="valid", n_jobs=n_jobs)
        features = conv.transform(IMAGES[:50].reshape(50, -1))
    return result, features, [f"{w.category.__name__}: {w.message}" for w in caught]


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method is Linux-only here")
def test_pool_workers_leak_no_joblib_warning():
    # A Pool worker is a daemonic process: joblib falls back to one job there.
    context = "fork"
    ctx = mp.get_context(context)
    with ctx.Pool(1) as pool:
        try:
            result, features, caught = pool.apply_async(_pool_worker, (-1,)).get(TIMEOUT)
        except mp.TimeoutError:
            pool.terminate()
            pytest.fail(f"a Pool worker ({context}) did not return within {TIMEOUT} s")
    np.testing.assert_allclose(result, EXPECTED[:50], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(
        features.reshape(50, *EXPECTED.shape[1:]), EXPECTED[:50], rtol=1e-10, atol=1e-10
    )
    assert caught == [], caught


# --- threads: run in a fresh interpreter, report as JSON --------------------------

_THREADS_SCRIPT = textwrap.dedent(
    """
    import json
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    from threadpoolctl import ThreadpoolController, threadpool_limits

    from skconv import conv2d

    def blas():
        return sorted(
            (i["filepath"], i["num_threads"])
            for i in ThreadpoolController().info() if i["user_api"] == "blas"
        )

    # Two BLAS threads to start with, whatever the machine: then a leaked limit of 1 shows.
    threadpool_limits(2, user_api="blas")
    rng = np.random.default_rng(0)
    images = rng.random((200, 28, 28))
    banks = [rng.standard_normal((k, 3, 3)) for k in (1, 4, 8)]
    methods = ["auto", "einsum", "taps", "rowgemm", "rowgemm_wide", "separable"]
    jobs = [(b, m, n) for b in range(3) for m in methods for n in (None, 2)]
    before = blas()
    single = {(b, m): conv2d(images, banks[b], method=m) for b in range(3) for m in methods}
    after_single = blas()

    def call(job):
        b, m, n = job
        return float(np.abs(conv2d(images, banks[b], method=m, n_jobs=n) - single[b, m]).max())

    with ThreadPoolExecutor(6) as pool:
        deviations = list(pool.map(call, jobs * 2))
    print(json.dumps({
        "before": before, "after_single": after_single, "after_threads": blas(),
        "max_deviation": max(deviations),
    }))
    """
)

_GRIDSEARCH_SCRIPT = textwrap.dedent(
    """
    import json

    import numpy as np
    from joblib import parallel_backend
    from sklearn.linear_model import RidgeClassifier
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from threadpoolctl import ThreadpoolController, threadpool_limits

    from skconv import BatchConv2DTransformer

    def blas():
        return sorted(
            (i["filepath"], i["num_threads"])
            for i in ThreadpoolController().info() if i["user_api"] == "blas"
        )

    threadpool_limits(2, user_api="blas")
    # 28x28 images and methods that split the batch: the calls that limit BLAS.
    rng = np.random.default_rng(0)
    X, y = rng.random((200, 784)), rng.integers(0, 2, 200)
    pipe = make_pipeline(
        BatchConv2DTransformer(filters="edges", pooling="max"), RidgeClassifier()
    )
    grid = {
        "batchconv2dtransformer__method": ["rowgemm", "einsum"],
        "batchconv2dtransformer__pool_size": [2, 4],
    }
    before = blas()
    # The serial search first: it warms the filter caches, so that in the threaded
    # search the transformer's calls overlap (and it is the reference for the scores).
    serial = GridSearchCV(pipe, grid, cv=3).fit(X, y)
    with parallel_backend("threading", n_jobs=2):
        threaded = GridSearchCV(pipe, grid, cv=3, n_jobs=2).fit(X, y)
    print(json.dumps({
        "before": before, "after": blas(),
        "scores_serial": list(serial.cv_results_["mean_test_score"]),
        "scores_threaded": list(threaded.cv_results_["mean_test_score"]),
    }))
    """
)


def _run_script(script):
    try:
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the script did not finish within 120 s")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_many_threads_same_results_and_blas_threads_restored():
    report = _run_script(_THREADS_SCRIPT)
    assert report["max_deviation"] < 1e-9, report
    assert report["after_single"] == report["before"], report
    assert report["after_threads"] == report["before"], (
        "concurrent conv2d calls left the BLAS thread count changed: "
        f"before {report['before']}, after {report['after_threads']}"
    )


def test_gridsearch_threading_backend_restores_blas_threads():
    report = _run_script(_GRIDSEARCH_SCRIPT)
    np.testing.assert_allclose(report["scores_threaded"], report["scores_serial"], atol=1e-12)
    assert report["after"] == report["before"], (
        "GridSearchCV(n_jobs=2) on the threading backend left the BLAS thread count "
        f"changed: before {report['before']}, after {report['after']}"
    )
