"""The monitor notebook in a real browser: JupyterLab on loopback, Debian's Chromium driven by Playwright.

It runs ``monitor.ipynb`` against the sandbox while a replay is in progress, and checks that the widget
panel renders and updates live, that the run ends Complete, and that no cell errors; that the panel stays
on top of its cell with the launcher's log collapsed below it (and opening when clicked), and that no label
is cut. Screenshots are saved to ``test-artifacts/monitor-jupyterlab.png`` (log closed) and
``test-artifacts/monitor-jupyterlab-log-open.png``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from helpers import REPO

import recipelib
from recipelib.sandbox.gcs import free_port
from recipelib.settings import save_settings

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts"

KERNEL_READY = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const ctx = w && w.sessionContext;
  const k = ctx && ctx.isReady && ctx.session && ctx.session.kernel;
  return !!k && k.connectionStatus === 'connected' && k.status === 'idle';
}"""
ERRORS = """() => {
  const cells = window.jupyterapp.shell.currentWidget.content.model.cells, errors = [];
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    if (cell.type !== 'code') continue;
    for (let j = 0; j < cell.outputs.length; j++) {
      const out = cell.outputs.get(j).toJSON();
      if (out.output_type === 'error') errors.push(out.ename + ': ' + out.evalue);
    }
  }
  return errors;
}"""


PANEL_SAYS = """() => { const p = document.querySelector('.recipelib-monitor');
  return !!p && p.innerText.includes('%s'); }"""
# Where the panel, the log and the cell's printed text are, and whether any text in the panel is cut.
LAYOUT = """() => {
  const box = e => { const r = e.getBoundingClientRect(); return {top: r.top, bottom: r.bottom, height: r.height}; };
  const panel = document.querySelector('.recipelib-monitor'), log = document.querySelector('.recipelib-log');
  const area = panel.closest('.jp-OutputArea');
  const printed = [...area.querySelectorAll('.jp-RenderedText')].filter(e => e.innerText.trim()).map(box);
  const pre = log.querySelector('pre');
  const cut = [...panel.querySelectorAll('.widget-html-content, .widget-label')]
    .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1).map(e => e.innerText);
  const label = panel.querySelector('.recipelib-label .widget-html-content');
  return {panel: box(panel), log: box(log), printed: printed, cut: cut,
          logVisible: !!pre && pre.offsetParent !== null && pre.getBoundingClientRect().height > 0,
          label: label.innerText, labelWhole: label.scrollWidth <= label.clientWidth + 1 && label.clientWidth > 0,
          count: panel.querySelector('.recipelib-count').innerText};
}"""


def until(page, js: str, seconds: float, what: str) -> None:
    """Poll from Python: Playwright's own waits poll on animation frames, which a busy headless page skips."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if page.evaluate(js):
            return
        time.sleep(0.5)
    page.screenshot(path=str(ARTIFACTS / "monitor-jupyterlab-timeout.png"), full_page=True)
    raise AssertionError(f"timed out after {seconds:.0f}s waiting for {what}")


@pytest.fixture
def lab(tmp_path, sandbox, ns):
    """JupyterLab serving a copy of the notebooks, its kernels pointed at the sandbox's namespace."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: apt-get install chromium (Debian); .ci/run installs it")
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(REPO / "notebooks" / "monitor.ipynb", work / "monitor.ipynb")
    settings_file = save_settings(sandbox.settings(namespace=ns.namespace), tmp_path / "settings.yaml")
    user_settings = tmp_path / "lab-settings" / "@jupyterlab" / "apputils-extension"
    user_settings.mkdir(parents=True)
    (user_settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    # every cell attached to the page: JupyterLab 4 otherwise leaves cells out of view unrendered
    notebook_settings = tmp_path / "lab-settings" / "@jupyterlab" / "notebook-extension"
    notebook_settings.mkdir(parents=True)
    (notebook_settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "RECIPELIB_SETTINGS": str(settings_file),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"), "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg")}
    log = open(tmp_path / "jupyterlab.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--port={port}", "--ip=127.0.0.1",
         f"--ServerApp.token={token}", f"--ServerApp.root_dir={work}", "--ServerApp.port_retries=0",
         "--LabApp.expose_app_in_browser=True"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2):
                break
        except OSError:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited: {(tmp_path / 'jupyterlab.log').read_text()[-2000:]}")
            time.sleep(0.3)
    yield f"http://127.0.0.1:{port}/lab/tree/monitor.ipynb?token={token}"
    server.terminate()
    server.wait(timeout=20)
    log.close()


def test_monitor_notebook_panel_renders_and_updates_live(lab, sandbox, ns):
    from playwright.sync_api import sync_playwright

    sandbox.clear_local_ssd()  # a fresh node, so the run has a build phase to show
    sandbox.set_controls(replay_speed=5.0)  # slow until the panel shows, then fast: it must move on its own
    plan = recipelib.plan_benchmark(sandbox.settings(namespace=ns.namespace), "meta-llama/Llama-3.1-405B",
                                    user="browser", run_id=f"ui-{uuid.uuid4().hex[:8]}")
    recipelib.deploy(plan, ns)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 2200})
        page.goto(lab)
        until(page, KERNEL_READY, 90, "the kernel to be ready")
        # not awaited: the command's promise resolves only when the monitor cell ends with the run
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); return true; }")
        until(page, PANEL_SAYS % "build", 120, "the panel to show the launcher's build")
        panel = page.query_selector(".recipelib-monitor")
        sandbox.set_controls(replay_speed=400.0)
        headers, bars = [], []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            text = panel.inner_text()
            if not headers or headers[-1] != text:
                headers.append(text)
            bars.append(page.evaluate(
                "() => { const b = document.querySelector('.recipelib-monitor .progress-bar');"
                " return b ? b.style.width : null; }"))
            if "Complete" in text.splitlines()[0]:
                break
            time.sleep(0.5)
        until(page, KERNEL_READY, 60, "the kernel to be idle again")
        page.screenshot(path=str(ARTIFACTS / "monitor-jupyterlab.png"), full_page=True)
        closed = page.evaluate(LAYOUT)
        page.click(".recipelib-log .jupyter-widget-Collapse-header")  # open the log
        until(page, "() => { const p = document.querySelector('.recipelib-log pre');"
                    " return !!p && p.getBoundingClientRect().height > 0; }", 20, "the log to open")
        opened = page.evaluate(LAYOUT)
        log_text = page.inner_text(".recipelib-log pre")
        page.screenshot(path=str(ARTIFACTS / "monitor-jupyterlab-log-open.png"), full_page=True)
        errors = page.evaluate(ERRORS)
        browser.close()
    assert errors == []
    assert "Complete" in headers[-1].splitlines()[0], headers[-1]
    assert len(headers) >= 3, headers  # the panel changed while the run went on, not only at the end
    assert any("build" in h or "download" in h for h in headers[:-1])
    assert bars[-1] == "100%" and bars[0] != "100%"
    assert plan.release in headers[-1]
    # the panel stays on top: above the collapsed log and above everything the cell prints
    assert closed["panel"]["bottom"] <= closed["log"]["top"] + 1, closed
    assert closed["printed"] and all(closed["panel"]["bottom"] <= p["top"] + 1 for p in closed["printed"]), closed
    assert not closed["logVisible"] and opened["logVisible"]
    assert opened["panel"] == closed["panel"]  # opening the log moves nothing above it
    assert "RECIPE_EVENT" not in log_text and "build finished" in log_text  # as a sentence, not a raw event
    # labels whole: "experiments", not "experime..."
    assert closed["label"] == "experiments" and closed["labelWhole"], closed
    assert closed["count"] == "1/1 done" and closed["cut"] == [], closed
