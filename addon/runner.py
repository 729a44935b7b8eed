"""LLMFlow's proxy process: a lean mitmproxy master with only the built-in addons it needs.

``python -m addon`` starts it. mitmdump loads ~35 built-in addons and dispatches every hook
to each; LLMFlow needs the proxy server, protocol detection, TLS and its own addon.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import os
import re
from pathlib import Path

from mitmproxy import options
from mitmproxy.addons import core, disable_h2c, errorcheck, next_layer, proxyserver, tlsconfig
from mitmproxy.master import Master
from mitmproxy.proxy.mode_specs import ReverseMode

from addon.llmflow import LLMFlow
from llmflow_core import config as llmflow_config
from llmflow_core.routing import KNOWN_HOSTS

CA_CERT = "mitmproxy-ca-cert.pem"
CA_BUNDLE = "ca-bundle.pem"  # the public CAs plus LLMFlow's, for SSL_CERT_FILE


class LLMFlowNextLayer(next_layer.NextLayer):
    """``allow_hosts`` limits HTTPS_PROXY interception to LLM API hosts; base-URL (reverse)
    connections are always LLMFlow's to handle, whatever their upstream is."""

    name = "nextlayer"  # the proxy server looks its layer decider up by this name

    def _ignore_connection(self, context, data_client, data_server):  # type: ignore[override]
        if isinstance(context.client.proxy_mode, ReverseMode):
            return False
        return super()._ignore_connection(context, data_client, data_server)


def intercepted_hosts_regex() -> str:
    hosts = "|".join(re.escape(host) for host in sorted(KNOWN_HOSTS))
    return rf"^({hosts})(:\d+)?$"

log = logging.getLogger("llmflow.proxy")


def proxy_options(config: llmflow_config.Config) -> dict[str, object]:
    confdir = config.data_dir / "mitmproxy"
    confdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    modes = [
        # Base-URL mode: requests are routed per path by the addon; the default target only
        # matters for requests the addon does not claim.
        f"reverse:{config.upstreams['openai']}@{config.bind_host}:{config.proxy_port}",
    ]
    if config.intercept_port:
        modes.append(f"regular@{config.bind_host}:{config.intercept_port}")
    return {
        "mode": modes,
        # HTTPS_PROXY mode: LLM API hosts are intercepted (and recorded); any other host is
        # tunnelled untouched, its TLS never opened.
        "allow_hosts": [intercepted_hosts_regex()],
        # Connect upstream only once the addon has chosen the target.
        "connection_strategy": "lazy",
        "confdir": str(confdir),
        "listen_host": config.bind_host,
    }


async def serve(config: llmflow_config.Config) -> int:
    opts = options.Options()
    master = Master(opts, with_termlog=False)
    master.addons.add(core.Core(), proxyserver.Proxyserver(), LLMFlowNextLayer(),
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
    if config.intercept_port:
        log.info("HTTPS_PROXY mode on http://%s:%d; clients trust %s", config.bind_host,
                 config.intercept_port, config.data_dir / "mitmproxy" / CA_CERT)
    run = asyncio.create_task(master.run())
    await asyncio.sleep(0)
    await _when_ca_exists(config.data_dir / "mitmproxy")
    await run
    return 0


async def _when_ca_exists(confdir: Path) -> None:
    """Keep the CA private key owner-only, and write a trust bundle for Python clients."""
    for _ in range(100):
        if (confdir / CA_CERT).exists():
            break
        await asyncio.sleep(0.05)
    else:
        return
    for pem in confdir.glob("mitmproxy-ca*"):
        if "cert" not in pem.name:
            os.chmod(pem, 0o600)
    try:
        import certifi

        with open(confdir / CA_BUNDLE, "wb") as bundle:
            bundle.write(Path(certifi.where()).read_bytes())
            bundle.write(b"\n")
            bundle.write((confdir / CA_CERT).read_bytes())
    except (ImportError, OSError) as exc:
        log.warning("could not write %s: %s", CA_BUNDLE, exc)


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
