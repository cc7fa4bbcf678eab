"""Artifact uploads from memory, for ``MlflowWriter`` and its run views.

``upload_text(repo, artifact_file, text, content_type)``: behind a tracking server that proxies
artifacts (``mlflow-artifacts:`` / ``http(s)://`` URIs) one PUT from memory, with the same
endpoint, credentials and content type ``HttpArtifactRepository.log_artifact`` sends for a small
file, without the temporary file it reads; any other artifact store gets a temporary file through
its artifact repository.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
from typing import Any

JSON_CONTENT_TYPE = "application/json"
HTML_CONTENT_TYPE = "text/html; charset=utf-8"


def upload_text(repo: Any, artifact_file: str, text: str, content_type: str) -> None:
    """Upload ``text`` (UTF-8) as ``artifact_file`` of the run whose repository is ``repo``."""
    from mlflow.store.artifact.http_artifact_repo import HttpArtifactRepository

    data = text.encode("utf-8")
    if isinstance(repo, HttpArtifactRepository):
        from mlflow.utils.rest_utils import augmented_raise_for_status, http_request

        response = http_request(
            repo._host_creds,  # noqa: SLF001 - the repository's own resolved credentials
            posixpath.join("/", artifact_file),
            "PUT",
            data=data,
            extra_headers={"Content-Type": content_type},
        )
        augmented_raise_for_status(response)
        return
    directory, name = os.path.split(artifact_file)
    with tempfile.TemporaryDirectory(prefix="otel_mlflow-") as tmp:
        path = os.path.join(tmp, name)
        with open(path, "wb") as handle:
            handle.write(data)
        repo.log_artifact(path, directory or None)
