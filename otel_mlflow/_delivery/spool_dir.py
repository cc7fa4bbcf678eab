"""Where a spool lives: its directory (per tracking URI), created private, synced.

Directory, in priority order:

1. ``spool_dir`` argument;
2. ``OTEL_MLFLOW_SPOOL_DIR``;
3. ``$XDG_CACHE_HOME`` (else ``~/.cache``) ``/otel_mlflow/spool/<hash of the tracking URI>``;
4. ``./.otel_mlflow_spool/<hash>`` in the working directory when the cache directory cannot be
   created.

The hash is taken over the tracking URI without credentials, with a relative ``sqlite:///`` path
made absolute, so each store has its own spool and a password change keeps the same spool.
Directories are mode 0700 (a trace holds prompts and outputs).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from otel_mlflow._common import settings as _config
from otel_mlflow._common.settings import resolve_tracking_uri


def _normalize_uri(tracking_uri: str) -> str:
    """The URI without userinfo; a relative sqlite path made absolute (it depends on the cwd)."""
    uri = tracking_uri.strip()
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        rel = uri[len("sqlite:///") :]
        return "sqlite:///" + os.path.abspath(rel)
    try:
        parts = urlsplit(uri)
        if parts.username is not None or parts.password is not None:
            host = parts.hostname or ""
            if parts.port is not None:
                host = f"{host}:{parts.port}"
            uri = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    except ValueError:
        pass
    return uri


def default_spool_dir(tracking_uri: str | None = None) -> Path:
    """The spool directory for a tracking URI when none is configured (see the module doc)."""
    uri = _normalize_uri(resolve_tracking_uri(tracking_uri))
    digest = hashlib.sha256(uri.encode("utf-8")).hexdigest()[:16]
    cache = _config.env_str(_config.XDG_CACHE_HOME) or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    candidate = Path(cache) / "otel_mlflow" / "spool" / digest
    try:
        make_private_dir(candidate)
        return candidate
    except OSError:
        return Path.cwd() / ".otel_mlflow_spool" / digest


def resolve_spool_dir(spool_dir: str | os.PathLike[str] | None, tracking_uri: str | None) -> Path:
    """Argument > ``OTEL_MLFLOW_SPOOL_DIR`` > :func:`default_spool_dir`."""
    if spool_dir:
        return Path(spool_dir).expanduser()
    env = _config.env_str(_config.SPOOL_DIR)
    if env:
        return Path(env).expanduser()
    return default_spool_dir(tracking_uri)


def make_private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkdir's mode is masked by the umask and ignored for existing directories.
    if (path.stat().st_mode & 0o777) != 0o700:
        os.chmod(path, 0o700)


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
