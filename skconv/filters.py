"""Filter banks for 2-D convolution features.

A filter bank is a C-contiguous float64 array of shape ``(K, p, q)``: ``K``
filters of ``p`` rows by ``q`` columns, meant to be applied by
cross-correlation (``out[i, j] = sum_{u, v} image[i + u, j + v] * w[u, v]``,
no kernel flip), which is what the transformer computes.  Orientation
conventions below follow from that: "x" is the column index (increasing to
the right) and "y" the row index (increasing downwards).

Fixed banks are plain functions of their parameters; learned banks
(:func:`pca`, :func:`kmeans`) are fitted on a batch of images of shape
``(n_images, height, width)``.  The transformer looks banks up by name with
:func:`make_bank` and :func:`learn_bank`.
"""

import inspect
import math
import os
import threading
from collections import OrderedDict
from numbers import Real

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from sklearn import get_config
from sklearn.cluster import KMeans
from sklearn.utils import check_random_state
from sklearn.utils.random import sample_without_replacement

from ._validation import (
    as_real_array,
    check_bool,
    check_finite,
    check_int,
    check_option,
    check_pair,
    contextual,
)

__all__ = [
    "FIXED_BANKS",
    "LEARNED_BANKS",
    "bank_names",
    "combine",
    "default",
    "dog",
    "edges",
    "gabor",
    "gaussian",
    "is_learned",
    "kmeans",
    "laplacian",
    "learn_bank",
    "log",
    "make_bank",
    "pca",
    "prewitt",
    "random",
    "sobel",
]

# --- argument checks ---------------------------------------------------------
# Ints, pairs, options, bools, dtypes and finiteness follow the package's shared
# rules (skconv._validation); only the real-number ranges are specific to banks.


# A window side above this is no filter for images handled row by row (a
# 1024x1024 filter already holds 8 MiB); the bound turns a typo such as
# size=10**9 into a clear error instead of a MemoryError.
MAX_SIZE = 1024
# Sobel-type stencils grown by binomial smoothing reach 4**size in magnitude;
# OpenCV's getSobelKernels stops at the same size (ksize <= 31).
MAX_STENCIL_SIZE = 31
# Gaussian scales in pixels: sigma**2 must stay a normal float64 (no underflow
# to 0, no overflow to inf), so every window can be sampled.  Far inside the
# limits a sigma is already a delta (1e-3) or a flat window (1e3).
SIGMA_RANGE = (1e-150, 1e150)
# Largest array a bank builder allocates, in float64 bytes: a bank (K filters
# of p x q) or a learned bank's (p*q) x (p*q) patch covariance.  1 GiB holds
# 128 filters of the largest size (1024x1024) or 13 million 3x3 filters, far
# more than a useful bank; checking it before building turns a count such as
# n_orientations=10**8 (a 78 GB bank) into a clear error instead of minutes
# of work ending in a MemoryError.
MAX_BANK_BYTES = 2**30
# A filter computed as a difference (a zero-mean Gabor, a DoG, a LoG minus its
# mean) whose largest magnitude is at most this fraction of its terms' is
# rounding noise: the terms were equal to float64 precision on the window.
NOISE_RATIO = 1e-10
# The smallest positive float64 (a subnormal).
_TINY = float(np.finfo(np.float64).smallest_subnormal)


def _check_size(size, minimum=1):
    """``size`` as an int or a (p, q) pair -> (p, q)."""
    if isinstance(size, (tuple, list)) and len(size) != 2:
        raise ValueError(f"size must be an int or a (p, q) pair; got {size!r}.")
    return check_pair(size, "size", minimum, MAX_SIZE)


def _check_odd_size(size):
    """Square odd sizes only: the 3x3 stencils are grown symmetrically."""
    s = check_int(size, "size", 3, MAX_STENCIL_SIZE)
    if s % 2 == 0:
        raise ValueError(f"size must be an odd int in [3, {MAX_STENCIL_SIZE}]; got {size!r}.")
    return s


def _check_float(value, name, low=0.0, high=math.inf):
    if not isinstance(value, Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a real number; got {value!r}.")
    if not (math.isfinite(value) and low < value <= high):
        expected = f"> {low:g}" if high == math.inf else f"in ({low:g}, {high:g}]"
        raise ValueError(f"{name} must be finite and {expected}; got {value!r}.")
    return float(value)


def _check_floats(values, name, low=0.0, high=math.inf):
    """One number or a non-empty sequence of them -> tuple of floats."""
    if isinstance(values, (tuple, list, np.ndarray)) and np.ndim(values) > 0:
        if len(values) == 0:
            raise ValueError(f"{name} must not be empty; got {values!r}.")
        return tuple(_check_float(v, name, low, high) for v in values)
    return (_check_float(values, name, low, high),)


def _check_sigma(value, name):
    """A Gaussian scale in pixels, within :data:`SIGMA_RANGE`."""
    value = _check_float(value, name)
    low, high = SIGMA_RANGE
    if not low <= value <= high:
        raise ValueError(
            f"{name} must be in [{low:g}, {high:g}] pixels so the window can be "
            f"sampled; got {value!r}."
        )
    return value


def _check_sigmas(values, name):
    """One Gaussian scale or a non-empty sequence of them -> tuple of floats."""
    return tuple(_check_sigma(v, name) for v in _check_floats(values, name))


def _check_bank_bytes(n_filters, p, q, name, value):
    """Refuse a bank of ``n_filters`` filters of ``p`` x ``q`` over :data:`MAX_BANK_BYTES`.

    Called before anything is built; ``name`` and ``value`` are the parameter
    that sets the count (``len(sigmas)`` for a sequence) and its value.
    """
    most = MAX_BANK_BYTES // (8 * p * q)
    if n_filters > most:
        raise ValueError(
            f"{name} must be at most {most} for {p}x{q} filters (a bank is limited to "
            f"{MAX_BANK_BYTES / 2**30:g} GiB of float64); got {value!r}."
        )


def _check_patch_pixels(p, q, size):
    """Refuse a learned bank's patch size whose (p*q) x (p*q) covariance is too big.

    The limit is :data:`MAX_BANK_BYTES`, checked before the images are read.
    """
    most = math.isqrt(MAX_BANK_BYTES // 8)
    if p * q > most:
        raise ValueError(
            f"size must hold at most {most} pixels, so that the (p*q) x (p*q) patch "
            f"covariance fits in {MAX_BANK_BYTES / 2**30:g} GiB of float64; got {size!r}."
        )


def _check_not_noise(filters, scales, name, value_of, p, q, hint):
    """Refuse filters that came out all zero or as rounding noise.

    ``filters`` (K, p, q) were computed as differences of terms whose largest
    magnitude is ``scales`` (K,); a filter whose largest magnitude is at most
    :data:`NOISE_RATIO` times that (0 <= 0 included, when the terms
    underflowed to 0) is refused, naming ``value_of(k)``, the value of the
    parameter ``name`` that gave filter ``k``, and ``hint``, what would work.
    """
    # Largest magnitudes, not L2 norms: the norm of a LoG of sigma 1e-150
    # (a centre of -3e299) overflows.
    noise = np.abs(filters).max(axis=(1, 2)) <= NOISE_RATIO * np.asarray(scales)
    if noise.any():
        raise ValueError(
            f"{name} must give filters that are not all zero (nor rounding noise) on "
            f"the {p}x{q} window; got {value_of(int(np.argmax(noise)))!r} ({hint})."
        )


def _finish(filters):
    return np.ascontiguousarray(filters, dtype=np.float64)


def _grid(p, q):
    """Row and column offsets from the window centre (half-integers if even)."""
    y = np.arange(p) - (p - 1) / 2
    x = np.arange(q) - (q - 1) / 2
    return np.meshgrid(y, x, indexing="ij")


# --- fixed banks -------------------------------------------------------------

_SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
_PREWITT_X = np.array([[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]], dtype=np.float64)
# Diagonal stencils rising towards the bottom right (+x, +y) and top right.
_SOBEL_D = np.array([[-2, -1, 0], [-1, 0, 1], [0, 1, 2]], dtype=np.float64)
_PREWITT_D = np.array([[-1, -1, 0], [-1, 0, 1], [0, 1, 1]], dtype=np.float64)
_LAPLACIAN = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64)


def _grow(stencil, size, smoothing):
    """Full 2-D convolution of a 3x3 stencil with a (size-2)^2 smoothing kernel.

    This is how OpenCV builds its 5x5 and 7x7 Sobel kernels from binomial
    rows; it keeps the stencil's sum and symmetries and returns it unchanged
    for ``size == 3``.
    """
    m = size - 2
    if smoothing == "binomial":
        row = np.array([math.comb(m - 1, k) for k in range(m)], dtype=np.float64)
    else:
        row = np.ones(m)
    kernel = np.outer(row, row)
    out = np.zeros((size, size))
    for (u, v), weight in np.ndenumerate(stencil):
        out[u : u + m, v : v + m] += weight * kernel
    return out


def edges(size=3, kind="sobel", diagonals=True):
    """Sobel or Prewitt first-derivative filters.

    Parameters
    ----------
    size : int, default=3
        Odd window size >= 3.  Size 3 gives the classic integer kernels;
        a larger size smooths the 3x3 kernel by full convolution with a
        ``(size-2) x (size-2)`` binomial (Sobel, as OpenCV does) or box
        (Prewitt) kernel.
    kind : {"sobel", "prewitt"}, default="sobel"
        Smoothing across the derivative: ``[1, 2, 1]`` or ``[1, 1, 1]``.
    diagonals : bool, default=True
        Also return the two diagonal derivatives.

    Returns
    -------
    filters : ndarray of shape (4, size, size) or (2, size, size)
        In order: d/dx (positive where intensity grows with the column
        index), d/dy (grows with the row index), then with ``diagonals`` the
        derivative towards the bottom right (+x, +y) and towards the top
        right (+x, -y).  Unnormalised, each sums to 0.

    Examples
    --------
    >>> from skconv.filters import edges
    >>> bank = edges()
    >>> bank.shape
    (4, 3, 3)
    >>> print(bank[0])
    [[-1.  0.  1.]
     [-2.  0.  2.]
     [-1.  0.  1.]]
    """
    size = _check_odd_size(size)
    check_option(kind, ("sobel", "prewitt"), "kind")
    check_bool(diagonals, "diagonals")
    sx, sd = (_SOBEL_X, _SOBEL_D) if kind == "sobel" else (_PREWITT_X, _PREWITT_D)
    stencils = [sx, sx.T]
    if diagonals:
        stencils += [sd, sd[::-1]]
    smoothing = "binomial" if kind == "sobel" else "box"
    return _finish([_grow(s, size, smoothing) for s in stencils])


def sobel(size=3, diagonals=True):
    """Sobel derivative filters: ``edges(size, "sobel", diagonals)``.

    Examples
    --------
    >>> from skconv.filters import sobel
    >>> sobel(5, diagonals=False).shape
    (2, 5, 5)
    """
    return edges(size, "sobel", diagonals)


def prewitt(size=3, diagonals=True):
    """Prewitt derivative filters: ``edges(size, "prewitt", diagonals)``.

    Examples
    --------
    >>> from skconv.filters import prewitt
    >>> print(prewitt(diagonals=False)[1])
    [[-1. -1. -1.]
     [ 0.  0.  0.]
     [ 1.  1.  1.]]
    """
    return edges(size, "prewitt", diagonals)


def laplacian(size=3):
    """The discrete Laplacian.

    Parameters
    ----------
    size : int, default=3
        Odd window size >= 3.  Size 3 is the 5-point stencil
        ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]``; larger sizes smooth it with a
        ``(size-2) x (size-2)`` binomial kernel, as :func:`edges` does.

    Returns
    -------
    filters : ndarray of shape (1, size, size)
        Sums to 0, negative centre.

    Examples
    --------
    >>> from skconv.filters import laplacian
    >>> print(laplacian()[0])
    [[ 0.  1.  0.]
     [ 1. -4.  1.]
     [ 0.  1.  0.]]
    """
    return _finish([_grow(_LAPLACIAN, _check_odd_size(size), "binomial")])


def _envelope(p, q, sigma):
    """``exp(-(r^2 - r_min^2) / (2 sigma^2))`` on the window: the Gaussian
    divided by its largest sample, which is 1 whatever sigma, so a tiny sigma
    (or an even window, whose centre falls between pixels) cannot underflow
    every sample to 0.  Returns it and ``r_min^2``."""
    y, x = _grid(p, q)
    r2 = x**2 + y**2
    r2_min = float(r2.min())
    return np.exp(-(r2 - r2_min) / (2 * sigma**2)), r2_min


# What works for the banks of Gaussian differences (log, dog), measured on
# windows from 3x3 to 64x64 (a far smaller sigma works for log on odd windows).
_SIGMA_HINT = "sigmas between about 0.2 and 10**4 * min(p, q) = {most:g} pixels work"


def _gaussian_window(p, q, sigma):
    g = _envelope(p, q, sigma)[0]
    return g / g.sum()


def gaussian(size=5, sigmas=(0.5, 1.0, 2.0)):
    """Isotropic Gaussian blurs, one per sigma.

    Parameters
    ----------
    size : int or (p, q), default=5
        Window size; the Gaussian is centred (between pixels for even sizes).
    sigmas : float or sequence of float, default=(0.5, 1.0, 2.0)
        Standard deviations in pixels, in ``SIGMA_RANGE``.  At most
        ``MAX_BANK_BYTES // (8 * p * q)`` of them, so the bank holds at most
        1 GiB (128 filters of 1024x1024, millions of small ones).

    Returns
    -------
    filters : ndarray of shape (len(sigmas), p, q)
        Each sampled on the window and normalised to sum to 1.

    Examples
    --------
    >>> from skconv.filters import gaussian
    >>> bank = gaussian(size=3, sigmas=1.0)
    >>> bank.shape, round(float(bank.sum()), 6)
    ((1, 3, 3), 1.0)
    """
    p, q = _check_size(size)
    sigmas = _check_sigmas(sigmas, "sigmas")
    _check_bank_bytes(len(sigmas), p, q, "len(sigmas)", len(sigmas))
    # Each window sums to 1, so no filter can come out zero.
    return _finish([_gaussian_window(p, q, s) for s in sigmas])


def gabor(size=7, n_orientations=4, frequencies=(0.15, 0.3), sigma=None, normalize=True):
    """Real (even, cosine) Gabor filters.

    ``g(x, y) = exp(-(x^2 + y^2) / (2 sigma^2)) * cos(2 pi f (x cos t + y sin t))``
    on the window, with ``x`` the column and ``y`` the row offset from the
    centre, then made zero-mean so flat regions give 0.  Unlike
    ``skimage.filters.gabor_kernel`` the window size is fixed by ``size`` and
    never grows with the frequency; the envelope is cut at the window edge.

    Parameters
    ----------
    size : int or (p, q), default=7
        Window size, >= 3 in each dimension.
    n_orientations : int, default=4
        Orientations ``t = pi * k / n_orientations``, ``k = 0 .. n-1``.
        ``t`` is the direction of the wave vector, measured from the +x
        (column) axis towards +y (down): ``t = 0`` responds to vertical
        stripes.  ``len(frequencies) * n_orientations`` must be at most
        ``MAX_BANK_BYTES // (8 * p * q)``, so the bank holds at most 1 GiB
        (2.7 million 7x7 filters; hundreds are already a very large bank).
    frequencies : float or sequence of float, default=(0.15, 0.3)
        Carrier frequencies in cycles per pixel, in (0, 0.5].
    sigma : float or None, default=None
        Envelope standard deviation in pixels, in ``SIGMA_RANGE``.  Each
        frequency and sigma must give a filter that is neither all zero nor
        rounding noise once made zero-mean: a flat envelope times a flat
        carrier, an envelope that only covers zeros of the carrier or,
        without ``normalize``, one that underflows to 0 raise a ValueError.
        None uses, per frequency, ``min(0.56 / f, min(p, q) / 3)``: ``0.56 / f`` gives a one-octave
        bandwidth (the ``bandwidth=1`` default of scikit-image), and the
        cap makes the window at least 3 sigma wide so the envelope, not the
        window edge, shapes the filter.
    normalize : bool, default=True
        Scale each filter to unit L2 norm.

    Returns
    -------
    filters : ndarray of shape (len(frequencies) * n_orientations, p, q)
        Frequency-major: filter ``i * n_orientations + k`` has frequency
        ``frequencies[i]`` and orientation ``k``.

    Examples
    --------
    >>> import numpy as np
    >>> from skconv.filters import gabor
    >>> bank = gabor(size=5, n_orientations=2, frequencies=0.25)
    >>> bank.shape
    (2, 5, 5)
    >>> abs(float(bank[0].sum())) < 1e-12, round(float(np.linalg.norm(bank[0])), 6)
    (True, 1.0)
    """
    p, q = _check_size(size, 3)
    n_orientations = check_int(n_orientations, "n_orientations", 1)
    frequencies = _check_floats(frequencies, "frequencies", high=0.5)
    if sigma is not None:
        sigma = _check_sigma(sigma, "sigma")
    check_bool(normalize, "normalize")
    n_filters = len(frequencies) * n_orientations
    _check_bank_bytes(n_filters, p, q, "len(frequencies) * n_orientations", n_filters)
    y, x = _grid(p, q)
    t = np.pi * np.arange(n_orientations) / n_orientations
    cos_t, sin_t = np.cos(t)[:, None, None], np.sin(t)[:, None, None]
    sigmas = [min(0.56 / f, min(p, q) / 3) if sigma is None else sigma for f in frequencies]
    filters = np.empty((n_filters, p, q))
    scales = []
    for i, (f, s) in enumerate(zip(frequencies, sigmas, strict=True)):
        envelope, r2_min = _envelope(p, q, s)
        if not normalize:
            # The unit-norm scaling would cancel this factor; without it the
            # filter is the formula's (refused below if it underflows to 0).
            envelope *= math.exp(-r2_min / (2 * s**2))
        scales.append(envelope.max())
        # All orientations of one frequency at once, in place: a Python loop
        # over a large n_orientations would take minutes.
        block = filters[i * n_orientations : (i + 1) * n_orientations]
        np.multiply(cos_t, x, out=block)
        block += sin_t * y
        block *= 2 * np.pi * f
        np.cos(block, out=block)
        block *= envelope
    filters -= filters.mean(axis=(1, 2), keepdims=True)
    # What is left after removing the mean can be rounding noise, which unit
    # norm would blow up into a random filter: a flat envelope (huge sigma)
    # times a flat carrier (tiny frequency), or an envelope that only covers
    # zeros of the carrier, or (without normalize) underflows to 0.  The
    # envelope's largest sample is the scale of the terms: the carrier's
    # amplitude is 1.
    _check_not_noise(
        filters,
        np.repeat(scales, n_orientations),
        "frequencies and sigma",
        lambda k: (frequencies[k // n_orientations], sigmas[k // n_orientations]),
        p,
        q,
        "frequency, sigma: raise the frequency or bring sigma nearer the window size",
    )
    if normalize:
        filters /= np.linalg.norm(filters, axis=(1, 2), keepdims=True)
    return _finish(filters)


def log(size=7, sigmas=(1.0, 2.0)):
    """Laplacian of Gaussian, scale-normalised and zero-mean.

    Parameters
    ----------
    size : int or (p, q), default=7
        Window size, >= 3 in each dimension.
    sigmas : float or sequence of float, default=(1.0, 2.0)
        Gaussian standard deviations in pixels, in ``SIGMA_RANGE``, at most
        ``MAX_BANK_BYTES // (8 * p * q)`` of them (a bank of at most 1 GiB).
        A sigma whose filter comes out all zero or rounding noise raises a
        ValueError: one far above the window (a flat Gaussian, whose
        Laplacian is constant) or, on an even window, far below a pixel (every
        sample underflows).  Sigmas from 0.2 to ``10**4 * min(p, q)`` pixels
        work.

    Returns
    -------
    filters : ndarray of shape (len(sigmas), p, q)
        ``sigma^2 * laplacian(G_sigma)`` sampled on the window (negative
        centre, like :func:`laplacian`; the ``sigma^2`` makes responses
        comparable across scales), minus its mean because the cut tails
        would otherwise leave a response to flat regions.

    Examples
    --------
    >>> from skconv.filters import log
    >>> bank = log(size=5, sigmas=1.0)
    >>> bank.shape, bool(bank[0, 2, 2] < 0), abs(float(bank.sum())) < 1e-12
    ((1, 5, 5), True, True)
    """
    p, q = _check_size(size, 3)
    sigmas = _check_sigmas(sigmas, "sigmas")
    _check_bank_bytes(len(sigmas), p, q, "len(sigmas)", len(sigmas))
    y, x = _grid(p, q)
    r2 = x**2 + y**2
    filters = np.array(
        [(r2 - 2 * s**2) / s**2 * np.exp(-r2 / (2 * s**2)) / (2 * np.pi * s**2) for s in sigmas]
    )
    scales = np.abs(filters).max(axis=(1, 2))
    filters -= filters.mean(axis=(1, 2), keepdims=True)
    # A sigma far above the window leaves a constant, which the mean removal
    # turns into 0 or noise; one far below it on an even window (no pixel at
    # the centre) underflows every sample to 0.
    _check_not_noise(
        filters,
        scales,
        "sigmas",
        sigmas.__getitem__,
        p,
        q,
        _SIGMA_HINT.format(most=1e4 * min(p, q)),
    )
    return _finish(filters)


def dog(size=7, sigmas=(1.0,), ratio=1.6):
    """Difference of Gaussians ``G_sigma - G_{ratio * sigma}``.

    Parameters
    ----------
    size : int or (p, q), default=7
        Window size, >= 3 in each dimension.
    sigmas : float or sequence of float, default=(1.0,)
        Inner standard deviations in pixels, in ``SIGMA_RANGE``, at most
        ``MAX_BANK_BYTES // (8 * p * q)`` of them (a bank of at most 1 GiB).
        A sigma whose filter comes out all zero or rounding noise raises a
        ValueError: far below a pixel both Gaussians are the same delta, far
        above the window the same flat window.  Sigmas from 0.2 to
        ``10**4 * min(p, q)`` pixels work with ``ratio >= 1.3``.
    ratio : float, default=1.6
        Outer over inner sigma, > 1 (1.6 approximates the Laplacian of
        Gaussian, Marr & Hildreth).  Near 1 the two Gaussians are equal to
        rounding and the filter is refused as above.

    Returns
    -------
    filters : ndarray of shape (len(sigmas), p, q)
        Each Gaussian is normalised to sum to 1 on the window, so the
        difference sums to 0 even when the outer one is cut.  Positive
        centre (the opposite sign of :func:`log`).

    Examples
    --------
    >>> from skconv.filters import dog
    >>> bank = dog(size=5)
    >>> bank.shape, bool(bank[0, 2, 2] > 0), abs(float(bank.sum())) < 1e-12
    ((1, 5, 5), True, True)
    """
    p, q = _check_size(size, 3)
    sigmas = _check_sigmas(sigmas, "sigmas")
    ratio = _check_float(ratio, "ratio", low=1.0)
    high = SIGMA_RANGE[1]
    if ratio * max(sigmas) > high:
        raise ValueError(
            f"ratio * sigmas must be <= {high:g} (the outer sigma, in pixels); got "
            f"ratio={ratio!r} and sigmas {sigmas!r}."
        )
    _check_bank_bytes(len(sigmas), p, q, "len(sigmas)", len(sigmas))
    inner = np.array([_gaussian_window(p, q, s) for s in sigmas])
    filters = inner - np.array([_gaussian_window(p, q, ratio * s) for s in sigmas])
    # Both Gaussians are the same delta for a sigma far below a pixel, and the
    # same flat window for one far above the window (or for a ratio near 1):
    # their difference is 0.  The inner one has the larger peak.
    _check_not_noise(
        filters,
        inner.max(axis=(1, 2)),
        "sigmas and ratio",
        lambda k: (sigmas[k], ratio),
        p,
        q,
        _SIGMA_HINT.format(most=1e4 * min(p, q)) + " with a ratio >= 1.3",
    )
    return _finish(filters)


def random(n_filters=8, size=3, random_state=None):
    """Gaussian random filters, each zero-mean with unit L2 norm.

    Parameters
    ----------
    n_filters : int, default=8
        Number of filters, at most ``MAX_BANK_BYTES // (8 * p * q)`` (a bank
        of at most 1 GiB).
    size : int or (p, q), default=3
        Window size, with at least 2 pixels.
    random_state : int, RandomState instance or None, default=None
        Seed, see :term:`random_state`.

    Returns
    -------
    filters : ndarray of shape (n_filters, p, q)

    Examples
    --------
    >>> import numpy as np
    >>> from skconv.filters import random
    >>> bank = random(n_filters=2, size=(3, 4), random_state=0)
    >>> bank.shape, np.round(np.linalg.norm(bank, axis=(1, 2)), 6).tolist()
    ((2, 3, 4), [1.0, 1.0])
    """
    n_filters = check_int(n_filters, "n_filters", 1)
    p, q = _check_size(size)
    if p * q < 2:
        raise ValueError(f"size must hold at least 2 pixels for zero-mean filters; got {size!r}.")
    _check_bank_bytes(n_filters, p, q, "n_filters", n_filters)
    filters = check_random_state(random_state).standard_normal((n_filters, p, q))
    filters -= filters.mean(axis=(1, 2), keepdims=True)
    filters /= np.linalg.norm(filters, axis=(1, 2), keepdims=True)
    return _finish(filters)


def default(size=3):
    """A mixed bank suited to small images such as the 8x8 digits.

    Parameters
    ----------
    size : int, default=3
        Odd window size >= 3.

    Returns
    -------
    filters : ndarray of shape (9, size, size)
        ``edges(size)`` (4 Sobel derivatives, with diagonals),
        ``laplacian(size)`` (1) and ``gabor(size, n_orientations=4,
        frequencies=0.25)`` (4 oriented line detectors), in this order.
        On the digits (3x3, ReLU of +-response, 2x2 max pooling, logistic
        regression, 5-fold CV) this scored 0.967, against 0.953 for edges
        and Laplacian alone and 0.964 for 13 random filters; adding 4
        random filters did not help (0.966).

    Examples
    --------
    >>> from skconv.filters import default
    >>> default().shape
    (9, 3, 3)
    """
    size = _check_odd_size(size)
    return combine(edges(size), laplacian(size), gabor(size, n_orientations=4, frequencies=0.25))


# --- learned banks -----------------------------------------------------------


def _check_images(images):
    images = as_real_array(images, "images")
    if images.ndim != 3 or images.shape[0] == 0:
        raise ValueError(
            "images must have shape (n_images, height, width) with n_images >= 1; "
            f"got shape {images.shape}."
        )
    check_finite(images, "images")
    return images


def _sample_patches(images, size, n_patches, random_state):
    """Draw ``min(n_patches, n_positions)`` distinct patches, uniformly.

    Every (image, row, column) position of a ``size`` window fully inside an
    image is equally likely.  Returns a float64 array of shape (n, p, q).
    """
    images = _check_images(images)
    p, q = _check_size(size)
    n_patches = check_int(n_patches, "n_patches", 1)
    b, h, w = images.shape
    if h < p or w < q:
        raise ValueError(f"size must fit in the {h}x{w} images; got patch size {p}x{q}.")
    grid = (b, h - p + 1, w - q + 1)
    n_positions = math.prod(grid)
    # Draw positions first and gather only those windows: all the patches of
    # a big batch would need p*q times the memory of the batch.  Sorting
    # makes the gather walk memory in order.
    flat = sample_without_replacement(
        n_positions, min(n_patches, n_positions), random_state=random_state
    )
    n, i, j = np.unravel_index(np.sort(flat), grid)
    windows = sliding_window_view(images, (p, q), axis=(1, 2))
    return np.asarray(windows[n, i, j], dtype=np.float64)


def _unit_exponent(values):
    """The ``e`` that brings the largest magnitude of ``values`` into [0.5, 1) (0 for zeros).

    Learned filters do not depend on the scale of the patches, but their
    arithmetic does: squares of 1e300 overflow and squares of 1e-300
    underflow.  Dividing by ``2**e`` (``np.ldexp(values, -e)``) keeps every
    value exact, except those below ``2**-1022`` times the largest, which
    round to subnormals.
    """
    if values.size == 0:
        return 0
    return math.frexp(max(abs(float(values.max())), abs(float(values.min()))))[1]


def _flat_centred_patches(images, size, n_patches, n_filters, rng):
    """Sampled patches as rows, each minus its own mean; checks there are enough.

    The patches come divided by ``2**e``, a power of two that brings their
    largest magnitude into [0.5, 1) (see :func:`_unit_exponent`); returns
    them and ``e``.
    """
    patches = _sample_patches(images, size, n_patches, rng)
    if len(patches) < n_filters:
        raise ValueError(
            f"only {len(patches)} patches can be drawn from images of shape "
            f"{np.shape(images)} with n_patches={n_patches}, fewer than "
            f"n_filters={n_filters}."
        )
    exponent = _unit_exponent(patches)
    x = np.ldexp(patches.reshape(len(patches), -1), -exponent)
    x -= x.mean(axis=1, keepdims=True)
    if not x.any():
        raise ValueError(
            "images must vary within patches; got only flat (constant) sampled "
            "patches: there is nothing to learn."
        )
    return x, exponent


def _default_contrast_eps(images, exponent):
    """Coates et al.'s 10 for pixels in 0..255, scaled to the images' range.

    In units of ``4**exponent``, those of patches divided by ``2**exponent``.
    The range is taken from Python floats: np.ptp wraps around on integers
    (int8 from -100 to 100 gives -56) and is undefined on bools.  It is inf
    only when the images range over 2**1024 times the patches.
    """
    data = np.asarray(images)
    with np.errstate(over="ignore"):
        span = np.ldexp(float(data.max()), -exponent) - np.ldexp(float(data.min()), -exponent)
        return 10 * span**2 / 255**2


def _contrast_normalise(x, exponent, eps, eps_exponent):
    """Divide the rows of ``x`` by ``sqrt(var + eps)``, in place.

    ``x`` is in units of ``2**exponent`` and ``eps`` in units of
    ``4**eps_exponent`` (a variance): it is brought to ``x``'s units first.
    Flat patches divide 0 by it: it is kept from rounding to 0.
    """
    with np.errstate(over="ignore", under="ignore"):
        eps = max(float(np.ldexp(eps, 2 * (eps_exponent - exponent))), _TINY)
    x /= np.sqrt(x.var(axis=1, keepdims=True) + eps)


def _patch_scatter(images, size, exponent=0):
    """``sum x x^T`` over the mean-removed patches ``x`` of every position of every image.

    A sum over images, so chunks of images can be accumulated exactly (up to
    rounding).  The patches are copied a block of images at a time, within
    half of scikit-learn's ``working_memory``.  Returns the (p*q, p*q)
    float64 scatter matrix and the number of patches.  The patches are first
    divided by ``2**exponent`` (exact; :func:`_unit_exponent` of the images
    brings their largest magnitude into [0.5, 1)): the scatter is then in
    units of ``4**exponent``, and only scatters in the same units add up.
    """
    images = _check_images(images)
    p, q = size
    b, h, w = images.shape
    if h < p or w < q:
        raise ValueError(f"size must fit in the {h}x{w} images; got patch size {p}x{q}.")
    n_positions = (h - p + 1) * (w - q + 1)
    # float64 patches and their product's operand: 2 copies per patch value.
    per_image = 2 * 8 * n_positions * p * q
    block = max(1, int(get_config()["working_memory"] * 2**20 / 2 // per_image))
    windows = sliding_window_view(images, (p, q), axis=(1, 2))
    scatter = np.zeros((p * q, p * q))
    for start in range(0, b, block):
        x = np.array(windows[start : start + block], dtype=np.float64).reshape(-1, p * q)
        if exponent:
            x = np.ldexp(x, -exponent, out=x)
        x -= x.mean(axis=1, keepdims=True)
        scatter += x.T @ x
    return scatter, b * n_positions


def _pca_from_scatter(scatter, n_filters):
    """The leading eigenvectors of a patch scatter matrix, signs fixed (see :func:`pca`)."""
    filters = np.linalg.eigh(scatter)[1][:, ::-1][:, :n_filters].T.copy()
    mag = np.abs(filters)
    lead = np.argmax(mag >= (1 - 1e-6) * mag.max(axis=1, keepdims=True), axis=1)
    filters *= np.sign(filters[np.arange(n_filters), lead])[:, None]
    return filters


def pca(images, n_filters=8, size=5, n_patches=None, random_state=None):
    """PCA filters of image patches: the first stage of PCANet (Chan et al. 2015).

    Takes the patches of every position of every image (or, with an int
    ``n_patches``, that many drawn uniformly), removes each patch's own mean
    and keeps the leading eigenvectors of the scatter matrix ``sum x x^T`` of
    the mean-removed patches ``x`` (the leading right singular vectors of
    the patch matrix), as in PCANet.  With every position the scatter matrix
    is a sum over images, which
    :meth:`skconv.BatchConv2DTransformer.partial_fit` accumulates chunk by
    chunk: streaming gives the same filters up to rounding.  Costs about
    ``2 * n_images * n_positions * (p * q)**2`` flops, with the patches
    copied a block of images at a time (within scikit-learn's
    ``working_memory``).

    Parameters
    ----------
    images : array-like of shape (n_images, height, width)
        Training images, real-valued, finite.  The filters do not depend on
        their scale: ``images * c`` gives the same filters for any ``c > 0``
        (up to rounding), down to 1e-300 and up to the float64 maximum, as
        the patches are divided by a power of two near their largest
        magnitude first.
    n_filters : int, default=8
        Number of filters, at most ``p * q - 1`` (removing the patch mean
        leaves ``p * q - 1`` dimensions).
    size : int or (p, q), default=5
        Patch size, with at most 11585 pixels, so that the ``(p*q) x (p*q)``
        scatter matrix holds at most ``MAX_BANK_BYTES`` (1 GiB).
    n_patches : int or None, default=None
        None uses the patch of every position of every image.  An int draws
        that many distinct patches uniformly over images and positions (all
        of them when there are fewer), as :func:`kmeans` does: cheaper on
        large sets, but random, and in ``partial_fit`` drawn per chunk, so a
        stream no longer equals one fit.
    random_state : int, RandomState instance or None, default=None
        Seed of the patch sampling (with an int ``n_patches`` only), see
        :term:`random_state`.

    Returns
    -------
    filters : ndarray of shape (n_filters, p, q)
        Orthonormal (as flattened vectors) and zero-mean, by decreasing
        explained variance.  The sign of each is fixed by making its
        largest-magnitude entry positive (the first in row-major order among
        entries within 1e-6 of the largest, so rounding cannot flip it).

    Examples
    --------
    >>> import numpy as np
    >>> from skconv.filters import pca
    >>> images = np.random.RandomState(0).rand(10, 8, 8)
    >>> bank = pca(images, n_filters=4, size=3, random_state=0)
    >>> bank.shape, np.allclose(bank.reshape(4, -1) @ bank.reshape(4, -1).T, np.eye(4))
    ((4, 3, 3), True)
    """
    n_filters = check_int(n_filters, "n_filters", 1)
    p, q = _check_size(size)
    _check_patch_pixels(p, q, size)
    if n_filters > p * q - 1:
        raise ValueError(
            f"n_filters must be at most p * q - 1 = {p * q - 1} for size {size!r}; got {n_filters}."
        )
    if n_patches is None:
        images = _check_images(images)
        scatter, count = _patch_scatter(images, (p, q), _unit_exponent(images))
        _check_patch_scatter(scatter, count, n_filters, np.shape(images), n_patches)
    else:
        x, _ = _flat_centred_patches(
            images, (p, q), n_patches, n_filters, check_random_state(random_state)
        )
        scatter = x.T @ x
    return _finish(_pca_from_scatter(scatter, n_filters).reshape(n_filters, p, q))


def _check_patch_scatter(scatter, count, n_filters, shape, n_patches):
    """The errors of :func:`_flat_centred_patches`, for a scatter matrix of ``count`` patches."""
    if count < n_filters:
        raise ValueError(
            f"only {count} patches can be drawn from images of shape {shape} with "
            f"n_patches={n_patches}, fewer than n_filters={n_filters}."
        )
    if not scatter.any():
        raise ValueError(
            "images must vary within patches; got only flat (constant) patches: there "
            "is nothing to learn."
        )


def kmeans(
    images,
    n_filters=16,
    size=5,
    n_patches=10000,
    whiten=True,
    random_state=None,
    contrast_eps=None,
    whiten_eps=0.1,
):
    """K-means filters of normalised, whitened patches (Coates, Lee & Ng 2011).

    1. Draw ``n_patches`` distinct patches ``z`` uniformly (as :func:`pca`).
    2. Contrast-normalise each: ``x = (z - mean(z)) / sqrt(var(z) + contrast_eps)``.
    3. With ``whiten``, ZCA-whiten: ``m`` is the mean of the ``x``, ``C``
       their covariance, ``W = C_eigvecs diag(1 / sqrt(eigvals + whiten_eps))
       C_eigvecs^T`` (symmetric); without it ``W = I`` and ``m = 0``.
    4. Run k-means (``sklearn.cluster.KMeans``, k-means++, ``n_init=3``) on
       the ``W (x - m)`` to get centroids ``c_k``.
    5. Fold the whitening into the filters: ``w_k = W c_k``.

    What the filters compute, exactly: the linear response of centroid ``k``
    to a patch (Coates et al. then turn distances to the centroids into
    "triangle" activations) is ``c_k . W (x - m) = w_k . x - w_k . m``.
    Correlating ``w_k`` with a raw patch ``z`` gives ``w_k . z``, and since
    every ``w_k`` is zero-mean (patch normalisation and whitening keep all
    data orthogonal to the constant patch), ``w_k . z = w_k . (z - mean(z))
    = sqrt(var(z) + contrast_eps) * w_k . x``.  So the bank reproduces the
    response up to (a) the per-patch contrast normalisation, which is not
    linear and so cannot be folded: responses scale with local contrast, and
    (b) the constant per-filter offset ``w_k . m``, which is dropped (it is
    not zero in general; a downstream scaler or intercept absorbs it).

    Parameters
    ----------
    images : array-like of shape (n_images, height, width)
        Training images, real-valued, finite.  With the default
        ``contrast_eps`` the filters do not depend on their scale:
        ``images * c`` gives the same filters for any ``c > 0`` (up to
        rounding), down to 1e-300 and up to the float64 maximum, as the
        patches are divided by a power of two near their largest magnitude
        first.  A given ``contrast_eps`` is in the images' units, so it
        must scale with them (by ``c**2``) for the filters not to change;
        ``whiten_eps`` applies to the normalised patches and never needs to.
    n_filters : int, default=16
        Number of filters (clusters); at most the number of patches drawn.
    size : int or (p, q), default=5
        Patch size, with at least 2 pixels and at most 11585, so that the
        ``(p*q) x (p*q)`` patch covariance holds at most ``MAX_BANK_BYTES``
        (1 GiB).
    n_patches : int, default=10000
        Patches to draw; all positions are used when there are fewer.
    whiten : bool, default=True
        ZCA-whiten before clustering (and fold the whitening in).
    random_state : int, RandomState instance or None, default=None
        Seed of the patch sampling and of k-means, see :term:`random_state`.
    contrast_eps : float or None, default=None
        Added to each patch's variance before dividing by its square root,
        so flat patches are not blown up into noise.  None scales Coates et
        al.'s 10 (for pixels in 0..255) to the data range:
        ``10 * (images.max() - images.min())**2 / 255**2``, about 0.039 for
        the 0..16 digits.  One so large next to the patches' variance that
        every normalised patch rounds to 0 (1.0 for images of scale 1e-300)
        raises a ValueError.
    whiten_eps : float, default=0.1
        Added to the covariance eigenvalues (Coates et al.'s 0.1; the
        normalised patches have unit scale whatever the data range).

    Returns
    -------
    filters : ndarray of shape (n_filters, p, q)
        The folded filters ``W c_k``, zero-mean, not normalised.

    Examples
    --------
    >>> import numpy as np
    >>> from skconv.filters import kmeans
    >>> images = np.random.RandomState(0).rand(10, 8, 8)
    >>> bank = kmeans(images, n_filters=4, size=3, n_patches=200, random_state=0)
    >>> bank.shape, bool(np.allclose(bank.sum(axis=(1, 2)), 0))
    ((4, 3, 3), True)
    """
    n_filters = check_int(n_filters, "n_filters", 1)
    p, q = _check_size(size)
    if p * q < 2:
        raise ValueError(f"size must hold at least 2 pixels; got {size!r}.")
    _check_patch_pixels(p, q, size)
    check_bool(whiten, "whiten")
    whiten_eps = _check_float(whiten_eps, "whiten_eps")
    if contrast_eps is not None:
        contrast_eps = _check_float(contrast_eps, "contrast_eps")
    rng = check_random_state(random_state)
    # x is in units of 2**exponent (its largest magnitude below 1)
    x, exponent = _flat_centred_patches(images, (p, q), n_patches, n_filters, rng)
    if contrast_eps is None:  # (images were checked by _flat_centred_patches)
        _contrast_normalise(x, exponent, _default_contrast_eps(images, exponent), exponent)
    else:
        _contrast_normalise(x, exponent, contrast_eps, 0)
    if not x.any():
        # contrast_eps over 2**2048 times the patches' squared scale: every
        # normalised patch is 0 and so would be every filter.
        raise ValueError(
            "contrast_eps must be small enough next to the variance of the patches "
            f"to leave them nonzero after contrast normalisation; got {contrast_eps!r}."
        )
    if whiten:
        m = x.mean(axis=0)
        eigvals, eigvecs = np.linalg.eigh(np.cov(x, rowvar=False))
        w = (eigvecs / np.sqrt(np.maximum(eigvals, 0) + whiten_eps)) @ eigvecs.T
        x = (x - m) @ w
    km = KMeans(n_clusters=n_filters, n_init=3, random_state=rng).fit(x)
    filters = km.cluster_centers_ @ w if whiten else km.cluster_centers_
    return _finish(filters.reshape(n_filters, p, q))


# --- registry ----------------------------------------------------------------

FIXED_BANKS = {
    "default": default,
    "dog": dog,
    "edges": edges,
    "gabor": gabor,
    "gaussian": gaussian,
    "laplacian": laplacian,
    "log": log,
    "prewitt": prewitt,
    "random": random,
    "sobel": sobel,
}
LEARNED_BANKS = {"kmeans": kmeans, "pca": pca}


def bank_names():
    """Names of all banks, fixed and learned, sorted.

    Examples
    --------
    >>> from skconv.filters import bank_names
    >>> bank_names()[:4]
    ['default', 'dog', 'edges', 'gabor']
    """
    return sorted([*FIXED_BANKS, *LEARNED_BANKS])


def _check_name(name):
    """``name`` if it names a bank, fixed or learned."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str; got {name!r}.")
    if name not in FIXED_BANKS and name not in LEARNED_BANKS:
        raise ValueError(f"unknown filter bank {name!r}; known banks: {', '.join(bank_names())}.")
    return name


def _lookup(name, learned):
    _check_name(name)
    if learned and name in FIXED_BANKS:
        raise ValueError(
            f"name must be a learned bank; got {name!r}, a fixed filter bank: "
            "use make_bank(name, ...)."
        )
    if not learned and name in LEARNED_BANKS:
        raise ValueError(
            f"name must be a fixed bank; got {name!r}, a learned filter bank: "
            "use learn_bank(name, images, ...)."
        )
    return LEARNED_BANKS[name] if learned else FIXED_BANKS[name]


def _call(name, func, params, *args):
    accepted = [a for a in inspect.signature(func).parameters if a != "images"]
    # The transformer may hand its random_state to every bank; deterministic
    # banks have no use for it.
    if "random_state" not in accepted:
        params.pop("random_state", None)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise TypeError(
            f"filter bank {name!r} got unexpected parameter(s) {', '.join(unknown)}; "
            f"it accepts: {', '.join(accepted)}."
        )
    return _finish(func(*args, **params))


def make_bank(name, **params):
    """Build a fixed filter bank by name.

    Parameters
    ----------
    name : str
        A key of :data:`FIXED_BANKS`.
    **params
        Keyword arguments of that bank's function.  ``random_state`` is
        always accepted and ignored by banks that do not use it.

    Returns
    -------
    filters : ndarray of shape (K, p, q)

    Raises
    ------
    ValueError
        Unknown or learned ``name``.
    TypeError
        A parameter the bank does not accept.

    Examples
    --------
    >>> from skconv.filters import make_bank
    >>> make_bank("gabor", size=5, n_orientations=6).shape
    (12, 5, 5)
    >>> make_bank("sobel", random_state=0).shape
    (4, 3, 3)
    """
    return _call(name, _lookup(name, learned=False), params)


def is_learned(name):
    """Whether the bank ``name`` must be learned from images.

    Raises ValueError for an unknown name.

    Examples
    --------
    >>> from skconv.filters import is_learned
    >>> is_learned("pca"), is_learned("gabor")
    (True, False)
    """
    return _check_name(name) in LEARNED_BANKS


def learn_bank(name, images, **params):
    """Learn a filter bank by name from images.

    Parameters
    ----------
    name : str
        A key of :data:`LEARNED_BANKS`.
    images : array-like of shape (n_images, height, width)
        Training images (float32 or float64; integers are accepted too).
    **params
        Keyword arguments of that bank's function.

    Returns
    -------
    filters : ndarray of shape (K, p, q), float64

    Examples
    --------
    >>> import numpy as np
    >>> from skconv.filters import learn_bank
    >>> images = np.random.RandomState(0).rand(10, 8, 8).astype(np.float32)
    >>> bank = learn_bank("pca", images, n_filters=3, size=3, random_state=0)
    >>> bank.shape, bank.dtype
    ((3, 3, 3), dtype('float64'))
    """
    return _call(name, _lookup(name, learned=True), params, images)


def combine(*banks):
    """Stack filter banks of the same filter size into one.

    Parameters
    ----------
    *banks : array-like of shape (K_i, p, q)
        Banks with the same ``(p, q)``.

    Returns
    -------
    filters : ndarray of shape (sum K_i, p, q)

    Examples
    --------
    >>> from skconv.filters import combine, edges, laplacian
    >>> combine(edges(), laplacian()).shape
    (5, 3, 3)
    """
    if not banks:
        raise ValueError("banks must hold at least one filter bank; got none.")
    arrays = []
    for i, bank in enumerate(banks):
        a = as_real_array(bank, f"bank {i}")
        if a.ndim != 3 or 0 in a.shape:
            raise ValueError(
                f"bank {i} must have shape (K, p, q) with no empty axis; got {a.shape}."
            )
        check_finite(a, f"bank {i}")
        arrays.append(a)
    sizes = sorted({a.shape[1:] for a in arrays})
    if len(sizes) > 1:
        raise ValueError(
            f"banks must have one filter size; got sizes {sizes}: pass them to "
            "the transformer as a list of banks instead, which allows different sizes."
        )
    return _finish(np.concatenate(arrays))


# --- the transformer's filters and filter_params -----------------------------


# Banks the transformer's fit learns or draws and keeps in ``filters_``: the
# learned banks, and "random", drawn once like RBFSampler's random weights.
FITTED_BANKS = frozenset({*LEARNED_BANKS, "random"})


def _names(spec):
    items = [spec] if isinstance(spec, str) else spec if isinstance(spec, (list, tuple)) else []
    return {item for item in items if isinstance(item, str)}


def _learns(spec):
    """Whether a ``filters`` parameter includes a bank fit learns or draws (never raises)."""
    return bool(_names(spec) & FITTED_BANKS)


def _learns_from_images(spec):
    """Whether a ``filters`` parameter includes a bank learned from the images (never raises)."""
    return bool(_names(spec) & set(LEARNED_BANKS))


def _check_filters(value, name):
    """A (p, q), (K, p, q) or (K, p, q, c) filter array as a float64 copy, 2-D as (1, p, q)."""
    array = as_real_array(value, name)
    if array.ndim not in (2, 3, 4):
        raise ValueError(
            f"{name} must be 2-D (p, q), 3-D (n_filters, p, q) or 4-D "
            f"(n_filters, p, q, n_channels); got {array.ndim}-D with shape {array.shape}."
        )
    if 0 in array.shape:
        raise ValueError(f"{name} must not be empty; got shape {array.shape}.")
    check_finite(array, name)
    array = np.array(array, dtype=np.float64)  # a copy: the user's array stays theirs
    return array[None] if array.ndim == 2 else array


def _bank_kwargs(name, kwargs):
    _check_name(name)
    if not isinstance(kwargs, dict):
        raise TypeError(
            f"filter_params[{name!r}] must be a dict of keyword arguments of bank "
            f"{name!r}; got {kwargs!r}."
        )
    if "random_state" in kwargs:
        raise ValueError(
            f"filter_params for bank {name!r} must not contain 'random_state'; got "
            f"{kwargs!r}: set the transformer's random_state parameter instead."
        )
    return dict(kwargs)


def _spec_items(spec, params):
    """A transformer's ``filters`` and ``filter_params`` as a list of items.

    Each item is (bank name, kwargs) or (None, float64 filter array).
    """
    params = {} if params is None else params
    if isinstance(spec, str):
        return [(spec, _bank_kwargs(spec, params))]
    if not isinstance(spec, (list, tuple)):
        if params:
            raise ValueError(
                "filter_params only applies to named banks, but filters is an "
                f"array; got filter_params={params!r}. Set filter_params=None."
            )
        return [(None, _check_filters(spec, "filters"))]
    if len(spec) == 0:
        raise ValueError(
            "filters must hold at least one filter array or bank name; got an empty "
            f"list (known banks: {', '.join(bank_names())})."
        )
    names = {item for item in spec if isinstance(item, str)}
    for key in params:
        if key not in names:
            raise ValueError(
                "when filters is a list, filter_params maps the bank names of that "
                "list to dicts of keyword arguments, e.g. {'gabor': {'size': 5}}; got "
                f"key {key!r}, which is not a bank name in filters (names there: "
                f"{sorted(names)})."
            )
    return [
        (item, _bank_kwargs(item, params.get(item, {})))
        if isinstance(item, str)
        else (None, _check_filters(item, f"filters[{i}]"))
        for i, item in enumerate(spec)
    ]


def _build_banks(items, random_state, images, context):
    """The float64 banks of ``items``, drawn from one generator in list order.

    ``images`` returns the (n, h, w) training images (called only for learned
    banks); ``context`` describes them in the errors of learned banks.  Named
    deterministic banks come from a small cache, read-only: the transformer
    rebuilds them at every transform.
    """
    rng = None
    banks = []
    for name, value in items:
        if name is None:
            banks.append(value)
            continue
        try:
            if name not in FITTED_BANKS:
                bank = _cached_bank(name, value)
            else:
                rng = check_random_state(random_state) if rng is None else rng
                if name in LEARNED_BANKS:
                    bank = learn_bank(name, images(), random_state=rng, **value)
                else:
                    bank = make_bank(name, random_state=rng, **value)
        except (TypeError, ValueError) as exc:
            where = f"filter bank {name!r} with filter_params {value!r}"
            if name in LEARNED_BANKS:
                where += "; " + context
            raise contextual(exc, where) from exc
        banks.append(np.asarray(bank, dtype=np.float64))
    return banks


# name + frozen kwargs -> read-only bank; a few banks are all a program uses.
# Bounded in bytes too: a bank may be up to MAX_BANK_BYTES, and 32 of those
# would hold 32 GiB.  A bank larger than the whole budget is not kept (its
# build costs little next to a convolution with it).
_BANK_CACHE = OrderedDict()
_BANK_CACHE_SIZE = 32
_BANK_CACHE_BYTES = 64 * 2**20
_BANK_CACHE_LOCK = threading.Lock()


def _reset_bank_cache_after_fork():
    """A forked child starts with an empty bank cache and a fresh lock (see
    ``_cache._reset_after_fork``: the parent's lock may be held for good)."""
    global _BANK_CACHE, _BANK_CACHE_LOCK
    _BANK_CACHE = OrderedDict()
    _BANK_CACHE_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_bank_cache_after_fork)


def _freeze(value):
    """A hashable key for a keyword argument, None when it has no safe key.

    Types are part of the key: 3 and 3.0 are equal and hash alike, but a
    bank accepts one and refuses the other.
    """
    if isinstance(value, (bool, str, type(None))):
        return (type(value), value)
    if isinstance(value, (Real, np.integer)):
        return (type(value), value) if value == value else None  # NaN != NaN
    if isinstance(value, (list, tuple)):
        items = tuple(_freeze(v) for v in value)
        return None if None in items else (type(value), items)
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf" and value.size <= 256:
        return (np.ndarray, value.dtype.str, value.shape, value.tobytes())
    return None


def _cached_bank(name, kwargs):
    """``make_bank(name, **kwargs)`` for a deterministic bank, built once per key."""
    frozen = [(k, _freeze(v)) for k, v in sorted(kwargs.items())]
    if any(f is None for _, f in frozen):
        return make_bank(name, **kwargs)
    key = (name, tuple(frozen))
    with _BANK_CACHE_LOCK:
        bank = _BANK_CACHE.get(key)
        if bank is not None:
            _BANK_CACHE.move_to_end(key)
            return bank
    bank = make_bank(name, **kwargs)
    bank.flags.writeable = False
    if bank.nbytes > _BANK_CACHE_BYTES:
        return bank
    with _BANK_CACHE_LOCK:
        _BANK_CACHE[key] = bank
        while (
            len(_BANK_CACHE) > _BANK_CACHE_SIZE
            or sum(b.nbytes for b in _BANK_CACHE.values()) > _BANK_CACHE_BYTES
        ):
            _BANK_CACHE.popitem(last=False)
    return bank
