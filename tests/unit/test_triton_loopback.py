"""Issue 7, Triton side, in-process: pack never launches tritonserver off loopback. (Everything that needs a real
tritonserver: tests/integration/test_reliability_triton.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest


def test_launch_refuses_a_non_loopback_address(tmp_path: Path) -> None:
    from packager.errors import UsageError
    from packager.targets.triton import server

    for host in ("0.0.0.0", "192.168.1.10"):
        with pytest.raises(UsageError, match="loopback only"):
            server.TritonServer(tmp_path / "store").start(None, host, 5)
    assert not (tmp_path / "store" / ".servers" / "triton" / "state.json").exists()
