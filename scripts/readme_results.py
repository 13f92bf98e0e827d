"""Write README's notebook table and results section from ``results/*.json`` (``make readme``).

README.md holds two generated blocks, each between marker comments:

- ``notebooks``: every notebook with its Colab badge, its one-line finding (numbers read from its
  results file) and its runtime;
- ``results``: notebook 07's benchmark, every method side by side, and the gallery images.

Everything between the markers is rewritten; the text around them is left alone. ``--check`` only
reports whether README is up to date with the JSON (exit 1 if not; the test suite runs it), so a
number in README is always the number a notebook computed. ``make run`` calls this script last.

A results file that cannot be read (malformed or truncated JSON), lacks a key the README reads, or
holds a number that is not finite is an error that names the file and what is wrong (exit 2): README
never publishes ``nan%`` or a placeholder.

The one-line findings are also the key metric of ``make run``'s closing table (``run_notebooks.py``).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling scripts, also when loaded by a test
from sync_links import colab_url  # noqa: E402

from reversenet_utils.metrics import verdict  # noqa: E402
from reversenet_utils.notebook import find_row  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
README = ROOT / "README.md"
BADGE = "https://colab.research.google.com/assets/colab-badge.svg"


class ResultsError(ValueError):
    """A results file is unreadable, lacks what README reads, or holds a non-finite number."""


def _finding_04(m: dict) -> str:
    first = find_row(m["rows"], target="cnn_nopool", chain="progressive, real", depth=1)
    noise = find_row(m["rows"], target="cnn_nopool", chain="progressive, noise", depth=1)
    limit = max(r["psnr"] for r in m["optimisation_sweep"]
                if r["target"] == "cnn_nopool" and r["depth"] == 1 and r["start"] == "grey")
    ceiling = m["logit_ceiling"]
    refined = "; ".join(f"{t} {c['refined']['reclass']:.2%} (its accuracy {c['target_accuracy']:.2%})"
                        for t, c in ceiling.items())
    anchors = "; ".join(f"{t}: {verdict(ceiling[t]['refined']['reclass_ci'], a)} the anchor {a:.2%}"
                        for t, a in m["anchors"].items() if t in ceiling)
    speedup = m["speed"]["equal_psnr_speedup"]
    return (f"cnn_nopool from block 1: learned {first['psnr']:.1f} dB on real digits, {noise['psnr']:.1f} dB trained on "
            f"noise only, feature matching (L-BFGS) {limit:.0f} dB; from the logits, refined: {refined}; {anchors} "
            f"(95 % intervals); at equal PSNR (k = {m['speed']['depth']}) one forward pass is "
            + (f"{speedup:.0f}x faster than L-BFGS" if speedup else "not matched by L-BFGS within the sweep"))


def _finding_07(m: dict) -> str:
    logits = [r for r in m["rows"] if r["depth_is_logits"]]
    best = max(logits, key=lambda r: r["psnr"])
    fool = max(r["reclass_target"] - r["reclass_independent"] for r in logits)
    return (f"{len({r['method'] for r in m['rows']})} methods × {len({r['target'] for r in m['rows']})} targets; "
            f"best from the logits: {best['method']} on {best['target']}, {best['psnr']:.1f} dB; the target accepts "
            f"reconstructions up to {fool:.1%} more often than an independent judge")


#: notebook number -> (title, one-line finding from its metrics). Only the keys docs/design.md fixes are read.
FINDINGS: dict[str, tuple[str, Callable[[dict], str]]] = {
    "01": ("Training the targets", lambda m: "{} networks trained, test accuracy {:.2%}–{:.2%}".format(
        len(m["targets"]), min(t["test_accuracy"] for t in m["targets"].values()),
        max(t["test_accuracy"] for t in m["targets"].values()))),
    "02": ("Analytic inversion", lambda m: (
        "square weights invert exactly (max error {:.1e} in float32), and so does cnn_nopool's first conv block "
        "({:.1e}); feature matching recovers the digit from {} of {} block boundaries; from mlp_leaky's logits the "
        "pseudo-inverse gives {:.1f} dB, the prior pre-image {:.1f} dB").format(
        m["exact"]["max_abs_err_float32"], m["conv"]["cnn_nopool_block1"]["max_abs_err_float32"],
        sum(r["recovered"] for r in m["injectivity"]), len(m["injectivity"]), m["pinv"]["psnr"],
        m["regularised"]["psnr"])),
    "03": ("Learned inverse weights", lambda m: (
        "faithful inverse weights {:.1f} dB / {:.1%} re-classified, a small decoder {:.1f} dB; generated digits "
        "reach {:.2%} confidence or more").format(
        m["faithful"]["psnr"], m["faithful"]["reclass"], m["improved"]["psnr"], min(m["generation"]["confidence"]))),
    "04": ("Zero-shot progressive inversion", _finding_04),
    "05": ("VAE decoder inversion", lambda m: (
        "the naive pinv + atanh + logit inverse reaches {:.1f} dB on real digits; the best fix {:.1f} dB "
        "(encoder {:.1f} dB)").format(
        m["routes"]["faithful_pinv"]["psnr"],
        max(r["psnr"] for k, r in m["routes"].items() if k not in ("encoder", "faithful_pinv")),
        m["routes"]["encoder"]["psnr"])),
    "06": ("Feature visualisation", lambda m: (
        "{}: class visualisations at probability ≥ {:.3f}, {:.1f} s each on a CPU; batched rendering {:.1f}x "
        "faster").format(m["model"], min(c["probability"] for c in m["classes"].values()), m["seconds_per_image"],
                         m["batched_speedup"])),
    "07": ("Every method side by side", _finding_07),
    "08": ("Explore: draw a digit", lambda m: "{} fast methods × {} targets, every block boundary: one digit's whole grid "
           "in {:.0f} ms (median of {} digits, max {:.0f} ms) on a CPU; feature matching on a button".format(
               len(m["methods"]), len(m["targets"]), m["latency"]["median_ms"], m["latency"]["digits"],
               m["latency"]["max_ms"])),
}

METHOD_ORDER = ["pinv", "pinv, pooling indices", "prior pre-image", "inverse weights", "progressive, real",
                "progressive, noise", "optimisation", "feature matching (L-BFGS)", "feature matching + prior (L-BFGS)",
                "hybrid (learned + L-BFGS)"]


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
        raise ResultsError(f"{path}: {where} is {value}; re-run the notebook (`make run NB={path.stem[:2]}`)")


def read(stem: str, results: Path = RESULTS) -> dict | None:
    """``results/<stem>.json`` or None if that notebook has not written one.

    Raises:
        ResultsError: the file is not valid JSON (e.g. truncated), not a results file, or holds NaN/inf.
    """
    path = results / f"{stem}.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(), parse_constant=lambda c: float(c))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: not valid JSON ({exc}); re-run the notebook (`make run NB={stem[:2]}`) "
                           f"or restore it with `git checkout -- {path.relative_to(results.parent) if path.is_relative_to(results.parent) else path}`") from None
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise ResultsError(f"{path}: not a results file (no 'metrics' mapping); re-run the notebook (`make run NB={stem[:2]}`)")
    _reject_nonfinite(data, path)
    return data


def finding(book: Path, results: Path = RESULTS) -> str:
    """The notebook's one-line finding; '-' if it has no results yet.

    Raises:
        ResultsError: the results file is unreadable or lacks a key or row the finding reads (names the file).
    """
    entry, data = FINDINGS.get(book.name[:2]), read(book.stem, results)
    if entry is None or data is None:
        return "-"
    try:
        return entry[1](data["metrics"])
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ResultsError(f"{results / (book.stem + '.json')}: lacks what README reads ({type(exc).__name__}: {exc}); "
                           f"re-run the notebook (`make run NB={book.name[:2]}`)") from None


def notebook_table(results: Path = RESULTS) -> str:
    """Markdown table: number, notebook link, Colab badge, finding, runtime."""
    lines = ["| # | notebook | open | finding (from its results file) | runtime |", "|---|---|---|---|---:|"]
    for book in notebooks():
        title = FINDINGS.get(book.name[:2], (book.stem, None))[0]
        data = read(book.stem, results)
        runtime = f"{data['runtime_s']:.0f} s" if data else "-"
        lines.append(f"| {book.name[:2]} | [{title}](notebooks/{book.name}) | [![Open In Colab]({BADGE})]"
                     f"({colab_url(book.name, ROOT)}) | {finding(book, results)} ([json](results/{book.stem}.json)) | {runtime} |")
    return "\n".join(lines)


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
            lines.append(f"| {target} | {method} | {first_cell} | {_cell(logits)} | {speed:,.0f} | {rows[0]['n_images']:,} |")
    judge = m["judge"]
    return "\n".join(lines) + (
        f"\n\nEach cell: PSNR (dB) / SSIM / re-classified by the target / re-classified by the independent judge "
        f"`{judge['name']}` (test accuracy {judge['test_accuracy']:.2%}). Every block boundary, and the analytic "
        f"inverses' chosen ridges, are in [the notebook](notebooks/07_inversion_benchmark.ipynb) and "
        f"[its JSON](results/07_inversion_benchmark.json).")


def results_section(results: Path = RESULTS) -> str:
    """The generated results block of README."""
    data = read("07_inversion_benchmark", results)
    device = data["params"].get("device", "?") if data else "?"
    return "\n\n".join([
        "## Results: every method side by side",
        "Measured by [notebook 07](notebooks/07_inversion_benchmark.ipynb) on the 10 000 MNIST test images "
        f"(optimisation, the slowest, on the first `opt_images`), device `{device}`; images/s is the inversion "
        "alone, from the fastest block boundary.",
        benchmark_table(results),
        "![The same 8 test digits under every method, inverted from block 1](assets/07_gallery_block1.png)",
        "![The same 8 test digits under every method, inverted from the logits](assets/07_gallery_logits.png)",
        "![Quality against speed](assets/07_quality_vs_speed.png)",
    ])


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with the block between ``<!-- name:begin -->`` and ``<!-- name:end -->`` replaced by ``body``."""
    begin, end = f"<!-- {name}:begin (generated by scripts/readme_results.py from results/*.json; do not edit) -->", f"<!-- {name}:end -->"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md lacks the marker pair for '{name}':\n{begin}\n{end}")
    return pattern.sub(lambda _: f"{begin}\n{body}\n{end}", text)


def render(text: str, results: Path = RESULTS) -> str:
    """README ``text`` with both generated blocks brought up to date with ``results``.

    Raises:
        ResultsError: a results file is unreadable or lacks what README reads (the message names it).
    """
    try:
        table, section = notebook_table(results), results_section(results)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        if isinstance(exc, ResultsError):
            raise
        raise ResultsError(f"{results}: a results file lacks what README reads ({type(exc).__name__}: {exc}); "
                           f"re-run the notebooks (`make run`)") from None
    text = replace_block(text, "notebooks", table)
    return replace_block(text, "results", section)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README differs from the results files")
    args = parser.parse_args(argv)
    text = README.read_text()
    try:
        new = render(text)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if new == text:
        print("README.md is up to date with results/*.json")
        return 0
    if args.check:
        print("README.md differs from results/*.json: run `make readme` (or `make run`, which ends with it).")
        return 1
    README.write_text(new)
    print("README.md updated from results/*.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
