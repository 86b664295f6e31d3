"""The transformer's column layout: rows as images, size groups, chunks, names."""

import warnings

import numpy as np
import pytest
from sklearn.utils._chunking import get_chunk_n_rows

from skconv import _layout

CONV = dict(padding="same", pad_mode="constant", stride=1, dilation=1, flip=False, method="auto")


def make_layout(filters, shape, dtype=np.float64, activation=None, pool=None, **conv):
    return _layout.plan_layout(
        filters, shape, dtype, conv={**CONV, **conv}, activation=activation, pool=pool, context=""
    )


@pytest.mark.parametrize(
    "n_features, given, expected",
    [
        (64, None, (8, 8)),
        (1, None, (1, 1)),
        (50, None, (1, 50)),
        (48, (4, 4, 3), (4, 4, 3)),
        (12, [3, 4], (3, 4)),
        (12, (np.int64(2), 6), (2, 6)),
    ],
)
def test_image_shape(n_features, given, expected):
    shape = _layout.image_shape(n_features, given)
    assert shape == expected and all(type(s) is int for s in shape)


@pytest.mark.parametrize(
    "ndim, words",
    [
        (1, "X.reshape(1, -1)"),
        (3, "image_shape=(h, w)"),
        (4, "image_shape=(h, w, c)"),
        (0, "(n_samples, n_features)"),
    ],
)
def test_check_rows_hints(ndim, words):
    _layout.check_rows(2, (3, 4))
    with pytest.raises(ValueError, match="X must be 2-D") as info:
        _layout.check_rows(ndim, (2,) * ndim)
    assert words in str(info.value)


def test_size_groups_stack_consecutive_banks_of_one_shape():
    a, b, c, d = (
        np.full(shape, i, float)
        for i, shape in enumerate([(2, 3, 3), (1, 3, 3), (2, 5, 5), (3, 3, 3)])
    )
    groups = _layout.size_groups([a, b, c, d])
    assert [g.shape for g in groups] == [(3, 3, 3), (2, 5, 5), (3, 3, 3)]
    np.testing.assert_array_equal(groups[0][:, 0, 0], [0, 0, 1])


def test_columns_and_names_of_groups():
    filters = [np.ones((2, 3, 3)), np.ones((1, 5, 5))]
    layout = make_layout(
        filters,
        (6, 6),
        activation="split",
        padding="valid",
        pool=dict(size=2, stride=None, op="max", grid=None),
    )
    # group 0: 2 filters x 2 signs x (4x4 maps -> 2x2); group 1: 1 x 2 x (2x2 -> 1x1)
    assert [(g.start, g.stop) for g in layout.groups] == [(0, 16), (16, 18)]
    names = _layout.feature_names(layout)
    assert len(names) == layout.n_features_out == 18
    assert names[:5] == [
        "conv_f0pos_r0_c0",
        "conv_f0pos_r0_c1",
        "conv_f0pos_r1_c0",
        "conv_f0pos_r1_c1",
        "conv_f0neg_r0_c0",
    ]
    assert names[16:] == ["conv_f2pos_r0_c0", "conv_f2neg_r0_c0"]


@pytest.mark.parametrize(
    "x_dtype, working_memory",
    [(np.float64, 0.1), (np.int64, 0.1), (np.float32, 1e-6), (np.float64, 64)],
)
def test_chunk_rows_is_scikit_learns_arithmetic(x_dtype, working_memory):
    layout = make_layout([np.ones((9, 3, 3))], (8, 8), dtype=np.float64, activation="split")
    row_bytes = 8 * ((64 if x_dtype != np.float64 else 0) + 9 * 64 * 3)
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        got = _layout.chunk_rows(layout, x_dtype, 64, 300, working_memory)
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter("always")
        expected = get_chunk_n_rows(row_bytes, max_n_rows=300, working_memory=working_memory)
    assert got == expected
    assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]
