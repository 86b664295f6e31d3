"""skconv: batched 2-D convolution features for scikit-learn, in pure NumPy."""

from . import filters
from ._conv import conv2d, explain_conv2d
from ._pooling import pool2d
from ._transformer import BatchConv2DTransformer

__all__ = ["BatchConv2DTransformer", "conv2d", "explain_conv2d", "pool2d", "filters"]
__version__ = "0.1.0"
