"""TorchServe handler for any model packaged by pack: generic tensors in, generic tensors out.

Request: {"inputs": [{"name", "shape", "dtype", "data"}]} (data: nested lists, or base64 of the raw little-endian
bytes with "encoding": "base64"; add "output_encoding": "base64" for compact answers).
Answer: {"outputs": [{"name", "shape", "dtype", "data"}]}.
"""

from __future__ import annotations

from pack_torchserve import PackHandler, entry_point


class Tensors(PackHandler):
    pass


handle = entry_point(Tensors)
