"""Scratch layouts and row copies (skconv/_buffers.py) against plain NumPy."""

import numpy as np
import pytest

from skconv._buffers import copy_runs, order_of, ordered_view


@pytest.mark.parametrize("order", [(0, 1, 2, 3), (2, 1, 0, 3), (3, 0, 2, 1)])
def test_ordered_view_stores_its_axes_in_the_order_given(order):
    shape = (2, 3, 4, 5)
    flat = np.arange(np.prod(shape) + 3, dtype=float)
    view = ordered_view(flat, shape, order)
    assert view.shape == shape and np.shares_memory(view, flat)
    assert order_of(view) == order
    # element [i0, i1, i2, i3] sits at the position of (i[order[0]], i[order[1]], ...)
    stored = flat[: np.prod(shape)].reshape([shape[a] for a in order])
    index = (1, 2, 3, 4)
    assert view[index] == stored[tuple(index[a] for a in order)]


@pytest.mark.parametrize(
    "make_src, make_dst",
    [
        # the wide strategy's copy into C order: runs contiguous in both
        (lambda a: a, lambda b: b.transpose(2, 1, 0, 3)),
        # a strided source (stride 2 along the runs): the plain copy
        (lambda a: a[..., ::2], lambda b: b[..., :4].transpose(2, 1, 0, 3)),
        # runs of one pixel, and an empty array
        (lambda a: a[..., :1], lambda b: b[..., :1].transpose(2, 1, 0, 3)),
        (lambda a: a[:0], lambda b: b[:, :, :0].transpose(2, 1, 0, 3)),
    ],
)
def test_copy_runs_is_a_copy(make_src, make_dst):
    rng = np.random.default_rng(9)
    src = make_src(rng.standard_normal((5, 3, 4, 8)).astype(np.float32))
    holder = np.full((4, 3, 5, 8), np.nan, np.float32)
    dst = make_dst(holder)
    copy_runs(dst, src)
    np.testing.assert_array_equal(dst, src)
    assert np.isnan(holder).sum() == holder.size - src.size  # written through the view
