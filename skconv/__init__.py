"""skconv: batched 2-D convolution features for scikit-learn, in pure NumPy."""

from . import filters, recipes
from ._anysize import transform_images
from ._calibration import calibrate
from ._conv import conv2d, explain_conv2d
from ._pooling import pool2d
from ._transformer import BatchConv2DTransformer

__all__ = [
    "BatchConv2DTransformer",
    "calibrate",
    "conv2d",
    "explain_conv2d",
    "pool2d",
    "transform_images",
    "filters",
    "recipes",
]
__version__ = "0.1.0"
