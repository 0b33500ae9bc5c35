"""Registry of serving tasks (`TASKS`, packager/registry.py's Registry): one small registered entry per task.

A build's task decides how it is served: which TorchServe entry handler its .mar ships, which Triton python-backend
steps surround the model (joined by an ensemble), and what a smoke or benchmark request sends (encoded image bytes,
or the build's sample tensors). The targets and the bench look it up here with `task_for(report)`; nothing else
matches task names or post-processing formats. This module also finds the serving runtime those entries run (the
`handlers` package, through importlib.resources) and says which of its files a server needs beside an entry file.

No torch here: `pack models` and `pack --help` never import it.
"""

from __future__ import annotations

import importlib.resources
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import EnvironmentProblem
from ..registry import Registry
from ..report.build_report import BuildReport

RUNTIME_PACKAGE = "handlers"
IMAGE = "image"  # the request is one encoded image (JPEG/PNG bytes)
TENSORS = "tensors"  # the request is the build's sample tensors (generic tensor JSON, or Triton inputs)


@dataclass(frozen=True)
class TritonSteps:
    """Triton python-backend models around the served model, joined by the ensemble `<name>_ensemble` where the model
    runs on a native backend (on the python backend one model runs all three): `<name>_preprocess` runs the runtime
    file `preprocess`, `<name>_postprocess` runs `postprocess` (each copied as that entry's model.py). `layout` names
    the configs the Triton target writes for them (packager/targets/triton/detection.py `ENSEMBLES`)."""

    preprocess: str
    postprocess: str
    layout: str


@dataclass(frozen=True)
class Task:
    """How a build of one task is served. `report_task`, `postprocessing_format` and `image_input` say which builds it
    serves (None / False: any)."""

    name: str
    handler: str  # the TorchServe entry handler (a file of the runtime)
    sample: str = TENSORS  # IMAGE or TENSORS: what a smoke-test or benchmark request sends
    triton: TritonSteps | None = None  # None: Triton serves the model alone
    report_task: str | None = None  # the build's `task`
    postprocessing_format: str | None = None  # the build's `postprocessing.format`
    image_input: bool = False  # needs exactly one (N, 3, H, W) input
    description: str = ""
    agreement: str = "cosine"  # how a variant's outputs must agree with the reference's (packager/variants/agreement.py)

    def matches(self, report: BuildReport) -> bool:
        if self.report_task is not None and report.task != self.report_task:
            return False
        if self.postprocessing_format is not None and report.postprocessing.get("format") != self.postprocessing_format:
            return False
        return not self.image_input or has_image_input(report)

    def model_names(self, name: str, one_instance: bool = False) -> list[str]:
        """The Triton entries of a build called `name`, in load order (composing models before the endpoint):
        `one_instance`, the endpoint is one python model running the steps and the model (no ensemble)."""
        if self.triton is None:
            return [name]
        if one_instance:
            return [name, f"{name}_ensemble"]
        return [f"{name}_preprocess", name, f"{name}_postprocess", f"{name}_ensemble"]


TASKS: Registry[Task] = Registry("serving task")  # lookups try the tasks in registration order
GENERIC = "generic"  # the fallback: every build that no other task serves


def register_task(task: Task) -> Task:
    """Register `task`; lookups try the registered tasks in order and fall back to the generic one."""
    if task.sample not in (IMAGE, TENSORS):
        raise ValueError(f"task {task.name!r}: sample must be {IMAGE!r} or {TENSORS!r}")
    return TASKS.register(task)


list_tasks = TASKS.entries
get_task = TASKS.get


def task_for(report: BuildReport) -> Task:
    """The registered task that serves this build (its report or plan metadata); the generic one when none fits."""
    for task in TASKS.entries():
        if task.name != GENERIC and task.matches(report):
            return task
    return TASKS.get(GENERIC)


def task_of_handler(handler: str) -> Task | None:
    """The task whose TorchServe entry handler is `handler` (a file name), if any."""
    return next((t for t in TASKS.entries() if t.handler == handler), None)


def has_image_input(report: BuildReport) -> bool:
    inputs = report.inputs
    return len(inputs) == 1 and len(inputs[0].shape) == 4 and inputs[0].shape[1] == 3


# ---------------------------------------------------------------- the tasks

register_task(
    Task(
        name="image-classification",
        handler="pack_classifier.py",
        sample=IMAGE,
        report_task="image-classification",
        image_input=True,
        description="image bytes -> resize, crop, normalise -> top-k labels",
        agreement="top-k",
    )
)

register_task(
    Task(
        name="yolo-detection",
        handler="pack_detector.py",
        sample=IMAGE,
        triton=TritonSteps(preprocess="pack_triton_yolo_pre.py", postprocess="pack_triton_yolo_post.py", layout="yolo"),
        report_task="object-detection",
        postprocessing_format="yolov8",
        image_input=True,
        description="image bytes -> letterbox -> YOLO head (4 + classes, anchors) -> threshold, NMS -> boxes in original pixels",
        agreement="boxes",
    )
)

register_task(
    Task(
        name=GENERIC,
        handler="pack_tensors.py",
        sample=TENSORS,
        description="generic tensors in, generic tensors out",
    )
)


# ---------------------------------------------------------------- the serving runtime's files

TRITON_MODEL = "pack_triton_model.py"  # the Triton python-backend model.py that runs an export


def sample_image(width: int = 640, height: int = 480) -> bytes:
    """The synthetic JPEG (shapes on a gradient) an image task's smoke tests and benchmarks send."""
    import io

    import numpy as np
    from PIL import Image, ImageDraw

    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 255 // width), (y * 255 // height), ((x + y) * 127 // (width + height))], -1).astype(np.uint8)
    image = Image.fromarray(base)
    draw = ImageDraw.Draw(image)
    draw.rectangle([width // 8, height // 6, width // 3, height // 2], fill=(220, 30, 30))
    draw.ellipse([width // 2, height // 3, width * 7 // 8, height * 5 // 6], fill=(30, 200, 60))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def runtime_files() -> Any:
    """The serving runtime's folder (a Traversable; a Path for a normal install), the package data of `handlers`."""
    try:
        root = importlib.resources.files(RUNTIME_PACKAGE)
    except ModuleNotFoundError:
        root = None
    if root is None or not (root / "pack_runtime.py").is_file():
        raise EnvironmentProblem(
            "pack's serving runtime is missing (the `handlers` package with pack_runtime.py)",
            "reinstall pack (`pip install -e .` in a checkout), so its `handlers` package is installed",
        )
    return root


def read_runtime(name: str) -> bytes:
    """The bytes of one runtime file, as shipped."""
    data: bytes = (runtime_files() / name).read_bytes()
    return data


# An import statement's first line: `import a, b as c` or `from a import ...` (absolute imports only).
_IMPORT = re.compile(r"^[ \t]*(?:import[ \t]+([\w., \t]+)|from[ \t]+(\w+)[ \t]+import\b)", re.MULTILINE)


def shipped_files(entry: str) -> list[str]:
    """`entry` and every runtime module it imports, directly or through another (sorted file names): what a server
    needs beside the entry file. Read from the files' own import statements, so the list cannot go stale. A line
    scan, not a parse (a parse of the runtime costs `pack archive` a tenth of its time): a text that only looks like
    an import can add a file of the runtime, never leave one out."""
    root = runtime_files()
    found: set[str] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        if not (root / name).is_file():
            raise EnvironmentProblem(f"pack's serving runtime has no {name}", "reinstall pack")
        found.add(name)
        for match in _IMPORT.finditer((root / name).read_text(encoding="utf-8")):
            listed = match.group(1) or match.group(2)
            modules = [part.split()[0] for part in listed.split(",") if part.strip()]
            todo.extend(f"{m}.py" for m in modules if "." not in m and (root / f"{m}.py").is_file())
    return sorted(found)


def runtime_on_path() -> Path:
    """Put the runtime's folder first on sys.path (its files are flat modules, as on a server) and return it: for
    running a handler in this process (the bench)."""
    root = runtime_files()
    folder = Path(str(root))
    if not (folder / "pack_runtime.py").is_file():  # not a plain folder (a zipped install): use a copy
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="pack-runtime-"))
        for item in root.iterdir():
            if item.name.endswith(".py"):
                (folder / item.name).write_bytes(item.read_bytes())
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return folder
