"""Threads: ``n_jobs`` to a thread count, the persistent pool, and BLAS limiting.

conv2d uses the cores in one of two ways (the cost model picks per problem,
``_costmodel.split_batch``): its own threads each work on part of the batch
with BLAS limited to one thread, or one stream of products runs on BLAS's
own threads.  This module holds what the first needs: it reads
``n_jobs`` with joblib's convention (``n_threads_for``), ``map_threads`` runs work on a pool
kept between calls (a forked child makes its own), and ``single_threaded_blas``
limits BLAS through threadpoolctl, shared safely by concurrent calls.

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

import multiprocessing
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import lru_cache

from joblib import effective_n_jobs
from joblib.parallel import get_active_backend

from ._validation import is_int

_blas_controller = None
_blas_libs = None  # its BLAS libraries' controllers (see _blas_libraries)
_blas_lock = threading.Lock()
_blas_users = 0  # threads inside single_threaded_blas(), process-wide
_blas_limiter = None  # threadpoolctl's limiter, holding the counts to restore
_blas_restore_in_child = None  # a forked child's pending restore (see _reset_after_fork)


def _controller():
    global _blas_controller
    if _blas_controller is None:
        from threadpoolctl import ThreadpoolController

        _blas_controller = ThreadpoolController()
    return _blas_controller


def _blas_libraries():
    """threadpoolctl's controllers of the BLAS libraries (selected once)."""
    global _blas_libs
    if _blas_libs is None:
        _blas_libs = _controller().select(user_api="blas").lib_controllers
    return _blas_libs


@contextmanager
def single_threaded_blas():
    """A context in which BLAS runs on one thread, safe to enter from many threads.

    conv2d runs BLAS single-threaded while its own threads split the batch:
    OpenBLAS's idle workers keep spinning for a while after a multi-threaded
    call (its ``OPENBLAS_THREAD_TIMEOUT``; measured here, they hold the cores
    for about 0.1 s) and would steal the cores from conv2d's threads.

    BLAS thread counts are process-wide (threadpoolctl has no per-thread
    limit), so overlapping calls from several threads share one limit: the
    first thread to enter sets it and records the counts it found, the last
    one to leave restores them.  (Each caller saving and restoring on its own
    would interleave: A saves 2 and sets 1, B saves 1, A restores 2, B
    restores 1, and the process stays at 1.)  Re-entrant.  Building a
    threadpoolctl ``ThreadpoolController`` inspects every loaded library
    (~0.3 ms), so it is built once and reused, as threadpoolctl's
    documentation recommends.
    """
    global _blas_users, _blas_limiter, _blas_restore_in_child
    with _blas_lock:
        if _blas_users == 0:
            pending, _blas_restore_in_child = _blas_restore_in_child, None
            with _blas_control():
                if pending is not None:
                    pending.restore_original_limits()
                _blas_limiter = _controller().limit(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                limiter, _blas_limiter = _blas_limiter, None
                with _blas_control():
                    # Another library's limit (scikit-learn's KMeans sets one)
                    # may have been entered before ours and left during it,
                    # restoring its own counts: ours, saved inside it, would
                    # then put BLAS back at one thread for good.  Restore only
                    # what is still ours.
                    if all(lib.num_threads == 1 for lib in _blas_libraries()):
                        limiter.restore_original_limits()


def blas_threads_before_limit():
    """``{filepath: num_threads}`` of BLAS before :func:`single_threaded_blas`'s
    limit, while it is held by some thread; None otherwise."""
    with _blas_lock:
        limiter = _blas_limiter
    # (threadpoolctl's limiter keeps the counts it will restore as
    # ``_original_info``; without it, nothing is known)
    info = getattr(limiter, "_original_info", None)
    if not info:
        return None
    return {i.get("filepath"): i.get("num_threads") for i in info}


@contextmanager
def _blas_control():
    """Let this thread set OpenBLAS's thread count, then let any thread again.

    threadpoolctl >= 3.8 lets only one "controlling" thread set the count of
    an OpenBLAS with its own (non-OpenMP) pool; the others' calls silently
    do nothing.  The thread that limits and the one that restores are not
    always the same here (the first in, the last out), and the caller's
    thread may have taken control before: each change is made as the
    controlling thread (``clear_controlling_thread(force=True)``, as the
    ``OpenBLASController`` docstring describes) and control is released
    after it.
    """
    from threadpoolctl import OpenBLASController

    clear = getattr(OpenBLASController, "clear_controlling_thread", None)
    if clear is None:  # threadpoolctl < 3.8: any thread sets the count
        yield
        return
    clear(force=True)
    try:
        yield
    finally:
        clear(force=True)


_pool = None
_pool_pid = None
_pool_lock = threading.Lock()


def _reset_after_fork():
    """Forget the parent's pool and locks in a forked child.

    A fork copies the executor object but none of its threads: work submitted
    to it would wait forever.  The locks may have been copied held by a thread
    that does not exist in the child.  The child makes its own pool when it
    needs one; the inherited executor is dropped without ``shutdown`` (its
    threads are not there to join).  When the fork happened inside a
    limited call, the child inherits BLAS limited to one thread with nobody to
    restore it: the next limited call in the child restores it on entry.
    """
    global _pool, _pool_pid, _pool_lock, _blas_lock, _blas_users, _blas_limiter
    global _blas_restore_in_child, _blas_controller, _blas_libs
    _pool, _pool_pid = None, None
    _pool_lock = threading.Lock()
    _blas_lock = threading.Lock()
    if _blas_users > 0 and _blas_limiter is not None:
        _blas_restore_in_child = _blas_limiter
    _blas_users, _blas_limiter = 0, None
    _blas_controller = _blas_libs = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def map_threads(fn, items, n_threads):
    """``fn`` on every item, on at most ``n_threads`` threads at once.

    The pool is kept between calls: starting threads costs ~0.2 ms, a lot
    next to a 1 ms convolution.  It belongs to the process that made it: a
    forked child (on platforms without ``os.register_at_fork`` too) makes
    its own.
    """
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(n_threads_for(-1), thread_name_prefix="skconv")
            _pool_pid = os.getpid()
        pool = _pool
    # Hand items out in n_threads queues so that no more threads than asked
    # run at once, whatever the pool's size.
    queues = [items[i::n_threads] for i in range(n_threads)]
    # Once an item fails, or the caller is interrupted (Ctrl-C arrives in
    # the waiting thread), the queues stop taking items, and the call returns
    # only when none runs: nothing keeps computing, or writing into the
    # caller's arrays, after the exception has reached the caller.
    stop = threading.Event()

    def run(queue):
        for item in queue:
            if stop.is_set():
                return
            try:
                fn(item)
            except BaseException:
                stop.set()
                raise

    futures = [pool.submit(run, q) for q in queues if q]
    try:
        for future in futures:
            future.result()
    except BaseException:
        stop.set()
        for future in futures:
            try:
                future.exception()  # waits for it to end, raising nothing
            except BaseException:  # (a second Ctrl-C while waiting)
                pass
        raise


@lru_cache(maxsize=1)
def machine_cores():
    """``os.cpu_count()``, read once (it is a system call, ~10 us, on every conv2d)."""
    return os.cpu_count() or 1


def n_threads_for(n_jobs):
    """Threads for ``n_jobs`` (joblib's convention), at most the machine's cores."""
    if n_jobs is not None and not is_int(n_jobs):
        raise TypeError(f"n_jobs must be None or an int; got {n_jobs!r}.")
    if n_jobs == 0:
        raise ValueError(f"n_jobs must be None or a nonzero int (-1: all cores); got {n_jobs!r}.")
    if n_jobs == 1:
        return 1
    # joblib's answer depends on its active backend (``parallel_config``) and
    # on the calling process and thread.  For its own local backends it is
    # otherwise a function of the CPU count, which loky reads from the
    # cgroup files on every call (~40 us, a tenth of a small conv2d): keep
    # it per situation.  Other backends (dask's: its workers come and go)
    # are asked every time.
    backend, context_n_jobs = get_active_backend()
    if type(backend).__module__ != "joblib._parallel_backends":
        return _threads_from_joblib(n_jobs)
    situation = (
        n_jobs,
        type(backend),
        getattr(backend, "nesting_level", None),
        context_n_jobs,
        threading.current_thread() is threading.main_thread(),
        multiprocessing.current_process().daemon,
    )
    return _local_threads(situation)


@lru_cache(maxsize=64)
def _local_threads(situation):
    return _threads_from_joblib(situation[0])


def _threads_from_joblib(n_jobs):
    with warnings.catch_warnings():
        # Inside a dask worker or another daemonic process joblib warns that it
        # falls back to one job, on every call; one thread is the right answer.
        warnings.filterwarnings("ignore", message="Inside a Dask worker")
        warnings.filterwarnings("ignore", message=".*daemonic processes")
        warnings.filterwarnings("ignore", message="Loky-backed parallel loops cannot be called")
        n = effective_n_jobs(n_jobs)
    return max(1, min(n, machine_cores()))
