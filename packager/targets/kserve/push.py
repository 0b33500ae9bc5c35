"""Pushing a model-car (modelcar.py) to a registry with the OCI distribution API: each blob the registry lacks is
uploaded monolithically (POST an upload, PUT the bytes with their digest), then the manifest is PUT under the tag.

`oci://REGISTRY/REPO[:TAG]` names where: plain http only to a loopback registry (127.0.0.1, localhost, [::1]), https
otherwise. Authentication: none, or basic auth from PACK_REGISTRY_USERNAME and PACK_REGISTRY_PASSWORD (never printed).
"""

from __future__ import annotations

import base64
import os
import re
import urllib.parse
from dataclasses import dataclass

from ...errors import DeployFailed, EnvironmentProblem, UsageError
from ...serve.http import ApiError, HttpClient, HttpError, is_loopback, pack_error
from .modelcar import Blob, Image

USER_ENV, PASSWORD_ENV = "PACK_REGISTRY_USERNAME", "PACK_REGISTRY_PASSWORD"
HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)(:[0-9]{1,5})?$")
COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY = re.compile(rf"^{COMPONENT}(?:/{COMPONENT})*$")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class Reference:
    registry: str  # host[:port]
    repository: str
    tag: str

    @property
    def host(self) -> str:
        return self.registry.rsplit(":", 1)[0] if not self.registry.endswith("]") else self.registry

    @property
    def base_url(self) -> str:
        return f"{'http' if is_loopback(self.host) else 'https'}://{self.registry}"

    def tagged(self) -> str:
        return f"oci://{self.registry}/{self.repository}:{self.tag}"

    def pinned(self, digest: str) -> str:
        """The reference KServe pulls: by digest, so the manifest names exactly the image pack built."""
        return f"oci://{self.registry}/{self.repository}@{digest}"


def parse_reference(uri: str, default_tag: str) -> Reference:
    """`oci://REGISTRY/REPO[:TAG]` (TAG defaults to `default_tag`); a one-line usage error for anything else."""
    hint = "use oci://REGISTRY/REPOSITORY[:TAG], e.g. oci://ghcr.io/team/resnet18:1"
    rest = uri[len("oci://") :] if uri.startswith("oci://") else ""
    registry, _, path = rest.partition("/")
    if not HOST.match(registry) or not path:
        raise UsageError(f"--storage-uri {uri!r} does not name a registry host and a repository", hint)
    if "@" in path:
        raise UsageError(f"--storage-uri {uri!r} names a digest", "give a tag (or none): pack pins the digest it pushes")
    repository, tag = path, default_tag
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = path.rsplit(":", 1)
    if not REPOSITORY.match(repository):
        raise UsageError(f"{repository!r} is not a valid repository name", "use lowercase letters, digits, '.', '_', '-', '/'")
    if not TAG.match(tag):
        raise UsageError(f"{tag!r} is not a valid image tag", "use letters, digits, '.', '_', '-' (at most 128)")
    return Reference(registry, repository, tag)


class RegistryClient(HttpClient):
    server = "the registry"

    def _authorization(self) -> str | None:
        user, password = os.environ.get(USER_ENV), os.environ.get(PASSWORD_ENV)
        if not user or not password:
            return None
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def has_blob(self, repository: str, digest: str) -> bool:
        try:
            self.request("HEAD", f"/v2/{repository}/blobs/{digest}")
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def upload(self, repository: str, blob: Blob) -> None:
        """POST an upload session, then PUT the whole blob to its Location with `?digest=`."""
        started = self.request("POST", f"/v2/{repository}/blobs/uploads/", body=b"")
        location = _header(started.headers, "Location")
        if not location:
            raise DeployFailed(f"{self.server} at {self.base_url} started an upload without a Location", "check the registry")
        path = self._same_origin(urllib.parse.urljoin(f"{self.base_url}/v2/{repository}/blobs/uploads/", location))
        path += ("&" if "?" in path else "?") + "digest=" + urllib.parse.quote(blob.digest)
        with open(blob.path, "rb") as fh:
            headers = {"Content-Length": str(blob.size)}
            self.request("PUT", path, body=fh, content_type="application/octet-stream", headers=headers)

    def _same_origin(self, url: str) -> str:
        """The path and query of `url`, which must be on this registry (pack sends its blobs nowhere else)."""
        parts, base = urllib.parse.urlsplit(url), urllib.parse.urlsplit(self.base_url)
        if (parts.scheme, parts.netloc) != (base.scheme, base.netloc):
            raise DeployFailed(
                f"{self.server} at {self.base_url} sent the upload to another origin ({parts.scheme}://{parts.netloc})",
                "push to that registry directly",
            )
        return parts.path + (f"?{parts.query}" if parts.query else "")


def _header(headers: dict[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def _credentials_advice() -> str:
    """What to do about a refused push: set the credentials, or correct the ones given (never printed)."""
    if os.environ.get(USER_ENV) and os.environ.get(PASSWORD_ENV):
        return f"check {USER_ENV} and {PASSWORD_ENV} (the registry refused them) and that the account may push there"
    return f"set {USER_ENV} and {PASSWORD_ENV} for a registry that takes basic auth"


def push(image: Image, ref: Reference, timeout: float) -> str:
    """Push `image` to `ref`; the digest the registry stored (the image's own, checked)."""
    client = RegistryClient(ref.base_url, timeout=timeout)
    doing = f"pushing the model-car to {ref.tagged()}"
    try:
        for blob in (*image.layers, image.config):
            if not client.has_blob(ref.repository, blob.digest):
                client.upload(ref.repository, blob)
        answer = client.request(
            "PUT",
            f"/v2/{ref.repository}/manifests/{ref.tag}",
            body=image.manifest.path.read_bytes(),
            content_type=image.manifest.media_type,
        )
    except ApiError as exc:
        if exc.status in (401, 403):  # the credentials are the user's setup: exit 5, like an unreachable registry
            refused = f"{doing}: the registry refused access (HTTP {exc.status}: {exc.message})"
            raise EnvironmentProblem(refused, _credentials_advice()) from None
        raise pack_error(exc, doing, "check the repository name and the registry", refused=DeployFailed) from None
    except HttpError as exc:
        raise pack_error(exc, doing, "check that the registry runs and the host and port are right") from None
    stored = _header(answer.headers, "Docker-Content-Digest")
    if stored and stored != image.digest:
        raise DeployFailed(f"{doing}: the registry stored {stored}, not {image.digest}", "check the registry")
    return image.digest


__all__ = ["Reference", "RegistryClient", "parse_reference", "push"]
