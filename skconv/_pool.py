"""Pooling and rectification of feature maps."""

import numpy as np

from ._conv import _check_dtype, _is_int, _pair

POOL_OPS = ("max", "mean", "sum")
ACTIVATIONS = ("relu", "abs", "square", "split")
_REDUCE = {"max": np.max, "mean": np.mean, "sum": np.sum}


def rectify(maps, activation, *, copy=True):
    """Apply a pointwise rectification to maps of shape (..., n_maps, h, w).

    Parameters
    ----------
    maps : ndarray of shape (n_images, h, w) or (n_images, n_maps, h, w)
        Feature maps.
    activation : {None, "relu", "abs", "square", "split"}
        None returns ``maps``; "relu" is max(x, 0); "abs" |x|; "square" x**2;
        "split" returns the positive and negative parts, relu(x) and
        relu(-x), as two maps per input map, interleaved: map ``2k`` is the
        positive and ``2k + 1`` the negative part of map ``k`` (a 3-D input
        becomes (n_images, 2, h, w)).
    copy : bool, default=True
        If False, "relu", "abs" and "square" work in place on ``maps``.

    Returns
    -------
    ndarray
        Same dtype as ``maps``.
    """
    if activation is None:
        return maps
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"activation must be None or one of {ACTIVATIONS}; got {activation!r}."
        )
    if activation == "split":
        four_d = maps if maps.ndim == 4 else maps[:, None]
        n, k, h, w = four_d.shape
        result = np.empty((n, k, 2, h, w), maps.dtype)
        np.maximum(four_d, 0, out=result[:, :, 0])
        np.negative(four_d, out=result[:, :, 1])
        np.maximum(result[:, :, 1], 0, out=result[:, :, 1])
        return result.reshape(n, 2 * k, h, w)
    out = None if copy else maps
    if activation == "relu":
        return np.maximum(maps, 0, out=out)
    if activation == "abs":
        return np.abs(maps, out=out)
    return np.square(maps, out=out)


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
    if hasattr(maps, "nnz") and hasattr(maps, "toarray"):
        raise TypeError("maps is a sparse matrix; pool2d takes dense arrays.")
    maps = np.asarray(maps)
    if maps.ndim not in (3, 4):
        raise ValueError(
            "maps must be 3-D (n_images, h, w) or 4-D (n_images, n_maps, h, w); "
            f"got shape {maps.shape}."
        )
    dtype = _check_dtype(maps.dtype, "maps")
    if maps.dtype.kind != "f":
        maps = maps.astype(dtype)
    if op not in POOL_OPS:
        raise ValueError(f"op must be one of {POOL_OPS}; got {op!r}.")
    maps = rectify(maps, activation)
    h, w = maps.shape[-2:]
    reduce = _REDUCE[op]

    if grid is not None:
        if stride is not None:
            raise ValueError("stride cannot be given with grid; pass one or the other.")
        gh, gw = _pair(grid, "grid")
        if gh > h or gw > w:
            raise ValueError(
                f"grid {gh}x{gw} has more regions than the {h}x{w} maps have pixels."
            )
        out = np.empty(maps.shape[:-2] + (gh, gw), maps.dtype)
        # A Python loop over the grid's few regions, never over images; each
        # region is reduced one axis at a time (a reduction over two strided
        # axes at once runs numpy's slow generic loop).  Max, sum and mean
        # of equal-length rows all compose this way.
        for i, (r0, r1) in enumerate(_grid_bounds(h, gh)):
            for j, (c0, c1) in enumerate(_grid_bounds(w, gw)):
                rows = reduce(maps[..., r0:r1, c0:c1], axis=-1)
                out[..., i, j] = reduce(rows, axis=-1)
        return out

    if isinstance(size, str):
        if size != "global":
            raise ValueError(f"size must be an int, a pair or 'global'; got {size!r}.")
        if stride is not None:
            raise ValueError("stride cannot be given with size='global'.")
        flat = maps.reshape(maps.shape[:-2] + (h * w,))
        return reduce(flat, axis=-1)[..., None, None]
    ph, pw = _pair(size, "size")
    sh, sw = (ph, pw) if stride is None else _pair(stride, "stride")
    if ph > h or pw > w:
        raise ValueError(
            f"pooling window {ph}x{pw} is larger than the {h}x{w} maps; use a "
            "smaller size, grid=... or size='global'."
        )
    out_h, out_w = (h - ph) // sh + 1, (w - pw) // sw + 1
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
