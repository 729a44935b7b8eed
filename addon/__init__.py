"""The LLMFlow mitmproxy addon and its runner."""
