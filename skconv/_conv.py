"""The conv2d driver: validate, plan, decide, then run the strategy chunk by chunk.

A call goes: the arguments are read as arrays (``_validation.py``);
:func:`~skconv._plan.plan_conv2d` checks every shape and derives padding,
output shape and the problem each strategy sees; the filters are checked,
cast and flipped; :func:`~skconv._plan.decide` picks the strategy and the
threading mode once; the batch is cut into chunks whose temporaries fit in
scikit-learn's ``working_memory``; each chunk is padded and cast
(``_padding.py``) and handed to the strategy (``_strategies.py``), on
conv2d's threads or on BLAS's (``_threads.py``).  :func:`explain_conv2d`
stops after the decision and returns it.
"""

import inspect
import warnings

import numpy as np
from sklearn import get_config
from sklearn.utils import gen_even_slices

from ._padding import (
    PAD_MODES,
    PADDING_NAMES,
    add_back,
    centring_correction,
    centring_offsets,
    copy_bytes,
    prepare_chunk,
)
from ._plan import check_result_memory, decide, plan_conv2d
from ._strategies import METHODS
from ._threads import machine_cores, map_threads, n_threads_for, single_threaded_blas
from ._validation import as_real_array, check_finite, check_out

__all__ = ["PAD_MODES", "PADDING_NAMES", "conv2d", "explain_conv2d", "plan_conv2d"]


def conv2d(
    images,
    filters,
    *,
    padding="valid",
    pad_mode="constant",
    stride=1,
    dilation=1,
    flip=False,
    method="auto",
    out=None,
    n_jobs=None,
):
    """Correlate every image of a batch with one or more 2-D filters.

    ``conv2d`` computes what deep-learning libraries call a convolution, a
    cross-correlation without kernel flip, like
    ``torch.nn.functional.conv2d``: for a single filter ``f`` of shape (p, q),
    stride 1, dilation 1 and no padding,
    ``y[i, j, k] == (images[i, j:j+p, k:k+q] * f).sum()``.
    With ``flip=True`` it is a true convolution, like
    ``scipy.signal.convolve2d``.

    Parameters
    ----------
    images : array-like of shape (n_images, height, width) or \
            (n_images, height, width, n_channels)
        The batch, channels-last as in scikit-learn's ``PatchExtractor``.
        float32 images are computed in float32; float64, integer and bool
        images in float64.  Other dtypes (complex, object, strings) raise
        TypeError.  NaN or infinity in the images raises ValueError.
    filters : array-like of shape (p, q), (n_filters, p, q) or \
            (n_filters, p, q, n_channels)
        One filter, a bank of filters, or a bank of multichannel filters.
        A (p, q) or (n_filters, p, q) bank applied to c-channel images works
        on each channel separately (depthwise, like torch's ``groups=c`` with
        each filter repeated per channel): the result has c * n_filters maps,
        channel-major, map ``ch * n_filters + k`` being filter k on channel
        ch.  A (n_filters, p, q, n_channels) bank sums over channels, like
        torch's conv2d.  Filters are cast to the images' dtype and must be
        finite.
    padding : {"valid", "same", "full"}, int, (int, int) or \
            ((int, int), (int, int)), default="valid"
        "valid": no padding.  "same": output as large as the input at stride
        1, the odd pixel of even filters going to the bottom/right (as torch
        and ``scipy.signal.correlate2d(mode="same")``; with ``flip=True``
        at the top/left, as ``scipy.signal.convolve2d(mode="same")``); with
        stride s the same padding is used and the output has
        ceil(height / s) rows.
        "full": every overlap (``correlate2d(mode="full")``).  An int pads
        all sides, (rows, columns) both sides of each axis, and
        ((top, bottom), (left, right)) each side.
    pad_mode : {"constant", "reflect", "symmetric", "edge", "wrap"}, \
            default="constant"
        How padded pixels are filled, with :func:`numpy.pad`'s meaning
        ("constant" pads with zeros).  torch calls them zeros, reflect,
        replicate and circular; ``scipy.signal`` fill, symm and wrap.
    stride : int or (int, int), default=1
        Step between windows along rows and columns.
    dilation : int or (int, int), default=1
        Spacing between filter taps (torch's ``dilation``).
    flip : bool, default=False
        Flip the filters along both spatial axes: true convolution.
    method : {"auto", "einsum", "rowgemm", "rowgemm_wide", "toeplitz", \
            "operator", "separable", "taps", "fft"}, default="auto"
        How to contract.  "auto" picks the fastest strategy by a cost model
        fitted on measurements (:func:`explain_conv2d` says which and why);
        "einsum" is the reference (one ``np.einsum`` over a strided window
        view, no copies); "rowgemm" and "rowgemm_wide" are row-window GEMMs,
        "toeplitz" banded products for one or two filters, "operator" one
        product with a cached whole-image operator for tiny images,
        "separable" two 1-D passes from the filters' SVD, "taps"
        shift-and-add for filters of at most 16 taps, "fft" overlap-save
        tiles with ``numpy.fft`` (large filters).  All methods give the
        same result up to rounding.  Where a result overflows the dtype,
        it is not finite in any of them, but it may be NaN instead of
        infinity: banded and whole-image matrices multiply an overflowed
        partial sum by their zeros, and infinity times zero is NaN.
    out : ndarray, optional
        Where to write the result; it must have exactly the result's shape
        and dtype, be writeable and not overlap ``images`` or ``filters``.
    n_jobs : int, default=None
        Threads to split the batch over, for the strategies that split it
        (BLAS then runs single-threaded inside them); the strategies made of
        a few large products run on BLAS's own threads whatever ``n_jobs``
        is, so cores are never oversubscribed.  None means 1 unless in a
        :func:`joblib.parallel_config` context; -1 means all cores.
        While a batch-splitting strategy runs (with any ``n_jobs``), BLAS is
        limited to one thread process-wide: threadpoolctl has no per-thread
        limit, so other threads' BLAS calls run single-threaded meanwhile.
        Overlapping calls share the limit and the last one to finish
        restores the thread count.  Callers that already run conv2d from
        several threads (a threaded GridSearchCV) should pass n_jobs=1 (or
        None): their threads already use the cores.

    Returns
    -------
    maps : ndarray of shape (n_images, out_height, out_width) or \
            (n_images, n_maps, out_height, out_width)
        The first for a single 2-D filter on images without channels, the
        second otherwise.  ``out`` when it was given.  A batch of 0 images
        gives an empty result of the right shape.

    Notes
    -----
    Memory: the windows are never copied as a whole.  The batch is worked in
    chunks of images whose temporaries (padded copy, strategy workspace) fit
    in scikit-learn's ``working_memory`` (``sklearn.get_config()``, MiB);
    only the result is as large as the batch.

    float32 accuracy: a float32 sum rounds at ~6e-8 of its partial sums, so
    images far from zero (1e5 + [0, 1)) under a filter that sums to about
    zero give results made of rounding, which each summation order (each
    strategy, each BLAS kernel) keeps differently.  Each float32 image (and
    channel) whose mid-range exceeds twice its half-range is therefore
    centred: its offset is subtracted while the chunk is copied and padded,
    and the offset times the filter's response to the image's mask (the
    filter's sum, or partial sums at zero-padded borders) is added back in
    float64 before rounding.  This costs an extra pass over the output of
    those calls only; checking reads a grid of about 4x4 pixels per image
    (15 us, 2% of a call, on 1000 28x28 images; 73 us, a fifth of the call,
    on 5000 8x8 ones).  float64 is never centred.  Measured against torch's float32
    conv2d (single-threaded; largest error over 6 problems, truth in float64;
    images 32x12x12 to 4x36x36; zero-sum rank-1 and rank-2 filters up to
    31x31, filters spanning 8 decades, offsets 0 to 1e5), the largest ratio
    of errors was: einsum 1.2, rowgemm 1.6, rowgemm_wide 1.4, operator 1.8,
    toeplitz 1.9 and ``auto`` 1.9; separable 2.3 (its SVD factors are
    rounded to float32) and fft 2.5, both on images not offset enough to be
    centred (0.25 to 0.5 of their spread) or on full-rank filters spanning 8
    decades.  On centred images every strategy stayed within 1.8.

    Examples
    --------
    >>> import numpy as np
    >>> from skconv import conv2d
    >>> images = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    >>> edge = np.array([[-1.0, 1.0]])
    >>> y = conv2d(images, edge)
    >>> y.shape, y.dtype
    ((2, 4, 3), dtype('float32'))
    >>> print(y[0])
    [[1. 1. 1.]
     [1. 1. 1.]
     [1. 1. 1.]
     [1. 1. 1.]]
    >>> conv2d(images, np.ones((3, 2, 2)), padding="same").shape
    (2, 3, 4, 4)
    """
    images, weights, plan, choice = _setup(
        images,
        filters,
        padding=padding,
        pad_mode=pad_mode,
        stride=stride,
        dilation=dilation,
        flip=flip,
        method=method,
        n_jobs=n_jobs,
    )
    if out is None:
        check_result_memory(plan)
    # Strategies read the filters while they write out (taps writes map 0
    # before reading filter 1): overlapping filters would give wrong maps.
    result = check_out(
        out, plan.out_shape, plan.dtype, images=images, filters=filters, cast_filters=weights
    )
    if images.shape[0] == 0:
        return result
    run_plan(images, weights, plan, choice, result, check_finite=True)
    return result


# conv2d's keyword arguments that explain_conv2d takes, read from its signature
_OPTIONS = tuple(
    name
    for name in inspect.signature(conv2d).parameters
    if name not in ("images", "filters", "out")
)


def explain_conv2d(images, filters, **kwargs):
    """What :func:`conv2d` would run for these images and filters, and why.

    The same validation and the same decision as ``conv2d`` itself (under
    the current ``working_memory`` and ``n_jobs``), without computing
    anything: ``conv2d(images, filters, **kwargs)`` runs exactly the
    strategy and threading mode this returns.

    Parameters
    ----------
    images, filters : array-like
        As for :func:`conv2d` (only their shapes, dtypes and the filters'
        values matter).
    **kwargs
        Any keyword argument of :func:`conv2d` but ``out``.

    Returns
    -------
    choice : Conv2DChoice
        ``method`` (the strategy), ``reason`` ("requested" or the cost
        model's estimates, cheapest first), ``split_batch`` and
        ``n_threads`` (how the cores are used), ``estimates`` (seconds per
        supported strategy), ``over_working_memory`` and ``filter_rank``.

    Examples
    --------
    >>> import numpy as np
    >>> from skconv import explain_conv2d
    >>> images = np.zeros((1000, 28, 28), np.float32)
    >>> choice = explain_conv2d(images, np.ones((8, 5, 5)))
    >>> choice.method in choice.estimates, choice.filter_rank
    (True, 1)
    >>> explain_conv2d(images, np.ones((8, 5, 5)), method="toeplitz").reason
    'requested'
    """
    if "out" in kwargs:
        raise TypeError("explain_conv2d takes no out argument; got out.")
    unknown = sorted(set(kwargs) - set(_OPTIONS))
    if unknown:
        raise TypeError(
            f"explain_conv2d takes the keyword arguments of conv2d but out "
            f"({', '.join(_OPTIONS)}); got {unknown[0]!r}."
        )
    return _setup(images, filters, **kwargs)[3]


def _setup(images, filters, *, n_jobs=None, flip=False, **kwargs):
    """Validated images and filters, the plan and the choice of a call."""
    images = as_real_array(images, "images")
    filters = as_real_array(filters, "filters")
    plan = plan_conv2d(images.shape, images.dtype, filters.shape, flip=flip, **kwargs)
    weights = _prepare_filters(filters, plan, flip)
    n_threads = n_threads_for(n_jobs)
    budget = get_config()["working_memory"] * 2**20
    return images, weights, plan, decide(plan, weights, n_threads, budget)


def run_plan(images, weights, plan, choice, result, check_finite=False):
    """Fill ``result`` with the convolution, running ``choice`` chunk by chunk.

    ``choice`` is what :func:`~skconv._plan.decide` returned, or a variant
    of it (the cost-model sweep times each strategy with ``split_batch``
    forced both ways).  ``check_finite`` first refuses NaN and infinity
    (:func:`_check_finite_images`), under the same BLAS threading as the
    products: its matrix-vector product on BLAS's threads left them
    spinning into the products of conv2d's own threads (20 000 28x28
    images, 8 5x5 filters: 62-67 ms instead of 46 ms).
    """
    # The engine always works on 4-D (n, K, out_h, out_w) output blocks.
    out4 = result[:, None] if plan.squeeze and not plan.depthwise else result
    strategy = METHODS[choice.method]
    spec = choice.spec
    # Either conv2d's threads split the batch, BLAS single-threaded in each,
    # or one stream of products runs on BLAS's own threads.  Which one
    # depends on the problem, not on n_jobs, and so do the chunks: the same
    # products run whatever n_jobs is.
    split = choice.split_batch
    # (the machine's cores, not joblib's view of them: that costs ~50 us a call)
    workers = machine_cores() if split else 1
    chunk = _chunk_size(plan, images, strategy, spec, workers, not out4.flags.c_contiguous)
    n_images = images.shape[0]
    slices = [slice(i, min(i + chunk, n_images)) for i in range(0, n_images, chunk)]

    # float32 images far from zero are centred chunk by chunk (see
    # _padding.centring_offsets); what that takes off is added back here.
    # The correction is built on the first chunk that needs it: most data
    # never does, and on small calls it cost as much as the product.
    correction = []

    def work(sl):
        chunk = images[sl]
        offsets = centring_offsets(chunk, plan)
        x = prepare_chunk(chunk, plan, offsets)
        block = out4[sl]
        if plan.depthwise:
            n, maps = block.shape[:2]
            c = maps // spec.n_filters
            target = block.reshape(n * c, spec.n_filters, spec.out_height, spec.out_width)
        else:
            target = block
        # a caller's non-contiguous out: compute in a buffer, then copy
        buffer = target if block.flags.c_contiguous else np.empty(target.shape, plan.dtype)
        strategy.run(x, weights, spec, buffer)
        if offsets is not None:
            if not correction:  # (threads may both build it: same result)
                correction.append(centring_correction(weights, plan))
            add_back(buffer, offsets, correction[0])
        if buffer is not target:
            block[...] = buffer.reshape(block.shape)

    if not split:
        if check_finite:
            _check_finite_images(images)
        for sl in slices:
            work(sl)
        return
    # The batch-splitting strategies run many small products, timed (and
    # chosen by the cost model) with BLAS on one thread: even on one thread
    # of ours, letting BLAS thread them was measured 2.4x slower (float32
    # W4: 100 64x64 images, 4 15x15 filters).  The limit is process-wide
    # and shared by overlapping calls (see single_threaded_blas).
    with single_threaded_blas():
        if check_finite:
            _check_finite_images(images)
        if choice.n_threads == 1 or len(slices) == 1:
            for sl in slices:
                work(sl)
        else:
            map_threads(work, slices, choice.n_threads)


def _prepare_filters(filters, plan, flip):
    # Checked in the computation's dtype: 1e39 is finite in float64 but not
    # once cast to float32 images' dtype.
    check_finite(filters, "filters", dtype=plan.dtype)
    if filters.ndim == 2:
        filters = filters[None]
    if filters.ndim == 3:
        filters = filters[..., None]
    if flip:
        filters = filters[:, ::-1, ::-1]
    return np.ascontiguousarray(filters, dtype=plan.dtype)


def _check_finite_images(images):
    """Raise on NaN or infinity, at the cost of one read of the batch.

    Fast strategies mix pixels outside each window (a NaN times a zero of the
    whole-image operator is NaN), so non-finite input would spread wrongly
    instead of staying local: refuse it.  A sum is finite exactly when no
    pixel is NaN or infinite, unless it overflowed; only then is the exact,
    memory-hungrier check run, a slice at a time.
    """
    if images.dtype.kind != "f" or images.size == 0:
        return
    with np.errstate(over="ignore", invalid="ignore"):
        if images.flags.c_contiguous and images.dtype in (np.float32, np.float64):
            # Per-image sums as a matrix-vector product: BLAS reads the batch
            # at memory speed, 3x faster than np.sum's pairwise loop (47 vs
            # 15 us on 5000 8x8 float32 images).  NaN and infinity propagate
            # through x * 1 and the additions just the same.
            rows = images.reshape(images.shape[0], -1)
            total = np.sum(rows @ np.ones(rows.shape[1], images.dtype))
        else:
            total = np.sum(images, dtype=images.dtype)
    if np.isfinite(total):
        return
    for sl in gen_even_slices(images.shape[0], max(1, images.size // 2**22)):
        check_finite(images[sl], "images")


def _chunk_size(plan, images, strategy, spec, n_threads, out_buffer):
    """Images per chunk: the most whose temporaries fit in working_memory.

    Temporaries of a chunk: the padded/cast copy, the strategy's workspace
    (not always linear in the chunk: strategies work in cache-sized groups)
    and, for a caller's non-contiguous ``out``, a result buffer; each thread
    has its chunk.  The strategy's cached filters count once.
    """
    n_images = images.shape[0]
    per_input = spec.n_images // max(n_images, 1)
    copy = copy_bytes(plan, images)
    if out_buffer:
        copy += spec.n_filters * spec.out_height * spec.out_width * spec.itemsize * per_input
    fixed = strategy.fixed_bytes(spec)
    budget = (get_config()["working_memory"] * 2**20 - fixed) / n_threads

    def need(m):
        return m * copy + strategy.workspace_bytes(spec, m * per_input)

    if need(1) > budget:
        warnings.warn(
            f"working_memory of {get_config()['working_memory']} MiB is too small "
            f"for one image ({need(1) / 2**20:.1f} MiB of temporaries per image "
            f"and thread, {fixed / 2**20:.1f} MiB of preprocessed filters); "
            "working one image at a time.",
            stacklevel=4,
        )
        return 1
    # need() grows with m: bisect for the largest chunk that fits.
    low, high = 1, n_images
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if need(mid) <= budget else (low, mid - 1)
    # Give every thread work even when the whole batch fits in one chunk.
    return min(low, -(-n_images // n_threads))
