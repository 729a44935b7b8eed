// Analytics charts (Chart.js from npm, served as a static file). Data comes from /api/analytics
// with the page's filters; every text goes into the page through textContent.
(function () {
  "use strict";

  var charts = [];

  function css(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function label(iso, bucket) {
    var d = new Date(iso);
    var pad = function (n) { return String(n).padStart(2, "0"); };
    var day = d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate());
    return bucket === "day" ? day : day.slice(5) + " " + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
  }

  function money(value) {
    if (value === null || value === undefined) return "?";
    return "$" + (value >= 1 ? value.toFixed(2) : value.toFixed(value >= 0.01 ? 4 : 6));
  }

  function number(value) {
    return value === null || value === undefined ? "—" : Number(value).toLocaleString("en-US");
  }

  function draw(id, type, labels, datasets, options) {
    var canvas = document.getElementById(id);
    if (!canvas || !window.Chart) return;
    var grid = css("--line"), text = css("--muted");
    charts.push(new window.Chart(canvas, {
      type: type,
      data: { labels: labels, datasets: datasets },
      options: Object.assign({
        responsive: true, maintainAspectRatio: false, animation: false,
        interaction: { mode: "index", intersect: false },
        plugins: { legend: { labels: { color: text, boxWidth: 12 } } },
        scales: type === "doughnut" ? {} : {
          x: { ticks: { color: text, maxTicksLimit: 8 }, grid: { color: grid } },
          y: { ticks: { color: text }, grid: { color: grid }, beginAtZero: true },
        },
      }, options || {}),
    }));
  }

  function fillTop(id, rows) {
    var body = document.querySelector("#" + id + " tbody");
    if (!body) return;
    body.textContent = "";
    if (!rows.length) {
      var empty = body.insertRow();
      empty.insertCell().textContent = "No tagged calls in this range.";
      return;
    }
    rows.forEach(function (row) {
      var tr = body.insertRow();
      tr.insertCell().textContent = row.name;
      var cost = tr.insertCell(); cost.textContent = money(row.cost); cost.className = "num";
      var n = tr.insertCell(); n.textContent = number(row.requests) + " calls"; n.className = "num muted";
    });
  }

  function render(data) {
    var accent = css("--accent"), err = css("--err"), ok = css("--ok"), warn = css("--cancel");
    var labels = data.series.map(function (p) { return label(p.t, data.bucket); });
    var pick = function (key) { return data.series.map(function (p) { return p[key]; }); };
    var t = data.totals;
    var set = function (key, value) {
      var el = document.querySelector('[data-total="' + key + '"]');
      if (el) el.textContent = value;
    };
    set("requests", number(t.requests));
    set("error_rate", (t.error_rate * 100).toFixed(1) + "%");
    set("tokens", number(t.prompt_tokens) + " / " + number(t.completion_tokens));
    set("cost", money(t.cost));
    set("latency", (t.p50 === null ? "—" : Math.round(t.p50) + " ms") + " / " +
        (t.p95 === null ? "—" : Math.round(t.p95) + " ms"));
    document.getElementById("range-note").textContent =
      "From " + data.since + " to " + data.until + ", per " + data.bucket + " (UTC). Percentiles are read off a histogram (±25%).";

    charts.forEach(function (chart) { chart.destroy(); });
    charts = [];
    draw("chart-requests", "bar", labels, [
      { label: "requests", data: pick("requests"), backgroundColor: accent },
      { label: "errors", data: pick("errors"), backgroundColor: err },
    ]);
    draw("chart-tokens", "line", labels, [
      { label: "in", data: pick("prompt_tokens"), borderColor: accent, backgroundColor: accent },
      { label: "out", data: pick("completion_tokens"), borderColor: ok, backgroundColor: ok },
    ]);
    var usdTicks = { ticks: { color: css("--muted"), callback: function (v) { return money(v); } },
                     grid: { color: css("--line") }, beginAtZero: true };
    draw("chart-cost", "bar", labels, [{ label: "USD", data: pick("cost"), backgroundColor: ok }],
         { scales: { x: { ticks: { color: css("--muted"), maxTicksLimit: 8 }, grid: { color: css("--line") } },
                     y: usdTicks } });
    draw("chart-latency", "line", labels, [
      { label: "p50", data: pick("p50"), borderColor: accent, backgroundColor: accent },
      { label: "p95", data: pick("p95"), borderColor: err, backgroundColor: err },
      { label: "TTFT p50", data: pick("ttft_p50"), borderColor: ok, backgroundColor: ok, borderDash: [4, 3] },
      { label: "TTFT p95", data: pick("ttft_p95"), borderColor: warn, backgroundColor: warn, borderDash: [4, 3] },
    ]);
    draw("chart-errors", "line", labels, [{
      label: "error rate %", data: data.series.map(function (p) { return +(p.error_rate * 100).toFixed(2); }),
      borderColor: err, backgroundColor: err,
    }]);
    var models = data.cost_by_model;
    draw("chart-models", "bar", models.map(function (m) { return m.name; }),
         [{ label: "USD", data: models.map(function (m) { return m.cost; }), backgroundColor: accent }],
         { indexAxis: "y", scales: { x: usdTicks, y: { ticks: { color: css("--muted") }, grid: { color: css("--line") } } } });
    fillTop("top-users", data.top_users);
    fillTop("top-features", data.top_features);
    document.getElementById("analytics").setAttribute("data-ready", "1");
  }

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.getElementById("analytics");
    if (!root) return;
    var data = null;
    fetch(root.dataset.source, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : r.json().then(function (e) { throw new Error(e.error); }); })
      .then(function (json) { data = json; render(data); })
      .catch(function (e) {
        document.getElementById("range-note").textContent = "Could not load the charts: " + e.message;
      });
    // redraw in the other palette when the theme changes
    new MutationObserver(function () { if (data) render(data); })
      .observe(document.documentElement, { attributes: true, attributeFilter: ["data-theme"] });
  });
})();
