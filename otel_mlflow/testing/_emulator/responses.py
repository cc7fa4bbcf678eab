"""Response bodies of the emulator: ``GenerateContentResponse`` JSON for one scripted reply."""

from __future__ import annotations

from typing import Any

from otel_mlflow.testing._emulator.script import ReceivedRequest, Reply, Usage

# google.rpc.Code names for the HTTP statuses tests use; the clients map the HTTP status.
_STATUS_NAMES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    """Google's JSON error payload for an HTTP status."""
    name = _STATUS_NAMES.get(status, "UNKNOWN")
    return {"error": {"code": status, "message": message or f"emulated {name}", "status": name}}


def word_count(text: str) -> int:
    # A stable, human-checkable stand-in for a tokenizer; CJK text has no spaces, so count chars.
    words = text.split()
    if len(words) <= 1 and len(text) > 1 and not text.isascii():
        return len(text)
    return max(1, len(words)) if text else 0


def split(text: str, pieces: int) -> list[str]:
    pieces = max(1, pieces)
    if not text:
        return [""]
    size = -(-len(text) // pieces)
    return [text[i : i + size] for i in range(0, len(text), size)]


def usage_json(request: ReceivedRequest, reply: Reply, text: str) -> dict[str, int]:
    if reply.usage is not None:
        return reply.usage.to_json()
    prompt_tokens = sum(word_count(t) for t in request.texts)
    if request.system_instruction:
        prompt_tokens += word_count(request.system_instruction)
    out_tokens = word_count(text) + sum(1 + len(call.args) for call in reply.function_calls)
    return Usage(prompt=prompt_tokens, candidates=out_tokens).to_json()


def _candidate_count(request: ReceivedRequest, reply: Reply) -> int:
    if reply.finish_reasons:
        return len(reply.finish_reasons)
    count = request.generation_config.get("candidateCount")
    return count if isinstance(count, int) and 1 <= count <= 8 and not request.stream else 1


def responses(request: ReceivedRequest, reply: Reply, default_text: str,
              model_version: str) -> list[dict[str, Any]]:
    """The response objects of one reply: one for unary calls, ``stream_chunks`` for streams."""
    if reply.block_reason:
        return [{
            "promptFeedback": {"blockReason": reply.block_reason, "safetyRatings": [
                {"category": c, "probability": p, "blocked": True}
                for c, p in reply.safety_ratings.items()]},
            "usageMetadata": usage_json(request, reply, ""),
            "modelVersion": model_version,
        }]
    text = reply.text if reply.text is not None else ("" if reply.function_calls else default_text)
    pieces = split(text, reply.stream_chunks) if request.stream else [text]
    asked = request.thinking_config
    # google-genai sends the config as the client holds it: snake or camel case.
    thoughts = reply.thoughts if (asked.get("includeThoughts") or asked.get("include_thoughts")) \
        else None
    count = _candidate_count(request, reply)
    out: list[dict[str, Any]] = []
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        parts: list[dict[str, Any]] = []
        if thoughts and index == 0:
            parts.append({"text": thoughts, "thought": True})
        if piece:
            parts.append({"text": piece})
        if last:
            parts.extend({"functionCall": {"name": call.name, "args": dict(call.args)}}
                         for call in reply.function_calls)
        candidates = []
        for number in range(count):
            candidate: dict[str, Any] = {"content": {"role": "model", "parts": list(parts)},
                                         "index": number}
            if last:
                candidate["finishReason"] = (reply.finish_reasons[number] if reply.finish_reasons
                                             else reply.finish_reason)
                if reply.safety_ratings:
                    candidate["safetyRatings"] = [{"category": c, "probability": p}
                                                  for c, p in reply.safety_ratings.items()]
                if reply.grounding is not None:
                    candidate["groundingMetadata"] = reply.grounding.to_json()
            candidates.append(candidate)
        response: dict[str, Any] = {"candidates": candidates, "modelVersion": model_version}
        if reply.response_id:
            response["responseId"] = reply.response_id
        if last:
            response["usageMetadata"] = usage_json(request, reply, text)
        out.append(response)
    return out
