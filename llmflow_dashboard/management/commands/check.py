"""``python manage.py check``: LLMFlow's own checks, then Django's system checks.

Configuration valid, data directory writable, store reachable, each upstream host resolvable
(a warning: it may only resolve where the proxy runs), the proxy's CA present (a warning before
the proxy's first start). Exits non-zero only on errors.
"""

from __future__ import annotations

from django.core.management.base import CommandError
from django.core.management.commands.check import Command as DjangoCheck

from llmflow_core import config as llmflow_config
from llmflow_dashboard.maintenance import (
    ERROR, OK, WARNING, Finding, check_ca, check_data_dir, check_store, check_upstreams,
)
from llmflow_dashboard.repository import store


class Command(DjangoCheck):
    help = ("Check LLMFlow's configuration and connectivity (store reachable, upstream hosts "
            "resolvable, proxy CA present), then run Django's system checks.")

    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--dns-timeout", type=float, default=2.0,
                            help="seconds to wait for the upstream host lookups (default 2)")

    def handle(self, *app_labels, dns_timeout: float = 2.0, **options) -> None:
        if options.get("list_tags"):
            return super().handle(*app_labels, **options)
        findings = self.llmflow_findings(dns_timeout)
        width = max(len(f.subject) for f in findings)
        styles = {OK: self.style.SUCCESS, WARNING: self.style.WARNING, ERROR: self.style.ERROR}
        self.stdout.write("LLMFlow checks:")
        for finding in findings:
            label = styles[finding.level](finding.level.ljust(7))
            self.stdout.write(f"  {label}  {finding.subject.ljust(width)}  {finding.message}")
        errors = sum(f.level == ERROR for f in findings)
        warnings = sum(f.level == WARNING for f in findings)
        self.stdout.write(f"{errors} error(s), {warnings} warning(s)\n")
        super().handle(*app_labels, **options)
        if errors:
            raise CommandError(f"LLMFlow check found {errors} error(s)")

    def llmflow_findings(self, dns_timeout: float) -> list[Finding]:
        try:
            config = llmflow_config.load()
        except llmflow_config.ConfigError as exc:
            return [Finding(ERROR, "configuration", str(exc))]
        where = "MongoDB " + llmflow_config.mask_uri(config.mongo_uri) if config.mongo_uri \
            else f"SQLite {config.sqlite_path}"
        findings = [Finding(OK, "configuration", f"valid (spans go to {where})")]
        if config.uses_default_credentials:
            findings.append(Finding(WARNING, "login", "the default AUTH_USERNAME/AUTH_PASSWORD are "
                                                      "in use: change them"))
        findings.append(check_data_dir(config))
        findings.append(check_store(store))
        findings.extend(check_upstreams(config, dns_timeout))
        findings.append(check_ca(config))
        return findings
