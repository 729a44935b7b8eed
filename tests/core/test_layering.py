"""The shared core imports neither Django nor mitmproxy: both sides depend on it, not on each other."""

import subprocess
import sys
import textwrap

from tests.support.processes import ROOT


def test_core_imports_neither_django_nor_mitmproxy():
    script = textwrap.dedent("""
        import pkgutil, importlib, sys
        import llmflow_core
        for module in pkgutil.walk_packages(llmflow_core.__path__, "llmflow_core."):
            importlib.import_module(module.name)
        from llmflow_core.capture import build_span  # and what the writer runs
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("django", "mitmproxy"))
        print(",".join(loaded))
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == ""


def test_dashboard_does_not_import_the_addon():
    import ast

    for path in (ROOT / "llmflow_dashboard").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert name.split(".")[0] not in ("addon", "mitmproxy"), (path, name)
