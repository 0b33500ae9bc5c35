"""The migration corpus: models served the old ways, made here with the real torch-model-archiver (seeded weights).

`make(kind, folder)` writes one case and returns its source path (a `.mar`, or a Triton model folder):
- `classifier-eager`: a small CNN class in model.py + its state dict, TorchServe's `image_classifier`, labels, a
  model-config.yaml with batching settings;
- `classifier-ts`: the same network traced to TorchScript, `image_classifier`;
- `segmenter`: a small fully-convolutional net answering {"out": N x K x H x W}, `image_segmenter`;
- `detector`: a small detector answering torchvision's [{"boxes", "labels", "scores"}], `object_detector`, labels;
- `text`: an EmbeddingBag text classifier (token ids and offsets), `text_classifier`, its vocabulary and labels;
- `custom`: an MLP with a handler file of its own (JSON lists of 16 numbers in, lists out);
- `libtorch`: the classifier's TorchScript in a Triton `pytorch_libtorch` folder (max_batch_size 8, dynamic batching).
`other_weights=True` makes the same architecture with other weights (a migration that must be caught).
"""

from __future__ import annotations

import json
import os
import string
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

from packager.migrate.proof import TEXTS

ARCHIVER = Path(sys.executable).parent / "torch-model-archiver"
LABELS = [f"class_{i}" for i in range(10)]

CLASSIFIER = textwrap.dedent(
    """
    import torch
    from torch import nn


    class ImageClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
            )
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            return self.fc(torch.flatten(self.features(x), 1))
    """
)

SEGMENTER = textwrap.dedent(
    """
    from torch import nn


    class Segmenter(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))

        def forward(self, x):
            return {"out": self.body(x)}
    """
)

DETECTOR = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Detector(nn.Module):
        \"\"\"Eight boxes an image, each with a label (1 or 2) and a score: torchvision's detection answer.\"\"\"

        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU())
            self.head = nn.Linear(16, 48)

        def forward(self, images):
            out = []
            for image in images:
                f = self.head(self.features(image[None]).mean((2, 3))).view(8, 6)
                xy, wh = torch.sigmoid(f[:, :2]), torch.sigmoid(f[:, 2:4]) * 0.5
                boxes = torch.cat([xy - wh / 2, xy + wh / 2], 1).clamp(0, 1) * 200.0
                scores, labels = torch.softmax(f[:, 4:], 1).max(1)
                out.append({"boxes": boxes, "labels": labels + 1, "scores": scores})
            return out
    """
)

TEXT = textwrap.dedent(
    """
    from torch import nn


    class TextClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.EmbeddingBag(100, 16, mode="mean")
            self.fc = nn.Linear(16, 4)

        def forward(self, text, offsets):
            return self.fc(self.embedding(text, offsets))
    """
)

MLP = textwrap.dedent(
    """
    from torch import nn


    class Mlp(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 4))

        def forward(self, x):
            return self.net(x)
    """
)

CUSTOM_HANDLER = textwrap.dedent(
    """
    import json

    import torch
    from ts.torch_handler.base_handler import BaseHandler


    class MlpHandler(BaseHandler):
        def preprocess(self, data):
            rows = [json.loads(r.get("body") or r.get("data")) for r in data]
            return torch.tensor(rows, dtype=torch.float32)

        def postprocess(self, data):
            return data.tolist()
    """
)


def _ngrams(texts: tuple[str, ...]) -> set[str]:
    """What TorchServe's text_classifier looks up: each lower-cased word without punctuation, and each pair."""
    keys: set[str] = set()
    for text in texts:
        words = text.lower().translate(str.maketrans("", "", string.punctuation)).split()
        keys |= set(words) | {" ".join(pair) for pair in zip(words, words[1:], strict=False)}
    return keys


def _module(code: str, name: str, seed: int):
    import torch

    namespace: dict = {}
    exec(compile(code, name, "exec"), namespace)  # noqa: S102 - the corpus's own model code
    cls = next(
        v for k, v in namespace.items() if isinstance(v, type) and issubclass(v, torch.nn.Module) and v is not torch.nn.Module
    )
    torch.manual_seed(seed)
    model = cls().eval()
    with torch.no_grad():  # logits far enough apart that the top classes are not a coin toss
        for p in model.parameters():
            p.mul_(3.0)
    return model


def _archive(folder: Path, name: str, *args: str) -> Path:
    # torch-model-archiver stages the files in $TMPDIR/<model name>: a private TMPDIR, so that two runs making the same
    # model name at once (pytest workers) never share that folder
    tmp = folder / ".archiver-tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(ARCHIVER), "--model-name", name, "--version", "1.0", "--export-path", str(folder), "--force", *args],
        check=True,
        capture_output=True,
        env={**os.environ, "TMPDIR": str(tmp)},
    )
    return folder / f"{name}.mar"


def make(kind: str, folder: Path, other_weights: bool = False) -> Path:
    import torch

    seed = 7 if other_weights else 0
    work = folder / f"{kind}-files"
    work.mkdir(parents=True, exist_ok=True)
    labels = work / "index_to_name.json"
    labels.write_text(json.dumps({str(i): name for i, name in enumerate(LABELS)}))
    if kind in ("classifier-eager", "classifier-ts", "libtorch"):
        model = _module(CLASSIFIER, "model.py", seed)
        (work / "model.py").write_text(CLASSIFIER)
        if kind == "classifier-eager":
            torch.save(model.state_dict(), work / "weights.pth")
            (work / "model-config.yaml").write_text("minWorkers: 1\nmaxWorkers: 1\nbatchSize: 4\nmaxBatchDelay: 20\n")
            return _archive(
                folder, "classifier", "--model-file", str(work / "model.py"), "--serialized-file", str(work / "weights.pth"),
                "--handler", "image_classifier", "--extra-files", str(labels), "--config-file", str(work / "model-config.yaml"),
            )  # fmt: skip
        with warnings.catch_warnings():  # TorchScript is deprecated: the corpus makes what older pipelines made
            warnings.simplefilter("ignore", FutureWarning)
            traced = torch.jit.trace(model, torch.rand(1, 3, 224, 224))
        if kind == "classifier-ts":
            traced.save(str(work / "traced.pt"))
            return _archive(
                folder, "classifier_ts", "--serialized-file", str(work / "traced.pt"), "--handler", "image_classifier",
                "--extra-files", str(labels),
            )  # fmt: skip
        entry = folder / "classifier_libtorch"
        (entry / "1").mkdir(parents=True, exist_ok=True)
        traced.save(str(entry / "1" / "model.pt"))
        (entry / "config.pbtxt").write_text(
            'name: "classifier_libtorch"\nplatform: "pytorch_libtorch"\nmax_batch_size: 8\n'
            'input [{ name: "INPUT__0" data_type: TYPE_FP32 dims: [3, 224, 224] }]\n'
            'output [{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [10] }]\n'
            "dynamic_batching { max_queue_delay_microseconds: 2000 }\n"
            "instance_group [{ count: 2 kind: KIND_CPU }]\n"
        )
        return entry
    if kind == "segmenter":
        model = _module(SEGMENTER, "segmenter.py", seed)
        (work / "segmenter.py").write_text(SEGMENTER)
        torch.save(model.state_dict(), work / "seg.pth")
        return _archive(
            folder, "segmenter", "--model-file", str(work / "segmenter.py"), "--serialized-file", str(work / "seg.pth"),
            "--handler", "image_segmenter",
        )  # fmt: skip
    if kind == "detector":
        model = _module(DETECTOR, "detector.py", seed)
        (work / "detector.py").write_text(DETECTOR)
        torch.save(model.state_dict(), work / "det.pth")
        labels.write_text(json.dumps({"0": "background", "1": "cat", "2": "dog"}))
        return _archive(
            folder, "detector", "--model-file", str(work / "detector.py"), "--serialized-file", str(work / "det.pth"),
            "--handler", "object_detector", "--extra-files", str(labels),
        )  # fmt: skip
    if kind == "text":
        model = _module(TEXT, "text_model.py", seed)
        (work / "text_model.py").write_text(TEXT)
        torch.save(model.state_dict(), work / "text.pth")
        labels.write_text(json.dumps({str(i): name for i, name in enumerate(["World", "Sports", "Business", "Sci/Tec"])}))
        vocab = work / "source_vocab.pt"  # the words and word pairs of the texts pack migrate sends
        torch.save({key: i for i, key in enumerate(sorted(_ngrams(TEXTS)))}, vocab)
        return _archive(
            folder, "text", "--model-file", str(work / "text_model.py"), "--serialized-file", str(work / "text.pth"),
            "--handler", "text_classifier", "--extra-files", f"{labels},{vocab}",
        )  # fmt: skip
    if kind == "custom":
        model = _module(MLP, "mlp.py", seed)
        (work / "mlp.py").write_text(MLP)
        (work / "mlp_handler.py").write_text(CUSTOM_HANDLER)
        torch.save(model.state_dict(), work / "mlp.pth")
        return _archive(
            folder, "mlp", "--model-file", str(work / "mlp.py"), "--serialized-file", str(work / "mlp.pth"),
            "--handler", str(work / "mlp_handler.py"),
        )  # fmt: skip
    raise ValueError(kind)
