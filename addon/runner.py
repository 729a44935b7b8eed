"""LLMFlow's proxy process: a lean mitmproxy master with only the built-in addons it needs.

``python -m addon`` starts it. mitmdump loads ~35 built-in addons and dispatches every hook
to each; LLMFlow needs the proxy server, protocol detection, TLS and its own addon.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from mitmproxy import options
from mitmproxy.addons import core, disable_h2c, errorcheck, next_layer, proxyserver, tlsconfig
from mitmproxy.master import Master

from addon.llmflow import LLMFlow
from llmflow_core import config as llmflow_config

log = logging.getLogger("llmflow.proxy")


def proxy_options(config: llmflow_config.Config) -> dict[str, object]:
    confdir = config.data_dir / "mitmproxy"
    confdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return {
        # Base-URL mode: requests are routed per path by the addon; the default target only
        # matters for requests the addon does not claim.
        "mode": [f"reverse:{config.upstreams['openai']}@{config.bind_host}:{config.proxy_port}"],
        # Connect upstream only once the addon has chosen the target.
        "connection_strategy": "lazy",
        "confdir": str(confdir),
        "listen_host": config.bind_host,
    }


async def serve(config: llmflow_config.Config) -> int:
    opts = options.Options()
    master = Master(opts, with_termlog=False)
    master.addons.add(core.Core(), proxyserver.Proxyserver(), next_layer.NextLayer(),
                      tlsconfig.TlsConfig(), disable_h2c.DisableH2C(), errorcheck.ErrorCheck())
    recorder = LLMFlow(config)
    master.addons.add(recorder)
    opts.update(**proxy_options(config))

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, master.shutdown)
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    log.info("proxy listening on http://%s:%d (base-URL mode)", config.bind_host, config.proxy_port)
    await master.run()
    return 0


def main() -> int:
    try:
        config = llmflow_config.load()
    except llmflow_config.ConfigError as exc:
        print(f"llmflow proxy: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("hpack", "mitmproxy.proxy.server", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return asyncio.run(serve(config))
