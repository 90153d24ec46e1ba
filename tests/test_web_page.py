"""The web page at / in real headless Chromium (Debian's chromium driven by Playwright)."""

import os
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

from bench.common import free_port
from tests.cli import run_task, tiny_training_flags
from tests.conftest import write_synthetic_data

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
# No background traffic: this machine's network is closed.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("web")
    data = write_synthetic_data(root / "data")
    run_task(*tiny_training_flags(tiny_model, data, str(root / "out")), "--do_train")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bner.serving", f"--model_dir={root / 'out' / 'export' / 'bner' / '1'}", "--host=127.0.0.1", f"--port={port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/api/ner/ready", timeout=2)
            break
        except OSError:
            if process.poll() is not None:
                raise AssertionError(process.stdout.read().decode()) from None
            time.sleep(0.3)
    yield url, root
    process.terminate()
    process.wait(timeout=20)


def test_page_highlights_entities_by_type(server):
    sync_api = pytest.importorskip("playwright.sync_api")
    from PIL import Image

    url, root = server
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 900, "height": 600})
        page.goto(url + "/")
        page.fill("#text", "Anna Kowalski visited Lisbon with Acme today .")
        page.click("#run")
        page.wait_for_selector("mark.entity")
        page.wait_for_function("document.querySelector('#status').textContent.includes('found')")
        marks = page.eval_on_selector_all("mark.entity", "els => els.map(e => [e.firstChild.textContent, e.dataset.type, getComputedStyle(e).backgroundColor])")
        assert [(text, kind) for text, kind, _ in marks] == [("Anna Kowalski", "PER"), ("Lisbon", "LOC"), ("Acme", "ORG")]
        assert len({colour for _, _, colour in marks}) == 3  # one colour a type
        assert page.inner_text("#legend").split() == ["LOC", "ORG", "PER"]
        assert page.inner_text("#result").startswith("Anna Kowalski")
        shot = root / "page.png"
        page.locator("#result").screenshot(path=str(shot))
        # The highlight colours are really painted: PER's lavender (#aa9cfc) is on screen.
        pixels = list(Image.open(shot).convert("RGB").get_flattened_data())
        lavender = sum(1 for r, g, b in pixels if abs(r - 0xAA) < 6 and abs(g - 0x9C) < 6 and abs(b - 0xFC) < 6)
        assert lavender > 200, lavender
        # Errors are shown, not swallowed.
        page.fill("#text", "x" * 100_001)
        page.click("#run")
        page.wait_for_function("document.querySelector('#status').classList.contains('error')")
        assert "limit" in page.inner_text("#status")
        browser.close()


def test_page_names_the_model_shows_scores_and_hides_types(server):
    sync_api = pytest.importorskip("playwright.sync_api")

    url, root = server
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 390, "height": 800}, has_touch=True)  # a phone: no hovering
        page.goto(url + "/")
        page.wait_for_function("document.querySelector('#model').textContent.includes('version')")
        info = page.inner_text("#model")
        assert "model bner version 1" in info and "entity types LOC, ORG, PER" in info and "test F1" in info
        page.fill("#text", "Anna Kowalski visited Lisbon with Acme today .")
        page.click("#run")
        page.wait_for_selector("mark.entity")
        scores = page.eval_on_selector_all("mark.entity .score", "els => els.map(e => [e.textContent, e.offsetWidth > 0])")
        assert len(scores) == 3 and all(0 <= float(text) <= 1 and visible for text, visible in scores)
        page.locator("#legend button[data-type='PER']").tap()
        per = page.locator("mark.entity[data-type='PER']")
        assert "hidden" in per.get_attribute("class")
        assert per.evaluate("e => getComputedStyle(e).backgroundColor") == "rgba(0, 0, 0, 0)"
        assert page.locator("#legend button[data-type='PER']").get_attribute("aria-pressed") == "false"
        assert page.locator("mark.entity[data-type='LOC']").evaluate("e => getComputedStyle(e).backgroundColor") != "rgba(0, 0, 0, 0)"
        page.screenshot(path=str(root / "page_phone.png"), full_page=True)
        page.locator("#legend button[data-type='PER']").tap()
        assert "hidden" not in per.get_attribute("class")
        browser.close()


def test_api_docs_render_without_internet(server):
    """Swagger UI loads from the server itself: every other host is refused, and none is asked."""
    sync_api = pytest.importorskip("playwright.sync_api")

    url, root = server
    outside = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})

        def only_this_server(route):
            if route.request.url.startswith(url):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        page.route("**/*", only_this_server)
        page.goto(url + "/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=30_000)
        paths = page.eval_on_selector_all(".opblock-summary-path", "els => els.map(e => e.textContent)")
        assert "/api/ner/recognize" in paths and "/api/ner/model" in paths
        page.screenshot(path=str(root / "docs.png"))
        browser.close()
    assert outside == []
