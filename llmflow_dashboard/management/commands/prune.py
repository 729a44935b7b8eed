"""``python manage.py prune [--days N] [--payload-days N] [--before WHEN] [--dry-run]``:
apply the retention now (the proxy does it hourly) and give the freed space back to the disk."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from llmflow_core.spans import iso
from llmflow_core.store import SpanQuery, StoreError, apply_retention
from llmflow_dashboard.maintenance import (
    count_spans, disk_used, human_bytes, parse_moment, reclaim_sqlite, sqlite_path,
)
from llmflow_dashboard.queries import QueryError
from llmflow_dashboard.repository import store


class Command(BaseCommand):
    help = ("Delete spans older than RETENTION_DAYS and drop prompts/responses older than "
            "RETENTION_PAYLOAD_DAYS now, then reclaim the disk space (SQLite).")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--days", type=int, default=None,
                            help="delete spans older than this many days "
                                 "(default RETENTION_DAYS; 0 keeps them)")
        parser.add_argument("--payload-days", type=int, default=None,
                            help="drop prompts and responses older than this many days "
                                 "(default RETENTION_PAYLOAD_DAYS; 0 keeps them)")
        parser.add_argument("--before", default=None, metavar="WHEN",
                            help="delete spans that started before WHEN instead: ISO-8601, a span "
                                 "back from now (15m, 24h, 7d) or 'now' (everything)")
        parser.add_argument("--dry-run", action="store_true", help="only say what would go")

    def handle(self, *args, days: int | None = None, payload_days: int | None = None,
               before: str | None = None, dry_run: bool = False, **options) -> None:
        config = settings.LLMFLOW
        days = config.retention_days if days is None else days
        payload_days = config.retention_payload_days if payload_days is None else payload_days
        if days < 0 or payload_days < 0:
            raise CommandError("--days and --payload-days take 0 or more")
        now = datetime.now(timezone.utc)
        try:
            cutoff = parse_moment(before, now) if before else (now - timedelta(days=days) if days else None)
        except QueryError as exc:
            raise CommandError(f"--before: {exc}") from exc
        payload_cutoff = now - timedelta(days=payload_days) if payload_days else None
        if cutoff is None and payload_cutoff is None:
            self.stdout.write("Nothing to prune: spans and payloads are kept forever (RETENTION_DAYS "
                              "and RETENTION_PAYLOAD_DAYS are 0); use --days, --payload-days or --before.")
            return
        target = store()
        try:
            if dry_run:
                self._dry_run(target, cutoff, payload_cutoff)
                return
            path = sqlite_path(target)
            size_before = disk_used(target)
            if before:
                deleted = target.prune(cutoff)
                dropped = target.prune_payloads(payload_cutoff) if payload_cutoff else 0
            else:
                deleted, dropped = apply_retention(
                    target, replace(config, retention_days=days, retention_payload_days=payload_days), now)
            reclaimed = reclaim_sqlite(path) if path is not None else None
            size_after = disk_used(target)
        except StoreError as exc:
            raise CommandError(f"the store failed: {exc}") from exc
        if cutoff is not None:
            self.stdout.write(f"deleted {deleted:,} spans that started before {iso(cutoff)}")
        if payload_cutoff is not None:
            self.stdout.write(f"dropped prompts and responses of {dropped:,} spans that started "
                              f"before {iso(payload_cutoff)} (counts and costs kept)")
        if path is not None:
            freed = (size_before or 0) - (size_after or 0)
            self.stdout.write(f"SQLite file {path}: {human_bytes(size_before)} -> "
                              f"{human_bytes(size_after)} ({size_before:,} -> {size_after:,} bytes, "
                              f"freed {human_bytes(max(freed, 0))}; {reclaimed})")
        else:
            self.stdout.write(f"MongoDB storage: {human_bytes(size_before)} -> {human_bytes(size_after)} "
                              f"(MongoDB reuses freed space for new spans; its 'compact' command "
                              f"returns it to the file system)")

    def _dry_run(self, target, cutoff: datetime | None, payload_cutoff: datetime | None) -> None:
        if cutoff is not None:
            doomed = count_spans(target, SpanQuery(until=cutoff))
            self.stdout.write(f"would delete {doomed:,} spans that started before {iso(cutoff)}")
        if payload_cutoff is not None and (cutoff is None or payload_cutoff > cutoff):
            kept = count_spans(target, SpanQuery(since=cutoff, until=payload_cutoff))
            self.stdout.write(f"would drop prompts and responses of at most {kept:,} spans that started "
                              f"before {iso(payload_cutoff)} (those not dropped already)")
        self.stdout.write(f"dry run: nothing changed ({target.name} uses {human_bytes(disk_used(target))})")
