"""Scratch arrays in a chosen memory order, and copies between orders.

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

import numpy as np


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
