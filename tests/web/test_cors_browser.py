"""CORS in a real browser: Debian's headless Chromium, driven by Selenium through Debian's chromedriver.

A page served from one loopback port fetches /users from the app served on another (two
origins), with a header that needs a preflight, and follows `Link` to the last page. With
its origin not allowed, the browser must refuse the page the response.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from app.config import Settings

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from selenium.webdriver.remote.webdriver import WebDriver

pytestmark = pytest.mark.slow  # starts headless Chromium (about 10 s)

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DEBIAN_PACKAGES = ("chromium", "chromium-driver")
APT_TIMEOUT_SECONDS = 900
# The page's script gives up after this; the test waits a little longer for its answer.
FETCH_TIMEOUT_MS = 15_000
# Headless, as root in a container, and nothing that reaches beyond this machine.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)

# Follows Link from the first page to the last, as a client of the API would, and leaves the
# outcome in window.__result. If-None-Match is not CORS-safelisted: the browser preflights.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>users</title></head><body><script>
(async () => {
  const api = %(api)s;
  const names = [];
  const statuses = [];
  let url = new URL("/users?limit=2&format=json", api).href;
  try {
    while (url) {
      const response = await fetch(url, {headers: {"If-None-Match": '"not-this-one"'},
                                         signal: AbortSignal.timeout(%(timeout)d)});
      statuses.push(response.status);
      names.push(...(await response.json()).users);
      const link = response.headers.get("Link");
      const next = link && /^<([^>]+)>; rel="next"$/.exec(link);
      url = next ? new URL(next[1], url).href : null;
    }
    window.__result = {names, statuses};
  } catch (error) {
    window.__result = {error: String(error), names, statuses};
  }
})();
</script></body></html>
"""


def _browser_or_skip() -> None:
    """Install Debian's chromium and chromium-driver when missing and root; else skip, saying why."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(
            f"needs {CHROMIUM} and {CHROMEDRIVER} (Debian: apt-get install {' '.join(DEBIAN_PACKAGES)}); "
            "not root with apt-get, so they cannot be installed here"
        )
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", *DEBIAN_PACKAGES]):
        subprocess.run(command, check=True, env=environment, timeout=APT_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL)


@dataclass
class Served:
    """A WSGI app served on a free loopback port, and the methods of the requests it saw."""

    server: BaseWSGIServer
    methods: list[str] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"


@pytest.fixture
def serve_wsgi() -> Iterator[Callable[[WSGIApplication], Served]]:
    started: list[tuple[Served, threading.Thread]] = []

    def serve(application: WSGIApplication) -> Served:
        served: Served

        def recording(environ: WSGIEnvironment, start_response: StartResponse) -> Any:
            served.methods.append(environ["REQUEST_METHOD"])
            return application(environ, start_response)

        served = Served(make_server("127.0.0.1", 0, recording, threaded=True))
        thread = threading.Thread(target=served.server.serve_forever, daemon=True)
        thread.start()
        started.append((served, thread))
        return served

    yield serve
    for served, thread in started:
        served.server.shutdown()
        served.server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebDriver]:
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # Both paths are given, so Selenium Manager has nothing to find; offline, it downloads nothing either.
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(FETCH_TIMEOUT_MS / 1000 * 4)
    try:
        yield driver
    finally:
        driver.quit()


def _page_app(api_origin: str) -> WSGIApplication:
    body = (PAGE % {"api": json.dumps(api_origin), "timeout": FETCH_TIMEOUT_MS}).encode("utf-8")

    def page(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))])
        return [body]

    return page


def _run_page(browser: WebDriver, page_origin: str) -> dict[str, Any]:
    browser.get(page_origin + "/")
    # Waits (bounded by the script timeout) for the page's script to finish, however it ends.
    result: dict[str, Any] = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const poll = () => window.__result ? done(window.__result) : setTimeout(poll, 20);
        poll();
        """
    )
    return result


def _api_and_page(
    serve_wsgi: Callable[[WSGIApplication], Served],
    make_app: Callable[[Settings], Flask],
    settings: Settings,
    allow: Callable[[str], frozenset[str]],
) -> tuple[Served, Served]:
    # The page's port is needed in the API's settings before the page knows the API's: bind the
    # page server first with a placeholder app, then give it the page.
    page_holder: dict[str, WSGIApplication] = {}
    page = serve_wsgi(lambda environ, start_response: page_holder["app"](environ, start_response))
    api = serve_wsgi(make_app(replace(settings, cors_allow_origins=allow(page.origin))))
    page_holder["app"] = _page_app(api.origin)
    return api, page


def test_cors_browser_follows_links_across_origins(
    browser: WebDriver,
    serve_wsgi: Callable[[WSGIApplication], Served],
    make_app: Callable[[Settings], Flask],
    settings: Settings,
) -> None:
    api, page = _api_and_page(serve_wsgi, make_app, settings, lambda origin: frozenset({origin}))

    result = _run_page(browser, page.origin)

    assert result == {"names": ["Alice", "Bob", "Carol", "Dave", "Eve"], "statuses": [200, 200, 200]}
    assert api.methods.count("OPTIONS") >= 1  # the browser preflighted the If-None-Match header
    assert api.methods.count("GET") == 3


def test_cors_browser_blocks_an_origin_not_allowed(
    browser: WebDriver,
    serve_wsgi: Callable[[WSGIApplication], Served],
    make_app: Callable[[Settings], Flask],
    settings: Settings,
) -> None:
    api, page = _api_and_page(serve_wsgi, make_app, settings, lambda origin: frozenset({"https://app.example.com"}))

    result = _run_page(browser, page.origin)

    assert result["error"].startswith("TypeError")  # "Failed to fetch": the browser refused
    assert result["names"] == []
    # The preflight reached the API and got no Access-Control-Allow-Origin: no GET followed.
    assert api.methods == ["OPTIONS"]
