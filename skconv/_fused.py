"""Fused conv -> activation -> pooling over cache-sized blocks of images.

The transformer's pooled features need the un-pooled maps only for a moment:
computing them for a whole chunk of rows writes them to memory, and the
activation and the pooling read them back (for 20000 28x28 images and 8
filters, 500 MB of maps for 125 MB of pooled features).  Here each block of
images small enough for its maps to stay in cache (``BLOCK_BYTES``) goes
through every step before the next block starts: prepare (cast, pad) the
block, run the convolution strategy into a scratch buffer reused from block
to block and stored in the order the strategy computes its maps
(``Strategy.out_order``: no copy into C order), rectify it in place, and pool
it straight into the caller's output (a column slice of the feature matrix),
the pooling's row pass written over the scratch maps themselves.  This is the
loop fusion that compilers and deep-learning runtimes apply to
conv -> ReLU -> pool chains (e.g. oneDNN's post-ops), written with NumPy
calls per block.  Each call hands the GIL over and each scratch array takes
cache from the other thread's block, so a block makes few of both: with two
threads, the per-block centring decision and finite check and a separate
row-pass buffer cost T1 (20000 28x28 images, 8 5x5 filters, abs, 2x2 max)
~20 % (measured natively: 82 -> 66 ms, against 61-65 for conv2d alone).

Everything that does not depend on the pixels is decided once, by
:func:`plan_fused`: shapes and parameters (``_plan.plan_conv2d``), the
filters as the strategies take them, the strategy (``_plan.decide``, asked
about one block running on one thread) and the block size.  :func:`run_fused`
then runs the plan on any number of batches (deciding once per batch which
float32 images to centre): a call to ``conv2d`` per block would pay its
validation, planning, filter checks and fresh output hundreds of times.
Blocks are shared by conv2d's threads (``n_jobs``), BLAS limited to one
thread inside them as conv2d's driver does when it splits a batch; a
block's result depends only on its images, so the features are the same
whatever ``n_jobs`` is.

Examples
--------
>>> import numpy as np
>>> from skconv._fused import plan_fused, run_fused
>>> images = np.random.default_rng(0).standard_normal((100, 12, 12))
>>> fused = plan_fused(
...     (12, 12), np.float64, np.ones((3, 3, 3)), conv={"padding": "same"},
...     activation="relu", pool={"size": 2, "stride": None, "op": "max", "grid": None},
... )
>>> out = np.empty((100, fused.n_maps) + fused.out_shape)
>>> _ = run_fused(fused, images, out)
>>> from skconv import conv2d, pool2d
>>> expected = pool2d(conv2d(images, np.ones((3, 3, 3)), padding="same", method=fused.method),
...                   2, activation="relu")
>>> bool(np.array_equal(out, expected))
True
"""

import contextlib
import math
import warnings
from dataclasses import dataclass, replace

import numpy as np

from ._activation import ACTIVATIONS, rectify, split_into
from ._buffers import ordered_view
from ._conv import _check_finite_images, _prepare_filters
from ._padding import (
    NO_PADDING,
    add_back,
    centring_correction,
    centring_offsets,
    prepare_chunk,
)
from ._plan import decide, plan_conv2d
from ._pooling import pool_into, pool_work_items, pooled_shape
from ._strategies import METHODS
from ._threads import map_threads, n_threads_for, single_threaded_blas
from ._validation import check_option

# Un-pooled maps per block: a few times a core's L2 (1 MiB on AMD Zen 4, 2 MiB
# on Zen 5, 1.25-2 MiB on recent Intel cores), so that the activation and the
# pooling read the maps from cache (L2 or the shared L3) while each block's
# products stay large and the per-block Python overhead small: every NumPy
# call hands the GIL over, which two threads feel block by block.  Measured with
# benchmarks/block_sweep.py (2 cores, AVX-512, OpenBLAS; seven problems from
# 20000 8x8 images to 500 96x96, 4 to 32 filters of 3x3 to 15x15; abs and
# 2x2 max pooling; one thread and two): 4 MiB blocks were within 1.04 of the
# fastest of 1, 2, 4 and 8 MiB everywhere but one case (1.10), in both
# kernel settings; 2 MiB blocks up to 1.34 (5000 28x28 images, 32 3x3
# filters, two threads).  20000 28x28 images, 8 5x5 filters, two threads,
# native kernels: 63.7 ms with 4 MiB, 71.1 with 2 MiB, 91.2 with 1 MiB.
BLOCK_BYTES = 4 * 2**20


@dataclass(frozen=True)
class FusedPlan:
    """What :func:`run_fused` runs; built by :func:`plan_fused`.

    Attributes
    ----------
    conv : Plan
        The convolution of one full block (``conv.spec.n_images`` is the
        block's, times the channels for depthwise filters).
    weights : ndarray of shape (K, p, q, C)
        The filters as the strategy takes them (cast, flipped).
    method : str
        The strategy that runs.
    reason : str
        Why (``_plan.decide``'s reason).
    activation : None or str
        As ``rectify``'s.
    pool : None or dict
        ``pool2d``'s ``size``, ``stride``, ``op`` and ``grid``.
    block : int
        Images per block.
    n_threads : int
        Threads sharing the blocks.
    n_cores : int
        Cores of the machine (``n_jobs=-1``): a small batch is cut into at
        least this many blocks.
    split_batch : bool
        The cost model's threading mode for the strategy on one block (see
        ``_plan.Conv2DChoice``): True, many small products, run with
        single-threaded BLAS even on one thread of ours.
    n_maps : int
        Maps per image after the activation ("split" doubles them).
    out_shape : (int, int)
        Rows and columns of each map after pooling.
    spec : ConvSpec
        The problem of one full block as the strategy sees it (the
        filters' rank known).
    thread_bytes : int
        Temporaries of one thread (padded block, maps, pooling's work
        buffer, the strategy's workspace).
    """

    conv: object
    weights: np.ndarray
    method: str
    reason: str
    activation: object
    pool: object
    block: int
    n_threads: int
    n_cores: int
    split_batch: bool
    n_maps: int
    out_shape: tuple
    spec: object
    thread_bytes: int
    correction: object = None


def plan_fused(
    image_shape,
    dtype,
    filters,
    *,
    conv,
    activation,
    pool,
    n_jobs=None,
    budget=None,
    max_images=None,
    block_bytes=BLOCK_BYTES,
):
    """Plan conv -> activation -> pooling of images of ``image_shape``, once.

    Parameters
    ----------
    image_shape : (int, int) or (int, int, int)
        (h, w) or channels-last (h, w, c) of one image.
    dtype : dtype
        The images' dtype (float32 computes in float32, the rest in float64).
    filters : ndarray of shape (K, p, q) or (K, p, q, c)
        The filter bank (checked finite here).
    conv : dict
        conv2d's ``padding``, ``pad_mode``, ``stride``, ``dilation``,
        ``flip`` and ``method`` (any of them may be left out).
    activation : None or {"relu", "abs", "square", "split"}
    pool : None or dict
        ``pool2d``'s ``size``, ``stride``, ``op`` and ``grid``.
    n_jobs : int, default=None
        Threads sharing the blocks (joblib's convention, as conv2d's).
    budget : float, default=None
        Bytes every thread's temporaries together may take (scikit-learn's
        ``working_memory``); None: no bound but ``block_bytes``.
    max_images : int, default=None
        The largest batch the plan will run: no block is larger, and the
        strategy is still the one chosen for a full block (a dask block
        runs the products the whole array would).
    block_bytes : int, default=BLOCK_BYTES
        Bytes of un-pooled maps per block.

    Returns
    -------
    FusedPlan
    """
    image_shape = tuple(int(s) for s in image_shape)
    conv = dict(conv)
    flip = conv.pop("flip", False)
    one = plan_conv2d((1,) + image_shape, dtype, filters.shape, flip=flip, **conv)
    weights = _prepare_filters(np.asarray(filters), one, flip)
    # (1, h', w') for a single 2-D filter on images without channels
    _, conv_maps, out_h, out_w = (
        one.out_shape if len(one.out_shape) == 4 else (1, 1) + one.out_shape[1:]
    )
    out_shape = (out_h, out_w)
    if pool is not None:
        pool = {"size": 2, "stride": None, "op": "max", "grid": None, **pool}
        out_shape = pooled_shape(out_shape, pool["size"], stride=pool["stride"], grid=pool["grid"])
    n_maps = conv_maps * (2 if activation == "split" else 1)
    check_option(activation, (None, *ACTIVATIONS), "activation")
    n_threads = n_threads_for(n_jobs)
    per_image, per_input = _image_bytes(one, activation, pool), one.spec.n_images

    def plan_for(block):
        plan = plan_conv2d((block,) + image_shape, dtype, filters.shape, flip=flip, **conv)
        # The maps are only read back here, so they may stay in the order
        # a strategy computes them (not for depthwise filters, whose maps
        # of one image come from several of the strategy's images).
        spec = replace(plan.spec, maps_in_strategy_order=per_input == 1)
        return replace(plan, spec=spec)

    block = max(1, block_bytes // max(conv_maps * out_h * out_w * one.dtype.itemsize, 1))
    if budget is not None:
        block = max(1, min(block, int(budget // (n_threads * per_image))))
    block_plan = plan_for(block)
    # The strategy of one block on one thread; each thread's share of the
    # budget must hold its workspace (and, conservatively, the cached filters).
    choice = decide(block_plan, weights, 1, math.inf if budget is None else budget / n_threads)
    strategy = METHODS[choice.method]

    def need(m):
        workspace = strategy.workspace_bytes(
            replace(choice.spec, n_images=m * per_input), m * per_input
        )
        return strategy.fixed_bytes(choice.spec) + n_threads * (m * per_image + workspace)

    if budget is not None and need(block) > budget:
        if need(1) > budget:
            warnings.warn(
                f"working_memory of {budget / 2**20:.3g} MiB is too small for one "
                f"image ({need(1) / 2**20:.1f} MiB of temporaries with {n_threads} "
                "thread(s)); working one image at a time.",
                stacklevel=3,
            )
            block = 1
        else:  # need() grows with the block: bisect for the largest that fits
            low, high = 1, block
            while low < high:
                mid = (low + high + 1) // 2
                low, high = (mid, high) if need(mid) <= budget else (low, mid - 1)
            block = low
    if max_images is not None and max_images < block:
        # A smaller batch: smaller buffers, the same strategy.
        block = max(1, max_images)
    if block != block_plan.spec.n_images // per_input:
        block_plan = plan_for(block)
    return FusedPlan(
        conv=block_plan,
        weights=weights,
        method=choice.method,
        reason=choice.reason,
        activation=activation,
        pool=pool,
        block=block,
        n_threads=n_threads,
        n_cores=n_threads_for(-1),
        split_batch=choice.split_batch,
        n_maps=n_maps,
        out_shape=tuple(out_shape),
        spec=replace(choice.spec, n_images=block_plan.spec.n_images),
        thread_bytes=int(need(block) - strategy.fixed_bytes(choice.spec)) // n_threads,
        # float32 images far from zero are centred block by block, as conv2d
        # centres its chunks (_padding.centring_offsets); this is added back.
        correction=centring_correction(weights, block_plan) if one.dtype == np.float32 else None,
    )


def _image_bytes(plan, activation, pool):
    """Temporaries per image of a block but the strategy's workspace."""
    spec = plan.spec
    per_input = spec.n_images
    maps = spec.n_filters * spec.out_height * spec.out_width * per_input
    items = maps  # the un-pooled maps
    if pool is not None:
        if activation == "split":
            items += maps  # the positive half, pooled after the negative one is made
        work = pool_work_items(
            (spec.out_height, spec.out_width),
            pool["size"],
            stride=pool["stride"],
            grid=pool["grid"],
            overwrite=True,
        )
        items += work * spec.n_filters * per_input
    padded = spec.height * spec.width * spec.n_channels * per_input
    if plan.pad_mode != "constant" and plan.pad != NO_PADDING:
        padded *= 2  # np.pad's own result before the contiguous copy
    return (items + padded) * spec.itemsize


def run_fused(fused, images, out, *, check_finite=True):
    """Fill ``out`` with the pooled features of ``images``, block by block.

    Parameters
    ----------
    fused : FusedPlan
    images : ndarray of shape (n, h, w) or (n, h, w, c)
        Any real dtype (cast per block) and any strides.  NaN or infinity
        raises ValueError, as in conv2d.
    out : ndarray of shape (n, n_maps, rows, cols)
        ``fused.conv.dtype``; any strides (the transformer passes a view of
        its output's columns).
    check_finite : bool, default=True
        False when the caller has already refused NaN and infinity (the
        transformer's ``validate_data``): the blocks then skip their check.

    Returns
    -------
    out
    """
    n = images.shape[0]
    # Enough blocks for every core even for a small batch; the blocks depend
    # on the cores, not on n_jobs, so neither do the products that run.
    block = max(1, min(fused.block, -(-n // fused.n_cores)))
    blocks = [slice(s, min(s + block, n)) for s in range(0, n, block)]
    n_threads = min(fused.n_threads, len(blocks))
    # Which float32 images are centred, and by how much, is decided for the
    # whole batch at once: the decision reads a few pixels of every image
    # whatever the grouping, but takes ~15 NumPy calls, which per block were
    # ~4 % of the transform on two threads (20000 28x28 images, 8 5x5
    # filters, abs, 2x2 max: 82 -> 79 ms), each call handing the GIL over.
    offsets = centring_offsets(images, fused.conv)
    if n_threads <= 1 and not _limits_blas(fused):
        # A strategy of a few large products, on one thread of ours: BLAS
        # keeps its threads, as in conv2d's driver.
        _run_blocks(fused, images, offsets, check_finite, out, blocks)
        return out
    # Many small products: the cost model priced them with single-threaded
    # BLAS, and BLAS's threads would only contend with ours.
    with single_threaded_blas():
        if n_threads <= 1:
            _run_blocks(fused, images, offsets, check_finite, out, blocks)
        else:
            queues = [blocks[i::n_threads] for i in range(n_threads)]
            map_threads(
                lambda queue: _run_blocks(fused, images, offsets, check_finite, out, queue),
                queues,
                n_threads,
            )
    return out


def _limits_blas(fused):
    return fused.n_threads > 1 or fused.split_batch


def blas_limit(plans):
    """The BLAS limit :func:`run_fused` takes for ``plans``, to enter once
    around many calls (threadpoolctl costs ~0.1 ms each time); a context
    that does nothing when no plan takes it.
    """
    if any(plan is not None and _limits_blas(plan) for plan in plans):
        return single_threaded_blas()
    return contextlib.nullcontext()


def _run_blocks(fused, images, batch_offsets, check_finite, out, blocks):
    """One thread's share: its scratch buffers are made once and reused.

    ``batch_offsets`` is :func:`~skconv._padding.centring_offsets` of the
    whole batch (None: no image is centred).
    """
    plan = fused.conv
    spec = fused.spec
    per_input = spec.n_images // fused.block
    strategy = METHODS[fused.method]
    order = strategy.out_order if spec.maps_in_strategy_order else (0, 1, 2, 3)
    conv_maps = spec.n_filters * per_input  # maps of one image, depthwise channels included
    map_shape = (spec.n_filters, spec.out_height, spec.out_width)
    map_items = spec.out_height * spec.out_width
    maps_flat = np.empty(fused.block * conv_maps * map_items, plan.dtype)
    pool, split = fused.pool, fused.activation == "split"
    positive = work = None
    if pool is not None:
        if split:
            positive = np.empty_like(maps_flat)
        work_items = pool_work_items(
            (spec.out_height, spec.out_width),
            pool["size"],
            stride=pool["stride"],
            grid=pool["grid"],
            overwrite=True,
        )
        work = np.empty(fused.block * conv_maps * work_items, plan.dtype)
    specs = {}
    for sl in blocks:
        g = sl.stop - sl.start
        if g not in specs:
            specs[g] = replace(spec, n_images=g * per_input)
        offsets = None
        if batch_offsets is not None:
            offsets = batch_offsets[sl.start * per_input : sl.stop * per_input]
            if not offsets.any():  # as centring_offsets says of a block of its own
                offsets = None
        x = prepare_chunk(images[sl], plan, offsets)
        if check_finite:
            # conv2d's check (one sum), on the block while it is in cache: the
            # transformer's dask blocks reach here unchecked, and NaN would
            # spread through the fast strategies instead of raising.
            _check_finite_images(x)
        strategy_maps = ordered_view(maps_flat, (g * per_input,) + map_shape, order)
        strategy.run(x, fused.weights, specs[g], strategy_maps)
        if offsets is not None:
            add_back(strategy_maps, offsets, fused.correction)
        # a view: with several images per input (depthwise) the order is C's
        maps = strategy_maps.reshape(g, conv_maps, spec.out_height, spec.out_width)
        target = out[sl]
        if pool is None:
            if split:
                split_into(maps, target[:, 0::2], target[:, 1::2])
            else:
                np.copyto(target, rectify(maps, fused.activation, copy=False))
            continue
        if split:
            pos = ordered_view(positive, maps.shape, order)
            split_into(maps, pos, maps)
            # (both are this thread's scratch: the pooling may write into them)
            pool_into(pos, target[:, 0::2], **pool, work=work, overwrite=True)
            pool_into(maps, target[:, 1::2], **pool, work=work, overwrite=True)
        else:
            rectified = rectify(maps, fused.activation, copy=False)
            pool_into(rectified, target, **pool, work=work, overwrite=True)
