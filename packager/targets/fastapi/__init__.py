"""The FastAPI target: pack's own handler code (the code TorchServe runs) behind FastAPI + uvicorn, launched by pack on
loopback; the HTTP baseline of `pack bench`.

deploy / status / undeploy / stop          pack deploy|status|undeploy|stop --target fastapi
"""

from __future__ import annotations

from .deploy import deploy, status, stop, undeploy

__all__ = ["deploy", "status", "undeploy", "stop"]
