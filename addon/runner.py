"""LLMFlow's proxy process: a lean mitmproxy master with only the built-in addons it needs.

``python -m addon`` starts it. mitmdump loads ~35 built-in addons and dispatches every hook
to each; LLMFlow needs the proxy server, protocol detection, TLS and its own addon, and its
master dispatches a hook only to the addons that have it (LeanAddonManager) and skips
mitmproxy's debug-only per-message type checks (measured with py-spy: bench/profile_proxy.py).

mitmproxy runs its whole proxy core on one event loop, so one process uses one core.
``PROXY_WORKERS=N`` (N > 1, or ``auto`` for one per core) forks N worker processes that each
run that master and listen on the same ports with SO_REUSEPORT: the kernel spreads incoming
connections over them. Each worker has its own span writer, spool segments and status file;
the parent only supervises (SIGTERM/SIGINT go to every worker, which drain their writers
before exiting; a worker that dies later is replaced).
"""

from __future__ import annotations

import asyncio
import ctypes
import inspect
import logging
import os
import re
import signal
import sys
import time
from pathlib import Path

from addon.lean_imports import skip_default_addons

skip_default_addons()  # before the first mitmproxy import below: see addon/lean_imports.py

from mitmproxy import addonmanager, exceptions, flow, hooks, options  # noqa: E402
from mitmproxy.addons import (  # noqa: E402
    core, disable_h2c, errorcheck, next_layer, proxyserver, tlsconfig,
)
from mitmproxy.master import Master  # noqa: E402
from mitmproxy.proxy.mode_specs import ReverseMode  # noqa: E402

from addon import connect_timeout  # noqa: E402
from addon.llmflow import LLMFlow  # noqa: E402
from llmflow_core import config as llmflow_config  # noqa: E402
from llmflow_core.routing import KNOWN_HOSTS  # noqa: E402

CA_CERT = "mitmproxy-ca-cert.pem"
CA_BUNDLE = "ca-bundle.pem"  # the public CAs plus LLMFlow's, for SSL_CERT_FILE
WORKERS_ENV = "PROXY_WORKERS"
MAX_WORKERS = 64
STARTUP_GRACE = 10.0  # a worker that exits sooner than this failed to start: stop them all
STOP_TIMEOUT = 30.0  # how long the parent waits for its workers to drain before killing them

log = logging.getLogger("llmflow.proxy")


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


def share_listen_ports() -> None:
    """Make mitmproxy's TCP listeners set SO_REUSEPORT, so several workers can bind one port.

    mitmproxy 11 creates a proxy mode's listening socket in
    ``mode_servers.AsyncioServerInstance.listen`` with a plain ``asyncio.start_server(handler,
    host, port)`` and offers no option for SO_REUSEPORT. This replaces that method, for the TCP
    modes LLMFlow uses (reverse and regular) on a fixed port, with the same call plus
    ``reuse_port=True``; anything else (UDP modes, port 0) goes to mitmproxy's own code. Only
    workers call this: a single proxy keeps the usual "address already in use" error when its
    port is taken. (Linux lets only sockets of the same user share a port this way.)
    """
    from mitmproxy.proxy import mode_servers

    original = mode_servers.AsyncioServerInstance.listen
    if getattr(original, "llmflow_reuse_port", False):
        return

    async def listen(self, host: str, port: int):  # type: ignore[no-untyped-def]
        if self.mode.transport_protocol == "tcp" and port:
            return [await asyncio.start_server(self.handle_stream, host, port, reuse_port=True)]
        return await original(self, host, port)

    listen.llmflow_reuse_port = True  # type: ignore[attr-defined]
    mode_servers.AsyncioServerInstance.listen = listen  # type: ignore[method-assign]


class LeanAddonManager(addonmanager.AddonManager):
    """Dispatch each hook only to the addons that implement it.

    mitmproxy's AddonManager, for every hook of every flow, walks the whole addon chain: per
    addon a ``safecall`` context manager, a coroutine and a generator, whether or not the addon
    has the hook, and after each flow hook it fires a second, ``update`` hook the same way. With
    the lean master that is ~60 addon invocations per request for 4 that do something
    (LLMFlow's requestheaders/responseheaders/response, DisableH2C's request) and no ``update``
    handler at all. This keeps, per hook name, the list of handlers (found as mitmproxy finds
    them, sub-addons included; rebuilt whenever addons are added or removed) and calls just
    those, with the same error handling: an exception is logged (``safecall``) and the next
    handler runs; AddonHalt stops the hook. ``trigger`` (sync) is unchanged.
    """

    def __init__(self, master: Master) -> None:
        super().__init__(master)
        self._handlers: dict[str, list] = {}

    def _hooked(self, event: hooks.Hook) -> list:
        found = self._handlers.get(event.name)
        if found is None:
            found = [func for addon in self.chain for _, func in self._iter_hooks(addon, event)]
            self._handlers[event.name] = found
        return found

    def add(self, *addons):  # type: ignore[no-untyped-def]
        self._handlers = {}
        try:
            super().add(*addons)
        finally:
            self._handlers = {}

    def remove(self, addon):  # type: ignore[no-untyped-def]
        self._handlers = {}
        super().remove(addon)

    def clear(self) -> None:
        self._handlers = {}
        super().clear()

    async def trigger_event(self, event: hooks.Hook) -> None:
        handlers = self._hooked(event)
        if not handlers:
            return
        args = event.args()
        for func in handlers:
            try:
                with addonmanager.safecall():
                    result = func(*args)
                    if result is not None and inspect.isawaitable(result):
                        await result
            except exceptions.AddonHalt:
                return

    async def handle_lifecycle(self, event: hooks.Hook) -> None:
        await self.trigger_event(event)
        message = event.args()[0]
        if isinstance(message, flow.Flow) and self._hooked(_UPDATE):
            await self.trigger_event(hooks.UpdateHook([message]))


_UPDATE = hooks.UpdateHook([])  # only its name is used, to look the handlers up


class LeanMaster(Master):
    """mitmproxy's Master with the LeanAddonManager (and no terminal log)."""

    def __init__(self, opts: options.Options) -> None:
        super().__init__(opts, with_termlog=False)
        opts.changed.disconnect(self.addons._configure_all)
        self.addons = LeanAddonManager(self)


def skip_debug_type_checks() -> None:
    """Drop mitmproxy's per-message debug work, as ``python -O`` would.

    Under ``__debug__`` (any interpreter started without -O) mitmproxy 11 gives its
    ``http.MessageData`` dataclass a ``__post_init__`` that runs ``typecheck.check_option_type``
    on every field of every request and response it builds: measured with py-spy (--gil) under
    load, 7% of the samples holding the GIL, about a tenth of the event loop's time. mitmproxy
    skips it under -O (``if __debug__:``); LLMFlow only hands mitmproxy messages mitmproxy built
    itself, so the check guards nothing here. (Running under -O instead needs .opt-1.pyc files
    compiled at install time: without them, e.g. with PYTHONDONTWRITEBYTECODE, every start
    recompiles mitmproxy, ~4 s on a 2-core machine.)
    """
    from mitmproxy import http as mitmproxy_http
    from mitmproxy.utils import asyncio_utils

    if "__post_init__" in vars(mitmproxy_http.MessageData):
        mitmproxy_http.MessageData.__post_init__ = lambda self: None  # type: ignore[method-assign]

    # Likewise, every task the proxy core creates (several per request) looks PYTEST_CURRENT_TEST
    # up in os.environ under __debug__ to name it after the running test: 1-2% of the samples.
    def set_task_debug_info(task: asyncio.Task, *, name: str, client: tuple | None = None) -> None:
        task.created = time.time()  # type: ignore[attr-defined]
        task.set_name(name)
        if client:
            task.client = client  # type: ignore[attr-defined]

    asyncio_utils.set_task_debug_info = set_task_debug_info


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


async def serve(config: llmflow_config.Config, worker: int | None = None) -> int:
    """Run one proxy master until SIGINT/SIGTERM. ``worker``: this is one of several processes
    sharing the ports (the parent already made the CA and the trust bundle)."""
    if worker is not None:
        share_listen_ports()
    skip_debug_type_checks()
    connect_timeout.install(config.connect_timeout)
    opts = options.Options()
    master = LeanMaster(opts)
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
    if worker is None:
        _log_listening(config)
    run = asyncio.create_task(master.run())
    await asyncio.sleep(0)
    if worker is None:
        await _when_ca_exists(config.data_dir / "mitmproxy")
    await run
    return 0


def _log_listening(config: llmflow_config.Config, workers: int = 1) -> None:
    processes = f" ({workers} processes)" if workers > 1 else ""
    log.info("proxy listening on http://%s:%d (base-URL mode)%s", config.bind_host,
             config.proxy_port, processes)
    if config.intercept_port:
        log.info("HTTPS_PROXY mode on http://%s:%d; clients trust %s", config.bind_host,
                 config.intercept_port, config.data_dir / "mitmproxy" / CA_CERT)


async def _when_ca_exists(confdir: Path) -> None:
    """Keep the CA private key owner-only, and write a trust bundle for Python clients."""
    for _ in range(100):
        if (confdir / CA_CERT).exists():
            break
        await asyncio.sleep(0.05)
    else:
        return
    _protect_ca(confdir)


def _protect_ca(confdir: Path) -> None:
    for pem in confdir.glob("mitmproxy-ca*"):
        if "cert" not in pem.name:
            os.chmod(pem, 0o600)
    try:
        import certifi

        tmp = confdir / f".{CA_BUNDLE}.{os.getpid()}"
        with open(tmp, "wb") as bundle:
            bundle.write(Path(certifi.where()).read_bytes())
            bundle.write(b"\n")
            bundle.write((confdir / CA_CERT).read_bytes())
        tmp.replace(confdir / CA_BUNDLE)  # readers never see a half-written bundle
    except (ImportError, OSError) as exc:
        log.warning("could not write %s: %s", CA_BUNDLE, exc)


def prepare_ca(confdir: Path) -> None:
    """Create the CA before forking workers: each would otherwise make its own, concurrently."""
    from mitmproxy import certs

    confdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    certs.CertStore.from_store(confdir, "mitmproxy", options.Options().key_size)
    _protect_ca(confdir)


# -- several worker processes ------------------------------------------------------------------
def _die_with_parent(parent: int) -> None:
    """Linux: a worker gets SIGTERM (and drains) if the supervisor is killed outright."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _run_worker(config: llmflow_config.Config, index: int, parent: int) -> int:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)  # serve() installs the proxy's own handlers
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    _die_with_parent(parent)
    try:
        return asyncio.run(serve(config, worker=index))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    except BaseException:
        log.exception("proxy worker %d failed", index)
        return 1


def supervise(config: llmflow_config.Config, workers: int) -> int:
    """Fork ``workers`` proxy processes sharing the ports; replace one that dies; on SIGTERM or
    SIGINT pass SIGTERM on to each and wait (up to STOP_TIMEOUT) for them to drain and exit."""
    if not config.proxy_port:
        print(f"llmflow proxy: {WORKERS_ENV} > 1 needs a fixed PROXY_PORT (not 0)", file=sys.stderr)
        return 2
    prepare_ca(config.data_dir / "mitmproxy")
    parent = os.getpid()
    children: dict[int, tuple[int, float]] = {}  # pid -> (worker index, started)
    stopping: list[float] = []  # when the stop began
    failed: list[int] = []

    def stop_all(signum: int = signal.SIGTERM, _frame: object = None) -> None:
        if not stopping:
            stopping.append(time.monotonic())
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def spawn(index: int) -> None:
        # Signals stay blocked across fork: the child must not run the parent's handler.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    code = _run_worker(config, index, parent)
                finally:
                    logging.shutdown()
                    os._exit(code)
            children[pid] = (index, time.monotonic())
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop_all)
    for index in range(workers):
        spawn(index)
    _log_listening(config, workers)

    while children:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            if stopping and time.monotonic() - stopping[0] > STOP_TIMEOUT:
                log.error("%d worker(s) did not stop in %.0fs: killing them", len(children), STOP_TIMEOUT)
                for pid in list(children):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                stopping[0] = float("inf")
            time.sleep(0.2)
            continue
        if pid not in children:
            continue
        index, started = children.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        if stopping:
            if code not in (0, -signal.SIGTERM, -signal.SIGINT):
                failed.append(code)
            continue
        if time.monotonic() - started < STARTUP_GRACE:
            log.error("proxy worker %d exited with %s while starting: stopping", index, code)
            failed.append(code or 1)
            stop_all()
            continue
        log.error("proxy worker %d (pid %d) exited with %s: starting a new one", index, pid, code)
        spawn(index)
    return (failed[0] if failed[0] > 0 else 1) if failed else 0


def main() -> int:
    try:
        config = llmflow_config.load()
        workers = config.proxy_workers
    except llmflow_config.ConfigError as exc:
        print(f"llmflow proxy: {exc}", file=sys.stderr)
        return 2
    who = "[%(process)d]" if workers > 1 else ""
    logging.basicConfig(level=config.log_level, stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s %(name)s{who}: %(message)s")
    for noisy in ("hpack", "mitmproxy.proxy.server", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if workers > 1:
        return supervise(config, workers)
    return asyncio.run(serve(config))
