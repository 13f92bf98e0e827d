"""What the browser tests share: Chromium, free loopback ports, temporary project roots, servers
that start. (A plain module, imported by the tests: ``tests/conftest.py`` already holds the name
``conftest``.)

Every server serves a temporary project root (``REVERSENET_ROOT``) holding copies of notebooks
without their committed outputs; ``data/`` and ``artifacts/`` are links to the repository's, so
MNIST and trained checkpoints are reused and nothing of the checkout is written. Screenshots go to
``artifacts/browser/``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# as on this machine's closed network: no background connections, no first-run or update checks
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = REPO / "artifacts" / "browser"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def notebook_path(number: str) -> Path:
    books = sorted((REPO / "notebooks").glob(f"{number.zfill(2)}_*.ipynb"))
    if not books:
        raise ValueError(f"notebook {number!r}: no such notebook in notebooks/")
    return books[0]


def make_root(root: Path, *books: Path) -> Path:
    """A project root with output-free copies of ``books`` in ``notebooks/`` and ``data/``,
    ``artifacts/`` linked."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"No Chromium at {CHROMIUM}: run `make test-browser` (installs Debian's chromium) or "
            f"set CHROMIUM."
        )
    (root / "notebooks").mkdir(parents=True)
    for book in books:
        nb = json.loads(book.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                cell["outputs"], cell["execution_count"] = [], None
        (root / "notebooks" / book.name).write_text(json.dumps(nb))
    for shared in ("data", "artifacts"):
        (REPO / shared).mkdir(exist_ok=True)
        (root / shared).symlink_to(REPO / shared)
    return root


@contextmanager
def server(
    cmd: list[str], env: dict, log_path: Path, ready_url: str, timeout_s: float = 120
) -> Iterator[subprocess.Popen]:
    """Start ``cmd`` (in its own process group), wait until ``ready_url`` answers (any HTTP status),
    stop the whole group after (``make app`` runs Voilà as a child)."""
    log = log_path.open("w")
    proc = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO
    )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                urllib.request.urlopen(ready_url, timeout=2)
                break
            # it answered (a 404 of a cheap URL will do): the server is up
            except urllib.error.HTTPError:
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"{' '.join(cmd[:4])} did not start "
                        f"({ready_url}):\n{log_path.read_text()[-3000:]}"
                    )
                time.sleep(0.5)
        yield proc
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()


def lab_command(root: Path, port: int, token: str) -> tuple[list[str], dict]:
    """JupyterLab on 127.0.0.1 serving ``root``, with its settings in a temporary folder (every
    cell rendered, no news)."""
    import sys

    settings = root / "lab-settings"
    for plugin, values in (
        ("notebook-extension/tracker", {"windowingMode": "none"}),
        ("apputils-extension/notification", {"fetchNews": "false"}),
    ):
        path = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = {
        **os.environ,
        "REVERSENET_ROOT": str(root),
        "TQDM_DISABLE": "1",
        "REVERSENET_NO_DOWNLOAD": "1",
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
    }
    env.pop("REVERSENET_BATCH", None)  # a browser is a widget front end
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    return cmd, env


@contextmanager
def chromium_page(console: list[str]):
    """A headless Chromium page (1400 x 1000) whose console messages and page errors land in
    ``console``."""
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda msg: console.append(f"[{msg.type}] {msg.text}"))
        page.on("pageerror", lambda exc: console.append(f"[pageerror] {exc}"))
        try:
            yield page
        finally:
            browser.close()


def prompts(page) -> list[str]:
    """The execution prompts of all code cells, e.g. ['[1]:', '[*]:', '[ ]:']."""
    return page.eval_on_selector_all(
        ".jp-CodeCell .jp-InputArea-prompt", "els => els.map(e => e.textContent.trim())"
    )


def _started(texts: list[str]) -> bool:
    """True once any cell is running or has run (a prompt other than '[ ]:')."""
    return any(t not in ("[ ]:", "") for t in texts)


#: the notebook is the current widget, with its cells, and its kernel is connected and idle: what
#: Run All needs
READY_JS = """() => {
    const panel = document.querySelector(
        '.jp-NotebookPanel.jp-mod-current, .jp-NotebookPanel:not(.lm-mod-hidden)');
    const idle = document.querySelector(".jp-Notebook-ExecutionIndicator[data-status='idle']");
    return Boolean(panel && idle && panel.querySelector('.jp-Notebook .jp-CodeCell'));
}"""


def run_all(page, attempts: int = 3, start_timeout_s: float = 10.0) -> int:
    """Click Run > Run All Cells until execution visibly starts (a prompt leaves '[ ]:'); return
    the attempts used.

    Right after JupyterLab opens, the click can land before the notebook is the active, kernel-ready
    widget and do nothing; so check that execution started within a few seconds and click again if
    not.
    """
    for attempt in range(1, attempts + 1):
        page.wait_for_function(READY_JS, timeout=90_000)
        # focus the notebook: its commands are the active ones
        page.click(".jp-Notebook .jp-CodeCell .jp-InputArea-editor")
        page.click(".lm-MenuBar-itemLabel:text-is('Run')")
        page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")
        deadline = time.monotonic() + start_timeout_s
        while time.monotonic() < deadline:
            if _started(prompts(page)):
                return attempt
            time.sleep(0.25)
        page.keyboard.press("Escape")  # close the menu if it is still open, then try again
    raise AssertionError(
        f"Run All Cells did not start execution after {attempts} attempts; prompts "
        f"{prompts(page)[:5]}"
    )


def open_notebook(page, url: str, token: str, name: str, n_code: int) -> None:
    """Open ``notebooks/<name>`` in JupyterLab and wait until every code cell is rendered."""
    page.goto(f"{url}/lab/tree/notebooks/{name}?token={token}")
    page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=90_000)
    page.wait_for_function(
        f"document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt').length === {n_code}",
        timeout=60_000,
    )
