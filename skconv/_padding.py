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

from ._validation import check_pair, is_int

PAD_MODES = ("constant", "reflect", "symmetric", "edge", "wrap")
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
            rows = check_pair(tuple(padding[0]), "padding (top, bottom)", minimum=0)
            cols = check_pair(tuple(padding[1]), "padding (left, right)", minimum=0)
            return rows, cols
        rows, cols = check_pair(tuple(padding), "padding (rows, columns)", minimum=0)
        return (rows, rows), (cols, cols)
    if is_int(padding):
        if padding < 0:
            raise ValueError(f"padding must be >= 0; got {padding!r}.")
        return (int(padding),) * 2, (int(padding),) * 2
    raise TypeError(
        f"padding must be one of {PADDING_NAMES}, an int, a pair (rows, columns) "
        f"or ((top, bottom), (left, right)) of ints >= 0; got {padding!r}."
    )


def needs_copy(plan, images):
    """True when the strategies cannot read ``images`` as they are."""
    return (
        plan.depthwise
        or plan.pad != NO_PADDING
        or images.dtype != plan.dtype
        or not images.flags.c_contiguous
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


def prepare_chunk(chunk, plan):
    """Cast, pad and lay out one chunk as C-contiguous (n, H, W, C)."""
    if chunk.ndim == 3:
        chunk = chunk[..., None]
    if plan.depthwise:
        # channels become images: (n, h, w, c) -> (n, c, h, w) -> (n*c, h, w, 1)
        chunk = chunk.transpose(0, 3, 1, 2)[..., None]
    (top, bottom), (left, right) = plan.pad
    if plan.pad == NO_PADDING:
        x = np.ascontiguousarray(chunk, dtype=plan.dtype)
    elif plan.pad_mode == "constant":
        shape = chunk.shape[:-3] + (
            chunk.shape[-3] + top + bottom,
            chunk.shape[-2] + left + right,
            chunk.shape[-1],
        )
        x = np.zeros(shape, plan.dtype)
        x[..., top : top + chunk.shape[-3], left : left + chunk.shape[-2], :] = chunk
    else:
        widths = [(0, 0)] * (chunk.ndim - 3) + [(top, bottom), (left, right), (0, 0)]
        x = np.ascontiguousarray(
            np.pad(chunk.astype(plan.dtype, copy=False), widths, mode=plan.pad_mode)
        )
    if plan.depthwise:
        x = x.reshape((-1,) + x.shape[-3:])
    return x
