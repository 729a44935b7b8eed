"""``python manage.py export_spans [--since WHEN] [--until WHEN] [--format jsonl|csv] [-o FILE]``:
a time range of spans to JSON Lines (re-importable with import_spans) or CSV, streamed."""

from __future__ import annotations

import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from llmflow_core.store import SpanQuery, StoreError
from llmflow_dashboard.export import csv_lines, jsonl_lines
from llmflow_dashboard.maintenance import Progress, count_spans, counted, parse_moment
from llmflow_dashboard.queries import QueryError
from llmflow_dashboard.repository import store

FORMATS = {"jsonl": jsonl_lines, "csv": csv_lines}


class Command(BaseCommand):
    help = ("Export the spans of a time range as JSON Lines or CSV, to a file or stdout, with a "
            "progress bar on stderr. Spans are streamed one at a time.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--since", help="first start time: ISO-8601 or 15m, 24h, 7d back from now")
        parser.add_argument("--until", help="end of the range (exclusive), same forms")
        parser.add_argument("--format", choices=sorted(FORMATS), default=None,
                            help="jsonl (default; what import_spans reads) or csv; "
                                 "guessed from --output's extension")
        parser.add_argument("--output", "-o", default="-", help="file to write (default: stdout)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    def handle(self, *args, since: str | None = None, until: str | None = None,
               format: str | None = None, output: str = "-", no_progress: bool = False,
               **options) -> None:
        try:
            query = SpanQuery(since=parse_moment(since) if since else None,
                              until=parse_moment(until) if until else None)
        except QueryError as exc:
            raise CommandError(str(exc)) from exc
        to_file = output != "-"
        if format is None:
            format = "csv" if to_file and output.lower().endswith(".csv") else "jsonl"
        target = store()
        show = not no_progress and options.get("verbosity", 1) > 0
        progress = None
        part = Path(output + ".part") if to_file else None
        try:
            if show:
                progress = Progress(lambda text: self.stderr.write(text, style_func=str, ending=""),
                                    count_spans(target, query))
            lines = FORMATS[format](counted(target.iter_spans(query), progress))
            if part is not None:
                with open(part, "w", encoding="utf-8", newline="") as handle:
                    for line in lines:
                        handle.write(line)
                os.replace(part, output)
            else:
                for line in lines:
                    self.stdout.write(line, ending="")
                self.stdout.flush()
        except StoreError as exc:
            raise CommandError(f"the store failed: {exc}") from exc
        except OSError as exc:
            raise CommandError(f"cannot write {output}: {exc}") from exc
        finally:
            if part is not None and part.exists():
                part.unlink()
        if progress is not None:
            progress.finish()
        if to_file and options.get("verbosity", 1) > 0:
            count = progress.count if progress is not None else None
            self.stderr.write(f"exported {'' if count is None else f'{count:,} spans '}to {output} "
                              f"({format})", style_func=str)
