"""The dashboard as a person uses it: Debian's Chromium driven by Playwright, against the real
proxy and dashboard processes. Screenshots of each page land in test-artifacts/."""

from __future__ import annotations

import time
import uuid

import openai
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.e2e.conftest import start_stack
from tests.support.mock_upstream import MockUpstream

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
XSS_PROMPT = ('<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
              '<a href="javascript:window.__pwned=3">click</a>')


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    upstream = MockUpstream().start()
    running = start_stack(tmp_path_factory.mktemp("browser"), upstream)
    yield running
    running.proxy.stop()
    running.dashboard.stop()
    upstream.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.dialogs = []  # type: ignore[attr-defined]
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    yield page
    context.close()


def login(page: Page, stack, artifacts) -> None:
    page.goto(stack.dashboard.url + "/")
    expect(page).to_have_url(stack.dashboard.url + "/login")
    expect(page.get_by_role("alert")).to_contain_text("default login")
    page.screenshot(path=str(artifacts / "login.png"))
    page.fill("input[name=username]", "llmflow")
    page.fill("input[name=password]", "password")
    page.click("button[type=submit]")
    expect(page).to_have_url(stack.dashboard.url + "/")


def call(stack, prompt: str, **kwargs) -> None:
    sdk = openai.OpenAI(base_url=stack.proxy.url + "/v1", api_key="sk-browser-test", max_retries=0)
    sdk.chat.completions.create(model=kwargs.pop("model", "gpt-4o-mini"),
                                messages=[{"role": "user", "content": prompt}], **kwargs)


def test_a_call_appears_live_and_opens_as_a_waterfall(page, stack, artifacts):
    login(page, stack, artifacts)
    marker = f"live-{uuid.uuid4().hex[:8]}"
    call(stack, f"{marker} tell me about otters")
    made = time.monotonic()
    row = page.locator("tr", has_text=marker)
    expect(row).to_be_visible(timeout=5000)  # no reload: the list polls
    appeared = time.monotonic() - made
    print(f"row appeared {appeared:.2f}s after the call returned")
    assert appeared < 3.0
    expect(row).to_contain_text("gpt-4o-mini-2024-07-18")
    expect(row).to_contain_text("success")
    page.screenshot(path=str(artifacts / "traces.png"), full_page=True)

    # filters live in the URL
    page.fill("input[name=model]", "no-such-model")
    page.click("#filters button[type=submit]")
    expect(page).to_have_url(f"{stack.dashboard.url}/?model=no-such-model")  # only what is set
    expect(page.locator("tr", has_text=marker)).to_have_count(0)
    page.goto(stack.dashboard.url + "/?model=gpt-4o-mini-2024-07-18")
    expect(page.locator("tr", has_text=marker)).to_be_visible()

    page.locator("tr", has_text=marker).locator("a").click()
    expect(page.locator("#waterfall .wf-row")).to_have_count(1)
    bar = page.locator(".wf-bar").first
    assert bar.evaluate("el => el.style.width") == "100%"  # laid out by app.js
    detail = page.locator("[data-span-detail]:not(.hidden)")
    expect(detail).to_contain_text(f"{marker} tell me about otters")
    expect(detail).to_contain_text("The quick brown fox")
    detail.locator("summary", has_text="Raw JSON").click()
    expect(detail.locator(".raw pre")).to_contain_text('"traceId"')
    page.screenshot(path=str(artifacts / "trace.png"), full_page=True)


def test_stored_xss_does_not_execute(page, stack, artifacts):
    call(stack, XSS_PROMPT)
    login(page, stack, artifacts)
    row = page.locator("tr", has_text="window.__pwned=1")
    expect(row).to_be_visible(timeout=5000)
    expect(row.locator("td.preview")).to_contain_text("<script>window.__pwned=1</script>")
    row.locator("a").first.click()
    expect(page.locator(".conversation")).to_contain_text('<img src=x onerror="window.__pwned=2">')
    assert page.locator(".conversation a", has_text="click").count() == 0  # a link stays text
    assert page.evaluate("window.__pwned") is None
    assert page.dialogs == []
    page.screenshot(path=str(artifacts / "xss.png"), full_page=True)


def test_dark_mode_toggle_and_phone_width(page, stack, artifacts):
    login(page, stack, artifacts)
    before = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.click("#theme-toggle")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    after = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert before != after
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")  # remembered
    page.screenshot(path=str(artifacts / "traces-dark.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1") or \
        page.locator(".table-wrap").evaluate("el => el.scrollWidth > el.clientWidth")
    page.screenshot(path=str(artifacts / "traces-phone.png"), full_page=True)


def test_logout(page, stack, artifacts):
    login(page, stack, artifacts)
    page.click("form.logout button")
    expect(page).to_have_url(stack.dashboard.url + "/login")
    page.goto(stack.dashboard.url + "/")
    expect(page).to_have_url(stack.dashboard.url + "/login")


def test_search_export_and_analytics(page, stack, artifacts):
    marker = f"srch{uuid.uuid4().hex[:6]}"
    sdk = openai.OpenAI(base_url=stack.proxy.url + "/v1", api_key="sk-browser-test", max_retries=0)
    sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"find {marker} please"}],
                                extra_headers={"X-Trace-User-Id": "ada", "X-Trace-Feature": "search-test"})
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="gpt-4o-mini-error-400", messages=[{"role": "user", "content": "fail"}])
    login(page, stack, artifacts)
    expect(page.locator("tr", has_text=marker)).to_be_visible(timeout=5000)

    page.fill("input[name=q]", marker)
    page.click("#filters button[type=submit]")
    expect(page).to_have_url(f"{stack.dashboard.url}/?q={marker}")  # empty fields left out
    expect(page.locator("#span-rows tr")).to_have_count(1)

    with page.expect_download() as download_info:
        page.click("text=CSV")
    download = download_info.value
    assert download.suggested_filename.startswith("llmflow-spans-") and download.suggested_filename.endswith(".csv")
    lines = open(download.path(), encoding="utf-8").read().splitlines()
    assert len(lines) == 2 and "search-test" in lines[1] and "ada" in lines[1]

    page.click("nav >> text=Analytics")
    expect(page.locator("#analytics")).to_have_attribute("data-ready", "1", timeout=10000)
    requests = int(page.locator('[data-total="requests"]').inner_text().replace(",", ""))
    assert requests >= 2
    assert page.locator('[data-total="error_rate"]').inner_text().endswith("%")
    assert page.locator("#top-users").inner_text().count("ada") == 1
    # every chart drew on its canvas
    for chart in ("requests", "tokens", "cost", "latency", "errors", "models"):
        assert page.evaluate(f"Chart.getChart(document.getElementById('chart-{chart}')) !== undefined"), chart
    page.screenshot(path=str(artifacts / "analytics.png"), full_page=True)
    page.click("#theme-toggle")
    page.screenshot(path=str(artifacts / "analytics-dark.png"), full_page=True)
