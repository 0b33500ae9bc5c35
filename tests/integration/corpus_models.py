"""Third-party architectures for the export corpus: small configurations, random seeded weights, seconds each.

Each factory is a zero-argument callable, as a user's `file.py:factory` would be; `CORPUS` gives the inputs each one
takes (pack's `--input` syntax). Heads that the library initialises to zero get small random values, as trained
weights would have (an all-zero output cannot be validated; pack refuses it).
"""

from __future__ import annotations

import os

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")
os.environ.setdefault("YOLO_AUTOINSTALL", "False")


SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
"""The size of every small transformers config here (its defaults are the full-size model)."""


def _seeded():
    import torch

    torch.manual_seed(0)


def _randomise(module):
    import torch

    with torch.no_grad():
        for p in module.parameters():
            if not p.any():
                p.normal_(0, 0.2)
    return module


def tv_vit():
    _seeded()
    from torchvision.models.vision_transformer import VisionTransformer

    return _randomise(
        VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10)
    )


def tv_swin():
    _seeded()
    from torchvision.models.swin_transformer import SwinTransformer

    return SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=[4, 4], num_classes=10)


def tv_convnext():
    _seeded()
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    return ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 1)], num_classes=10)


def tv_efficientnet():
    _seeded()
    from torchvision.models import efficientnet_b0

    return efficientnet_b0(weights=None, num_classes=10)


def tv_mobilenet_v2():
    _seeded()
    from torchvision.models import mobilenet_v2

    return mobilenet_v2(weights=None, num_classes=10)


def tv_segmentation():
    _seeded()
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    return lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3)


def tv_detection():
    _seeded()
    import torchvision
    from torchvision.models.detection import RetinaNet
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    backbone = resnet_fpn_backbone(
        backbone_name="resnet18",
        weights=None,
        trainable_layers=5,
        returned_layers=[2, 3, 4],
        extra_blocks=torchvision.ops.feature_pyramid_network.LastLevelP6P7(256, 256),
    )
    # score_thresh 0: an untrained head scores every box below the default 0.05, and no detection is nothing to compare
    # and no cut-off (topk_candidates, detections_per_img) falls between boxes whose scores differ by rounding
    return RetinaNet(
        backbone, num_classes=3, min_size=64, max_size=64, score_thresh=0.0, topk_candidates=5000, detections_per_img=5000
    )


def tv_video():
    _seeded()
    from torchvision.models.video import r3d_18

    return r3d_18(weights=None, num_classes=5)


def transformer_encoder():
    _seeded()
    from torch import nn

    layer = nn.TransformerEncoderLayer(d_model=32, nhead=2, dim_feedforward=64, batch_first=True)
    return nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)


def hf_bert():
    _seeded()
    import transformers as T

    return T.BertModel(T.BertConfig(vocab_size=100, **SMALL, max_position_embeddings=64))


def hf_gpt2():
    _seeded()
    import transformers as T

    return T.GPT2LMHeadModel(
        T.GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=100, n_positions=64, bos_token_id=0, eos_token_id=0)
    )


def hf_distilbert():
    _seeded()
    import transformers as T

    return T.DistilBertForSequenceClassification(
        T.DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64, num_labels=3)
    )


def hf_vit():
    _seeded()
    import transformers as T

    return T.ViTForImageClassification(T.ViTConfig(image_size=32, patch_size=8, **SMALL, num_labels=5))


def hf_wav2vec2():
    _seeded()
    import transformers as T

    config = T.Wav2Vec2Config(
        **SMALL,
        conv_dim=(16, 16),
        conv_stride=(5, 2),
        conv_kernel=(10, 3),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        vocab_size=20,
    )
    return T.Wav2Vec2Model(config)


def timm_vit():
    _seeded()
    import timm

    return _randomise(timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, num_classes=10))


def timm_resnet():
    _seeded()
    import timm

    return timm.create_model("resnet10t", pretrained=False, num_classes=10)


def yolo_seg():
    _seeded()
    from ultralytics.nn.tasks import SegmentationModel

    return SegmentationModel("yolov8n-seg.yaml", ch=3, nc=4, verbose=False)


def yolo_pose():
    _seeded()
    from ultralytics.nn.tasks import PoseModel

    return PoseModel("yolov8n-pose.yaml", ch=3, nc=1, verbose=False)


# name -> (--input values, extra build options)
CORPUS: dict[str, tuple[list[str], dict]] = {
    "tv_vit": (["x:2x3x32x32"], {}),
    "tv_swin": (["x:2x3x32x32"], {}),
    "tv_convnext": (["x:2x3x32x32:dyn=0,2,3"], {}),
    "tv_efficientnet": (["x:2x3x64x64:dyn=0,2,3"], {}),
    "tv_mobilenet_v2": (["x:2x3x64x64"], {}),
    "tv_segmentation": (["input:1x3x64x64:dyn=0,2,3"], {}),
    "tv_detection": (["images:1x3x64x64:dyn=2,3:range=0,1"], {}),
    "tv_video": (["x:1x3x8x32x32:dyn=0,2"], {}),
    "transformer_encoder": (["src:2x16x32:dyn=0,1"], {}),
    "hf_bert": (["input_ids:2x16:int64:dyn=0,1:range=0,100", "attention_mask:2x16:int64:dyn=0,1"], {}),
    "hf_gpt2": (["input_ids:2x16:int64:dyn=0,1:range=0,100", "attention_mask:2x16:int64:dyn=0,1"], {}),
    "hf_distilbert": (["input_ids:2x16:int64:dyn=0,1:range=0,100", "attention_mask:2x16:int64:dyn=0,1"], {}),
    "hf_vit": (["pixel_values:2x3x32x32"], {}),
    "hf_wav2vec2": (["input_values:2x400:dyn=0,1"], {}),
    "timm_vit": (["x:2x3x32x32"], {}),
    "timm_resnet": (["x:2x3x64x64:dyn=0,2,3"], {}),
    "yolo_seg": (["images:1x3x128x128:range=0,1"], {}),
    "yolo_pose": (["images:1x3x128x128:range=0,1"], {}),
}
