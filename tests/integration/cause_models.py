"""Small seeded models for issue 24's tests (tests/integration/test_export_causes.py): nn.TransformerEncoder batch-first
and sequence-first with a padding mask, adaptive pooling to a fixed size, and an LSTM."""

from __future__ import annotations

import torch
from torch import nn


class Encoder(nn.Module):
    def __init__(self, batch_first: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        layer = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, batch_first=batch_first, dropout=0.0)
        self.enc = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=batch_first)

    def forward(self, src: torch.Tensor, src_key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.enc(src, src_key_padding_mask=src_key_padding_mask)


def encoder_batch_first() -> nn.Module:
    return Encoder(True)


def encoder_sequence_first() -> nn.Module:
    return Encoder(False)


def adaptive_head() -> nn.Module:
    """AlexNet's head in small: adaptive pooling to a fixed size, then a linear layer."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d((2, 2)), nn.Flatten(), nn.Linear(16, 5))


class Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lstm = nn.LSTM(4, 8, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x)[0]


def lstm() -> nn.Module:
    return Recurrent()
