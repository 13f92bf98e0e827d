"""Notebook 07's stages (reversenet_utils.benchmark) on small untrained targets, and its claims
(claims.benchmark) on fixture metrics: every branch."""

from __future__ import annotations

import copy

import matplotlib
import pytest
import torch

from reversenet_utils import benchmark
from reversenet_utils.claims import benchmark as claims
from reversenet_utils.labels import (
    CHAIN_NOISE,
    CHAIN_REAL,
    HYBRID,
    MATCHING,
    OPTIMISATION,
    PINV,
    PRIOR,
)
from reversenet_utils.models import TARGETS, build_target
from reversenet_utils.progressive import InverseChain, forward_features, split_blocks

matplotlib.use("Agg")

PARAMS = {
    "targets": ["mlp_leaky", "cnn_pool"], "judge": "judge_cnn", "n_test": 8, "opt_images": 4,
    "n_show": 2, "prior_images": 4, "damping_grid": [0.1], "prior_grid": [1e-3], "opt_steps": 1,
    "lbfgs_steps": 2, "hybrid_steps": 1, "chain_steps": 0, "min_judge_accuracy": 0.0,
    "block1_judge_margin": 0.05, "min_block1_matching_db": 60.0, "logit_chain_margin_db": 0.0,
}  # fmt: skip


def test_parameters_are_checked_beyond_their_types() -> None:
    benchmark.check_parameters(PARAMS)
    with pytest.raises(ValueError) as err:
        benchmark.check_parameters({**PARAMS, "judge": "mlp_leaky", "n_show": 9, "opt_images": 9})
    text = str(err.value)
    assert "judge must be a registered target, independent" in text and "opt_images must be" in text


def test_the_stages_fill_score_and_draw() -> None:
    torch.manual_seed(0)
    nets = {n: build_target(n).eval().requires_grad_(False) for n in ("mlp_leaky", "cnn_pool")}
    blocks = {n: split_blocks(net, TARGETS[n].block_ends) for n, net in nets.items()}
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8)
    train = torch.rand(60, 1, 28, 28)
    features = {n: forward_features(blocks[n], x)[0] for n in nets}
    recs = benchmark.Reconstructions()
    damping = benchmark.analytic_inversions(recs, nets, features, train, [0.1], held_out=20)
    assert (PINV, "mlp_leaky", 1) in recs.images and (PINV, "cnn_pool", 1) not in recs.images
    assert all(n == "mlp_leaky" for n, _ in damping)
    # a convolutional boundary has no prior: its prior pre-image is pinv's, inverted once
    nopool = build_target("cnn_nopool").eval().requires_grad_(False)
    conv_features = forward_features(split_blocks(nopool, TARGETS["cnn_nopool"].block_ends), x)[0]
    benchmark.analytic_inversions(recs, {"cnn_nopool": nopool}, {"cnn_nopool": conv_features},
                                  train, [0.1], held_out=20)  # fmt: skip
    assert recs.get((PRIOR, "cnn_nopool", 1))[0] is recs.get((PINV, "cnn_nopool", 1))[0]
    assert recs.get((PRIOR, "cnn_nopool", 3))[0] is not recs.get((PINV, "cnn_nopool", 3))[0]
    benchmark.pooling_index_inversions(recs, blocks, x[:4])
    assert recs.images["pinv, pooling indices", "cnn_pool", 1].shape == (4, 1, 28, 28)
    chains = {(n, CHAIN_REAL): InverseChain(bs).eval() for n, bs in blocks.items()}
    for (n, label), chain in chains.items():
        recs.run((label, n, 1), lambda f, c=chain: c(f, 1), features[n][1])
    weights = benchmark.optimisation_inversions(recs, blocks, chains, features, x, train, PARAMS)
    assert (OPTIMISATION, "cnn_pool", 4) in recs.images and (HYBRID, "mlp_leaky", 3) in recs.images
    assert set(weights) <= {(n, k) for n in nets for k in (1, 3, 4)}  # where matching is not exact
    judge = build_target("judge_cnn").eval()
    rows = benchmark.score(recs, {**nets, "cnn_nopool": nopool}, judge, x, y)
    twins = [r for r in rows if r["target"] == "cnn_nopool" and r["depth"] == 1]
    assert {r["method"] for r in twins} == {PINV, PRIOR}  # scored once, a row for each
    assert twins[0]["psnr"] == twins[1]["psnr"] and twins[0]["psnr_ci"] == twins[1]["psnr_ci"]
    rows = [r for r in rows if r["target"] != "cnn_nopool"]
    assert [r["target"] for r in rows] == sorted((r["target"] for r in rows),
                                                 key=["mlp_leaky", "cnn_pool"].index)  # fmt: skip
    assert "(n=4)" in benchmark.method_table(rows, "cnn_pool", 8)
    assert len(benchmark.quality_speed_figure(rows).axes) == 2
    galleries = benchmark.gallery_panels(recs, blocks, x, 2)
    assert galleries["block1"]["cnn_pool, k = 1"][PINV] is None
    assert galleries["logits"]["mlp_leaky, k = 3"]["original"].shape == (2, 1, 28, 28)


def _row(method, target, k, psnr, logits=False, judge=0.9, target_reclass=0.9, rate=1000.0, n=8):
    return {"method": method, "target": target, "depth": k, "depth_is_logits": logits,
            "psnr": psnr, "psnr_ci": [psnr - 0.5, psnr + 0.5], "ssim": 0.5,
            "reclass_target": target_reclass, "reclass_target_ci": [target_reclass - 0.02,
                                                                    target_reclass + 0.02],
            "reclass_independent": judge, "images_per_s": rate, "n_images": n}  # fmt: skip


def _metrics() -> dict:
    rows = []
    for t, K in (("mlp_leaky", 3), ("cnn_pool", 4)):
        rows += [
            _row(CHAIN_REAL, t, 1, 30.0), _row(CHAIN_REAL, t, K, 14.0, True, 0.95, rate=5000),
            _row(CHAIN_NOISE, t, 1, 28.0), _row(CHAIN_NOISE, t, K, 12.0, True, 0.6),
            _row(OPTIMISATION, t, 1, 20.0, rate=5.0),
            _row(OPTIMISATION, t, K, 10.0, True, rate=5.0),
            _row(HYBRID, t, 1, 40.0, rate=50.0),
            _row(MATCHING, t, 1, 70.0 if t == "cnn_pool" else 25.0, rate=3.0),
        ]  # fmt: skip
    rows += [_row(PINV, "mlp_leaky", 1, 15.0), _row(PRIOR, "mlp_leaky", 1, 20.0),
             _row(PINV, "mlp_leaky", 3, 5.0, True, 0.3, 0.99),
             _row(PRIOR, "mlp_leaky", 3, 9.0, True)]  # fmt: skip
    return {
        "rows": rows,
        "judge": {"name": "judge_cnn", "test_accuracy": 0.99},
        "targets": {
            "mlp_leaky": {"blocks": 3, "conv": False},
            "cnn_pool": {"blocks": 4, "conv": True},
        },
        "dataset": "mnist",
        "dataset_title": "MNIST",
    }


def test_the_claims_hold_on_good_numbers() -> None:
    m = _metrics()
    gates = claims.gates(m, {**PARAMS, "block1_judge_margin": 0.1})
    assert all(g.holds for g in gates), [g.text for g in gates if not g.holds]
    assert claims.prior_beats_pinv(m).holds and claims.judge_exposes_target(m).holds
    assert not claims.matching_recovers_block1(m, ("cnn_pool", "mlp_leaky")).holds
    assert claims.matching_recovers_block1(m, ("cnn_pool",)).holds
    found = claims.findings(m)
    assert "cnn_pool**: from block 1 feature matching (L-BFGS) (70.0 dB" in found[1]
    assert "beats hybrid" in found[1] and found[-1].startswith("- from the logits, the target")
    concl = claims.conclusion(m)
    assert "inverted to float precision by feature matching" in concl[0]
    assert (
        "fewer features than pixels" in concl[1] and "pinv from the logits: 5.0–5.0 dB" in concl[2]
    )
    assert "judge 30%" in concl[3] and "-2.0 dB at block 1" in concl[4]
    assert "methods × 2 targets" in claims.headline(m)


def test_every_gate_and_branch_fails_or_turns() -> None:
    m = copy.deepcopy(_metrics())
    m["judge"]["test_accuracy"] = 0.5
    for r in m["rows"]:
        if r["method"] == PRIOR:
            r["psnr"] = 1.0
        if r["method"] == CHAIN_REAL:
            r["images_per_s"], r["reclass_independent"] = 1.0, 0.1
            if r["depth_is_logits"]:
                r["psnr"] = 0.5
        if r["method"] == MATCHING:
            r["psnr"] = 30.0
    m["rows"][0]["ssim"] = 2.0
    for r in m["rows"]:
        r["reclass_independent"] = 0.1  # no block-1 reconstruction recognisable to the judge
    held = {g.text: g.holds for g in claims.gates(m, {**PARAMS, "lbfgs_steps": 100})}

    def fails(start: str) -> bool:
        found = [ok for text, ok in held.items() if text.startswith(start)]
        return bool(found) and not any(found)

    assert fails("the judge's accuracy") and fails("every score in range")
    assert fails("mlp_leaky k = 1: prior pre-image") and fails("mlp_leaky k = 3: prior pre-image")
    assert fails("cnn_pool k = 1: the real-image chain") and fails("mlp_leaky: from the logits")
    assert fails("cnn_pool: feature matching at block 1") and fails("cnn_pool: from block 1")
    assert not any(text.startswith("mlp_leaky: feature matching") for text in held)  # an MLP
    concl = claims.conclusion(m)
    assert "no method reaches float precision" in concl[0]
    for r in m["rows"]:  # two exact reconstructions: a match, never "beats"
        if r["target"] == "cnn_pool" and r["depth"] == 1 and r["method"] in (MATCHING, HYBRID):
            r["psnr"], r["psnr_ci"] = 90.0, [89.0, 91.0]
    assert "matches" in claims.top_two(m, "cnn_pool", False)
    # a trained chain 0.5 dB above another method, intervals 0.2 wide: apart over the test images,
    # not once a re-run of its training is allowed for
    rows = [_row(CHAIN_REAL, "t", 1, 20.5), _row(OPTIMISATION, "t", 1, 20.0)]
    for r in rows:
        r["psnr_ci"] = [r["psnr"] - 0.1, r["psnr"] + 0.1]
    assert "matches optimisation" in claims.top_two({"rows": rows}, "t", False)
    rows[0]["method"] = PRIOR  # neither trained: the intervals alone
    assert "beats optimisation" in claims.top_two({"rows": rows}, "t", False)
