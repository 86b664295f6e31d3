"""Contraction strategies behind ``conv2d(method=...)`` and the choice of ``"auto"``.

Every strategy computes the same thing on one chunk of images that the
driver in ``_conv.py`` has already validated, cast, padded and made
C-contiguous::

    out[n, k, i, j] = sum_{u, v, c} x[n, i*sh + u*dh, j*sw + v*dw, c] * w[k, u, v, c]

with ``x`` of shape (n, H, W, C), ``w`` of shape (K, p, q, C) (already flipped
when a true convolution was asked for, already in ``x``'s dtype) and ``out``
a C-contiguous (n, K, out_h, out_w) array that the strategy fills in place.

A strategy is a :class:`Method`: ``supports(spec)`` says whether it can run
a problem, ``workspace_bytes(spec, n)`` how much temporary memory it needs
for ``n`` images, ``fixed_bytes(spec)`` how much its preprocessed filters
take (the driver sizes its chunks with both, so the whole call stays within
scikit-learn's ``working_memory``), and ``cost(spec, n_threads)`` an
estimate of its run time used by :func:`choose_method`.

The strategies (``METHODS``):

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
    transposed view of ``out``.  Everything supported.
``"rowgemm_wide"``
    The same buffer with the images interleaved inside each row, so that
    one output row of a whole group of images is a single wide product;
    costs one copy of the output block.  Best for large filters.
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

Examples
--------
>>> import numpy as np
>>> from skconv._methods import METHODS, ConvSpec, choose_method
>>> spec = ConvSpec(n_images=1000, height=28, width=28, n_channels=1,
...                 n_filters=8, filter_height=5, filter_width=5, stride=(1, 1),
...                 dilation=(1, 1), out_height=24, out_width=24,
...                 dtype=np.dtype(np.float32))
>>> name, reason = choose_method(spec)
>>> name in METHODS and METHODS[name].supports(spec)
True
>>> x = np.random.default_rng(0).standard_normal((3, 28, 28, 1)).astype(np.float32)
>>> w = np.ones((8, 5, 5, 1), np.float32)
>>> out = np.empty((3, 8, 24, 24), np.float32)
>>> METHODS["rowgemm"].run(x, w, spec, out)
>>> bool(np.allclose(out[0, 0, 0, 0], x[0, :5, :5].sum(), atol=1e-5))
True
"""

import hashlib
import math
import threading
from collections import OrderedDict
from functools import lru_cache
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

import numpy as np
from numpy.lib.stride_tricks import as_strided, sliding_window_view


@dataclass(frozen=True)
class ConvSpec:
    """Shape of one convolution problem, after padding (all sizes in pixels).

    ``n_images`` is the batch size of the whole call; strategies are run on
    chunks of it.  ``filter_rank`` is the largest numerical rank of the
    filters (see :func:`filter_rank`) when the driver knows the filters, None
    otherwise (the cost model then assumes full rank).
    """

    n_images: int
    height: int  # padded
    width: int  # padded
    n_channels: int
    n_filters: int
    filter_height: int
    filter_width: int
    stride: tuple
    dilation: tuple
    out_height: int
    out_width: int
    dtype: np.dtype
    filter_rank: Optional[int] = None

    @property
    def itemsize(self):
        return np.dtype(self.dtype).itemsize

    @property
    def macs_per_image(self):
        """Multiply-adds of the direct contraction for one image."""
        return (
            self.n_filters
            * self.out_height
            * self.out_width
            * self.filter_height
            * self.filter_width
            * self.n_channels
        )

    @property
    def span(self):
        """Rows and columns of image one (dilated) filter covers."""
        (dh, dw) = self.dilation
        return dh * (self.filter_height - 1) + 1, dw * (self.filter_width - 1) + 1


def _zero(*args):
    return 0


@dataclass(frozen=True)
class Method:
    """One contraction strategy (see the module docstring).

    Attributes
    ----------
    name : str
        The name ``conv2d(method=...)`` takes.
    run : callable
        ``run(x, w, spec, out)`` fills ``out`` (see the module docstring).
    supports : callable
        ``supports(spec) -> bool``.
    workspace_bytes : callable
        ``workspace_bytes(spec, n_images) -> int``: temporaries that ``run``
        allocates for a chunk of ``n_images`` (an upper bound).
    cost : callable
        ``cost(spec, n_threads=1) -> float``: estimated seconds for the whole
        batch.
    summary : str
        One line for humans.
    fixed_bytes : callable
        ``fixed_bytes(spec) -> int``: memory of the preprocessed filters the
        strategy keeps in its cache while it runs (independent of the chunk).
    """

    name: str
    run: Callable
    supports: Callable
    workspace_bytes: Callable
    cost: Callable
    summary: str
    fixed_bytes: Callable = field(default=_zero)

    def split_batch(self, spec):
        """How conv2d uses the cores for this strategy on ``spec``.

        Two ways: our threads on parts of the batch with single-threaded
        BLAS (True), or one stream of products on BLAS's own threads (False).
        Many small GEMMs gain from the first; a few large ones from the
        second (two half-size copies of a big product are no faster and share
        the caches).  The cost model, fitted on both, decides.  The answer
        does not depend on ``n_jobs``, so neither do the products conv2d
        issues, and ``n_jobs=2`` gives results identical to ``n_jobs=1``.
        """
        return _estimate(self.name, spec, "threads") < _estimate(self.name, spec, "blas")


def window_view(x, spec):
    """Free strided view ``win[n, i, j, c, u, v] = x[n, i*sh + u*dh, j*sw + v*dw, c]``."""
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    span_h, span_w = spec.span
    win = sliding_window_view(x, (span_h, span_w), axis=(1, 2))
    return win[:, ::sh, ::sw, :, ::dh, ::dw]


# --- the cache of preprocessed filters -------------------------------------
# Operator matrices, Toeplitz blocks and SVD factors depend only on the filter
# bank and the geometry, and a transformer calls conv2d with the same bank on
# every chunk of rows: build them once.  Keyed by a hash of the filters' bytes
# (blake2b of a few KiB is microseconds), bounded in bytes, least recently used
# evicted first.  The driver counts the entry a call needs (``fixed_bytes``)
# against working_memory; the rest of the cache is bounded by CACHE_MAX_BYTES.

CACHE_MAX_BYTES = 32 * 2**20
CACHE_MAX_ENTRIES = 16


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
        yield i0, step, len(range(i0, spec.out_height, step)), (i0 * sh) % dh, (i0 * sh) // dh, sh // g


def _fill_rows(dst, src, dh):
    """Copy image rows into a phase-major row buffer (phase axis first in ``dst``)."""
    height = src.shape[0]
    for ph in range(dh):
        np.copyto(dst[ph, : len(range(ph, height, dh))], src[ph::dh])


def _row_buffer_shape(spec):
    dh = spec.dilation[0]
    return dh, -(-spec.height // dh)


# --- einsum: the reference -------------------------------------------------
# The seed's technique, generalised: one einsum over the window view.  With
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
    scratch = np.empty((group, spec.out_height, spec.out_width), x.dtype)
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


# --- rowgemm: row-window GEMM ------------------------------------------------


def _rowgemm_image_items(spec):
    dh, hd = _row_buffer_shape(spec)
    return dh * hd * spec.filter_width * spec.n_channels * spec.out_width


def _rowgemm_group(spec, n):
    return _group_size(n, _rowgemm_image_items(spec) * spec.itemsize)


def _rowgemm_run(x, w, spec, out):
    n, height, _, c = x.shape
    k, p, q = spec.n_filters, spec.filter_height, spec.filter_width
    (_, sw), (dh, dw) = spec.stride, spec.dilation
    ow, isz = spec.out_width, x.itemsize
    taps = p * q * c
    wm = w.reshape(k, taps)
    _, hd = _row_buffer_shape(spec)
    group = _rowgemm_group(spec, n)
    buf = np.empty(group * _rowgemm_image_items(spec), x.dtype)
    for s in range(0, n, group):
        g = min(group, n - s)
        xs = x[s : s + g]
        # R[b, ph, t, v, c, j] = x[b, t*dh + ph, j*sw + v*dw, c]
        rows = buf[: g * _rowgemm_image_items(spec)].reshape(g, dh, hd, q, c, ow)
        src = as_strided(
            xs,
            (height, g, q, c, ow),
            (xs.strides[1], xs.strides[0], dw * c * isz, isz, sw * c * isz),
            writeable=False,
        )
        _fill_rows(rows.transpose(1, 2, 0, 3, 4, 5), src, dh)
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
    return _rowgemm_group(spec, n) * _rowgemm_image_items(spec) * spec.itemsize


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


# --- rowgemm_wide: images interleaved in each row -----------------------------


def _wide_image_items(spec):
    return _rowgemm_image_items(spec), spec.n_filters * spec.out_height * spec.out_width


def _wide_group(spec, n):
    rows, outs = _wide_image_items(spec)
    return _group_size(n, (rows + outs) * spec.itemsize)


def _wide_run(x, w, spec, out):
    n, height, _, c = x.shape
    k, p, q = spec.n_filters, spec.filter_height, spec.filter_width
    (_, sw), (dh, dw) = spec.stride, spec.dilation
    oh, ow, isz = spec.out_height, spec.out_width, x.itemsize
    taps = p * q * c
    wm = w.reshape(k, taps)
    _, hd = _row_buffer_shape(spec)
    rows_items, out_items = _wide_image_items(spec)
    group = _wide_group(spec, n)
    rows_buf = np.empty(group * rows_items, x.dtype)
    out_buf = np.empty(group * out_items, x.dtype)
    for s in range(0, n, group):
        g = min(group, n - s)
        xs = x[s : s + g]
        # R[ph, t, v, c, b, j] = x[b, t*dh + ph, j*sw + v*dw, c]
        rows = rows_buf[: g * rows_items].reshape(dh, hd, q, c, g, ow)
        src = as_strided(
            xs,
            (height, q, c, g, ow),
            (xs.strides[1], dw * c * isz, isz, xs.strides[0], sw * c * isz),
            writeable=False,
        )
        _fill_rows(rows, src, dh)
        result = out_buf[: g * out_items].reshape(oh, k, g, ow)
        for i0, step, count, ph, t0, t_step in _row_phases(spec):
            blocks = as_strided(
                rows[ph, t0],
                (count, taps, g * ow),
                (t_step * rows.strides[1], g * ow * isz, isz),
                writeable=False,
            )
            target = as_strided(
                result[i0], (count, k, g * ow), (step * result.strides[0], g * ow * isz, isz)
            )
            np.matmul(wm, blocks, out=target)
        # (image, output column) is not one uniform stride of out: one copy.
        np.copyto(out[s : s + g].transpose(2, 1, 0, 3), result)


def _wide_workspace(spec, n):
    rows, outs = _wide_image_items(spec)
    return _wide_group(spec, n) * (rows + outs) * spec.itemsize


def _wide_features(spec):
    n, k, ow = spec.n_images, spec.n_filters, spec.out_width
    taps = spec.filter_height * spec.filter_width * spec.n_channels
    rows, outs = _wide_image_items(spec)
    group = _wide_group(spec, n)
    calls = -(-n // group) * spec.out_height * _inner_one_penalty(taps)
    return {
        "flops": 2.0 * n * spec.macs_per_image,
        "small": 2.0 * _small_gemm(k, group * ow, taps) * n * spec.macs_per_image,
        "bytes": 2.0 * n * (rows + 2 * outs) * spec.itemsize,
        "calls": float(calls),
        "pack": float(calls * taps * (k + group * ow)),
    }


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


def _toeplitz_items(spec):
    g, _, tail = _toeplitz_layout(spec)
    (sh, _), span_h = spec.stride, spec.span[0]
    row_items = spec.width * spec.n_channels
    items = ((g - 1) * sh + span_h) * row_items * g * spec.out_width
    if tail:
        items += span_h * row_items * spec.out_width
    return spec.n_filters * items


def _toeplitz_run(x, w, spec, out):
    n = x.shape[0]
    sh = spec.stride[0]
    g, count, tail = _toeplitz_layout(spec)
    main, single = _toeplitz_matrices(w, spec)
    row = x.strides[1]
    isz, ow = x.itemsize, spec.out_width
    for k in range(spec.n_filters):
        # Row block i of every image: (n, rows*W*C) with leading dimension
        # H*W*C, a plain BLAS matrix; the batch of them over i overlaps.
        view = as_strided(x, (count, n, main.shape[1]), (g * sh * row, x.strides[0], isz), writeable=False)
        target = as_strided(out[:, k], (count, n, g * ow), (g * ow * isz, out.strides[0], isz))
        np.matmul(view, main[k], out=target)
        if tail:
            first = count * g
            view = as_strided(
                x[:, first * sh], (tail, n, single.shape[1]), (sh * row, x.strides[0], isz), writeable=False
            )
            np.matmul(view, single[k], out=out[:, k, first:].transpose(1, 0, 2))


def _toeplitz_features(spec):
    n = spec.n_images
    g, count, tail = _toeplitz_layout(spec)
    flops = 2.0 * n * _toeplitz_items(spec)
    return {
        "flops": flops,
        "small": _small_gemm(n, g * spec.out_width) * flops,
        "bytes": float(n * spec.n_filters * spec.height * spec.width * spec.n_channels * spec.itemsize),
        "calls": float(spec.n_filters * (count + tail)),
        # every product packs its band matrix and the batch's row block
        "pack": float(count * _toeplitz_items(spec) * (1 + n / (g * spec.out_width))),
    }


# --- operator: the whole correlation as one matrix -----------------------------

OPERATOR_MAX_BYTES = 32 * 2**20


def _operator_items(spec):
    return (
        spec.height * spec.width * spec.n_channels
        * spec.n_filters * spec.out_height * spec.out_width
    )


def _operator_matrix(w, spec):
    """T[(h, col, c), (k, i, j)] = w[k, u, v, c] where h = i*sh + u*dh, col = j*sw + v*dw."""
    k, p, q, c = w.shape
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    oh, ow = spec.out_height, spec.out_width
    t = np.zeros((spec.height, spec.width, c, k, oh, ow), w.dtype)
    i, j, u, v = np.meshgrid(np.arange(oh), np.arange(ow), np.arange(p), np.arange(q), indexing="ij")
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
    return {
        "flops": flops,
        "small": _small_gemm(n, maps) * flops,
        "bytes": float(n * (pixels + maps) * spec.itemsize),
        "calls": 1.0,
        "pack": float(n * pixels + _operator_items(spec)),
    }


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
    u, s, vt = np.linalg.svd(w[..., 0].astype(np.float64))
    tol = s[:, :1] * max(p, q) * np.finfo(w.dtype).eps
    keep = s > tol
    ranks = keep.sum(axis=1)
    r = max(1, int(ranks.max()))
    s = np.where(keep, s, 0.0)[:, :r]
    cols = (u[:, :, :r] * s[:, None, :]).transpose(0, 2, 1)
    return cols, vt[:, :r, :], ranks


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
    buf = np.empty(group * _separable_image_items(spec_r, r), x.dtype)
    for s in range(0, n, group):
        g = min(group, n - s)
        flat = buf[: g * _separable_image_items(spec_r, r)]
        # Rows outermost, images inside: one output row's p input rows of
        # the whole group are one (p, g*W) matrix.
        xt = flat[: height * g * width].reshape(height, g, width)
        np.copyto(xt, x[s : s + g, :, :, 0].transpose(1, 0, 2))
        stop = height * g * width + oh * k * r * g * width
        cpass = flat[height * g * width : stop].reshape(oh, k, r, g, width)
        view = as_strided(xt, (oh, p, g * width), (sh * g * width * isz, dh * g * width * isz, isz), writeable=False)
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


def _geometry_key(spec):
    return (spec.height, spec.width, spec.stride, spec.dilation, spec.out_height, spec.out_width)


def _out_bytes(spec):
    return float(spec.n_images * spec.n_filters * spec.out_height * spec.out_width * spec.itemsize)


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


# --- the cost model ---------------------------------------------------------
# Like opt_einsum's path choice, "auto" compares strategies by an estimate of
# their cost rather than by hard-coded thresholds, but here the estimate is
# in seconds and its coefficients are measured, not assumed: each strategy
# reports what it will do as a few counts (the ``*_features`` functions):
#
#   flops  floating-point operations of its GEMMs, zeros of banded or
#          operator matrices included (they are multiplied all the same);
#   small  extra flops a GEMM with a short side wastes, BLAS kernels working
#          on ~16x16 tiles (row-window GEMMs have K filters by out_w columns;
#          Toeplitz ones as many rows as images in the batch);
#   bytes  bytes its copies move (row-window buffers, transposed output);
#   calls  GEMMs it issues (each costs a BLAS call and a loop step in NumPy);
#   pack   elements of the operands of its GEMMs, summed over the calls
#          (BLAS copies both operands into its packed layout on every call,
#          which dominates skinny products);
#   out    bytes of the result (written once by every strategy, but the
#          first touch of fresh pages costs more than the write itself);
#
# and its time is a nonnegative linear combination of them plus a constant,
# with one set of coefficients per strategy, dtype and threading mode
# ("blas": one stream of products on BLAS's threads; "threads": the batch
# split over 2 threads, BLAS single-threaded; "single": that on 1 thread).  The
# coefficients come from benchmarks/fit_cost_model.py, which times every
# strategy on a sweep of random shapes on this kind of machine
# (benchmarks/cost_model_sweep.json) and fits them by nonnegative least
# squares on relative error; the script rewrites the block below.

FEATURES = ("const", "flops", "small", "bytes", "calls", "pack", "out")

# BEGIN FITTED COEFFICIENTS (benchmarks/fit_cost_model.py writes this block)
# (method, dtype, mode): coefficients of ('const', 'flops', 'small', 'bytes', 'calls', 'pack', 'out')
COEFFICIENTS = {
    ('einsum', 'float32', 'blas'): (0.0003963, 2.194e-10, 0, 0, 6.191e-09, 0, 3.171e-29),
    ('einsum', 'float32', 'single'): (0.0006011, 2.228e-10, 0, 0, 5.904e-09, 0, 7.323e-27),
    ('einsum', 'float32', 'threads'): (0.0007679, 1.218e-10, 0, 0, 3.418e-09, 0, 1.009e-27),
    ('einsum', 'float64', 'blas'): (0.00045, 2.444e-10, 0, 0, 4.922e-09, 0, 5.466e-11),
    ('einsum', 'float64', 'single'): (0.0006442, 2.444e-10, 0, 0, 4.752e-09, 0, 5.65e-11),
    ('einsum', 'float64', 'threads'): (0.0009669, 1.334e-10, 0, 0, 2.465e-09, 0, 4.428e-11),
    ('operator', 'float32', 'blas'): (3.797e-05, 1.936e-12, 4.032e-21, 2.12e-11, 3.625e-09, 2.037e-10, 2.3e-28),
    ('operator', 'float32', 'single'): (5.4e-07, 3.766e-12, 3.459e-12, 1.28e-11, 0.0001016, 4.008e-10, 5.545e-25),
    ('operator', 'float32', 'threads'): (3.892e-05, 1.875e-12, 3.149e-12, 2.242e-11, 0.0001876, 3.208e-10, 2.529e-35),
    ('operator', 'float64', 'blas'): (3.458e-05, 4.478e-12, 2.367e-12, 2.893e-11, 1.094e-08, 2.579e-10, 1.135e-32),
    ('operator', 'float64', 'single'): (9.637e-05, 8.756e-12, 1.436e-11, 2.971e-11, 2.416e-09, 4.182e-10, 6.014e-21),
    ('operator', 'float64', 'threads'): (4.958e-07, 4.679e-12, 5.884e-12, 2.564e-11, 0.0002272, 4.914e-10, 1.218e-24),
    ('rowgemm', 'float32', 'blas'): (5.045e-05, 3.394e-12, 1.674e-12, 1.036e-11, 2.802e-08, 2.193e-25, 6.875e-11),
    ('rowgemm', 'float32', 'single'): (0.0001434, 3.459e-12, 1.73e-12, 7.375e-12, 3.332e-08, 5.743e-24, 7.226e-11),
    ('rowgemm', 'float32', 'threads'): (0.0002794, 1.671e-12, 1.055e-12, 3.49e-12, 1.839e-08, 3.026e-23, 5.334e-11),
    ('rowgemm', 'float64', 'blas'): (4.561e-05, 7.408e-12, 1.943e-12, 9.591e-12, 2.922e-08, 4.258e-24, 5.672e-11),
    ('rowgemm', 'float64', 'single'): (0.0001319, 7.493e-12, 1.989e-12, 9.666e-12, 2.826e-08, 3.083e-25, 6.407e-11),
    ('rowgemm', 'float64', 'threads'): (0.000276, 3.618e-12, 1.046e-12, 9.582e-12, 1.94e-08, 3.512e-24, 4.505e-11),
    ('rowgemm_wide', 'float32', 'blas'): (7.735e-05, 3.805e-12, 8.434e-13, 2.264e-11, 7.028e-07, 2.093e-21, 4.994e-28),
    ('rowgemm_wide', 'float32', 'single'): (0.0001835, 3.473e-12, 8.761e-13, 2.385e-11, 7.341e-07, 1.988e-21, 1.078e-21),
    ('rowgemm_wide', 'float32', 'threads'): (0.0003467, 1.785e-12, 4.76e-13, 1.441e-11, 5.807e-07, 5.058e-13, 7.807e-28),
    ('rowgemm_wide', 'float64', 'blas'): (6.094e-05, 6.08e-12, 2.53e-24, 1.716e-11, 5.216e-07, 5.073e-11, 1.195e-11),
    ('rowgemm_wide', 'float64', 'single'): (0.0001569, 6.246e-12, 1.116e-22, 1.854e-11, 5.912e-07, 4.623e-11, 9.644e-12),
    ('rowgemm_wide', 'float64', 'threads'): (0.0003372, 3.098e-12, 2.321e-13, 1.445e-11, 3.784e-07, 1.598e-11, 1.54e-23),
    ('separable', 'float32', 'blas'): (2.64e-05, 3.453e-12, 6.919e-13, 5.127e-11, 3.172e-08, 6.465e-12, 8.201e-12),
    ('separable', 'float32', 'single'): (0.0001246, 3.09e-12, 7.791e-13, 5.518e-11, 2.818e-08, 4.01e-12, 3.48e-11),
    ('separable', 'float32', 'threads'): (0.0003435, 1.793e-12, 4.611e-13, 3.566e-11, 6.589e-09, 1.434e-12, 2.249e-11),
    ('separable', 'float64', 'blas'): (1.033e-05, 6.553e-12, 9.446e-13, 3.418e-11, 3.565e-08, 2.22e-11, 2.576e-11),
    ('separable', 'float64', 'single'): (0.0001106, 6.603e-12, 7.538e-13, 3.303e-11, 3.093e-08, 3.177e-11, 3.321e-11),
    ('separable', 'float64', 'threads'): (0.0003259, 3.146e-12, 3.11e-13, 2.77e-11, 1.066e-08, 1.892e-11, 1.761e-11),
    ('taps', 'float32', 'blas'): (3.953e-05, 1.959e-10, 0, 5.138e-16, 1.601e-06, 0, 1.951e-23),
    ('taps', 'float32', 'single'): (0.0001629, 7.238e-13, 0, 2.396e-11, 2.558e-06, 0, 5.089e-30),
    ('taps', 'float32', 'threads'): (0.0003607, 1.053e-10, 0, 1.059e-12, 3.209e-06, 0, 1.788e-28),
    ('taps', 'float64', 'blas'): (1.425e-23, 3.673e-10, 0, 1.264e-13, 1.885e-06, 0, 6.692e-24),
    ('taps', 'float64', 'single'): (2.58e-05, 1.293e-12, 0, 2.381e-11, 2.836e-06, 0, 9.213e-12),
    ('taps', 'float64', 'threads'): (0.0003464, 1.978e-10, 0, 4.707e-13, 3.051e-06, 0, 1.852e-11),
    ('toeplitz', 'float32', 'blas'): (2.661e-06, 7.677e-12, 3.686e-28, 1.131e-26, 7.584e-21, 2.201e-10, 1.261e-10),
    ('toeplitz', 'float32', 'single'): (2.078e-05, 2.701e-11, 8.271e-31, 7.204e-26, 3.26e-17, 2.481e-10, 2.183e-10),
    ('toeplitz', 'float32', 'threads'): (0.00021, 1.2e-11, 1.982e-30, 2.57e-25, 1.214e-07, 1.695e-10, 1.261e-10),
    ('toeplitz', 'float64', 'blas'): (5.801e-26, 2.508e-11, 9.873e-27, 7.795e-27, 2.36e-27, 3.378e-10, 1.359e-10),
    ('toeplitz', 'float64', 'single'): (9.677e-17, 6.312e-11, 1.25e-24, 7.646e-25, 1.437e-18, 4.202e-10, 2.166e-10),
    ('toeplitz', 'float64', 'threads'): (9.392e-05, 3.068e-11, 9.097e-24, 6.758e-25, 1.1e-17, 3.012e-10, 1.55e-10),
}
# END FITTED COEFFICIENTS

# Before any fit (or for a strategy the sweep did not cover): sgemm at
# ~100 GFLOP/s, dgemm at half that, copies at ~10 GB/s, 1 us per BLAS call.
_PRIOR = {
    "float32": (2e-5, 1e-11, 1e-11, 1e-10, 1e-6, 1e-10, 1e-10),
    "float64": (2e-5, 2e-11, 2e-11, 1e-10, 1e-6, 2e-10, 1e-10),
}
_EINSUM_PRIOR = {
    "float32": (2e-5, 2.5e-9, 0, 0, 0, 0, 1e-10),
    "float64": (2e-5, 2.5e-9, 0, 0, 0, 0, 1e-10),
}


def _estimate(name, spec, mode):
    dtype = np.dtype(spec.dtype).name
    features = _FEATURE_FUNCTIONS[name](spec)
    features["const"] = 1.0
    features["out"] = _out_bytes(spec)
    coef = COEFFICIENTS.get((name, dtype, mode))
    if coef is None:
        coef = (_EINSUM_PRIOR if name == "einsum" else _PRIOR)[dtype]
        coef = tuple(c * {"blas": 1.0, "threads": 0.7, "single": 1.4}[mode] for c in coef)
    return float(sum(c * features.get(f, 0.0) for c, f in zip(coef, FEATURES)))


def estimate_seconds(name, spec, n_threads=1):
    """The cost model's estimate of one strategy's time on ``spec``.

    Parameters
    ----------
    name : str
        A key of ``METHODS``.
    spec : ConvSpec
        The problem (``n_images`` is the whole batch).
    n_threads : int, default=1
        Threads conv2d will use (``n_jobs``).  A strategy that splits the
        batch (:meth:`Method.split_batch`) runs on that many threads with
        single-threaded BLAS; the others on BLAS's own threads whatever
        ``n_jobs`` is.

    Returns
    -------
    float
    """
    method = METHODS[name]
    if not method.split_batch(spec):
        return _estimate(name, spec, "blas")
    return _estimate(name, spec, "threads" if n_threads > 1 else "single")


def _cost(name):
    return lambda spec, n_threads=1: estimate_seconds(name, spec, n_threads)


EINSUM = Method(
    name="einsum",
    run=_einsum_run,
    supports=lambda spec: True,
    workspace_bytes=_zero,
    cost=_cost("einsum"),
    summary="one np.einsum over the strided window view (the reference; no copies)",
)
TAPS = Method(
    name="taps",
    run=_taps_run,
    supports=lambda spec: spec.filter_height * spec.filter_width * spec.n_channels <= TAPS_MAX,
    workspace_bytes=_taps_workspace,
    cost=_cost("taps"),
    summary="shift and add: one multiply-add of a strided view per tap (1x1 and tiny filters)",
)
ROWGEMM = Method(
    name="rowgemm",
    run=_rowgemm_run,
    supports=lambda spec: True,
    workspace_bytes=_rowgemm_workspace,
    cost=_cost("rowgemm"),
    summary="row-window buffer (q shifted copies of each row), one batched GEMM per output row",
)
ROWGEMM_WIDE = Method(
    name="rowgemm_wide",
    run=_wide_run,
    supports=lambda spec: True,
    workspace_bytes=_wide_workspace,
    cost=_cost("rowgemm_wide"),
    summary="row-window buffer with images interleaved: one wide GEMM per output row of a group",
)
TOEPLITZ = Method(
    name="toeplitz",
    run=_toeplitz_run,
    supports=lambda spec: True,
    workspace_bytes=_zero,
    fixed_bytes=lambda spec: _toeplitz_items(spec) * spec.itemsize,
    cost=_cost("toeplitz"),
    summary="banded filter-row matrices on free strided views, one GEMM per (2 output rows, filter)",
)
OPERATOR = Method(
    name="operator",
    run=_operator_run,
    supports=_operator_supports,
    workspace_bytes=_zero,
    fixed_bytes=lambda spec: _operator_items(spec) * spec.itemsize,
    cost=_cost("operator"),
    summary="whole-image operator matrix (tiny images): one GEMM for the chunk",
)
SEPARABLE = Method(
    name="separable",
    run=_separable_run,
    supports=_separable_supports,
    workspace_bytes=_separable_workspace,
    fixed_bytes=_separable_fixed,
    cost=_cost("separable"),
    summary="SVD of the filters (rank at rounding level): column GEMM pass then banded row pass",
)

METHODS = {m.name: m for m in (EINSUM, TAPS, ROWGEMM, ROWGEMM_WIDE, TOEPLITZ, OPERATOR, SEPARABLE)}
_FEATURE_FUNCTIONS = {
    "einsum": _einsum_features,
    "taps": _taps_features,
    "rowgemm": _rowgemm_features,
    "rowgemm_wide": _wide_features,
    "toeplitz": _toeplitz_features,
    "operator": _operator_features,
    "separable": _separable_features,
}


def choose_method(spec, n_threads=1):
    """Pick the supported strategy with the lowest estimated time.

    Strategies whose cached filters plus the workspace of one image per
    thread would not fit in scikit-learn's ``working_memory`` are left out.

    Parameters
    ----------
    spec : ConvSpec
        The problem; ``spec.filter_rank`` (when known) lets the low-rank
        strategy compete.
    n_threads : int, default=1
        Threads conv2d will use.

    Returns
    -------
    name : str
        The chosen strategy.
    reason : str
        Why: the estimated times of the candidates, cheapest first.
    """
    from sklearn import get_config

    return _choose(spec, n_threads, get_config()["working_memory"] * 2**20)


@lru_cache(maxsize=256)
def _choose(spec, n_threads, budget):
    # ~0.1 ms of estimates: a lot next to a 0.3 ms convolution, and a
    # transformer asks the same question for every chunk of rows.
    estimates, skipped = [], []
    for method in METHODS.values():
        if not method.supports(spec):
            continue
        need = method.fixed_bytes(spec) + n_threads * method.workspace_bytes(spec, 1)
        if method.name != "einsum" and need > budget:
            skipped.append(method.name)
            continue
        estimates.append((method.cost(spec, n_threads), method.name))
    estimates.sort()
    name = estimates[0][1]
    reason = "lowest estimated time (" + ", ".join(
        f"{n}: {t * 1e3:.3g} ms" for t, n in estimates
    ) + ")"
    if skipped:
        reason += f"; over working_memory: {', '.join(skipped)}"
    return name, reason
