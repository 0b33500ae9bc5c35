"""KServe's InferenceService CRD schema as the tests read it: the shared copy when the workspace has one (independent
of the package under test), else the one shipped in packager/schemas/."""

from __future__ import annotations

import json
from typing import Any

from tests.helpers import ROOT

NAME = "kserve-inferenceservice-v1beta1.schema.json"
SHARED = ROOT.parent / "shared" / "schemas" / NAME


def crd_schema() -> dict[str, Any]:
    path = SHARED if SHARED.is_file() else ROOT / "packager" / "schemas" / NAME
    return dict(json.loads(path.read_text()))
