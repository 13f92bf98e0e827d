"""Notebook 04's stages (reversenet_utils.zero_shot) on small untrained targets and a few images,
and its tables and figures on fixture rows: every branch."""

from __future__ import annotations

import matplotlib
import pytest
import torch

from reversenet_utils import zero_shot
from reversenet_utils.claims.zero_shot import anchor_table
from reversenet_utils.models import TARGETS, get_spec
from reversenet_utils.progressive import InverseChain, split_blocks, target_shapes

matplotlib.use("Agg")

PARAMS = {
    "targets": ["cnn_nopool", "cnn_pool", "mlp_relu"],
    "joint_targets": ["cnn_nopool"],
    "seed_targets": ["cnn_nopool"],
    "chain_steps": 0,
    "batch_size": 0,
    "lr": 0.0,
    "loss_weights": {},
    "n_synth": 4,
    "synth_steps": 1,
    "opt_images": 2,
    "opt_steps": 1,
    "sweep_images": 2,
    "sweep_steps": [1, 2],
    "logit_refine_steps": 1,
    "n_test": 8,
    "extra_seeds": 1,
}


def _nets(names=("cnn_pool", "mlp_relu")) -> tuple[dict, dict]:
    torch.manual_seed(0)
    nets = {n: get_spec(n).build().eval().requires_grad_(False) for n in names}
    return nets, {n: split_blocks(net, TARGETS[n].block_ends) for n, net in nets.items()}


def test_parameters_are_checked_and_every_wrong_one_named() -> None:
    zero_shot.check_parameters(PARAMS)
    bad = {**PARAMS, "targets": ["judge_cnn"], "extra_seeds": -1, "n_test": 0, "sweep_steps": [],
           "lr": -1.0, "opt_steps": 0}  # fmt: skip
    with pytest.raises(ValueError) as err:
        zero_shot.check_parameters(bad)
    for name in ("targets=", "joint_targets", "seed_targets", "extra_seeds", "n_test",
                 "sweep_steps", "lr must be >= 0", "opt_steps must be >= 1"):  # fmt: skip
        assert name in str(err.value)


def test_the_recipe_takes_overrides_and_each_targets_budget() -> None:
    recipe, steps = zero_shot.chain_recipe(PARAMS)
    assert set(recipe) == {"weights"} and steps == {
        n: TARGETS[n].chain_steps for n in PARAMS["targets"]
    }
    recipe, steps = zero_shot.chain_recipe({**PARAMS, "chain_steps": 5, "lr": 0.01, "batch_size": 8,
                                            "loss_weights": {"class_cycle": 0.0}})  # fmt: skip
    assert recipe["lr"] == 0.01 and recipe["batch_size"] == 8 and recipe["weights"].class_cycle == 0
    assert set(steps.values()) == {5}


def test_chain_runs_add_joint_and_unpooling_chains_where_they_apply() -> None:
    _, blocks = _nets(("cnn_nopool", "cnn_pool", "mlp_relu"))
    runs = zero_shot.chain_runs(blocks, ["cnn_nopool"])
    labels = {(r.target, r.label) for r in runs}
    assert ("cnn_nopool", "joint, real") in labels and ("cnn_pool", "joint, real") not in labels
    assert ("cnn_pool", "progressive, real, unpool") in labels
    assert not any(r.unpool for r in runs if r.target != "cnn_pool")
    assert sum(r.target == "mlp_relu" for r in runs) == 3  # the three regimes


def test_chains_train_score_and_give_seeds_and_pairs(tmp_root, ctx) -> None:
    nets, blocks = _nets()
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8) % 10
    synth = zero_shot.synthesize(nets, 4, steps=1, seed=0)
    assert synth["cnn_pool"].images.shape == (4, 1, 28, 28) and synth["mlp_relu"].seconds > 0
    inputs = zero_shot.training_inputs(x, synth, n=3)
    assert list(inputs) == ["real", "noise", "synthesized (cnn_pool)"]
    runs = [zero_shot.ChainRun("cnn_pool", "real"), zero_shot.ChainRun("mlp_relu", "real"),
            zero_shot.ChainRun("mlp_relu", "noise")]  # fmt: skip
    recipe, steps = {"batch_size": 4}, {"cnn_pool": 2, "mlp_relu": 2}
    chains, extra = zero_shot.train_chains(ctx, runs, nets, blocks, x, synth, steps, 0, recipe,
                                           ["mlp_relu"], 1)  # fmt: skip
    assert set(chains) == {(r.target, r.label) for r in runs}
    assert set(extra) == {("mlp_relu", "real", 1), ("mlp_relu", "noise", 1)}
    assert (tmp_root / "artifacts" / "inverses").is_dir()  # saved with the target's fingerprint
    assert {c.meta["notebook"] for c in chains.values()} == {"99_demo"}
    scores = zero_shot.score_chains(runs, chains, blocks, nets, x, y, seed=0)
    assert len(scores.rows) == 4 + 2 + 2 and set(scores.rates) == {
        ("cnn_pool", k) for k in range(1, 5)
    } | {("mlp_relu", 1), ("mlp_relu", 2)}
    per_seed = zero_shot.seed_scores(scores.per_image, extra, blocks, x)
    rows = zero_shot.with_seeds(scores.rows, per_seed, extra, seed=0)
    seeded = [r for r in rows if r["target"] == "mlp_relu"]
    assert all(r["seeds"] == [0, 1] and len(r["psnr_seeds"]) == 2 for r in seeded)
    assert all(
        "psnr_seeds" not in r and r["seeds"] == [0] for r in rows if r["target"] == "cnn_pool"
    )
    paired = zero_shot.paired_rows(per_seed)
    assert {(p["target"], p["a"], p["depth"], p["seeds"]) for p in paired} == {
        ("mlp_relu", "progressive, noise", 1, 2), ("mlp_relu", "progressive, noise", 2, 2)
    }  # fmt: skip
    assert zero_shot.recipe_used(chains, steps)["steps"] == steps
    shapes = {"cnn_pool": {"blocks": 4, "conv": True}, "mlp_relu": {"blocks": 2, "conv": False}}
    assert target_shapes(blocks) == shapes
    assert zero_shot.injectivity_rows(ctx, ["cnn_pool"]) == []  # notebook 02 has not run here


def test_speed_sweep_grids_and_ceiling_on_untrained_chains() -> None:
    nets, blocks = _nets()
    x, y = torch.rand(6, 1, 28, 28), torch.arange(6) % 10
    chains = {(n, zero_shot.REAL): InverseChain(bs).eval() for n, bs in blocks.items()}
    runs = [zero_shot.ChainRun(n, "real") for n in blocks]
    scores = zero_shot.score_chains(runs, chains, blocks, nets, x, y, seed=0)
    speed, shown = zero_shot.speed_against_optimisation("cnn_pool", chains, blocks, scores, x, 3, 1,
                                                        n_show=3)  # fmt: skip
    assert speed["depth"] == 2 and speed["speedup"] > 0 and shown["optimised"].shape[0] == 3
    points = zero_shot.feature_matching_sweep(chains, blocks, x[:2], [2, 1])
    starts = {(p["target"], p["depth"], p["start"]) for p in points}
    assert ("cnn_pool", 2, "learned") in starts and ("cnn_pool", 3, "learned") not in starts
    assert ("mlp_relu", 1, "learned") not in starts  # the hybrid: the CNNs' first two boundaries
    equal = zero_shot.equal_psnr_speedups(scores.rows, points, scores.rates)
    assert set(equal) == {f"{n}, k={k}" for n, k in scores.rates}
    assert "speed-up at equal PSNR" in zero_shot.equal_psnr_table(equal, 2)
    assert len(zero_shot.sweep_figure(points, equal, 2).axes) == 2
    grids = zero_shot.depth_grids(chains, blocks, x[:3])
    assert list(grids["mlp_relu"]) == ["original", zero_shot.REAL]
    assert grids["cnn_pool"][zero_shot.REAL].shape == (3, 1, 28, 28)
    ceiling = zero_shot.logit_ceiling(chains, nets, blocks, x, y, refine_steps=1)
    assert set(ceiling) == set(nets) and all(
        0 <= c["target_accuracy"] <= 1 for c in ceiling.values()
    )
    assert "gap to the ceiling" in zero_shot.ceiling_table(ceiling)
    assert len(zero_shot.psnr_by_depth_figure(scores.rows).axes) == 2
    assert "(logits)" in zero_shot.depth_table(scores.rows, "cnn_pool")


def _point(psnr: float, steps: int, rate: float) -> dict:
    return {"psnr": psnr, "steps": steps, "images_per_s": rate}


def test_equal_psnr_interpolates_starts_reached_or_reports_none() -> None:
    pts = [_point(10.0, 10, 100.0), _point(20.0, 100, 10.0)]
    hit = zero_shot.equal_psnr(pts, 15.0)  # halfway: the geometric means
    assert hit["steps"] == pytest.approx(10 * 10**0.5) and hit["images_per_s"] == pytest.approx(
        100 / 10**0.5
    )
    assert zero_shot.equal_psnr(pts, 5.0) == {"steps": 10, "images_per_s": 100.0}  # reached at once
    assert zero_shot.equal_psnr(pts, 30.0) == {"steps": None, "images_per_s": None}
    assert zero_shot.equal_psnr([], 1.0)["steps"] is None
    table = zero_shot.equal_psnr_table(
        {"t, k=1": {"learned_psnr": 30.0, "learned_images_per_s": 1e4, "optimisation_steps": None,
                    "optimisation_images_per_s": None, "speedup": None}}, 300
    )  # fmt: skip
    assert "not within 300" in table and "–" in table


def test_the_anchor_table_judges_only_where_an_anchor_exists() -> None:
    rows = [
        {"target": t, "chain": c, "depth": 2, "reclass": r, "reclass_ci": [r - 0.01, r + 0.01]}
        for t in ("a", "b")
        for c, r in (
            ("progressive, real", 0.9),
            ("progressive, noise", 0.5),
            ("progressive, synthesized", 0.6),
        )  # fmt: skip
    ]
    refined = {"reclass": 0.99, "reclass_ci": [0.985, 0.995]}
    metrics = {"rows": rows, "anchors": {"a": 0.95}, "targets": {t: {"blocks": 2} for t in "ab"},
               "logit_ceiling": {t: {"refined": refined} for t in "ab"}}  # fmt: skip
    table = anchor_table(metrics)
    a_line = next(line for line in table.splitlines() if line.startswith("| a"))
    b_line = next(line for line in table.splitlines() if line.startswith("| b"))
    assert (
        "falls short of the anchor" in a_line
        and "beats the anchor" in a_line
        and "60.00%" in a_line
    )
    assert "anchor" not in b_line

    # a margin that the test images' interval clears but another training seed could undo
    from reversenet_utils.thresholds import ACCURACY_RERUN_TOLERANCE

    metrics["anchors"]["a"] = 0.985 - ACCURACY_RERUN_TOLERANCE / 2
    a_line = next(line for line in anchor_table(metrics).splitlines() if line.startswith("| a"))
    assert "99.00% (98.50%-99.50%): matches the anchor" in a_line


def test_the_ceiling_is_reached_within_half_a_point_of_the_upper_end() -> None:
    from reversenet_utils.claims.zero_shot import ceiling_reached

    def ceiling(hi: float) -> dict:
        refined = {"reclass": hi - 0.002, "reclass_ci": [hi - 0.004, hi]}
        return {"logit_ceiling": {"t": {"target_accuracy": 0.99, "refined": refined}}}

    assert (
        ceiling_reached(ceiling(0.986)).holds
        and "`t` 98.4%" in ceiling_reached(ceiling(0.986)).text
    )
    assert not ceiling_reached(ceiling(0.98)).holds


def test_the_explorers_claim_reads_its_gate_from_merged_results() -> None:
    from reversenet_utils.claims.explore import update_in_time

    merged = {"latency": {"median_ms": 50.0}, "max_update_ms": 200.0}
    assert (
        update_in_time(merged).holds and not update_in_time(merged, {"max_update_ms": 10.0}).holds
    )
