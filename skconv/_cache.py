"""The cache of preprocessed filters shared by the strategies.

Operator matrices, Toeplitz blocks and SVD factors depend only on the filter
bank and the geometry, and a transformer calls ``conv2d`` with the same bank
on every chunk of rows: they are built once and kept in :data:`CACHE`, a
small least-recently-used cache keyed by a hash of the filters' bytes
(blake2b of a few KiB takes microseconds) and bounded in bytes.  The driver
counts the entry a call needs (a strategy's ``fixed_bytes``) against
scikit-learn's ``working_memory``; the rest of the cache is bounded by
``CACHE_MAX_BYTES``.

Examples
--------
>>> import numpy as np
>>> from skconv._cache import FilterCache
>>> cache = FilterCache(max_bytes=1000, max_entries=2)
>>> w = np.ones((1, 3, 3, 1))
>>> cache.get(FilterCache.key("double", w), lambda: 2 * w).sum()
np.float64(18.0)
>>> len(cache), cache.nbytes
(1, 72)
"""

import hashlib
import os
import threading
import weakref
from collections import OrderedDict

import numpy as np

CACHE_MAX_BYTES = 32 * 2**20
CACHE_MAX_ENTRIES = 16


# Every cache, for the reset in a forked child (see _reset_after_fork).
_CACHES = weakref.WeakSet()


def _reset_after_fork():
    """A forked child starts with empty caches and fresh locks.

    A fork copies the locks as they were, held perhaps by a thread of the
    parent that does not exist in the child (building an entry while the
    main thread forked): the child's first miss would wait forever.  The
    entries may have been half-updated as well; they are only a cache.
    """
    for cache in list(_CACHES):
        cache._items = OrderedDict()
        cache._lock = threading.Lock()
        cache._build_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


class FilterCache:
    """A small least-recently-used cache of arrays derived from filter banks.

    Parameters
    ----------
    max_bytes : int
        Bound on the total ``nbytes`` of the cached values; a value larger
        than this is built but not kept.
    max_entries : int
        Bound on the number of entries.
    """

    def __init__(self, max_bytes=CACHE_MAX_BYTES, max_entries=CACHE_MAX_ENTRIES):
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._items = OrderedDict()
        self._lock = threading.Lock()
        # Builds are serialised so that two threads missing on the same key
        # build it once (two operator matrices would double the memory).
        self._build_lock = threading.Lock()
        _CACHES.add(self)

    @staticmethod
    def key(tag, w, *extra):
        """A key for ``w``'s contents (not its identity) and ``extra``."""
        digest = hashlib.blake2b(np.ascontiguousarray(w).data, digest_size=16).digest()
        return (tag, w.shape, w.dtype.str, digest) + extra

    @property
    def nbytes(self):
        """Total bytes of the cached values."""
        with self._lock:
            return sum(_nbytes(v) for v in self._items.values())

    def __len__(self):
        return len(self._items)

    def clear(self):
        """Forget every entry."""
        with self._lock:
            self._items.clear()

    def get(self, key, build):
        """The value for ``key``, calling ``build()`` on a miss."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        with self._build_lock:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            value = build()
            size = _nbytes(value)
            if size > self.max_bytes:
                return value
            with self._lock:
                self._items[key] = value
                total = sum(_nbytes(v) for v in self._items.values())
                while total > self.max_bytes or len(self._items) > self.max_entries:
                    _, old = self._items.popitem(last=False)
                    total -= _nbytes(old)
        return value


def _nbytes(value):
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    return 0


CACHE = FilterCache()
