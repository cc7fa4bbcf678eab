"""Pure pricing: the token usage of one LLM span -> its cost in USD (input, output, total).

Prices come from ``genai-prices`` (its bundled table: a pure library; it only goes online when
an app starts its ``UpdatePrices`` on purpose, which otel_mlflow never does), overridden per model
by a user price map. No I/O, no MLflow import; genai-prices is imported on first use, on the
thread that builds records (never the app's callback thread).

How one LLM span is priced, in order:

1. The model is ``gen_ai.response.model`` else ``gen_ai.request.model``; no model, or no token
   usage at all: no cost.
2. A user price for that model (exact name, case-insensitive) wins over the table.
3. Else genai-prices, with the provider hint from ``gen_ai.provider.name`` (``gcp.vertex_ai`` /
   ``gcp.gemini`` -> ``google``, ...), then without the hint; still unknown: no cost.
4. Token counts as genai-prices takes them: ``input_tokens`` is the whole prompt, cached tokens
   included (``cache_read_tokens`` is the part of it priced at the cache rate); the long-context
   tier is chosen from ``input_tokens``; ``output_tokens`` is everything generated, thinking
   included. Gemini reports thinking apart from its output (``thoughtsTokenCount`` outside
   ``candidatesTokenCount``; LangChain's ``ChatVertexAI`` keeps that split), others inside it.
   Thinking tokens are added to the output when they are outside it: the reported total is at
   least input + output + thinking, or, with no total reported, the provider is Gemini's.
5. The price is the one in force at the span's start time (genai-prices keeps price history).

``PriceTable.cost`` never raises: bad usage (cached > prompt) or a pricing error gives None.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from otel_mlflow._common import semconv as A
from otel_mlflow._record.span_facts import num, span_attrs, start_ns

# gen_ai.provider.name -> genai-prices provider id (others: matched by model name only).
_PROVIDER_IDS: dict[str, str] = {
    A.PROVIDER_GCP_VERTEX_AI: "google",
    A.PROVIDER_GCP_GEMINI: "google",
    "openai": "openai",
    "azure.ai.openai": "azure",
    "anthropic": "anthropic",
    "aws.bedrock": "aws",
    "mistral_ai": "mistral",
    "groq": "groq",
    "cohere": "cohere",
    "deepseek": "deepseek",
    "x_ai": "x-ai",
    "perplexity": "perplexity",
}
# Providers whose output token count leaves thinking out (used when no total is reported).
_THINKING_APART = frozenset({A.PROVIDER_GCP_VERTEX_AI, A.PROVIDER_GCP_GEMINI})
# The user price map's keys (USD per million tokens).
PRICE_KEYS = ("input_mtok", "output_mtok", "cache_read_mtok")
_MAX_CACHED_MODELS = 1024

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cost:
    """One call's (or a trace's) cost in USD."""

    input_usd: float
    output_usd: float

    @property
    def total_usd(self) -> float:
        return self.input_usd + self.output_usd

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.input_usd + other.input_usd, self.output_usd + other.output_usd)


@dataclass(frozen=True)
class TokenUsage:
    """Token counts in genai-prices' terms (see rule 4 of the module doc)."""

    input_tokens: int
    output_tokens: int
    cache_read_tokens: int


@dataclass(frozen=True)
class Priced:
    """A priced LLM span: the model it was priced as and its cost."""

    model: str
    cost: Cost


def normalize_prices(prices: Mapping[str, Any] | None) -> dict[str, dict[str, float]]:
    """Check a user price map: ``{model: {"input_mtok": x, "output_mtok": y,
    "cache_read_mtok": z}}`` (USD per million tokens; ``cache_read_mtok`` defaults to the input
    price). Raises ``ValueError`` naming the first bad entry."""
    out: dict[str, dict[str, float]] = {}
    for model, entry in (prices or {}).items():
        if not isinstance(entry, Mapping):
            raise ValueError(f"price of {model!r} must be an object with {', '.join(PRICE_KEYS)}")
        unknown = set(entry) - set(PRICE_KEYS)
        if unknown:
            raise ValueError(f"price of {model!r}: unknown key(s) {', '.join(sorted(unknown))}")
        values: dict[str, float] = {}
        for key in PRICE_KEYS:
            if key not in entry:
                continue
            value = entry[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not (
                math.isfinite(value) and value >= 0
            ):
                raise ValueError(f"price of {model!r}: {key} must be a number >= 0")
            values[key] = float(value)
        if "input_mtok" not in values or "output_mtok" not in values:
            raise ValueError(f"price of {model!r} needs input_mtok and output_mtok")
        out[str(model).lower()] = values
    return out


def span_model(span: ReadableSpan) -> str | None:
    attrs = span_attrs(span)
    model = attrs.get(A.GEN_AI_RESPONSE_MODEL) or attrs.get(A.GEN_AI_REQUEST_MODEL)
    return str(model) if model else None


def token_usage(attrs: Mapping[str, Any]) -> TokenUsage | None:
    """The span's usage in genai-prices' terms (rule 4); None when it reported none."""
    raw_in = num(attrs.get(A.GEN_AI_USAGE_INPUT_TOKENS))
    raw_out = num(attrs.get(A.GEN_AI_USAGE_OUTPUT_TOKENS))
    if raw_in is None and raw_out is None:
        return None
    in_tok = int(raw_in or 0)
    out_tok = int(raw_out or 0)
    thinking = int(num(attrs.get(A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS)) or 0)
    cached = int(num(attrs.get(A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS)) or 0)
    total = num(attrs.get(A.USAGE_TOTAL_TOKENS))
    if thinking > 0:
        if total is not None:
            apart = total >= in_tok + out_tok + thinking
        else:
            apart = str(attrs.get(A.GEN_AI_PROVIDER_NAME) or "") in _THINKING_APART
        if apart:
            out_tok += thinking
    return TokenUsage(in_tok, out_tok, min(cached, in_tok))


class PriceTable:
    """genai-prices' table with user overrides; thread-safe, bounded lookup cache."""

    def __init__(self, overrides: Mapping[str, Any] | None = None) -> None:
        self.overrides = normalize_prices(overrides)
        self._lock = threading.Lock()
        self._unknown: dict[tuple[str, str | None], None] = {}
        # genai-prices takes ~0.25 ms per call; identical calls (same model, usage and minute:
        # time-of-day prices change on the minute at the finest) reuse the figure.
        self._memo: OrderedDict[tuple[Any, ...], Cost] = OrderedDict()

    def cost_of_span(self, span: ReadableSpan) -> Priced | None:
        """The cost of one LLM span (module doc), or None: no model, no usage, no price."""
        attrs = span_attrs(span)
        model = span_model(span)
        usage = token_usage(attrs)
        if model is None or usage is None:
            return None
        provider = attrs.get(A.GEN_AI_PROVIDER_NAME)
        when = datetime.fromtimestamp(start_ns(span) / 1e9, tz=UTC) if span.start_time else None
        cost = self.cost(model, usage, provider=str(provider) if provider else None, when=when)
        return None if cost is None else Priced(model, cost)

    def cost(
        self,
        model: str,
        usage: TokenUsage,
        *,
        provider: str | None = None,
        when: datetime | None = None,
    ) -> Cost | None:
        try:
            user = self.overrides.get(model.lower())
            if user is not None:
                return _user_cost(user, usage)
            return self._table_cost(model, usage, provider, when)
        except Exception:  # noqa: BLE001 - pricing must never break a record
            return None

    def is_unknown(self, model: str, provider: str | None) -> bool:
        with self._lock:
            return (model.lower(), provider) in self._unknown

    def _table_cost(
        self, model: str, usage: TokenUsage, provider: str | None, when: datetime | None
    ) -> Cost | None:
        key = (model.lower(), provider)
        with self._lock:
            if key in self._unknown:
                return None
        minute = None if when is None else when.replace(second=0, microsecond=0)
        memo_key = (key, usage, minute)
        with self._lock:
            cached = self._memo.get(memo_key)
            if cached is not None:
                self._memo.move_to_end(memo_key)
                return cached
        import genai_prices

        gp_usage = genai_prices.Usage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
        )
        hints = [_PROVIDER_IDS.get(provider or ""), None]
        for hint in dict.fromkeys(hints):
            try:
                calc = genai_prices.calc_price(
                    gp_usage, model, provider_id=hint, genai_request_timestamp=when
                )
            except LookupError:
                continue
            cost = Cost(float(calc.input_price), float(calc.output_price))
            with self._lock:
                self._memo[memo_key] = cost
                while len(self._memo) > _MAX_CACHED_MODELS:
                    self._memo.popitem(last=False)
            return cost
        with self._lock:
            first = not any(known[0] == key[0] for known in self._unknown)
            self._unknown[key] = None
            while len(self._unknown) > _MAX_CACHED_MODELS:
                self._unknown.pop(next(iter(self._unknown)))
        if first:
            _logger.warning(
                "otel_mlflow: no price for model %r (provider %s) in genai-prices or the user "
                "price map; its calls get no cost (add it to OTEL_MLFLOW_PRICES / prices=)",
                model, provider or "unknown",
            )
        return None


def _user_cost(price: Mapping[str, float], usage: TokenUsage) -> Cost:
    per = Decimal(1_000_000)
    cache_price = Decimal(repr(price.get("cache_read_mtok", price["input_mtok"])))
    uncached = usage.input_tokens - usage.cache_read_tokens
    input_usd = (
        Decimal(uncached) * Decimal(repr(price["input_mtok"]))
        + Decimal(usage.cache_read_tokens) * cache_price
    ) / per
    output_usd = Decimal(usage.output_tokens) * Decimal(repr(price["output_mtok"])) / per
    return Cost(float(input_usd), float(output_usd))
