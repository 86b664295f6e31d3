"""The cache of preprocessed filters: bounded in bytes and entries, keyed by contents."""

import numpy as np

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
