"""``python manage.py seed_demo [--spans N] [--days D]``: varied demo spans in the configured store."""

from __future__ import annotations

from itertools import islice

from django.core.management.base import BaseCommand

from llmflow_core.demo import demo_spans
from llmflow_dashboard.repository import store

BATCH = 2000


class Command(BaseCommand):
    help = "Fill the store with realistic demo spans (several providers, streams, errors, traces)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--spans", type=int, default=3000)
        parser.add_argument("--days", type=float, default=7.0, help="spread over the last D days")
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args, spans: int, days: float, seed: int, **options) -> None:
        target = store()
        source = demo_spans(spans, days=days, seed=seed)
        written = 0
        while batch := list(islice(source, BATCH)):
            written += target.write_batch(batch)
            self.stdout.write(f"\r{written}/{spans} spans", ending="")
            self.stdout.flush()
        self.stdout.write(self.style.SUCCESS(f"\nwrote {written} demo spans to {target.name}"))
