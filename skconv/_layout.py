"""The transformer's column layout, and the work that fills it chunk by chunk.

A row of ``X`` is one image, flattened with its channels last or first
(``channel_axis``).  The layout says how a row is read as an image, which
filters run together (one size group per filter shape), and which output
columns each group's maps go to; the work
runs conv2d -> activation -> pooling on chunks of rows and writes each
chunk's features into its slice of a preallocated output.  Nothing here
knows about scikit-learn: the transformer passes in its parameters.
"""

import math
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np

from ._activation import rectify
from ._conv import conv2d, plan_conv2d
from ._fused import blas_limit, plan_fused, run_fused
from ._pooling import pooled_shape
from ._validation import contextual, is_int

FEATURE_PREFIX = "conv"

# --- rows as images ----------------------------------------------------------


def check_rows(ndim, shape):
    """Raise unless X is 2-D, with a hint on how to reshape images into rows."""
    if ndim == 2:
        return
    if ndim < 2:
        hint = (
            "Reshape your data: for a single image use X.reshape(1, -1)"
            if ndim == 1
            else "Reshape your data to (n_samples, n_features)"
        )
    else:
        image = ", ".join(("h", "w", "c")[: ndim - 1]) if ndim <= 4 else "..."
        hint = (
            "Reshape your data: flatten each image into a row with "
            f"X.reshape(len(X), -1) and pass image_shape=({image})"
        )
    raise ValueError(
        "X must be 2-D (n_samples, n_features) with one flattened image per row; "
        f"got a {ndim}-D array of shape {shape}: {hint}."
    )


CHANNEL_AXES = (-1, 0, None)


def image_shape(n_features, given, channel_axis=-1):
    """The shape each row of ``n_features`` is read as, axes in the row's order.

    2-D ``(h, w)``, or 3-D: ``(h, w, c)`` with ``channel_axis=-1``
    (channels last), ``(c, h, w)`` with ``channel_axis=0`` (channels first,
    e.g. the filter-major output of a previous transformer).  ``given`` None
    reads square images when ``n_features`` is a perfect square and
    1 x n_features strips otherwise (no channel axis, so not with
    ``channel_axis=0``, which needs the number of channels).  Entries of
    ``given`` may be None: one is inferred from ``n_features`` as a -1 in
    :func:`numpy.reshape`, and height and width both None mean square.

    Examples
    --------
    >>> from skconv._layout import image_shape
    >>> image_shape(64, None), image_shape(10, None), image_shape(48, (4, 4, 3))
    ((8, 8), (1, 10), (4, 4, 3))
    >>> image_shape(8 * 14 * 14, (8, None, None), channel_axis=0)
    (8, 14, 14)
    >>> image_shape(8 * 14 * 14, (None, 14, 14), channel_axis=0)
    (8, 14, 14)
    """
    if channel_axis not in CHANNEL_AXES or isinstance(channel_axis, bool):
        raise ValueError(
            "channel_axis must be -1 (channels last), 0 (channels first) or None (no "
            f"channels); got {channel_axis!r}."
        )
    if given is None:
        if channel_axis == 0:
            raise ValueError(
                "channel_axis=0 reads channels-first rows and needs image_shape="
                "(n_channels, height, width) (entries may be None to infer them, e.g. "
                "(n_channels, None, None) for square maps); got image_shape=None."
            )
        side = math.isqrt(n_features)
        return (side, side) if side * side == n_features else (1, n_features)
    if (
        not isinstance(given, (tuple, list))
        or len(given) not in (2, 3)
        or not all(s is None or is_int(s) for s in given)
    ):
        raise TypeError(
            "image_shape must be None, (height, width), (height, width, n_channels) "
            "with channel_axis=-1 or (n_channels, height, width) with channel_axis=0, "
            f"of ints or None; got {given!r}."
        )
    if len(given) == 3 and channel_axis is None:
        raise ValueError(
            f"image_shape={given!r} has a channel axis, but channel_axis=None reads "
            "images without channels; pass channel_axis=-1 (channels last) or 0 "
            "(channels first), or a 2-D image_shape."
        )
    if len(given) == 2 and channel_axis == 0:
        raise ValueError(
            f"channel_axis=0 reads channels-first rows and needs a 3-D image_shape="
            f"(n_channels, height, width); got image_shape={given!r}."
        )
    if any(s is not None and s < 1 for s in given):
        raise ValueError(f"image_shape must hold positive ints (or None); got {given!r}.")
    shape = _infer_shape(n_features, given, channel_axis)
    if math.prod(shape) != n_features:
        product = " * ".join(str(s) for s in shape)
        order = "height * width * n_channels"
        if channel_axis == 0:
            order = "n_channels * height * width"
        raise ValueError(
            f"X has n_features={n_features} per row, but image_shape={given!r} needs "
            f"{product} = {math.prod(shape)} features ({order})."
        )
    return shape


def _infer_shape(n_features, given, channel_axis):
    """``given`` with its None entries inferred (the product is checked by the caller)."""
    shape = [None if s is None else int(s) for s in given]
    unknown = [i for i, s in enumerate(shape) if s is None]
    if not unknown:
        return tuple(shape)
    known = math.prod(s for s in shape if s is not None)
    spatial = (1, 2) if len(shape) == 3 and channel_axis == 0 else (0, 1)
    if len(unknown) == 1:
        shape[unknown[0]] = max(n_features // known, 1)
    elif sorted(unknown) == list(spatial):
        side = math.isqrt(n_features // known)
        shape[spatial[0]] = shape[spatial[1]] = max(side, 1)
    else:
        raise ValueError(
            f"image_shape={given!r} leaves too much to infer: give every size but one, "
            "or the number of channels with height and width None for square images."
        )
    return tuple(shape)


def conv_shape(shape, channel_axis=-1):
    """The (h, w) or channels-last (h, w, c) shape the convolution sees."""
    if len(shape) == 3 and channel_axis == 0:
        c, h, w = shape
        return (h, w, c)
    return tuple(shape)


def channels_last(rows, shape, dtype):
    """Channels-first rows of ``shape`` (c, h, w) as contiguous channels-last rows.

    One pass over the rows, cast to ``dtype`` on the way (the copy a
    channels-first chunk costs before the channels-last convolution).
    """
    c, h, w = shape
    out = np.empty((rows.shape[0], h, w, c), dtype)
    out[...] = rows.reshape(rows.shape[0], c, h, w).transpose(0, 2, 3, 1)
    return out.reshape(rows.shape[0], -1)


def describe_images(n_features, shape, given, channel_axis=-1):
    """Context for errors: how the rows were read."""
    axis = "" if channel_axis == -1 else f", channel_axis={channel_axis!r}"
    return (
        f"X has n_features={n_features}, read as images of shape {shape} "
        f"(image_shape={given!r}{axis})"
    )


def training_images(X, shape, channel_axis=-1):
    """The rows as (n, h, w) float images, channels folded into separate images.

    Channels-first rows (``channel_axis=0``: e.g. the maps of a previous
    transformer) fold into n * c images without a copy.
    """
    if X.dtype.kind != "f":
        X = X.astype(np.float64)
    images = X.reshape((X.shape[0],) + tuple(shape))
    if images.ndim == 4:
        if channel_axis == 0:
            return images.reshape(-1, shape[1], shape[2])
        h, w, c = shape
        images = np.moveaxis(images, -1, 1).reshape(-1, h, w)
    return images


def size_groups(banks):
    """Consecutive banks with the same filter shape, stacked into one array each."""
    groups = [banks[0]]
    for bank in banks[1:]:
        if bank.shape[1:] == groups[-1].shape[1:]:
            groups[-1] = np.concatenate([groups[-1], bank])
        else:
            groups.append(bank)
    return groups


# --- the layout --------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """One size group of filters and where its features go in the output."""

    filters: np.ndarray  # (K, p, q) or (K, p, q, c), float64
    first_filter: int  # global number of the group's first filter
    add_channel_axis: bool  # 4-D filters on images without a channel axis
    n_channels: int  # channels each filter is applied to depthwise (0: none)
    n_maps: int  # maps after activation (split doubles them)
    conv_shape: tuple  # (out_h, out_w) of conv2d
    out_shape: tuple  # (rows, columns) after pooling
    start: int  # first output column
    stop: int  # one past the last output column


@dataclass(frozen=True)
class Layout:
    """Everything the work needs: image shape, dtype, groups and the parameters."""

    image_shape: tuple
    dtype: np.dtype
    groups: tuple
    conv: dict  # conv2d's padding, pad_mode, stride, dilation, flip, method
    activation: object  # None or a name of skconv._activation.ACTIVATIONS
    pool: object  # None, or pool2d's size, stride, op and grid

    @property
    def n_features_out(self):
        return self.groups[-1].stop


def plan_layout(filters, shape, dtype, *, conv, activation, pool, context):
    """Check every shape once and place each group's features in the output.

    ``filters`` are the size groups; conv2d's plan checks the convolution
    parameters and pooling's shape function the pooling ones; errors get
    ``context`` (how the rows were read) appended.
    """
    has_channels = len(shape) == 3
    groups = []
    start = first_filter = 0
    for bank in filters:
        add_axis = bank.ndim == 4 and not has_channels
        if add_axis and bank.shape[3] != 1:
            raise ValueError(
                f"filters of shape {bank.shape} have {bank.shape[3]} channels, "
                "but the images have no channel axis; pass image_shape=(height, "
                f"width, {bank.shape[3]}) or (K, p, q) filters ({context})."
            )
        if bank.ndim == 4 and has_channels and bank.shape[3] != shape[2]:
            raise ValueError(
                f"filters of shape {bank.shape} have {bank.shape[3]} channels, "
                f"but the images have {shape[2]} ({context})."
            )
        images_shape = (1,) + tuple(shape) + ((1,) if add_axis else ())
        try:
            plan = plan_conv2d(images_shape, dtype, bank.shape, **conv)
        except (TypeError, ValueError) as exc:
            raise contextual(exc, context) from exc
        _, n_maps, out_h, out_w = plan.out_shape
        n_maps *= 2 if activation == "split" else 1
        out_shape = (out_h, out_w)
        if pool is not None:
            try:
                out_shape = pooled_shape(
                    out_shape, pool["size"], stride=pool["stride"], grid=pool["grid"]
                )
            except (TypeError, ValueError) as exc:
                where = (
                    f"pooling={pool['op']!r}, pool_size={pool['size']!r}, "
                    f"pool_stride={pool['stride']!r}, pool_grid={pool['grid']!r} on "
                    f"maps of {out_h}x{out_w}; {context}"
                )
                raise contextual(exc, where) from exc
        size = n_maps * out_shape[0] * out_shape[1]
        groups.append(
            Group(
                filters=bank,
                first_filter=first_filter,
                add_channel_axis=add_axis,
                n_channels=shape[2] if plan.depthwise else 0,
                n_maps=n_maps,
                conv_shape=(out_h, out_w),
                out_shape=tuple(out_shape),
                start=start,
                stop=start + size,
            )
        )
        start += size
        first_filter += bank.shape[0]
    return Layout(tuple(shape), np.dtype(dtype), tuple(groups), dict(conv), activation, pool)


def feature_names(layout):
    """``conv_f{k}[pos|neg][_ch{c}]_r{i}_c{j}`` for every output column, in order."""
    names = []
    split = layout.activation == "split"
    for g in layout.groups:
        n_filters = g.filters.shape[0]
        rows, cols = g.out_shape
        cells = [f"_r{i}_c{j}" for i in range(rows) for j in range(cols)]
        for m in range(g.n_maps):
            conv_map, sign = (m // 2, ("pos", "neg")[m % 2]) if split else (m, "")
            label = f"{FEATURE_PREFIX}_f{g.first_filter + conv_map % n_filters}{sign}"
            if g.n_channels:
                label += f"_ch{conv_map // n_filters}"
            names.extend(label + cell for cell in cells)
    return names


# --- the work ----------------------------------------------------------------


def chunk_rows(layout, X_dtype, n_features, n_samples, working_memory):
    """Rows per chunk so that the maps before pooling (and the cast copy of the
    rows) fit in ``working_memory`` MiB (the arithmetic of scikit-learn's
    ``get_chunk_n_rows``, with its warning when one row does not fit)."""
    per_row = max(_maps_per_row(g, layout.activation) for g in layout.groups)
    cast = n_features if np.dtype(X_dtype) != layout.dtype else 0
    row_bytes = max(layout.dtype.itemsize * (cast + per_row), 1)
    rows = min(int(working_memory * 2**20 // row_bytes), max(n_samples, 1))
    if rows < 1:
        warnings.warn(
            f"Could not adhere to working_memory config. Currently {working_memory:.0f}MiB, "
            f"{np.ceil(row_bytes * 2**-20):.0f}MiB required.",
            stacklevel=2,
        )
        rows = 1
    return rows


def _maps_per_row(group, activation):
    """Elements of the temporaries one row needs, before pooling."""
    elements = group.filters.shape[0] * max(group.n_channels, 1) * math.prod(group.conv_shape)
    # "split" holds the signed maps and the two rectified halves
    return elements * 3 if activation == "split" else elements


def transform_rows(X, layout, *, n_jobs, working_memory, verbose=0, label="", checked=False):
    """The features of a validated 2-D numpy ``X``, chunk by chunk of rows.

    Without pooling nor "split", conv2d writes each chunk's maps straight
    into the output; otherwise each group runs fused (``_fused.py``:
    conv -> activation -> pooling per cache-sized block of images, planned
    once here for every chunk).  ``working_memory`` (MiB) bounds the maps of
    one chunk and the blocks' temporaries; the caller runs this with
    conv2d's own budget set for its temporaries.  ``checked``: X was
    checked finite (``validate_data``), so the fused blocks skip their check.
    """
    n_samples, n_features = X.shape
    out = np.empty((n_samples, layout.n_features_out), layout.dtype)
    if n_samples == 0:
        return out
    chunk = chunk_rows(layout, X.dtype, n_features, n_samples, working_memory)
    direct = layout.pool is None and layout.activation != "split"
    plans = [
        None
        if direct
        else plan_fused(
            layout.image_shape + ((1,) if group.add_channel_axis else ()),
            layout.dtype,
            group.filters,
            conv=layout.conv,
            activation=layout.activation,
            pool=layout.pool,
            n_jobs=n_jobs,
            budget=working_memory * 2**20,
            max_images=chunk,
        )
        for group in layout.groups
    ]
    start_time = time.perf_counter()
    with blas_limit(plans):  # once, not per chunk
        for start in range(0, n_samples, chunk):
            sl = slice(start, min(start + chunk, n_samples))
            rows = X[sl]
            if direct and rows.dtype != layout.dtype:
                rows = rows.astype(layout.dtype)  # the fused blocks cast their own images
            images = rows.reshape((rows.shape[0],) + layout.image_shape)
            for group, fused in zip(layout.groups, plans, strict=True):
                target = out[sl, group.start : group.stop]
                _transform_group(images, group, layout, n_jobs, target, fused, checked)
            if verbose > 0:
                print(
                    f"[{label}] rows {sl.start}-{sl.stop} of {n_samples} "
                    f"({100 * sl.stop / n_samples:.0f}%), "
                    f"{time.perf_counter() - start_time:.2f} s",
                    file=sys.stderr,
                    flush=True,
                )
    return out


def _transform_group(images, group, layout, n_jobs, target, fused=None, checked=False):
    """Write one group's features of one chunk into ``target`` (rows, cols).

    ``fused`` is the group's ``_fused.FusedPlan``, or None when the maps are
    the features (no pooling, no "split").
    """
    if group.add_channel_axis:
        images = images[..., None]
    n = images.shape[0]
    if fused is not None:
        # Splitting the column axis of a row slice never copies.
        run_fused(
            fused,
            images,
            target.reshape((n, group.n_maps) + group.out_shape),
            check_finite=not checked,
        )
        return
    # The maps are the features: let conv2d write into the output
    # through a view (splitting the column axis never copies).
    maps = target.reshape((n, group.n_maps) + group.conv_shape)
    view = np.may_share_memory(maps, target)
    if not view:
        maps = np.empty_like(maps)
    conv2d(images, group.filters, out=maps, n_jobs=n_jobs, **layout.conv)
    rectify(maps, layout.activation, copy=False)
    if not view:
        target[...] = maps.reshape(n, -1)
