"""`pack migrate` on a corpus made with the real torch-model-archiver (tests/helpers/marcorpus.py): every case
migrates and its answers agree with the source's; against a real TorchServe 0.12 serving the old archives (token auth
on, as it ships) the build served on Triton answers alike, and a model with other weights is caught (exit 3, the
disagreeing build unloaded). The migrated build is a pack build every other command takes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import marcorpus
from tests.helpers.cli import one_error_line, run_pack
from tests.helpers.processes import processes_under, wait_until_empty
from tests.helpers.registry import free_port

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("corpus")
    kinds = ("classifier-eager", "classifier-ts", "segmenter", "detector", "text", "custom", "libtorch")
    cases = {kind: marcorpus.make(kind, folder) for kind in kinds}
    cases["other-weights"] = marcorpus.make("classifier-eager", folder / "other", other_weights=True)
    return cases


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("migrated")
    yield path
    run_pack("stop", "--target", "triton", "--store", str(path))


def migrate(store: Path, source: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`pack migrate SOURCE --json` into `store`, without the measuring step (a build's speed is not tested here)."""
    return run_pack("migrate", str(source), "--store", str(store), "--json", "--iterations", "0", *args, env=env)


@pytest.mark.parametrize(
    "kind, args, compared",
    [
        ("classifier-eager", ("--trust-archive-code",), "classes"),
        ("classifier-ts", (), "classes"),
        ("segmenter", ("--trust-archive-code",), "segments"),
        ("detector", ("--trust-archive-code",), "boxes"),
        ("text", ("--trust-archive-code",), "json"),
        ("custom", ("--trust-archive-code", "--input", "x:1x16"), "tensors"),
        ("libtorch", (), "tensors"),
    ],
)
def test_each_corpus_case_migrates_and_agrees(corpus, store, kind, args, compared):
    proc = migrate(store, corpus[kind], *args)  # the default names: the tests against live servers rebuild them from cache
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["proof"]["agreed"] and doc["proof"]["compared"] == compared
    assert len(doc["proof"]["requests"]) >= 2 and all(r["agree"] for r in doc["proof"]["requests"])
    assert {"onnx", "torchscript", "pt2"} <= set(doc["build"]["formats"])  # TorchScript sources get pt2 too
    build = Path(doc["build"]["path"])
    provenance = json.loads((build / "provenance.json").read_text())
    deps = provenance["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert {"name": corpus[kind].name, "digest": {"sha256": doc["source"]["sha256"]}} in [
        {k: d[k] for k in ("name", "digest")} for d in deps if d["annotations"]["role"] == "migrated from"
    ]
    verified = run_pack("verify", str(build))  # the migrated build is a build like any other
    assert verified.returncode == 0, verified.stderr[-2000:]


def test_archive_code_is_refused_without_trust(corpus, tmp_path):
    proc = run_pack("migrate", str(corpus["classifier-eager"]), "--store", str(tmp_path / "store"))  # no --json: one line
    line = one_error_line(2, proc.returncode, proc.stderr)
    assert "model.py" in line and "--trust-archive-code" in line
    assert not (tmp_path / "store").exists()  # nothing extracted, nothing built


@pytest.fixture(scope="module")
def old_torchserve(corpus, tmp_path_factory) -> Iterator[dict[str, str]]:
    """TorchServe 0.12 as its users run it, serving the corpus's archives: token auth on (its default)."""
    if not shutil.which("java"):
        pytest.skip("java is not installed (run scripts/setup-torchserve.sh)")
    root = tmp_path_factory.mktemp("old-torchserve")
    shutil.copy(corpus["classifier-eager"], root / "classifier.mar")
    shutil.copy(corpus["segmenter"], root / "segmenter.mar")
    for kind in ("classifier-ts", "detector", "text", "custom"):
        shutil.copy(corpus[kind], root / corpus[kind].name)
    ports = [free_port() for _ in range(3)]
    (root / "config.properties").write_text(
        f"inference_address=http://127.0.0.1:{ports[0]}\nmanagement_address=http://127.0.0.1:{ports[1]}\n"
        f"metrics_address=http://127.0.0.1:{ports[2]}\nmodel_store={root}\nload_models=classifier.mar,classifier_ts.mar,segmenter.mar,detector.mar,text.mar,mlp.mar\n"
        "default_workers_per_model=1\n"
    )
    (root / "tmp").mkdir()
    env = {**os.environ, "TMPDIR": str(root / "tmp")}
    torchserve = Path(sys.executable).parent / "torchserve"
    cmd = [str(torchserve), "--start", "--foreground", "--ncs", "--ts-config", str(root / "config.properties")]
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{ports[0]}"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                token = json.loads((root / "key_file.json").read_text())["inference"]["key"]
                request = urllib.request.Request(f"{url}/ping", headers={"Authorization": f"Bearer {token}"})
                with urllib.request.urlopen(request, timeout=5) as answer:
                    if json.loads(answer.read()).get("status") == "Healthy" and _ready(
                        ports[1], root, ("classifier", "segmenter")
                    ):
                        break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(1)
        else:
            pytest.fail("TorchServe with the corpus's archives did not get ready in 180 s")
        yield {"url": url, "token": token}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
        assert wait_until_empty(lambda: processes_under(root), 20) == []


def _ready(port: int, root: Path, models: tuple[str, ...]) -> bool:
    token = json.loads((root / "key_file.json").read_text())["management"]["key"]
    for model in models:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/models/{model}", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=5) as answer:
            workers = json.loads(answer.read())[0].get("workers", [])
        if not any(w.get("status") == "READY" for w in workers):
            return False
    return True


def test_against_live_torchserve_agrees_and_other_weights_are_caught(corpus, store, old_torchserve):
    env = {"PACK_AGAINST_TOKEN": old_torchserve["token"]}
    against = ("--against", old_torchserve["url"])
    proc = migrate(store, corpus["classifier-eager"], "--force", "--trust-archive-code", *against, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["proof"]["agreed"] and doc["proof"]["new"].startswith("triton: ") and doc["proof"]["compared"] == "classes"
    assert doc["build"]["cache"] == "hit", proc.stderr  # built by the in-process test: an unchanged source is not built twice
    assert old_torchserve["token"] not in proc.stdout + proc.stderr
    served = json.loads(run_pack("status", "--target", "triton", "--store", str(store), "--json").stdout)
    assert any(m["name"] == "classifier" and m["state"] == "READY" for m in served["models"])

    proc = migrate(
        store, corpus["other-weights"], "--name", "other", "--trust-archive-code", *against, "--against-model", "classifier",
        "--repo", env=env,
    )  # fmt: skip
    line = one_error_line(3, proc.returncode, proc.stderr)
    assert "answers differently" in line
    doc = json.loads(proc.stdout)  # the report comes first, with each request's verdict
    assert doc["proof"]["agreed"] is False and not any(r["agree"] for r in doc["proof"]["requests"])
    assert "outputs" not in doc and not (store / "triton" / "other").exists()  # nothing unverified is written to serve
    served = json.loads(run_pack("status", "--target", "triton", "--store", str(store), "--json").stdout)
    assert not any(m["name"] == "other" and m["state"] == "READY" for m in served["models"])

    proc = migrate(store, corpus["segmenter"], "--force", "--trust-archive-code", *against, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["proof"]["compared"] == "segments"
    proc = migrate(store, corpus["detector"], "--force", "--trust-archive-code", *against, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["proof"]["compared"] == "boxes"
    proc = migrate(store, corpus["classifier-ts"], "--force", *against, env=env)  # TorchScript inside: no trust asked
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["proof"]["agreed"]


@pytest.mark.parametrize("kind, args", [("text", ()), ("custom", ("--input", "x:1x16", "--sample", "ROW"))])
def test_against_live_torchserve_inside_the_old_handlers_steps(corpus, store, old_torchserve, tmp_path, kind, args):
    """text_classifier and a custom handler: the old endpoint is sent the texts (or the --sample bodies), and the
    build's answers are made by the same handler's steps around the served build."""
    row = tmp_path / "row.json"
    row.write_text(json.dumps([round(0.1 * i, 1) for i in range(16)]))
    args = tuple(str(row) if a == "ROW" else a for a in args)
    env = {"PACK_AGAINST_TOKEN": old_torchserve["token"]}
    proc = migrate(store, corpus[kind], "--force", "--trust-archive-code", *args, "--against", old_torchserve["url"], env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["proof"]["agreed"] and doc["proof"]["compared"] == "json" and "own steps" in doc["proof"]["new"]


def test_against_without_the_token_is_refused_by_the_old_server(corpus, store, old_torchserve):
    proc = migrate(store, corpus["classifier-ts"], "--force", "--against", old_torchserve["url"], "--against-model", "classifier")
    line = one_error_line(5, proc.returncode, proc.stderr)
    assert "token" in line or "401" in line or "refused" in line


def test_against_a_triton_endpoint(corpus, store):
    """The libtorch folder's answers asked of a Triton serving its names (pack's Triton serves the migrated build
    under INPUT__0/OUTPUT__0: this tritonserver has no libtorch backend to serve the folder itself)."""
    first = migrate(store, corpus["libtorch"], "--force")
    assert first.returncode == 0, first.stderr[-3000:]
    deployed = run_pack("deploy", "classifier_libtorch", "--target", "triton", "--store", str(store), "--json")
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    url = json.loads(deployed.stdout)["url"]
    proc = migrate(
        store, corpus["libtorch"], "--name", "libtorch2", "--against", url, "--against-model", "classifier_libtorch",
        "--repo", "--kserve-storage-uri", "gs://models/libtorch2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["proof"]["agreed"] and doc["proof"]["compared"] == "tensors"
    assert doc["changes"]["settings"] == {"batch_size": 8, "max_batch_delay_ms": 2, "workers": 2}
    # the outputs asked for, through their targets' own code, the folder's settings carried over and the names kept
    config = (store / "triton" / "libtorch2" / "config.pbtxt").read_text()
    for line in ("max_batch_size: 8", "count: 2", "max_queue_delay_microseconds: 2000", '"INPUT__0"', '"OUTPUT__0"'):
        assert line in config
    assert run_pack("check-repo", str(store / "triton")).returncode == 0
    manifests = list((store / "kserve" / "libtorch2").rglob("inferenceservice.yaml"))
    assert len(manifests) == 1 and doc["outputs"]["manifest"]["target"] == "kserve"
    assert run_pack("check-manifest", str(manifests[0])).returncode == 0


def test_a_custom_handler_against_a_live_endpoint_needs_sample_bodies(corpus, store):
    proc = migrate(store, corpus["custom"], "--trust-archive-code", "--input", "x:1x16", "--against", "http://127.0.0.1:9")
    line = one_error_line(2, proc.returncode, proc.stderr)
    assert "--sample FILE" in line


def test_a_target_the_build_cannot_be_asked_on_is_refused_before_any_work(corpus, tmp_path):
    proc = run_pack(
        "migrate",
        str(corpus["libtorch"]),
        "--store",
        str(tmp_path / "s"),
        "--against",
        "http://127.0.0.1:9",
        "--target",
        "kserve",
    )
    line = one_error_line(2, proc.returncode, proc.stderr)
    assert "--target kserve" in line and not (tmp_path / "s").exists()
