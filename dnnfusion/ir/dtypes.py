"""Element types: ONNX TensorProto codes <-> numpy dtypes (bfloat16/float8 through ml_dtypes)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ..errors import InvalidModelError


def to_numpy(elem_type: int) -> np.dtype:
    """The numpy dtype of an ONNX element type code."""
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, ValueError, TypeError) as e:
        raise InvalidModelError(f"unknown ONNX element type {elem_type}") from e


def to_onnx(dtype: np.dtype) -> int:
    """The ONNX element type code of a numpy dtype."""
    dtype = np.dtype(dtype)
    if dtype == np.dtype(object) or dtype.kind in "US":
        return onnx.TensorProto.STRING
    return helper.np_dtype_to_tensor_dtype(dtype)


def tensor_type(dtype: np.dtype) -> str | None:
    """The ONNX schema's spelling of a tensor of this element type ('tensor(float)'), None if it has none."""
    try:
        code = to_onnx(dtype)
    except (KeyError, ValueError, TypeError):
        return None
    return f"tensor({onnx.TensorProto.DataType.Name(code).lower()})"


def name(dtype: np.dtype | None) -> str:
    """A short display name: float32, int64, bool, ..."""
    return "?" if dtype is None else np.dtype(dtype).name


FLOAT_KINDS = "fc"


def is_float(dtype: np.dtype) -> bool:
    """True for floating-point types, including bfloat16 and float8 from ml_dtypes."""
    dtype = np.dtype(dtype)
    return dtype.kind in FLOAT_KINDS or dtype.name.startswith(("bfloat", "float8", "float6", "float4"))
