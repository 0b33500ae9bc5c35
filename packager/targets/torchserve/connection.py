"""The TorchServe a command talks to: `--url` (+ `--token-file`), else the server pack launched for the store.

`connect` returns the management and inference clients with their tokens, the model store pack may write archives
into, and whether this command started the server. Keys travel only over https or to loopback unless --insecure-http;
the inference API of a --url server is --inference-url (or PACK_TORCHSERVE_INFERENCE_URL), never guessed.
"""

from __future__ import annotations

import os
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, overload

from ...errors import EnvironmentProblem, UsageError
from ...serve.http import translated
from ..options import DeployOptions
from .client import InferenceClient, ManagementClient
from .server import TorchServeServer, read_tokens

MODEL_STORE_ENV = "PACK_TORCHSERVE_MODEL_STORE"  # with --url: a folder that is the server's model store
INFERENCE_URL_ENV = "PACK_TORCHSERVE_INFERENCE_URL"  # with --url: the inference API (as --inference-url)


@dataclass
class Connection:
    management: ManagementClient
    inference_client: InferenceClient | None  # None: --url without --inference-url (deploy refuses)
    token_file: str | None
    local: TorchServeServer | None
    model_store: Path | None
    server_seconds: float = 0.0
    launched: bool = False  # this command started the server

    @property
    def inference(self) -> InferenceClient:
        """The inference API's client; UsageError (exit 2) for --url without --inference-url."""
        if self.inference_client is None:
            raise UsageError(
                f"pack does not know where the inference API of {self.management.base_url} is",
                "pass --inference-url (TorchServe's inference_address, e.g. http://127.0.0.1:8080)",
            )
        return self.inference_client

    def where_logs(self) -> str:
        return f"see the server log {self.local.log_path}" if self.local else "see the server's logs"


def _inference_url(management_url: str, opts: DeployOptions) -> str | None:
    """--inference-url, else PACK_TORCHSERVE_INFERENCE_URL, else the recorded one of the server pack launched for this
    store when --url names it; never a guess (a key sent to a guessed port goes to whatever listens there)."""
    given = getattr(opts, "inference_url", None) or (opts.extra or {}).get("inference_url") or os.environ.get(INFERENCE_URL_ENV)
    if given:
        return str(given).rstrip("/")
    state = TorchServeServer(opts.store).running()  # the server pack launched for this store, reached through --url
    if state and state["management_url"].rstrip("/") == management_url.rstrip("/"):
        url: str = state["inference_url"]
        return url
    return None


@overload
def connect(opts: DeployOptions, start: Literal[True]) -> Connection: ...


@overload
def connect(opts: DeployOptions, start: bool) -> Connection | None: ...


def connect(opts: DeployOptions, start: bool) -> Connection | None:
    """The server to talk to: --url, else the server launched for this store (started when `start`)."""
    if opts.url:
        url = opts.url.rstrip("/")
        if not urllib.parse.urlsplit(url).scheme:
            url = "http://" + url
        tokens = read_tokens(Path(opts.token_file)) if opts.token_file else {}
        store = os.environ.get(MODEL_STORE_ENV)
        insecure = bool(getattr(opts, "insecure_http", False))
        inference = _inference_url(url, opts)
        conn = Connection(
            ManagementClient(url, tokens.get("management"), timeout=opts.timeout, insecure_http=insecure),
            InferenceClient(inference, tokens.get("inference"), timeout=opts.timeout, insecure_http=insecure)
            if inference
            else None,
            str(Path(opts.token_file).resolve()) if opts.token_file else None,
            None,
            Path(store) if store else None,
        )
        _check_reachable(conn)
        return conn
    local = TorchServeServer(opts.store)
    state = local.running()
    if state is None and not start:
        return None
    t0 = time.monotonic()
    launched = state is None
    if state is None:
        state = local.start(opts.timeout)  # a start that fails or that Ctrl-C cuts short leaves no server (serve/local.py)
    tokens = local.tokens()
    conn = Connection(
        ManagementClient(state["management_url"], tokens["management"], timeout=opts.timeout),
        InferenceClient(state["inference_url"], tokens["inference"], timeout=opts.timeout),
        str(local.key_file),
        local,
        local.model_store,
        round(time.monotonic() - t0, 2),
        launched,
    )
    _check_reachable(conn)
    return conn


def _check_reachable(conn: Connection) -> None:
    """One call to the management API: no answer, a refused token or an error is exit 5, before anything is done."""
    with translated("reaching TorchServe's management API", refused=EnvironmentProblem):
        conn.management.list_models()
