"""Padding: the pad widths of every ``padding`` spec, and each chunk's padded copy.

``pad_widths`` turns ``"valid"``, ``"same"``, ``"full"``, an int, a pair
(rows, columns) or per-side ((top, bottom), (left, right)) into pixel counts,
given the filters' span; ``PAD_MODES`` are :func:`numpy.pad`'s modes conv2d
accepts.  ``prepare_chunk`` makes what every strategy reads: one chunk of
images cast to the computation dtype, padded, channels-last and C-contiguous
(depthwise channels becoming images of their own).

Examples
--------
>>> from skconv._padding import pad_widths
>>> pad_widths("same", 4, 3)  # an even filter: the extra pixel at the bottom
((1, 2), (1, 1))
>>> pad_widths("same", 4, 3, flip=True)  # a true convolution: at the top
((2, 1), (1, 1))
>>> pad_widths(((0, 1), (2, 3)), 3, 3)
((0, 1), (2, 3))
"""

import numpy as np

from ._buffers import copy_runs, workspace
from ._validation import check_pair, is_int

PAD_MODES = ("constant", "reflect", "symmetric", "edge", "wrap")
# Largest stride, dilation or padding accepted: anything larger cannot be an
# offset in bytes (the largest array index is intp's maximum).
MAX_EXTENT = int(np.iinfo(np.intp).max // 8)
PADDING_NAMES = ("valid", "same", "full")
NO_PADDING = ((0, 0), (0, 0))


def pad_widths(padding, span_h, span_w, flip=False):
    """((top, bottom), (left, right)) for a padding spec and the filters' spans.

    ``span`` is the effective filter size along an axis, ``dilation*(p-1)+1``.
    "same" splits ``span-1`` with the extra pixel at the bottom/right, as
    ``torch.nn.functional.conv2d(padding="same")`` and
    ``scipy.signal.correlate2d(mode="same")`` do for even filters; flipped
    filters mirror that (extra pixel top/left), as
    ``scipy.signal.convolve2d(mode="same")`` does.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return NO_PADDING
        if padding == "same":
            th, tw = (span_h - 1) // 2, (span_w - 1) // 2
            if flip:
                return (span_h - 1 - th, th), (span_w - 1 - tw, tw)
            return (th, span_h - 1 - th), (tw, span_w - 1 - tw)
        if padding == "full":
            return (span_h - 1, span_h - 1), (span_w - 1, span_w - 1)
        raise ValueError(
            f"padding must be one of {PADDING_NAMES}, an int, a pair (rows, "
            f"columns) or ((top, bottom), (left, right)); got {padding!r}."
        )
    if isinstance(padding, (tuple, list)) and len(padding) == 2:
        if all(isinstance(side, (tuple, list)) for side in padding):
            rows = check_pair(
                tuple(padding[0]), "padding (top, bottom)", minimum=0, maximum=MAX_EXTENT
            )
            cols = check_pair(
                tuple(padding[1]), "padding (left, right)", minimum=0, maximum=MAX_EXTENT
            )
            return rows, cols
        rows, cols = check_pair(
            tuple(padding), "padding (rows, columns)", minimum=0, maximum=MAX_EXTENT
        )
        return (rows, rows), (cols, cols)
    if is_int(padding):
        if not 0 <= padding <= MAX_EXTENT:
            raise ValueError(f"padding must be in [0, {MAX_EXTENT}]; got {padding!r}.")
        return (int(padding),) * 2, (int(padding),) * 2
    raise TypeError(
        f"padding must be one of {PADDING_NAMES}, an int, a pair (rows, columns) "
        f"or ((top, bottom), (left, right)) of ints >= 0; got {padding!r}."
    )


def needs_copy(plan, images):
    """True when the strategies cannot read ``images`` as they are.

    float32 chunks may be centred (:func:`centring_offsets`), which copies
    them: their copy is always counted.
    """
    return (
        plan.depthwise
        or plan.pad != NO_PADDING
        or images.dtype != plan.dtype
        or not images.flags.c_contiguous
        or plan.dtype == np.float32
    )


def copy_bytes(plan, images):
    """Bytes of the prepared copy of one input image (0 when none is made)."""
    if not needs_copy(plan, images):
        return 0
    spec = plan.spec
    per_input = spec.n_images // max(images.shape[0], 1)
    copy = spec.height * spec.width * spec.n_channels * spec.itemsize * per_input
    if plan.pad_mode != "constant" and plan.pad != NO_PADDING:
        copy *= 2  # np.pad's own result before the cast/contiguous copy
    return copy


def prepare_chunk(chunk, plan, offsets=None):
    """Cast, pad and lay out one chunk as C-contiguous (n, H, W, C).

    ``offsets`` (from :func:`centring_offsets`), when given, are subtracted
    from every image pixel, per image and channel, in the same pass; padded
    zeros stay zeros (:func:`centring_correction` accounts for them).
    """
    if chunk.ndim == 3:
        chunk = chunk[..., None]
    if plan.depthwise:
        # channels become images: (n, h, w, c) -> (n, c, h, w) -> (n*c, h, w, 1)
        chunk = chunk.transpose(0, 3, 1, 2)[..., None]
    if offsets is not None:
        # (n', C') -> broadcastable against the chunk's (..., h, w, C') layout
        offsets = offsets.reshape(chunk.shape[:-3] + (1, 1, chunk.shape[-1]))
    (top, bottom), (left, right) = plan.pad
    # The copies go to memory this thread keeps between calls
    # (_buffers.workspace): the chunk is dead before the next one is made.
    if plan.pad == NO_PADDING:
        if offsets is None and chunk.dtype == plan.dtype and chunk.flags.c_contiguous:
            x = chunk
        else:
            (x,) = workspace("chunk", [(chunk.shape, plan.dtype)])
            if offsets is None:
                np.copyto(x, chunk, casting="unsafe")  # integer and bool images too
            else:
                np.subtract(chunk, offsets, out=x)
    elif plan.pad_mode == "constant":
        height, width = chunk.shape[-3:-1]
        shape = chunk.shape[:-3] + (top + height + bottom, left + width + right, chunk.shape[-1])
        (x,) = workspace("chunk", [(shape, plan.dtype)])
        x[..., :top, :, :] = 0
        x[..., top + height :, :, :] = 0
        x[..., top : top + height, :left, :] = 0
        x[..., top : top + height, left + width :, :] = 0
        inside = x[..., top : top + height, left : left + width, :]
        if offsets is None:
            # rows of pixels (with their channels) moved whole
            rows = inside.shape[:-2] + (inside.shape[-2] * inside.shape[-1],)
            if chunk.dtype == x.dtype and chunk.strides[-2:] == inside.strides[-2:]:
                copy_runs(inside.reshape(rows), chunk.reshape(rows))
            else:
                inside[...] = chunk
        else:
            np.subtract(chunk, offsets, out=inside)
    else:
        # These modes copy pixels, so pad(x - c) == pad(x) - c: centre first.
        chunk = chunk.astype(plan.dtype, copy=False) if offsets is None else chunk - offsets
        widths = [(0, 0)] * (chunk.ndim - 3) + [(top, bottom), (left, right), (0, 0)]
        x = np.ascontiguousarray(np.pad(chunk, widths, mode=plan.pad_mode))
    if plan.depthwise:
        x = x.reshape((-1,) + x.shape[-3:])
    return x


# --- float32 centring ---------------------------------------------------------
#
# A float32 sum of products rounds every partial sum to ~eps times its size.
# Images far from zero (1e5 + [0, 1)) make the partial sums ~1e5 * sum|f| while
# a zero-sum filter cancels the offset: the result is then all rounding, and
# how much of it survives depends on the order of the sum (different in every
# strategy and BLAS kernel).  Correlation is linear, so subtracting an offset c
# from an image and adding back c times the filter's response to the image's
# all-ones mask is exact in real arithmetic; in float32 the sums then only
# see the image's spread.  This is the shifted-data trick for sums of squares
# (Chan, Golub and LeVeque, "Algorithms for computing the sample variance",
# The American Statistician 37(3), 1983), applied to a linear map.

CENTRE_RATIO = 2.0
"""An image (channel) is centred when |its mid-range| > CENTRE_RATIO x its half-range.

Below that, the offset cannot dominate the rounding of the sums (at most a
factor ``CENTRE_RATIO + 1``), and typical data ([0, 1] or standardised
images, mid-range at most the half-range) skips the extra passes: the
centred copy and a pass over the output (measured 10-40% of a call).
"""

CENTRE_LIMIT = 2.0**102
"""Offsets larger than this (~5e30) are not taken off.

The offset comes from a sample of pixels, so a pixel it did not see may lie
on the other side, up to float32's largest value (just under 2**128): ``x -
c`` could overflow where the convolution itself does not.  With ``|c|`` at
most 2**102, ``|x - c|`` stays below 2**127 + 2**102 when ``|x| < 2**127``,
and above that ``c`` is less than half a unit in the last place of ``x``
(2**104), so ``x - c`` rounds to a float32 neighbour of ``x``, never to
infinity.
"""


def centring_offsets(chunk, plan):
    """Per-image, per-channel offsets to subtract from a float32 chunk, or None.

    Returns None for float64 computations (results stay bit-identical) and
    when no image of the chunk is offset enough to matter; otherwise an
    (n', C') float32 array for the chunk as the strategies see it (n' images,
    C' channels; depthwise channels are images of their own), zero for the
    images that are not centred.  The offset is the mid-range (of a sample of
    rows), which minimises the largest centred pixel.
    """
    if plan.dtype != np.float32 or chunk.size == 0:
        return None
    # The decision and the offset need not be exact (any offset is exact
    # algebra; a near-mid one is all accuracy asks), so a grid of about
    # 4x4 pixels of every image is read.  Laid out pixel-major, the per-image
    # minimum and maximum are elementwise reductions across that grid:
    # per-image reductions over an image's own axes run at a fraction of
    # memory speed (on 5000 images of 8x8 they cost more than the operator
    # product itself).
    grid = chunk[:, :: max(1, chunk.shape[1] // 4), :: max(1, chunk.shape[2] // 4)]
    n = grid.shape[0]
    # one gathering copy, straight into pixel-major order (a reshape of the
    # strided grid first would copy once more)
    pixels = np.empty(grid.shape[1:3] + (n,) + grid.shape[3:], grid.dtype)
    np.copyto(pixels, np.moveaxis(grid, 0, 2))
    pixels = pixels.reshape((-1,) + pixels.shape[2:])
    low = pixels.min(axis=0).astype(np.float64)
    high = pixels.max(axis=0).astype(np.float64)
    mid, half = (low + high) / 2, (high - low) / 2
    centre = (np.abs(mid) > CENTRE_RATIO * half) & (np.abs(mid) <= CENTRE_LIMIT)
    if not centre.any():
        return None
    offsets = np.where(centre, mid, 0.0).astype(np.float32)
    return offsets.reshape(-1, plan.spec.n_channels)


def _mask_runs(size, before, span_taps, stride, dilation, n_out):
    """Runs of output rows (or columns) whose taps see the same part of the image.

    Tap u of output row i reads padded row ``i*stride + u*dilation``; it is
    an image row when ``before <= row < before + size``.  Consecutive output
    rows with the same pattern form one run (the interior is one run).

    Returns
    -------
    starts : ndarray of shape (n_runs + 1,)
        Run r covers output rows ``starts[r]:starts[r + 1]``.
    patterns : ndarray of shape (n_runs, span_taps)
        1.0 where the tap reads an image pixel, 0.0 where it reads padding.
    """
    rows = np.arange(n_out)[:, None] * stride + np.arange(span_taps) * dilation
    inside = ((rows >= before) & (rows < before + size)).astype(np.float64)
    new = np.ones(n_out, bool)
    new[1:] = (inside[1:] != inside[:-1]).any(axis=1)
    first = np.flatnonzero(new)
    return np.append(first, n_out), inside[first]


def centring_correction(weights, plan):
    """What to add back, per offset, to the maps of centred images.

    Centring an image by c changes map k by c times the correlation of
    filter k with the image's all-ones mask, padded like the image: the
    filter's sum where the window lies inside the image (or for every pixel
    with the modes that pad with copies of pixels), partial sums near
    borders padded with zeros.  That response is constant on runs of output
    rows and columns, so it is kept per (row run, column run), in float64.

    Returns
    -------
    response : ndarray of shape (K, C, n_row_runs, n_col_runs)
    row_counts, col_counts : ndarray of shape (n_row_runs,) and (n_col_runs,)
        Output rows (columns) of every run.
    """
    spec = plan.spec
    (top, _), (left, _) = plan.pad
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    k, p, q, c = weights.shape
    if plan.pad_mode == "constant":
        height, width = spec.height - sum(plan.pad[0]), spec.width - sum(plan.pad[1])
        row_starts, rows = _mask_runs(height, top, p, sh, dh, spec.out_height)
        col_starts, cols = _mask_runs(width, left, q, sw, dw, spec.out_width)
    else:  # every tap reads an image pixel or a copy of one
        row_starts, rows = np.array([0, spec.out_height]), np.ones((1, p))
        col_starts, cols = np.array([0, spec.out_width]), np.ones((1, q))
    w = weights.astype(np.float64)
    # response[k, c, a, b] = sum_uv rows[a, u] w[k, u, v, c] cols[b, v], as two
    # tensordots (einsum's path search alone took ~40 us a call)
    by_rows = np.tensordot(rows, w, axes=(1, 1))  # (a, k, v, c)
    response = np.tensordot(by_rows, cols, axes=(2, 1)).transpose(1, 2, 0, 3)
    return np.ascontiguousarray(response), np.diff(row_starts), np.diff(col_starts)


# add_back's temporaries: the response maps of a block of filters, and the
# shifts of a group of images for them (small enough to stay in cache).
_RESPONSE_BYTES = 4 * 2**20
_SHIFT_BYTES = 2**20


def add_back(maps, offsets, correction):
    """``maps`` (n', K, out_h, out_w) of centred images += offsets x response, in place.

    One pass over ``maps`` (any strides: the fused transform's maps may be
    stored in a strategy's own order).  The shifts are computed in
    float64 and rounded once to float32 when the response is one value per
    map (no zero padding) or the images have channels (their shares could
    cancel).  Otherwise, the product of the float32 offset and response
    rounds twice: an ulp or two of the shift, which is the offset's share of
    the result, so no more than the rounding of the result itself.

    When few images of the block are centred (random [0, 1) images are, now
    and then, by the sample's chance), only their maps are gathered, shifted
    and written back, instead of a pass over all of them.
    """
    centred = np.flatnonzero(offsets.any(axis=1))
    if 3 * centred.size < offsets.shape[0]:
        few = maps[centred]
        _add_back_all(few, offsets[centred], correction)
        maps[centred] = few
    else:
        _add_back_all(maps, offsets, correction)


def _add_back_all(maps, offsets, correction):
    response, row_counts, col_counts = correction
    n, k, oh, ow = maps.shape
    c, size = offsets.shape[1], oh * ow
    if response.shape[2:] == (1, 1):  # one value per map
        shift = offsets.astype(np.float64) @ response[:, :, 0, 0].T  # (n', K)
        np.add(maps, shift[:, :, None, None].astype(maps.dtype), out=maps)
        return
    step = max(1, min(k, _RESPONSE_BYTES // (c * size * 8)))
    for f0 in range(0, k, step):
        f1 = min(k, f0 + step)
        full = np.repeat(np.repeat(response[f0:f1], row_counts, axis=2), col_counts, axis=3)
        full = full.transpose(1, 0, 2, 3).reshape(c, (f1 - f0) * size)
        if c == 1:
            full = full.astype(maps.dtype)
        group = max(1, min(n, _SHIFT_BYTES // ((f1 - f0) * size * maps.itemsize)))
        tmp = np.empty((group, (f1 - f0) * size), maps.dtype)
        for s in range(0, n, group):
            g = min(group, n - s)
            if c == 1:  # (g, 1) x (1, L): a broadcast multiply, not a BLAS call
                np.multiply(offsets[s : s + g], full, out=tmp[:g])
            else:
                np.copyto(tmp[:g], offsets[s : s + g].astype(np.float64) @ full)
            target = maps[s : s + g, f0:f1]
            np.add(target, tmp[:g].reshape(target.shape), out=target)
