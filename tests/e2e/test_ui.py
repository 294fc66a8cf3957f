"""Reviewing in the MLflow UI, in a real browser: the address `make ui` prints opens on the
experiment's runs and their chart of `val_bpc`, and the champion's version page explains the model
with its rendered model card.

Drives Debian's Chromium headless through Playwright; nothing is downloaded at run time. Without
the browser the test is skipped, naming the package to install.
"""

import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from charlm.evaluation.report import EvalReport
from charlm.registry.decision import Decision
from tests.helpers import free_port, project_env

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium")  # Debian's package; the test downloads no browser
# Headless as root, and quiet: the machine's network is closed to everything but loopback.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOAD_MS = 60_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("needs Chromium on the PATH: install Debian's package (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def ui_address(tiny_pipeline: Path) -> Iterator[str]:
    """`charlm ui` (what `make ui` runs) on the tiny pipeline's store: the address it prints."""
    port = free_port()
    env = project_env()
    env.pop("MLFLOW_TRACKING_URI", None)
    ui = subprocess.Popen(
        ["charlm", "ui", "--port", str(port)],
        cwd=tiny_pipeline,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert ui.stdout is not None
        address = ui.stdout.readline().removeprefix("MLflow UI: ").strip()
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                assert ui.poll() is None and time.monotonic() < deadline, "mlflow ui did not start"
                time.sleep(0.5)
        yield address
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)


def test_a_reviewer_lands_on_the_runs_and_the_registry_page_explains_the_model(
    tiny_pipeline: Path, browser: Any, ui_address: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.set_default_timeout(LOAD_MS)
    try:
        page.goto(ui_address)
        for run in ("lstm", "rnn", "comparison"):  # the runs table, not the GenAI overview
            expect(page.get_by_role("link", name=run, exact=True).first).to_be_visible()
        page.screenshot(path=tmp_path / "runs.png", full_page=True)

        page.locator('label:has(input[name="runs-view-mode"][value="CHART"])').click()  # "Chart view"
        page.get_by_placeholder("Search metric charts").fill("val_bpc")
        expect(page.get_by_text("val_bpc", exact=True).first).to_be_visible()  # the chart's title
        page.screenshot(path=tmp_path / "chart.png", full_page=True)

        champion = Decision.read(tiny_pipeline / "metrics/register.json")
        report = EvalReport.read(tiny_pipeline / f"metrics/eval/{champion.candidate}.json")
        origin = ui_address.split("/#/")[0]
        page.goto(f"{origin}/#/models/{champion.registered_model}/versions/{champion.version}")
        heading = page.get_by_role("heading", name="Bits per character (lower is better)")
        expect(heading).to_be_visible()  # rendered markdown, not "## Bits per character"
        row = page.get_by_role("row", name=re.compile("this model"))
        expect(row).to_contain_text(f"{report.val.bpc:.4f}")
        expect(row).to_contain_text(f"{report.test.bpc:.4f}")
        expect(page.get_by_text("## Bits per character")).to_have_count(0)
        page.screenshot(path=tmp_path / "model_version.png", full_page=True)
    except Exception:
        page.screenshot(path=tmp_path / "failure.png", full_page=True)
        raise
    finally:
        page.close()
