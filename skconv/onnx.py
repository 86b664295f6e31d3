"""ONNX export of :class:`skconv.BatchConv2DTransformer` with skl2onnx.

:func:`register` teaches `skl2onnx <https://onnx.ai/sklearn-onnx/>`_ how to
convert a fitted :class:`~skconv.BatchConv2DTransformer`, alone or inside a
:class:`~sklearn.pipeline.Pipeline`; :func:`to_onnx` registers and converts
in one call.  The graph runs in any ONNX runtime (e.g. onnxruntime) without
skconv, NumPy or scikit-learn.

skl2onnx, onnx and onnxruntime are optional dependencies
(``pip install "skconv[onnx]"``), imported only when these functions run.

How each step of ``transform`` becomes ONNX operators (`operator reference
<https://onnx.ai/onnx/operators/>`_):

- rows to images: ``Reshape`` to (n, h, w, c) then ``Transpose`` to NCHW for
  channels-last rows (``channel_axis=-1``, the default); ``Reshape`` alone for
  channels-first rows (``channel_axis=0``) and for images without channels;
- padding: zeros are the ``pads`` of ``Conv``; "reflect", "symmetric",
  "edge" and "wrap" are one ``Gather`` per axis with the indices
  :func:`numpy.pad` reads (``np.pad(np.arange(h), pad, mode)``), so every
  pad width numpy accepts is exported exactly;
- correlation: ``Conv`` with the filters as weights (flipped for
  ``flip=True``), ``strides`` and ``dilations``; (K, p, q) filters on
  c-channel images are a grouped convolution (``group=c``, the filters
  repeated per channel, map ``ch * K + k``); (K, p, q, c) filters sum over
  channels;
- activation: ``Relu``, ``Abs``, ``Mul`` (square); "split" doubles the
  weights into interleaved pairs (w, -w) followed by ``Relu``, which gives
  relu(x) and relu(-x) as maps 2m and 2m + 1;
- pooling: ``MaxPool`` / ``AveragePool`` (``sum`` is the average times the
  window area), ``GlobalMaxPool`` / ``GlobalAveragePool`` for
  ``pool_size="global"``, and for ``pool_grid`` one ``Slice`` and pool per
  row band and column band of torch's adaptive regions (one pool when the
  grid divides the map);
- ``Flatten`` per size group and ``Concat`` of the groups, in the columns'
  order of ``transform``.

The graph computes in float32: pass float32 ``X`` to skl2onnx (input of any
other dtype raises a TypeError: onnxruntime's ``Conv`` has no float64 kernel).

Examples
--------
>>> import numpy as np
>>> import onnxruntime as ort
>>> from sklearn.datasets import load_digits
>>> from skconv import BatchConv2DTransformer
>>> from skconv.onnx import to_onnx
>>> X = load_digits().data.astype(np.float32)
>>> conv = BatchConv2DTransformer(filters="edges", activation="abs",
...                               pooling="max").fit(X)
>>> onx = to_onnx(conv, X[:1])
>>> sess = ort.InferenceSession(onx.SerializeToString(),
...                             providers=["CPUExecutionProvider"])
>>> features = sess.run(None, {"X": X[:5]})[0]
>>> np.allclose(features, conv.transform(X[:5]), atol=1e-4)
True
"""

import numpy as np

from ._plan import plan_conv2d
from ._pooling import _grid_bounds
from ._validation import as_real_array, check_pair

__all__ = ["register", "to_onnx"]

ALIAS = "SkconvBatchConv2DTransformer"
_GATHER_MODES = ("reflect", "symmetric", "edge", "wrap")


def register():
    """Register the converter of BatchConv2DTransformer with skl2onnx.

    After this call, :func:`skl2onnx.to_onnx` and
    :func:`skl2onnx.convert_sklearn` convert a fitted
    :class:`~skconv.BatchConv2DTransformer`, also as a step of a
    :class:`~sklearn.pipeline.Pipeline` (several of them in a row included).
    Calling it again is harmless.

    Returns
    -------
    alias : str
        The name the converter is registered under.

    Examples
    --------
    >>> from skconv.onnx import register
    >>> register()
    'SkconvBatchConv2DTransformer'
    """
    from skl2onnx import update_registered_converter

    from . import BatchConv2DTransformer

    update_registered_converter(
        BatchConv2DTransformer, ALIAS, _shape_calculator, _converter, overwrite=True
    )
    return ALIAS


def to_onnx(model, X, **kwargs):
    """Convert a model holding BatchConv2DTransformer steps to ONNX.

    :func:`register`, then :func:`skl2onnx.to_onnx`.

    Parameters
    ----------
    model : estimator
        A fitted :class:`~skconv.BatchConv2DTransformer` or a fitted
        :class:`~sklearn.pipeline.Pipeline` (or any model skl2onnx converts)
        containing some.  A transformer with fixed filters must be fitted too
        (``fit`` records the number of features the graph is built for;
        fixed filters are read with the current parameters, as ``transform``
        reads them).
    X : array-like of shape (n_samples, n_features)
        A few rows of input, float32: skl2onnx reads the input's dtype and
        width from it.  An array or DataFrame of any other dtype raises a
        TypeError; a list of rows, which has no dtype of its own, is read as
        float32 rows.  None leaves the input type to an ``initial_types``
        keyword argument.
    **kwargs
        Passed to :func:`skl2onnx.to_onnx` (e.g. ``target_opset``,
        ``options``).

    Returns
    -------
    onx : onnx.ModelProto
        The ONNX model; its input is named "X".

    Examples
    --------
    >>> import numpy as np
    >>> from skconv import BatchConv2DTransformer
    >>> from skconv.onnx import to_onnx
    >>> X = np.random.default_rng(0).random((4, 36), dtype=np.float32)
    >>> conv = BatchConv2DTransformer(filters="sobel", pooling="mean").fit(X)
    >>> onx = to_onnx(conv, X[:1])
    >>> [n.op_type for n in onx.graph.node]
    ['Reshape', 'Conv', 'AveragePool', 'Flatten']
    """
    if X is not None:
        # skl2onnx reads a list as a list of (name, type) pairs and has no
        # float16 tensor type: its errors would not name X.
        sample = as_real_array(X, "X")
        if not hasattr(X, "dtype") and not hasattr(X, "dtypes"):
            # Python numbers carry no precision: only the width and the
            # graph's float32 input type are read from them.
            sample = sample.astype(np.float32)
        _check_input_dtype(sample.dtype)
        X = sample
    register()
    from skl2onnx import to_onnx as _skl2onnx_to_onnx

    return _skl2onnx_to_onnx(model, X, **kwargs)


def _check_input_dtype(dtype):
    """Raise unless the graph's input is float32 (the only type its Conv runs in)."""
    if dtype != np.float32:
        # onnxruntime has no float64 Conv kernel: a double graph would not run.
        raise TypeError(
            "X must be float32 for ONNX export of BatchConv2DTransformer (onnxruntime's "
            f"Conv has no float64 kernel); got dtype {dtype}. Pass X.astype(np.float32)."
        )


# --- the plan: the layout transform itself uses ------------------------------

# What the graph-building code below can express; options the transformer may
# gain later are refused by name rather than exported as something else.
_ACTIVATIONS = (None, "relu", "abs", "square", "split")
_PAD_MODES = ("constant",) + _GATHER_MODES
_POOL_OPS = ("max", "mean", "sum")


def _check_supported(name, value, supported):
    if not any(value is s or (isinstance(value, str) and value == s) for s in supported):
        raise ValueError(f"{name} must be one of {supported} for ONNX export; got {value!r}.")


def _check_fitted(model):
    if not hasattr(model, "n_features_in_"):
        raise ValueError(
            f"{type(model).__name__} must be fitted before ONNX export (fit records the "
            "number of features, and learns the filters, the graph is built for); got an "
            "unfitted transformer. Call fit(X) first (it only reads X's shape for fixed "
            "filters)."
        )


def _layout(model):
    """The transformer's own layout of its rows, with its current parameters.

    The same validation and the same ``Layout`` as ``transform``: learned
    filters from fit, fixed filters built from the current parameters.
    """
    _check_fitted(model)
    model._validate_params()
    layout = model._current_layout(model.n_features_in_, np.float32)
    _check_supported("activation", layout.activation, _ACTIVATIONS)
    _check_supported("pad_mode", layout.conv["pad_mode"], _PAD_MODES)
    if layout.pool is not None:
        _check_supported("pooling", layout.pool["op"], _POOL_OPS)
    return layout


def _plan(model):
    """The layout, and per size group the ONNX Conv weights and attributes."""
    layout = _layout(model)
    groups = []
    for g in layout.groups:
        images_shape = (1,) + layout.image_shape + ((1,) if g.add_channel_axis else ())
        conv = plan_conv2d(images_shape, layout.dtype, g.filters.shape, **layout.conv)
        bank = g.filters
        # (K, p, q, c) -> (K, c, p, q): summed over the input channels.
        weights = np.transpose(bank, (0, 3, 1, 2)) if bank.ndim == 4 else bank[:, None]
        if layout.conv["flip"]:
            weights = weights[..., ::-1, ::-1]
        if layout.activation == "split":
            # Maps 2m and 2m + 1 are relu(x_m) and relu(-x_m): relu of the
            # correlations with w_m and -w_m, interleaved.
            weights = np.stack([weights, -weights], axis=1).reshape((-1,) + weights.shape[1:])
        # Depthwise: output channel ch*K' + k is filter k on channel ch
        # (ONNX groups own consecutive output channels).
        group = max(g.n_channels, 1)
        weights = np.tile(weights, (group, 1, 1, 1))
        groups.append(
            dict(
                weights=np.ascontiguousarray(weights),
                group=group,
                kernel=bank.shape[1:3],
                pads=conv.pad,
                stride=conv.spec.stride,
                dilation=conv.spec.dilation,
                conv_shape=g.conv_shape,
                pool=_pool_plan(layout.pool, g),
            )
        )
    return layout, groups


def _pool_plan(pool, group):
    """('window', size, stride, out) / ('global', out) / ('grid', rows, cols, out).

    The layout has checked the pooling parameters and computed the pooled
    shape; this only spells them as pairs and regions.
    """
    if pool is None:
        return None
    out = group.out_shape
    if pool["grid"] is not None:
        h, w = group.conv_shape
        return ("grid", _grid_bounds(h, out[0]), _grid_bounds(w, out[1]), out)
    if isinstance(pool["size"], str):  # "global"
        return ("global", out)
    size = check_pair(pool["size"], "pool_size")
    stride = size if pool["stride"] is None else check_pair(pool["stride"], "pool_stride")
    return ("window", size, stride, out)


# --- skl2onnx: shape calculator and converter -------------------------------


def _shape_calculator(operator):
    model = operator.raw_operator
    _check_fitted(model)
    input_type = operator.inputs[0].type
    shape = input_type.shape
    if len(shape) != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features); got shape {shape!r}.")
    if isinstance(shape[1], int) and shape[1] != model.n_features_in_:
        raise ValueError(
            f"X must have {model.n_features_in_} features (n_features_in_); got {shape[1]}."
        )
    n_out = _layout(model).n_features_out
    operator.outputs[0].type = type(input_type)([shape[0], n_out])


class _Graph:
    """Small helper around skl2onnx's scope and container."""

    def __init__(self, scope, container, dtype, proto_type):
        self.scope, self.container = scope, container
        self.dtype, self.proto_type = dtype, proto_type

    def name(self, hint):
        return self.scope.get_unique_variable_name(hint)

    def const(self, hint, values, dtype=None, proto=None):
        from onnx import TensorProto

        values = np.asarray(values, dtype=dtype or self.dtype)
        name = self.name(hint)
        if proto is None:
            proto = TensorProto.INT64 if values.dtype == np.int64 else self.proto_type
        self.container.add_initializer(name, proto, list(values.shape), values.ravel().tolist())
        return name

    def ints(self, hint, values):
        return self.const(hint, np.asarray(values, dtype=np.int64), dtype=np.int64)

    def node(self, op_type, inputs, hint, output=None, **attrs):
        output = output or self.name(hint)
        self.container.add_node(
            op_type,
            inputs,
            [output],
            name=self.scope.get_unique_operator_name(op_type),
            **attrs,
        )
        return output


def _converter(scope, operator, container):
    from onnx.helper import tensor_dtype_to_np_dtype

    model = operator.raw_operator
    layout, groups = _plan(model)
    input_type = operator.inputs[0].type
    proto = input_type.to_onnx_type().tensor_type.elem_type
    # The input type of this step: skl2onnx.to_onnx called directly, or a step
    # before this one, may give other types than to_onnx's X.
    _check_input_dtype(tensor_dtype_to_np_dtype(proto))
    g = _Graph(scope, container, np.float32, proto)
    x = operator.inputs[0].full_name
    # layout.image_shape is channels-last; the rows are channels-first for channel_axis=0.
    h, w = layout.image_shape[:2]
    c = layout.image_shape[2] if len(layout.image_shape) == 3 else 0
    pad_mode, pool = layout.conv["pad_mode"], layout.pool
    # Reshape's 0 copies the batch size, so empty batches work too.
    if c and model.channel_axis != 0:
        images = g.node("Reshape", [x, g.ints("shape", [0, h, w, c])], "nhwc")
        images = g.node("Transpose", [images], "nchw", perm=[0, 3, 1, 2])
    else:
        images = g.node("Reshape", [x, g.ints("shape", [0, max(c, 1), h, w])], "nchw")

    features = []
    padded_cache = {}
    for group in groups:
        (top, bottom), (left, right) = group["pads"]
        conv_input, conv_pads = images, [top, left, bottom, right]
        if pad_mode != "constant" and any(conv_pads):
            key = (top, bottom, left, right)
            if key not in padded_cache:
                # np.pad's non-constant modes read input pixels only: the
                # indices it reads, gathered, pad exactly as transform does.
                rows = np.pad(np.arange(h), (top, bottom), mode=pad_mode)
                cols = np.pad(np.arange(w), (left, right), mode=pad_mode)
                padded = g.node("Gather", [images, g.ints("rows", rows)], "pad_rows", axis=2)
                padded_cache[key] = g.node(
                    "Gather", [padded, g.ints("cols", cols)], "padded", axis=3
                )
            conv_input, conv_pads = padded_cache[key], [0, 0, 0, 0]
        maps = g.node(
            "Conv",
            [conv_input, g.const("weights", group["weights"])],
            "maps",
            kernel_shape=list(group["kernel"]),
            strides=list(group["stride"]),
            dilations=list(group["dilation"]),
            pads=conv_pads,
            group=group["group"],
        )
        maps = _activation(g, maps, layout.activation)
        if group["pool"] is not None:
            maps = _pooling(g, maps, group["pool"], pool["op"], group["conv_shape"])
        features.append(maps)

    output = operator.outputs[0].full_name
    if len(features) == 1:
        g.node("Flatten", features, "features", output=output, axis=1)
    else:
        flat = [g.node("Flatten", [maps], "features", axis=1) for maps in features]
        g.node("Concat", flat, "features", output=output, axis=1)


def _activation(g, maps, activation):
    if activation is None:
        return maps
    if activation in ("relu", "split"):  # split: weights already paired (w, -w)
        return g.node("Relu", [maps], "relu")
    if activation == "abs":
        return g.node("Abs", [maps], "abs")
    return g.node("Mul", [maps, maps], "square")


def _pooling(g, maps, plan, op, shape):
    kind = plan[0]
    if kind == "global":
        if op == "max":
            return g.node("GlobalMaxPool", [maps], "globalmax")
        pooled = g.node("GlobalAveragePool", [maps], "globalmean")
        if op == "sum":
            pooled = g.node("Mul", [pooled, g.const("area", shape[0] * shape[1])], "globalsum")
        return pooled
    if kind == "window":
        _, size, stride, _ = plan
        return _window_pool(g, maps, size, stride, op)
    _, row_bounds, col_bounds, _ = plan
    # Regions are products of a row band and a column band: reduce each row
    # band over its rows, then each column band over its columns (max, mean
    # and sum of equal-length rows compose this way).
    maps = _bands(g, maps, row_bounds, axis=2, op=op)
    return _bands(g, maps, col_bounds, axis=3, op=op)


def _window_pool(g, maps, size, stride, op):
    if op == "max":
        return g.node("MaxPool", [maps], "maxpool", kernel_shape=list(size), strides=list(stride))
    pooled = g.node("AveragePool", [maps], "avgpool", kernel_shape=list(size), strides=list(stride))
    if op == "sum":
        pooled = g.node("Mul", [pooled, g.const("area", size[0] * size[1])], "sumpool")
    return pooled


def _bands(g, maps, bounds, axis, op):
    """Pool each band [start, stop) of ``axis`` to one pixel, bands in order."""
    starts = np.array([start for start, _ in bounds])
    lengths = np.array([stop - start for start, stop in bounds])
    steps = np.diff(starts)
    if (lengths == lengths[0]).all() and (steps == (steps[0] if len(steps) else 1)).all():
        # Equal bands evenly spaced from 0 to the end: one window slid along the axis.
        length, step = int(lengths[0]), int(steps[0]) if len(steps) else 1
        size = (length, 1) if axis == 2 else (1, length)
        stride = (step, 1) if axis == 2 else (1, step)
        return _window_pool(g, maps, size, stride, op)
    parts = []
    for start, stop in bounds:
        band = g.node(
            "Slice",
            [maps, g.ints("starts", [start]), g.ints("ends", [stop]), g.ints("axes", [axis])],
            "band",
        )
        size = (stop - start, 1) if axis == 2 else (1, stop - start)
        parts.append(_window_pool(g, band, size, (1, 1), op))
    return g.node("Concat", parts, "bands", axis=axis)
