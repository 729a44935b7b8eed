from django.urls import path

from llmflow_dashboard.views import api, otlp, pages

urlpatterns = [
    path("", pages.traces, name="traces"),
    path("login", pages.login, name="login"),
    path("logout", pages.logout, name="logout"),
    path("traces/rows", pages.new_rows, name="trace-rows"),
    path("traces/<str:trace_id>", pages.trace, name="trace"),
    path("analytics", pages.analytics, name="analytics"),
    path("healthz", api.healthz, name="healthz"),
    path("api/spans", api.spans, name="api-spans"),
    path("api/analytics", api.analytics, name="api-analytics"),
    path("api/export.csv", api.export_csv, name="export-csv"),
    path("api/export.jsonl", api.export_jsonl, name="export-jsonl"),
    path("api/spans/<str:span_id>", api.span, name="api-span"),
    path("api/traces/<str:trace_id>", api.trace, name="api-trace"),
    path("api/traces/<str:trace_id>/otlp", otlp.export_trace, name="api-trace-otlp"),
    path("v1/traces", otlp.traces, name="otlp-traces"),
    path("v1/metrics", otlp.accepted_and_dropped, name="otlp-metrics"),
    path("v1/logs", otlp.accepted_and_dropped, name="otlp-logs"),
]
