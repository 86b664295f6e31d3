"""rectify against elementwise definitions."""

import numpy as np
import pytest

from skconv._activation import rectify, split_into


@pytest.mark.parametrize("activation", ["relu", "abs", "square", "split"])
def test_rectify_against_elementwise_definitions(activation):
    rng = np.random.default_rng(4)
    maps = rng.standard_normal((3, 2, 4, 5)).astype(np.float32)
    before = maps.copy()
    out = rectify(maps, activation)
    np.testing.assert_array_equal(maps, before)  # copy=True leaves the input alone
    assert out.dtype == np.float32
    for n, k, i, j in np.ndindex(maps.shape):
        v = float(maps[n, k, i, j])
        if activation == "split":
            assert out[n, 2 * k, i, j] == max(v, 0.0)
            assert out[n, 2 * k + 1, i, j] == max(-v, 0.0)
        else:
            expected = {"relu": max(v, 0.0), "abs": abs(v), "square": v * v}[activation]
            assert out[n, k, i, j] == pytest.approx(expected, rel=1e-6)


def test_rectify_in_place_and_split_of_3d_maps():
    maps = np.array([[[-1.0, 2.0]]])
    assert rectify(maps, "split").shape == (1, 2, 1, 2)
    np.testing.assert_array_equal(rectify(maps, "split")[0, :, 0], [[0, 2], [1, 0]])
    out = rectify(maps, "relu", copy=False)
    assert out is maps and maps.min() == 0


def test_split_into_strided_views_and_in_place():
    rng = np.random.default_rng(8)
    maps = rng.standard_normal((3, 2, 4, 5))
    before = maps.copy()
    out = np.full((3, 4, 4, 5), np.nan)
    split_into(maps, out[:, 0::2], out[:, 1::2])
    np.testing.assert_array_equal(maps, before)
    for index in np.ndindex(maps.shape):
        n, k, i, j = index
        assert out[n, 2 * k, i, j] == max(maps[index], 0.0)
        assert out[n, 2 * k + 1, i, j] == max(-maps[index], 0.0)
    # negative may be the maps themselves (the fused transform's scratch)
    positive = np.empty_like(maps)
    split_into(maps, positive, maps)
    np.testing.assert_array_equal(positive, out[:, 0::2])
    np.testing.assert_array_equal(maps, out[:, 1::2])
