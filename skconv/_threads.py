"""Threads: ``n_jobs`` to a thread count, the persistent pool, and BLAS limiting.

conv2d uses the cores in one of two ways (the cost model picks per problem,
``_costmodel.split_batch``): its own threads each work on part of the batch
with BLAS limited to one thread, or one stream of products runs on BLAS's
own threads.  This module holds what the first needs: it reads
``n_jobs`` with joblib's convention (``n_threads_for``), ``map_threads`` runs work on a pool
kept between calls, and ``limit_blas`` limits BLAS through threadpoolctl.

Examples
--------
>>> from skconv._threads import map_threads, n_threads_for
>>> n_threads_for(1)
1
>>> seen = []
>>> map_threads(seen.append, [1, 2, 3], 2)
>>> sorted(seen)
[1, 2, 3]
"""

import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

from joblib import effective_n_jobs

from ._validation import is_int

_blas_controller = None


def limit_blas(n_threads):
    """A context that runs BLAS on ``n_threads`` threads.

    conv2d runs BLAS single-threaded while its own threads split the batch:
    OpenBLAS's idle workers keep spinning for a while after a multi-threaded
    call (its ``OPENBLAS_THREAD_TIMEOUT``; measured here, they hold the cores
    for about 0.1 s) and would steal the cores from conv2d's threads.
    Building a threadpoolctl ``ThreadpoolController`` inspects every loaded
    library (~0.3 ms), so it is built once and reused, as threadpoolctl's
    documentation recommends.
    """
    global _blas_controller
    if _blas_controller is None:
        from threadpoolctl import ThreadpoolController

        _blas_controller = ThreadpoolController()
    return _blas_controller.limit(limits=n_threads, user_api="blas")


_pool = None
_pool_lock = threading.Lock()


def map_threads(fn, items, n_threads):
    """``fn`` on every item, on at most ``n_threads`` threads at once.

    The pool is kept between calls: starting threads costs ~0.2 ms, a lot
    next to a 1 ms convolution.
    """
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(n_threads_for(-1), thread_name_prefix="skconv")
    # Hand items out in n_threads queues so that no more threads than asked
    # run at once, whatever the pool's size.
    queues = [items[i::n_threads] for i in range(n_threads)]
    futures = [_pool.submit(lambda q=q: [fn(item) for item in q]) for q in queues if q]
    for future in futures:
        future.result()


def n_threads_for(n_jobs):
    """Threads for ``n_jobs`` (joblib's convention), at most the machine's cores."""
    if n_jobs is not None and not is_int(n_jobs):
        raise TypeError(f"n_jobs must be None or an int; got {n_jobs!r}.")
    if n_jobs == 0:
        raise ValueError(f"n_jobs must be None or a nonzero int (-1: all cores); got {n_jobs!r}.")
    if n_jobs == 1:
        return 1
    with warnings.catch_warnings():
        # Inside a dask worker or another daemonic process joblib warns that it
        # falls back to one job, on every call; one thread is the right answer.
        warnings.filterwarnings("ignore", message="Inside a Dask worker")
        warnings.filterwarnings("ignore", message=".*daemonic processes")
        warnings.filterwarnings("ignore", message="Loky-backed parallel loops cannot be called")
        n = effective_n_jobs(n_jobs)
    return max(1, min(n, os.cpu_count() or 1))
