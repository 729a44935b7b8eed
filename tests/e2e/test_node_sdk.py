"""The official OpenAI Node SDK (npm) through the proxy, by base URL and by HTTPS_PROXY."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid

import pytest

from tests.support.mock_upstream import REPLY_TEXT
from tests.support.processes import ROOT

pytestmark = pytest.mark.e2e
NODE_DIR = ROOT / "tests" / "node"


@pytest.fixture(scope="module", autouse=True)
def node_modules():
    if not (NODE_DIR / "node_modules" / "openai").exists():  # `make test` installs it; this is for ad-hoc runs
        subprocess.run([shutil.which("npm") or "npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                       check=True, capture_output=True)


def run_node(env_extra: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(env_extra)
    result = subprocess.run(["node", "client.mjs"], cwd=NODE_DIR, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def check_spans(stack, marker: str) -> None:
    for suffix, streamed in (("", False), ("-stream", True)):
        span = stack.span_where(lambda s: (s["attributes"].get("custom") or {}).get("marker") == marker + suffix)
        attrs = span["attributes"]
        assert span["status"] == "success" and attrs["stream"] is streamed
        assert attrs["prompt_tokens"] == 6 and attrs["completion_tokens"] == 10
        assert attrs["usage_estimated"] is False
        assert span["response"]["output"]["text"] == REPLY_TEXT
        assert "sk-node-canary" not in json.dumps(span)
        if not streamed:
            assert attrs["feature"] == "node-test" and attrs["temperature"] == 0.5
        else:
            assert 0 < attrs["ttft_ms"] < span["duration"]


def test_node_sdk_by_base_url(stack):
    marker = uuid.uuid4().hex
    assert run_node({"BASE_URL": stack.proxy.url + "/v1", "MARKER": marker}) == {
        "plain": REPLY_TEXT, "streamed": REPLY_TEXT}
    check_spans(stack, marker)


def test_node_sdk_through_https_proxy(stack):
    marker = uuid.uuid4().hex
    result = run_node({"PROXY_URL": f"http://127.0.0.1:{stack.proxy.intercept_port}", "MARKER": marker,
                       "NODE_EXTRA_CA_CERTS": str(stack.data_dir / "mitmproxy" / "mitmproxy-ca-cert.pem")})
    assert result == {"plain": REPLY_TEXT, "streamed": REPLY_TEXT}
    check_spans(stack, marker)
