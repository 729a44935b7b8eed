"""LLMFlow's Django dashboard: reads spans through the llmflow_core store contract."""
