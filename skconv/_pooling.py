"""Pooling of feature maps, and the shape arithmetic of pooling."""

import math

import numpy as np

from ._activation import ACTIVATIONS, rectify
from ._buffers import copy_runs, order_of, ordered_view
from ._validation import as_real_array, check_option, check_out, check_pair, float_dtype

POOL_OPS = ("max", "mean", "sum")
_REDUCE = {"max": np.max, "mean": np.mean, "sum": np.sum}
# Windows and steps are used in slices, which take C integers: larger values
# are refused with a ValueError instead of numpy's OverflowError.
_MAX_INT = int(np.iinfo(np.intp).max)


def pooled_shape(map_shape, size=2, *, stride=None, grid=None):
    """(rows, columns) of ``map_shape`` maps after pooling; checks the parameters.

    The one place the pooling parameters are validated: :func:`pool2d` and the
    transformer's layout both call it.

    Parameters
    ----------
    map_shape : (int, int)
        Rows and columns of the maps.
    size, stride, grid
        As in :func:`pool2d`.

    Returns
    -------
    (int, int)
        Rows and columns of the pooled maps.

    Examples
    --------
    >>> from skconv._pooling import pooled_shape
    >>> pooled_shape((7, 9), 2)
    (3, 4)
    >>> pooled_shape((7, 9), 3, stride=1), pooled_shape((7, 9), grid=2)
    ((5, 7), (2, 2))
    """
    h, w = map_shape
    if min(h, w) < 1:
        raise ValueError(
            f"maps must have at least one pixel per map; got shape {tuple(map_shape)}."
        )
    if grid is not None:
        if stride is not None:
            raise ValueError("stride cannot be given with grid; pass one or the other.")
        gh, gw = _check_extent(grid, "grid")
        if gh > h or gw > w:
            raise ValueError(f"grid {gh}x{gw} has more regions than the {h}x{w} maps have pixels.")
        return gh, gw
    if isinstance(size, str):
        if size != "global":
            raise ValueError(f"size must be an int, a pair or 'global'; got {size!r}.")
        if stride is not None:
            raise ValueError("stride cannot be given with size='global'.")
        return 1, 1
    ph, pw = _check_extent(size, "size")
    sh, sw = (ph, pw) if stride is None else _check_extent(stride, "stride")
    if ph > h or pw > w:
        raise ValueError(
            f"pooling window {ph}x{pw} is larger than the {h}x{w} maps; use a "
            "smaller size, grid=... or size='global'."
        )
    return (h - ph) // sh + 1, (w - pw) // sw + 1


def _check_extent(value, name):
    """``check_pair`` with numpy's slice bound on top."""
    pair = check_pair(value, name)
    if max(pair) > _MAX_INT:
        raise ValueError(f"{name} must be <= {_MAX_INT} along both axes; got {pair!r}.")
    return pair


def _grid_bounds(size, cells):
    """Start and stop of each of ``cells`` regions covering ``size`` pixels.

    Regions are [floor(i*size/cells), ceil((i+1)*size/cells)), as torch's
    adaptive pooling: they cover every pixel and overlap by at most one pixel
    when ``cells`` does not divide ``size``.
    """
    return [((i * size) // cells, -(-((i + 1) * size) // cells)) for i in range(cells)]


def pool2d(maps, size=2, *, stride=None, op="max", grid=None, activation=None, out=None):
    """Pool feature maps over their two last (spatial) axes.

    Parameters
    ----------
    maps : array-like of shape (n_images, h, w) or (n_images, n_maps, h, w)
        Feature maps, as returned by :func:`skconv.conv2d`.
    size : int, (int, int) or "global", default=2
        Pooling window (rows, columns).  Windows that do not fit at the
        bottom/right edge are dropped, as torch's pooling does by default.
        "global" pools each whole map to one value.
    stride : int or (int, int), default=None
        Step between windows; None means ``size`` (non-overlapping windows).
    op : {"max", "mean", "sum"}, default="max"
        Reduction over each window.
    grid : int or (int, int), default=None
        Pool into a fixed grid of regions instead of windows, whatever the
        map size: ``grid=2`` pools each map into its four quadrants.  Regions
        are as in torch's adaptive pooling (every pixel is covered; when the
        grid does not divide the map, neighbouring regions share a pixel).
        ``size`` is not used and ``stride`` must be None.
    activation : {None, "relu", "abs", "square", "split"}, default=None
        Rectification applied before pooling (see the README).  "split"
        doubles the maps: map 2k is relu(x_k) and map 2k + 1 is relu(-x_k).
    out : ndarray, optional
        Where to write the result; it must have exactly the result's shape
        and dtype, be writeable and not overlap ``maps``.

    Returns
    -------
    pooled : ndarray of shape (n_images, h_out, w_out) or \
            (n_images, n_maps, h_out, w_out)
        float32 for float32 maps, float64 for all others (integers, bools,
        float16 and longer floats are computed in float64, as in
        :func:`~skconv.conv2d`); 4-D whenever ``activation="split"``.  ``out`` when it was given.

    Notes
    -----
    A window is reduced along its rows first (ufunc passes over whole rows
    of the maps, contiguous in memory), then along its columns, so sums and
    means add the pixels of a window in that order.  Window pooling of maps
    already in memory costs about one read of the maps.

    Unlike :func:`~skconv.conv2d`, which refuses them (its fast strategies
    would spread them beyond their windows), NaN and infinity are accepted:
    they stay in their windows and propagate as in NumPy's reductions (a
    window holding a NaN pools to NaN with every ``op``).

    Examples
    --------
    >>> import numpy as np
    >>> from skconv import pool2d
    >>> maps = np.arange(16.0).reshape(1, 4, 4)
    >>> print(pool2d(maps, 2))
    [[[ 5.  7.]
      [13. 15.]]]
    >>> print(pool2d(maps, "global", op="mean"))
    [[[7.5]]]
    >>> pool2d(maps, grid=(3, 1), op="sum").shape
    (1, 3, 1)
    """
    maps = as_real_array(maps, "maps")
    if maps.ndim not in (3, 4):
        raise ValueError(
            "maps must be 3-D (n_images, h, w) or 4-D (n_images, n_maps, h, w); "
            f"got shape {maps.shape}."
        )
    if min(maps.shape[-2:]) < 1:
        raise ValueError(f"maps must have at least one pixel per map; got shape {maps.shape}.")
    dtype = float_dtype(maps.dtype, "maps")
    check_option(op, POOL_OPS, "op")
    out_h, out_w = pooled_shape(maps.shape[-2:], size, stride=stride, grid=grid)
    check_option(activation, (None, *ACTIVATIONS), "activation")
    n_maps = (
        maps.shape[1:-2] if activation != "split" else (2 * maps.shape[1] if maps.ndim == 4 else 2,)
    )
    shape = maps.shape[:1] + tuple(n_maps) + (out_h, out_w)
    out = check_out(out, shape, dtype, maps=maps)
    given = maps
    # Reduce in the result's dtype: float16 sums of 16 pixels of 60 000
    # overflowed to infinity.
    if maps.dtype != dtype:
        maps = maps.astype(dtype)
    maps = rectify(maps, activation, copy=maps is given)
    pool_into(maps, out, size, stride=stride, op=op, grid=grid)
    return out


def pool_work_items(map_shape, size=2, *, stride=None, grid=None, overwrite=False):
    """Elements of the work buffer :func:`pool_into` needs per map (0: none).

    The row pass of window pooling writes (h_out, w') per map (unless it
    runs in place: ``overwrite``), and its column pass (h_out, w_out) when
    ``out`` is stored in another order than the maps; the row pass of grid
    pooling one row of w pixels.
    """
    h, w = map_shape
    out_h, out_w = pooled_shape(map_shape, size, stride=stride, grid=grid)
    if grid is not None:
        return w
    if isinstance(size, str):
        return 0
    ph, pw = check_pair(size, "size")
    sh, sw = (ph, pw) if stride is None else check_pair(stride, "stride")
    rows = 0 if _row_pass_in_place(overwrite, ph, sh) else _row_pass_items(out_h, out_w, ph, pw, sw)
    return rows + (out_h * out_w if pw > 1 else 0)


def _row_pass_items(out_h, out_w, ph, pw, sw):
    return out_h * (sw * (out_w - 1) + pw) if ph > 1 and pw > 1 else 0


def _row_pass_in_place(overwrite, ph, sh):
    """Whether the row pass writes over the maps: allowed, and no window
    shares a row with another (each window's second row is read once)."""
    return overwrite and sh >= ph


def pool_into(maps, out, size=2, *, stride=None, op="max", grid=None, work=None, overwrite=False):
    """Pool float ``maps`` (..., h, w) into ``out`` (..., h_out, w_out), unchecked.

    The engine of :func:`pool2d` for callers that validated the parameters
    (with :func:`pooled_shape`) and own ``out``, which may be any strided
    view (the transformer pools straight into its output's columns).
    ``work``, a flat array of ``maps.dtype`` with at least
    :func:`pool_work_items` elements per map, is used for the intermediate
    row pass instead of a fresh allocation, and for the column pass when
    ``out`` is stored in another order than ``maps``.  ``overwrite=True``
    lets the pooling write into ``maps`` (a caller's scratch): when windows
    do not overlap (stride >= size along the rows) the row pass then runs in
    place, into the second row of each window.
    """
    h, w = maps.shape[-2:]
    out_h, out_w = out.shape[-2:]
    lead = maps.shape[:-2]
    if grid is not None:
        ufunc = np.maximum if op == "max" else np.add
        for i, (r0, r1) in enumerate(_grid_bounds(h, out_h)):
            # Rows first: a reduction over an outer axis runs contiguous
            # inner loops along the rows.
            band = ufunc.reduce(maps[..., r0:r1, :], axis=-2, out=_buffer(work, lead + (w,), maps))
            for j, (c0, c1) in enumerate(_grid_bounds(w, out_w)):
                ufunc.reduce(band[..., c0:c1], axis=-1, out=out[..., i, j])
                if op == "mean":
                    out[..., i, j] /= (r1 - r0) * (c1 - c0)
        return out
    if isinstance(size, str):  # "global"
        flat = maps.reshape(lead + (h * w,))
        _REDUCE[op](flat, axis=-1, out=out[..., 0, 0])
        return out
    ph, pw = check_pair(size, "size")
    sh, sw = (ph, pw) if stride is None else check_pair(stride, "stride")
    # One ufunc pass per window row over strided views of all the maps (inner
    # loops along whole map rows), then one per window column over the
    # result: numpy's reductions over the small window axes of a window view
    # are ~20x slower, and a pass per window tap reads every map ph*pw times
    # with short strided inner loops.
    combine = np.maximum if op == "max" else np.add
    cols = sw * (out_w - 1) + pw  # columns some window reads
    rows = [maps[..., u : u + sh * (out_h - 1) + 1 : sh, :cols] for u in range(ph)]
    used = 0  # elements of work the row pass holds
    if pw == 1:
        rows = [r[..., ::sw] for r in rows]
        target = out
    elif ph == 1:
        target = None
    elif _row_pass_in_place(overwrite, ph, sh):
        # Each window's rows are its own: its second row, read by the first
        # combine only, can take the result (sums keep their order).  For
        # the fused transform's 4 MiB blocks of maps this keeps 2 MiB less
        # in cache: measured ~8 % of T1 on two threads (72.4 -> 66.5 ms).
        target = rows[1]
    else:
        target = _buffer(work, lead + (out_h, cols), maps)
        used = target.size
    if target is not None:
        if ph == 1:
            np.copyto(target, rows[0])
        else:
            combine(rows[0], rows[1], out=target)
            for r in rows[2:]:
                combine(target, r, out=target)
        band = target
    else:
        band = rows[0]
    if pw > 1:
        taps = [band[..., v : v + sw * (out_w - 1) + 1 : sw] for v in range(pw)]
        target = out
        if order_of(out) != order_of(band):
            # Maps stored in another order than out (the fused transform's,
            # row-major across images): the pass runs along the maps' memory
            # into work, and moves into out by whole pooled rows.
            rest = None if work is None else work[used:]
            target = _buffer(rest, out.shape, band)
        combine(taps[0], taps[1], out=target)
        for tap in taps[2:]:
            combine(target, tap, out=target)
        if target is not out:
            copy_runs(out, target)
    if op == "mean":
        out /= ph * pw
    return out


def _buffer(work, shape, like):
    """A ``shape`` view of the flat ``work`` array, or a new array if it is too small.

    When ``shape`` has as many axes as ``like``, its axes are stored in the
    order of ``like``'s strides: a ufunc pass from one into the other then
    runs along both memories at once (for the fused transform's maps stored
    row-major across images, in long inner loops instead of one per map row).
    """
    items = math.prod(shape)
    if work is None or work.size < items:
        work = np.empty(items, like.dtype)
    if len(shape) != like.ndim or like.flags.c_contiguous:
        return work[:items].reshape(shape)
    return ordered_view(work, shape, order_of(like))
