"""A streaming (SSE) upstream for the proxy benchmark: the first event at once, more after delays.

    python -m bench.sse_upstream --port 9000 --events 5 --delay 0.05

Plain asyncio, HTTP/1.1 keep-alive, loopback only. Every POST gets an OpenAI-shaped chat
completion stream (chunked ``text/event-stream``): a first ``data:`` event written together
with the headers, then ``--events`` more, ``--delay`` seconds apart, a usage chunk and
``data: [DONE]``. A client's time to the first ``data:`` byte is then what a proxy adds in
front of the first token; a proxy that buffers the stream shows the whole stream's duration.
Any other method gets a small JSON answer. Runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

WORDS = ["The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", "."]
MODEL = "gpt-4o-mini-2024-07-18"


def _event(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _delta(index: int, content: str, role: bool = False) -> bytes:
    delta = {"role": "assistant", "content": content} if role else {"content": content}
    return _event({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000,
                   "model": MODEL, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})


def stream_events(events: int) -> list[bytes]:
    """The stream, one item per write: the first delta, ``events`` more, then the end."""
    parts = [_delta(0, WORDS[0], role=True)]
    parts += [_delta(0, WORDS[(i + 1) % len(WORDS)]) for i in range(events)]
    parts.append(_event({"id": "chatcmpl-bench", "object": "chat.completion.chunk",
                         "created": 1700000000, "model": MODEL,
                         "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 12, "completion_tokens": events + 1,
                                   "total_tokens": events + 13}}) + b"data: [DONE]\n\n")
    return parts


HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
        b"x-request-id: req-bench\r\ntransfer-encoding: chunked\r\n\r\n")


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str]] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method = lines[0].split(" ", 1)[0]
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:  # de-chunk and discard the body
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif int(headers.get("content-length") or 0):
        await reader.readexactly(int(headers["content-length"]))
    return method, headers


async def serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       events: int, delay: float) -> None:
    parts = stream_events(events)
    try:
        while True:
            request = await _read_request(reader)
            if request is None:
                break
            method, headers = request
            if method != "POST":
                body = b'{"ok":true}'
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
                continue
            writer.write(HEAD + _chunk(parts[0]))  # headers and the first token together
            await writer.drain()
            for part in parts[1:]:
                await asyncio.sleep(delay)
                writer.write(_chunk(part))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                break
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main_async(host: str, port: int, events: int, delay: float) -> None:
    server = await asyncio.start_server(lambda r, w: serve_client(r, w, events, delay), host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--events", type=int, default=5, help="events after the first")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds between events")
    args = parser.parse_args()
    if not args.host.startswith("127.") and args.host != "localhost":
        parser.error("loopback only")
    asyncio.run(main_async(args.host, args.port, args.events, args.delay))
    return 0


if __name__ == "__main__":
    sys.exit(main())
