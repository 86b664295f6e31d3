"""conv2d: validation, padding, chunking, threads and dispatch to a method."""

import numbers
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
from joblib import effective_n_jobs
from sklearn import get_config
from sklearn.utils import gen_even_slices

from ._methods import METHODS, ConvSpec, choose_method, filter_rank

PAD_MODES = ("constant", "reflect", "symmetric", "edge", "wrap")
PADDING_NAMES = ("valid", "same", "full")


# --- validation helpers ----------------------------------------------------


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _pair(value, name, minimum=1):
    """Read an int or a pair of ints (each >= minimum) as a pair."""
    if _is_int(value):
        value = (value, value)
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(_is_int(v) for v in value)
    ):
        if min(value) < minimum:
            raise ValueError(
                f"{name} must be >= {minimum} along both axes; got {tuple(value)!r}."
            )
        return int(value[0]), int(value[1])
    raise TypeError(
        f"{name} must be an int or a pair of ints (rows, columns); got {value!r}."
    )


def _check_dtype(dtype, name):
    """The float dtype a computation on arrays of ``dtype`` runs in.

    float32 stays float32; float64, other floats, integers and bools compute
    in float64 (like scikit-learn's ``check_array(dtype=[float64, float32])``).
    """
    kind = np.dtype(dtype).kind
    if kind == "c":
        raise TypeError(
            f"{name} are complex ({dtype}); conv2d takes real numbers: convolve "
            "the real and imaginary parts separately."
        )
    if kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers; got dtype {dtype}.")
    return np.dtype(np.float32) if dtype == np.float32 else np.dtype(np.float64)


def _as_array(value, name):
    if hasattr(value, "nnz") and hasattr(value, "toarray"):
        raise TypeError(
            f"{name} is a sparse matrix; conv2d takes dense arrays (images are "
            "dense: call .toarray() on a chunk of rows first)."
        )
    try:
        return np.asarray(value)
    except Exception as exc:  # e.g. ragged nested lists
        raise TypeError(f"{name} could not be read as an array: {exc}") from exc


def _pad_widths(padding, span_h, span_w, flip=False):
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
            return (0, 0), (0, 0)
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
            rows = _pair(tuple(padding[0]), "padding (top, bottom)", minimum=0)
            cols = _pair(tuple(padding[1]), "padding (left, right)", minimum=0)
            return rows, cols
        rows, cols = _pair(tuple(padding), "padding (rows, columns)", minimum=0)
        return (rows, rows), (cols, cols)
    if _is_int(padding):
        if padding < 0:
            raise ValueError(f"padding must be >= 0; got {padding!r}.")
        return (int(padding),) * 2, (int(padding),) * 2
    raise TypeError(
        f"padding must be one of {PADDING_NAMES}, an int, a pair (rows, columns) "
        f"or ((top, bottom), (left, right)) of ints >= 0; got {padding!r}."
    )


# --- the plan: everything known before any image is touched ---------------


@dataclass(frozen=True)
class Plan:
    """What a conv2d call will do; built by :func:`plan_conv2d`.

    Attributes
    ----------
    out_shape : tuple
        Shape of the result.
    dtype : numpy.dtype
        dtype of the result (and of the computation).
    pad : tuple
        ((top, bottom), (left, right)) padding in pixels.
    depthwise : bool
        True when 2-D filters are applied to each channel of c-channel images.
    spec : ConvSpec
        The problem each strategy sees (for depthwise, images are channels).
    method : str
        The strategy that will run.
    reason : str
        Why that strategy: "requested" or the cost model's estimates.
    """

    out_shape: tuple
    dtype: np.dtype
    pad: tuple
    pad_mode: str
    depthwise: bool
    squeeze: bool
    spec: ConvSpec
    method: str
    reason: str


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
    they have the images (the transformer's ``fit``, the benchmark).
    """
    images_shape = tuple(int(s) for s in images_shape)
    filters_shape = tuple(int(s) for s in filters_shape)
    dtype = _check_dtype(images_dtype, "images")
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

    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {PAD_MODES}; got {pad_mode!r}.")
    sh, sw = _pair(stride, "stride")
    dh, dw = _pair(dilation, "dilation")
    span_h, span_w = dh * (p - 1) + 1, dw * (q - 1) + 1
    if not isinstance(flip, (bool, np.bool_)):
        raise TypeError(f"flip must be a bool; got {flip!r}.")
    pad = _pad_widths(padding, span_h, span_w, bool(flip))
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
    if method == "auto":
        method, reason = choose_method(spec)
    elif method in METHODS:
        if not METHODS[method].supports(spec):
            raise ValueError(
                f"method {method!r} does not support this problem ({spec}); "
                "use method='auto' or 'einsum'."
            )
        reason = "requested"
    else:
        raise ValueError(
            f"method must be 'auto' or one of {sorted(METHODS)}; got {method!r}."
        )

    maps = n_filters * (n_channels if depthwise else 1)
    out_shape = (n_images, out_h, out_w) if squeeze and not depthwise else (
        n_images, maps, out_h, out_w
    )
    return Plan(out_shape, dtype, pad, pad_mode, depthwise, squeeze, spec, method, reason)


# --- threads ---------------------------------------------------------------

_blas_controller = None


def _limit_blas(n_threads):
    """A context that runs BLAS on ``n_threads`` threads.

    conv2d runs BLAS single-threaded while its own threads split the batch:
    OpenBLAS workers spin for ~0.1 s after a multi-threaded call and would
    steal the cores from our threads (NOTES.md section 1, pitfall 1).
    Building a ThreadpoolController inspects every loaded library (~0.3 ms),
    so it is built once and reused.
    """
    global _blas_controller
    if _blas_controller is None:
        from threadpoolctl import ThreadpoolController

        _blas_controller = ThreadpoolController()
    return _blas_controller.limit(limits=n_threads, user_api="blas")


_pool = None
_pool_lock = threading.Lock()


def _map_threads(fn, items, n_threads):
    """``fn`` on every item, on at most ``n_threads`` threads at once.

    The pool is kept between calls: starting threads costs ~0.2 ms, a lot
    next to a 1 ms convolution.
    """
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(_n_threads(-1), thread_name_prefix="skconv")
    # Hand items out in n_threads queues so that no more threads than asked
    # run at once, whatever the pool's size.
    queues = [items[i::n_threads] for i in range(n_threads)]
    futures = [_pool.submit(lambda q=q: [fn(item) for item in q]) for q in queues if q]
    for future in futures:
        future.result()


def _n_threads(n_jobs):
    if n_jobs is not None and not _is_int(n_jobs):
        raise TypeError(f"n_jobs must be None or an int; got {n_jobs!r}.")
    if n_jobs == 0:
        raise ValueError("n_jobs must not be 0; use None, a positive int or -1.")
    if n_jobs == 1:
        return 1
    with warnings.catch_warnings():
        # Inside a dask worker or another daemonic process joblib warns that it
        # falls back to one job, on every call; one thread is the right answer.
        warnings.filterwarnings("ignore", message="Inside a Dask worker")
        warnings.filterwarnings("ignore", message=".*daemonic processes")
        n = effective_n_jobs(n_jobs)
    return max(1, min(n, os.cpu_count() or 1))


# --- conv2d ----------------------------------------------------------------


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
            "operator", "separable", "taps"}, default="auto"
        How to contract.  "auto" picks the fastest strategy by a cost model
        fitted on measurements (see ``skconv/_methods.py`` and the README);
        "einsum" is the reference (one ``np.einsum`` over a strided window
        view, no copies); "rowgemm" and "rowgemm_wide" are row-window GEMMs,
        "toeplitz" banded products for one or two filters, "operator" one
        product with a cached whole-image operator for tiny images,
        "separable" two 1-D passes from the filters' SVD, "taps"
        shift-and-add for filters of at most 16 taps.  All methods give the
        same result up to rounding.
    out : ndarray, optional
        Where to write the result; it must have exactly the result's shape
        and dtype, be writeable and not overlap ``images``.
    n_jobs : int, default=None
        Threads to split the batch over, for the strategies that split it
        (BLAS then runs single-threaded inside them); the strategies made of
        a few large products run on BLAS's own threads whatever ``n_jobs``
        is, so cores are never oversubscribed.  None means 1 unless in a
        :func:`joblib.parallel_config` context; -1 means all cores.

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
    images = _as_array(images, "images")
    filters = _as_array(filters, "filters")
    plan = plan_conv2d(
        images.shape,
        images.dtype,
        filters.shape,
        padding=padding,
        pad_mode=pad_mode,
        stride=stride,
        dilation=dilation,
        flip=flip,
        method=method,
    )
    weights = _prepare_filters(filters, plan, flip)
    result = _prepare_out(out, plan, images)
    n_threads = _n_threads(n_jobs)
    if images.shape[0] == 0:
        return result

    plan = _with_filters(plan, weights, n_threads, auto=method == "auto")

    # The engine always works on 4-D (n, K, out_h, out_w) output blocks.
    out4 = result[:, None] if plan.squeeze and not plan.depthwise else result
    method_obj = METHODS[plan.method]
    spec = plan.spec
    # Either our threads split the batch, BLAS single-threaded in each, or
    # one stream of products runs on BLAS's own threads (strategies made of a
    # few large GEMMs).  Which one depends on the problem, not on n_jobs, and
    # so do the chunks: the same products run whatever n_jobs is.
    split = method_obj.split_batch(spec)
    workers = _n_threads(-1) if split else 1
    chunk = _chunk_size(plan, images, method_obj, workers, not out4.flags.c_contiguous)
    slices = [slice(i, min(i + chunk, images.shape[0])) for i in range(0, images.shape[0], chunk)]
    _check_finite_images(images)

    def work(sl):
        x = _prepare_chunk(images[sl], plan)
        block = out4[sl]
        if plan.depthwise:
            n, maps = block.shape[:2]
            c = maps // spec.n_filters
            target = block.reshape(n * c, spec.n_filters, spec.out_height, spec.out_width)
        else:
            target = block
        if block.flags.c_contiguous:
            method_obj.run(x, weights, spec, target)
        else:  # a caller's non-contiguous out: compute in a buffer, then copy
            buffer = np.empty(target.shape, plan.dtype)
            method_obj.run(x, weights, spec, buffer)
            if plan.depthwise:
                block[...] = buffer.reshape(block.shape)
            else:
                block[...] = buffer

    if not split:
        for sl in slices:
            work(sl)
    elif n_threads == 1 or len(slices) == 1:
        with _limit_blas(1):
            for sl in slices:
                work(sl)
    else:
        with _limit_blas(1):
            _map_threads(work, slices, n_threads)
    return result


def _with_filters(plan, weights, n_threads, auto=True):
    """The plan once the filters are known: their rank, and for "auto" the
    choice again, knowing that rank and the threads."""
    spec = replace(plan.spec, filter_rank=filter_rank(weights))
    if not auto:
        return replace(plan, spec=spec)
    name, reason = choose_method(spec, n_threads)
    return replace(plan, spec=spec, method=name, reason=reason)


def _prepare_filters(filters, plan, flip):
    kind = filters.dtype.kind
    if kind == "c" or kind not in "fiub":
        raise TypeError(
            f"filters must hold real numbers; got dtype {filters.dtype}."
        )
    if not np.isfinite(filters).all():
        raise ValueError("filters contain NaN or infinity; they must be finite.")
    if filters.ndim == 2:
        filters = filters[None]
    if filters.ndim == 3:
        filters = filters[..., None]
    if flip:
        filters = filters[:, ::-1, ::-1]
    return np.ascontiguousarray(filters, dtype=plan.dtype)


def _prepare_out(out, plan, images):
    if out is None:
        return np.empty(plan.out_shape, plan.dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy array; got {type(out).__name__}.")
    if out.shape != plan.out_shape or out.dtype != plan.dtype:
        raise ValueError(
            f"out must have shape {plan.out_shape} and dtype {plan.dtype}; got "
            f"shape {out.shape} and dtype {out.dtype}."
        )
    if not out.flags.writeable:
        raise ValueError("out is read-only.")
    if np.may_share_memory(out, images):
        raise ValueError("out overlaps images; pass a separate array.")
    return out


def _check_finite_images(images):
    """Raise on NaN or infinity, at the cost of one read of the batch.

    Fast strategies mix pixels outside each window (a NaN times a zero of the
    whole-image operator is NaN), so non-finite input would spread wrongly
    instead of staying local: refuse it.  A sum is finite exactly when no
    pixel is NaN or infinite, unless it overflowed; only then is the exact,
    memory-hungrier check run.
    """
    if images.dtype.kind != "f" or images.size == 0:
        return
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.sum(images, dtype=images.dtype)
    if np.isfinite(total):
        return
    for sl in gen_even_slices(images.shape[0], max(1, images.size // 2**22)):
        if not np.isfinite(images[sl]).all():
            raise ValueError(
                "images contain NaN or infinity; conv2d needs finite values "
                "(impute or clip them first)."
            )


def _chunk_size(plan, images, method_obj, n_threads, out_buffer):
    """Images per chunk: the most whose temporaries fit in working_memory.

    Temporaries of a chunk: the padded/cast copy, the strategy's workspace
    (not always linear in the chunk: strategies work in cache-sized groups)
    and, for a caller's non-contiguous ``out``, a result buffer; each thread
    has its chunk.  The strategy's cached filters count once.
    """
    spec = plan.spec
    n_images = images.shape[0]
    per_input = spec.n_images // max(n_images, 1)
    copy = 0
    if _needs_copy(plan, images):
        copy = spec.height * spec.width * spec.n_channels * spec.itemsize * per_input
        if plan.pad_mode != "constant" and plan.pad != ((0, 0), (0, 0)):
            copy *= 2  # np.pad's own result before the cast/contiguous copy
    if out_buffer:
        copy += spec.n_filters * spec.out_height * spec.out_width * spec.itemsize * per_input
    budget = (get_config()["working_memory"] * 2**20 - method_obj.fixed_bytes(spec)) / n_threads

    def need(m):
        return m * copy + method_obj.workspace_bytes(spec, m * per_input)

    if need(1) > budget:
        warnings.warn(
            f"working_memory of {get_config()['working_memory']} MiB is too small "
            f"for one image ({need(1) / 2**20:.1f} MiB of temporaries per image "
            f"and thread, {method_obj.fixed_bytes(spec) / 2**20:.1f} MiB of "
            "preprocessed filters); working one image at a time.",
            stacklevel=3,
        )
        return 1
    # need() grows with m: bisect for the largest chunk that fits.
    low, high = 1, n_images
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if need(mid) <= budget else (low, mid - 1)
    # Give every thread work even when the whole batch fits in one chunk.
    return min(low, -(-n_images // n_threads))


def _needs_copy(plan, images):
    return (
        plan.depthwise
        or plan.pad != ((0, 0), (0, 0))
        or images.dtype != plan.dtype
        or not images.flags.c_contiguous
    )


def _prepare_chunk(chunk, plan):
    """Cast, pad and lay out one chunk as C-contiguous (n, H, W, C)."""
    if chunk.ndim == 3:
        chunk = chunk[..., None]
    if plan.depthwise:
        # channels become images: (n, h, w, c) -> (n, c, h, w) -> (n*c, h, w, 1)
        chunk = chunk.transpose(0, 3, 1, 2)[..., None]
    (top, bottom), (left, right) = plan.pad
    if plan.pad == ((0, 0), (0, 0)):
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
