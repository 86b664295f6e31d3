"""Independent oracles shared by the tests: the definition, one pixel at a time."""

import numpy as np


def naive_conv2d(
    images, filters, padding=((0, 0), (0, 0)), pad_mode="constant", stride=(1, 1), dilation=(1, 1)
):
    """The definition, one output pixel at a time, in float64.

    images (b, h, w, c), filters (K, p, q, c): sums over channels.
    """
    x = np.pad(images.astype(np.float64), ((0, 0), *padding, (0, 0)), mode=pad_mode)
    b, H, W, _ = x.shape
    K, p, q, _ = filters.shape
    (sh, sw), (dh, dw) = stride, dilation
    out_h = (H - dh * (p - 1) - 1) // sh + 1
    out_w = (W - dw * (q - 1) - 1) // sw + 1
    y = np.zeros((b, K, out_h, out_w))
    for n in range(b):
        for k in range(K):
            for i in range(out_h):
                for j in range(out_w):
                    acc = 0.0
                    for u in range(p):
                        for v in range(q):
                            acc += x[n, i * sh + u * dh, j * sw + v * dw] @ filters[k, u, v]
                    y[n, k, i, j] = acc
    return y


def random_problem(rng, channels=None):
    """A small random conv2d problem: (n, h, w, c, k, p, q, stride, dilation)."""
    n = int(rng.integers(1, 4))
    height, width = (int(v) for v in rng.integers(1, 13, 2))
    c = int(channels if channels is not None else rng.choice([1, 1, 2, 3]))
    k = int(rng.integers(1, 5))
    sh, sw, dh, dw = (int(v) for v in rng.integers(1, 4, 4))
    p = int(rng.integers(1, (height - 1) // dh + 2))
    q = int(rng.integers(1, (width - 1) // dw + 2))
    return n, height, width, c, k, p, q, (sh, sw), (dh, dw)
