"""Point every Colab badge and Colab install cell at the GitHub repository this checkout is
published as.

Where the repository lives is read from ``git remote get-url origin`` when that is a GitHub URL
(https or ssh), so that a fork's links open the fork; otherwise from pyproject.toml's
``[tool.reversenet] github = "owner/repo"``. The branch is always ``[tool.reversenet] branch``. This
script rewrites, in README.md and in every notebook:

- Colab badge links
  ``https://colab.research.google.com/github/<owner/repo>/blob/<branch>/notebooks/...``
- the install line of the notebooks' Colab cell ``git+https://github.com/<owner/repo>@<branch>``

Usage: ``python scripts/sync_links.py`` (rewrite) or ``--check`` (exit 1 and list the files that are
out of date; the test suite runs this). ``--check`` accepts links that all point at the origin's
repository or all at ``[tool.reversenet]``'s: a fresh clone of a fork passes before its links are
rewritten.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# character classes stop at whitespace, quotes, brackets and backslashes (JSON escapes in .ipynb)
COLAB_RE = re.compile(
    r"https://colab\.research\.google\.com/github/[^/\s)\\]+/[^/\s)\\]+/blob/[^/\s)\\]+/notebooks/"
)
GIT_RE = re.compile(r"git\+https://github\.com/[^/\s\"'\\]+/[^@\s\"'\\]+@[^\s\"'\\]+")


# https://github.com/owner/repo(.git), git@github.com:owner/repo(.git),
# ssh://git@github.com/owner/repo(.git)
GITHUB_URL_RE = re.compile(
    r"^(?:https://(?:[^@/]+@)?github\.com/|git@github\.com:|ssh://git@github\.com/)"
    r"(?P<slug>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+?)(?:\.git)?/?$"
)


def config(root: Path = ROOT) -> tuple[str, str]:
    """``(owner/repo, branch)`` from pyproject.toml's ``[tool.reversenet]`` table."""
    path = root / "pyproject.toml"
    try:
        table = tomllib.loads(path.read_text())["tool"]["reversenet"]
        return table["github"], table["branch"]
    except KeyError as missing:
        raise SystemExit(
            f'{path}: [tool.reversenet] lacks {missing}: give github = "owner/repo" and '
            f'branch = "main" (where README\'s Colab links point)'
        ) from None


def github_slug(url: str) -> str | None:
    """``owner/repo`` of a GitHub remote URL (https or ssh), else None."""
    found = GITHUB_URL_RE.match(url.strip())
    return found["slug"] if found else None


def origin_slug(root: Path = ROOT) -> str | None:
    """``owner/repo`` of ``git remote get-url origin`` when it is on GitHub; None without git,
    origin or GitHub."""
    try:
        url = subprocess.run(
            ["git", "-C", str(root), "remote", "get-url", "origin"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return github_slug(url)


def repo_config(root: Path = ROOT) -> tuple[str, str]:
    """``(owner/repo, branch)``: the origin's GitHub repository if there is one, else
    ``[tool.reversenet]``'s."""
    github, branch = config(root)
    return origin_slug(root) or github, branch


def colab_url(notebook: str, root: Path = ROOT, github: str | None = None) -> str:
    """The Colab URL that opens ``notebooks/<notebook>`` from GitHub (``github``: owner/repo,
    default the origin's)."""
    slug, branch = repo_config(root)
    github = github or slug
    return f"https://colab.research.google.com/github/{github}/blob/{branch}/notebooks/{notebook}"


def rewrite(text: str, github: str, branch: str) -> str:
    """``text`` with every Colab badge link and git install URL pointing at ``github@branch``."""
    text = COLAB_RE.sub(
        f"https://colab.research.google.com/github/{github}/blob/{branch}/notebooks/", text
    )
    return GIT_RE.sub(f"git+https://github.com/{github}@{branch}", text)


def targets(root: Path = ROOT) -> list[Path]:
    """README.md and every notebook."""
    return [root / "README.md", *sorted((root / "notebooks").glob("*.ipynb"))]


def stale_files(github: str, branch: str) -> list[Path]:
    """The files (relative to the root) whose links do not all point at ``github@branch``."""
    return [
        path.relative_to(ROOT)
        for path in targets()
        if rewrite(path.read_text(), github, branch) != path.read_text()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="only report files that are out of date"
    )
    args = parser.parse_args(argv)
    github, branch = repo_config()
    if args.check:
        fallback = config()[0]
        stale_for = {slug: stale_files(slug, branch) for slug in dict.fromkeys([github, fallback])}
        if all(stale_for.values()):
            print(
                f"Colab links out of date with {github}@{branch} (origin, else pyproject.toml "
                f"[tool.reversenet]): "
                f"{', '.join(map(str, stale_for[github]))}. Run `python scripts/sync_links.py`."
            )
            return 1
        return 0
    stale = stale_files(github, branch)
    for path in stale:
        (ROOT / path).write_text(rewrite((ROOT / path).read_text(), github, branch))
    for path in stale:
        print(f"updated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
