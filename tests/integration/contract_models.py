"""The model kinds of the contract matrix that no built-in model stands for, as a user's `file.py:factory` would be:
small, random seeded weights, a second or two to build each. `KINDS` (tests/integration/test_contract.py) says how
each is built."""

from __future__ import annotations

import torch
from torch import nn


class DictHead(nn.Module):
    """Two outputs in a dict: `logits` and `probs` (structured outputs keep their names in every format)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(16, 32), nn.ReLU())
        self.head = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.head(self.body(x))
        return {"logits": logits, "probs": torch.softmax(logits, dim=-1)}


class TokenClassifier(nn.Module):
    """Integer token ids with a value range and a dynamic length, pooled to one score vector."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(100, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(tokens).mean(dim=1))


class Tagger(nn.Module):
    """A 2-layer bidirectional LSTM tagger: torch.export specialises its length, so pt2 fails where TorchScript and
    ONNX keep it dynamic (a build with a failed optional format)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(100, 16)
        self.lstm = nn.LSTM(16, 16, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(32, 5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x, _ = self.lstm(self.embed(tokens))
        return self.head(x)


class Mlp(nn.Module):
    """Wide linear layers: what int8-dynamic quantises (a build that serves a kept variant)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def ssdlite() -> nn.Module:
    """torchvision's SSDlite (MobileNetV3 320): only TorchScript passes (its boxes branch on values), and the file calls
    torchvision's `nms`, which a process loads only after importing torchvision."""
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=5)


def _seeded(cls: type[nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return cls()


def dict_head() -> nn.Module:
    return _seeded(DictHead)


def token_classifier() -> nn.Module:
    return _seeded(TokenClassifier)


def tagger() -> nn.Module:
    return _seeded(Tagger)


def mlp() -> nn.Module:
    return _seeded(Mlp)
