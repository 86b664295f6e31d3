"""float32 accuracy of every strategy against torch's float32, on adversarial inputs.

The truth is the float64 correlation of the very float32 inputs (torch in float64),
so the only error measured is the float32 computation's.  For each input kind the
error is the largest absolute deviation from the truth over a fixed set of
deterministic problems; a strategy must stay within ``RATIO`` times torch's
float32 error on the same problems.  The kinds are the ones where summation order,
factorisation or operator layout matter: images with a large constant offset
(catastrophic cancellation in the sums), filters spanning many decades, low-rank
(separable) filters and filters up to 31x31.
"""

import numpy as np
import pytest

from skconv import conv2d

torch = pytest.importorskip("torch")

RATIO = 2.0
METHODS = ["auto", "einsum", "taps", "rowgemm", "rowgemm_wide", "toeplitz", "operator", "separable"]
N_PROBLEMS = 6


def _zero_mean(v):
    return v - v.mean()


def _decades(rng, shape, low=-4, high=4):
    return rng.standard_normal(shape) * 10.0 ** rng.uniform(low, high, shape)


def _problem(kind, rng):
    """(images, filters) in float64, before the cast to float32."""
    if kind == "rank1_5x3_offset1e5":
        f = np.outer(rng.standard_normal(5), rng.standard_normal(3))[None]
        return rng.random((32, 12, 12)) + 1e5, f
    if kind == "rank1_zero_mean_5x3_offset1e5":
        f = np.outer(rng.standard_normal(5), _zero_mean(rng.standard_normal(3)))[None]
        return rng.random((32, 12, 12)) + 1e5, f
    if kind == "separable_8_decades_7x7":
        f = np.outer(_decades(rng, 7), _decades(rng, 7))[None]
        return rng.random((32, 12, 12)), f
    if kind == "full_8_decades_5x5_offset1e3":
        return rng.random((32, 12, 12)) + 1e3, _decades(rng, (1, 5, 5))
    if kind == "rank2_31x31_offset1e5":
        f = sum(np.outer(rng.standard_normal(31), rng.standard_normal(31)) for _ in range(2))
        return rng.random((4, 36, 36)) + 1e5, f[None]
    if kind == "tiny_images_3x3_K2_offset1e5":
        return rng.random((256, 6, 6)) + 1e5, rng.standard_normal((2, 3, 3))
    raise AssertionError(kind)


KINDS = [
    "rank1_5x3_offset1e5",
    "rank1_zero_mean_5x3_offset1e5",
    "separable_8_decades_7x7",
    "full_8_decades_5x5_offset1e3",
    "rank2_31x31_offset1e5",
    "tiny_images_3x3_K2_offset1e5",
]


def _torch_conv(images, filters, dtype):
    x = torch.from_numpy(images.astype(dtype))[:, None]
    w = torch.from_numpy(filters.astype(dtype))[:, None]
    return torch.nn.functional.conv2d(x, w).numpy()


def _problems(kind):
    rng = np.random.default_rng(sum(map(ord, kind)))
    for _ in range(N_PROBLEMS):
        images, filters = _problem(kind, rng)
        yield images.astype(np.float32), filters.astype(np.float32)


def _errors(kind, method):
    """Largest |float32 result - float64 truth| of skconv and of torch over the set."""
    ours = theirs = 0.0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # torch's summation order must not depend on the load
    try:
        for images, filters in _problems(kind):
            truth = _torch_conv(images, filters, np.float64)
            reference = _torch_conv(images, filters, np.float32)
            result = conv2d(images, filters, method=method)
            assert result.dtype == np.float32
            ours = max(ours, float(np.abs(result - truth).max()))
            theirs = max(theirs, float(np.abs(reference - truth).max()))
    finally:
        torch.set_num_threads(threads)
    return ours, theirs


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", KINDS)
def test_float32_error_within_twice_torch(kind, method):
    try:
        ours, theirs = _errors(kind, method)
    except ValueError as exc:  # the strategy refuses this problem (e.g. taps > 16 taps)
        pytest.skip(f"{method} refuses {kind}: {exc}")
    assert theirs > 0.0
    ratio = ours / theirs
    assert ratio <= RATIO, (
        f"{method} on {kind}: float32 max error {ours:.3g} is {ratio:.2f}x torch's {theirs:.3g}"
    )
