"""Multimodal content blocks -> GenAI parts that describe the media, never carry it (pure).

Bytes never reach a span: an inline image, audio clip, video, PDF or other file becomes
``{"type": "blob", "modality", "mime_type", "size"}`` (``size`` in bytes, computed from the
base64 length without decoding or copying the data; semconv's ``content`` is left out on
purpose), a reference becomes ``{"type": "uri", "modality", "mime_type", "uri"}`` and an
uploaded file id ``{"type": "file", "modality", "mime_type", "file_id"}``.

Block shapes read, in priority order: LangChain's standard blocks (``image`` / ``audio`` /
``video`` / ``file`` with ``url``, ``base64``/``data`` or ``file_id``; v0 ``source_type``
blocks have the same keys), OpenAI-style ``image_url`` (a URL or a ``data:`` URL), and
langchain-google-genai's ``media`` blocks (``data`` or ``file_uri``). ``modality`` is the MIME
type's major type when it is image / audio / video, else the block's kind (``file``, ``media``).
"""

from __future__ import annotations

from typing import Any

Part = dict[str, Any]

MEDIA_KINDS = frozenset({"image", "audio", "video", "file", "media", "image_url"})
_MODALITIES = frozenset({"image", "audio", "video"})


def base64_size(text: str, start: int = 0) -> int:
    """Decoded size of the base64 in ``text[start:]`` (no copy; padding counted off)."""
    n = len(text) - start
    if n <= 0:
        return 0
    padding = 2 if text.endswith("==") else 1 if text.endswith("=") else 0
    return max(0, n * 3 // 4 - padding)


def _modality(kind: str, mime: Any) -> str:
    if isinstance(mime, str):
        major = mime.split("/", 1)[0]
        if major in _MODALITIES:
            return major
    return "image" if kind == "image_url" else kind


def _mime(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _part(ptype: str, kind: str, mime: Any, key: str, value: Any) -> Part:
    """A part with only the facts known (no None values)."""
    part: Part = {"type": ptype, "modality": _modality(kind, mime)}
    mime = _mime(mime)
    if mime is not None:
        part["mime_type"] = mime
    if value is not None:
        part[key] = value
    return part


def _blob(kind: str, mime: Any, data: Any) -> Part:
    if isinstance(data, (bytes, bytearray, memoryview)):
        size = len(data)
    elif isinstance(data, str):
        size = base64_size(data)
    else:
        size = None
    return _part("blob", kind, mime, "size", size)


def _url(kind: str, mime: Any, url: Any) -> Part:
    if isinstance(url, str) and url.startswith("data:"):
        comma = url.find(",")  # find, not partition: a partition would copy the data
        head = url[5:comma] if comma > 0 else ""
        mime = _mime(head.split(";", 1)[0]) or mime
        size = base64_size(url, comma + 1) if ";base64" in head else max(0, len(url) - comma - 1)
        return _part("blob", kind, mime, "size", size)
    return _part("uri", kind, mime, "uri", url)


def media_part(kind: str, block: dict[str, Any]) -> Part | None:
    """The part of a media block of type ``kind`` (in ``MEDIA_KINDS``), or None if unreadable."""
    mime = block.get("mime_type") or block.get("mimeType")
    if kind == "image_url":
        url = block.get("image_url")
        if isinstance(url, dict):
            url = url.get("url")
        return _url(kind, mime, url)
    for key in ("url", "file_uri", "fileUri", "uri"):
        url = block.get(key)
        if url is not None:
            return _url(kind, mime, url)
    for key in ("base64", "data"):
        data = block.get(key)
        if data is not None:
            return _blob(kind, mime, data)
    file_id = block.get("file_id") or block.get("id")
    if file_id is not None and kind != "media":
        return _part("file", kind, mime, "file_id", str(file_id))
    return None
