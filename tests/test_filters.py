"""Tests for skconv.filters, each against an oracle written independently here."""

import math
import warnings
from collections import OrderedDict

import numpy as np
import pytest
from scipy import ndimage
from sklearn.cluster import KMeans

from skconv import filters as F
from skconv.filters import _sample_patches


def assert_value_error_says(call, words):
    """``call()`` raises a ValueError whose message holds every one of ``words``."""
    with pytest.raises(ValueError) as info:
        call()
    for word in words:
        assert word in str(info.value)


def naive_correlate(image, kernel):
    """Valid-mode cross-correlation, one output pixel at a time."""
    p, q = kernel.shape
    h, w = image.shape
    out = np.zeros((h - p + 1, w - q + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            total = 0.0
            for u in range(p):
                for v in range(q):
                    total += image[i + u, j + v] * kernel[u, v]
            out[i, j] = total
    return out


def ramp(shape, d_row, d_col):
    rows, cols = np.indices(shape)
    return d_row * rows + d_col * cols


# --- fixed banks: shapes, dtype, layout --------------------------------------

EXPECTED_SHAPES = {
    "default": (9, 3, 3),
    "dog": (1, 7, 7),
    "edges": (4, 3, 3),
    "gabor": (8, 7, 7),
    "gaussian": (3, 5, 5),
    "laplacian": (1, 3, 3),
    "log": (2, 7, 7),
    "prewitt": (4, 3, 3),
    "random": (8, 3, 3),
    "sobel": (4, 3, 3),
}
ZERO_MEAN = [
    "default",
    "dog",
    "edges",
    "gabor",
    "laplacian",
    "log",
    "prewitt",
    "random",
    "sobel",
]


def test_fixed_bank_names_match_expectations():
    assert sorted(F.FIXED_BANKS) == sorted(EXPECTED_SHAPES)


@pytest.mark.parametrize("name", sorted(EXPECTED_SHAPES))
def test_fixed_bank_shape_dtype_layout(name):
    bank = F.FIXED_BANKS[name]()
    assert bank.shape == EXPECTED_SHAPES[name]
    assert bank.dtype == np.float64
    assert bank.flags.c_contiguous
    assert np.isfinite(bank).all()


@pytest.mark.parametrize("name", ZERO_MEAN)
def test_zero_mean_banks(name):
    bank = F.FIXED_BANKS[name]()
    np.testing.assert_allclose(bank.sum(axis=(1, 2)), 0, atol=1e-12)
    assert np.all(np.abs(bank).max(axis=(1, 2)) > 0)


@pytest.mark.parametrize(
    "bank", [F.gabor(), F.gabor(size=(5, 9), frequencies=0.4), F.random(5, (2, 3), 0)]
)
def test_unit_norm_banks(bank):
    np.testing.assert_allclose(np.sqrt((bank**2).sum(axis=(1, 2))), 1, rtol=1e-12)


@pytest.mark.parametrize(
    "call, shape",
    [
        (lambda: F.edges(5, diagonals=False), (2, 5, 5)),
        (lambda: F.prewitt(7), (4, 7, 7)),
        (lambda: F.laplacian(5), (1, 5, 5)),
        (lambda: F.gaussian((3, 4), [1.0, 2.0]), (2, 3, 4)),
        (
            lambda: F.gabor((5, 6), n_orientations=3, frequencies=[0.1, 0.2, 0.4]),
            (9, 5, 6),
        ),
        (lambda: F.log((3, 5), 1.5), (1, 3, 5)),
        (lambda: F.dog(9, (1.0, 2.0)), (2, 9, 9)),
        (lambda: F.random(3, (1, 2), 0), (3, 1, 2)),
        (lambda: F.default(5), (9, 5, 5)),
    ],
)
def test_fixed_bank_parameters_set_shape(call, shape):
    bank = call()
    assert bank.shape == shape and bank.dtype == np.float64 and bank.flags.c_contiguous


# --- edges and Laplacian -----------------------------------------------------

SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=float)


def test_sobel_matches_hand_written_kernels():
    bank = F.sobel()
    np.testing.assert_array_equal(bank[0], SOBEL_X)
    np.testing.assert_array_equal(bank[1], SOBEL_X.T)
    np.testing.assert_array_equal(bank[2], [[-2, -1, 0], [-1, 0, 1], [0, 1, 2]])
    np.testing.assert_array_equal(bank[3], [[0, 1, 2], [-1, 0, 1], [-2, -1, 0]])
    np.testing.assert_array_equal(F.edges(kind="sobel"), bank)
    np.testing.assert_array_equal(F.edges(diagonals=False), bank[:2])


def test_prewitt_matches_hand_written_kernels():
    bank = F.prewitt()
    x = np.array([[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]], dtype=float)
    np.testing.assert_array_equal(bank[0], x)
    np.testing.assert_array_equal(bank[1], x.T)
    np.testing.assert_array_equal(bank[2], [[-1, -1, 0], [-1, 0, 1], [0, 1, 1]])
    np.testing.assert_array_equal(bank[3], [[0, 1, 1], [-1, 0, 1], [-1, -1, 0]])


def test_sobel_5x5_matches_opencv_kernel():
    # cv2.getDerivKernels(1, 0, 5): smoothing [1, 4, 6, 4, 1],
    # derivative [-1, -2, 0, 2, 1]
    expected = np.outer([1, 4, 6, 4, 1], [-1, -2, 0, 2, 1])
    bank = F.sobel(5)
    np.testing.assert_array_equal(bank[0], expected)
    np.testing.assert_array_equal(bank[1], expected.T)


def test_prewitt_5x5_is_box_smoothed():
    # [1, 1, 1] * [1, 1, 1] = [1, 2, 3, 2, 1]
    # [-1, 0, 1] * [1, 1, 1] = [-1, -1, 0, 1, 1]
    expected = np.outer([1, 2, 3, 2, 1], [-1, -1, 0, 1, 1])
    np.testing.assert_array_equal(F.prewitt(5)[0], expected)
    np.testing.assert_array_equal(F.prewitt(5)[1], expected.T)


@pytest.mark.parametrize("kind", ["sobel", "prewitt"])
@pytest.mark.parametrize("size", [3, 5, 7])
def test_edge_orientation_on_ramps(kind, size):
    """Each derivative responds positively to its own ramp and not at all to the
    ramp along the orthogonal direction (cross-correlation, rows grow downwards)."""
    bank = F.edges(size, kind=kind)
    shape = (size + 4, size + 5)
    directions = [(0, 1), (1, 0), (1, 1), (-1, 1)]  # (d_row, d_col) per filter
    orthogonal = [(1, 0), (0, 1), (-1, 1), (1, 1)]
    for k, (d, o) in enumerate(zip(directions, orthogonal, strict=True)):
        along = naive_correlate(ramp(shape, *d), bank[k])
        np.testing.assert_allclose(along, along[0, 0])  # a ramp has a constant derivative
        assert along[0, 0] > 0
        np.testing.assert_allclose(naive_correlate(ramp(shape, *o), bank[k]), 0, atol=1e-9)


def test_laplacian_3x3_is_five_point_stencil():
    np.testing.assert_array_equal(F.laplacian()[0], [[0, 1, 0], [1, -4, 1], [0, 1, 0]])


@pytest.mark.parametrize("size", [3, 5, 7])
def test_laplacian_of_quadratic_and_linear_images(size):
    """The Laplacian of x^2 + y^2 is 4 everywhere and that of a plane is 0; the
    larger stencils are smoothed by a binomial kernel of total weight
    4 ** (size - 3)."""
    kernel = F.laplacian(size)[0]
    rows, cols = np.indices((size + 3, size + 3))
    quad = naive_correlate((rows - 2.5) ** 2 + (cols + 1.0) ** 2, kernel)
    np.testing.assert_allclose(quad, 4 * 4 ** (size - 3))
    np.testing.assert_allclose(naive_correlate(3 * rows - 2 * cols, kernel), 0, atol=1e-9)
    assert kernel[size // 2, size // 2] < 0


# --- Gaussian, LoG, DoG ------------------------------------------------------


def scipy_gaussian_kernel(size, sigma):
    """Kernel of scipy's gaussian_filter truncated to the window, from an impulse."""
    impulse = np.zeros((size, size))
    impulse[size // 2, size // 2] = 1
    radius = size // 2
    return ndimage.gaussian_filter(impulse, sigma, mode="constant", truncate=radius / sigma)


@pytest.mark.parametrize("size", [3, 5, 9])
def test_gaussian_matches_scipy_and_sums_to_one(size):
    sigmas = (0.5, 1.0, 2.0, 7.0)
    bank = F.gaussian(size, sigmas)
    np.testing.assert_allclose(bank.sum(axis=(1, 2)), 1, rtol=1e-12)
    for k, s in enumerate(sigmas):
        np.testing.assert_allclose(bank[k], scipy_gaussian_kernel(size, s), rtol=1e-10)


def test_gaussian_even_and_rectangular_windows_are_centred():
    g = F.gaussian((4, 6), 1.0)[0]
    np.testing.assert_allclose(g, g[::-1, ::-1])
    np.testing.assert_allclose(g.sum(), 1)
    assert g[1:3, 2:4].min() == g.max()


@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_log_matches_finite_difference_laplacian_of_gaussian(sigma):
    """sigma^2 * Laplacian(G) from a fine finite-difference grid, made zero-mean."""
    size, h = 7, 0.01
    sub = int(round(1 / h))
    r = np.arange(-(size // 2 + 1) * sub, (size // 2 + 1) * sub + 1) * h
    y, x = np.meshgrid(r, r, indexing="ij")
    g = np.exp(-(x**2 + y**2) / (2 * sigma**2)) / (2 * np.pi * sigma**2)
    i = np.arange(1, size + 1) * sub  # the integer points of the window
    lap = (
        g[np.ix_(i - 1, i)]
        + g[np.ix_(i + 1, i)]
        + g[np.ix_(i, i - 1)]
        + g[np.ix_(i, i + 1)]
        - 4 * g[np.ix_(i, i)]
    ) / h**2
    expected = sigma**2 * lap
    expected -= expected.mean()
    got = F.log(size, sigma)[0]
    np.testing.assert_allclose(got, expected, atol=1e-4 * np.abs(expected).max())
    assert got[size // 2, size // 2] < 0


@pytest.mark.parametrize("size", [5, 7])
def test_dog_matches_difference_of_scipy_gaussians(size):
    sigmas, ratio = (0.8, 1.5), 1.6
    bank = F.dog(size, sigmas, ratio)
    for k, s in enumerate(sigmas):
        expected = scipy_gaussian_kernel(size, s) - scipy_gaussian_kernel(size, ratio * s)
        np.testing.assert_allclose(bank[k], expected, atol=1e-14)
        assert bank[k, size // 2, size // 2] > 0


def test_dog_approximates_negative_log():
    """Marr & Hildreth: DoG with ratio 1.6 is close to a negative LoG."""
    corr = np.corrcoef(F.log(9, 2.0)[0].ravel(), F.dog(9, 2.0 / 1.26, 1.6)[0].ravel())[0, 1]
    assert corr < -0.99


# --- Gabor -------------------------------------------------------------------


def grating(shape, frequency, theta):
    rows, cols = np.indices(shape)
    return np.cos(2 * np.pi * frequency * (cols * np.cos(theta) + rows * np.sin(theta)))


@pytest.mark.parametrize("size", [5, 7])
def test_gabor_prefers_its_own_orientation(size):
    n_orientations, frequencies = 4, (0.15, 0.3)
    bank = F.gabor(size, n_orientations, frequencies)
    for i, f in enumerate(frequencies):
        for k in range(n_orientations):
            theta = np.pi * k / n_orientations
            kernel = bank[i * n_orientations + k]
            matched = np.abs(naive_correlate(grating((20, 20), f, theta), kernel)).max()
            crossed = np.abs(naive_correlate(grating((20, 20), f, theta + np.pi / 2), kernel))
            assert matched > 2 * crossed.max(), (f, k, matched, crossed.max())


def test_gabor_flat_image_gives_zero():
    flat = np.full((12, 12), 3.7)
    for kernel in F.gabor(7, normalize=False):
        np.testing.assert_allclose(naive_correlate(flat, kernel), 0, atol=1e-12)


@pytest.mark.parametrize("f", [0.1, 0.3])  # sigma capped by the window, and not
def test_gabor_matches_documented_formula(f):
    """Written out from the docstring: default sigma min(0.56 / f, min(p, q) / 3)."""
    p, q, theta = 7, 9, np.pi / 3
    rows, cols = np.mgrid[0:p, 0:q]
    y, x = rows - (p - 1) / 2, cols - (q - 1) / 2
    sigma = min(0.56 / f, min(p, q) / 3)
    g = np.exp(-(x**2 + y**2) / (2 * sigma**2)) * np.cos(
        2 * np.pi * f * (x * math.cos(theta) + y * math.sin(theta))
    )
    g -= g.mean()
    g /= np.linalg.norm(g)
    np.testing.assert_allclose(F.gabor((p, q), 3, f)[1], g, atol=1e-12)
    np.testing.assert_allclose(F.gabor((p, q), 3, f, sigma=sigma)[1], g, atol=1e-12)


def test_gabor_size_never_grows_with_low_frequency():
    assert F.gabor(5, n_orientations=2, frequencies=0.01).shape == (2, 5, 5)


def test_gabor_normalize_false_keeps_scale_but_zero_mean():
    raw = F.gabor(7, normalize=False)
    np.testing.assert_allclose(raw.sum(axis=(1, 2)), 0, atol=1e-12)
    norms = np.linalg.norm(raw, axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(raw / norms, F.gabor(7))
    assert not np.allclose(norms, 1)


# --- random and default ------------------------------------------------------


def test_random_is_seeded():
    a = F.random(6, 4, random_state=0)
    np.testing.assert_array_equal(a, F.random(6, 4, random_state=0))
    np.testing.assert_array_equal(a, F.random(6, 4, random_state=np.random.RandomState(0)))
    assert not np.allclose(a, F.random(6, 4, random_state=1))
    np.testing.assert_allclose(a.sum(axis=(1, 2)), 0, atol=1e-12)


def test_default_bank_contents():
    bank = F.default(5)
    np.testing.assert_array_equal(
        bank, np.concatenate([F.edges(5), F.laplacian(5), F.gabor(5, 4, 0.25)])
    )
    np.testing.assert_array_equal(
        F.make_bank("default", random_state=0), F.make_bank("default", random_state=1)
    )


# --- argument validation -----------------------------------------------------


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda: F.edges(4), ValueError, ["size", "4", "odd"]),
        (lambda: F.edges(1), ValueError, ["size", "1", "[3, 31]"]),
        (lambda: F.edges(33), ValueError, ["size", "33", "[3, 31]"]),
        (lambda: F.edges(3.0), TypeError, ["size", "3.0", "int"]),
        (lambda: F.edges(True), TypeError, ["size", "True"]),
        (lambda: F.edges(kind="canny"), ValueError, ["kind", "canny", "sobel"]),
        (lambda: F.edges(diagonals="yes"), TypeError, ["diagonals", "yes", "bool"]),
        (lambda: F.laplacian((3, 3)), TypeError, ["size", "(3, 3)"]),
        (lambda: F.gaussian(0), ValueError, ["size", "0", "[1, 1024]"]),
        (lambda: F.gaussian(10**9), ValueError, ["size", "1000000000", "[1, 1024]"]),
        (lambda: F.gaussian((3, 3, 3)), ValueError, ["size", "(3, 3, 3)", "pair"]),
        (lambda: F.gaussian(3, ()), ValueError, ["sigmas", "empty"]),
        (lambda: F.gaussian(3, -1.0), ValueError, ["sigmas", "-1.0", "> 0"]),
        (lambda: F.gaussian(3, [1.0, np.nan]), ValueError, ["sigmas", "nan", "finite"]),
        (lambda: F.gaussian(3, "1"), TypeError, ["sigmas", "'1'"]),
        (lambda: F.gabor(2), ValueError, ["size", "2", "[3, 1024]"]),
        (lambda: F.gabor(n_orientations=0), ValueError, ["n_orientations", "0"]),
        (lambda: F.gabor(frequencies=0.6), ValueError, ["frequencies", "0.6", "0.5"]),
        (lambda: F.gabor(sigma=0), ValueError, ["sigma", "0"]),
        (lambda: F.gabor(sigma=(1.0, 2.0)), TypeError, ["sigma", "(1.0, 2.0)"]),
        (lambda: F.dog(ratio=[2.0]), TypeError, ["ratio", "[2.0]"]),
        (lambda: F.gabor(normalize=1), TypeError, ["normalize", "1", "bool"]),
        (lambda: F.log(7, 0.0), ValueError, ["sigmas", "0.0"]),
        (lambda: F.dog(ratio=1.0), ValueError, ["ratio", "1.0", "> 1"]),
        (lambda: F.random(0), ValueError, ["n_filters", "0"]),
        (lambda: F.random(2, 1), ValueError, ["size", "1", "2 pixels"]),
        (lambda: F.random(2, 3, random_state="x"), ValueError, ["x"]),
        (lambda: F.default(4), ValueError, ["size", "4", "odd"]),
    ],
)
def test_fixed_bank_argument_errors(call, exc, words):
    with pytest.raises(exc) as info:
        call()
    for word in words:
        assert word in str(info.value)


# --- registry ----------------------------------------------------------------


def test_bank_names_sorted_and_complete():
    names = F.bank_names()
    assert names == sorted(names)
    assert set(names) == set(EXPECTED_SHAPES) | {"pca", "kmeans"}
    assert sorted(F.LEARNED_BANKS) == ["kmeans", "pca"]


def test_is_learned():
    assert F.is_learned("pca") and F.is_learned("kmeans")
    assert not any(F.is_learned(n) for n in EXPECTED_SHAPES)
    with pytest.raises(ValueError, match="unknown filter bank 'pca2'"):
        F.is_learned("pca2")
    with pytest.raises(TypeError, match="name"):
        F.is_learned(3)


@pytest.mark.parametrize("name", sorted(EXPECTED_SHAPES))
def test_make_bank_matches_direct_call(name):
    func = F.FIXED_BANKS[name]
    seeded = {"random_state": 0} if name == "random" else {}
    np.testing.assert_array_equal(F.make_bank(name, random_state=0), func(**seeded))


def test_make_bank_forwards_params_and_random_state():
    np.testing.assert_array_equal(F.make_bank("sobel", size=5), F.edges(5, "sobel"))
    np.testing.assert_array_equal(
        F.make_bank("prewitt", diagonals=False), F.edges(3, "prewitt", False)
    )
    np.testing.assert_array_equal(
        F.make_bank("random", n_filters=3, random_state=7), F.random(3, random_state=7)
    )
    # deterministic banks ignore the transformer's random_state
    np.testing.assert_array_equal(F.make_bank("edges", random_state=7), F.edges())


def test_make_bank_unknown_name_lists_known_names():
    with pytest.raises(ValueError) as info:
        F.make_bank("sobell")
    assert "sobell" in str(info.value)
    for name in F.bank_names():
        assert name in str(info.value)


def test_make_bank_unknown_keyword_names_it_and_accepted_ones():
    with pytest.raises(TypeError) as info:
        F.make_bank("gabor", sizes=5)
    message = str(info.value)
    assert "sizes" in message
    for accepted in ["size", "n_orientations", "frequencies", "sigma", "normalize"]:
        assert accepted in message


def test_make_bank_rejects_learned_and_learn_bank_rejects_fixed():
    with pytest.raises(ValueError, match="learn_bank"):
        F.make_bank("pca")
    with pytest.raises(ValueError, match="make_bank"):
        F.learn_bank("gabor", np.zeros((1, 8, 8)))
    with pytest.raises(TypeError, match="name"):
        F.make_bank(None)


def test_combine():
    a, b = F.edges(), F.random(2, 3, 0)
    out = F.combine(a, b.tolist())
    np.testing.assert_array_equal(out, np.vstack([a, b]))
    assert out.dtype == np.float64 and out.flags.c_contiguous
    np.testing.assert_array_equal(
        F.combine(np.arange(18).reshape(2, 3, 3)), np.arange(18.0).reshape(2, 3, 3)
    )


@pytest.mark.parametrize(
    "banks, exc, words",
    [
        ((F.edges(), F.edges(5)), ValueError, ["(3, 3)", "(5, 5)", "list"]),
        ((), ValueError, ["at least one"]),
        ((F.edges()[0],), ValueError, ["bank 0", "(K, p, q)"]),
        ((F.edges(), np.zeros((0, 3, 3))), ValueError, ["bank 1"]),
        ((np.full((1, 3, 3), np.inf),), ValueError, ["finite"]),
        ((np.ones((1, 3, 3), dtype=complex),), TypeError, ["bank 0", "complex"]),
        ((np.array([[["a"]]]),), TypeError, ["bank 0", "real numbers"]),
    ],
)
def test_combine_errors(banks, exc, words):
    with pytest.raises(exc) as info:
        F.combine(*banks)
    for word in words:
        assert word in str(info.value)


def test_bool_banks_and_images_read_as_numbers_like_conv2d():
    # conv2d reads bool arrays as 0/1 (dtype kinds "fiub"); the banks do too.
    mask = np.eye(3, dtype=bool)[None]
    np.testing.assert_array_equal(
        F.combine(mask, F.edges()), np.concatenate([np.eye(3)[None], F.edges()])
    )
    images = np.random.RandomState(0).rand(4, 8, 8) > 0.5
    for name in ("pca", "kmeans"):
        np.testing.assert_array_equal(
            F.learn_bank(name, images, n_filters=2, size=3, n_patches=100, random_state=0),
            F.learn_bank(
                name, images.astype(float), n_filters=2, size=3, n_patches=100, random_state=0
            ),
        )


# --- patch sampling ----------------------------------------------------------


def all_windows(images, p, q):
    b, h, w = images.shape
    return [
        images[n, i : i + p, j : j + q]
        for n in range(b)
        for i in range(h - p + 1)
        for j in range(w - q + 1)
    ]


@pytest.fixture
def images():
    return np.random.RandomState(42).rand(6, 9, 10)


def test_sample_patches_are_distinct_image_windows(images):
    patches = _sample_patches(images, (3, 4), 50, random_state=0)
    assert patches.shape == (50, 3, 4) and patches.dtype == np.float64
    windows = np.array(all_windows(images, 3, 4)).reshape(-1, 12)
    # each patch is exactly one window (random pixels make windows unique)
    matches = (patches.reshape(50, 1, 12) == windows[None]).all(axis=2)
    assert (matches.sum(axis=1) == 1).all()
    assert len(set(np.nonzero(matches)[1])) == 50
    np.testing.assert_array_equal(patches, _sample_patches(images, (3, 4), 50, random_state=0))
    assert not np.array_equal(patches, _sample_patches(images, (3, 4), 50, random_state=1))


def test_sample_patches_takes_every_position_when_asked_for_more(images):
    patches = _sample_patches(images.astype(np.float32), 5, 10**6, random_state=0)
    windows = np.array(all_windows(images.astype(np.float32), 5, 5), dtype=np.float64)
    assert patches.dtype == np.float64
    assert patches.shape == windows.shape == (6 * 5 * 6, 5, 5)
    np.testing.assert_array_equal(
        np.unique(patches.reshape(len(patches), -1), axis=0),
        np.unique(windows.reshape(len(windows), -1), axis=0),
    )


def test_sample_patches_is_roughly_uniform_over_images():
    images = np.arange(4)[:, None, None] * np.ones((4, 40, 40))  # image n is filled with n
    patches = _sample_patches(images, 3, 2000, random_state=0)
    counts = np.bincount(patches[:, 0, 0].astype(int), minlength=4)
    assert counts.sum() == 2000 and counts.min() > 400


# --- PCA ---------------------------------------------------------------------


def pca_oracle(patches, n_filters):
    """Eigenvectors of the second moment of mean-removed patches (PCANet)."""
    x = patches.reshape(len(patches), -1)
    x = x - x.mean(axis=1, keepdims=True)
    eigvals, eigvecs = np.linalg.eigh(x.T @ x)
    return eigvecs[:, ::-1][:, :n_filters].T, eigvals[::-1]


def test_pca_matches_eigenvectors_of_sampled_patches(images):
    bank = F.pca(images, n_filters=6, size=3, n_patches=300, random_state=0)
    assert bank.shape == (6, 3, 3) and bank.dtype == np.float64 and bank.flags.c_contiguous
    flat = bank.reshape(6, -1)
    np.testing.assert_allclose(flat @ flat.T, np.eye(6), atol=1e-12)
    np.testing.assert_allclose(flat.sum(axis=1), 0, atol=1e-12)
    expected, eigvals = pca_oracle(_sample_patches(images, 3, 300, random_state=0), 6)
    assert np.all(np.diff(eigvals[:7]) < 0)  # distinct, so components are defined up to sign
    np.testing.assert_allclose(np.abs(np.sum(flat * expected, axis=1)), 1, atol=1e-8)
    # sign convention: the largest-magnitude entry is positive
    assert np.all(flat[np.arange(6), np.abs(flat).argmax(axis=1)] > 0)


def test_pca_reproducible_and_float32_input(images):
    a = F.pca(images, 4, 3, 200, random_state=3)
    b = F.pca(images.astype(np.float32), 4, 3, 200, random_state=3)
    assert b.dtype == np.float64
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_array_equal(a, F.pca(images, 4, 3, 200, random_state=3))
    assert not np.allclose(a, F.pca(images, 4, 3, 200, random_state=4))


def test_pca_on_digits_first_filter_is_smooth():
    """Sanity on real data: the leading PCANet filter of digit patches is a
    low-frequency pattern, not noise."""
    from sklearn.datasets import load_digits

    digits = load_digits().images
    first = F.pca(digits, 4, 3, random_state=0)[0]
    # neighbouring weights correlate positively
    neighbours = np.sum(first[:, :-1] * first[:, 1:]) + np.sum(first[:-1] * first[1:])
    assert neighbours > 0


@pytest.mark.parametrize(
    "kwargs, images_shape, words",
    [
        ({"size": 5}, (2, 4, 8), ["4x8", "5x5"]),
        ({"size": (2, 9)}, (2, 8, 8), ["8x8", "2x9"]),
        ({"n_filters": 5, "size": 3}, (1, 4, 4), ["only 4 patches", "n_filters=5"]),
        (
            {"n_filters": 5, "size": 3, "n_patches": 3},
            (3, 8, 8),
            ["only 3", "n_filters=5"],
        ),
        ({"n_patches": 0}, (3, 8, 8), ["n_patches", "0"]),
    ],
)
@pytest.mark.parametrize("name", ["pca", "kmeans"])
def test_learned_bank_size_errors(name, kwargs, images_shape, words):
    imgs = np.random.RandomState(0).rand(*images_shape)
    with pytest.raises(ValueError) as info:
        F.learn_bank(name, imgs, **kwargs)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("name", ["pca", "kmeans"])
@pytest.mark.parametrize(
    "bad, exc, words",
    [
        (np.zeros((8, 8)), ValueError, ["(n_images, height, width)", "(8, 8)"]),
        (np.zeros((0, 8, 8)), ValueError, ["n_images >= 1"]),
        (np.full((2, 8, 8), np.nan), ValueError, ["finite"]),
        (np.zeros((2, 8, 8), dtype=complex), TypeError, ["complex"]),
        (np.ones((2, 8, 8)), ValueError, ["flat"]),
    ],
)
def test_learned_bank_image_errors(name, bad, exc, words):
    with pytest.raises(exc) as info:
        F.learn_bank(name, bad, n_filters=2, size=3)
    for word in words:
        assert word in str(info.value)


def test_pca_n_filters_limited_by_patch_dimension(images):
    with pytest.raises(ValueError, match=r"at most p \* q - 1 = 8 .* got 9"):
        F.pca(images, n_filters=9, size=3)
    assert F.pca(images, n_filters=8, size=3, random_state=0).shape == (8, 3, 3)


def test_learn_bank_unknown_keyword():
    with pytest.raises(TypeError) as info:
        F.learn_bank("kmeans", np.zeros((1, 8, 8)), n_clusters=4)
    assert "n_clusters" in str(info.value) and "n_filters" in str(info.value)
    assert "images" not in str(info.value).split("accepts:")[1]


# --- k-means -----------------------------------------------------------------


def coates_pipeline(images, size, n_patches, seed, contrast_eps, whiten_eps=0.1):
    """Normalised patches, their mean and ZCA matrix, from Coates et al.'s recipe."""
    z = _sample_patches(images, size, n_patches, np.random.RandomState(seed))
    z = z.reshape(len(z), -1)
    x = (z - z.mean(1, keepdims=True)) / np.sqrt(z.var(1, keepdims=True) + contrast_eps)
    m = x.mean(0)
    d, v = np.linalg.eigh(np.cov(x.T))
    w = v @ np.diag(1 / np.sqrt(np.maximum(d, 0) + whiten_eps)) @ v.T
    return z, x, m, w


def test_kmeans_folded_filters_reproduce_whitened_feature(images):
    size, n_patches, eps = 3, 400, 0.01
    bank = F.kmeans(images, 5, size, n_patches, random_state=0, contrast_eps=eps)
    assert bank.shape == (5, 3, 3) and bank.dtype == np.float64 and bank.flags.c_contiguous
    z, x, m, w = coates_pipeline(images, size, n_patches, 0, eps)
    filters = bank.reshape(5, -1)
    # the centroids in whitened space are c = W^-1 w_k ...
    centroids = np.linalg.solve(w, filters.T).T
    # ... and they are k-means centroids of the whitened patches: each is the
    # mean of the points nearest to it
    y = (x - m) @ w
    labels = ((y[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
    assert len(np.unique(labels)) == 5
    for k in range(5):
        np.testing.assert_allclose(centroids[k], y[labels == k].mean(0), atol=1e-8)
    for i in range(0, len(x), 37):
        # plain correlation of the folded filter with a normalised patch, minus
        # the dropped offset w_k . m, is Coates et al.'s c_k . W (x - m)
        folded = np.array([np.sum(bank[k] * x[i].reshape(3, 3)) for k in range(5)])
        np.testing.assert_allclose(folded - filters @ m, centroids @ (w @ (x[i] - m)), atol=1e-9)
        # on the raw patch, it differs only by the per-patch contrast factor
        raw = np.array([np.sum(bank[k] * z[i].reshape(3, 3)) for k in range(5)])
        np.testing.assert_allclose(raw / np.sqrt(z[i].var() + eps), folded, atol=1e-9)


def test_kmeans_without_whitening_gives_centroids_of_normalised_patches(images):
    bank = F.kmeans(images, 4, 3, 300, whiten=False, random_state=1, contrast_eps=0.01)
    _, x, _, _ = coates_pipeline(images, 3, 300, 1, 0.01)
    c = bank.reshape(4, -1)
    labels = ((x[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
    for k in range(4):
        np.testing.assert_allclose(c[k], x[labels == k].mean(0), atol=1e-8)
    np.testing.assert_allclose(c.sum(1), 0, atol=1e-12)


def test_kmeans_default_contrast_eps_scales_coates_constant_to_data_range():
    imgs = np.random.RandomState(5).randint(0, 17, size=(20, 8, 8)).astype(float)
    eps = 10 * 16**2 / 255**2
    a = F.kmeans(imgs, 4, 3, 500, random_state=2)
    np.testing.assert_allclose(a, F.kmeans(imgs, 4, 3, 500, random_state=2, contrast_eps=eps))
    assert not np.allclose(a, F.kmeans(imgs, 4, 3, 500, random_state=2, contrast_eps=10.0))


def test_kmeans_reproducible_and_seed_dependent(images):
    a = F.learn_bank("kmeans", images, n_filters=4, size=3, n_patches=300, random_state=0)
    np.testing.assert_array_equal(
        a, F.kmeans(images, 4, 3, 300, random_state=np.random.RandomState(0))
    )
    assert not np.allclose(a, F.kmeans(images, 4, 3, 300, random_state=1))
    np.testing.assert_allclose(a.sum(axis=(1, 2)), 0, atol=1e-10)


def test_kmeans_matches_sklearn_kmeans_run_by_hand(images):
    """The documented recipe (KMeans, k-means++, n_init=3, same generator for
    sampling and clustering) gives the same folded filters."""
    _, x, m, w = coates_pipeline(images, 3, 300, 0, 0.02)
    rng = np.random.RandomState(0)
    _sample_patches(images, 3, 300, rng)  # advance the generator past the sampling
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        centres = KMeans(4, n_init=3, random_state=rng).fit((x - m) @ w).cluster_centers_
    expected = (centres @ w).reshape(4, 3, 3)
    np.testing.assert_allclose(
        F.kmeans(images, 4, 3, 300, random_state=0, contrast_eps=0.02),
        expected,
        atol=1e-10,
    )


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        ({"whiten": "no"}, TypeError, ["whiten", "no", "bool"]),
        ({"whiten_eps": 0}, ValueError, ["whiten_eps", "0"]),
        ({"contrast_eps": -1.0}, ValueError, ["contrast_eps", "-1.0"]),
        ({"size": 1}, ValueError, ["size", "1", "2 pixels"]),
    ],
)
def test_kmeans_argument_errors(images, kwargs, exc, words):
    with pytest.raises(exc) as info:
        F.kmeans(images, 2, **kwargs)
    for word in words:
        assert word in str(info.value)


# --- numerical range of the Gaussian-based banks ----------------------------------


@pytest.mark.parametrize("size", [3, 4, (3, 6)])
@pytest.mark.parametrize("sigma", [1e-150, 1e-40, 1e-3, 0.2, 0.7, 1e3, 1e4, 1e40, 1e150])
def test_gaussian_banks_finite_over_the_whole_sigma_range(size, sigma):
    """Every sigma gives finite filters that are not all zero, except that the
    differences of Gaussians (log, dog) may refuse a sigma outside the range
    their docstrings say works, 0.2 to 10**4 * min(p, q) pixels."""
    odd = size if size != 4 else 5

    def usable(bank):
        return np.isfinite(bank).all() and (np.abs(bank).max(axis=(1, 2)) > 0).all()

    assert usable(F.gaussian(size, sigma))
    assert usable(F.gabor(odd, sigma=sigma, frequencies=0.25))
    side = min(odd) if isinstance(odd, tuple) else odd
    works = 0.2 <= sigma <= 1e4 * side
    for call in [lambda: F.log(odd, sigma), lambda: F.dog(odd, min(sigma, 1e150 / 1.5), ratio=1.5)]:
        try:
            bank = call()
        except ValueError as exc:
            assert not works
            assert "sigmas" in str(exc) and "not all zero" in str(exc)
        else:
            assert usable(bank)


@pytest.mark.parametrize("size", [3, 4, (2, 5)])
def test_gaussian_limits_are_a_delta_and_a_box(size):
    """Tiny sigma: all weight on the pixel(s) nearest the centre; huge sigma: uniform."""
    p, q = (size, size) if isinstance(size, int) else size
    r2 = np.add.outer((np.arange(p) - (p - 1) / 2) ** 2, (np.arange(q) - (q - 1) / 2) ** 2)
    nearest = (r2 == r2.min()).astype(float)
    np.testing.assert_allclose(F.gaussian(size, 1e-100)[0], nearest / nearest.sum(), atol=1e-15)
    np.testing.assert_allclose(F.gaussian(size, 1e100)[0], np.full((p, q), 1 / (p * q)))
    # in between, the sampled and normalised exp(-r^2 / (2 sigma^2))
    g = np.exp(-r2 / (2 * 0.8**2))
    np.testing.assert_allclose(F.gaussian(size, 0.8)[0], g / g.sum(), rtol=1e-13)


def test_gabor_without_normalize_keeps_the_formula():
    y, x = np.meshgrid(np.arange(4) - 1.5, np.arange(4) - 1.5, indexing="ij")
    expected = np.exp(-(x**2 + y**2) / (2 * 1.2**2)) * np.cos(2 * np.pi * 0.2 * x)
    bank = F.gabor(4, n_orientations=1, frequencies=0.2, sigma=1.2, normalize=False)
    np.testing.assert_allclose(bank[0], expected - expected.mean(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: F.gaussian(3, 1e-151), ["sigmas", "1e-151", "[1e-150, 1e+150]"]),
        (lambda: F.log(5, 2e150), ["sigmas", "2e+150"]),
        (lambda: F.gabor(sigma=1e-300), ["sigma", "1e-300"]),
        (lambda: F.dog(sigmas=1e100, ratio=1e60), ["ratio * sigmas", "1e+60"]),
        # a flat envelope times a flat carrier is constant on the window
        (lambda: F.gabor(5, frequencies=1e-300, sigma=1e150), ["frequencies", "sigma", "1e-300"]),
        # an even window's four central pixels all sit on zeros of the carrier
        (lambda: F.gabor(4, n_orientations=1, frequencies=0.5, sigma=1e-3), ["frequencies"]),
    ],
)
def test_gaussian_banks_refuse_unsampleable_parameters(call, words):
    assert_value_error_says(call, words)


def test_kmeans_contrast_eps_uses_the_true_range_of_integer_images():
    """np.ptp wraps around on int8 (a range of 200 reads as -56)."""
    images = np.random.default_rng(3).integers(-100, 101, (10, 8, 8)).astype(np.int8)
    images[0, 0, :2] = (-100, 100)
    kwargs = dict(n_filters=2, size=3, n_patches=100, random_state=0)
    np.testing.assert_allclose(
        F.kmeans(images, **kwargs),
        F.kmeans(images.astype(np.float64), contrast_eps=10 * 200.0**2 / 255**2, **kwargs),
        rtol=1e-9,
        atol=1e-12,
    )


# --- limits: bank size, degenerate filters, scale of learned banks -------------


@pytest.mark.parametrize(
    "call, words",
    [
        # 78 GB and 840 GB as float64: refused at once instead of built for minutes
        (lambda: F.gabor(n_orientations=10**8), ["n_orientations", "200000000", "2739137"]),
        (lambda: F.gabor(n_orientations=2**31), ["n_orientations", "4294967296"]),
        # 130 filters of 8 MiB: just over 1 GiB, from frequencies alone as well
        (lambda: F.gabor(1024, n_orientations=65), ["len(frequencies)", "130", "128"]),
        (lambda: F.gabor(1024, 1, [0.2] * 129), ["len(frequencies)", "129", "128"]),
        (lambda: F.random(10**9), ["n_filters", "1000000000", "14913080"]),
        (lambda: F.random(129, 1024), ["n_filters", "129", "128"]),
        (lambda: F.gaussian(1024, [1.0] * 129), ["len(sigmas)", "129", "128"]),
        (lambda: F.log(1024, [1.0] * 129), ["len(sigmas)", "129", "128"]),
        (lambda: F.dog(1024, [1.0] * 129), ["len(sigmas)", "129", "128"]),
        # a (p*q) x (p*q) patch covariance of 1.02 GiB
        (lambda: F.pca(np.zeros((1, 200, 200)), 2, (108, 108)), ["size", "(108, 108)", "11585"]),
        (lambda: F.kmeans(np.zeros((1, 200, 200)), 2, (108, 108)), ["size", "(108, 108)", "11585"]),
        (
            lambda: F.make_bank("gabor", n_orientations=10**8),
            ["n_orientations", "200000000", "1 GiB"],
        ),
    ],
    ids=[
        "gabor-1e8",
        "gabor-2**31",
        "gabor-orientations",
        "gabor-frequencies",
        "random-1e9",
        "random-1024",
        "gaussian",
        "log",
        "dog",
        "pca-covariance",
        "kmeans-covariance",
        "make_bank",
    ],
)
def test_banks_over_the_size_limit_are_refused_before_building(call, words):
    assert_value_error_says(call, words)


def test_transformer_refuses_a_huge_named_bank():
    from skconv import BatchConv2DTransformer

    model = BatchConv2DTransformer(
        filters="gabor", filter_params={"n_orientations": 10**8}, image_shape=(8, 8)
    )
    with pytest.raises(ValueError, match="n_orientations must be at most"):
        model.fit(np.zeros((2, 64)))


def test_bank_size_limit_is_exact(monkeypatch):
    """The limit counts K * p * q float64 values: 10 filters of 7x7 fit in
    3920 bytes, 11 do not."""
    monkeypatch.setattr(F, "MAX_BANK_BYTES", 10 * 7 * 7 * 8)
    assert F.gabor(7, n_orientations=5).shape == (10, 7, 7)
    assert F.random(10, 7).shape == (10, 7, 7)
    with pytest.raises(ValueError, match=r"must be at most 10 for 7x7 filters .*; got 11\."):
        F.gabor(7, 11, 0.25)
    with pytest.raises(ValueError, match=r"must be at most 10 for 7x7 filters .*; got 11\."):
        F.random(11, 7)


@pytest.mark.parametrize(
    "call, words",
    [
        # both Gaussians are the same delta, or the same flat window
        (lambda: F.dog(sigmas=1e-12), ["sigmas", "1e-12", "not all zero", "7x7"]),
        (lambda: F.dog(5, sigmas=[1.0, 1e12]), ["sigmas", "1000000000000.0", "5x5"]),
        (lambda: F.dog(sigmas=1.0, ratio=1 + 1e-12), ["ratio", "1.000000000001"]),
        # a constant Laplacian, and an even window whose samples all underflow
        (lambda: F.log(sigmas=2**31), ["sigmas", "2147483648", "not all zero"]),
        (lambda: F.log(4, sigmas=1e-3), ["sigmas", "0.001", "4x4"]),
        # without normalize the envelope of an even window underflows
        (lambda: F.gabor(4, sigma=1e-3, normalize=False), ["sigma", "0.001", "4x4"]),
        (lambda: F.make_bank("log", sigmas=2**31), ["sigmas", "2147483648"]),
    ],
    ids=["dog-tiny", "dog-huge", "dog-ratio", "log-huge", "log-even", "gabor", "make_bank"],
)
def test_banks_refuse_filters_that_come_out_zero(call, words):
    assert_value_error_says(call, words)


@pytest.mark.parametrize("scale", [1e300, 1e-300, 1.7e308])
@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("pca", {}),
        ("pca", {"n_patches": 500}),
        ("kmeans", {}),
        ("kmeans", {"whiten": False}),
    ],
)
def test_learned_banks_do_not_depend_on_the_scale_of_the_images(name, kwargs, scale):
    """PCA directions are unit vectors and k-means runs on contrast-normalised
    patches (with contrast_eps scaled to the data range), so images * c give
    the filters of the images themselves; the oracle is those filters."""
    images = np.random.default_rng(0).random((20, 12, 12))
    expected = F.learn_bank(name, images, random_state=0, **kwargs)
    got = F.learn_bank(name, images * scale, random_state=0, **kwargs)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_kmeans_refuses_a_contrast_eps_that_erases_the_patches():
    """On images of scale 1e-300, contrast_eps=1.0 divides every patch by 1:
    nothing is left to cluster, instead of filters of rounding noise."""
    images = np.random.default_rng(1).random((10, 8, 8)) * 1e-300
    with pytest.raises(ValueError, match=r"contrast_eps must be small enough.*; got 1\.0\."):
        F.kmeans(images, 3, 3, 200, random_state=0, contrast_eps=1.0)


def test_bank_cache_is_bounded_in_bytes(monkeypatch):
    # Named banks are cached for the transformer; a bank may be up to 1 GiB,
    # so the cache is bounded in bytes as well as in entries.
    monkeypatch.setattr(F, "_BANK_CACHE", OrderedDict())
    monkeypatch.setattr(F, "_BANK_CACHE_BYTES", 3 * 8 * 8 * 7 * 7)  # three 8x7x7 banks
    first = F._cached_bank("gabor", {"n_orientations": 4})
    assert F._cached_bank("gabor", {"n_orientations": 4}) is first
    for n in (5, 6, 7):  # 10, 12 and 14 filters: the first bank is evicted on the way
        F._cached_bank("gabor", {"n_orientations": n})
    assert sum(b.nbytes for b in F._BANK_CACHE.values()) <= F._BANK_CACHE_BYTES
    assert F._cached_bank("gabor", {"n_orientations": 4}) is not first
    big = F._cached_bank("gabor", {"n_orientations": 20})  # 40 filters, over the budget
    assert F._cached_bank("gabor", {"n_orientations": 20}) is not big
    np.testing.assert_array_equal(big, F.gabor(n_orientations=20))
