"""The real LangChain Gemini clients, wired to a running emulator (no Google, no ADC lookup).

- ``ChatVertexAI`` / ``VertexAI`` (langchain-google-vertexai): ``api_endpoint=`` the emulator,
  ``api_transport="rest"`` (or ``"rest_asyncio"``), anonymous credentials.
- ``ChatGoogleGenerativeAI`` (langchain-google-genai over google-genai): ``base_url=`` the
  emulator, which google-genai puts in its ``HttpOptions``. With ``vertexai=True``: a project, a
  location and a static OAuth token (``google.oauth2.credentials.Credentials(token=...)``, never
  refreshed), so google-genai neither calls ``google.auth.default()`` nor asks Google for a
  token; otherwise (the Gemini Developer API) an API key, sent as ``x-goog-api-key``.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_google_genai import ChatGoogleGenerativeAI
    from langchain_google_vertexai import ChatVertexAI, VertexAI

DEFAULT_PROJECT = "test-project"
DEFAULT_LOCATION = "us-central1"
EMULATOR_API_KEY = "emulator-api-key"
EMULATOR_TOKEN = "emulator-token"


def vertexai_chat_model(url: str, model: str, async_transport: bool,
                        kwargs: dict[str, Any]) -> ChatVertexAI:
    from langchain_google_vertexai import ChatVertexAI

    if async_transport:
        from google.auth.aio.credentials import AnonymousCredentials as AsyncAnonymous

        credentials: Any = AsyncAnonymous()
        transport = "rest_asyncio"
    else:
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()
        transport = "rest"
    options: dict[str, Any] = {
        "model": model,
        "project": DEFAULT_PROJECT,
        "location": DEFAULT_LOCATION,
        "credentials": credentials,
        "api_endpoint": url,
        "api_transport": transport,
        "max_retries": 0,
    }
    options.update(kwargs)
    # langchain-google-vertexai 3.2 flags ChatVertexAI as deprecated in favour of another
    # package; here the point is to run this very client, so the notice is only noise.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ChatVertexAI.*deprecated")
        warnings.filterwarnings("ignore", message=".*ChatGoogleGenerativeAI.*")
        return ChatVertexAI(**options)


def vertexai_completion_model(url: str, model: str, kwargs: dict[str, Any]) -> VertexAI:
    from google.auth.credentials import AnonymousCredentials
    from langchain_google_vertexai import VertexAI

    options: dict[str, Any] = {
        "model": model,
        "project": DEFAULT_PROJECT,
        "location": DEFAULT_LOCATION,
        "credentials": AnonymousCredentials(),
        "api_endpoint": url,
        "api_transport": "rest",
        "max_retries": 0,
    }
    options.update(kwargs)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*VertexAI.*deprecated")
        warnings.filterwarnings("ignore", message=".*GoogleGenerativeAI.*")
        return VertexAI(**options)


def genai_chat_model(url: str, model: str, vertexai: bool,
                     kwargs: dict[str, Any]) -> ChatGoogleGenerativeAI:
    from langchain_google_genai import ChatGoogleGenerativeAI

    options: dict[str, Any] = {"model": model, "base_url": url, "vertexai": vertexai,
                               # google-genai's attempts: 1 is one try, no retry
                               "max_retries": 1}
    if vertexai:
        from google.oauth2.credentials import Credentials

        options.update(project=DEFAULT_PROJECT, location=DEFAULT_LOCATION,
                       credentials=Credentials(token=EMULATOR_TOKEN))
    else:
        options["api_key"] = EMULATOR_API_KEY
    options.update(kwargs)
    return ChatGoogleGenerativeAI(**options)
