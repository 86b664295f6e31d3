"""Scratch arrays: reused between calls, in a chosen memory order, and copies between orders.

A strategy's workspace is taken from memory its thread keeps between calls
(:func:`workspace`): the pages of a fresh array are faulted in on first touch,
and glibc's malloc hands large freed blocks back to the system, so a fresh
workspace per call can cost more than the work done in it.

NumPy's elementwise passes and copies pay for every inner loop.  The engine
keeps them long by laying a buffer out in the order its neighbour already has
(a strategy's result, the maps a pooling pass reads) and, where two orders
must meet, by moving whole contiguous runs at once.

Examples
--------
>>> import numpy as np
>>> from skconv._buffers import copy_runs, order_of, ordered_view
>>> maps = ordered_view(np.zeros(24), (2, 3, 4), (1, 0, 2))  # stored (3, 2, 4)
>>> maps.shape, order_of(maps)
((2, 3, 4), (1, 0, 2))
>>> target = np.empty((2, 3, 4))
>>> copy_runs(target, maps + 1.0)
>>> float(target.sum())
24.0
"""

import math
import threading

import numpy as np

# Workspaces up to this size are kept per thread and slot between calls.
# glibc's malloc serves blocks above its mmap threshold (128 KiB at first,
# raised to the size of the largest block freed, up to 32 MiB) with fresh
# pages and gives them back when they are freed, and it trims the top of its
# heap beyond twice that threshold: whether a workspace's pages are faulted
# in again on every call depends on what the process allocated before
# (measured: rowgemm_wide on 24 62x62 float32 images with 3 1x5 filters,
# 1.55 ms and ~900 page faults per call in a fresh process, 0.19-0.21 ms
# with its 2.7 MiB workspace kept; in one process the same call was fast
# or slow depending on the shapes timed before it).  The strategies
# size their workspaces to a few MiB (``GROUP_BYTES``), so this covers them;
# larger ones (a single huge image, a large chunk) are allocated per call.
# Two slots are used, so a thread keeps at most twice this.
SCRATCH_BYTES = 8 * 2**20
_ALIGN = 64  # bytes: a cache line, for every array carved from a buffer
_kept = threading.local()


def workspace(slot, arrays):
    """Uninitialised arrays, on memory this thread keeps for ``slot`` between calls.

    For temporaries that never leave the call: the next call on the same
    thread with the same ``slot`` gets the same memory.  The arrays asked
    for together are distinct (carved from one buffer, each aligned to 64
    bytes); two requests for the same slot on one thread must not be live
    at once.  Beyond ``SCRATCH_BYTES`` in all, fresh arrays are returned and
    nothing is kept.

    Parameters
    ----------
    slot : {"strategy", "chunk"}
        The strategy's workspace (one strategy runs at a time on a thread),
        or the prepared chunk it reads (:func:`~skconv._padding.prepare_chunk`).
    arrays : list of (tuple of int, dtype)
        Shape and dtype of each array.

    Returns
    -------
    list of ndarray

    Examples
    --------
    >>> import numpy as np
    >>> from skconv._buffers import workspace
    >>> a, b = workspace("strategy", [((2, 3), np.float32), ((4,), np.complex64)])
    >>> a.shape, b.dtype, np.shares_memory(a, b)
    ((2, 3), dtype('complex64'), False)
    >>> (c,) = workspace("strategy", [((2, 3), np.float32)])
    >>> np.shares_memory(a, c)  # the same memory, call after call
    True
    """
    sizes = [math.prod(shape) * np.dtype(dtype).itemsize for shape, dtype in arrays]
    starts = [0]
    for size in sizes:
        starts.append(starts[-1] + -(-size // _ALIGN) * _ALIGN)
    if starts[-1] > SCRATCH_BYTES:
        return [np.empty(shape, dtype) for shape, dtype in arrays]
    kept = getattr(_kept, "buffers", None)
    if kept is None:
        kept = _kept.buffers = {}
    buffer = kept.get(slot)
    if buffer is None or buffer.size < starts[-1] + _ALIGN:
        buffer = kept[slot] = np.empty(starts[-1] + _ALIGN, np.uint8)
    base = -buffer.ctypes.data % _ALIGN
    return [
        buffer[base + start : base + start + size].view(dtype).reshape(shape)
        for start, size, (shape, dtype) in zip(starts[:-1], sizes, arrays, strict=True)
    ]


def ordered_view(flat, shape, order):
    """A ``shape`` view of the flat array ``flat`` whose axes run in ``order`` in memory.

    ``order`` lists the axes from the slowest to the fastest:
    ``ordered_view(flat, (n, K, h, w), (2, 1, 0, 3))`` is an (n, K, h, w)
    array stored as (h, K, n, w).
    """
    stored = flat[: math.prod(shape)].reshape([shape[a] for a in order])
    return stored.transpose([order.index(a) for a in range(len(order))])


def order_of(array):
    """The axes of ``array`` from the slowest to the fastest in memory (ties keep their order)."""
    return tuple(sorted(range(array.ndim), key=lambda axis: -abs(array.strides[axis])))


def copy_runs(dst, src):
    """``np.copyto(dst, src)``, each run along the last axis moved as one element.

    Between arrays stored in different orders, the inner loops of NumPy's
    copy are the runs along the last axis: a row of a few dozen pixels.  When
    that axis is contiguous in both arrays, a void dtype of the run's bytes
    makes each run one element, and the inner loop goes over the other axes
    (measured: W10's copy into the output's order 0.35 -> 0.18 ms, the row
    buffer of 83 28x28 images 60 -> 41 us).  Otherwise a plain copy.
    """
    run = dst.shape[-1] * dst.itemsize if dst.ndim else 0
    if (
        run == 0
        or dst.shape != src.shape
        or dst.dtype != src.dtype
        or dst.strides[-1] != dst.itemsize
        or src.strides[-1] != src.itemsize
    ):
        np.copyto(dst, src)
        return
    np.copyto(dst.view(f"V{run}")[..., 0], src.view(f"V{run}")[..., 0])
