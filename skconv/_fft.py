"""The ``"fft"`` strategy: overlap-save tiles transformed with ``numpy.fft``.

By the correlation theorem, with ``X = rfft2(tile)`` and ``Wf = rfft2(w)``
(the filter zero-padded to the tile), ``irfft2(X * conj(Wf))`` is the
circular cross-correlation of the tile with the filter; on its first
``F - p + 1`` rows and ``G - q + 1`` columns it equals the linear one
(overlap-save: Oppenheim & Schafer, *Discrete-Time Signal Processing*,
sec. 8.7).  The images are cut into tiles of F x G input pixels, so memory
stays bounded on any image size; channels are summed in the frequency
domain.  The work per output pixel grows with log(F * G) instead of p * q,
which is why it wins for large filters and loses for small ones (the cost
model decides, see ``_costmodel.py``).

Details that matter for speed:

* Tile sides are products of 2, 3, 5 and 7 (pocketfft's fast lengths, see
  the ``numpy.fft`` documentation), chosen up to ``FFT_MAX_TILE`` by an
  estimate of the transforms' and products' work.
* Every FFT pass runs along a contiguous axis: pocketfft gathers a strided
  axis line by line (2-3x slower on 28-128 point lines), so the spectra are
  kept transposed, (.., columns' frequencies, rows), with two cheap
  transposing copies between the passes.
* The inverse row pass runs only on the output rows a tile keeps.
* The filters' spectra are computed in float64 once, rounded to the working
  dtype, and kept in the shared ``FilterCache``.
* Stride and dilation go through the polyphase rewriting (Vaidyanathan,
  *Multirate Systems and Filter Banks*, 1993, ch. 4; the "space-to-depth"
  form of strided convolution): with stride (sh, sw) the s*s sub-images
  ``x[a::sh, b::sw]`` become channels and the filter is cut the same way, so
  a stride-1 problem of the output's size is transformed, not the full one.
  Dilation only inserts zero taps into the (transformed) filter.

float32 images are transformed in complex64 with NumPy >= 2 (its FFTs keep
single precision); NumPy 1.x transforms in complex128 whatever the input, and
the spectra are rounded to complex64 between passes, so float32 in still
gives float32 out, at float32 accuracy.  Errors are relative to the norms of
the image and filter, not to each output pixel: an output much smaller than
its neighbours carries their rounding (about 1e-6 of them in float32).
"""

import math
from dataclasses import replace
from functools import cache, lru_cache

import numpy as np

from ._buffers import workspace
from ._cache import CACHE, FilterCache

# Largest tile side: beyond it the tile's spectra leave the L2 cache and the
# extra log factor buys nothing (overlap-save waste at 256 is < 12 % for a
# 31x31 filter).  Larger filters get the smallest fast length that holds them.
FFT_MAX_TILE = 256

# Temporaries of one group of images (spectra, products, inverse results) are
# kept around this size.
FFT_GROUP_BYTES = 4 * 2**20

# The broadcasting products go through the ufunc machinery's buffers
# (measured: 16384 complex items).
_UFUNC_BUFFER_ITEMS = 4 * 8192

# NumPy 2.0 added ``out=`` to numpy.fft and single-precision transforms.
_NUMPY2 = np.lib.NumpyVersion(np.__version__) >= "2.0.0"


# --- polyphase rewriting of stride and dilation ---------------------------------


@lru_cache(maxsize=256)
def _polyphase_geometry(stride, dilation, p, q, out_h, out_w):
    (sh, sw), (dh, dw) = stride, dilation
    rows = sorted({(u * dh) % sh for u in range(p)})
    cols = sorted({(v * dw) % sw for v in range(q)})
    pp = (dh * (p - 1)) // sh + 1
    qq = (dw * (q - 1)) // sw + 1
    phases = tuple((a, b) for a in rows for b in cols)
    return phases, pp, qq, out_h + pp - 1, out_w + qq - 1


def polyphase_geometry(spec):
    """The stride-1 problem equivalent to ``spec``.

    Output (i, j) reads ``x[i*sh + u*dh, j*sw + v*dw]``; writing
    ``u*dh = m*sh + a`` and ``v*dw = l*sw + b`` (0 <= a < sh, 0 <= b < sw),
    that is ``xp[i + m, j + l, phase (a, b)]`` of the sub-images
    ``xp[r, t, (a, b)] = x[r*sh + a, t*sw + b]``.  Phases no tap reads are
    dropped.

    Returns
    -------
    phases : tuple of (int, int)
        The (row, column) phases some tap reads.
    pp, qq : int
        Rows and columns of the sub-filters.
    height, width : int
        Rows and columns of the sub-images.
    """
    return _polyphase_geometry(
        spec.stride, spec.dilation, spec.filter_height, spec.filter_width,
        spec.out_height, spec.out_width,
    )  # fmt: skip


def _is_plain(spec):
    return spec.stride == (1, 1) and spec.dilation == (1, 1)


def _base_spec(spec):
    """The stride-1, dilation-1 problem the transforms run on."""
    if _is_plain(spec):
        return spec
    phases, pp, qq, height, width = polyphase_geometry(spec)
    return replace(
        spec,
        height=height,
        width=width,
        n_channels=len(phases) * spec.n_channels,
        filter_height=pp,
        filter_width=qq,
        stride=(1, 1),
        dilation=(1, 1),
        filter_rank=None,
    )


def _needs_copy(spec):
    """Stride > 1 regroups the pixels; dilation alone only pads the filter."""
    return spec.stride != (1, 1)


def polyphase_filters(w, spec):
    """The sub-filters, of shape (K, pp, qq, n_phases * C)."""
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    phases, pp, qq, _, _ = polyphase_geometry(spec)
    k, p, q, c = w.shape
    index = {ph: i for i, ph in enumerate(phases)}
    wp = np.zeros((k, pp, qq, len(phases), c), w.dtype)
    for u in range(p):
        m, a = divmod(u * dh, sh)
        for v in range(q):
            col, b = divmod(v * dw, sw)
            wp[:, m, col, index[(a, b)]] = w[:, u, v]
    return wp.reshape(k, pp, qq, len(phases) * c)


def polyphase_images(x, spec, out):
    """Fill ``out`` (n, height, width, n_phases * C) with the sub-images of ``x``.

    Zero where a sub-image is shorter than the others (those pixels meet only
    zero taps).
    """
    sh, sw = spec.stride
    phases, _, _, height, width = polyphase_geometry(spec)
    n, _, _, c = x.shape
    out = out.reshape(n, height, width, len(phases), c)
    for i, (a, b) in enumerate(phases):
        src = x[:, a::sh, b::sw]
        rh, rw = min(height, src.shape[1]), min(width, src.shape[2])
        dst = out[:, :, :, i]
        dst[:, :rh, :rw] = src[:, :rh, :rw]
        dst[:, rh:] = 0
        dst[:, :rh, rw:] = 0


def _polyphase_items(spec):
    phases, _, _, height, width = polyphase_geometry(spec)
    return height * width * len(phases) * spec.n_channels


# --- tiles ----------------------------------------------------------------------


@cache
def _fast_lengths(limit):
    """Sorted 2^a 3^b 5^c 7^d up to ``limit``."""
    sizes = {1}
    for prime in (2, 3, 5, 7):
        sizes |= {s * prime**e for s in sizes for e in range(int(math.log(limit, prime)) + 2)}
    return tuple(sorted(s for s in sizes if s <= limit))


def _side_candidates(out, span, max_tile):
    lengths = [f for f in _fast_lengths(max(max_tile, 2 * span)) if f >= span]
    limit = max(max_tile, lengths[0])
    lengths = [f for f in lengths if f <= limit]
    # No tile larger than the first that holds the whole output.
    whole = [f for f in lengths if f - span + 1 >= out]
    return [f for f in lengths if f - span + 1 < out] + whole[:1]


@lru_cache(maxsize=1024)
def fft_tile(
    out_h, out_w, p, q, n_channels, n_filters, max_tile=FFT_MAX_TILE, max_bytes=None, itemsize=4
):
    """(F, G): rows and columns of the tiles, minimising an estimate of the work.

    Per tile: C forward and K inverse real 2-D transforms (about
    2.5 N log2 N real flops for N points) and K*C complex multiply-adds per
    frequency, plus a fixed cost per tile (NumPy calls) in flop units.
    Tiles whose temporaries for one image exceed ``max_bytes`` are avoided
    (the smallest tile is the fallback).
    """
    best = smallest = None
    for fh in _side_candidates(out_h, p, max_tile):
        tiles_h = -(-out_h // (fh - p + 1))
        for fw in _side_candidates(out_w, q, max_tile):
            tiles_w = -(-out_w // (fw - q + 1))
            points = fh * (fw // 2 + 1)
            ffts = 2.5 * fh * fw * math.log2(max(fh * fw, 2)) * (n_channels + n_filters)
            cost = tiles_h * tiles_w * (ffts + 8.0 * points * n_channels * n_filters + 2e4)
            size = _tile_bytes(n_channels, n_filters, p, out_h, fh, fw, itemsize)
            if smallest is None or size < smallest[0]:
                smallest = (size, fh, fw)
            if max_bytes is not None and size > max_bytes:
                continue
            if best is None or cost < best[0]:
                best = (cost, fh, fw)
    best = best or smallest
    return best[1], best[2]


def _geometry(spec):
    """(base problem, F, G)."""
    base = _base_spec(spec)
    fh, fw = fft_tile(
        base.out_height,
        base.out_width,
        base.filter_height,
        base.filter_width,
        base.n_channels,
        base.n_filters,
        FFT_MAX_TILE,
        FFT_GROUP_BYTES,
        spec.itemsize,
    )
    return base, fh, fw


def _buffer_items(c, k, p, out_h, fh, fw):
    """Real items of the per-image buffers: (rows, cols, prod, tmp, back, res)."""
    fr = fw // 2 + 1
    th = min(fh - p + 1, out_h)
    # No transform runs in place: a ufunc whose output overlaps its input
    # copies the input first (numpy.fft's functions are generalised ufuncs).
    return (
        2 * c * fh * fr,  # row spectra, then full spectra
        2 * c * fr * fh,  # row spectra transposed and zero-padded
        2 * k * fr * fh,  # channel sums of the products
        2 * k * fr * fh,  # one channel's product, then the column inverse
        2 * k * th * fr,  # kept rows of the column inverse, transposed back
        k * th * fw,  # inverse rows
    )


def _tile_bytes(c, k, p, out_h, fh, fw, itemsize):
    """Bytes of the temporaries of one image's tile."""
    size = sum(_buffer_items(c, k, p, out_h, fh, fw)) * itemsize
    if not _NUMPY2:
        size += _numpy1_bytes(c, k, p, out_h, fh, fw, itemsize)
    return size


def _numpy1_bytes(c, k, p, out_h, fh, fw, itemsize):
    """Bytes of NumPy 1.x's own temporaries per image, in its largest pass.

    Without ``out=`` every transform returns a new double-precision array,
    after zero-padding its input to n points in the input's dtype and
    copying it to float64/complex128 (numpy/fft/_pocketfft.py of NumPy 1.26).
    """
    fr = fw // 2 + 1
    th = min(fh - p + 1, out_h)
    return max(
        c * fh * fw * (itemsize + 8) + 16 * c * fh * fr,  # rows: padded, float64, result
        16 * c * fr * fh,  # columns: complex128 copy transformed in place
        16 * k * fr * fh,  # column inverse
        k * th * fw * (2 * itemsize + 16 + 8),  # inverse rows: padded, complex128, result
    )


def _per_image_bytes(spec, base, fh, fw):
    c, k = base.n_channels, base.n_filters
    per = _tile_bytes(c, k, base.filter_height, base.out_height, fh, fw, spec.itemsize)
    if _needs_copy(spec):
        per += _polyphase_items(spec) * spec.itemsize
    return per


def _group(spec, n):
    base, fh, fw = _geometry(spec)
    return int(max(1, min(n, FFT_GROUP_BYTES // _per_image_bytes(spec, base, fh, fw))))


def _geometry_key(spec):
    return (spec.height, spec.width, spec.stride, spec.dilation, spec.out_height, spec.out_width)


def _spectra(w, spec, fh, fw):
    """conj(rfft2(filters)) as (K, C, G // 2 + 1, F), computed in float64 (cached)."""
    key = FilterCache.key("fft", w, _geometry_key(spec), (fh, fw))

    def build():
        wp = w if _is_plain(spec) else polyphase_filters(w, spec)
        # Computed in float64 and rounded once: the filters' rounding error
        # does not add to the transforms'.
        # times fh * fw: the images' forward transforms are scaled by 1 / (fh * fw)
        full = np.fft.rfft2(wp.astype(np.float64), s=(fh, fw), axes=(1, 2)) * (fh * fw)
        return np.ascontiguousarray(
            np.conj(full).transpose(0, 3, 2, 1), dtype=np.result_type(w.dtype, np.complex64)
        )

    return CACHE.get(key, build)


# --- numpy.fft with and without out= --------------------------------------------


def _rfft_forward(a, n, axis, **kwargs):
    """rfft scaled by 1/n (``norm="forward"``); the filter spectra carry the factor n.

    Unscaled, numpy.fft passes its scale factor to the transform's ufunc as
    a Python int, and NumPy 2.x then picks the double-precision loop for
    single-precision data (a complex128 copy of the input and of the result,
    4x the output's memory, then rounded back); scaled, the factor has the
    data's precision and the single-precision loop runs.  The inverse
    transforms are scaled by default.
    """
    return np.fft.rfft(a, n=n, axis=axis, norm="forward", **kwargs)


def _fft_forward(a, n, axis, **kwargs):
    """fft scaled by 1/n (see :func:`_rfft_forward`)."""
    return np.fft.fft(a, n=n, axis=axis, norm="forward", **kwargs)


def _transform(func, a, n, out):
    """``out[...] = func(a, n=n, axis=-1)``, in place with NumPy >= 2."""
    if _NUMPY2:
        func(a, n=n, axis=-1, out=out)
    else:
        out[...] = func(a, n=n, axis=-1)


def fft_run(x, w, spec, out):
    """Fill ``out`` with the correlation of ``x`` and ``w`` (the strategy contract)."""
    n = x.shape[0]
    base, fh, fw = _geometry(spec)
    c, k = base.n_channels, base.n_filters
    p, q = base.filter_height, base.filter_width
    oh, ow = base.out_height, base.out_width
    th, tw = min(fh - p + 1, oh), min(fw - q + 1, ow)  # outputs kept per tile
    fr = fw // 2 + 1
    wf = _spectra(w, spec, fh, fw)  # (K, C, fr, fh)
    group = _group(spec, n)
    cdt = wf.dtype
    copy = _needs_copy(spec)
    shapes = [(group, c, fh, fr), (group, c, fr, fh), (group, k, fr, fh), (group, k, fr, fh)]
    shapes += [(group, k, th, fr)]
    real = [(group, k, th, fw)] + ([(group, base.height, base.width, c)] if copy else [])
    rows_buf, cols_buf, prod_buf, tmp_buf, back_buf, res_buf, *sub_buf = workspace(
        "strategy", [(shape, cdt) for shape in shapes] + [(shape, x.dtype) for shape in real]
    )
    for s in range(0, n, group):
        g = min(group, n - s)
        if copy:
            xs = sub_buf[0][:g]
            polyphase_images(x[s : s + g], spec, xs)
        else:
            xs = x[s : s + g]
        rows, cols, prod, tmp = rows_buf[:g], cols_buf[:g], prod_buf[:g], tmp_buf[:g]
        spectra = rows.reshape(g, c, fr, fh)  # the row spectra's buffer, reused
        for r0 in range(0, oh, th):
            rh = min(th, oh - r0)
            for c0 in range(0, ow, tw):
                cw = min(tw, ow - c0)
                tile = xs[:, r0 : r0 + fh, c0 : c0 + fw].transpose(0, 3, 1, 2)
                height = tile.shape[2]
                # rows: zero-padded to G points by n=
                _transform(_rfft_forward, tile, fw, rows[:, :, :height])
                np.copyto(cols[..., :height], rows[:, :, :height].transpose(0, 1, 3, 2))
                cols[..., height:] = 0
                _transform(_fft_forward, cols, fh, spectra)
                np.multiply(spectra[:, None, 0], wf[None, :, 0], out=prod)
                for ch in range(1, c):
                    np.multiply(spectra[:, None, ch], wf[None, :, ch], out=tmp)
                    prod += tmp
                _transform(np.fft.ifft, prod, fh, tmp)
                back = back_buf[:g, :, :rh]
                np.copyto(back, tmp[..., :rh].transpose(0, 1, 3, 2))
                res = res_buf[:g, :, :rh]
                _transform(np.fft.irfft, back, fw, res)
                out[s : s + g, :, r0 : r0 + rh, c0 : c0 + cw] = res[..., :cw]


def fft_workspace(spec, n):
    """Bytes of the temporaries of a chunk of ``n`` images (an upper bound)."""
    base, fh, fw = _geometry(spec)
    per = _per_image_bytes(spec, base, fh, fw)
    return _group(spec, n) * per + _UFUNC_BUFFER_ITEMS * spec.itemsize


def fft_fixed(spec):
    """Bytes of the cached filter spectra (and, while they are built, the sub-filters)."""
    base, fh, fw = _geometry(spec)
    k, c = base.n_filters, base.n_channels
    items = 2 * k * c * fh * (fw // 2 + 1)
    if not _is_plain(spec):
        items += k * base.filter_height * base.filter_width * c
    return items * spec.itemsize


def fft_features(spec):
    """The counts the cost model weighs (see ``_costmodel.FEATURES``).

    flops
        The transforms' real flops: 2.5 N log2 N per real transform of N
        points, 5 N log2 N per complex one (the usual split-radix counts, as
        in Frigo & Johnson, "The Design and Implementation of FFTW3", 2005).
    pack
        Complex multiply-adds of the frequency-domain channel sums (K * C per
        frequency and tile): the products' ufunc loops stream these operands.
    bytes
        Bytes the transposing copies, the polyphase copy and the copy into
        the result move.
    calls
        NumPy calls: about 9 + 2C per tile and group of images.
    """
    base, fh, fw = _geometry(spec)
    n = spec.n_images
    k, c = base.n_filters, base.n_channels
    p, q = base.filter_height, base.filter_width
    fr = fw // 2 + 1
    th, tw = min(fh - p + 1, base.out_height), min(fw - q + 1, base.out_width)
    tiles = -(-base.out_height // th) * -(-base.out_width // tw)
    forward = c * (2.5 * fh * fw * math.log2(max(fw, 2)) + 5.0 * fr * fh * math.log2(max(fh, 2)))
    inverse = k * (5.0 * fr * fh * math.log2(max(fh, 2)) + 2.5 * th * fw * math.log2(max(fw, 2)))
    moved = 2 * (2 * c * fh * fr) + 2 * (2 * k * th * fr) + 2 * k * th * tw
    items = n * tiles * moved
    groups = -(-n // _group(spec, n)) if n else 0
    calls = groups * tiles * (9 + 2 * c)
    if _needs_copy(spec):
        items += 2 * n * _polyphase_items(spec)
        calls += groups * 3 * len(polyphase_geometry(spec)[0])
    return {
        "flops": float(n * tiles * (forward + inverse)),
        "pack": float(n * tiles * k * c * fh * fr),
        "bytes": float(items * spec.itemsize),
        "calls": float(calls),
    }
