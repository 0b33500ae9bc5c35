"""pack: turn a PyTorch model into served endpoints (TorchScript, ONNX, TorchServe, Triton, KServe)."""

__version__ = "0.1.0"
