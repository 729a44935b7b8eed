"""A connect timeout for upstream connections (mitmproxy 11 has none).

mitmproxy dials upstreams with ``asyncio.open_connection`` and no time limit, so a host that
never answers the handshake leaves the caller hanging for the kernel's SYN retries (minutes).
``install`` wraps that call in the proxy process: after CONNECT_TIMEOUT seconds it
fails with a TimeoutError (an OSError), which mitmproxy already turns into a clear 502 for the
client and an ``error`` hook for the span (``upstream_timeout``). Only the connect is limited:
an answer may still take as long as the model needs (reasoning models can think for minutes).
"""

from __future__ import annotations

import asyncio
import functools

from mitmproxy.proxy import server

_original = asyncio.open_connection


def install(seconds: float) -> None:
    if seconds <= 0:
        return

    @functools.wraps(_original)
    async def open_connection(*args, **kwargs):
        try:
            return await asyncio.wait_for(_original(*args, **kwargs), seconds)
        except asyncio.TimeoutError:
            raise TimeoutError(f"upstream connect timed out after {seconds:g} s") from None

    # Only mitmproxy's server module sees the wrapper; asyncio itself is left alone.
    server.asyncio = _AsyncioWith(open_connection)


class _AsyncioWith:
    """The asyncio module, with ``open_connection`` replaced."""

    def __init__(self, open_connection) -> None:
        self.open_connection = open_connection

    def __getattr__(self, name: str):
        return getattr(asyncio, name)
