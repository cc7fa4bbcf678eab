"""The exporter's price table, resolved once: ``prices=`` argument > ``OTEL_MLFLOW_PRICES`` > none.

The map overrides genai-prices' table per model (``otel_mlflow._record.cost``); its form is in
``docs/configuration.md``. A map that does not validate is logged and ignored (genai-prices'
prices stay in force): configuration mistakes never raise into the host app.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from otel_mlflow._common import settings as _config
from otel_mlflow._record.cost import PriceTable

_logger = logging.getLogger(__name__)


def resolve_price_table(prices: Mapping[str, Any] | None) -> PriceTable:
    source = "prices="
    if prices is None:
        prices = _config.env_price_map()
        source = _config.PRICES
    try:
        return PriceTable(prices)
    except ValueError as exc:
        _logger.warning("otel_mlflow: %s ignored: %s", source, exc)
        return PriceTable()
