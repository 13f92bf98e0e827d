"""Notebook 02's claims (analytic inversion), from its results metrics and parameters alone.

The one definition of each claim lives here; the notebook's tables, findings, conclusion and gates
and README's headline and generalisation table call it:

- :func:`exact_inverse`: square weights and ``cnn_nopool``'s first conv block invert exactly;
- :func:`null_space_loss`: a narrowing layer loses most of the image;
- :func:`map_findings`: what the injectivity map says;
- :func:`summary`, :func:`conclusion`, :func:`gates`, :func:`headline`.

``metrics`` is the ``metrics`` mapping of ``results/02_analytic_pseudo_inverse.json``: ``exact``,
``solvers``, ``preimage``, ``pinv`` and ``regularised`` (from the logits), ``depth_curves`` (per
inverse, per layer), ``chosen_damping``, ``sigmoid_domain``, ``conv``, ``injectivity``,
``prototypes``, ``dataset_title``; ``params`` the notebook's parameters (the targets' names).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..plotting import markdown_table
from ..thresholds import EXACT_FLOAT64_ERR, EXACT_MAX_ABS_ERR, PRIOR_GAIN_DB, RECOVERED_DB
from . import Claim

__all__ = [
    "exact_inverse",
    "null_space_loss",
    "where",
    "map_findings",
    "summary",
    "conclusion",
    "gates",
    "headline",
]

#: "most of the image": more than this share of a test image's energy in the null space
MOST = 0.5
#: the CNNs whose first block feature matching must recover (the map's gate)
RECOVERED_FIRST_BLOCKS = ("cnn_nopool", "cnn_pool")


def exact_inverse(metrics: Mapping) -> Claim:
    """Square weights and ``cnn_nopool``'s first conv block invert to within
    ``EXACT_MAX_ABS_ERR`` in float32."""
    a = metrics["exact"]["max_abs_err_float32"]
    b = metrics["conv"]["cnn_nopool_block1"]["max_abs_err_float32"]
    return Claim(f"max error {a:.1e} / {b:.1e}", max(a, b) <= EXACT_MAX_ABS_ERR)


def null_space_loss(metrics: Mapping) -> Claim:
    """More than half of a test image's energy lies in the null space of the narrowing first
    layer."""
    share = metrics["preimage"]["null_space_energy_fraction"]
    return Claim(f"{share:.0%} of an image's energy in the null space", share > MOST)


def where(rows: Sequence[Mapping]) -> str:
    """The block boundaries of ``rows`` with the PSNR reached, or "none"."""
    return (
        ", ".join(f"{r['target']} k = {r['depth']} ({r['recovered_psnr']:.0f} dB)" for r in rows)
        or "none"
    )


def _lost(rows: Sequence[Mapping]) -> list[Mapping]:
    return [r for r in rows if not r["recovered"] and r["features"] < r["pixels"]]


def map_findings(metrics: Mapping, params: Mapping) -> list[str]:
    """What the injectivity map says, one markdown line each."""
    rows = metrics["injectivity"]
    slow = [r for r in rows if not r["recovered"] and r["features"] >= r["pixels"]]
    return [
        "- recovered to float precision, so *no* information lost on these images: "
        + where([r for r in rows if r["recovered"]]),
        "- fewer features than pixels and the image not recovered, so information really lost: "
        + where(_lost(rows)),
        f"- as many features as pixels or more, yet not recovered within "
        f"{params['injectivity_steps']} iterations (slow, or lost): {where(slow)}",
    ]


def _curve(metrics: Mapping, inverse: str, depth: int) -> Mapping:
    return metrics["depth_curves"][inverse][str(depth)]


def summary(metrics: Mapping, params: Mapping) -> str:
    """Markdown: the narrowing MLP from its first layer and its logits, both inverses; the exact
    case's errors and the prototypes' least confidence."""
    target, last = params["target"], max(int(d) for d in metrics["chosen_damping"])
    rows = {
        "layer 1, pinv": _curve(metrics, f"{target}, pinv", 1),
        "layer 1, prior pre-image": _curve(metrics, f"{target}, prior pre-image", 1),
        "logits, pinv": metrics["pinv"],
        f"logits, prior pre-image (λ = {metrics['chosen_damping'][str(last)]:g})": metrics[
            "regularised"
        ],
    }
    table = markdown_table(
        [f"{target}, inverted from", "PSNR (dB)", "SSIM", "re-classified"],
        [
            [n, f"{r['psnr']:.2f}", f"{r['ssim']:.3f}", f"{r['reclass']:.2%}"]
            for n, r in rows.items()
        ],
    )
    exact = metrics["exact"]
    return (
        f"{table}\n\nExact case ({params['square_target']}): max error "
        f"{exact['max_abs_err_float32']:.1e} (float32), {exact['max_abs_err_float64']:.1e} "
        f"(float64). Prototype confidence (pinv, as computed): min "
        f"{min(metrics['prototypes']['confidence']):.3f}."
    )


def conclusion(metrics: Mapping, params: Mapping) -> list[str]:
    """The notebook's measured conclusion, one markdown line each."""
    target, square, sigmoid = params["target"], params["square_target"], params["sigmoid_target"]
    exact, pre, conv = metrics["exact"], metrics["preimage"], metrics["conv"]
    first, logit = _curve(metrics, f"{target}, pinv", 1), metrics["pinv"]
    prior_first = _curve(metrics, f"{target}, prior pre-image", 1)
    prior_logit = metrics["regularised"]
    protos = metrics["prototypes"]
    kept_classes = sum(c > 0.5 for c in protos["confidence_clipped"])
    raises = prior_first["psnr"] > first["psnr"] and prior_logit["psnr"] > logit["psnr"]
    rows = metrics["injectivity"]
    clamped = sum(c["clamped"] for c in metrics["sigmoid_domain"]["counts"].values())
    return [
        f"- `{square}` inverts every test image from its last hidden layer to a max error of "
        f"{exact['max_abs_err_float32']:.1e} (float32) and {exact['max_abs_err_float64']:.1e} "
        "(float64).",
        f"- `{target}`: `net(inverse(y))` matches the logits to a relative error of "
        f"{pre['relative_error_net_of_inverse']:.1e} (same class for {pre['same_prediction']:.2%} "
        f"of the test images), while `inverse(net(x))` from the logits is not the image (relative "
        f"error {pre['relative_error_inverse_of_net']:.2f}); already "
        f"{pre['null_space_energy_fraction']:.0%} of a test image's energy lies in the null space "
        f"of the first layer. From layer 1 pinv reaches {first['psnr']:.1f} dB (SSIM "
        f"{first['ssim']:.2f}, re-classified {first['reclass']:.0%}); from the logits "
        f"{logit['psnr']:.1f} dB, and the pinv class prototypes, exact pre-images "
        f"({min(protos['confidence']):.0%}+ confidence), keep {kept_classes} of 10 classes above "
        "50 % confidence once clipped to [0, 1].",
        f"- The prior pre-image {'raises' if raises else 'does not raise'} PSNR from both ends: "
        f"layer 1 {first['psnr']:.1f} → {prior_first['psnr']:.1f} dB (re-classified "
        f"{prior_first['reclass']:.0%}), logits {logit['psnr']:.1f} → {prior_logit['psnr']:.1f} "
        f"dB (re-classified {prior_logit['reclass']:.0%}): 10 numbers cannot pin down an image, "
        "and the best analytic answer from the logits is a class average, not the original. "
        "Recovering more needs a learned inverse (notebooks 03 and 04).",
        f"- Convolutions: `cnn_nopool` block 1 inverts at {conv['cnn_nopool_block1']['psnr']:.0f} "
        "dB over the whole test set; `cnn_pool` block 1 given its pooling indices at "
        f"{conv['cnn_pool_block1_with_indices']['psnr']:.0f} dB.",
        "- The injectivity map: feature matching recovers the image to float precision at "
        f"{where([r for r in rows if r['recovered']])}; it cannot where a block has fewer "
        f"features than pixels ({where(_lost(rows))}), and that loss is real.",
        f"- Sigmoid domains: {clamped:,} values clamped into (0, 1) while inverting `{sigmoid}` "
        "from its logits, every output "
        + ("finite." if metrics["sigmoid_domain"].get("finite", True) else "**not** finite."),
    ]


def gates(metrics: Mapping, params: Mapping) -> list[Claim]:
    """The notebook's quality gates (``min_prototype_confidence`` from ``params``)."""
    target = params["target"]
    exact, pre, conv, rows = (
        metrics["exact"],
        metrics["preimage"],
        metrics["conv"],
        metrics["injectivity"],
    )
    nopool, pool = conv["cnn_nopool_block1"], conv["cnn_pool_block1_with_indices"]
    depths = sorted(int(d) for d in metrics["depth_curves"][f"{target}, pinv"])
    worse = [
        d
        for d in depths
        if _curve(metrics, f"{target}, prior pre-image", d)["psnr"]
        <= _curve(metrics, f"{target}, pinv", d)["psnr"]
    ]
    not_first = [
        f"{r['target']} k = 1"
        for r in rows
        if r["depth"] == 1 and r["target"] in RECOVERED_FIRST_BLOCKS and not r["recovered"]
    ]
    impossible = [
        f"{r['target']} k = {r['depth']}"
        for r in rows
        if r["features"] < r["pixels"] and (r["recovered"] or r["rank"] > r["features"])
    ]
    least = min(metrics["prototypes"]["confidence"])
    return [
        exact_inverse(metrics),
        Claim(
            f"square weights in float64: max error {exact['max_abs_err_float64']:.1e} <= "
            f"{EXACT_FLOAT64_ERR:.0e}",
            exact["max_abs_err_float64"] <= EXACT_FLOAT64_ERR,
        ),
        Claim(
            f"net(inverse(y)) reproduces the logits (relative error "
            f"{pre['relative_error_net_of_inverse']:.1e} < 1e-4, same class "
            f"{pre['same_prediction']:.2%} > 99.9%)",
            pre["relative_error_net_of_inverse"] < 1e-4 and pre["same_prediction"] > 0.999,
        ),
        Claim(
            f"a narrowing layer is not inverted exactly (relative error "
            f"{pre['relative_error_inverse_of_net']:.2f} > 0.5)",
            pre["relative_error_inverse_of_net"] > 0.5,
        ),
        Claim(
            f"from the logits the prior pre-image ({metrics['regularised']['psnr']:.1f} dB) beats "
            f"pinv ({metrics['pinv']['psnr']:.1f} dB) by >= {PRIOR_GAIN_DB:g} dB",
            metrics["regularised"]["psnr"] >= metrics["pinv"]["psnr"] + PRIOR_GAIN_DB,
        ),
        Claim(
            "the prior pre-image beats pinv from every layer"
            + (f" (not from layers {worse})" if worse else ""),
            not worse,
        ),
        Claim(
            f"pinv class prototypes: least confidence {least:.3f} > "
            f"{params['min_prototype_confidence']:g}",
            least > params["min_prototype_confidence"],
        ),
        Claim("every class prototype finite", metrics["prototypes"].get("finite", True)),
        Claim(
            f"cnn_nopool block 1 exactly: {nopool['psnr']:.1f} dB >= {RECOVERED_DB:.0f} dB, max "
            f"error {nopool['max_abs_err_float32']:.1e}",
            nopool["psnr"] >= RECOVERED_DB and nopool["max_abs_err_float32"] <= EXACT_MAX_ABS_ERR,
        ),
        Claim(
            f"cnn_pool block 1 given its pooling indices: {pool['psnr']:.1f} dB >= "
            f"{RECOVERED_DB:.0f} dB",
            pool["psnr"] >= RECOVERED_DB,
        ),
        Claim(
            "no boundary with fewer features than pixels is recovered, nor ranks above its "
            "features" + (f" ({', '.join(impossible)} does)" if impossible else ""),
            not impossible,
        ),
        Claim(
            "feature matching recovers the CNNs' first blocks"
            + (f" (not {', '.join(not_first)})" if not_first else ""),
            not not_first,
        ),
    ]


def headline(metrics: Mapping) -> str:
    """README's one-line finding of notebook 02."""
    exact, conv = metrics["exact"]["max_abs_err_float32"], metrics["conv"]
    rows = metrics["injectivity"]
    return (
        f"square weights invert exactly (max error {exact:.1e} in float32), and so does "
        f"cnn_nopool's first conv block ({conv['cnn_nopool_block1']['max_abs_err_float32']:.1e}); "
        f"feature matching recovers the image from {sum(r['recovered'] for r in rows)} of "
        f"{len(rows)} block boundaries; from mlp_leaky's logits the pseudo-inverse gives "
        f"{metrics['pinv']['psnr']:.1f} dB, the prior pre-image "
        f"{metrics['regularised']['psnr']:.1f} dB"
    )
