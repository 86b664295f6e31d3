"""Pointwise rectification of feature maps."""

import numpy as np

from ._validation import check_option

ACTIVATIONS = ("relu", "abs", "square", "split")


def rectify(maps, activation, *, copy=True):
    """Apply a pointwise rectification to maps of shape (..., n_maps, h, w).

    Parameters
    ----------
    maps : ndarray of shape (n_images, h, w) or (n_images, n_maps, h, w)
        Feature maps.
    activation : {None, "relu", "abs", "square", "split"}
        None returns ``maps``; "relu" is max(x, 0); "abs" |x|; "square" x**2;
        "split" returns the positive and negative parts, relu(x) and
        relu(-x), as two maps per input map, interleaved: map ``2k`` is the
        positive and ``2k + 1`` the negative part of map ``k`` (a 3-D input
        becomes (n_images, 2, h, w)).
    copy : bool, default=True
        If False, "relu", "abs" and "square" work in place on ``maps``.

    Returns
    -------
    ndarray
        Same dtype as ``maps``.

    Examples
    --------
    >>> import numpy as np
    >>> from skconv._activation import rectify
    >>> maps = np.array([[[-1.0, 2.0]]])
    >>> print(rectify(maps, "relu"))
    [[[0. 2.]]]
    >>> print(rectify(maps, "split")[0])
    [[[0. 2.]]
    <BLANKLINE>
     [[1. 0.]]]
    """
    check_option(activation, (None, *ACTIVATIONS), "activation")
    if activation is None:
        return maps
    if activation == "split":
        four_d = maps if maps.ndim == 4 else maps[:, None]
        n, k, h, w = four_d.shape
        result = np.empty((n, k, 2, h, w), maps.dtype)
        split_into(four_d, result[:, :, 0], result[:, :, 1])
        return result.reshape(n, 2 * k, h, w)
    out = None if copy else maps
    if activation == "relu":
        return np.maximum(maps, 0, out=out)
    if activation == "abs":
        return np.abs(maps, out=out)
    return np.square(maps, out=out)


def split_into(maps, positive, negative):
    """Write relu(maps) into ``positive`` and relu(-maps) into ``negative``.

    The two halves of ``activation="split"``, written into any arrays (or
    strided views) of ``maps``' shape: the transformer writes them straight
    into its output's columns.  ``negative`` may be ``maps`` itself (then
    after ``positive``).

    Examples
    --------
    >>> import numpy as np
    >>> from skconv._activation import split_into
    >>> maps, pos, neg = np.array([-1.0, 2.0]), np.empty(2), np.empty(2)
    >>> split_into(maps, pos, neg)
    >>> print(pos, neg)
    [0. 2.] [1. 0.]
    """
    np.maximum(maps, 0, out=positive)
    np.negative(maps, out=negative)
    np.maximum(negative, 0, out=negative)
