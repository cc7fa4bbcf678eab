"""Redactor: secrets by key, by type and by value pattern; user keys, patterns and mask hook."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from otel_mlflow._common.redact import REDACTED, Redactor
from otel_mlflow._tracing.content.serialize import Serializer

EXAMPLES = {"count": 0}


@pytest.fixture(scope="module", autouse=True)
def _report_examples(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"hypothesis examples run in test_redact: {EXAMPLES['count']}")


GOOGLE_KEY = "AIzaSyD" + "a1B2c3D4e5F6g7H8i9J0kLmNoPqRsTuVw"[:32]
SECRETS = {
    "google api key": GOOGLE_KEY,
    "google oauth token": "ya29.a0AfH6SMBx1234567890abcdefghijkl",
    "openai key": "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789",
    "anthropic key": "sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "aws access key id": "AKIAIOSFODNN7EXAMPLE",
    "github token": "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
    "slack token": "xoxb-1234567890-abcdefghij",
}
assert len(GOOGLE_KEY) == 39


@pytest.mark.parametrize("name", list(SECRETS))
def test_value_patterns_inside_text(name: str) -> None:
    secret = SECRETS[name]
    text = f"please use {secret} for the call"
    out = Redactor(extra_keys=(), extra_patterns=()).redact_text(text)
    assert secret not in out
    assert REDACTED in out
    assert out.startswith("please use ") and out.endswith(" for the call")


def test_bearer_header_text() -> None:
    out = Redactor().redact_text("Authorization: Bearer abc.DEF-123_456~xyz")
    assert "abc.DEF" not in out and REDACTED in out


def test_pem_private_key_whole_block_and_unterminated() -> None:
    pem = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\nabc\n"
           "-----END RSA PRIVATE KEY-----")
    out = Redactor().redact_text(f"key:\n{pem}\nafter")
    assert "MIIEow" not in out and out.endswith("after")
    cut = Redactor().redact_text("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0")
    assert "MIIEvQ" not in cut


def test_password_in_url_and_inline_pairs() -> None:
    r = Redactor()
    assert r.redact_text("postgres://bob:hunter2secret@db:5432/x") == (
        f"postgres://bob:{REDACTED}@db:5432/x")
    out = r.redact_text('config api_key=abcd1234efgh and "password": "pa55word!"')
    assert "abcd1234efgh" not in out and "pa55word!" not in out
    assert "api_key=" in out  # the key name stays for context


@pytest.mark.parametrize("text", [
    "What is the capital of France?",
    "The bearer of bad news arrived.",
    "max_tokens=256, temperature=0.2",
    "Skip the task-list and ask again.",
    "日本語のテキストです 🎉",
    "https://example.com/path?q=1",
])
def test_ordinary_text_untouched(text: str) -> None:
    assert Redactor().redact_text(text) == text


@pytest.mark.parametrize("key", [
    "api_key", "API_KEY", "google_api_key", "x-api-key", "X-Api-Key", "apikey", "openai_api_key",
    "token", "access_token", "refresh_token", "id_token", "secret", "client_secret",
    "password", "db_password", "passwd", "credentials", "Authorization", "proxy-authorization",
    "cookie", "Set-Cookie", "private_key", "aws_secret_access_key", "aws_access_key_id",
])
def test_secret_keys(key: str) -> None:
    assert Redactor().is_secret_key(key)


@pytest.mark.parametrize("key", [
    "max_tokens", "max_output_tokens", "input_tokens", "total_tokens", "prompt_tokens",
    "tokenizer", "model", "temperature", "question", "messages", "top_k", "keywords",
])
def test_ordinary_keys(key: str) -> None:
    assert not Redactor().is_secret_key(key)


class FakeCredentials:
    """Named like google.auth's classes; recognised by type."""

    token = "ya29.should-never-appear-1234567890"


def test_credentials_objects_by_type() -> None:
    r = Redactor()
    assert r.is_secret_object(FakeCredentials())
    assert r.is_secret_object(SecretStr("x"))
    assert not r.is_secret_object(object())
    out = Serializer().dumps({"client": FakeCredentials(), "k": SecretStr("zzz")})
    assert json.loads(out) == {"client": REDACTED, "k": REDACTED}


def test_google_auth_credentials_by_module() -> None:
    credentials = pytest.importorskip("google.oauth2.credentials")  # installed with vertexai
    creds = credentials.Credentials(token="ya29.real-looking-token-abcdefghij")
    assert Redactor().is_secret_object(creds)
    assert "real-looking" not in Serializer().dumps({"anything": creds})


def test_redact_value_nested_copy() -> None:
    value = {"headers": {"Authorization": "Basic dXNlcjpwYXNz", "Accept": "json"},
             "params": [{"api_key": "k"}, "Bearer tok3n.value.here"], "n": 3}
    out = Redactor().redact_value(None, value)
    assert out == {"headers": {"Authorization": REDACTED, "Accept": "json"},
                   "params": [{"api_key": REDACTED}, REDACTED], "n": 3}
    assert value["headers"]["Authorization"] == "Basic dXNlcjpwYXNz"  # not mutated


def test_user_keys_and_patterns_from_constructor() -> None:
    r = Redactor(extra_keys=[r"^ssn$"], extra_patterns=[r"\bEMP-\d{4}\b"])
    assert r.is_secret_key("SSN")
    assert r.redact_text("ticket EMP-1234 opened") == f"ticket {REDACTED} opened"
    assert r.redact_text("short EMP-9") == "short EMP-9"


def test_env_keys_and_patterns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_MLFLOW_REDACT_KEYS", "customer_id, ^ssn$")
    monkeypatch.setenv("OTEL_MLFLOW_REDACT_PATTERNS", r"\bEMP-\d{4}\b")
    r = Redactor()
    assert r.is_secret_key("customer_id") and r.is_secret_key("ssn")
    assert REDACTED in r.redact_text("x EMP-1234")
    # Constructor arguments beat the environment.
    explicit = Redactor(extra_keys=["other"], extra_patterns=[])
    assert not explicit.is_secret_key("customer_id")
    assert explicit.is_secret_key("other")
    assert explicit.redact_text("x EMP-1234") == "x EMP-1234"


def test_invalid_user_regex_is_logged_and_builtins_still_apply(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        r = Redactor(extra_keys=["("], extra_patterns=["[unclosed"])
    assert "invalid redaction" in caplog.text
    assert r.is_secret_key("api_key")
    assert REDACTED in r.redact_text(f"key {GOOGLE_KEY}")


def test_secret_straddling_the_cut_is_still_redacted() -> None:
    ser = Serializer(max_chars=1000)
    text = "a" * (1000 - 128 - 10) + " " + GOOGLE_KEY + " tail" + " b" * 5000
    out = ser.dumps({"t": text})
    assert GOOGLE_KEY[:12] not in out


def test_secrets_never_logged_by_faults(caplog: pytest.LogCaptureFixture) -> None:
    def mask(key: str | None, value: Any) -> Any:
        raise ValueError(f"cannot mask {value}")

    with caplog.at_level(logging.DEBUG):
        Serializer(redactor=Redactor(mask=mask)).dumps({"x": f"key {GOOGLE_KEY}"})
    # The hook saw the already-redacted text, so even its error message holds no secret.
    assert GOOGLE_KEY not in caplog.text


# --- properties ---------------------------------------------------------------------------

_secret = st.sampled_from(list(SECRETS.values()))
_filler = st.text(alphabet=st.characters(categories=["L", "N", "Zs", "P"]), max_size=200)
_secret_key = st.sampled_from(["api_key", "Authorization", "google_api_key", "token", "password",
                               "x-api-key", "credentials", "Cookie", "client_secret"])


@settings(max_examples=200, deadline=None)
@given(before=_filler, secret=_secret, after=_filler, cap=st.integers(256, 5000))
def test_property_no_secret_survives_in_text(before: str, secret: str, after: str,
                                             cap: int) -> None:
    EXAMPLES["count"] += 1
    text = f"{before} {secret} {after}"
    ser = Serializer(max_chars=cap)
    assert secret not in ser.dumps(text)
    assert secret not in ser.dumps({"message": text, "list": [text]})
    assert secret not in str(ser.scalar(text))


@settings(max_examples=200, deadline=None)
@given(
    key=_secret_key,
    value=st.one_of(st.text(max_size=50), st.integers(), st.dictionaries(st.text(max_size=5),
                                                                        st.text(max_size=20))),
    path=st.lists(st.text(min_size=1, max_size=8).filter(
        lambda k: not Redactor().is_secret_key(k)), max_size=4),
)
def test_property_secret_keys_hide_any_value(key: str, value: Any, path: list[str]) -> None:
    EXAMPLES["count"] += 1
    marker = "CANARY-VALUE-7731"
    payload: Any = {key: {"inner": marker, "v": value} if isinstance(value, dict) else marker}
    for name in reversed(path):
        payload = {name: payload}
    out = Serializer().dumps(payload)
    assert marker not in out
    assert json.loads(out) is not None
    assert marker not in json.dumps(Redactor().redact_value(None, payload))
