"""The user model and pack.yaml that the spec tests of both tiers build from."""

from __future__ import annotations

import textwrap
from pathlib import Path

TAGGER = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(1000, 8)
            self.head = nn.Linear(8, 5)

        def forward(self, tokens, mask):
            h = self.emb(tokens) * mask.unsqueeze(-1)
            return self.head(h), h.mean(dim=1)

    def build():
        return Tagger()
    """
)

SPEC = """
    name: tagger
    source: model.py:build
    inputs:
      - {name: tokens, shape: [2, 16], dtype: int64, dynamic_axes: [0, 1], range: [0, 1000]}
      - {name: mask, shape: [2, 16], dtype: float32, dynamic_axes: [0, 1], range: [0, 1]}
    outputs:
      - {name: logits, dynamic_axes: [0, 1]}
      - {name: pooled}
    batch_sizes: [1, 3]
    tolerance: {atol: 1.0e-4, rtol: 1.0e-3}
"""


def write_spec(folder: Path, spec: str = SPEC, model: str = TAGGER) -> Path:
    """model.py and pack.yaml in `folder`; returns the spec's path."""
    (folder / "model.py").write_text(model)
    (folder / "pack.yaml").write_text(textwrap.dedent(spec))
    return folder / "pack.yaml"
