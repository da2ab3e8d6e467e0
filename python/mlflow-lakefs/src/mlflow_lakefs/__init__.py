"""A read-only MLflow artifact repository for ``lakefs://<repository>/<ref>/<path>`` URIs.

Registered through MLflow's ``mlflow.artifact_repository`` entry point, so that MLflow's own
loaders resolve model versions whose source is a lakeFS URI::

    mlflow.pyfunc.load_model("models:/image_segmentation_model@champion")
    mlflow models serve -m models:/image_segmentation_model@champion --env-manager local

Credentials and endpoint come from the official ``lakefs`` package's configuration, as for
lakeFS's own tools: ``LAKECTL_SERVER_ENDPOINT_URL``, ``LAKECTL_CREDENTIALS_ACCESS_KEY_ID``,
``LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY`` or ``~/.lakectl.yaml`` (``LAKECTL_CONFIG_FILE``).
Writing is refused: models reach lakeFS through seg-mlops' ``train``, in a lakeFS commit.
"""

from __future__ import annotations

import os
import posixpath
import shutil
from urllib.parse import urlparse

import lakefs
from lakefs.client import Client
from lakefs.exceptions import (
    ForbiddenException,
    NoAuthenticationFound,
    NotAuthorizedException,
    NotFoundException,
)
from lakefs.models import CommonPrefix
from mlflow.entities import FileInfo
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repo import ArtifactRepository

__all__ = ["LakeFSArtifactRepository", "parse_lakefs_uri"]

_CHUNK = 1 << 20


def parse_lakefs_uri(uri: str) -> tuple[str, str, str]:
    """Splits ``lakefs://repo/ref/some/path`` into ``(repo, ref, "some/path")``."""
    parsed = urlparse(uri)
    if parsed.scheme != "lakefs" or not parsed.netloc:
        raise MlflowException(f"not a lakeFS URI (lakefs://<repository>/<ref>/<path>): {uri!r}")
    ref, _, path = parsed.path.lstrip("/").partition("/")
    if not ref:
        raise MlflowException(f"lakeFS URI {uri!r} names no ref (commit, branch or tag)")
    _refuse_dots(path, uri)
    return parsed.netloc, ref, path.strip("/")


def _refuse_dots(path: str, uri: str) -> None:
    """A lakeFS path is a key, not a file system path: ``.`` and ``..`` segments name nothing."""
    if any(part in (".", "..") for part in path.split("/")):
        raise MlflowException(
            f"lakeFS URI {uri!r} has a '.' or '..' segment: lakeFS paths are object keys, "
            "give the path without them"
        )


class LakeFSArtifactRepository(ArtifactRepository):
    """Lists and downloads the objects under a ``lakefs://`` URI; never writes."""

    def __init__(self, artifact_uri: str, tracking_uri: str | None = None,
                 registry_uri: str | None = None) -> None:
        super().__init__(artifact_uri, tracking_uri, registry_uri)
        self.repository, self.ref, self.root = parse_lakefs_uri(artifact_uri)
        try:
            self._client = Client()
        except NoAuthenticationFound as e:
            raise MlflowException(
                f"no lakeFS credentials to read {artifact_uri}: set LAKECTL_SERVER_ENDPOINT_URL, "
                "LAKECTL_CREDENTIALS_ACCESS_KEY_ID and LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY, "
                "or write ~/.lakectl.yaml (as for lakectl)"
            ) from e
        self._reference = lakefs.repository(self.repository, client=self._client).ref(self.ref)

    def _denied(self, what: str, e: Exception) -> MlflowException:
        return MlflowException(
            f"lakeFS refused to {what} {self.artifact_uri} ({type(e).__name__}): check "
            "LAKECTL_SERVER_ENDPOINT_URL, LAKECTL_CREDENTIALS_ACCESS_KEY_ID and "
            "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY (or ~/.lakectl.yaml) and the key's permissions"
        )

    def _full(self, path: str | None) -> str:
        _refuse_dots((path or "").strip("/"), f"{self.artifact_uri} + {path!r}")
        parts = [p for p in (self.root, (path or "").strip("/")) if p]
        return posixpath.join(*parts) if parts else ""

    def _relative(self, full: str) -> str:
        full = full.rstrip("/")
        return full[len(self.root):].lstrip("/") if self.root else full

    def list_artifacts(self, path: str | None = None) -> list[FileInfo]:
        prefix = self._full(path)
        if prefix:
            prefix += "/"
        infos = []
        try:
            for entry in self._reference.objects(prefix=prefix, delimiter="/"):
                if isinstance(entry, CommonPrefix):
                    infos.append(FileInfo(self._relative(entry.path), True, None))
                else:
                    infos.append(FileInfo(self._relative(entry.path), False, entry.size_bytes))
        except (NotAuthorizedException, ForbiddenException) as e:
            raise self._denied("list", e) from e
        return sorted(infos, key=lambda f: f.path)

    def _download_file(self, remote_file_path: str, local_path: str) -> None:
        full = self._full(remote_file_path)
        obj = self._reference.object(full)
        try:
            with obj.reader(mode="rb") as src, open(local_path, "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
        except NotFoundException as e:
            raise MlflowException(
                f"lakefs://{self.repository}/{self.ref}/{full} does not exist: {e}"
            ) from e
        except (NotAuthorizedException, ForbiddenException) as e:
            raise self._denied("read", e) from e
        os.utime(local_path)

    def _read_only(self, what: str):
        raise MlflowException(
            f"{what}: lakefs:// artifact locations are read-only here "
            "(seg-mlops' `train` writes models to lakeFS in a commit)"
        )

    def log_artifact(self, local_file, artifact_path=None):
        self._read_only(f"cannot log {local_file} to {self.artifact_uri}")

    def log_artifacts(self, local_dir, artifact_path=None):
        self._read_only(f"cannot log {local_dir} to {self.artifact_uri}")

    def delete_artifacts(self, artifact_path=None):
        self._read_only(f"cannot delete from {self.artifact_uri}")
