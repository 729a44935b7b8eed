"""Cost in USD from token usage, with genai-prices' shipped price data (no network).

Unknown models are not an error: the cost is None ("unknown"), never 0. Local providers
(Ollama by default) are priced at zero when ``free_providers`` names them.
"""

from __future__ import annotations

import logging
from functools import lru_cache

from llmflow_core.providers.base import Usage

log = logging.getLogger(__name__)

# Route names whose models run locally and cost nothing.
FREE_PROVIDERS = frozenset({"ollama"})
# genai-prices' provider ids where they differ from LLMFlow's route names.
PROVIDER_IDS = {"gemini": "google", "together": "together", "openrouter": "openrouter"}


def genai_usage(provider: str, usage: Usage):
    """genai-prices counts input including cache reads/writes, output including reasoning."""
    from genai_prices import Usage as PriceUsage

    prompt = usage.prompt_tokens or 0
    output = usage.completion_tokens or 0
    if provider == "anthropic":  # Anthropic's input_tokens exclude the cache
        prompt += (usage.cached_tokens or 0) + (usage.cache_creation_tokens or 0)
    if provider == "gemini":  # Gemini's candidates exclude the thoughts
        output += usage.reasoning_tokens or 0
    return PriceUsage(input_tokens=prompt, output_tokens=output,
                      cache_read_tokens=usage.cached_tokens or None,
                      cache_write_tokens=usage.cache_creation_tokens or None)


@lru_cache(maxsize=4096)
def _price(provider: str, model: str, prompt: int, output: int, cache_read: int,
           cache_write: int) -> float | None:
    from genai_prices import Usage as PriceUsage, calc_price

    usage = PriceUsage(input_tokens=prompt, output_tokens=output,
                       cache_read_tokens=cache_read or None, cache_write_tokens=cache_write or None)
    provider_id = PROVIDER_IDS.get(provider, provider)
    for pid in (provider_id, None):
        try:
            return float(calc_price(usage, model_ref=model, provider_id=pid).total_price)
        except LookupError:
            continue
        except Exception:  # a bug in price data must never lose the span
            log.exception("pricing failed for %s/%s", provider, model)
            return None
    return None


def estimate_cost(provider: str, model: str | None, usage: Usage,
                  free_providers: frozenset[str] = FREE_PROVIDERS) -> float | None:
    """USD for this usage, 0.0 for free providers, None when unknown."""
    if provider in free_providers:
        return 0.0
    if not model or not usage.known:
        return None
    converted = genai_usage(provider, usage)
    return _price(provider, model, converted.input_tokens or 0, converted.output_tokens or 0,
                  converted.cache_read_tokens or 0, converted.cache_write_tokens or 0)
