"""Validation rules shared by every public function, each written once.

Every error names the parameter, the value it got and what was expected, in
one format: ``"{name} must be {expected}; got {value!r}."``.
"""

import numbers
import os
import tempfile

import numpy as np

# Array kinds read as real numbers: floats, signed and unsigned integers, bools.
REAL_KINDS = "fiub"


def is_int(value):
    """True for Python and NumPy integers, False for bools."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(value, name, minimum=None, maximum=None):
    """``value`` as an int within [minimum, maximum]."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int; got {value!r}.")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = _bounds(minimum, maximum)
        raise ValueError(f"{name} must be an int {bounds}; got {value!r}.")
    return int(value)


def check_pair(value, name, minimum=1, maximum=None):
    """An int or a pair of ints (rows, columns), each within bounds, as a pair."""
    if is_int(value):
        value = (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(is_int(v) for v in value):
        if min(value) < minimum or (maximum is not None and max(value) > maximum):
            raise ValueError(
                f"{name} must be {_bounds(minimum, maximum)} along both axes; got {tuple(value)!r}."
            )
        return int(value[0]), int(value[1])
    raise TypeError(f"{name} must be an int or a pair of ints (rows, columns); got {value!r}.")


def check_option(value, options, name):
    """``value`` if it is one of ``options`` (hashable or not)."""
    if not any(value is o or (isinstance(value, str) and value == o) for o in options):
        raise ValueError(f"{name} must be one of {tuple(options)}; got {value!r}.")
    return value


def _bounds(minimum, maximum):
    if maximum is None:
        return f">= {minimum}"
    if minimum is None:
        return f"<= {maximum}"
    return f"in [{minimum}, {maximum}]"


def is_sparse(value):
    """scipy.sparse matrices and arrays, recognised without importing scipy."""
    return hasattr(value, "nnz") and hasattr(value, "toarray")


def is_dask_array(value):
    """dask arrays, recognised without importing dask."""
    return type(value).__module__.split(".")[0] == "dask" and hasattr(value, "map_blocks")


def check_real_dtype(dtype, name):
    """Raise unless ``dtype`` holds real numbers (float, int, uint or bool)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        raise TypeError(
            f"{name} must hold real numbers; got complex dtype {dtype} (convolve "
            "the real and imaginary parts separately)."
        )
    if dtype.kind not in REAL_KINDS:
        raise TypeError(f"{name} must hold real numbers; got dtype {dtype}.")
    return dtype


def float_dtype(dtype, name):
    """The float dtype arrays of ``dtype`` are computed in.

    float32 stays float32, in either byte order; float64, other floats,
    integers and bools compute in float64 (like scikit-learn's
    ``check_array(dtype=[np.float64, np.float32])``).  The result is in the
    machine's byte order.
    """
    dtype = check_real_dtype(dtype, name)
    # (np.dtype(">f4") == np.float32 is False on a little-endian machine)
    single = dtype.kind == "f" and dtype.itemsize == 4
    return np.dtype(np.float32) if single else np.dtype(np.float64)


def check_not_masked(value, name):
    """Raise for a NumPy masked array: ``np.asarray`` would silently drop its mask."""
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(
            f"{name} must be a plain array; got a masked array, whose mask would be "
            "ignored (the hidden values would be used): fill the masked values first, "
            "e.g. with np.ma.filled(array, 0)."
        )


def as_real_array(value, name):
    """``np.asarray(value)`` of real numbers: sparse, ragged and non-numeric input raise.

    Arrays in the other byte order (big-endian data read from a file on a
    little-endian machine) come back as a copy in the machine's byte order:
    some NumPy reductions refuse such a dtype, and BLAS needs native numbers.
    """
    if is_sparse(value):
        raise TypeError(
            f"{name} must be a dense array; got a sparse {type(value).__name__} "
            "(images are dense: call .toarray() on a chunk of rows first)."
        )
    check_not_masked(value, name)
    if is_dask_array(value):
        raise TypeError(
            f"{name} must be a numpy array; got a dask array (map the function "
            "over its blocks with dask.array.map_blocks, or use "
            "BatchConv2DTransformer, which keeps dask input lazy)."
        )
    try:
        array = np.asarray(value)
    except Exception as exc:  # ragged nested sequences, unconvertible objects
        raise TypeError(
            f"{name} must be an array of real numbers; could not read it: {exc}"
        ) from exc
    check_real_dtype(array.dtype, name)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def check_finite(array, name, dtype=None):
    """Raise unless every value of ``array`` is finite (in ``dtype`` when given).

    ``dtype`` catches values that are finite as given but overflow in the
    dtype the computation runs in (1e39 in float64 is infinity in float32).
    """
    if array.dtype.kind != "f" and (dtype is None or np.dtype(dtype).kind != "f"):
        return
    values = array
    if dtype is not None and np.dtype(dtype).itemsize < array.dtype.itemsize:
        limit = np.finfo(dtype).max
        with np.errstate(invalid="ignore"):
            if not (np.abs(array) <= limit).all():
                raise ValueError(
                    f"{name} must be finite in {np.dtype(dtype)}; got values outside "
                    f"[-{limit:.4g}, {limit:.4g}] (or NaN/infinity)."
                )
        return
    if not np.isfinite(values).all():
        raise ValueError(f"{name} must be finite; got NaN or infinity.")


def contextual(exc, context):
    """The same kind of exception with ``context`` appended to its message."""
    new = type(exc)(f"{exc} ({context})")
    return new.with_traceback(exc.__traceback__)


def check_bool(value, name):
    """``value`` as a bool: Python and NumPy bools only (1 and "yes" are mistakes)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool; got {value!r}.")
    return bool(value)


def check_out(out, shape, dtype, **inputs):
    """``out`` checked as a result array, or a fresh ``np.empty(shape, dtype)`` when None.

    ``out`` must be a writeable ndarray of exactly ``shape`` and ``dtype`` sharing no
    memory with any of ``inputs`` (name -> array): the computations read their inputs
    while they write ``out``, so an overlap would give wrong results.
    """
    if out is None:
        return np.empty(shape, dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy array; got {type(out).__name__}.")
    if out.shape != tuple(shape) or out.dtype != dtype:
        raise ValueError(
            f"out must have shape {tuple(shape)} and dtype {np.dtype(dtype)}; got "
            f"shape {out.shape} and dtype {out.dtype}."
        )
    if not out.flags.writeable:
        raise ValueError("out must be writeable; got a read-only array.")
    for name, array in inputs.items():
        if isinstance(array, np.ndarray) and np.may_share_memory(out, array):
            raise ValueError(f"out must not overlap {name}; got an array sharing their memory.")
    return out


def check_output_path(path, name):
    """Raise ValueError unless a file can be written at ``path`` (it is left as it was).

    For results written after a long run (the benchmarks' ``--json``): checked
    before it starts, so that its results are not lost to a bad path.
    """
    if os.path.isdir(path):
        raise ValueError(f"{name} must be a file path, not a directory; got {path!r}.")
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise ValueError(f"{name} must be a writable file; got {path!r} (read-only).")
        return
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(
            f"{name} must be a file in an existing directory; got {path!r} "
            f"({parent} is not a directory)."
        )
    # os.access answers yes to root for any directory (/proc included), where
    # creating a file still fails: a scratch file, removed at once, tells.
    try:
        fd, scratch = tempfile.mkstemp(dir=parent, prefix=".skconv-write-check-")
    except OSError as exc:
        raise ValueError(
            f"{name} must be a file in a writable directory; got {path!r} "
            f"(cannot create a file in {parent}: {exc.strerror})."
        ) from None
    os.close(fd)
    os.remove(scratch)
