"""Write README's notebook table and results section from ``results/*.json`` (``make readme``).

README.md holds two generated blocks, each between marker comments:

- ``notebooks``: every notebook with its Colab badge, its one-line finding (numbers read from its
  results file) and its runtime;
- ``results``: notebook 07's benchmark, every method side by side, and the gallery images;
- ``privacy``: notebook 09's one-page answer on each dataset
  (``claims.privacy.privacy_answer``): what a split-computing server recovers from each split, and
  the cheapest defence that stops an adaptive attacker;
- ``generalise``: each notebook's key claims on MNIST and on Fashion-MNIST side by side
  (``results/`` and ``results/fashion_mnist/``), with the intervals of the rows that carry claims
  and one sentence each saying where the claim holds, computed from the same test the notebook's
  claim rests on.

Everything between the markers is rewritten; the text around them is left alone. ``--check`` only
reports whether README is up to date with the JSON (exit 1 if not; the test suite runs it), so a
number in README is always the number a notebook computed. ``make run`` calls this script last.

A results file that cannot be read (malformed or truncated JSON), lacks a key the README reads, or
holds a number that is not finite is an error that names the file and what is wrong (exit 2): README
never publishes ``nan%`` or a placeholder.

The one-line findings are also the key metric of ``make run``'s closing table
(``run_notebooks.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import sys
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

# sibling scripts, also when loaded by a test
sys.path.insert(0, str(Path(__file__).resolve().parent))
from sync_links import colab_url, config  # noqa: E402

from reversenet_utils import he_lenet  # noqa: E402
from reversenet_utils.claims import Claim  # noqa: E402
from reversenet_utils.claims import benchmark as benchmark_claims  # noqa: E402
from reversenet_utils.claims import decoder_inversion as decoder_inversion_claims  # noqa: E402
from reversenet_utils.claims import explore as explore_claims  # noqa: E402
from reversenet_utils.claims import featureviz as featureviz_claims  # noqa: E402
from reversenet_utils.claims import inverse_weights as inverse_weights_claims  # noqa: E402
from reversenet_utils.claims import privacy as privacy_claims  # noqa: E402
from reversenet_utils.claims import pseudo_inverse as pseudo_inverse_claims  # noqa: E402
from reversenet_utils.claims import targets as targets_claims  # noqa: E402
from reversenet_utils.claims import zero_shot  # noqa: E402
from reversenet_utils.data import SPECS  # noqa: E402
from reversenet_utils.defences import FEATURE_DEFENCES, TRAINING_DEFENCES  # noqa: E402
from reversenet_utils.labels import METHOD_ORDER, THREATS  # noqa: E402
from reversenet_utils.thresholds import (  # noqa: E402
    ENCODER_MATCH_DB,
    EXACT_MAX_ABS_ERR,
    NAIVE_FAILURE_DB,
    ZERO_SHOT_GAP_DB,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
README = ROOT / "README.md"
BADGE = "https://colab.research.google.com/assets/colab-badge.svg"


class ResultsError(ValueError):
    """A results file is unreadable, lacks what README reads, or holds a non-finite number."""


#: notebook number -> (title, one-line finding from its metrics). Only the keys docs/design.md
#: fixes are read.
FINDINGS: dict[str, tuple[str, Callable[[dict], str]]] = {
    "01": ("Training the targets", targets_claims.headline),
    "02": ("Analytic inversion", pseudo_inverse_claims.headline),
    "03": ("Learned inverse weights", inverse_weights_claims.headline),
    "04": ("Zero-shot progressive inversion", zero_shot.headline),
    "05": ("VAE decoder inversion", decoder_inversion_claims.headline),
    "06": ("Feature visualisation", featureviz_claims.headline),
    "07": ("Every method side by side", benchmark_claims.headline),
    "08": ("Explore: draw a digit", explore_claims.headline),
    "09": ("Split computing under attack", privacy_claims.headline),
}


def notebooks() -> list[Path]:
    """The numbered notebooks, in order."""
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _reject_nonfinite(value: object, path: Path, where: str = "") -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _reject_nonfinite(v, path, f"{where}.{k}" if where else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _reject_nonfinite(v, path, f"{where}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ResultsError(
            f"{path}: {where} is {value}; re-run the notebook (`make run NB={path.stem[:2]}`)"
        )


@contextlib.contextmanager
def reading(*paths: Path):
    """Turn a missing key, row or wrong type met while a section reads ``paths`` into a
    :class:`ResultsError` that names those files and what was missing."""
    try:
        yield
    except ResultsError:
        raise
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        what = (
            f"key {exc.args[0]!r}"
            if isinstance(exc, KeyError) and exc.args
            else f"{type(exc).__name__}: {exc}"
        )
        raise ResultsError(
            f"{', '.join(map(str, paths))}: lacks what README reads ({what}); re-run the notebook "
            f"(`make run NB={paths[0].stem[:2]}`)"
        ) from None


def read(stem: str, results: Path = RESULTS) -> dict | None:
    """``results/<stem>.json`` or None if that notebook has not written one.

    Raises:
        ResultsError: the file is not valid JSON (e.g. truncated), not a results file, or holds
        NaN/inf.
    """
    path = results / f"{stem}.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(), parse_constant=lambda c: float(c))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ResultsError(
            f"{path}: not valid JSON ({exc}); re-run the notebook (`make run NB={stem[:2]}`) "
            f"or restore it with `git checkout -- "
            f"{path.relative_to(results.parent) if path.is_relative_to(results.parent) else path}`"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise ResultsError(
            f"{path}: not a results file (no 'metrics' mapping); re-run the notebook (`make run "
            f"NB={stem[:2]}`)"
        )
    _reject_nonfinite(data, path)
    return data


def finding(book: Path, results: Path = RESULTS) -> str:
    """The notebook's one-line finding; '-' if it has no results yet.

    Raises:
        ResultsError: the results file is unreadable or lacks a key or row the finding reads (names
        the file).
    """
    entry, data = FINDINGS.get(book.name[:2]), read(book.stem, results)
    if entry is None or data is None:
        return "-"
    try:
        return entry[1](data["metrics"])
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ResultsError(
            f"{results / (book.stem + '.json')}: lacks what README reads ({type(exc).__name__}: "
            f"{exc}); re-run the notebook (`make run NB={book.name[:2]}`)"
        ) from None


def notebook_table(results: Path = RESULTS, github: str | None = None) -> str:
    """Markdown table: number, notebook link, Colab badge (on ``github``, owner/repo: default the
    origin's), finding, runtime."""
    lines = [
        "| # | notebook | open | finding (from its results file) | runtime |",
        "|---|---|---|---|---:|",
    ]
    for book in notebooks():
        title = FINDINGS.get(book.name[:2], (book.stem, None))[0]
        data = read(book.stem, results)
        with reading(results / f"{book.stem}.json"):
            runtime = f"{data['runtime_s']:.0f} s" if data else "-"
        lines.append(
            f"| {book.name[:2]} | [{title}](notebooks/{book.name}) | [![Open In Colab]({BADGE})]"
            f"({colab_url(book.name, ROOT, github)}) | {finding(book, results)} "
            f"([json](results/{book.stem}.json)) | {runtime} |"
        )
    return "\n".join(lines)


#: the datasets whose series README times, and where each one's results live (below RESULTS)
TIMED = (
    (SPECS["mnist"].title, "", "`make run`"),
    (SPECS["fashion_mnist"].title, "fashion_mnist", "`make run DATASET=fashion_mnist`"),
)


def runtime_table(results: Path = RESULTS) -> str:
    """Markdown table of each dataset's series: the sum of its notebooks' ``runtime_s``, the slowest
    notebook, and the machine(s) its results files name (``artifacts.machine``; files written before
    it was recorded name none)."""
    lines = [
        "| series | notebooks | total | slowest notebook | machine |",
        "|---|---:|---:|---|---|",
    ]
    for title, folder, command in TIMED:
        found = {b.name[:2]: data for b in notebooks() if (data := read(b.stem, results / folder))}
        if found:
            times = {nb: data["runtime_s"] for nb, data in found.items()}
            slowest = max(times, key=times.get)
            lines.append(
                f"| {title}: {command} | {len(times)} | {sum(times.values()) / 60:.1f} min | "
                f"{slowest} ({times[slowest]:.0f} s) | {_machines(found.values())} |"
            )
    return "\n".join(lines)


def _machines(files: Iterable[dict]) -> str:
    """The machines named by results files (CPU, cores and accelerator), or that none is
    recorded."""
    named = {
        f"{m['cpu']}, {m['cores']} cores"
        + (f", {m['accelerator']}" if m.get("accelerator") else "")
        for data in files
        if (m := data.get("machine"))
    }
    unnamed = sum(1 for data in files if not data.get("machine"))
    parts = sorted(named) + (
        [f"not recorded ({unnamed} file{'s' if unnamed > 1 else ''})"] if unnamed else []
    )
    return "; ".join(parts)


def _cell(r: dict | None, judge: bool = True) -> str:
    if r is None:
        return "–"
    text = f"{r['psnr']:.1f} / {r['ssim']:.2f} / {r['reclass_target']:.1%}"
    return text + (f" / {r['reclass_independent']:.1%}" if judge else "")


def benchmark_table(results: Path = RESULTS) -> str:
    """Notebook 07's rows as one table: target × method, from block 1 and from the logits."""
    data = read("07_inversion_benchmark", results)
    if data is None:
        return "_Notebook 07 has not been run yet: `make run NB=07`._"
    m = data["metrics"]
    lines = [
        "| target | method | from block 1 | from the logits | images/s | images scored |",
        "|---|---|---:|---:|---:|---:|",
    ]
    targets = list(dict.fromkeys(r["target"] for r in m["rows"]))
    for target in targets:
        for method in METHOD_ORDER:
            rows = [r for r in m["rows"] if r["target"] == target and r["method"] == method]
            if not rows:
                continue
            first = next((r for r in rows if r["depth"] == 1), None)
            logits = next((r for r in rows if r["depth_is_logits"]), None)
            if first is None and logits is None:  # e.g. inverse weights, from an inner layer only
                inner = rows[0]
                first_cell = f"{_cell(inner)} (k = {inner['depth']})"
            else:
                first_cell = _cell(first)
            speed = max(r["images_per_s"] for r in rows)
            lines.append(
                f"| {target} | {method} | {first_cell} | {_cell(logits)} | {speed:,.0f} | "
                f"{rows[0]['n_images']:,} |"
            )
    judge = m["judge"]
    return "\n".join(lines) + (
        f"\n\nEach cell: PSNR (dB) / SSIM / re-classified by the target / re-classified by the "
        f"independent judge `{judge['name']}` (test accuracy {judge['test_accuracy']:.2%}). Every "
        f"block boundary, and the analytic inverses' chosen ridges, are in [the "
        f"notebook](notebooks/07_inversion_benchmark.ipynb) and [its "
        f"JSON](results/07_inversion_benchmark.json)."
    )


def results_section(results: Path = RESULTS) -> str:
    """The generated results block of README."""
    data = read("07_inversion_benchmark", results)
    device = data["params"].get("device", "?") if data else "?"
    return "\n\n".join(
        [
            "## Results: every method side by side",
            "Measured by [notebook 07](notebooks/07_inversion_benchmark.ipynb) on the 10 000 MNIST "
            "test images "
            f"(optimisation, the slowest, on the first `opt_images`), device `{device}`; images/s "
            f"is the inversion "
            "alone, from the fastest block boundary.",
            benchmark_table(results),
            "![The same 8 test digits under every method, inverted from block "
            "1](assets/07_gallery_block1.png)",
            "![The same 8 test digits under every method, inverted from the "
            "logits](assets/07_gallery_logits.png)",
            "![Quality against speed](assets/07_quality_vs_speed.png)",
        ]
    )


# --- does it generalise?
# ------------------------------------------------------------------------------------

DATASET_TITLES = {name: s.title for name, s in SPECS.items()}  # one source: data.SPECS
SECOND = "fashion_mnist"


#: (notebook number, the claim as its conclusion makes it, the test of that claim on one dataset's
#: metrics)
CLAIMS: list[tuple[str, str, Callable[[dict], Claim]]] = [
    (
        "01",
        "every target clears its floor (MNIST: the recipes' margins; Fashion-MNIST: its README's "
        "benchmarks)",
        targets_claims.floors_met,
    ),
    (
        "02",
        f"square weights and `cnn_nopool`'s first conv block invert exactly (float32 error ≤ "
        f"{EXACT_MAX_ABS_ERR:.0e})".replace("e-0", "e-"),
        pseudo_inverse_claims.exact_inverse,
    ),
    (
        "02",
        "a narrowing layer (`mlp_leaky`, 784 → 64) loses most of the image",
        pseudo_inverse_claims.null_space_loss,
    ),
    (
        "03",
        "reconstructions of misclassified images follow the network's opinion, not the label",
        inverse_weights_claims.follows_opinion,
    ),
    (
        "04",
        f"zero-shot within {ZERO_SHOT_GAP_DB:g} dB of real images at `cnn_pool`'s block 1 (every "
        f"seed's 95 % interval)",
        partial(zero_shot.zero_shot_close, target="cnn_pool", k=1, gap=ZERO_SHOT_GAP_DB),
    ),
    (
        "04",
        f"zero-shot within {ZERO_SHOT_GAP_DB:g} dB of real images at `cnn_nopool`'s block 2 (every "
        f"seed's 95 % interval)",
        partial(zero_shot.zero_shot_close, target="cnn_nopool", k=2, gap=ZERO_SHOT_GAP_DB),
    ),
    (
        "04",
        "refined inversions from the logits reach the target's own accuracy",
        zero_shot.ceiling_reached,
    ),
    (
        "05",
        f"the naive decoder inverse fails (≥ {NAIVE_FAILURE_DB:g} dB below the encoder); "
        f"optimising the latent comes within {ENCODER_MATCH_DB:g} dB",
        decoder_inversion_claims.naive_fails_fix_works,
    ),
    (
        "07",
        "from `mlp_leaky`'s first layer the prior pre-image beats pinv (PSNR, intervals apart)",
        benchmark_claims.prior_beats_pinv,
    ),
    (
        "07",
        "feature matching (L-BFGS from grey, the benchmark's budget) recovers both CNNs' first "
        "blocks to float precision",
        benchmark_claims.matching_recovers_block1,
    ),
    (
        "07",
        "the target accepts logit reconstructions that an independent judge rejects",
        benchmark_claims.judge_exposes_target,
    ),
    (
        "08",
        "one image's whole grid within the explorer's gate (`max_update_ms`)",
        explore_claims.update_in_time,
    ),
]


def generalise_table(results: Path = RESULTS) -> str:
    """Each claim on MNIST and on Fashion-MNIST, and where it holds."""
    first, second = DATASET_TITLES["mnist"], DATASET_TITLES[SECOND]
    lines = [f"| # | claim | {first} | {second} | holds? |", "|---|---|---|---|---|"]
    stems = {b.name[:2]: b.stem for b in notebooks()}
    outcomes = []
    for number, claim, test in CLAIMS:
        cells, holds = [], []
        for folder in (results, results / SECOND):
            data = read(stems[number], folder)
            if data is None:
                cells.append("not run yet")
                holds.append(None)
                continue
            try:
                # a gate's threshold is a parameter
                found = test({**data["params"], **data["metrics"]})
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                raise ResultsError(
                    f"{folder / (stems[number] + '.json')}: lacks what README reads "
                    f"({type(exc).__name__}: {exc}); re-run the notebook"
                ) from None
            cells.append(("✓ " if found.holds else "✗ ") + found.text)
            holds.append(found.holds)
        if None in holds:
            verdict_text = (
                f"{'only one dataset' if holds.count(None) == 1 else 'neither dataset'} run yet"
            )
        elif all(holds):
            verdict_text = "holds on both"
        elif holds[0]:
            verdict_text = f"holds on {first}, **not on {second}**"
        elif holds[1]:
            verdict_text = f"holds on {second}, **not on {first}**"
        else:
            verdict_text = "holds on neither"
        lines.append(f"| {number} | {claim} | {cells[0]} | {cells[1]} | {verdict_text} |")
        outcomes.append((claim, holds))
    both = [c for c, h in outcomes if None not in h]
    held = [c for c, h in outcomes if None not in h and all(h)]
    failed = [c for c, h in outcomes if None not in h and h[0] and not h[1]]
    summary = (
        f"\n\nOf {len(both)} claims tested on both datasets, {len(held)} hold on both"
        + (f"; on {second} these do not: " + "; ".join(f"*{c}*" for c in failed) if failed else "")
        + "."
        if both
        else ""
    )
    return "\n".join(lines) + summary


def privacy_section(results: Path = RESULTS) -> str:
    """The generated 'split computing' block of README: notebook 09's answer on each dataset that
    ran it."""
    blocks = [
        "## Split computing: what a server recovers, and what to deploy",
        "A device runs a network's first blocks and sends the features; an honest-but-curious "
        "server inverts them. [Notebook 09](notebooks/09_split_computing_privacy.ipynb) attacks "
        f"every split with {len(THREATS)} attackers, measures "
        f"{len(FEATURE_DEFENCES + TRAINING_DEFENCES)} defences against an attacker who retrains "
        "on defended features, and recommends what to deploy from the privacy-utility "
        "frontier.",
    ]
    for name, folder in (("mnist", results), (SECOND, results / SECOND)):
        data = read("09_split_computing_privacy", folder)
        if data is None:
            blocks.append(
                f"_Not run on {DATASET_TITLES[name]} yet: `make run NB=09"
                + (f" DATASET={name}`._" if name != "mnist" else "`._")
            )
            continue
        assets = "assets/" + ("" if name == "mnist" else f"{name}/")
        with reading(folder / "09_split_computing_privacy.json"):
            answer = privacy_claims.privacy_answer(data["metrics"], DATASET_TITLES[name])
            he = data["metrics"].get("he_lenet")
            table = he_lenet.anchor_table(he["comparisons"]) if he else None
            understated = privacy_claims.understated_leaks(data["metrics"]) if he else []
        blocks.append(
            f"### {DATASET_TITLES[name]}\n\n"
            + answer
            + f"\n\n![What the server recovers from each split ({DATASET_TITLES[name]}): "
            f"the strongest attack]({assets}09_leaks.png)"
            + f"\n\n![The privacy-utility frontier ({DATASET_TITLES[name]}): each split and "
            f"defence setting, the recommended configuration ringed]({assets}09_frontier.png)"
        )
        if table:
            n = min(c["n_images"] for c in he["comparisons"])
            blocks.append(
                f"**He, Zhang and Lee's LeNet in their own table** ({DATASET_TITLES[name]}; "
                "PSNR (dB) / SSIM; theirs on one test image per class, ours on "
                f"{n} test images with 95 % intervals, SSIM also in their convention where it "
                "differs; verdicts from the intervals)\n\n"
                + table
                + "".join(f"\n\n{line.removeprefix('- ')}" for line in understated)
                + f"\n\n![He et al.'s LeNet under their attackers]({assets}09_he_lenet.png)"
            )
    return "\n\n".join(blocks)


def generalise_section(results: Path = RESULTS) -> str:
    """The generated 'does it generalise?' block of README."""
    return "\n\n".join(
        [
            "## Does it generalise? MNIST and Fashion-MNIST",
            "The same notebooks, the same architectures and the same code, run on a second dataset "
            "with `make run DATASET=fashion_mnist` (executed copies in "
            "[notebooks/runs/fashion_mnist/](notebooks/runs/fashion_mnist/), numbers in "
            "[results/fashion_mnist/](results/fashion_mnist/)). Each row is a claim one notebook's "
            "conclusion makes, tested on each dataset's results file the way the notebook tests it "
            "(✓ holds, ✗ does not; brackets: 95 % intervals, bootstrap over test images or Wilson "
            "for shares).",
            generalise_table(results),
        ]
    )


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with the block between ``<!-- name:begin -->`` and ``<!-- name:end -->`` replaced
    by ``body``."""
    begin, end = (
        f"<!-- {name}:begin (generated by scripts/readme_results.py from results/*.json; do not "
        f"edit) -->",
        f"<!-- {name}:end -->",
    )
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md lacks the marker pair for '{name}':\n{begin}\n{end}")
    return pattern.sub(lambda _: f"{begin}\n{body}\n{end}", text)


def render(text: str, results: Path = RESULTS, github: str | None = None) -> str:
    """README ``text`` with its generated blocks brought up to date with ``results`` (Colab links
    on ``github``).

    Raises:
        ResultsError: a results file is unreadable or lacks what README reads (the message names
        it).
    """
    table, general, privacy = (
        notebook_table(results, github),
        generalise_section(results),
        privacy_section(results),
    )
    with reading(results / "07_inversion_benchmark.json"):
        section = results_section(results)
    text = replace_block(text, "notebooks", table)
    text = replace_block(text, "runtime", runtime_table(results))
    text = replace_block(text, "generalise", general)
    text = replace_block(text, "privacy", privacy)
    return replace_block(text, "results", section)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if README differs from the results files"
    )
    args = parser.parse_args(argv)
    text = README.read_text()
    try:
        new = render(text)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # a fresh clone of a fork still has the links of [tool.reversenet]: up to date if all of them
    # point there
    if new == text or (args.check and render(text, github=config()[0]) == text):
        print("README.md is up to date with results/*.json")
        return 0
    if args.check:
        print(
            "README.md differs from results/*.json: run `make readme` (or `make run`, which ends "
            "with it)."
        )
        return 1
    README.write_text(new)
    print("README.md updated from results/*.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
