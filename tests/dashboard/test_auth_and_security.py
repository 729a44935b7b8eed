import base64

from django.test import Client


def test_pages_redirect_to_login_and_api_answers_401(data):
    client = Client()
    assert client.get("/").status_code == 302
    response = client.get("/traces/" + "a" * 32)
    assert response.status_code == 302 and response["Location"] == "/login?next=%2Ftraces%2F" + "a" * 32
    api = client.get("/api/spans")
    assert api.status_code == 401 and api.json() == {"error": "authentication required"}
    assert api["WWW-Authenticate"].startswith("Basic")


def test_healthz_needs_no_login(data):
    assert Client().get("/healthz").json() == {"status": "ok", "store": data.name, "proxies": []}


def test_login_logout_and_the_default_credentials_banner(data):
    client = Client()
    page = client.get("/login")
    assert b"The default login (llmflow / password) is in use" in page.content
    assert client.post("/login", {"username": "llmflow", "password": "nope"}).status_code == 401
    response = client.post("/login", {"username": "llmflow", "password": "password", "next": "/?model=x"})
    assert response.status_code == 302 and response["Location"] == "/?model=x"
    assert client.get("/").status_code == 200
    assert client.post("/logout").status_code == 302
    assert client.get("/").status_code == 302


def test_open_redirects_are_refused(data):
    response = Client().post("/login", {"username": "llmflow", "password": "password",
                                        "next": "https://evil.example/"})
    assert response["Location"] == "/"


def test_failed_logins_are_throttled(data):
    client = Client()
    for _ in range(5):
        assert client.post("/login", {"username": "llmflow", "password": "bad"}).status_code == 401
    # even the right password is refused while locked out
    assert client.post("/login", {"username": "llmflow", "password": "password"}).status_code == 429


def test_basic_auth_for_the_api(data):
    good = "Basic " + base64.b64encode(b"llmflow:password").decode()
    bad = "Basic " + base64.b64encode(b"llmflow:wrong").decode()
    assert Client().get("/api/spans", HTTP_AUTHORIZATION=good).status_code == 200
    assert Client().get("/api/spans", HTTP_AUTHORIZATION=bad).status_code == 401
    assert Client().get("/api/spans", HTTP_AUTHORIZATION="Basic !!!").status_code == 401


def test_login_form_is_csrf_protected(data):
    client = Client(enforce_csrf_checks=True)
    assert client.post("/login", {"username": "llmflow", "password": "password"}).status_code == 403
    page = client.get("/login")
    token = page.cookies["csrftoken"].value
    assert b"csrfmiddlewaretoken" in page.content
    ok = client.post("/login", {"username": "llmflow", "password": "password", "csrfmiddlewaretoken": token})
    assert ok.status_code == 302


def test_security_headers(logged_in):
    response = logged_in.get("/")
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    login = Client().post("/login", {"username": "llmflow", "password": "password"})
    assert login.cookies["sessionid"]["httponly"]


def test_behind_an_https_reverse_proxy_cookies_are_secure(data, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SESSION_COOKIE_SECURE = True
    settings.CSRF_COOKIE_SECURE = True
    client = Client()
    page = client.get("/login", HTTP_X_FORWARDED_PROTO="https")
    assert page.cookies["csrftoken"]["secure"]
    login = client.post("/login", {"username": "llmflow", "password": "password"},
                        HTTP_X_FORWARDED_PROTO="https")
    assert login.cookies["sessionid"]["secure"] and login.cookies["sessionid"]["httponly"]


def test_the_setting_turns_on_secure_cookies():
    import subprocess
    import sys

    from tests.support.processes import ROOT

    script = ("import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'llmflow_dashboard.settings'; "
              "from django.conf import settings; print(settings.SECURE_PROXY_SSL_HEADER, "
              "settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE)")
    import os
    import tempfile

    env = {**os.environ, "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
           "LLMFLOW_DATA_DIR": tempfile.mkdtemp(), "SECRET_KEY": "test"}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "('HTTP_X_FORWARDED_PROTO', 'https') True True"
