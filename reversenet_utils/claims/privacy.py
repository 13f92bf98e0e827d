"""Notebook 09's claims (split computing under attack), from its results metrics and parameters
alone.

The notebook's answer, notes and gates and README's headline and privacy section call these:

- :func:`privacy_answer`: the one-page answer: what leaks at each split, what to deploy;
- :func:`notes`: the notebook's measured conclusion (:func:`he_lenet_note`: its line on He et
  al.'s table; :func:`understated_leaks`: where an attacker of theirs recovers more than the leak
  table's strongest);
- :func:`gates`: its quality gates, each a :class:`~reversenet_utils.claims.Claim`;
- :func:`headline`: README's one-line finding.

``metrics`` is the ``metrics`` mapping of ``results/09_split_computing_privacy.json``: ``dataset``,
``shifted_dataset``, ``devices`` (per target: accuracy, epochs, splits, whether it starts with a
convolution, the defence settings tried), ``rows`` (one per attack, see ``split.score``),
``he_lenet`` (He et al.'s LeNet under their attackers: ``device``, ``rows``, ``comparisons``,
``tv_weights``, ``shadow_accuracy``), ``journal_anchors`` (their journal's statements on the same
ground), ``cheapest`` (per target, the cheapest defence at the defence split that holds, or None),
``frontier`` (``frontier.frontier_points``), ``recommended`` (per target, ``frontier.recommend``),
``settings``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..anchors import HE_2019_SPLIT_PSNR
from ..he_lenet import ANCHOR_DATASET, SPLIT_NAMES, TARGET
from ..labels import HE_ATTACKERS, RMLE, THREATS
from ..metrics import verdict
from ..frontier import MAX_RECOGNISABLE
from ..split import strongest
from ..thresholds import RERUN_TOLERANCE_DB
from . import Claim

__all__ = [
    "privacy_answer",
    "notes",
    "audit_notes",
    "he_lenet_note",
    "understated_leaks",
    "gates",
    "headline",
]

#: a working device: its least test accuracy, trained on half the training images
MIN_DEVICE_ACCURACY = 0.8
#: slack of a row's mean inside its interval (an exact reconstruction's SSIM is 1.0, its interval's
#: float32 end 0.9999999)
ROUNDING = 1e-6
#: accuracy that more noise may gain back by chance (one point)
NOISE_ACCURACY_SLACK = 0.01
#: the verdict of a number below an anchor (``metrics.verdict``)
FALLS_SHORT = "falls short of"


def _ci(ci: Sequence[float], fmt: str = ".1f") -> str:
    return f"[{ci[0]:{fmt}}, {ci[1]:{fmt}}]"


def privacy_answer(metrics: Mapping, title: str) -> str:
    """The one-page answer of notebook 09 (and README), from its results ``metrics``: for each
    target and split what the strongest attacker recovers, and what to deploy: the configuration
    recommended from the privacy-utility frontier (``frontier.recommend``)."""
    rows, p = metrics["rows"], metrics["settings"]
    own = [r for r in rows if r["inputs"] == metrics["dataset"]]
    lines = [
        f"**What leaks** ({title}; the strongest of the {len(THREATS)} attacks at each split, "
        f"{p['n_eval']} test images; recognisable: SSIM ≥ {p['recognisable_ssim']})",
        "",
        "| target | split | strongest attack | PSNR (dB) | SSIM | recognisable | judge "
        "re-classifies |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for target, device in metrics["devices"].items():
        for split in device["splits"]:
            r = strongest(own, target=target, split=split, defence="none")
            lines.append(
                f"| `{target}` | {split} | {r['threat']} | {r['psnr']:.1f} {_ci(r['psnr_ci'])} | "
                f"{r['ssim']:.2f} {_ci(r['ssim_ci'], '.2f')} | {r['recognisable']:.0%} | "
                f"{r['reclass']:.0%} |"
            )
    s, budget = p["defence_split"], p["max_accuracy_loss"]
    lines += [
        "",
        f"**What to deploy** (every split undefended, and every defence at split {s}, each "
        f"against the attacker who trains an inverse network on its own images, on the features "
        f"the device sends, defended or not; the stronger threats of the table above are not "
        f"run against the defences yet. A "
        f"configuration holds when its best attacker's whole SSIM interval lies below "
        f"{p['recognisable_ssim']}, at most {MAX_RECOGNISABLE:.0%} of the images are "
        f"recognisable, and it costs at most {budget:.0%} of accuracy)",
        "",
        "| target | recommended | holds? | accuracy (lost) | best attacker | SSIM [95 % CI] | "
        "recognisable | judge re-classifies | that split undefended: SSIM, recognisable |",
        "|---|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for target, device in metrics["devices"].items():
        r = metrics["recommended"][target]
        bare = strongest(own, target=target, split=r["split"], defence="none")
        lines.append(
            f"| `{target}` | split {r['split']}, {_setting(r)} | {_STATUS[r['status']]} | "
            f"{r['accuracy']:.2%} ({0.0 - r['accuracy_loss']:+.2%}) | {r['attacker']} | "
            f"{r['ssim']:.2f} {_ci(r['ssim_ci'], '.2f')} | {r['recognisable']:.0%} | "
            f"{r['judge']:.0%} | {bare['ssim']:.2f}, {bare['recognisable']:.0%} |"
        )
    return "\n".join(lines)


#: what a recommendation's status says in the answer (``frontier.recommend``)
_STATUS = {
    "holds": "yes",
    "costs more": "no: the cheapest configuration that hides costs more accuracy",
    "leaks": "no: nothing tried hides the images; the least leak within the budget",
}


def _setting(point: Mapping) -> str:
    return (
        "no defence" if point["defence"] == "none" else f"{point['defence']} {point['strength']:g}"
    )


def _undefended(metrics: Mapping, name: str, k: int, inputs: str | None = None, **match) -> dict:
    return strongest(
        metrics["rows"], target=name, split=k, defence="none",
        inputs=inputs or metrics["dataset"], **match,
    )  # fmt: skip


def notes(metrics: Mapping, shifted_title: str) -> list[str]:
    """The notebook's measured conclusion, one markdown line each: per target what the strongest
    attack recovers from its first and last split, on its own and on shifted inputs; the defences
    that stop only a naive attacker; what to deploy; the anchors."""
    rows, s = metrics["rows"], metrics["settings"]["defence_split"]
    rs, lines = metrics["settings"]["recognisable_ssim"], []
    for name, device in metrics["devices"].items():
        first, last = device["splits"][0], device["splits"][-1]
        a, b = _undefended(metrics, name, first), _undefended(metrics, name, last)
        f = _undefended(metrics, name, first, metrics["shifted_dataset"])
        free = _undefended(metrics, name, first, threat="inverse net, data-free")
        other = _undefended(metrics, name, first, threat="inverse net, other data")
        # both attackers trained: each interval widened by what a re-run of training moves it by
        compared = verdict(free["psnr_ci"], other["psnr"], 2 * RERUN_TOLERANCE_DB)
        deeper = (
            f"; from split {last}, {b['recognisable']:.0%} ({b['threat']}, {b['psnr']:.1f} dB)"
            if last != first
            else " (its only split)"
        )
        lines.append(
            f"- `{name}`: from split {first} the strongest attack ({a['threat']}) makes "
            f"{a['recognisable']:.0%} of test images recognisable ({a['psnr']:.1f} dB){deeper}. "
            f"The data-free attacker reaches {free['psnr']:.1f} dB at split {first} against "
            f"{other['psnr']:.1f} dB with other real data ({compared} it). On shifted inputs "
            f"({shifted_title}) "
            f"the strongest attack at split {first} ({f['threat']}) still makes "
            f"{f['recognisable']:.0%} recognisable."
        )
    fooled = []
    for r in [r for r in rows if r["threat"].endswith("(naive)")]:
        adaptive = strongest(
            rows, target=r["target"], split=s, defence=r["defence"], strength=r["strength"],
            threat="inverse net, other data (adaptive)",
        )  # fmt: skip
        if r["ssim_ci"][1] < rs <= adaptive["ssim_ci"][0]:
            fooled.append(
                f"`{r['target']}` {r['defence']} {r['strength']:g} (naive {r['ssim']:.2f}, "
                f"adaptive {adaptive['ssim']:.2f})"
            )
    if fooled:
        lines.append(
            "- Defences that only stop a naive attacker (its SSIM below the threshold, the "
            "adaptive attacker's above): " + "; ".join(fooled) + "."
        )
    lines += [
        f"- What to deploy on `{n}`: split {r['split']}, {_setting(r)} "
        f"({_STATUS[r['status']]}; accuracy {r['accuracy']:.2%}, the best attacker "
        f"({r['attacker']}) SSIM {r['ssim']:.2f} {_ci(r['ssim_ci'], '.2f')}, "
        f"{r['recognisable']:.0%} recognisable, the judge re-classifies {r['judge']:.0%})."
        for n, r in metrics["recommended"].items()
    ]
    lines += audit_notes(metrics)
    if metrics.get("he_lenet"):
        lines.append(he_lenet_note(metrics["he_lenet"]))
        lines += understated_leaks(metrics)
    return lines


def he_lenet_note(he: Mapping) -> str:
    """One markdown line: how the attacks here compare with He et al.'s table on their LeNet, per
    verdict, naming each number of theirs not reached."""
    compared = [c for c in he["comparisons"] if c["anchor_psnr"] is not None]
    n = min(c["n_images"] for c in he["comparisons"])
    if not compared:
        return (
            f"- He et al.'s LeNet ({n} test images): their numbers are {ANCHOR_DATASET.upper()}'s, "
            "so none is compared here."
        )
    short = [
        f"{c['threat']} at {SPLIT_NAMES.get(c['split'], c['split'])} ({c['psnr']:.1f} dB / SSIM "
        f"{c['ssim']:.2f} against {c['anchor_psnr']:.2f} / {c['anchor_ssim']:.3f})"
        for c in compared
        if FALLS_SHORT in (c["psnr_verdict"], c["ssim_verdict"], c["their_ssim_verdict"])
    ]
    return (
        f"- He et al.'s table on their own LeNet ({n} test images, both SSIM conventions): at or "
        f"above {len(compared) - len(short)} of their {len(compared)} (PSNR, SSIM) pairs"
        + ("; below for " + "; ".join(short) if short else "")
        + "."
    )


def understated_leaks(metrics: Mapping) -> list[str]:
    """A markdown line per split of He et al.'s LeNet where an attacker of their table recovers
    more than the strongest attack of the leak table (its SSIM interval wholly above the other's):
    there the leak table understates what the server learns."""
    he, lines = metrics["he_lenet"], []
    for k in sorted({c["split"] for c in he["comparisons"]}):
        best = max((c for c in he["comparisons"] if c["split"] == k), key=lambda c: c["ssim"])
        try:
            leak = strongest(metrics["rows"], target=TARGET, split=k, defence="none",
                             inputs=metrics["dataset"])  # fmt: skip
        except KeyError:  # the leak table does not attack this target
            continue
        if best["ssim_ci"][0] > leak["ssim_ci"][1]:
            lines.append(
                f"- At {SPLIT_NAMES.get(k, k)} of `{TARGET}`, He et al.'s {best['threat']} "
                f"recovers more (SSIM {best['ssim']:.2f} {_ci(best['ssim_ci'], '.2f')}) than the "
                f"leak table's strongest attack ({leak['threat']}, SSIM {leak['ssim']:.2f} "
                f"{_ci(leak['ssim_ci'], '.2f')}): the leak table understates that split's leak."
            )
    return lines


def _in_range(r: Mapping) -> bool:
    return (
        -1 <= r["ssim"] <= 1
        and 0 < r["psnr"] <= 100
        and 0 <= r["recognisable"] <= 1
        and 0 <= r["accuracy"] <= 1
        and r["psnr_ci"][0] - ROUNDING <= r["psnr"] <= r["psnr_ci"][1] + ROUNDING
        and r["ssim_ci"][0] - ROUNDING <= r["ssim"] <= r["ssim_ci"][1] + ROUNDING
    )


def gates(metrics: Mapping, params: Mapping) -> list[Claim]:
    """The notebook's quality gates (thresholds from ``params``)."""
    rows, s = metrics["rows"], metrics["settings"]["defence_split"]
    bad = [f"{r['target']} {r['threat']} split {r['split']}" for r in rows if not _in_range(r)]
    found = [
        Claim("every score in range" + (f" (not {', '.join(bad[:5])})" if bad else ""), not bad)
    ]
    for name, device in metrics["devices"].items():
        found += (
            _audit_gates(metrics, name, device)
            if "audit" in device
            else _device_gates(metrics, params, name, device, s)
        )
    eps = [r["epsilon"] for r in rows if "epsilon" in r]
    found.append(Claim(f"every DP budget positive ({eps})", all(e > 0 for e in eps)))
    return found + (_he_gates(metrics["he_lenet"], params) if metrics.get("he_lenet") else [])


def _he_gates(he: Mapping, params: Mapping) -> list[Claim]:
    """He et al.'s table: every attacker scored at both splits on ``n_anchor`` images; the white-box
    rMLE at or above their number at the first convolution (PSNR and SSIM, from the intervals)."""
    found = he["comparisons"]
    scored = {(c["threat"], c["split"]) for c in found if c["n_images"] >= params["n_anchor"]}
    wanted = {(t, k) for t in HE_ATTACKERS for k in SPLIT_NAMES}
    rmle = next(c for c in found if c["threat"] == RMLE and c["split"] == 1)
    gates = [
        Claim(
            f"He et al.'s LeNet: every attacker scored at both splits on {params['n_anchor']} "
            f"images (missing: {sorted(wanted - scored)})",
            scored >= wanted,
        )
    ]
    if rmle["anchor_psnr"] is None:  # another dataset than theirs: nothing to compare with
        return gates
    verdicts = (rmle["psnr_verdict"], rmle["ssim_verdict"], rmle["their_ssim_verdict"])
    return gates + [
        Claim(
            f"He et al.'s LeNet, conv1: rMLE {rmle['psnr']:.1f} dB / SSIM {rmle['ssim']:.3f} at or "
            f"above their {rmle['anchor_psnr']} / {rmle['anchor_ssim']} ({', '.join(verdicts)})",
            FALLS_SHORT not in verdicts,
        )
    ]


def _audit_gates(metrics: Mapping, name: str, device: Mapping) -> list[Claim]:
    """A user's network (notebook 09 as an audit): every attacker scored at every split of the
    device, every defence that ran scored against its adaptive attacker. The study's claims (its
    own targets' leaks) are not gated on a network it did not design."""
    rows = [r for r in metrics["rows"] if r["target"] == name]
    scored = {(r["threat"], r["split"]) for r in rows if r["defence"] == "none"}
    wanted = {(t, k) for t in THREATS if t != "analytic" for k in device["splits"]}
    defended = {r["defence"] for r in rows if r["threat"].endswith("(adaptive)")}
    return [
        Claim(
            f"audited `{name}`: every attacker scored at every split (missing: "
            f"{sorted(wanted - scored)})",
            scored >= wanted,
        ),
        Claim(
            f"audited `{name}`: an adaptive attacker against every defence that ran ("
            f"{', '.join(sorted(defended))}; left out: "
            f"{', '.join(device['audit']['left_out']) or 'none'})",
            bool(defended) and not defended & set(device["audit"]["left_out"]),
        ),
    ]


def audit_notes(metrics: Mapping) -> list[str]:
    """Markdown lines on each audited network: what it is, where it was split, which attacker
    wins there, the analytic inverse, and the defences left out and why."""
    lines = []
    for name, device in metrics["devices"].items():
        if "audit" not in device:
            continue
        a, s = device["audit"], device["splits"][-1]
        best = _undefended(metrics, name, s)
        lines.append(
            f"- Audited `{a['model']}` ({len(a['layers'])} layers, weights {a['weights']}; "
            f"accuracy {device['accuracy']:.2%}), split after layer {a['split_layers']} (split "
            f"{s} here): the strongest attacker is {best['threat']}, SSIM {best['ssim']:.2f} "
            f"{_ci(best['ssim_ci'], '.2f')}, {best['recognisable']:.0%} recognisable. The "
            f"analytic inverse: {a['analytic']}."
        )
        lines += [
            f"- Left out for `{name}`: {kind}, which {why}." for kind, why in a["left_out"].items()
        ]
    return lines


def _device_gates(
    metrics: Mapping, params: Mapping, name: str, device: Mapping, s: int
) -> list[Claim]:
    rows = metrics["rows"]
    found = [
        Claim(
            f"`{name}`: a working device, accuracy {device['accuracy']:.2%} >= "
            f"{MIN_DEVICE_ACCURACY:.0%}",
            device["accuracy"] >= MIN_DEVICE_ACCURACY,
        )
    ]
    if device["conv"]:  # the CNNs: their first block is the anchor's first conv
        top = _undefended(metrics, name, 1)
        free = _undefended(metrics, name, 1, threat="inverse net, data-free")
        floor = (
            HE_2019_SPLIT_PSNR["inverse net, N(0, 1) noise", 1].value
            + params["min_datafree_margin_db"]
        )
        found += [
            Claim(
                f"`{name}` split 1: the strongest attack {top['psnr']:.1f} dB >= "
                f"{params['min_split1_psnr']:g} dB",
                top["psnr"] >= params["min_split1_psnr"],
            ),
            Claim(
                f"`{name}` split 1: the data-free attack's interval from {free['psnr_ci'][0]:.1f} "
                f"dB >= {floor:.2f} dB (the anchor's noise-trained inverse, plus the margin)",
                free["psnr_ci"][0] >= floor,
            ),
        ]
    splits = device["splits"]
    first, last = _undefended(metrics, name, splits[0]), _undefended(metrics, name, splits[-1])
    found.append(
        Claim(
            f"`{name}`: the deepest split leaks least (SSIM {first['ssim']:.2f} at split "
            f"{splits[0]}, {last['ssim']:.2f} at {splits[-1]})",
            first["ssim"] >= last["ssim"],
        )
    )
    for kind in ("gaussian", "laplace"):  # more noise: less privacy lost, less accuracy kept
        weak, strong = (
            strongest(
                rows,
                target=name,
                split=s,
                defence=kind,
                strength=float(v),
                inputs=metrics["dataset"],
            )  # fmt: skip
            for v in (min(params["noise_strengths"]), max(params["noise_strengths"]))
        )
        found.append(
            Claim(
                f"`{name}` {kind}: more noise, SSIM {weak['ssim']:.2f} -> {strong['ssim']:.2f}, "
                f"accuracy {weak['accuracy']:.2%} -> {strong['accuracy']:.2%}",
                strong["ssim"] <= weak["ssim"]
                and strong["accuracy"] <= weak["accuracy"] + NOISE_ACCURACY_SLACK,
            )
        )
    return found


def headline(metrics: Mapping) -> str:
    """README's one-line finding of notebook 09: per target, the leak at its first split and the
    configuration to deploy."""
    parts = []
    for target, device in metrics["devices"].items():
        r = _undefended(metrics, target, device["splits"][0])
        c = metrics["recommended"][target]
        verdict_ = {
            "holds": "holds",
            "costs more": f"hides at {c['accuracy_loss']:.1%} of accuracy lost",
            "leaks": f"still {c['recognisable']:.0%} recognisable",
        }[c["status"]]
        parts.append(
            f"`{target}` split {device['splits'][0]}: {r['recognisable']:.0%} recognisable "
            f"({r['threat']}, {r['psnr']:.1f} dB); deploy split {c['split']}, {_setting(c)} "
            f"({verdict_})"
        )
    return "; ".join(parts)
