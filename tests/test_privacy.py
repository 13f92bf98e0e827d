"""Notebook 09's stages (reversenet_utils.privacy) on a tiny device and data, and its claims
(claims.privacy) on fixture metrics: every branch."""

from __future__ import annotations

import copy

import matplotlib
import pytest
import torch

from reversenet_utils import privacy
from reversenet_utils.anchors import HE_2019_SPLIT_PSNR
from reversenet_utils.claims import privacy as claims
from reversenet_utils.data import MNISTSplit
from reversenet_utils.frontier import frontier_points, recommend
from reversenet_utils.models import build_target

matplotlib.use("Agg")

PARAMS = {
    "dataset": "mnist", "targets": ["mlp_relu"], "device_epochs": 1, "n_eval": 8, "n_opt": 2,
    "opt_steps": 2, "attack_steps": 2, "defence_split": 1, "defence_attack_steps": 2,
    "noise_strengths": [0.5, 4.0], "dropout_rates": [0.5], "quant_bits": [2],
    "nopeek_weights": [1.0], "dp_noise": [1.0], "adversarial_weights": [1.0], "defence_epochs": 1,
    "recognisable_ssim": 0.3,
    "max_accuracy_loss": 0.01, "min_split1_psnr": 15.0, "min_datafree_margin_db": 3.0, "seed": 0,
    "anchor_table": True, "n_anchor": 8, "rmle_steps": 2,
}  # fmt: skip


def test_parameters_are_checked_beyond_their_types() -> None:
    privacy.check_parameters(PARAMS)
    with pytest.raises(ValueError) as err:
        privacy.check_parameters({**PARAMS, "defence_split": 2, "recognisable_ssim": 1.5})
    assert "defence_split=2 must be a split" in str(err.value)
    assert "recognisable_ssim must be in (0, 1)" in str(err.value)
    with pytest.raises(ValueError, match="targets must be targets with block boundaries"):
        privacy.check_parameters({**PARAMS, "targets": ["judge_cnn"]})


def _data(n: int) -> MNISTSplit:
    g = torch.Generator().manual_seed(0)
    return MNISTSplit(torch.rand(n, 1, 28, 28, generator=g), torch.arange(n) % 10)


def test_a_device_is_attacked_then_defended(ctx) -> None:
    owner, attacker = privacy.split_halves(_data(64), torch.Generator().manual_seed(0))
    assert len(owner) == 32 and attacker.images.shape == (32, 1, 28, 28) and len(attacker) == 32
    test = _data(16)
    x, y = test.images[:8], test.labels[:8]
    judge = build_target("judge_cnn").eval()
    inputs = {"mnist": (x, y), "fashion_mnist": (x.flip(-1), None)}
    device, net, chains, rows, recons = privacy.attack_device(
        ctx, "mlp_relu", owner, attacker.images, test, inputs, judge, PARAMS
    )
    assert device["splits"] == [1] and not device["conv"] and len(chains) == 3
    threats = {(r["inputs"], r["threat"]) for r in rows}
    assert ("fashion_mnist", "inverse net, data-free") in threats
    assert ("mnist", "analytic") in threats and ("mnist", "optimisation") in threats
    assert all("reclass" not in r for r in rows if r["inputs"] == "fashion_mnist")  # no judge
    devices = {"mlp_relu": device}
    assert "inverse net, same data" in privacy.leak_table(rows, devices, "mnist")
    fig = privacy.leaks_figure(rows, {"mlp_relu": recons}, devices, x, "mnist", "MNIST")
    assert len(fig.axes) == 2
    naive = chains["inverse net, other data"]
    defended = privacy.defend_device(ctx, "mlp_relu", net, device, naive, owner, attacker.images,
                                     test, (x, y), judge, PARAMS)  # fmt: skip
    assert device["defence_settings"] == 9 and device["defence_epochs"] == 1
    kinds = {(r["defence"], r["threat"].split("(")[-1][:-1]) for r in defended}
    assert ("gaussian", "naive") in kinds and ("dp", "naive") not in kinds
    assert all(r["epsilon"] > 0 for r in defended if r["defence"] == "dp")
    assert all(0 < r["adversary_mse"] <= 1 for r in defended if r["defence"] == "adversarial")
    all_rows = rows + defended
    assert len(privacy.privacy_utility_figure(all_rows, PARAMS, "MNIST").axes) == 1
    assert privacy.defence_table(all_rows, PARAMS).count("`mlp_relu`") == 9
    journal = privacy.journal_anchors(all_rows, ["mlp_relu"], 1)
    assert len(journal) == 2 and "holds?" in privacy.journal_table(journal)


def test_two_devices_share_one_pool_of_chains_and_each_keeps_its_own(ctx) -> None:
    """attack_devices trains every device's chains together; each device gets its three, trained
    through its own blocks, and the rows of both."""
    owner, attacker = privacy.split_halves(_data(64), torch.Generator().manual_seed(0))
    test = _data(16)
    inputs = {"mnist": (test.images[:8], test.labels[:8])}
    judge = build_target("judge_cnn").eval()
    params = {**PARAMS, "targets": ["mlp_relu", "cnn_nopool"]}
    devices, nets, chains, rows, recons = privacy.attack_devices(
        ctx, ["mlp_relu", "cnn_nopool"], owner, attacker.images, test, inputs, judge, params
    )
    assert list(devices) == list(nets) == list(chains) == list(recons) == ["mlp_relu", "cnn_nopool"]
    assert all(len(c) == 3 for c in chains.values())
    assert len(chains["mlp_relu"]["inverse net, same data"].inverses) == 1  # one split
    assert len(chains["cnn_nopool"]["inverse net, same data"].inverses) == 3  # three splits
    assert {r["target"] for r in rows} == {"mlp_relu", "cnn_nopool"}
    assert {k for _, _, k in recons["cnn_nopool"]} == {1, 2, 3}


def test_devices_train_side_by_side_as_each_would_alone(ctx) -> None:
    """attack_devices trains its devices two at a time on one thread each: each gets the weights it
    gets alone on one thread (its own seeded start, its own batches)."""
    from reversenet_utils.defences import train_defended

    owner, test = _data(64), _data(16)
    inputs = {"mnist": (test.images[:8], test.labels[:8])}
    names = ["mlp_relu", "cnn_nopool"]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _, nets, *_ = privacy.attack_devices(ctx, names, owner, owner.images, test, inputs,
                                             build_target("judge_cnn").eval(), PARAMS)  # fmt: skip
        torch.set_num_threads(1)
        alone = {name: train_defended(ctx, name, owner, test, 1, seed=0)[0] for name in names}
    finally:
        torch.set_num_threads(threads)
    for name in names:
        assert all(torch.equal(a, b) for a, b in zip(alone[name].parameters(),
                                                      nets[name].parameters()))  # fmt: skip


def _r(
    target,
    split,
    threat,
    ssim,
    psnr=20.0,
    inputs="mnist",
    defence="none",
    strength=0.0,
    accuracy=0.99,
    **extra,
) -> dict:
    return {"target": target, "split": split, "threat": threat, "ssim": ssim,
            "ssim_ci": [ssim - 0.02, ssim + 0.02], "psnr": psnr, "psnr_ci": [psnr - 1, psnr + 1],
            "recognisable": ssim, "reclass": 0.9, "accuracy": accuracy, "inputs": inputs,
            "defence": defence, "strength": strength, "accuracy_loss": 0.0, **extra}  # fmt: skip


def _comparisons(rmle_psnr: float = 90.0) -> list[dict]:
    """He et al.'s table compared on fixture rows: every attacker at both splits."""
    from reversenet_utils.he_lenet import comparisons
    from reversenet_utils.labels import HE_ATTACKERS

    rows = [
        {"threat": t, "split": k, "psnr": p, "psnr_ci": [p - 0.5, p + 0.5], "ssim": q,
         "ssim_ci": [q - 0.01, q + 0.01], "ssim_recon_range": q, "ssim_recon_range_ci":
         [q - 0.01, q + 0.01], "n_images": 8}
        for t in HE_ATTACKERS
        for k, (p, q) in {1: (rmle_psnr if t == "rMLE" else 50.0, 0.999), 2: (12.0, 0.3)}.items()
    ]  # fmt: skip
    return comparisons(rows, "mnist")


def _metrics() -> dict:
    free = HE_2019_SPLIT_PSNR["inverse net, N(0, 1) noise", 1].value + 10
    rows = [
        _r("cnn", 1, "inverse net, other data", 0.9, 40.0),
        _r("cnn", 1, "inverse net, data-free", 0.8, free),
        _r("cnn", 2, "inverse net, other data", 0.4, 18.0),
        _r("cnn", 1, "optimisation", 0.7, 30.0, inputs="fashion_mnist"),
        _r("mlp", 1, "inverse net, other data", 0.5, 16.0),
        _r("mlp", 1, "inverse net, data-free", 0.2, 10.0),
        _r("mlp", 1, "analytic", 0.3, 12.0, inputs="fashion_mnist"),
    ]
    for name in ("cnn", "mlp"):
        for s, ssim, acc in ((0.5, 0.6, 0.99), (4.0, 0.2, 0.98)):
            for kind in ("gaussian", "laplace"):
                rows.append(_r(name, 1, "inverse net, other data (adaptive)", ssim, defence=kind,
                               strength=s, accuracy=acc))  # fmt: skip
        rows.append(_r(name, 1, "inverse net, other data (naive)", 0.1, defence="dropout",
                       strength=0.9))  # fmt: skip
        rows.append(_r(name, 1, "inverse net, other data (adaptive)", 0.5, defence="dropout",
                       strength=0.9))  # fmt: skip
        rows.append(_r(name, 1, "inverse net, other data (adaptive)", 0.5, defence="dp",
                       strength=1.0, epsilon=3.0))  # fmt: skip
    rows.append(_r("cnn", 1, "inverse net, other data (adaptive)", 0.08, defence="nopeek",
                   strength=4.0, accuracy=0.985) | {"accuracy_loss": 0.005})  # fmt: skip
    cheap = _r(
        "cnn", 1, "inverse net, other data (adaptive)", 0.2, defence="gaussian", strength=4.0
    )
    points = frontier_points(rows, "mnist")
    return {
        "dataset": "mnist", "shifted_dataset": "fashion_mnist", "rows": rows,
        "devices": {
            "cnn": {"accuracy": 0.99, "splits": [1, 2], "conv": True, "defence_settings": 5},
            "mlp": {"accuracy": 0.98, "splits": [1], "conv": False, "defence_settings": 5},
        },
        "he_lenet": {"comparisons": _comparisons()},
        "cheapest": {"cnn": cheap | {"accuracy_loss": 0.001}, "mlp": None},
        "frontier": points, "recommended": recommend(points, 0.3, 0.01),
        "settings": {"n_eval": 8, "n_opt": 2, "recognisable_ssim": 0.3, "defence_split": 1,
                     "max_accuracy_loss": 0.01},
    }  # fmt: skip


def test_the_claims_hold_on_good_numbers_and_say_what_stops_what() -> None:
    m = _metrics()
    gates = claims.gates(m, PARAMS)
    assert all(g.holds for g in gates), [g.text for g in gates if not g.holds]
    notes = claims.notes(m, "Fashion-MNIST")
    assert "from split 2, 40%" in notes[0] and "(its only split)" in notes[1]
    assert "only stop a naive attacker" in notes[2] and "`cnn` dropout 0.9" in notes[2]
    assert notes[3].startswith("- What to deploy on `cnn`: split 1, nopeek 4 (yes;")
    assert notes[4].startswith("- What to deploy on `mlp`: split 1, gaussian 4 (no: nothing")
    assert "at or above 5 of their 10" in notes[5]
    assert "below for rMLE at ReLU2 (12.0 dB / SSIM 0.30 against 15.10 / 0.600)" in notes[5]
    assert len(notes) == 6  # the leak table does not attack lenet_he here: nothing understated
    m["rows"] += [_r("lenet_he", 1, "optimisation", 0.5), _r("lenet_he", 2, "analytic", 0.9)]
    understated = claims.understated_leaks(m)  # split 1: rMLE's 0.999 above 0.5; split 2: not
    assert len(understated) == 1 and "At conv1 of `lenet_he`, He et al.'s rMLE" in understated[0]
    assert "(optimisation, SSIM 0.50 [0.48, 0.52])" in understated[0]
    answer = claims.privacy_answer(m, "MNIST")
    assert "| `cnn` | split 1, nopeek 4 | yes | 98.50% (-0.50%) |" in answer
    assert "| `mlp` | split 1, gaussian 4 | no: nothing tried hides" in answer
    headline = claims.headline(m)
    assert "deploy split 1, nopeek 4 (holds)" in headline and "(still 20% recognisable)" in headline


def test_the_gates_fail_and_the_notes_turn_on_other_numbers() -> None:
    m = copy.deepcopy(_metrics())
    m["devices"]["cnn"]["accuracy"] = 0.5
    for r in m["rows"]:
        if r["target"] == "cnn" and r["defence"] == "none" and r["inputs"] == "mnist":
            r["psnr"], r["psnr_ci"] = 5.0, [4.0, 6.0]
        if r["target"] == "cnn" and r["split"] == 2:
            r["ssim"] = 0.95
        if r["defence"] == "gaussian" and r["strength"] == 4.0:
            r["ssim"] = 0.9
        if r["defence"] == "dp":
            r["epsilon"] = 0.0
    m["rows"][3]["ssim"] = 2.0  # the shifted inputs' optimisation row: out of range
    failed = [g.text for g in claims.gates(m, PARAMS) if not g.holds]
    for start in ("every score in range", "`cnn`: a working device", "`cnn` split 1: the strongest",
                  "`cnn` split 1: the data-free", "`cnn`: the deepest", "`cnn` gaussian",
                  "every DP budget"):  # fmt: skip
        assert any(t.startswith(start) for t in failed), (start, failed)
    m["he_lenet"]["comparisons"] = _comparisons(rmle_psnr=20.0)
    m["he_lenet"]["comparisons"][0]["n_images"] = 4
    failed = [g.text for g in claims.gates(m, PARAMS) if not g.holds]
    assert any("rMLE 20.0 dB" in t for t in failed) and any("('rMLE', 1)" in t for t in failed)
    m = copy.deepcopy(_metrics())
    m["cheapest"] = {"cnn": None, "mlp": None}
    m["rows"] = [r for r in m["rows"] if "naive" not in r["threat"]]
    m["he_lenet"]["comparisons"] = [c for c in m["he_lenet"]["comparisons"] if c["split"] == 1]
    notes = claims.notes(m, "Fashion-MNIST")
    assert notes[2].startswith("- What to deploy on `cnn`") and notes[4].endswith("pairs.")
    m["he_lenet"] = None  # the table not run (anchor_table=False): no line, no gate
    assert len(claims.notes(m, "Fashion-MNIST")) == 4
    assert not any("He et al." in g.text for g in claims.gates(m, PARAMS))


def test_the_query_free_attacker_trains_a_shadow_and_inverts_through_it() -> None:
    """He et al.'s query-free attacker: a shadow device of the same layers, trained afresh under
    the frozen server part; the target is untouched; rMLE inverts through either."""
    from reversenet_utils.split import attack_by_rmle, train_shadow

    torch.manual_seed(0)
    net = build_target("cnn_nopool").requires_grad_(False).eval()
    before = copy.deepcopy(net.state_dict())
    shadow = train_shadow(net, 2, _data(64), epochs=1, seed=3)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not torch.equal(shadow[0].weight, net[0].weight)  # initialised afresh, then trained
    assert not any(p.requires_grad for p in shadow.parameters()) and not shadow.training
    again = train_shadow(net, 2, _data(64), epochs=1, seed=3)
    assert torch.equal(again[0].weight, shadow[0].weight)  # seeded
    x = _data(4).images
    with torch.no_grad():
        sent = net[:2](x)
    for blocks in ([net[:2]], [shadow]):
        recon = attack_by_rmle(blocks, sent, steps=3, tv_weight=1e-3, batch_size=2)
        assert recon.shape == x.shape and 0 <= recon.min() and recon.max() <= 1
    with pytest.raises(ValueError, match="end must split"):
        train_shadow(net, 0, _data(8))
    # the server's part stays in eval mode while the shadow trains under it (its batch norms keep
    # their statistics)
    from reversenet_utils.split import _Frozen

    frozen = _Frozen(torch.nn.Sequential(torch.nn.BatchNorm2d(2)))
    torch.nn.Sequential(torch.nn.Identity(), frozen).train()
    assert not frozen.training and not frozen.part[0].training
    with pytest.raises(ValueError, match="tv_weight"):
        attack_by_rmle([net[:2]], sent, steps=1, tv_weight=-1.0)
