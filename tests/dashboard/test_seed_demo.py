from django.core.management import call_command

from llmflow_core.demo import demo_spans
from llmflow_core.store import SpanQuery


def test_seed_demo_fills_the_store_with_varied_spans(data, capsys):
    call_command("seed_demo", spans=600, days=2)
    assert data.stats().spans == 600
    assert "wrote 600 demo spans" in capsys.readouterr().out
    statuses = {s.status.value for s in data.iter_spans(SpanQuery())}
    assert statuses == {"success", "error", "cancelled"}
    assert len(data.distinct("model")) >= 5
    traces = {}
    for span in data.iter_spans(SpanQuery()):
        traces.setdefault(span.trace_id, []).append(span)
    runs = [sorted(spans, key=lambda s: s.start_time) for spans in traces.values() if len(spans) > 1]
    assert runs and all(run[-1].parent_span_id == run[0].span_id for run in runs)  # agent runs


def test_demo_spans_are_deterministic():
    first = [s.span_id for s in demo_spans(50, seed=3)]
    assert first == [s.span_id for s in demo_spans(50, seed=3)]
    assert first != [s.span_id for s in demo_spans(50, seed=4)]
