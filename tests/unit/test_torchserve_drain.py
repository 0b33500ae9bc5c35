"""Draining a version on TorchServe (packager/targets/torchserve/drain.py and the handler's side in
handlers/pack_torchserve.py), in-process: the drain file pack writes makes the handler of that registered name and
version answer 503 with Retry-After, and pack waits for TorchServe's queue to be empty. Under load on a real
TorchServe: tests/integration/test_reliability_processes.py::test_torchserve_undeploy_under_load_answers_every_request."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from packager.serve.tasks import runtime_on_path
from packager.targets.torchserve import drain

runtime_on_path()
import pack_torchserve  # noqa: E402  (a flat module of the serving runtime, as on a server)


class Context:
    """What TorchServe hands a handler: the registered name, the archive's manifest, per-request answers."""

    def __init__(self, name: str, version: str):
        self.model_name = name
        self.manifest = {"model": {"modelName": "tiny", "modelVersion": version}}
        self.status: dict[int, int] = {}
        self.headers: dict[int, dict[str, str]] = {}

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self.status[idx] = code

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self.headers.setdefault(idx, {})[key] = value

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.set_response_header(idx, "Content-Type", value)


def test_handler_refuses_the_drained_version_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(pack_torchserve.DRAIN_ENV, str(tmp_path))
    assert pack_torchserve.DRAIN_ENV == drain.DRAIN_ENV  # one name on both sides
    with drain.draining(tmp_path, "tiny", "1"):
        assert pack_torchserve.draining(Context("tiny", "1"))
        assert not pack_torchserve.draining(Context("tiny", "2"))
        assert not pack_torchserve.draining(Context("tiny-pack-next", "1"))  # a rollout's new archive is served
    assert not pack_torchserve.draining(Context("tiny", "1"))  # the file goes with the drain
    assert list(tmp_path.iterdir()) == []


def test_handler_without_a_drain_folder_serves(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(pack_torchserve.DRAIN_ENV, raising=False)
    assert not pack_torchserve.draining(Context("tiny", "1"))


def test_every_request_of_a_drained_batch_gets_503_with_retry_after():
    context = Context("tiny", "1")
    answers = pack_torchserve.refuse_all([{"body": b"a"}, {"body": b"b"}], context)
    assert len(answers) == 2 and all('"code":503' in a for a in answers)
    assert context.status == {0: 503, 1: 503}
    assert all(context.headers[i]["Retry-After"] == pack_torchserve.RETRY_AFTER_S for i in (0, 1))


class Management:
    def __init__(self, counts: list[Any]):
        self.counts = counts
        self.unregistered: list[str] = []

    def describe(self, name: str, version: str | None = None) -> list[dict[str, Any]]:
        count = self.counts.pop(0) if len(self.counts) > 1 else self.counts[0]
        return [{"modelVersion": version, "jobQueueStatus": {"pendingRequests": count}}]

    def unregister(self, name: str, version: str, timeout: float = 60.0) -> str:
        self.unregistered.append(version)
        return "ok"


def test_unregisters_only_once_the_queue_is_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(drain, "QUIET_S", 0.01)
    seen: list[bool] = []

    class Watched(Management):
        def unregister(self, name: str, version: str, timeout: float = 60.0) -> str:
            seen.append(drain.drain_file(tmp_path, name, version).exists())  # still draining while it goes
            assert self.counts == [0]  # every queued request was waited for
            return super().unregister(name, version, timeout)

    mgmt = Watched([3, 2, 0, 1, 0, 0])
    drain.drain_then(cast(Any, mgmt), tmp_path, "tiny", "1", 5.0)
    assert mgmt.unregistered == ["1"] and seen == [True]
    assert list(tmp_path.iterdir()) == []


def test_wait_is_bounded_by_the_timeout(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(drain, "QUIET_S", 0.01)
    assert drain.wait_empty(cast(Any, Management([5])), "tiny", "1", 0.1) is False
