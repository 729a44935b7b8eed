"""Docker cannot run on our machines: check what can be checked of the deployment files."""

from __future__ import annotations

import re

import yaml

from llmflow_core.config import SETTINGS, UPSTREAM_PREFIX
from tests.support.processes import ROOT

KNOWN = {setting.name for setting in SETTINGS}


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_parses_and_has_the_three_services():
    services = compose()["services"]
    assert set(services) == {"mongo", "proxy", "dashboard"}
    assert services["proxy"]["ports"] == ["8080:8080", "8081:8081"]
    assert services["dashboard"]["ports"] == ["3000:3000"]
    assert "mongo-data:/data/db" in services["mongo"]["volumes"]
    for name in ("proxy", "dashboard"):
        assert services[name]["depends_on"]["mongo"]["condition"] == "service_healthy"
    assert "healthcheck" in services["mongo"]


def test_every_variable_compose_sets_is_one_the_code_reads():
    for name in ("proxy", "dashboard"):
        for variable in compose()["services"][name]["environment"]:
            assert variable in KNOWN or variable.startswith(UPSTREAM_PREFIX), variable


def test_the_brief_variables_are_all_set_somewhere():
    used = set()
    for name in ("proxy", "dashboard"):
        used |= set(compose()["services"][name]["environment"])
    for variable in ("MONGO_URI", "AUTH_USERNAME", "AUTH_PASSWORD", "PORT", "PROXY_PORT",
                     "RETENTION_DAYS", "MAX_RESPONSE_SIZE"):
        assert variable in used


def test_readme_documents_every_setting_with_its_default():
    readme = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| `([A-Z_<>]+)` \| ([^|]+) \|", readme, re.MULTILINE))
    for setting in SETTINGS:
        assert setting.name in rows, f"{setting.name} missing from the README's configuration table"
        shown = rows[setting.name].strip()
        assert shown == (f"`{setting.default}`" if setting.default else "(empty)"), setting.name
    documented = {name for name in rows if not name.startswith(UPSTREAM_PREFIX)}
    assert documented <= KNOWN, documented - KNOWN


def test_dockerfiles_copy_and_run_what_exists():
    for dockerfile in ("Dockerfile.proxy", "Dockerfile.web"):
        text = (ROOT / dockerfile).read_text()
        for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE):
            for path in source.split():
                assert (ROOT / path).exists(), f"{dockerfile}: COPY {path}"
        assert "USER llmflow" in text and "HEALTHCHECK" in text
        assert text.startswith("#") and "FROM python:3.11-slim" in text
    assert (ROOT / "addon" / "__main__.py").exists()  # python -m addon
    assert (ROOT / "llmflow_dashboard" / "wsgi.py").exists()  # gunicorn llmflow_dashboard.wsgi
    assert "AS assets" in (ROOT / "Dockerfile.web").read_text()  # npm only in a build stage


def test_readme_first_screen_has_the_two_commands():
    head = "\n".join((ROOT / "README.md").read_text().splitlines()[:15])
    assert "make run" in head and "make test" in head
    assert (ROOT / ".ci" / "run").read_text().count("make test") == 1
