"""The explorer (notebook 08) in real clients: JupyterLab and the Voilà app (``make app``), in
headless Chromium.

Each test draws one stroke on the canvas with the mouse and asserts that the class probabilities and
the reconstructions changed and that no error appeared; screenshots to ``artifacts/browser/``. Every
wait is for a condition the page shows (cells numbered and the kernel idle, the status line's update
counter), never a fixed sleep. A module fixture first loads what the explorer needs
(``Explorer.load``: the targets and inverses notebooks 01-04 and 07 save, trained where missing), so
that both clients only load it.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers_browser import (
    REPO,
    SCREENSHOTS,
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

BOOK = notebook_path("08")
#: what notebook 08 loads, trained where missing (MNIST, as the explorer's defaults)
LOAD = (
    "from reversenet_utils.context import Context; from reversenet_utils.explore import Explorer; "
    "Explorer.load(Context('mnist'))"
)
RECONS_JS = "els => els.map(e => e.src || e.querySelector('img')?.src)"
RECONS_CHANGED_JS = """before => {
    const now = [...document.querySelectorAll('.rn-recon')]
        .map(e => e.src || e.querySelector('img')?.src);
    return now.filter((src, i) => src !== before[i]).length >= now.length / 2;
}"""
STATUS_JS = """n => [...document.querySelectorAll('.rn-status')]
    .some(e => e.textContent.includes(`update ${n}:`))"""


@pytest.fixture(scope="module")
def trained() -> None:
    """Load (training what is missing, as the notebook would) the targets and inverses the explorer
    shows."""
    env = {**os.environ, "TQDM_DISABLE": "1"}
    subprocess.run(
        [sys.executable, "-c", LOAD],
        env=env,
        cwd=REPO,
        check=True,
        timeout=1500,
    )


def _state(page) -> dict:
    return {
        "probs": page.eval_on_selector_all(".rn-probs", "els => els.map(e => e.textContent)"),
        "recons": page.eval_on_selector_all(".rn-recon", RECONS_JS),
        "errors": [
            t
            for t in page.eval_on_selector_all(
                ".rn-error", "els => els.map(e => e.textContent.trim())"
            )
            if t
        ],
    }


def _draw_and_check(page, shot: Path, console: list[str]) -> str:
    """Draw a stroke on the explorer's canvas; assert that the grid updated and nothing failed.
    Returns the status."""
    # the first digit's grid is on the page
    page.wait_for_function(STATUS_JS, arg=1, timeout=60_000)
    before = _state(page)
    assert before["probs"] and before["recons"], f"the explorer's grid is not on the page: {before}"
    canvas = page.locator(".rn-canvas").first
    canvas.scroll_into_view_if_needed()
    page.get_by_role(
        "button", name="clear"
    ).click()  # the explorer starts with test digit 0, a 7; draw a 0 instead
    box = canvas.bounding_box()
    circle = [
        (140 + 75 * math.sin(a), 140 - 100 * math.cos(a))
        for a in (i * 2 * math.pi / 24 for i in range(25))
    ]
    page.mouse.move(box["x"] + circle[0][0], box["y"] + circle[0][1])
    page.mouse.down()
    for x, y in circle[1:]:
        page.mouse.move(box["x"] + x, box["y"] + y)
    page.mouse.up()
    page.wait_for_function(STATUS_JS, arg=2, timeout=120_000)  # the stroke's grid was sent
    # its pictures are decoded asynchronously: wait until most reconstructions show new images
    page.wait_for_function(RECONS_CHANGED_JS, arg=before["recons"], timeout=30_000)
    after = _state(page)
    # the explorer at the top of the screenshot
    canvas.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.screenshot(path=str(shot), full_page=False)
    assert not after["errors"], f"the explorer showed an error: {after['errors']}"
    assert after["probs"] != before["probs"], (
        "the class probabilities did not change after the stroke"
    )
    changed = sum(a != b for a, b in zip(after["recons"], before["recons"]))
    assert changed >= len(after["recons"]) // 2, (
        f"only {changed} of {len(after['recons'])} reconstructions changed"
    )
    page_errors = [c for c in console if c.startswith("[pageerror]")]
    assert not page_errors, f"errors in the page: {page_errors[:3]}"
    return page.eval_on_selector(".rn-status", "e => e.textContent")


def test_draw_in_jupyterlab(trained: None, tmp_path: Path) -> None:
    root = make_root(tmp_path / "lab", BOOK)
    port, token = free_port(), "reversenet-browser-test"
    cmd, env = lab_command(root, port, token)
    url = f"http://127.0.0.1:{port}"
    n_code = sum(c["cell_type"] == "code" for c in json.loads(BOOK.read_text())["cells"])
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    console: list[str] = []
    with (
        server(cmd, env, root / "lab.log", f"{url}/api/status?token={token}", timeout_s=90),
        chromium_page(console) as page,
    ):
        try:
            open_notebook(page, url, token, BOOK.name, n_code)
            run_all(page)
            deadline = time.monotonic() + 600
            # every cell numbered and the kernel idle: the stroke's callback gets the kernel at once
            while True:
                texts = prompts(page)
                idle = (
                    page.query_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']")
                    is not None
                )
                if idle and sum(bool(re.fullmatch(r"\[\d+\]:", t)) for t in texts) == n_code:
                    break
                errors = [
                    e.inner_text()
                    for e in page.query_selector_all(
                        ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] pre"
                    )
                    if "Traceback" in e.inner_text()
                ]
                assert not errors, f"a cell failed:\n{errors[0][-2000:]}"
                assert time.monotonic() < deadline, f"the notebook did not finish in 600 s: {texts}"
                # polling interval between checks of the page, not a wait for an outcome
                page.wait_for_timeout(500)
            status = _draw_and_check(page, SCREENSHOTS / "08_explore_lab.png", console)
        except Exception:
            page.screenshot(path=str(SCREENSHOTS / "08_explore_lab-failure.png"), full_page=False)
            (SCREENSHOTS / "08_explore_lab-console.log").write_text("\n".join(console) + "\n")
            raise
    print(f"JupyterLab: a stroke on the canvas updated the grid ({status})")


def test_draw_in_the_app(trained: None, tmp_path: Path) -> None:
    port = free_port()
    app_root = tmp_path / "app"
    env = {**os.environ, "TQDM_DISABLE": "1", "REVERSENET_NO_DOWNLOAD": "1"}
    env.pop("REVERSENET_BATCH", None)
    cmd = ["make", "--no-print-directory", "app", f"APP_PORT={port}", f"APP_ROOT={app_root}"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    console: list[str] = []
    with (
        server(
            cmd, env, tmp_path / "app.log", f"http://127.0.0.1:{port}/voila/static/", timeout_s=180
        ),
        chromium_page(console) as page,
    ):
        try:
            page.goto(f"http://127.0.0.1:{port}/", timeout=600_000, wait_until="commit")
            # Voilà runs the whole notebook first
            page.wait_for_selector(".rn-canvas", timeout=600_000)
            status = _draw_and_check(page, SCREENSHOTS / "08_explore_app.png", console)
            traces = [
                t
                for t in page.eval_on_selector_all(
                    ".jp-OutputArea-output", "els => els.map(e => e.textContent)"
                )
                if "Traceback" in t
            ]
            assert not traces, f"a cell failed in the app:\n{traces[0][-2000:]}"
        except Exception:
            page.screenshot(path=str(SCREENSHOTS / "08_explore_app-failure.png"), full_page=False)
            (SCREENSHOTS / "08_explore_app-console.log").write_text("\n".join(console) + "\n")
            raise
    log = (tmp_path / "app.log").read_text()
    assert f"http://127.0.0.1:{port}/" in log, f"make app did not print its URL:\n{log[-1500:]}"
    print(f"make app (Voilà): a stroke on the canvas updated the grid ({status})")
