"""The plan of a conv2d call: every decision made before the images are touched.

:func:`plan_conv2d` validates the arguments that shapes alone decide and
derives the padding, the output shape and dtype, and the ``ConvSpec`` each
strategy sees; callers that need only shapes (the transformer's layout) stop
there.  :func:`decide` then makes the one choice that needs the filters
themselves: which strategy runs (for ``method="auto"``, the cost model's pick,
knowing the filters' numerical rank and the threads) and how it uses the
cores.  ``conv2d`` runs exactly what ``decide`` returns, and
``skconv.explain_conv2d`` shows it.

Examples
--------
>>> import numpy as np
>>> from skconv._plan import plan_conv2d
>>> plan = plan_conv2d((10, 28, 28), np.float32, (8, 5, 5), padding="same", stride=2)
>>> plan.out_shape, plan.pad
((10, 8, 14, 14), ((2, 2), (2, 2)))
"""

import math
import os
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from ._costmodel import candidates, rows_choice
from ._padding import MAX_EXTENT, PAD_MODES, pad_widths
from ._strategies import METHODS, filter_rank
from ._validation import check_option, check_pair, float_dtype


@dataclass(frozen=True)
class ConvSpec:
    """Shape of one convolution problem, after padding (all sizes in pixels).

    ``n_images`` is the batch size of the whole call; strategies are run on
    chunks of it.  ``filter_rank`` is the largest numerical rank of the
    filters (see ``_strategies.filter_rank``) once they are known, None
    before (the cost model then assumes full rank).
    ``maps_in_strategy_order`` is True when the caller takes the maps in
    the strategy's own memory order (``Strategy.out_order``), as the fused
    transform does: a strategy that would copy its result into C order
    then neither does nor is priced for it.
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
    filter_rank: int | None = None
    maps_in_strategy_order: bool = False

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


@dataclass(frozen=True)
class Plan:
    """What a conv2d call will compute; built by :func:`plan_conv2d`.

    Attributes
    ----------
    out_shape : tuple
        Shape of the result.
    dtype : numpy.dtype
        dtype of the result (and of the computation).
    pad : tuple
        ((top, bottom), (left, right)) padding in pixels.
    pad_mode : str
        How padded pixels are filled (:func:`numpy.pad`'s mode).
    depthwise : bool
        True when 2-D filters are applied to each channel of c-channel images.
    squeeze : bool
        True for a single 2-D filter (no filter axis in the result).
    spec : ConvSpec
        The problem each strategy sees (for depthwise, images are channels).
    method : str
        The ``method`` asked for: "auto" or a strategy's name.
    """

    out_shape: tuple
    dtype: np.dtype
    pad: tuple
    pad_mode: str
    depthwise: bool
    squeeze: bool
    spec: ConvSpec
    method: str


def plan_conv2d(
    images_shape,
    images_dtype,
    filters_shape,
    *,
    padding="valid",
    pad_mode="constant",
    stride=1,
    dilation=1,
    flip=False,
    method="auto",
):
    """Validate every argument of :func:`conv2d` that shapes alone decide.

    Used by ``conv2d`` itself and by callers that need the output shape before
    they have the images (the transformer's layout).

    Parameters
    ----------
    images_shape : tuple of int
        (n_images, height, width) or (n_images, height, width, n_channels).
    images_dtype : dtype
        The images' dtype (float32 computes in float32, other reals in float64).
    filters_shape : tuple of int
        (p, q), (n_filters, p, q) or (n_filters, p, q, n_channels).
    padding, pad_mode, stride, dilation, flip, method
        As for :func:`conv2d`.

    Returns
    -------
    Plan

    Examples
    --------
    >>> import numpy as np
    >>> from skconv._plan import plan_conv2d
    >>> plan_conv2d((5, 8, 8, 3), np.uint8, (4, 3, 3)).out_shape  # depthwise
    (5, 12, 6, 6)
    """
    images_shape = tuple(int(s) for s in images_shape)
    filters_shape = tuple(int(s) for s in filters_shape)
    dtype = float_dtype(images_dtype, "images")
    if len(images_shape) not in (3, 4):
        raise ValueError(
            "images must be 3-D (n_images, height, width) or 4-D channels-last "
            f"(n_images, height, width, n_channels); got shape {images_shape}."
        )
    n_images, height, width = images_shape[:3]
    n_channels = images_shape[3] if len(images_shape) == 4 else None
    if min(images_shape[1:]) < 1:
        raise ValueError(f"images must have at least one pixel; got shape {images_shape}.")

    if len(filters_shape) not in (2, 3, 4):
        raise ValueError(
            "filters must be 2-D (height, width), 3-D (n_filters, height, width) "
            "or 4-D (n_filters, height, width, n_channels); got shape "
            f"{filters_shape}."
        )
    if min(filters_shape) < 1:
        raise ValueError(f"filters must not be empty; got shape {filters_shape}.")
    squeeze = len(filters_shape) == 2
    n_filters = 1 if squeeze else filters_shape[0]
    p, q = filters_shape[-3:-1] if len(filters_shape) == 4 else filters_shape[-2:]
    if len(filters_shape) == 4:
        if n_channels is None:
            raise ValueError(
                f"4-D filters of shape {filters_shape} have {filters_shape[3]} "
                "channels but images are 3-D (no channel axis); pass images as "
                "(n_images, height, width, n_channels) or 2-D/3-D filters."
            )
        if filters_shape[3] != n_channels:
            raise ValueError(
                f"filters have {filters_shape[3]} channels (shape {filters_shape}) "
                f"but images have {n_channels} (shape {images_shape})."
            )
    depthwise = n_channels is not None and len(filters_shape) < 4

    check_option(pad_mode, PAD_MODES, "pad_mode")
    sh, sw = check_pair(stride, "stride", maximum=MAX_EXTENT)
    dh, dw = check_pair(dilation, "dilation", maximum=MAX_EXTENT)
    span_h, span_w = dh * (p - 1) + 1, dw * (q - 1) + 1
    if not isinstance(flip, (bool, np.bool_)):
        raise TypeError(f"flip must be a bool; got {flip!r}.")
    pad = pad_widths(padding, span_h, span_w, bool(flip))
    padded_h, padded_w = height + sum(pad[0]), width + sum(pad[1])
    if span_h > padded_h or span_w > padded_w:
        raise ValueError(
            f"filters of size {p}x{q} (dilation {dh}x{dw}: {span_h}x{span_w} "
            f"pixels) do not fit in the padded images of {padded_h}x{padded_w} "
            f"pixels (images {height}x{width}, padding {padding!r}); use "
            "smaller filters or more padding."
        )
    out_h = (padded_h - span_h) // sh + 1
    out_w = (padded_w - span_w) // sw + 1
    _check_sizes(
        padding,
        (dh, dw),
        (height, width),
        (padded_h, padded_w),
        (out_h, out_w),
        n_channels or 1,
        n_filters * (n_channels if depthwise else 1),
        dtype,
    )

    spec = ConvSpec(
        n_images=n_images * n_channels if depthwise else n_images,
        height=padded_h,
        width=padded_w,
        n_channels=1 if depthwise or n_channels is None else n_channels,
        n_filters=n_filters,
        filter_height=p,
        filter_width=q,
        stride=(sh, sw),
        dilation=(dh, dw),
        out_height=out_h,
        out_width=out_w,
        dtype=dtype,
    )
    if not isinstance(method, str):
        raise TypeError(f"method must be 'auto' or one of {tuple(METHODS)}; got {method!r}.")
    check_option(method, ("auto", *METHODS), "method")
    if method != "auto" and not METHODS[method].supports(spec):
        raise ValueError(
            f"method {method!r} does not support this problem ({spec}); "
            "use method='auto' or 'einsum'."
        )

    maps = n_filters * (n_channels if depthwise else 1)
    if squeeze and not depthwise:
        out_shape = (n_images, out_h, out_w)
    else:
        out_shape = (n_images, maps, out_h, out_w)
    return Plan(out_shape, dtype, pad, pad_mode, depthwise, squeeze, spec, str(method))


def _check_sizes(padding, dilation, size, padded, out, channels, maps, dtype):
    """Refuse padding that makes one padded image or its maps too large for memory.

    conv2d works on at least one image at a time, so a padded image or its
    maps larger than the machine's memory (:func:`_memory_bytes`) can never
    be computed.  Checked before anything is allocated, so that the error
    names the parameter instead of numpy's "Unable to allocate" with an
    internal shape.  With "same" or "full" the padding comes from the
    dilated filters' span: name ``dilation`` too.
    """
    limit = _memory_bytes()
    itemsize = np.dtype(dtype).itemsize
    image_bytes = padded[0] * padded[1] * channels * itemsize
    maps_bytes = out[0] * out[1] * maps * itemsize
    if image_bytes + maps_bytes <= limit:
        return
    cause = f"padding={padding!r}"
    if isinstance(padding, str):
        cause += f" with dilation={dilation!r}"
    raise ValueError(
        f"padding must leave each padded image and its maps within this machine's memory "
        f"({limit / 2**30:.3g} GiB); got {cause}, which pads each {size[0]}x{size[1]} image "
        f"to {padded[0]}x{padded[1]} pixels ({(image_bytes + maps_bytes) / 2**30:.3g} GiB "
        f"for the image and its maps in {np.dtype(dtype)})."
    )


def check_result_memory(plan):
    """Raise MemoryError when conv2d's result and one padded image exceed memory.

    That is the least a call holds at once.  NumPy reserves a larger array
    without complaint (the system commits pages only when written), and the
    call would then be killed by the system half-way instead of failing.
    """
    itemsize = plan.dtype.itemsize
    result_bytes = math.prod(plan.out_shape) * itemsize
    spec = plan.spec
    image_bytes = spec.height * spec.width * spec.n_channels * itemsize
    limit = _memory_bytes()
    if result_bytes + image_bytes > limit:
        raise MemoryError(
            f"conv2d's result of shape {plan.out_shape} in {plan.dtype} needs "
            f"{result_bytes / 2**30:.3g} GiB, more (with one padded image) than this "
            f"machine's {limit / 2**30:.3g} GiB of memory: convolve the images in parts, "
            "or pass out= an array that can hold it (e.g. a numpy.memmap)."
        )


@lru_cache(maxsize=1)
def _memory_bytes():
    """The machine's physical memory in bytes (the largest array size where unknown)."""
    try:
        page, pages = os.sysconf("SC_PAGE_SIZE"), os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        page = pages = -1
    # (sysconf answers -1 where the system does not know)
    return page * pages if page > 0 and pages > 0 else np.iinfo(np.intp).max


@dataclass(frozen=True)
class Conv2DChoice:
    """What conv2d runs for given images and filters, and why.

    Returned by :func:`skconv.explain_conv2d`; ``conv2d`` runs exactly this.

    Attributes
    ----------
    method : str
        The strategy that runs.
    reason : str
        "requested", or the cost model's estimates of the candidates,
        cheapest first (and those left out for ``working_memory``); when an
        unsplit strategy was preferred to a split one estimated faster by
        less than ``SPLIT_MARGIN`` (10 %), the reason says so first.
    split_batch : bool
        True: conv2d's threads (``n_threads`` of them) each work on part of
        the batch, BLAS single-threaded; False: one stream of products runs
        on BLAS's own threads, whatever ``n_jobs``.
    n_threads : int
        Threads ``n_jobs`` gives.
    estimates : dict of str to float
        Estimated seconds of every strategy that supports the problem,
        cheapest first (as conv2d would run each, with these threads).
    over_working_memory : tuple of str
        Strategies ``auto`` left out: their cached filters and the workspace
        of one image per thread exceed scikit-learn's ``working_memory``.
    filter_rank : int or None
        Largest numerical rank of the filters (None for multichannel ones).
    spec : ConvSpec
        The problem the strategy sees.
    """

    method: str
    reason: str
    split_batch: bool
    n_threads: int
    estimates: dict = field(repr=False)
    over_working_memory: tuple
    filter_rank: int | None
    spec: ConvSpec = field(repr=False)

    def __str__(self):
        cores = (
            f"batch split over {self.n_threads} thread(s), single-threaded BLAS"
            if self.split_batch
            else "one stream of products on BLAS's threads"
        )
        return f"{self.method} ({cores}): {self.reason}"


def decide(plan, weights, n_threads, budget):
    """The strategy conv2d runs and how it uses the cores: the one choice.

    Parameters
    ----------
    plan : Plan
    weights : ndarray of shape (K, p, q, C)
        The filters as the strategies get them (their rank matters).
    n_threads : int
        Threads ``n_jobs`` gives.
    budget : float
        scikit-learn's ``working_memory`` in bytes.

    Returns
    -------
    Conv2DChoice
    """
    spec = replace(plan.spec, filter_rank=filter_rank(weights))
    rows = candidates(spec, n_threads, budget)
    if plan.method == "auto":
        name, reason = rows_choice(rows, n_threads)
    else:
        name, reason = plan.method, "requested"
    split = next(s for _, n, s, _ in rows if n == name)
    return Conv2DChoice(
        method=name,
        reason=reason,
        split_batch=split,
        n_threads=n_threads,
        estimates={n: t for t, n, _, _ in rows},
        over_working_memory=tuple(n for _, n, _, fits in rows if not fits),
        filter_rank=spec.filter_rank,
        spec=spec,
    )
