"""Reviewing in the MLflow UI, in a real browser: the address `make ui` prints opens on the
experiment's runs, with their datasets and source, and their chart of `val_bpc`; a training run's
page shows its description, source and commit, its datasets by digest, the machine its figures
came from, and its system metrics; the champion's version page explains the model with its
rendered model card. And the page `charlm serve` shows at its root writes the text as it is
generated, and says in words why a request is refused.

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

from charlm.data.report import DataReport
from charlm.evaluation.report import EvalReport
from charlm.registry.decision import Decision
from charlm.training.outputs import TrainSummary
from tests.helpers import (
    background_server,
    free_port,
    project_env,
    register_candidate,
    saved_candidate,
    workspace_store,
)

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
    expect.set_options(timeout=LOAD_MS)  # a page of a busy machine's UI may take seconds
    try:
        page.goto(ui_address)
        for run in ("lstm", "rnn", "comparison"):  # the runs table, not the GenAI overview
            expect(page.get_by_role("link", name=run, exact=True).first).to_be_visible()
        data = DataReport.read(tiny_pipeline / "metrics/data.json")
        train = f"train ({data.sha256('train')[:36]})"  # a dataset: the split and its digest
        expect(page.get_by_text(train).first).to_be_visible()  # the Dataset column
        expect(page.get_by_text("train.py").first).to_be_visible()  # the Source column
        page.screenshot(path=tmp_path / "runs.png", full_page=True)

        page.locator('label:has(input[name="runs-view-mode"][value="CHART"])').click()  # "Chart view"
        page.get_by_placeholder("Search metric charts").fill("val_bpc")
        expect(page.get_by_text("val_bpc", exact=True).first).to_be_visible()  # the chart's title
        page.screenshot(path=tmp_path / "chart.png", full_page=True)

        champion = Decision.read(tiny_pipeline / "metrics/register.json")
        report = EvalReport.read(tiny_pipeline / f"metrics/eval/{champion.candidate}.json")
        origin = ui_address.split("/#/")[0]
        experiment = ui_address.split("/experiments/")[1].split("?")[0]
        run_page = f"{origin}/#/experiments/{experiment}/runs/{report.mlflow_run_id}"
        page.goto(run_page)
        expect(page.get_by_text("Recipe", exact=False).first).to_be_visible()  # its description
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=tiny_pipeline, capture_output=True, text=True
        )
        expect(page.get_by_text(commit.stdout.strip()[:7]).first).to_be_visible()  # Source's commit
        for split in ("val", "test"):  # the held-out datasets beside `train`, folded as "+2"
            assert split in {
                i.dataset.name
                for i in workspace_store(tiny_pipeline).get_run(report.mlflow_run_id).inputs.dataset_inputs
            }
        expect(page.get_by_text(train).first).to_be_visible()
        summary = TrainSummary.read(tiny_pipeline / f"metrics/train/{champion.candidate}.json")
        expect(page.get_by_text(summary.processor).first).to_be_visible()  # the machine of the figures
        page.screenshot(path=tmp_path / "run.png", full_page=True)
        page.goto(f"{run_page}/system-metrics")
        expect(page.get_by_text("cpu_utilization_percentage").first).to_be_visible()  # a chart's title
        page.screenshot(path=tmp_path / "system_metrics.png", full_page=True)

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


def test_the_served_page_writes_as_the_model_generates_and_says_why_it_cannot(
    browser: Any, tmp_path: Path, mlflow_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from playwright.sync_api import expect

    register_candidate(mlflow_client, saved_candidate(tmp_path, 1, val_bpc=2.0), max_request_chars=1_000_000)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    port = free_port()
    cmd = ["charlm", "serve", "--model", "models:/charlm@champion", "--port", str(port), "--workers", "1"]
    # A 2 s timeout: the longest request below (a million model steps) could not be done in it on
    # any machine, and is refused at once.
    with background_server(
        cmd, tmp_path, f"http://127.0.0.1:{port}/ping", env={"MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT": "2"}
    ):
        page = browser.new_page()
        page.set_default_timeout(LOAD_MS)
        expect.set_options(timeout=LOAD_MS)
        try:
            page.goto(f"http://127.0.0.1:{port}/")
            page.fill("#prompt", "ab")
            page.fill("#length", "3000")
            page.fill("#seed", "7")
            page.click("#generate")
            # Part of the text is there while the rest is generated, then all of it.
            page.wait_for_function(
                "() => { const n = document.getElementById('text').textContent.length; return n > 2 && n < 3002; }"
            )
            expect(page.locator("#status")).to_have_text("done")
            assert len(page.locator("#text").text_content() or "") == 3002
            page.screenshot(path=tmp_path / "page.png", full_page=True)

            page.fill("#prompt", "xyz")  # characters the model never saw
            page.click("#generate")
            expect(page.locator("#status")).to_contain_text(
                "400: invalid request: prompt characters not in the model's vocabulary"
            )
            page.fill("#prompt", "ab")
            page.fill("#length", "999998")  # with the prompt, the request limit
            page.click("#generate")
            expect(page.locator("#status")).to_contain_text(
                re.compile(r"503: the worker is busy: .*\(try again in \d+ s\)")
            )
        except Exception:
            page.screenshot(path=tmp_path / "failure.png", full_page=True)
            raise
        finally:
            page.close()
