"""A small transformer encoder (MiniLM-sized: 4 layers, width 384, 6 heads) for benchmarks/variants.py:

pack build benchmarks/encoder_model.py:encoder --input x:8x64x384:float32:dyn=0,1
"""

from typing import Any


def encoder() -> Any:
    import torch
    from torch import nn

    torch.manual_seed(0)

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layer = nn.TransformerEncoderLayer(d_model=384, nhead=6, dim_feedforward=1536, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, num_layers=4, enable_nested_tensor=False)

        def forward(self, x: Any) -> Any:
            return self.encoder(x)

    return Encoder()
