"""The contraction strategies behind ``conv2d(method=...)``, in one registry.

Every strategy computes the same thing on one chunk of images that the driver
(``_conv.py``) has already validated, cast, padded and made C-contiguous
(``_padding.py``)::

    out[n, k, i, j] = sum_{u, v, c} x[n, i*sh + u*dh, j*sw + v*dw, c] * w[k, u, v, c]

with ``x`` of shape (n, H, W, C), ``w`` of shape (K, p, q, C) (already flipped
when a true convolution was asked for, already in ``x``'s dtype) and ``out``
an (n, K, out_h, out_w) array that the strategy fills in place: C-contiguous
for ``conv2d``; laid out in the strategy's own ``out_order`` when the fused
transform, which only reads the maps back, asks for that with
``ConvSpec.maps_in_strategy_order`` (then a strategy that would copy its
result into C order writes it where it computes it).
The problem's geometry comes as a ``ConvSpec`` (``_plan.py``).

A strategy is a :class:`Strategy` registered in :data:`METHODS`, and describes
itself in one place: its name and one-line description, ``run``,
``supports(spec)``, ``workspace_bytes(spec, n)`` (temporaries for a chunk of
``n`` images), ``fixed_bytes(spec)`` (its cached preprocessed filters; the
driver sizes chunks with both so that a call stays within scikit-learn's
``working_memory``) and ``features(spec)``, the counts the cost model
(``_costmodel.py``) turns into an estimated time.  Adding a strategy is
writing these functions and one ``register(Strategy(...))``, then refitting
the cost model (``benchmarks/fit_cost_model.py``).

The strategies:

``"einsum"``
    The reference: one ``np.einsum`` over the strided window view.  Slow,
    no copies, everything supported.
``"taps"``
    Shift and add: per filter, one multiply-add of a strided view of the
    images into the output per tap.  For 1x1 and tiny filters, where a GEMM
    has nothing to work on.  Declines filters of more than ``TAPS_MAX`` taps
    (p*q*C).
``"rowgemm"``
    Row-window GEMM.  Each image is copied once into q shifted copies of
    its rows; the p*q*C taps of every window of one output row are then one
    contiguous block, and one batched ``np.matmul`` of the (K, p*q*C)
    filter matrix with those blocks writes every output row, through a
    transposed view of ``out``.  At a column stride of 2, float32 rows are
    split into their even and odd columns first, so the copies move whole
    runs (``_column_sources``).  Everything supported.
``"rowgemm_wide"``
    The same buffer with the images interleaved inside each row, so that
    one output row of a whole group of images is a single wide product;
    costs one copy of the output block, none when the maps may stay in its
    (row, filter, image, column) order.  Best for large filters.
``"toeplitz"``
    Each filter row acts as a banded (Toeplitz) matrix on two image rows
    at a time, read through a free strided view of ``x``: one GEMM per
    (pair of output rows, filter), the batch being the long dimension.
    Best for one or two filters.  Everything supported.
``"operator"``
    For tiny images, the whole correlation is one product
    ``x.reshape(n, H*W*C) @ T`` with the mostly-zero (H*W*C, K*out_h*out_w)
    operator ``T`` built from the filters (cached; at most ``OPERATOR_MAX_BYTES``).
``"separable"``
    Low rank: the SVD of each filter, keeping only the singular values above
    rounding level, turns the correlation into a column pass (one GEMM per
    output row over a transposed copy of the group) and a row pass (banded
    GEMMs).  Exact up to rounding for any filter; fast when the filters'
    numerical rank is small (Sobel, Gaussian, box, many Gabor filters).
    Single-channel only.
``"fft"``
    Overlap-save tiles transformed with ``numpy.fft``, channels summed per
    frequency, stride and dilation by polyphase rewriting (``_fft.py``).
    Work per output grows with log(tile) instead of p*q: for large filters.

Examples
--------
>>> import numpy as np
>>> from skconv._plan import plan_conv2d
>>> from skconv._strategies import METHODS
>>> spec = plan_conv2d((3, 28, 28, 1), np.float32, (8, 5, 5, 1)).spec
>>> [name for name, s in METHODS.items() if s.supports(spec)]
['einsum', 'rowgemm', 'rowgemm_wide', 'toeplitz', 'operator', 'separable', 'fft']
>>> x = np.random.default_rng(0).standard_normal((3, 28, 28, 1)).astype(np.float32)
>>> w = np.ones((8, 5, 5, 1), np.float32)
>>> out = np.empty((3, 8, 24, 24), np.float32)
>>> METHODS["rowgemm"].run(x, w, spec, out)
>>> bool(np.allclose(out[0, 0, 0, 0], x[0, :5, :5].sum(), atol=1e-5))
True
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from numpy.lib.stride_tricks import as_strided, sliding_window_view

from ._buffers import copy_runs, workspace
from ._cache import CACHE, FilterCache
from ._fft import fft_features, fft_fixed, fft_run, fft_workspace


def _always(spec):
    return True


def _zero(*args):
    return 0


@dataclass(frozen=True)
class Strategy:
    """One contraction strategy (see the module docstring).

    Attributes
    ----------
    name : str
        The name ``conv2d(method=...)`` takes.
    description : str
        One line for humans (``python -m skconv bench`` prints it).
    run : callable
        ``run(x, w, spec, out)`` fills ``out`` (see the module docstring).
    features : callable
        ``features(spec) -> dict``: the counts of work the cost model weighs
        (among ``_costmodel.FEATURES``; ``const`` and ``out`` are added there).
    supports : callable, default: always True
        ``supports(spec) -> bool``.
    workspace_bytes : callable, default: zero
        ``workspace_bytes(spec, n_images) -> int``: temporaries that ``run``
        allocates for a chunk of ``n_images`` (an upper bound).
    fixed_bytes : callable, default: zero
        ``fixed_bytes(spec) -> int``: memory of the preprocessed filters the
        strategy keeps in its cache while it runs (independent of the chunk).
    out_order : tuple, default: (0, 1, 2, 3)
        The axes of ``out`` (image, filter, row, column) from the slowest
        to the fastest in memory in the order ``run`` computes them: given
        an ``out`` laid out so (``_buffers.ordered_view``), ``run`` skips
        its copy into C order.
    """

    name: str
    description: str
    run: Callable
    features: Callable
    supports: Callable = _always
    workspace_bytes: Callable = _zero
    fixed_bytes: Callable = _zero
    out_order: tuple = (0, 1, 2, 3)


METHODS = {}
"""The registry: strategy name -> :class:`Strategy`, in registration order."""


def register(strategy):
    """Add ``strategy`` to :data:`METHODS` (its name must be new)."""
    if strategy.name in METHODS or strategy.name == "auto":
        raise ValueError(f"strategy name must be new; got {strategy.name!r}.")
    METHODS[strategy.name] = strategy
    return strategy


def window_view(x, spec):
    """Free strided view ``win[n, i, j, c, u, v] = x[n, i*sh + u*dh, j*sw + v*dw, c]``."""
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    span_h, span_w = spec.span
    win = sliding_window_view(x, (span_h, span_w), axis=(1, 2))
    return win[:, ::sh, ::sw, :, ::dh, ::dw]


# --- shared helpers ----------------------------------------------------------

# Per-group temporaries are kept around this size so that the row-window
# buffer is still in cache when the GEMMs read it back (measured on W2-W4 and
# W6: 2-4 MiB groups run up to 2x faster than 0.25 MiB or 32 MiB ones).
GROUP_BYTES = 3 * 2**20


# An in-place add into a strided view of out goes through the ufunc machinery's
# buffers (measured 100-140 KiB for float64).
_UFUNC_BUFFER_ITEMS = 16 * 8192


def _group_size(n, bytes_per_image):
    return int(max(1, min(n, GROUP_BYTES // max(bytes_per_image, 1))))


def _row_phases(spec):
    """Output rows grouped so that each group's taps are contiguous rows.

    With row dilation dh the row-window buffer stores the image rows
    phase-major (row ``t*dh + ph`` at ``[ph, t]``), so the p taps of output
    row i, rows ``i*sh + u*dh``, are p consecutive entries of one phase.  The
    output rows sharing a phase are an arithmetic progression.

    Yields
    ------
    (i0, step, count, phase, t0, t_step)
        Output rows ``i0, i0+step, ...`` (``count`` of them) read phase
        ``phase`` from entry ``t0`` on, ``t_step`` entries apart.
    """
    (sh, _), (dh, _) = spec.stride, spec.dilation
    g = math.gcd(sh, dh)
    step = dh // g
    for i0 in range(min(step, spec.out_height)):
        yield (
            i0,
            step,
            len(range(i0, spec.out_height, step)),
            (i0 * sh) % dh,
            (i0 * sh) // dh,
            sh // g,
        )


def _fill_rows(rows, xs, spec, columns=None):
    """Copy the images' rows into the row-window buffer.

    ``rows[ph, t, v, c, b, j] = xs[b, t*dh + ph, j*sw + v*dw, c]``, its axes
    stored in any order: image row ``t*dh + ph`` at ``[ph, t]``, so that the
    taps of an output row are consecutive entries of one phase.  ``columns``
    is scratch for :func:`_column_sources` when :func:`_splits_columns`.
    """
    g, height, _, c = xs.shape
    (_, sw), (dh, dw) = spec.stride, spec.dilation
    isz = xs.itemsize
    if columns is None:
        view = as_strided(
            xs,
            (height, spec.filter_width, c, g, spec.out_width),
            (xs.strides[1], dw * c * isz, isz, xs.strides[0], sw * c * isz),
            writeable=False,
        )
        sources = [(slice(None), view)]
    else:
        sources = _column_sources(xs, spec, columns)
    for ph in range(dh):
        count = len(range(ph, height, dh))
        for taps, view in sources:
            copy_runs(rows[ph, :count, taps], view[ph::dh])


# With a column stride of 2 the taps read every other pixel of a row, and
# NumPy's copy of such a view moves one pixel at a time.  float32 images
# have their even and odd columns copied apart first, in one pass each,
# after which every tap reads contiguous runs that copy_runs moves whole.
# Measured on 277 28x28 images, 8 5x5 filters, stride 2, one thread: the
# fill 106 us against 159 (25 us the split, 82 the runs), conv2d on one
# stream of products 1.07 ms against 1.25 for 1000 images.  float64 has
# no integer type twice its size to split it with, and a plain copy of
# every other pixel was slower than the fill it would replace.
def _splits_columns(spec):
    """Whether the row-window buffer is filled through the images' column phases."""
    (_, sw), (_, dw) = spec.stride, spec.dilation
    return (
        sw == 2
        and dw == 1
        and spec.n_channels == 1
        and spec.width % 2 == 0
        and np.dtype(spec.dtype) == np.float32
        and np.little_endian
    )


def _column_items(spec):
    """Items per image of the scratch :func:`_column_sources` fills (0 when unused)."""
    return spec.height * spec.width if _splits_columns(spec) else 0


def _column_sources(xs, spec, columns):
    """(taps, view) pairs from which :func:`_fill_rows` copies, when the column stride is 2.

    Fills ``columns[ph, b, t, j] = xs[b, t, 2*j + ph]``: each pair of pixels,
    read as one uint64, is cast to uint32, which keeps its low half: on a
    little-endian machine the first pixel of the pair, bit for bit.  The
    pairs starting one pixel later give the odd columns.  Tap ``v`` then
    reads ``columns[v % 2, b, t, v // 2 + j]``, whole runs of ``j``.
    """
    g, height, width, _ = xs.shape
    flat = xs.reshape(-1)  # C-contiguous (prepare_chunk), of even size
    half = flat.size // 2
    split = columns[:, :half]
    np.copyto(split[0].view(np.uint32), flat.view(np.uint64), casting="unsafe")
    np.copyto(split[1, :-1].view(np.uint32), flat[1:-1].view(np.uint64), casting="unsafe")
    split[1, -1] = flat[-1]
    isz, q, wp = xs.itemsize, spec.filter_width, width // 2
    return [
        (
            slice(ph, None, 2),
            as_strided(
                split[ph],
                (height, len(range(ph, q, 2)), 1, g, spec.out_width),
                (wp * isz, isz, 0, height * wp * isz, isz),
                writeable=False,
            ),
        )
        for ph in range(min(2, q))
    ]


def _row_buffer_shape(spec):
    dh = spec.dilation[0]
    return dh, -(-spec.height // dh)


def _geometry_key(spec):
    return (spec.height, spec.width, spec.stride, spec.dilation, spec.out_height, spec.out_width)


def _inner_one_penalty(inner):
    """NumPy's matmul leaves BLAS for products with an inner dimension of 1
    (measured: 640 ns per (16, 1) @ (1, 44) product against 170 ns for an
    inner dimension of 2)."""
    return 4.0 if inner == 1 else 1.0


def _small_gemm(m, n, k=64):
    """Share of a GEMM's time lost to short sides (BLAS kernels work in tiles).

    ``padded volume / volume - 1`` for an (m x k) @ (k x n) product whose
    output sides are rounded up to a 16x16 micro-tile and whose inner
    dimension to 8 (the kernels unroll it).
    """
    m, n, k = max(m, 1), max(n, 1), max(k, 1)  # (empty batches plan too)
    pm, pn, pk = -(-m // 16) * 16, -(-n // 16) * 16, -(-k // 8) * 8
    return pm * pn * pk / (m * n * k) - 1.0


# --- einsum: the reference -------------------------------------------------
# The stride-tricks einsum of the well-known StackOverflow answer, generalised:
# one einsum over the window view.  With
# optimize=False einsum runs its own C loop over the strided view, so it never
# copies the windows (optimize=True and tensordot would build a b*m'*n'*p*q
# im2col buffer behind the caller's back).  It is slow, but simple enough to
# be obviously right: every other strategy is tested against it.


def _einsum_run(x, w, spec, out):
    np.einsum("nijcuv,kuvc->nkij", window_view(x, spec), w, out=out, optimize=False)


def _einsum_features(spec):
    # einsum's own loop pays per inner loop (along an output row, for one
    # tap) as well as per multiply-add
    loops = spec.n_images * spec.macs_per_image / spec.out_width
    return {"flops": 2.0 * spec.n_images * spec.macs_per_image, "calls": float(loops)}


register(
    Strategy(
        name="einsum",
        description="one np.einsum over the strided window view (the reference; no copies)",
        run=_einsum_run,
        features=_einsum_features,
    )
)


# --- taps: shift and add ------------------------------------------------------
# For one to a few taps a GEMM has nothing to chew on: a 1x1 filter is a
# scaling of the image.  Each tap is then one multiply(-add) of a strided view
# into the output, in groups of images small enough to stay in cache.


# Past a few taps the passes over memory lose to any GEMM form (measured: 3x3
# filters already lose on every workload), so longer filters are declined.
TAPS_MAX = 16


def _taps_group(spec, n):
    return _group_size(n, 2 * spec.out_height * spec.out_width * spec.itemsize)


def _taps_run(x, w, spec, out):
    n = x.shape[0]
    win = window_view(x, spec)  # (n, oh, ow, c, p, q)
    k, p, q, c = w.shape
    group = _taps_group(spec, n)
    (scratch,) = workspace("strategy", [((group, spec.out_height, spec.out_width), x.dtype)])
    taps = [(u, v, ch) for u in range(p) for v in range(q) for ch in range(c)]
    for s in range(0, n, group):
        g = min(group, n - s)
        tmp = scratch[:g]
        for f in range(k):
            target = out[s : s + g, f]
            (u, v, ch), rest = taps[0], taps[1:]
            np.multiply(win[s : s + g, :, :, ch, u, v], w[f, u, v, ch], out=target)
            for u, v, ch in rest:
                np.multiply(win[s : s + g, :, :, ch, u, v], w[f, u, v, ch], out=tmp)
                np.add(target, tmp, out=target)


def _taps_workspace(spec, n):
    items = _taps_group(spec, n) * spec.out_height * spec.out_width + _UFUNC_BUFFER_ITEMS
    return items * spec.itemsize


def _taps_features(spec):
    n, macs = spec.n_images, spec.macs_per_image
    taps = spec.filter_height * spec.filter_width * spec.n_channels
    return {
        "flops": 2.0 * n * macs,
        "bytes": 4.0 * n * macs * spec.itemsize,
        "calls": float(-(-n // _taps_group(spec, n)) * spec.n_filters * (2 * taps - 1)),
    }


register(
    Strategy(
        name="taps",
        description="shift and add: one multiply-add of a strided view per tap (tiny filters)",
        run=_taps_run,
        features=_taps_features,
        supports=lambda spec: spec.filter_height * spec.filter_width * spec.n_channels <= TAPS_MAX,
        workspace_bytes=_taps_workspace,
    )
)


# --- rowgemm: row-window GEMM ------------------------------------------------


def _rowgemm_image_items(spec):
    dh, hd = _row_buffer_shape(spec)
    return dh * hd * spec.filter_width * spec.n_channels * spec.out_width


def _rowgemm_group(spec, n):
    return _group_size(n, _rowgemm_image_items(spec) * spec.itemsize)


def _rowgemm_run(x, w, spec, out):
    n, _, _, c = x.shape
    k, p, q = spec.n_filters, spec.filter_height, spec.filter_width
    dh = spec.dilation[0]
    ow, isz = spec.out_width, x.itemsize
    taps = p * q * c
    wm = w.reshape(k, taps)
    _, hd = _row_buffer_shape(spec)
    group = _rowgemm_group(spec, n)
    items, column_items = _rowgemm_image_items(spec), _column_items(spec)
    buf, column_buf = workspace(
        "strategy", [((group * items,), x.dtype), ((group * column_items,), x.dtype)]
    )
    for s in range(0, n, group):
        g = min(group, n - s)
        xs = x[s : s + g]
        # R[b, ph, t, v, c, j] = x[b, t*dh + ph, j*sw + v*dw, c]
        rows = buf[: g * items].reshape(g, dh, hd, q, c, ow)
        columns = column_buf[: g * column_items].reshape(2, -1) if column_items else None
        _fill_rows(rows.transpose(1, 2, 3, 4, 0, 5), xs, spec, columns)
        for i0, step, count, ph, t0, t_step in _row_phases(spec):
            # The taps of output row i of image b: one contiguous
            # (p*q*c, ow) block of R; overlapping blocks are fine for
            # matmul, each one is an ordinary BLAS matrix.
            blocks = as_strided(
                rows[:, ph, t0],
                (g, count, taps, ow),
                (rows.strides[0], t_step * rows.strides[2], ow * isz, isz),
                writeable=False,
            )
            np.matmul(wm, blocks, out=out[s : s + g, :, i0::step].transpose(0, 2, 1, 3))


def _rowgemm_workspace(spec, n):
    items = _rowgemm_image_items(spec) + _column_items(spec)
    return _rowgemm_group(spec, n) * items * spec.itemsize


def _rowgemm_features(spec):
    n, k, ow = spec.n_images, spec.n_filters, spec.out_width
    taps = spec.filter_height * spec.filter_width * spec.n_channels
    calls = n * spec.out_height * _inner_one_penalty(taps)
    return {
        "flops": 2.0 * n * spec.macs_per_image,
        "small": 2.0 * _small_gemm(k, ow, taps) * n * spec.macs_per_image,
        "bytes": 2.0 * n * _rowgemm_image_items(spec) * spec.itemsize,
        "calls": float(calls),
        "pack": float(calls * taps * (k + ow)),
    }


register(
    Strategy(
        name="rowgemm",
        description="row-window buffer (q shifted copies of each row), a GEMM per output row",
        run=_rowgemm_run,
        features=_rowgemm_features,
        workspace_bytes=_rowgemm_workspace,
    )
)


# --- rowgemm_wide: images interleaved in each row -----------------------------


def _wide_image_items(spec):
    return _rowgemm_image_items(spec), spec.n_filters * spec.out_height * spec.out_width


def _wide_group(spec, n):
    rows, outs = _wide_image_items(spec)
    return _group_size(n, (rows + outs) * spec.itemsize)


def _wide_run(x, w, spec, out):
    n, _, _, c = x.shape
    k, p, q = spec.n_filters, spec.filter_height, spec.filter_width
    dh = spec.dilation[0]
    oh, ow, isz = spec.out_height, spec.out_width, x.itemsize
    taps = p * q * c
    wm = w.reshape(k, taps)
    _, hd = _row_buffer_shape(spec)
    rows_items, out_items = _wide_image_items(spec)
    group = _wide_group(spec, n)
    in_place = out.strides[3] == isz and out.strides[0] == ow * isz
    column_items = _column_items(spec)
    sizes = [rows_items, column_items, 0 if in_place else out_items]
    rows_buf, column_buf, out_buf = workspace(
        "strategy", [((group * size,), x.dtype) for size in sizes]
    )
    for s in range(0, n, group):
        g = min(group, n - s)
        xs = x[s : s + g]
        # R[ph, t, v, c, b, j] = x[b, t*dh + ph, j*sw + v*dw, c]
        rows = rows_buf[: g * rows_items].reshape(dh, hd, q, c, g, ow)
        columns = column_buf[: g * column_items].reshape(2, -1) if column_items else None
        _fill_rows(rows, xs, spec, columns)
        if in_place:
            # out is stored (row, filter, image, column): this group's
            # (image, column) pairs are one unit-stride axis of it already
            result = out[s : s + g].transpose(2, 1, 0, 3)
        else:
            result = out_buf[: g * out_items].reshape(oh, k, g, ow)
        for i0, step, count, ph, t0, t_step in _row_phases(spec):
            blocks = as_strided(
                rows[ph, t0],
                (count, taps, g * ow),
                (t_step * rows.strides[1], g * ow * isz, isz),
                writeable=False,
            )
            target = as_strided(
                result[i0], (count, k, g * ow), (step * result.strides[0], result.strides[1], isz)
            )
            np.matmul(wm, blocks, out=target)
        if not in_place:
            # (image, output column) is not one uniform stride of a
            # C-contiguous out: one copy.
            copy_runs(out[s : s + g].transpose(2, 1, 0, 3), result)


def _wide_workspace(spec, n):
    rows, outs = _wide_image_items(spec)
    if spec.maps_in_strategy_order:
        outs = 0
    return _wide_group(spec, n) * (rows + _column_items(spec) + outs) * spec.itemsize


def _wide_features(spec):
    n, k, ow = spec.n_images, spec.n_filters, spec.out_width
    taps = spec.filter_height * spec.filter_width * spec.n_channels
    rows, outs = _wide_image_items(spec)
    group = _wide_group(spec, n)
    calls = -(-n // group) * spec.out_height * _inner_one_penalty(taps)
    return {
        "flops": 2.0 * n * spec.macs_per_image,
        "small": 2.0 * _small_gemm(k, group * ow, taps) * n * spec.macs_per_image,
        # the products write the maps, a copy into C order reads and writes them again
        "bytes": 2.0
        * n
        * (rows + (1 if spec.maps_in_strategy_order else 2) * outs)
        * spec.itemsize,
        "calls": float(calls),
        "pack": float(calls * taps * (k + group * ow)),
    }


register(
    Strategy(
        name="rowgemm_wide",
        description="row-window buffer, images interleaved: one wide GEMM per output row",
        run=_wide_run,
        features=_wide_features,
        workspace_bytes=_wide_workspace,
        out_order=(2, 1, 0, 3),
    )
)


# --- toeplitz: banded filter rows on free views of x -------------------------

TOEPLITZ_ROWS = 2  # output rows per product (measured: 2 beats 1 and 4)


def _toeplitz_layout(spec):
    """(rows per product, number of products, tail rows) per filter."""
    g = min(TOEPLITZ_ROWS, spec.out_height)
    return g, spec.out_height // g, spec.out_height % g


def _toeplitz_matrix(w, spec, g):
    """T[k, (r, col, c), (a, j)] = w[k, u, v, c] where r = a*sh + u*dh, col = j*sw + v*dw."""
    k, p, q, c = w.shape
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    span_h, _ = spec.span
    rows = (g - 1) * sh + span_h
    ow = spec.out_width
    t = np.zeros((k, rows, spec.width, g, ow, c), w.dtype)
    a, u, v, j = np.meshgrid(np.arange(g), np.arange(p), np.arange(q), np.arange(ow), indexing="ij")
    t[:, a * sh + u * dh, j * sw + v * dw, a, j, :] = w[:, u, v, :]
    return np.ascontiguousarray(
        t.transpose(0, 1, 2, 5, 3, 4).reshape(k, rows * spec.width * c, g * ow)
    )


def _toeplitz_matrices(w, spec):
    g, _, tail = _toeplitz_layout(spec)
    key = FilterCache.key("toeplitz", w, _geometry_key(spec))

    def build():
        return (_toeplitz_matrix(w, spec, g), _toeplitz_matrix(w, spec, 1) if tail else None)

    return CACHE.get(key, build)


def _band_items(spec):
    """Entries of one filter's band matrix for a row block, and for a tail row."""
    g, _, _ = _toeplitz_layout(spec)
    (sh, _), span_h = spec.stride, spec.span[0]
    row_items = spec.width * spec.n_channels
    return (
        (g - 1) * sh + span_h
    ) * row_items * g * spec.out_width, span_h * row_items * spec.out_width


def _toeplitz_items(spec):
    """Entries of the cached band matrices (the tail's only when there is one)."""
    _, _, tail = _toeplitz_layout(spec)
    main, single = _band_items(spec)
    return spec.n_filters * (main + (single if tail else 0))


def _toeplitz_run(x, w, spec, out):
    n = x.shape[0]
    sh = spec.stride[0]
    g, count, tail = _toeplitz_layout(spec)
    main, single = _toeplitz_matrices(w, spec)
    row = x.strides[1]
    isz, ow = x.itemsize, spec.out_width
    k_step = out.strides[1]
    # Row block i of every image: (n, rows*W*C) with leading dimension
    # H*W*C, a plain BLAS matrix; the batch of them over i overlaps.  One
    # matmul broadcasts them against every filter's band matrix: a product
    # per filter and block all the same, but one NumPy call instead of one
    # per filter (measured: 41 18x18 images, 8 14x14 filters, 138 -> 66 us,
    # most of it the per-filter views).
    view = as_strided(
        x, (1, count, n, main.shape[1]), (0, g * sh * row, x.strides[0], isz), writeable=False
    )
    target = as_strided(
        out, (spec.n_filters, count, n, g * ow), (k_step, g * ow * isz, out.strides[0], isz)
    )
    np.matmul(view, main[:, None], out=target)
    if tail:
        first = count * g
        view = as_strided(
            x[:, first * sh],
            (1, tail, n, single.shape[1]),
            (0, sh * row, x.strides[0], isz),
            writeable=False,
        )
        np.matmul(view, single[:, None], out=out[:, :, first:].transpose(1, 2, 0, 3))


def _toeplitz_macs(spec):
    """Multiply-adds of one image: each of the ``count`` row blocks (and
    each tail row) multiplies its rows by its filter's whole band matrix,
    zeros included."""
    _, count, tail = _toeplitz_layout(spec)
    main, single = _band_items(spec)
    return spec.n_filters * (count * main + tail * single)


def _toeplitz_features(spec):
    n = spec.n_images
    g, count, tail = _toeplitz_layout(spec)
    flops = 2.0 * n * _toeplitz_macs(spec)
    return {
        "flops": flops,
        "small": _small_gemm(n, g * spec.out_width) * flops,
        "bytes": float(
            n * spec.n_filters * spec.height * spec.width * spec.n_channels * spec.itemsize
        ),
        "calls": float(spec.n_filters * (count + tail)),
        # every product packs its band matrix and the batch's row block
        "pack": float(count * _toeplitz_items(spec) * (1 + n / (g * spec.out_width))),
    }


register(
    Strategy(
        name="toeplitz",
        description="banded filter-row matrices on free strided views, a GEMM per 2 output rows",
        run=_toeplitz_run,
        features=_toeplitz_features,
        fixed_bytes=lambda spec: _toeplitz_items(spec) * spec.itemsize,
    )
)


# --- operator: the whole correlation as one matrix -----------------------------

OPERATOR_MAX_BYTES = 32 * 2**20


def _operator_items(spec):
    return (
        spec.height
        * spec.width
        * spec.n_channels
        * spec.n_filters
        * spec.out_height
        * spec.out_width
    )


def _operator_matrix(w, spec):
    """T[(h, col, c), (k, i, j)] = w[k, u, v, c] where h = i*sh + u*dh, col = j*sw + v*dw."""
    k, p, q, c = w.shape
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    oh, ow = spec.out_height, spec.out_width
    t = np.zeros((spec.height, spec.width, c, k, oh, ow), w.dtype)
    i, j, u, v = np.meshgrid(
        np.arange(oh), np.arange(ow), np.arange(p), np.arange(q), indexing="ij"
    )
    # Advanced indices split by slices: their (oh, ow, p, q) axes come first.
    t[i * sh + u * dh, j * sw + v * dw, :, :, i, j] = w.transpose(1, 2, 3, 0)[u, v]
    return t.reshape(spec.height * spec.width * c, k * oh * ow)


def _operator_run(x, w, spec, out):
    key = FilterCache.key("operator", w, _geometry_key(spec))
    t = CACHE.get(key, lambda: _operator_matrix(w, spec))
    n = x.shape[0]
    # out is C-contiguous, so the reshape is a view and matmul writes in place.
    np.matmul(x.reshape(n, -1), t, out=out.reshape(n, -1))


def _operator_supports(spec):
    return _operator_items(spec) * spec.itemsize <= OPERATOR_MAX_BYTES


def _operator_features(spec):
    n = spec.n_images
    pixels = spec.height * spec.width * spec.n_channels
    maps = spec.n_filters * spec.out_height * spec.out_width
    flops = 2.0 * n * _operator_items(spec)
    # One GEMM per call: its fixed cost is the cost model's constant, so no
    # "calls" count (it would be collinear with it).
    return {
        "flops": flops,
        "small": _small_gemm(n, maps) * flops,
        "bytes": float(n * (pixels + maps) * spec.itemsize),
        "pack": float(n * pixels + _operator_items(spec)),
    }


register(
    Strategy(
        name="operator",
        description="whole-image operator matrix (tiny images): one GEMM for the chunk",
        run=_operator_run,
        features=_operator_features,
        supports=_operator_supports,
        fixed_bytes=lambda spec: _operator_items(spec) * spec.itemsize,
    )
)


# --- separable: low-rank filters as column and row passes ----------------------


def _svd_factors(w):
    """Filters as sums of outer products, keeping singular values above rounding.

    A singular value is kept when it exceeds ``max(p, q) * eps * s_max`` (the
    rank rule of ``numpy.linalg.matrix_rank``, with eps of the computation's
    dtype and s_max the filter's largest singular value), so what is dropped
    is at the rounding level of the dtype the correlation runs in.

    Returns
    -------
    cols : ndarray of shape (K, r, p)
        Column factors, scaled by the singular values.
    rows : ndarray of shape (K, r, q)
        Row factors.
    ranks : ndarray of shape (K,)
        Numerical rank of each filter (r is their maximum, at least 1).
    """
    k, p, q, _ = w.shape
    w64 = w[..., 0].astype(np.float64)
    u, s, vt = np.linalg.svd(w64)
    tol = s[:, :1] * max(p, q) * np.finfo(w.dtype).eps
    keep = s > tol
    ranks = keep.sum(axis=1)
    r = max(1, int(ranks.max()))
    s = np.where(keep, s, 0.0)[:, :r]
    cols = (u[:, :, :r] * s[:, None, :]).transpose(0, 2, 1)
    rows = vt[:, :r, :].copy()
    # A rank-1 filter is also the outer product of its column and row through
    # its largest entry, the row divided by that entry (a single row or
    # column needs no division): exact for filters of small integers such as
    # Sobel's or [-1, 1], where the SVD's normalised factors round (a Sobel
    # map of integer images had 1e-15 where the answer is 0; a [-1, 1]
    # difference 0.99999994 for 1 in float32).
    for f in np.flatnonzero(ranks == 1):
        i0, j0 = np.unravel_index(np.argmax(np.abs(w64[f])), (p, q))
        pivot = 1.0 if p == 1 else w64[f, i0, j0]
        cols[f], rows[f] = 0.0, 0.0
        cols[f, 0], rows[f, 0] = w64[f, :, j0] / (w64[f, i0, j0] / pivot), w64[f, i0, :] / pivot
    return cols, rows, ranks


def filter_rank(w):
    """Largest numerical rank of a single-channel filter bank (None for C > 1).

    Parameters
    ----------
    w : ndarray of shape (K, p, q, C)
        The filters as the strategies get them.

    Returns
    -------
    int or None
    """
    if w.shape[-1] != 1:
        return None
    key = FilterCache.key("rank", w)
    return CACHE.get(key, lambda: int(max(1, _svd_factors(w)[2].max())))


def _separable_factors(w, spec):
    key = FilterCache.key("separable", w, _geometry_key(spec))

    def build():
        cols, rows, _ = _svd_factors(w)
        k, r, q = rows.shape
        (_, sw), (_, dw) = spec.stride, spec.dilation
        ow = spec.out_width
        # Banded row pass: band[rr, k, j*sw + v*dw, j] = rows[k, rr, v].
        band = np.zeros((r, k, spec.width, ow))
        v, j = np.meshgrid(np.arange(q), np.arange(ow), indexing="ij")
        band[:, :, j * sw + v * dw, j] = rows.transpose(1, 0, 2)[:, :, v]
        return (
            np.ascontiguousarray(cols.reshape(k * r, -1), dtype=w.dtype),
            np.ascontiguousarray(band, dtype=w.dtype),
        )

    return CACHE.get(key, build)


def _separable_rank(spec):
    if spec.filter_rank is not None:
        return spec.filter_rank
    return min(spec.filter_height, spec.filter_width)


def _separable_image_items(spec, r):
    k, oh = spec.n_filters, spec.out_height
    items = spec.height * spec.width + oh * k * r * spec.width
    if r > 1:
        items += oh * k * spec.out_width
    return items


def _separable_group(spec, n, r):
    return _group_size(n, _separable_image_items(spec, r) * spec.itemsize)


def _separable_run(x, w, spec, out):
    cols, band = _separable_factors(w, spec)
    r, k = band.shape[:2]
    n, height, width, _ = x.shape
    (sh, _), (dh, _) = spec.stride, spec.dilation
    p, oh, ow, isz = spec.filter_height, spec.out_height, spec.out_width, x.itemsize
    spec_r = replace(spec, filter_rank=r)
    group = _separable_group(spec_r, n, r)
    (buf,) = workspace("strategy", [((group * _separable_image_items(spec_r, r),), x.dtype)])
    for s in range(0, n, group):
        g = min(group, n - s)
        flat = buf[: g * _separable_image_items(spec_r, r)]
        # Rows outermost, images inside: one output row's p input rows of
        # the whole group are one (p, g*W) matrix.
        xt = flat[: height * g * width].reshape(height, g, width)
        copy_runs(xt, x[s : s + g, :, :, 0].transpose(1, 0, 2))
        stop = height * g * width + oh * k * r * g * width
        cpass = flat[height * g * width : stop].reshape(oh, k, r, g, width)
        view = as_strided(
            xt,
            (oh, p, g * width),
            (sh * g * width * isz, dh * g * width * isz, isz),
            writeable=False,
        )
        np.matmul(cols, view, out=cpass.reshape(oh, k * r, g * width))
        target = out[s : s + g].transpose(2, 1, 0, 3)  # (oh, k, g, ow)
        np.matmul(cpass[:, :, 0], band[0], out=target)
        if r > 1:
            extra = flat[stop : stop + oh * k * g * ow].reshape(oh, k, g, ow)
            for rr in range(1, r):
                np.matmul(cpass[:, :, rr], band[rr], out=extra)
                target += extra


def _separable_supports(spec):
    return spec.n_channels == 1


def _separable_workspace(spec, n):
    r = _separable_rank(spec)
    extra = _UFUNC_BUFFER_ITEMS if r > 1 else 0
    return (_separable_group(spec, n, r) * _separable_image_items(spec, r) + extra) * spec.itemsize


def _separable_fixed(spec):
    r = _separable_rank(spec)
    k = spec.n_filters
    return (k * r * spec.filter_height + r * k * spec.width * spec.out_width) * spec.itemsize


def _separable_features(spec):
    n, r = spec.n_images, _separable_rank(spec)
    k, oh, ow, width = spec.n_filters, spec.out_height, spec.out_width, spec.width
    group = _separable_group(spec, n, r)
    groups = -(-n // group)
    p = spec.filter_height
    return {
        "flops": 2.0 * n * oh * k * r * width * (p + ow),
        "small": 2.0 * n * oh * k * r * width * ow * _small_gemm(group, ow, width),
        "bytes": 2.0 * n * _separable_image_items(spec, r) * spec.itemsize,
        "calls": float(groups * oh * (1 + k * r)),
        "pack": float(groups * oh * (k * r * p + p * group * width + k * r * (group + ow) * width)),
    }


register(
    Strategy(
        name="separable",
        description="SVD of the filters (rank at rounding level): column, then banded row GEMMs",
        run=_separable_run,
        features=_separable_features,
        supports=_separable_supports,
        workspace_bytes=_separable_workspace,
        fixed_bytes=_separable_fixed,
    )
)


# --- fft: overlap-save tiles with numpy.fft (in _fft.py) ------------------------

register(
    Strategy(
        name="fft",
        description="overlap-save tiles with numpy.fft, channels summed per frequency",
        run=fft_run,
        features=fft_features,
        workspace_bytes=fft_workspace,
        fixed_bytes=fft_fixed,
    )
)
