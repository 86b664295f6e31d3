"""The cache of preprocessed filters: bounded in bytes and entries, keyed by contents."""

import os
import signal
import time

import numpy as np
import pytest
from _oracles import naive_conv2d

from skconv import _cache, conv2d
from skconv._cache import CACHE_MAX_BYTES, FilterCache


def test_filter_cache_is_bounded():
    cache = FilterCache(max_bytes=10_000, max_entries=3)
    for i in range(10):
        w = np.full((1, 3, 3, 1), float(i))
        value = cache.get(FilterCache.key("t", w), lambda: np.zeros(400))  # 3200 bytes
        assert value.nbytes == 3200
        assert cache.nbytes <= 10_000 and len(cache) <= 3
    big = cache.get(FilterCache.key("t", np.ones(1)), lambda: np.zeros(2000))
    assert big.nbytes == 16000 and cache.nbytes <= 10_000  # built, not kept
    # Same contents, same entry; the key depends on contents, not identity.
    calls = []
    w = np.arange(9.0).reshape(1, 3, 3, 1)
    cache.get(FilterCache.key("u", w), lambda: calls.append(1) or np.zeros(1))
    cache.get(FilterCache.key("u", w.copy()), lambda: calls.append(1) or np.zeros(1))
    assert calls == [1]


def test_global_cache_stays_bounded_over_many_banks():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 16, 16))
    for _ in range(40):
        bank = rng.standard_normal((4, 3, 3))
        for name in ("toeplitz", "operator", "separable"):
            conv2d(x, bank, method=name)
    assert _cache.CACHE.nbytes <= CACHE_MAX_BYTES
    assert len(_cache.CACHE) <= _cache.CACHE_MAX_ENTRIES


def _in_a_forked_child(work, seconds=60):
    """Run ``work()`` in a forked child; True when it returned within ``seconds``."""
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            work()
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) == 0
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return False


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_while_the_cache_is_locked_still_builds():
    # A thread of the parent building an entry holds the locks when the main
    # thread forks; the child, which has no such thread, must not wait for it.
    rng = np.random.default_rng(7)
    images, bank = rng.random((2, 12, 12)), rng.standard_normal((3, 5, 5))
    expected = naive_conv2d(images[..., None], bank[..., None])

    def child():
        result = conv2d(images, bank, method="operator")
        assert np.allclose(result, expected, rtol=1e-12, atol=1e-12)

    with _cache.CACHE._build_lock, _cache.CACHE._lock:
        assert _in_a_forked_child(child)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_while_the_bank_cache_is_locked_still_builds():
    from skconv import BatchConv2DTransformer
    from skconv import filters as banks

    X = np.random.default_rng(8).random((2, 64))

    def child():
        BatchConv2DTransformer(filters="gabor", filter_params={"n_orientations": 3}).transform(X)

    with banks._BANK_CACHE_LOCK:
        assert _in_a_forked_child(child)
