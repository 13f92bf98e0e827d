"""A person's path through the project: JupyterLab in a real browser, Run All, no errors (``make test-browser``).

Starts JupyterLab on a free loopback port, opens a notebook in headless Chromium (Debian's
``/usr/bin/chromium``, driven by Playwright), runs every cell from the *Run* menu, waits until the
kernel has finished, saves the notebook and takes a screenshot. The test fails if any cell shows an
error, in the page or in the saved file.

The notebook runs on a copy, without its committed outputs, in a temporary project root
(``REVERSENET_ROOT``), so its figures and results never overwrite the committed ones and every
execution count on the page comes from this run; ``data/`` and ``artifacts/`` are shared with the
repository (links), so MNIST and trained checkpoints are reused. JupyterLab's settings live in a
temporary folder too: every cell rendered (no windowing, so the page shows all prompts), no news.

Settings (environment): ``BROWSER_NOTEBOOK`` (default ``02``), ``CHROMIUM`` (default
``/usr/bin/chromium``), ``BROWSER_SCREENSHOT`` (default ``artifacts/browser/<notebook>.png``).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
NOTEBOOK_NUMBER = os.environ.get("BROWSER_NOTEBOOK", "02")
# as on this machine's closed network: no background connections, no first-run or update checks
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
RUN_TIMEOUT_S = 900  # the whole notebook, from Run All to the last cell


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _notebook() -> Path:
    books = sorted((REPO / "notebooks").glob(f"{NOTEBOOK_NUMBER.zfill(2)}_*.ipynb"))
    if not books:
        raise ValueError(f"BROWSER_NOTEBOOK={NOTEBOOK_NUMBER!r} names no notebook in notebooks/")
    return books[0]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A JupyterLab server on 127.0.0.1 serving a temporary project root with a copy of the notebook."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"No Chromium at {CHROMIUM}: run `make test-browser` (installs Debian's chromium) or set CHROMIUM.")
    root = tmp_path_factory.mktemp("lab")
    (root / "notebooks").mkdir()
    book = _notebook()
    nb = json.loads(book.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    (root / "notebooks" / book.name).write_text(json.dumps(nb))
    settings = root / "lab-settings"
    for plugin, values in (("notebook-extension/tracker", {"windowingMode": "none"}),
                           ("apputils-extension/notification", {"fetchNews": "false"})):
        path = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    for shared in ("data", "artifacts"):
        (REPO / shared).mkdir(exist_ok=True)
        (root / shared).symlink_to(REPO / shared)
    port, token = _free_port(), "reversenet-browser-test"
    env = {**os.environ, "REVERSENET_ROOT": str(root), "TQDM_DISABLE": "1", "REVERSENET_NO_DOWNLOAD": "1",
           "JUPYTERLAB_SETTINGS_DIR": str(settings)}
    log = (root / "lab.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start on port {port}:\n{(root / 'lab.log').read_text()[-3000:]}")
                time.sleep(0.5)
        n_code = sum(c["cell_type"] == "code" for c in nb["cells"])
        yield {"url": url, "token": token, "root": root, "notebook": book.name, "n_code": n_code}
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _prompts(page) -> list[str]:
    """The execution prompts of all code cells, e.g. ['[1]:', '[*]:', '[ ]:']."""
    return page.eval_on_selector_all(".jp-CodeCell .jp-InputArea-prompt", "els => els.map(e => e.textContent.trim())")


def _started(prompts: list[str]) -> bool:
    """True once any cell is running or has run (a prompt other than '[ ]:')."""
    return any(t not in ("[ ]:", "") for t in prompts)


#: the notebook is the current widget, with its cells, and its kernel is connected and idle: what Run All needs
READY_JS = """() => {
    const panel = document.querySelector('.jp-NotebookPanel.jp-mod-current, .jp-NotebookPanel:not(.lm-mod-hidden)');
    const idle = document.querySelector(".jp-Notebook-ExecutionIndicator[data-status='idle']");
    return Boolean(panel && idle && panel.querySelector('.jp-Notebook .jp-CodeCell'));
}"""


def _run_all(page, attempts: int = 3, start_timeout_s: float = 10.0) -> int:
    """Click Run > Run All Cells until execution visibly starts (a prompt leaves '[ ]:'); return the attempts used.

    Right after JupyterLab opens, the click can land before the notebook is the active, kernel-ready
    widget and do nothing; so check that execution started within a few seconds and click again if not.
    """
    for attempt in range(1, attempts + 1):
        page.wait_for_function(READY_JS, timeout=90_000)
        page.click(".jp-Notebook .jp-CodeCell .jp-InputArea-editor")  # focus the notebook: its commands are the active ones
        page.click(".lm-MenuBar-itemLabel:text-is('Run')")
        page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")
        deadline = time.monotonic() + start_timeout_s
        while time.monotonic() < deadline:
            if _started(_prompts(page)):
                return attempt
            time.sleep(0.25)
        page.keyboard.press("Escape")  # close the menu if it is still open, then try again
    raise AssertionError(f"Run All Cells did not start execution after {attempts} attempts; prompts {_prompts(page)[:5]}")


def test_run_all_cells_in_jupyterlab(lab: dict) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    stem = Path(lab["notebook"]).stem
    shot = Path(os.environ.get("BROWSER_SCREENSHOT", REPO / "artifacts" / "browser" / f"{stem}.png"))
    shot.parent.mkdir(parents=True, exist_ok=True)
    console: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda msg: console.append(f"[{msg.type}] {msg.text}"))
        page.on("pageerror", lambda exc: console.append(f"[pageerror] {exc}"))
        try:
            page.goto(f"{lab['url']}/lab/tree/notebooks/{lab['notebook']}?token={lab['token']}")
            page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=90_000)
            n_code = lab["n_code"]  # every code cell rendered (the notebook renders progressively)
            page.wait_for_function(f"document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt').length === {n_code}",
                                   timeout=60_000)
            attempts = _run_all(page)
            start = time.monotonic()
            while True:  # done when every code cell has a number and the kernel is idle again
                prompts = _prompts(page)
                numbered = sum(bool(re.fullmatch(r"\[\d+\]:", t)) for t in prompts)
                idle = page.query_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']") is not None
                errors = page.query_selector_all(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] pre")
                tracebacks = [e.inner_text() for e in errors if "Traceback" in e.inner_text() or "Error" in e.inner_text()]
                if (numbered == n_code and idle) or tracebacks:
                    break
                if idle and "[*]:" not in prompts and numbered < n_code and time.monotonic() - start > 30:
                    raise AssertionError(f"the kernel went idle with cells left unrun: {prompts}")
                assert time.monotonic() - start < RUN_TIMEOUT_S, f"still running after {RUN_TIMEOUT_S} s: {prompts}"
                time.sleep(1)
            seconds = time.monotonic() - start
            page.keyboard.press("Control+s")
            page.wait_for_function("() => !document.title.startsWith('*') && !document.querySelector('.jp-mod-dirty')",
                                   timeout=30_000)
            page.screenshot(path=str(shot), full_page=False)
        except Exception:
            failed = shot.with_name(f"{stem}-failure.png")
            page.screenshot(path=str(failed), full_page=False)
            shot.with_name(f"{stem}-console.log").write_text("\n".join(console) + "\n")
            print(f"browser test failed: screenshot {failed}, console log {shot.with_name(stem + '-console.log')}, "
                  f"prompts {_prompts(page)}", file=sys.stderr)
            raise
        finally:
            browser.close()

    saved = json.loads((lab["root"] / "notebooks" / lab["notebook"]).read_text())
    saved_errors = [o for c in saved["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []) if o["output_type"] == "error"]
    print(f"{lab['notebook']}: {n_code} code cells run in JupyterLab (headless Chromium) in {seconds:.0f} s "
          f"(Run All clicked {attempts}x); screenshot {shot}")
    assert not tracebacks, f"error output in the page:\n{tracebacks[0][-2000:]}"
    assert not saved_errors, f"error output in the saved notebook: {saved_errors[0]['ename']}: {saved_errors[0]['evalue']}"
    assert numbered == n_code, f"not every cell ran: {prompts}"
    assert all(c.get("execution_count") for c in saved["cells"] if c["cell_type"] == "code"), "the saved notebook has unrun cells"
