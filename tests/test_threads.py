"""Threads: n_jobs never changes the result, and never oversubscribes BLAS."""

from dataclasses import replace

import numpy as np
import pytest
from sklearn import config_context

from skconv import conv2d, explain_conv2d
from skconv._conv import _setup, run_plan
from skconv._strategies import METHODS
from skconv._threads import n_threads_for

FAST = [name for name in METHODS if name != "einsum"]


def tolerance(dtype, x, w):
    """Absolute tolerance: rounding of sums of |x||w| terms in ``dtype``."""
    scale = np.abs(x).max(initial=0) * np.abs(w).reshape(len(w), -1).sum(axis=1).max(initial=0)
    return 32 * np.finfo(dtype).eps * (scale + 1)


@pytest.mark.parametrize("name", ["auto"] + FAST)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_n_jobs_gives_identical_results(name, dtype):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((301, 20, 19)).astype(dtype)
    bank = rng.standard_normal((3, 3, 4) if name == "taps" else (3, 4, 5)).astype(dtype)
    for memory in (1, 1024):  # several chunks per thread, or one per thread
        with config_context(working_memory=memory):
            one = conv2d(x, bank, method=name, n_jobs=1)
            two = conv2d(x, bank, method=name, n_jobs=2)
            picks = [explain_conv2d(x, bank, method=name, n_jobs=jobs).method for jobs in (1, 2)]
        if name != "auto" or picks[0] == picks[1]:
            np.testing.assert_array_equal(one, two)
        else:  # auto may pick another strategy for two threads: same up to rounding
            np.testing.assert_allclose(one, two, rtol=0, atol=tolerance(dtype, x, bank))


def test_threads_do_not_oversubscribe_blas(monkeypatch):
    # While conv2d's own threads run, BLAS is limited to one thread each.
    from threadpoolctl import threadpool_info

    seen = []
    original = METHODS["rowgemm"].run

    def spy(x, w, spec, out):
        seen.append([i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"])
        return original(x, w, spec, out)

    monkeypatch.setitem(METHODS, "rowgemm", replace(METHODS["rowgemm"], run=spy))
    images, weights, plan, choice = _setup(
        np.ones((4000, 10, 10)), np.ones((2, 3, 3)), method="rowgemm", n_jobs=2
    )
    result = np.empty(plan.out_shape)
    run_plan(images, weights, plan, replace(choice, split_batch=True), result)
    assert len(seen) >= 2 and all(t == 1 for threads in seen for t in threads)
    seen.clear()
    # one stream of products: BLAS keeps its threads
    run_plan(images, weights, plan, replace(choice, split_batch=False), result)
    blas = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    assert len(seen) == 1 and seen[0] == blas


def test_finite_check_runs_under_the_products_blas_threads(monkeypatch):
    # The NaN check is a matrix-vector product: on BLAS's threads it left
    # them spinning into the products of conv2d's own threads.  It runs with
    # BLAS limited exactly when the products do.
    from threadpoolctl import threadpool_info

    import skconv._conv as conv_module

    seen = []
    original = conv_module._check_finite_images

    def spy(images):
        seen.append([i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"])
        return original(images)

    monkeypatch.setattr(conv_module, "_check_finite_images", spy)
    images, weights, plan, choice = _setup(
        np.ones((4000, 10, 10)), np.ones((2, 3, 3)), method="rowgemm", n_jobs=2
    )
    result = np.empty(plan.out_shape)
    run_plan(images, weights, plan, replace(choice, split_batch=True), result, check_finite=True)
    assert len(seen) == 1 and all(t == 1 for t in seen[0])
    seen.clear()
    run_plan(images, weights, plan, replace(choice, split_batch=False), result, check_finite=True)
    blas = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    assert seen == [blas]
    seen.clear()
    conv2d(images, np.ones((2, 3, 3)), method="rowgemm", n_jobs=2)  # conv2d checks, once
    assert len(seen) == 1


def test_n_jobs_reads_like_joblib():
    assert n_threads_for(1) == 1 and n_threads_for(None) == 1
    assert 1 <= n_threads_for(-1) == n_threads_for(10**6)
    with pytest.raises(ValueError, match="n_jobs must be None or a nonzero int"):
        n_threads_for(0)
    with pytest.raises(TypeError, match="n_jobs must be None or an int"):
        n_threads_for(1.5)


def test_n_jobs_follows_joblib_context_although_cached():
    # The count is kept per joblib situation: a context entered later, or
    # left, still changes the answer, as joblib.effective_n_jobs says.
    from joblib import effective_n_jobs, parallel_config

    cores = n_threads_for(-1)
    assert n_threads_for(None) == 1
    with parallel_config(n_jobs=-1):
        assert n_threads_for(None) == cores == min(effective_n_jobs(None), cores)
    with parallel_config(backend="threading", n_jobs=2):
        assert n_threads_for(None) == min(2, cores)
    assert n_threads_for(None) == 1
    # in another thread: joblib's answer, whatever it is, for that thread
    import threading

    seen = []
    worker = threading.Thread(target=lambda: seen.append(n_threads_for(-1)))
    worker.start()
    worker.join()
    assert seen == [min(effective_n_jobs(-1), cores)]


def _blas_threads():
    from threadpoolctl import threadpool_info

    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_overlapping_blas_limits_restore_the_count():
    # Entered and left in the interleaved order that broke per-call limits
    # (A enters, B enters, A leaves, B leaves): one shared limit, restored last.
    import threading

    from threadpoolctl import threadpool_limits

    from skconv._threads import single_threaded_blas

    with threadpool_limits(2, user_api="blas"):
        before = _blas_threads()
        a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
        seen = {}

        def a():
            with single_threaded_blas():
                a_in.set()
                b_in.wait(5)
            a_out.set()

        def b():
            a_in.wait(5)
            with single_threaded_blas():
                b_in.set()
                a_out.wait(5)
                seen["inside after A left"] = _blas_threads()
                with single_threaded_blas():  # re-entrant
                    pass
                seen["after re-entry"] = _blas_threads()

        threads = [threading.Thread(target=a), threading.Thread(target=b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert all(n == 1 for n in seen["inside after A left"] + seen["after re-entry"]), seen
        assert _blas_threads() == before


def test_another_limit_left_during_ours_is_not_undone():
    # scikit-learn's KMeans limits BLAS with threadpoolctl: entered before a
    # batch-splitting conv2d and left during it, it restores BLAS's count;
    # conv2d's restore, saved inside it, used to put BLAS back at one thread.
    import threading

    from threadpoolctl import threadpool_limits

    from skconv._threads import single_threaded_blas

    with threadpool_limits(2, user_api="blas"):
        before = _blas_threads()
        ours_in, theirs_out = threading.Event(), threading.Event()

        def ours():
            with single_threaded_blas():
                ours_in.set()
                theirs_out.wait(5)

        thread = threading.Thread(target=ours)
        with threadpool_limits(1, user_api="blas"):  # theirs
            assert _blas_threads() == [1] * len(before)
            thread.start()
            ours_in.wait(5)
        theirs_out.set()
        thread.join(10)
        assert _blas_threads() == before


def test_a_failing_item_stops_the_others_before_the_error_returns():
    # The queues used to run to their end after the error reached the caller,
    # still writing into its arrays.
    import threading
    import time

    from skconv._threads import map_threads

    started, lock = [], threading.Lock()

    def work(item):
        with lock:
            started.append(item)
        time.sleep(0.01)
        if item == 2:  # in the first queue, which the caller waits for first
            raise ValueError("item 2")

    with pytest.raises(ValueError, match="item 2"):
        map_threads(work, list(range(40)), 2)
    after = len(started)
    time.sleep(0.2)
    assert len(started) == after < 40  # nothing runs once it returned


def test_forked_child_gets_its_own_pool():
    import multiprocessing as mp
    import sys

    if sys.platform != "linux":
        pytest.skip("fork start method is Linux-only here")
    from skconv import _threads

    _threads.map_threads(lambda item: None, [1, 2], 2)  # the parent's pool exists
    ctx = mp.get_context("fork")
    queue = ctx.Queue()

    def child():
        seen = []
        _threads.map_threads(seen.append, [1, 2, 3], 2)
        queue.put(sorted(seen))

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads running
        process = ctx.Process(target=child)
        process.start()
    try:
        assert queue.get(timeout=15) == [1, 2, 3]
    finally:
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()
