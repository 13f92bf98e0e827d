"""Point every Colab badge and Colab install cell at the repository named in pyproject.toml.

``[tool.reversenet] github = "owner/repo"`` and ``branch`` are the one place that says where the
repository lives. This script rewrites, in README.md and in every notebook:

- Colab badge links ``https://colab.research.google.com/github/<owner/repo>/blob/<branch>/notebooks/...``
- the install line of the notebooks' Colab cell ``git+https://github.com/<owner/repo>@<branch>``

Usage: ``python scripts/sync_links.py`` (rewrite) or ``--check`` (exit 1 and list the files that
are out of date; the test suite runs this).
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# character classes stop at whitespace, quotes, brackets and backslashes (JSON escapes in .ipynb)
COLAB_RE = re.compile(r"https://colab\.research\.google\.com/github/[^/\s)\\]+/[^/\s)\\]+/blob/[^/\s)\\]+/notebooks/")
GIT_RE = re.compile(r"git\+https://github\.com/[^/\s\"'\\]+/[^@\s\"'\\]+@[^\s\"'\\]+")


def repo_config(root: Path = ROOT) -> tuple[str, str]:
    """``(owner/repo, branch)`` from pyproject.toml's ``[tool.reversenet]`` table."""
    table = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["reversenet"]
    return table["github"], table["branch"]


def colab_url(notebook: str, root: Path = ROOT) -> str:
    """The Colab URL that opens ``notebooks/<notebook>`` from GitHub."""
    github, branch = repo_config(root)
    return f"https://colab.research.google.com/github/{github}/blob/{branch}/notebooks/{notebook}"


def rewrite(text: str, github: str, branch: str) -> str:
    """``text`` with every Colab badge link and git install URL pointing at ``github@branch``."""
    text = COLAB_RE.sub(f"https://colab.research.google.com/github/{github}/blob/{branch}/notebooks/", text)
    return GIT_RE.sub(f"git+https://github.com/{github}@{branch}", text)


def targets(root: Path = ROOT) -> list[Path]:
    """README.md and every notebook."""
    return [root / "README.md", *sorted((root / "notebooks").glob("*.ipynb"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report files that are out of date")
    args = parser.parse_args(argv)
    github, branch = repo_config()
    stale = []
    for path in targets():
        text = path.read_text()
        new = rewrite(text, github, branch)
        if new != text:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print(f"Out of date with pyproject.toml [tool.reversenet]: {', '.join(map(str, stale))}. "
              f"Run `python scripts/sync_links.py`.")
        return 1
    for path in stale:
        print(f"updated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
