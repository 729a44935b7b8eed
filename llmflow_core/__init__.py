"""LLMFlow's shared core: the span model, provider parsers, redaction, pricing and the stores.

Imported by both the mitmproxy addon and the Django dashboard; imports neither of them.
"""
