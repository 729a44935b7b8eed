"""``python manage.py stats [--json]``: what the store holds and what it costs on disk."""

from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from llmflow_core.spans import iso
from llmflow_core.store import StoreError
from llmflow_dashboard.maintenance import disk_used, human_bytes, location, sqlite_files, sqlite_path
from llmflow_dashboard.repository import store


class Command(BaseCommand):
    help = "Show the store's span count, oldest and newest span, and disk used."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", dest="as_json",
                            help="print one JSON object instead of text")

    def handle(self, *args, as_json: bool = False, **options) -> None:
        target = store()
        try:
            stats = target.stats()
            used = disk_used(target, stats)
        except StoreError as exc:
            raise CommandError(f"the store did not answer: {exc}") from exc
        config = settings.LLMFLOW
        path = sqlite_path(target)
        files = sqlite_files(path) if path is not None else {}
        if as_json:
            self.stdout.write(json.dumps({
                "store": target.name, "location": location(target, stats), "spans": stats.spans,
                "oldest": iso(stats.oldest) if stats.oldest else None,
                "newest": iso(stats.newest) if stats.newest else None,
                "disk_bytes": used, "files": files or None,
                "retention_days": config.retention_days,
                "retention_payload_days": config.retention_payload_days,
            }))
            return
        rows = [
            ("store", location(target, stats)),
            ("spans", f"{stats.spans:,}"),
            ("oldest", iso(stats.oldest) if stats.oldest else "-"),
            ("newest", iso(stats.newest) if stats.newest else "-"),
            ("disk used", human_bytes(used) + (f" ({used:,} bytes)" if used is not None else "")),
        ]
        if files:
            rows.append(("files", ", ".join(f"{name} {human_bytes(size)}" for name, size in files.items())))
        elif used is None:
            rows[-1] = ("disk used", "unknown (the server does not report collStats)")
        rows.append(("retention", _retention(config.retention_days, config.retention_payload_days)))
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            self.stdout.write(f"{name.ljust(width)}  {value}")


def _retention(days: int, payload_days: int) -> str:
    spans = f"spans kept {days} days" if days else "spans kept forever (RETENTION_DAYS=0)"
    if payload_days:
        return f"{spans}, prompts and responses {payload_days} days"
    return spans
