"""Notebook 02's stages (reversenet_utils.pseudo_inverse) on small untrained MLPs, and its claims
(claims.pseudo_inverse) on fixture metrics: every branch."""

from __future__ import annotations

import copy

import matplotlib
import pytest
import torch
from torch import nn

from reversenet_utils import pseudo_inverse as pi
from reversenet_utils.artifacts import checkpoint_path, save_checkpoint
from reversenet_utils.claims import pseudo_inverse as claims
from reversenet_utils.data import MNISTSplit
from reversenet_utils.injectivity import injectivity_map, injectivity_row
from reversenet_utils.models import build_target
from reversenet_utils.progressive import split_blocks
from reversenet_utils.train import load_target

matplotlib.use("Agg")

PARAMS = {
    "target": "mlp_leaky",
    "square_target": "mlp_leaky_square",
    "sigmoid_target": "mlp_sigmoid",
    "damping_grid": [0.01, 1.0],
    "eps": 1e-6,
    "n_show": 4,
    "pool_images": 4,
    "injectivity_targets": ["cnn_nopool"],
    "injectivity_images": 2,
    "injectivity_steps": 5,
    "injectivity_depths": 1,
    "min_prototype_confidence": 0.9,
}


def test_parameters_are_checked_beyond_their_types() -> None:
    pi.check_parameters(PARAMS)
    with pytest.raises(ValueError) as err:
        pi.check_parameters({**PARAMS, "damping_grid": [0.0], "injectivity_targets": ["judge_cnn"]})
    assert "damping_grid must be positive ridges" in str(err.value)
    assert "injectivity_targets must be one or more of" in str(err.value)


def _mlps() -> tuple[nn.Sequential, nn.Sequential, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = build_target("mlp_leaky").eval().requires_grad_(False)
    square = build_target("mlp_leaky_square").eval().requires_grad_(False)
    return net, square, torch.rand(64, 1, 28, 28), torch.arange(64) % 10


def test_the_pieces_solvers_exact_case_and_preimage() -> None:
    net, square, x, _ = _mlps()
    solvers = {"narrow": pi.compare_solvers(net[1], x), "square": pi.compare_solvers(square[1], x)}
    assert solvers["narrow"]["pinv"]["relative residual"] < 1e-4
    assert solvers["square"]["max |pinv - lstsq|"] < 1e-2
    header, rows, align = pi.solver_table(solvers)
    assert len(rows) == 4 and len(header) == len(align) == 6
    exact = pi.exact_case(square, x)
    assert exact["max_abs_err_float64"] < 1e-8 and set(exact["condition_numbers"]) == {
        "layer 1",
        "layer 3",
        "layer 5",
    }
    pre, logits = pi.preimage_check(net, x)
    assert pre["relative_error_net_of_inverse"] < 1e-3 and 0.5 < pre["null_space_energy_fraction"]
    assert logits.shape == (64, 10)


def test_the_prior_depth_curves_domains_and_prototypes() -> None:
    net, square, x, y = _mlps()
    train = MNISTSplit(torch.rand(120, 1, 28, 28), torch.arange(120) % 10)
    prior = pi.fit_prior(net, train.images, [0.01, 1.0], held_out=40)
    names = pi.depth_names(net)
    assert set(prior["damping"]) == set(names) and prior["seconds"] >= 0
    assert len(pi.damping_figure(prior, [0.01, 1.0], names).axes) == 1
    curves = pi.depth_curves({"n": net, "s": square}, prior, x, y)
    assert list(curves) == ["n, pinv", "n, prior pre-image", "s, pinv"]
    assert len(pi.depth_curves_figure(curves, names, "s", "t").axes) == 3
    assert "prior pre-image" in pi.depth_table(curves, names)
    rows = pi.reconstruction_rows(net, prior, x[:3])
    assert list(rows) == ["original", "pinv (layer 1)", "prior (layer 1)", "pinv (logits)",
                          "prior (logits)"]  # fmt: skip
    sigmoid = build_target("mlp_sigmoid").eval().requires_grad_(False)
    domain = pi.sigmoid_domain(sigmoid, net, x, y, 1e-6)
    assert domain["finite"] and all(v == 0 for v in domain["leaky_clamped"].values())
    header, body = pi.domain_table(domain)
    assert len(body) == len(domain["counts"])
    protos = pi.class_prototypes(net, prior, train)
    assert protos["images"]["pinv"].shape == (10, 1, 28, 28) and protos["finite"]


def test_convolutions_and_the_injectivity_map(ctx) -> None:
    torch.manual_seed(0)
    nopool = build_target("cnn_nopool").eval().requires_grad_(False)
    pooled = build_target("cnn_pool").eval().requires_grad_(False)
    x, y = torch.rand(6, 1, 28, 28), torch.arange(6)
    conv, inverse = pi.conv_inversions(nopool, pooled, x, y, pool_images=3)
    assert (
        conv["cnn_nopool_block1"]["n_images"] == 6
        and conv["cnn_pool_block1_with_indices"]["n_images"] == 3
    )
    assert len(pi.conv_table(conv)[1]) == 2
    # an untrained mlp_relu saved as the target (load_target would otherwise train it)
    save_checkpoint(build_target("mlp_relu"), checkpoint_path(ctx, "mlp_relu"),
                    {"name": "mlp_relu", "dataset": ctx.dataset})  # fmt: skip
    rows = pi.injectivity_rows(ctx, ["mlp_relu"], x[:2], depths=0, steps=3)  # rows in 2 processes
    assert [r["depth"] for r in rows] == [1, 2]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker process runs: the same sums
    try:
        here = injectivity_map("mlp_relu", split_blocks(load_target(ctx, "mlp_relu"), (3, 4)),
                               x[:2], steps=3)  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert [{**r, "seconds": 0} for r in rows] == [{**r, "seconds": 0} for r in here]
    with pytest.raises(ValueError, match="k must be a block boundary, 1..2, got 3"):
        injectivity_row("mlp_relu", split_blocks(build_target("mlp_relu"), (3, 4)), 3, x[:2])
    header, body, align = pi.injectivity_table(rows)
    assert len(body) == 2 and len(header) == len(align)
    assert len(pi.injectivity_figure(rows, 2, 3).axes) == 1


def _report(psnr: float, ssim: float = 0.5, reclass: float = 0.5) -> dict:
    return {"psnr": psnr, "ssim": ssim, "reclass": reclass}


def _metrics() -> dict:
    curve = {str(d): _report(10.0 + d) for d in range(1, 6)}
    prior = {str(d): _report(14.0 + d) for d in range(1, 6)}
    square = {str(d): _report(100.0) for d in range(1, 6)}
    injectivity = [
        {"target": "cnn_nopool", "depth": 1, "features": 3136, "pixels": 784, "rank": 784,
         "rank_max": 784, "recovered": True, "recovered_psnr": 99.0},
        {"target": "cnn_pool", "depth": 1, "features": 3136, "pixels": 784, "rank": 784,
         "rank_max": 784, "recovered": True, "recovered_psnr": 80.0},
        {"target": "mlp_relu", "depth": 1, "features": 500, "pixels": 784, "rank": 500,
         "rank_max": 500, "recovered": False, "recovered_psnr": 20.0},
        {"target": "cnn_pool", "depth": 3, "features": 1568, "pixels": 784, "rank": 700,
         "rank_max": 720, "recovered": False, "recovered_psnr": 30.0},
    ]  # fmt: skip
    return {
        "exact": {"max_abs_err_float32": 1e-6, "max_abs_err_float64": 1e-13},
        "preimage": {"relative_error_net_of_inverse": 1e-6, "same_prediction": 1.0,
                     "relative_error_inverse_of_net": 0.9, "null_space_energy_fraction": 0.8},
        "pinv": curve["5"],
        "regularised": {**prior["5"], "damping": 1.0},
        "depth_curves": {"mlp_leaky, pinv": curve, "mlp_leaky, prior pre-image": prior,
                         "mlp_leaky_square, pinv": square},
        "chosen_damping": {str(d): 0.1 for d in range(1, 6)},
        "sigmoid_domain": {"counts": {"1": {"seen": 10, "clamped": 2}}, "finite": True},
        "conv": {"cnn_nopool_block1": {"psnr": 100.0, "max_abs_err_float32": 1e-6},
                 "cnn_pool_block1_with_indices": {"psnr": 70.0, "max_abs_err_float32": 1e-5}},
        "injectivity": injectivity,
        "prototypes": {"confidence": [0.99] * 10, "confidence_clipped": [0.9] * 4 + [0.1] * 6,
                       "finite": True},
        "dataset_title": "MNIST",
    }  # fmt: skip


def test_the_claims_hold_on_good_numbers_and_say_so() -> None:
    m = _metrics()
    assert all(g.holds for g in claims.gates(m, PARAMS)), [g.text for g in claims.gates(m, PARAMS)]
    assert claims.exact_inverse(m).holds and claims.null_space_loss(m).holds
    lines = claims.conclusion(m, PARAMS)
    assert "raises" in lines[2] and "4 of 10 classes" in lines[1] and lines[-1].endswith("finite.")
    found = claims.map_findings(m, {"injectivity_steps": 5})
    assert "cnn_nopool k = 1" in found[0] and "mlp_relu k = 1" in found[1]
    assert "cnn_pool k = 3" in found[2]
    assert "Exact case" in claims.summary(m, PARAMS) and "2 of 4 block" in claims.headline(m)


def test_every_gate_fails_on_the_numbers_that_break_it() -> None:
    m = copy.deepcopy(_metrics())
    m["exact"] |= {"max_abs_err_float32": 1.0, "max_abs_err_float64": 1e-3}
    m["preimage"] |= {"same_prediction": 0.5, "relative_error_inverse_of_net": 0.1,
                      "null_space_energy_fraction": 0.2}  # fmt: skip
    m["regularised"]["psnr"] = m["pinv"]["psnr"]
    m["depth_curves"]["mlp_leaky, prior pre-image"]["2"]["psnr"] = 0.0
    m["prototypes"] |= {"confidence": [0.5] * 10, "finite": False}
    m["conv"]["cnn_nopool_block1"]["psnr"] = 40.0
    m["conv"]["cnn_pool_block1_with_indices"]["psnr"] = 40.0
    m["injectivity"][0]["recovered"] = False
    m["injectivity"][2]["recovered"] = True
    m["sigmoid_domain"]["finite"] = False
    failed = [g.text for g in claims.gates(m, PARAMS) if not g.holds]
    assert len(failed) == len(claims.gates(m, PARAMS)), failed
    assert any("not from layers [2]" in t for t in failed) and any(
        "not cnn_nopool" in t for t in failed
    )
    assert not claims.exact_inverse(m).holds and not claims.null_space_loss(m).holds
    lines = claims.conclusion(m, PARAMS)
    assert "does not raise" in lines[2] and "**not** finite" in lines[-1]
    assert claims.where([]) == "none"
