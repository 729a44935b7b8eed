"""``python manage.py import_spans [FILE|-] [--batch-size N]``: span documents from JSON Lines
(an export_spans or /api/export.jsonl file) into the configured store.

Idempotent: a span id the store already has is left as it is, so importing the same file twice
adds nothing (the summary says how many were new and how many were already there). A bad line
is reported with its number and skipped. To move from SQLite to MongoDB: export with the old
configuration, import with MONGO_URI set.
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from llmflow_core.store import StoreError
from llmflow_dashboard.maintenance import ImportResult, Progress, import_lines
from llmflow_dashboard.repository import store

SHOWN_BAD_LINES = 50


class Command(BaseCommand):
    help = "Import spans from JSON Lines (a file, or - for stdin); already stored span ids are skipped."
    stealth_options = ("stdin",)

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", nargs="?", default="-", help="JSONL file (default: - for stdin)")
        parser.add_argument("--batch-size", type=int, default=1000, help="spans per write (default 1000)")
        parser.add_argument("--no-progress", action="store_true", help="no progress counter on stderr")

    def handle(self, *args, path: str = "-", batch_size: int = 1000, no_progress: bool = False,
               stdin=None, **options) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be 1 or more")
        verbose = options.get("verbosity", 1) > 0
        progress = Progress(lambda text: self.stderr.write(text, style_func=str, ending="")) \
            if verbose and not no_progress else None
        bad_lines = 0

        def on_bad(number: int, reason: str) -> None:
            nonlocal bad_lines
            bad_lines += 1
            if progress is not None:
                progress.interrupt()
            if bad_lines <= SHOWN_BAD_LINES:
                self.stderr.write(f"line {number}: {reason} (skipped)")
            elif bad_lines == SHOWN_BAD_LINES + 1:
                self.stderr.write("(further bad lines are counted, not shown)")

        def on_batch(result: ImportResult) -> None:
            if progress is not None:
                progress.advance(result.new + result.present - progress.count)

        target = store()
        try:
            if path == "-":
                source = stdin if stdin is not None else sys.stdin.buffer
                result = import_lines(target, source, batch_size=batch_size, on_bad=on_bad,
                                      on_batch=on_batch)
            else:
                with open(path, "rb") as handle:
                    result = import_lines(target, handle, batch_size=batch_size, on_bad=on_bad,
                                          on_batch=on_batch)
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        except StoreError as exc:
            raise CommandError(f"the store failed (spans written so far stay): {exc}") from exc
        if progress is not None:
            progress.finish()
        summary = (f"imported {result.spans:,} spans into {target.name}: {result.new:,} new, "
                   f"{result.present:,} already present")
        if result.bad:
            summary += f"; {result.bad:,} bad line(s) skipped"
        self.stdout.write(self.style.SUCCESS(summary) if not result.bad else self.style.WARNING(summary))
        if result.bad and not result.spans:
            raise CommandError("no span found in the input: is it an LLMFlow JSONL export?")
