"""Models whose shapes are the point (tests/integration/test_shapes.py, the serving-parity test): small, random seeded
weights, a few seconds to build each.

- `stateful_lstm`: an LSTM that takes its state (`h0`, `c0`: layers x batch x hidden) beside the tokens, so its batch
  is axis 0 of one input and axis 1 of two others (`dyn=batch@1`);
- `fasterrcnn` / `fasterrcnn_empty`: torchvision's Faster R-CNN (MobileNetV3 320 FPN) at 64 pixels, answering about
  20 detections, or none (a score threshold no random box reaches): outputs whose length depends on the data;
- `fcos`, `maskrcnn` (ResNet-18 FPN backbones, 64 pixels) and `ssdlite` (MobileNetV3, 320 pixels): torchvision's other
  detection and instance segmentation families.
"""

from __future__ import annotations

import torch
from torch import nn


class StatefulLstm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.lstm = nn.LSTM(8, 8, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, chars: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, (h, c) = self.lstm(self.embed(chars), (h0, c0))
        return self.head(x), h, c


def stateful_lstm() -> nn.Module:
    torch.manual_seed(0)
    return StatefulLstm()


def _fasterrcnn(threshold: float) -> nn.Module:
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=3, min_size=64, max_size=64, box_score_thresh=threshold
    )


def fasterrcnn() -> nn.Module:
    return _fasterrcnn(0.05)  # torchvision's default threshold


def fasterrcnn_empty() -> nn.Module:
    return _fasterrcnn(0.99)


def _resnet18_fpn(p6p7: bool) -> nn.Module:
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    extra = LastLevelP6P7(256, 256) if p6p7 else None
    layers = [2, 3, 4] if p6p7 else [1, 2, 3, 4]
    return resnet_fpn_backbone(
        backbone_name="resnet18", weights=None, trainable_layers=5, returned_layers=layers, extra_blocks=extra
    )


SMALL = {"num_classes": 3, "min_size": 64, "max_size": 64}


def fcos() -> nn.Module:
    from torchvision.models.detection import FCOS

    torch.manual_seed(0)
    return FCOS(_resnet18_fpn(True), **SMALL)


def maskrcnn() -> nn.Module:
    from torchvision.models.detection import MaskRCNN

    torch.manual_seed(0)
    return MaskRCNN(_resnet18_fpn(False), **SMALL)


def ssdlite() -> nn.Module:
    """SSDlite with its batch-norm statistics taken from one seeded batch: untrained, its features vanish before the
    head and every box scores the same, so ties alone would decide its NMS (and which boxes an export keeps)."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 1.0
    model.backbone.train()
    with torch.no_grad():
        model.backbone(torch.rand(2, 3, 320, 320))
    return model.eval()


class NmsFree(nn.Module):
    """An NMS-free (DETR-style) detector in small: a score and a box per anchor, its 64 anchors (a 16x16 image) ranked
    by score as one `(N, 64, 6)` output (box, score, anchor). Scores are rounded to tenths, so rows tie by the dozen
    and a runtime may order tied rows otherwise than eager at any batch index (all anchors are kept: no tie at a cut
    decides which rows there are)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        self.score = nn.Conv2d(8, 1, 1)
        self.box = nn.Conv2d(8, 4, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.features(images)
        scores = torch.round(torch.sigmoid(self.score(features)).flatten(1) * 10) / 10
        boxes = self.box(features).flatten(2).transpose(1, 2)
        top, index = scores.topk(64, dim=1)
        picked = torch.gather(boxes, 1, index.unsqueeze(-1).expand(-1, -1, 4))
        return torch.cat([picked, top.unsqueeze(-1), index.unsqueeze(-1).to(picked.dtype)], dim=-1)


def nms_free() -> nn.Module:
    return NmsFree().eval()
