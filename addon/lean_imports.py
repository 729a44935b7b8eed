"""Import only the parts of mitmproxy the lean master uses.

``mitmproxy/addons/__init__.py`` imports all ~40 default addons to list them, and with them
Flask, Jinja2 and Werkzeug (the onboarding web app), ldap3 and passlib (proxy auth), and more:
about 17 MB of resident memory in every proxy process, measured, for modules LLMFlow never
runs. ``mitmproxy.master`` reaches that ``__init__`` through ``from .addons import termlog``.

``skip_default_addons()`` registers ``mitmproxy.addons`` as a plain namespace of its modules
before anything imports it, so ``from mitmproxy.addons import core`` loads ``core`` alone. It
must run before the first ``mitmproxy.master`` / ``mitmproxy.addons`` import; when mitmproxy's
own tools (mitmdump) already imported the package, it does nothing.
"""

from __future__ import annotations

import importlib.util
import sys
import types


def skip_default_addons() -> None:
    if "mitmproxy.addons" in sys.modules:
        return
    import mitmproxy

    spec = importlib.util.find_spec("mitmproxy.addons")
    if spec is None or spec.submodule_search_locations is None:
        return
    package = types.ModuleType("mitmproxy.addons", "mitmproxy's addons (default list not loaded)")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    package.__package__ = "mitmproxy.addons"
    sys.modules["mitmproxy.addons"] = package
    mitmproxy.addons = package  # type: ignore[attr-defined]
