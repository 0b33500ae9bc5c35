"""The variant kinds, one registered builder each: read the base ONNX file, write `ctx.out`, say what was done.

Quantization and graph tools print warnings of their own (the root logger, stderr): they are kept off the terminal
like the exporters' (`console.captured`), and shown with --debug.
"""

from __future__ import annotations

import contextlib
import logging
import platform
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..console import captured
from ..registry import Tolerance
from . import MakeContext, Skipped, VariantKind, register_variant

# 8-bit steps are a fraction of each tensor's range: atol 5% of the output's scale, rms error within 5% (rtol / 10)
INT8_TOLERANCE = Tolerance(atol=0.5, rtol=0.5)  # atol used only for an output without a recorded scale
INT8_SCALE_ATOL = 0.05
FP16_TOLERANCE = Tolerance(atol=1e-2, rtol=1e-2)
FP16_SCALE_ATOL = 1e-2
DYNAMIC_OPS = ["MatMul", "Attention", "LSTM", "GRU"]  # ConvInteger is slower than float Conv on CPUs: convolutions stay
CPU_FLAGS = (
    "sse4_1 sse4_2 avx avx2 fma f16c avx512f avx512bw avx512vl avx512_vnni avx_vnni avx512_bf16 avx512_fp16 "
    "amx_tile amx_int8 amx_bf16 asimd asimddp i8mm sve"
).split()


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The tools' own chatter off the terminal (stderr captured, the root logger's warnings held back)."""
    logging.disable(logging.WARNING)
    try:
        with captured():
            yield
    finally:
        logging.disable(logging.NOTSET)


def cpu_flags() -> list[str]:
    """The instruction-set flags of this CPU that decide onnxruntime's kernels (x86: AVX2, AVX-512, VNNI, AMX)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            present = set(value.split())
            return [f for f in CPU_FLAGS if f in present]
    return []


def machine() -> dict[str, Any]:
    return {"arch": platform.machine(), "cpu_flags": cpu_flags()}


def _providers(device: str) -> list[str]:
    from ..export.onnx import providers

    return list(providers(device))


def ort_optimized(ctx: MakeContext) -> dict[str, Any]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(ctx.out)
    providers = _providers(ctx.device)
    with quiet():
        session = ort.InferenceSession(str(ctx.base), options, providers=providers)
    return {
        "level": "ORT_ENABLE_ALL",
        "provider": session.get_providers()[0],
        **machine(),
        "note": "made for this provider and CPU: serve it where both are the same",
    }


def slim(ctx: MakeContext) -> dict[str, Any]:
    try:
        import onnxslim
    except ImportError:
        raise Skipped("onnxslim is not installed (pip install 'pack[slim]')") from None
    import onnx

    with quiet():
        model = onnxslim.slim(onnx.load(str(ctx.base)))
    onnx.save(model, str(ctx.out))
    return {"onnxslim": getattr(onnxslim, "__version__", "")}


def int8_dynamic(ctx: MakeContext) -> dict[str, Any]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet():
        quantize_dynamic(ctx.base, ctx.out, weight_type=QuantType.QInt8, op_types_to_quantize=DYNAMIC_OPS)
    return {"weights": "int8", "activations": "uint8, quantized at run time", "operators": DYNAMIC_OPS, **machine()}


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a list of feeds."""

    def __init__(self, feeds: list[dict[str, Any]]):
        self._feeds = iter(feeds)

    def get_next(self) -> dict[str, Any] | None:
        return next(self._feeds, None)


def int8_static(ctx: MakeContext) -> dict[str, Any]:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    if not ctx.calibration:
        raise Skipped("no calibration inputs")
    reader = type("Reader", (_Reader, CalibrationDataReader), {})(ctx.calibration)
    with quiet():
        quantize_static(
            ctx.base,
            ctx.out,
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
        )
    return {
        "format": "QDQ",
        "weights": "int8 per channel",
        "activations": "uint8",
        "calibration": ctx.calibration_source,
        "calibration_batches": len(ctx.calibration),
        **machine(),
    }


def fp16(ctx: MakeContext) -> dict[str, Any]:
    import onnxruntime as ort

    if ctx.device != "cuda" or "CUDAExecutionProvider" not in ort.get_available_providers():
        raise Skipped("float16 is faster only on a GPU; this build runs on the CPU (no CUDA provider in onnxruntime)")
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with quiet():
        model = convert_float_to_float16(onnx.load(str(ctx.base)), keep_io_types=True)
    onnx.save(model, str(ctx.out))
    return {"weights": "float16", "io": "float32 (kept)", "provider": "CUDAExecutionProvider"}


register_variant(VariantKind("ort-optimized", "onnxruntime graph optimisation saved offline", ort_optimized))
register_variant(VariantKind("slim", "onnxslim graph simplification", slim))
register_variant(
    VariantKind("int8-dynamic", "onnxruntime dynamic int8 quantization", int8_dynamic, INT8_TOLERANCE, INT8_SCALE_ATOL)
)
register_variant(
    VariantKind("int8-static", "onnxruntime static int8 quantization (QDQ)", int8_static, INT8_TOLERANCE, INT8_SCALE_ATOL)
)
register_variant(VariantKind("fp16", "float16 (GPU)", fp16, FP16_TOLERANCE, FP16_SCALE_ATOL))
