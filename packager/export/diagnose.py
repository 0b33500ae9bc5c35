"""Turn an exporter's exception (often thousands of lines) into one cause and one fix that applies.

Each rule matches the text of a known failure and names the operator or the cause; anything else keeps the first
meaningful line of the message. The full text is shown only with --debug.
"""

from __future__ import annotations

import re

# where an exporter names the operator it failed on, most explicit first: a quoted `ns::op`, "export of operator op"
# (the legacy exporter's aten operators), then any `ns::op`; a module path (`torchvision.models.alexnet`) is no operator
_OPERATOR = (
    re.compile(r"operator '?((?:aten|prim|torchvision|quantized|onnx)::[A-Za-z0-9_.]+)'?"),
    re.compile(r"(?:export|conversion) of (?:operator )?(?!(?:an?|the|operator)\b)([A-Za-z_][A-Za-z0-9_]*)\b"),
    re.compile(r"\b((?:aten|prim|torchvision|quantized)::[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)?)"),
    re.compile(r"\b((?:aten|prim)\.[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)?)"),  # torch.export's spelling
)

# (exporter kinds, pattern in the message, cause, fix); {op} is the operator the message names, {line} its first line.
_RULES: list[tuple[str, str, str, str]] = [
    (
        "onnx",
        r"adaptive_(?:avg|max)_pool\w*, input size not accessible|adaptive_(?:avg|max)_pool\w*.*(?:dynamic|symbolic)",
        "operator {op} with a dynamic input size has no ONNX conversion (ONNX has no adaptive pooling)",
        "declare the height and width static (dyn= without those axes), or serve torchscript or pt2, which keep them dynamic",
    ),
    (
        "onnx",
        r"_transformer_encoder_layer_fwd|_native_multi_head_attention",
        "operator {op} (PyTorch's fused attention fast path) has no ONNX conversion",
        "export with torch.backends.mha.set_fastpath_enabled(False), as pack's own builds do, or leave onnx out of --formats",
    ),
    (
        "onnx",
        r"is not supported|Unsupported: ONNX export of|No ONNX function found|no symbolic function|not implemented for ONNX",
        "operator {op} has no ONNX conversion in this exporter",
        "the other ONNX exporter may handle it (pack tries both); otherwise replace the operator, or leave onnx out of --formats",
    ),
    (
        "export onnx aoti",
        r"data[- ]dependent|GuardOnDataDependentSymNode|Could not guard on|Could not extract specialized integer",
        "the model branches on tensor values (data-dependent control flow), which torch.export cannot capture",
        "rewrite the branch with torch.cond or torch.where, or leave pt2/aoti out of --formats",
    ),
    (
        "export onnx aoti",
        r"Constraints violated|specialized|ConstraintViolation",
        "the model's code fixes a size that was declared dynamic",
        "declare that axis static in the spec (`dynamic_axes`), or change the code that reads the size",
    ),
    (
        "script",
        r"could not get source code|source code not available|OSError",
        "torch.jit.script needs Python source that is not available (a compiled or generated module)",
        "keep the trace (it is used when it passes the gate), or leave torchscript out of --formats",
    ),
    (
        "script",
        r"NotSupportedError|is currently not supported in TorchScript|Module 'builtins'"
        r"|Compiled functions can't take variable number|Expected a default value of type",
        "torch.jit.script cannot compile the model's Python ({line})",
        "keep the trace (it is used when it passes the gate), or leave torchscript out of --formats",
    ),
    (
        "aoti",
        r"CppCompileError|InvalidCxxCompiler|g\+\+|c\+\+: |compilation terminated",
        "the C++ compiler failed while AOTInductor compiled the model",
        "install a working g++ (apt-get install g++), or leave aoti out of --formats",
    ),
    (
        "trace",
        r"Tracer cannot infer type"
        r"|Only tensors, lists, tuples of tensors, or dictionary of tensors can be output from traced functions",
        "torch.jit.trace cannot follow the model's non-tensor inputs or outputs",
        "pack flattens outputs itself; give every forward() input as a tensor",
    ),
]


def first_line(exc: BaseException) -> str:
    for line in str(exc).splitlines():
        line = line.strip()
        if line and not line.startswith(("Traceback", "File ", "^", "~")):
            return f"{type(exc).__name__}: {line[:240]}"
    return type(exc).__name__


def operator(text: str) -> str | None:
    """The operator an exporter's message names (`aten::adaptive_avg_pool2d`), never a module's path."""
    text = re.split(r"Torch IR graph at exception|\[Caused by", text, maxsplit=1)[0]  # a graph dump names every operator
    for pattern in _OPERATOR:
        found = pattern.search(text)
        if found:
            name = found.group(1)
            if name.startswith(("aten.", "prim.")):
                return name.replace(".", "::", 1)
            return name if "::" in name else f"aten::{name}"
    return None


def explain(exc: BaseException, kind: str) -> tuple[str, str]:
    """(cause, fix) for a failure of one exporter kind: trace, script, export, onnx or aoti."""
    text = f"{type(exc).__name__}: {exc}"
    line = first_line(exc)
    for kinds, pattern, cause, fix in _RULES:
        if kind in kinds.split() and re.search(pattern, text[:20000]):
            op = operator(text[:20000])
            template = cause if op else cause.replace("operator {op}", "an operator")
            return template.format(op=op, line=line[:160]), fix
    return line, "rerun with --debug for the exporter's full message"


__all__ = ["explain", "first_line", "operator"]
