// LLMFlow dashboard behaviour. Served as a static file: the CSP allows no inline script.
// Everything inserted into the page is either server-rendered (and escaped) HTML from our own
// endpoints, or set with textContent.
(function () {
  "use strict";

  // -- theme: follows the system until toggled; the choice is remembered ----------------------
  var root = document.documentElement;
  var saved = null;
  try { saved = localStorage.getItem("llmflow-theme"); } catch (e) { /* private mode */ }
  if (saved === "light" || saved === "dark") root.setAttribute("data-theme", saved);

  function currentTheme() {
    var explicit = root.getAttribute("data-theme");
    if (explicit) return explicit;
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }

  document.addEventListener("DOMContentLoaded", function () {
    var toggle = document.getElementById("theme-toggle");
    if (toggle) {
      toggle.addEventListener("click", function () {
        var next = currentTheme() === "dark" ? "light" : "dark";
        root.setAttribute("data-theme", next);
        try { localStorage.setItem("llmflow-theme", next); } catch (e) { /* ignore */ }
      });
    }
    startLive();
    layoutWaterfall();
    tidyFilters();
  });

  // -- filters: leave empty fields out of the URL, so a shared link shows only what is set ------
  function tidyFilters() {
    var form = document.getElementById("filters");
    if (!form) return;
    form.addEventListener("submit", function () {
      Array.prototype.forEach.call(form.elements, function (el) {
        if (el.name && !el.value) el.disabled = true;
      });
    });
  }

  // -- live trace list: poll for rows newer than the newest shown ------------------------------
  var POLL_MS = 1500;

  function startLive() {
    var table = document.getElementById("spans");
    if (!table || !table.dataset.live) return;
    var body = document.getElementById("span-rows");
    var base = table.dataset.live;
    var inFlight = false;

    function newest() {
      var first = body.querySelector("tr[data-start]");
      return first ? first.getAttribute("data-start") : null;
    }

    function poll() {
      if (inFlight || document.hidden) return;  // one request at a time, none in hidden tabs
      inFlight = true;
      var since = newest();
      var url = base + (base.indexOf("?") >= 0 && base.slice(-1) !== "?" ? "&" : "") +
        (since ? "since=" + encodeURIComponent(since) + "&" : "") + "limit=100";
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (response) {
          if (response.status === 401 || response.redirected) { window.location.reload(); return ""; }
          return response.ok ? response.text() : "";
        })
        .then(function (html) {
          if (!html || !html.trim()) return;
          var template = document.createElement("template");
          template.innerHTML = html;  // server-rendered by Django: already escaped
          var rows = Array.prototype.slice.call(template.content.querySelectorAll("tr[data-span-id]"));
          var fresh = rows.filter(function (row) {
            return !body.querySelector('tr[data-span-id="' + row.getAttribute("data-span-id") + '"]');
          });
          for (var i = fresh.length - 1; i >= 0; i--) {
            fresh[i].classList.add("fresh");
            body.insertBefore(fresh[i], body.firstChild);
          }
          var empty = document.getElementById("empty");
          if (fresh.length && empty) empty.remove();
        })
        .catch(function () { /* network blip: try again next tick */ })
        .then(function () { inFlight = false; });
    }

    setInterval(poll, POLL_MS);
    document.addEventListener("visibilitychange", poll);
  }

  // -- trace waterfall: bar geometry from data attributes, click to show a span ----------------
  function layoutWaterfall() {
    var fall = document.getElementById("waterfall");
    if (!fall) return;
    Array.prototype.forEach.call(fall.querySelectorAll(".wf-bar"), function (bar) {
      bar.style.left = bar.dataset.offset + "%";
      bar.style.width = bar.dataset.width + "%";
    });
    Array.prototype.forEach.call(fall.querySelectorAll(".wf-ttft"), function (mark) {
      mark.style.left = mark.dataset.offset + "%";
    });
    Array.prototype.forEach.call(fall.querySelectorAll(".wf-row"), function (row) {
      row.querySelector(".wf-label").style.paddingLeft = (Number(row.dataset.depth) * 16) + "px";
      row.addEventListener("click", function () { select(row.dataset.span); });
    });

    function select(spanId) {
      Array.prototype.forEach.call(fall.querySelectorAll(".wf-row"), function (row) {
        row.classList.toggle("selected", row.dataset.span === spanId);
      });
      Array.prototype.forEach.call(document.querySelectorAll("[data-span-detail]"), function (panel) {
        panel.classList.toggle("hidden", panel.dataset.spanDetail !== spanId);
      });
      var url = new URL(window.location.href);
      url.searchParams.set("span", spanId);
      history.replaceState(null, "", url);
    }
  }
})();
