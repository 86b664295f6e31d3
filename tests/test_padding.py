"""The prepared chunk (skconv/_padding.py): against np.pad and a naive oracle.

The chunk is written into memory its thread keeps between calls
(``_buffers.workspace``), which holds whatever the previous call left: the
tests fill it with NaN first, so a pixel the preparation does not write
shows.
"""

import numpy as np
import pytest
from _oracles import naive_conv2d

from skconv import conv2d
from skconv._buffers import workspace
from skconv._padding import CENTRE_LIMIT, centring_offsets, prepare_chunk
from skconv._plan import plan_conv2d


def _dirty_chunk():
    (kept,) = workspace("chunk", [((1 << 14,), np.float64)])
    kept.fill(np.nan)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
@pytest.mark.parametrize("padding", [((2, 1), (0, 3)), ((0, 0), (1, 1)), ((1, 0), (0, 0))])
def test_padded_chunk_is_np_pad_whatever_the_memory_held(dtype, padding):
    rng = np.random.default_rng(0)
    images = (rng.standard_normal((3, 5, 4)) * 9).astype(dtype)
    plan = plan_conv2d(images.shape, images.dtype, (2, 3, 3), padding=padding)
    _dirty_chunk()
    x = prepare_chunk(images, plan)
    expected = np.pad(images.astype(plan.dtype), ((0, 0), *padding))[..., None]
    np.testing.assert_array_equal(x, expected)


@pytest.mark.parametrize("padding", ["valid", ((1, 2), (2, 1))])
def test_centred_and_cast_chunks_whatever_the_memory_held(padding):
    rng = np.random.default_rng(1)
    images = (rng.integers(0, 200, (4, 6, 5)) + 10_000).astype(np.float32)
    plan = plan_conv2d(images.shape, images.dtype, (1, 2, 2), padding=padding)
    offsets = np.full((4, 1), 10_000, np.float32)
    _dirty_chunk()
    x = prepare_chunk(images, plan, offsets)
    pad = plan.pad
    expected = np.pad(images - 10_000, ((0, 0), *pad))[..., None]
    np.testing.assert_array_equal(x, expected)
    # integer images are cast into the kept memory (unpadded: a copy all the same)
    ints = images.astype(np.int32)
    plan = plan_conv2d(ints.shape, ints.dtype, (1, 2, 2), padding=padding)
    _dirty_chunk()
    np.testing.assert_array_equal(
        prepare_chunk(ints, plan), np.pad(ints.astype(np.float64), ((0, 0), *pad))[..., None]
    )


@pytest.mark.parametrize("method", ["rowgemm", "rowgemm_wide", "toeplitz", "taps", "fft"])
def test_conv2d_after_a_call_of_another_shape_matches_the_oracle(method):
    # a larger call first leaves its chunk and workspace behind
    rng = np.random.default_rng(2)
    big = rng.standard_normal((9, 14, 13))
    conv2d(big, rng.standard_normal((3, 5, 4)), padding="full", method="rowgemm")
    images = rng.standard_normal((4, 7, 6))
    filters = rng.standard_normal((2, 3, 3))
    got = conv2d(images, filters, padding=((1, 2), (2, 0)), method=method)
    expected = naive_conv2d(images[..., None], filters[..., None], padding=((1, 2), (2, 0)))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_offsets_beyond_the_limit_are_not_taken_off_so_nothing_overflows():
    # The offset is estimated from a grid of pixels: here the grid sees only
    # the -2e38 columns, and taking their mid-range off the +2e38 columns
    # would overflow float32, although the averages themselves are finite.
    images = np.full((2, 8, 8), 2e38, np.float32)
    images[:, :, ::2] = -2e38
    bank = np.full((1, 3, 3), 1 / 9)
    result = conv2d(images, bank)
    expected = naive_conv2d(images[..., None], bank[..., None])
    assert np.isfinite(result).all()
    np.testing.assert_allclose(result, expected, rtol=1e-6, atol=1e32)
    # just under and just over the limit, with a spread that asks for centring
    plan = plan_conv2d((1, 8, 8), np.float32, (1, 3, 3))
    for offset, centred in [(CENTRE_LIMIT, True), (2 * CENTRE_LIMIT, False)]:
        chunk = np.full((1, 8, 8), offset, np.float32)
        chunk[0, 0, 0] = np.nextafter(np.float32(offset), np.float32(0))
        assert (centring_offsets(chunk, plan) is not None) == centred
