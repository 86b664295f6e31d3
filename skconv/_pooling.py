"""Pooling of feature maps, and the shape arithmetic of pooling."""

import numpy as np

from ._activation import rectify
from ._validation import as_real_array, check_option, check_pair, float_dtype

POOL_OPS = ("max", "mean", "sum")
_REDUCE = {"max": np.max, "mean": np.mean, "sum": np.sum}


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
    if grid is not None:
        if stride is not None:
            raise ValueError("stride cannot be given with grid; pass one or the other.")
        gh, gw = check_pair(grid, "grid")
        if gh > h or gw > w:
            raise ValueError(f"grid {gh}x{gw} has more regions than the {h}x{w} maps have pixels.")
        return gh, gw
    if isinstance(size, str):
        if size != "global":
            raise ValueError(f"size must be an int, a pair or 'global'; got {size!r}.")
        if stride is not None:
            raise ValueError("stride cannot be given with size='global'.")
        return 1, 1
    ph, pw = check_pair(size, "size")
    sh, sw = (ph, pw) if stride is None else check_pair(stride, "stride")
    if ph > h or pw > w:
        raise ValueError(
            f"pooling window {ph}x{pw} is larger than the {h}x{w} maps; use a "
            "smaller size, grid=... or size='global'."
        )
    return (h - ph) // sh + 1, (w - pw) // sw + 1


def _grid_bounds(size, cells):
    """Start and stop of each of ``cells`` regions covering ``size`` pixels.

    Regions are [floor(i*size/cells), ceil((i+1)*size/cells)), as torch's
    adaptive pooling: they cover every pixel and overlap by at most one pixel
    when ``cells`` does not divide ``size``.
    """
    return [((i * size) // cells, -(-((i + 1) * size) // cells)) for i in range(cells)]


def pool2d(maps, size=2, *, stride=None, op="max", grid=None, activation=None):
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

    Returns
    -------
    pooled : ndarray of shape (n_images, h_out, w_out) or \
            (n_images, n_maps, h_out, w_out)
        Same dtype as ``maps`` for floating maps, float64 for integer maps;
        4-D whenever ``activation="split"``.

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
    dtype = float_dtype(maps.dtype, "maps")
    if maps.dtype.kind != "f":
        maps = maps.astype(dtype)
    check_option(op, POOL_OPS, "op")
    maps = rectify(maps, activation)
    h, w = maps.shape[-2:]
    out_h, out_w = pooled_shape((h, w), size, stride=stride, grid=grid)
    reduce = _REDUCE[op]

    if grid is not None:
        out = np.empty(maps.shape[:-2] + (out_h, out_w), maps.dtype)
        # A Python loop over the grid's few regions, never over images; each
        # region is reduced one axis at a time (a reduction over two strided
        # axes at once runs numpy's slow generic loop).  Max, sum and mean
        # of equal-length rows all compose this way.
        for i, (r0, r1) in enumerate(_grid_bounds(h, out_h)):
            for j, (c0, c1) in enumerate(_grid_bounds(w, out_w)):
                rows = reduce(maps[..., r0:r1, c0:c1], axis=-1)
                out[..., i, j] = reduce(rows, axis=-1)
        return out
    if isinstance(size, str):  # "global", checked by pooled_shape
        flat = maps.reshape(maps.shape[:-2] + (h * w,))
        return reduce(flat, axis=-1)[..., None, None]
    ph, pw = check_pair(size, "size")
    sh, sw = (ph, pw) if stride is None else check_pair(stride, "stride")
    # One ufunc pass per window tap over strided views of all the maps: numpy
    # reductions over the small window axes of a window view are ~20x slower.
    combine = np.maximum if op == "max" else np.add
    out = None
    for u in range(ph):
        for v in range(pw):
            tap = maps[..., u : u + sh * (out_h - 1) + 1 : sh, v : v + sw * (out_w - 1) + 1 : sw]
            if out is None:
                out = tap.copy()
            else:
                combine(out, tap, out=out)
    if op == "mean":
        out /= ph * pw
    return out
