"""Scratch layouts, row copies and kept workspaces (skconv/_buffers.py) against plain NumPy."""

import numpy as np
import pytest

from skconv._buffers import copy_runs, order_of, ordered_view, workspace


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


def test_workspace_arrays_are_distinct_aligned_and_reused_per_slot():
    a, b = workspace("strategy", [((3, 5), np.float32), ((7,), np.complex128)])
    assert a.shape == (3, 5) and a.dtype == np.float32 and b.dtype == np.complex128
    assert not np.shares_memory(a, b)
    assert a.ctypes.data % 64 == 0 and b.ctypes.data % 64 == 0
    a[...], b[...] = 1.0, 2.0
    assert (a == 1.0).all() and (b == 2.0).all()  # writing one left the other alone
    (again,) = workspace("strategy", [((3, 5), np.float32)])
    assert np.shares_memory(again, a)  # the same memory for the next call
    (chunk,) = workspace("chunk", [((3, 5), np.float32)])
    assert not np.shares_memory(chunk, a)  # each slot its own


def test_workspace_is_per_thread():
    import threading

    (mine,) = workspace("strategy", [((64,), np.float64)])
    theirs = []
    thread = threading.Thread(
        target=lambda: theirs.extend(workspace("strategy", [((64,), np.float64)]))
    )
    thread.start()
    thread.join()
    assert not np.shares_memory(mine, theirs[0])


def test_workspace_beyond_its_bound_is_fresh_and_not_kept(monkeypatch):
    import skconv._buffers as buffers

    (small,) = workspace("strategy", [((8,), np.float64)])
    monkeypatch.setattr(buffers, "SCRATCH_BYTES", 1024)
    (big,) = workspace("strategy", [((200,), np.float64)])  # 1600 bytes
    (big_again,) = workspace("strategy", [((200,), np.float64)])
    assert not np.shares_memory(big, big_again) and not np.shares_memory(big, small)
    (small_again,) = workspace("strategy", [((8,), np.float64)])
    assert np.shares_memory(small_again, small)  # the kept buffer is still there
