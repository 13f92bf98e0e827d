"""A person's path through the project: JupyterLab in a real browser, Run All, no errors (``make
test-browser``).

Starts JupyterLab on a free loopback port, opens a notebook in headless Chromium (Debian's
``/usr/bin/chromium``, driven by Playwright), runs every cell from the *Run* menu, waits until the
kernel has finished, saves the notebook and takes a screenshot. The test fails if any cell shows an
error, in the page or in the saved file.

The notebook runs on a copy, without its committed outputs, in a temporary project root
(``REVERSENET_ROOT``), so its figures and results never overwrite the committed ones and every
execution count on the page comes from this run; ``data/`` and ``artifacts/`` are shared with the
repository (links), so MNIST and trained checkpoints are reused. JupyterLab's settings live in a
temporary folder too: every cell rendered (no windowing, so the page shows all prompts), no news.

Settings (environment): ``BROWSER_NOTEBOOK`` (default ``03``), ``CHROMIUM`` (default
``/usr/bin/chromium``), ``BROWSER_SCREENSHOT`` (default ``artifacts/browser/<notebook>.png``).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers_browser import (
    REPO,
    chromium_page,
    free_port,
    lab_command,
    make_root,
    notebook_path,
    open_notebook,
    prompts,
    run_all,
    server,
)

pytestmark = pytest.mark.browser

NOTEBOOK_NUMBER = os.environ.get("BROWSER_NOTEBOOK", "03")
RUN_TIMEOUT_S = 900  # the whole notebook, from Run All to the last cell


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A JupyterLab server on 127.0.0.1 serving a temporary project root with a copy of the
    notebook."""
    book = notebook_path(NOTEBOOK_NUMBER)
    root = make_root(tmp_path_factory.mktemp("lab"), book)
    port, token = free_port(), "reversenet-browser-test"
    cmd, env = lab_command(root, port, token)
    url = f"http://127.0.0.1:{port}"
    with server(cmd, env, root / "lab.log", f"{url}/api/status?token={token}", timeout_s=90):
        nb = json.loads((root / "notebooks" / book.name).read_text())
        n_code = sum(c["cell_type"] == "code" for c in nb["cells"])
        yield {"url": url, "token": token, "root": root, "notebook": book.name, "n_code": n_code}


def test_run_all_cells_in_jupyterlab(lab: dict) -> None:
    stem = Path(lab["notebook"]).stem
    shot = Path(
        os.environ.get("BROWSER_SCREENSHOT", REPO / "artifacts" / "browser" / f"{stem}.png")
    )
    shot.parent.mkdir(parents=True, exist_ok=True)
    console: list[str] = []
    with chromium_page(console) as page:
        try:
            n_code = lab["n_code"]
            open_notebook(page, lab["url"], lab["token"], lab["notebook"], n_code)
            attempts = run_all(page)
            start = time.monotonic()
            while True:  # done when every code cell has a number and the kernel is idle again
                texts = prompts(page)
                numbered = sum(bool(re.fullmatch(r"\[\d+\]:", t)) for t in texts)
                idle = (
                    page.query_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']")
                    is not None
                )
                errors = page.query_selector_all(
                    ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] pre"
                )
                tracebacks = [
                    e.inner_text()
                    for e in errors
                    if "Traceback" in e.inner_text() or "Error" in e.inner_text()
                ]
                if (numbered == n_code and idle) or tracebacks:
                    break
                if (
                    idle
                    and "[*]:" not in texts
                    and numbered < n_code
                    and time.monotonic() - start > 30
                ):
                    raise AssertionError(f"the kernel went idle with cells left unrun: {texts}")
                assert time.monotonic() - start < RUN_TIMEOUT_S, (
                    f"still running after {RUN_TIMEOUT_S} s: {texts}"
                )
                time.sleep(1)
            seconds = time.monotonic() - start
            page.keyboard.press("Control+s")
            page.wait_for_function(
                "() => !document.title.startsWith('*') && !document.querySelector('.jp-mod-dirty')",
                timeout=30_000,
            )
            page.screenshot(path=str(shot), full_page=False)
        except Exception:
            failed = shot.with_name(f"{stem}-failure.png")
            page.screenshot(path=str(failed), full_page=False)
            shot.with_name(f"{stem}-console.log").write_text("\n".join(console) + "\n")
            print(
                f"browser test failed: screenshot {failed}, console log "
                f"{shot.with_name(stem + '-console.log')}, prompts {prompts(page)}",
                file=sys.stderr,
            )
            raise

    saved = json.loads((lab["root"] / "notebooks" / lab["notebook"]).read_text())
    saved_errors = [
        o
        for c in saved["cells"]
        if c["cell_type"] == "code"
        for o in c.get("outputs", [])
        if o["output_type"] == "error"
    ]
    print(
        f"{lab['notebook']}: {n_code} code cells run in JupyterLab (headless Chromium) in "
        f"{seconds:.0f} s (Run All clicked {attempts}x); screenshot {shot}"
    )
    assert not tracebacks, f"error output in the page:\n{tracebacks[0][-2000:]}"
    assert not saved_errors, (
        f"error output in the saved notebook: {saved_errors[0]['ename']}: "
        f"{saved_errors[0]['evalue']}"
    )
    assert numbered == n_code, f"not every cell ran: {texts}"
    assert all(c.get("execution_count") for c in saved["cells"] if c["cell_type"] == "code"), (
        "the saved notebook has unrun cells"
    )
