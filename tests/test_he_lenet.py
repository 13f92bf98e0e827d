"""He et al.'s LeNet under their attackers (reversenet_utils.he_lenet, notebook 09's anchor table)
at tiny budgets on random data: every attacker at both splits, the device and chains of notebook 09
reused, the table's verdicts and its other-dataset branch."""

from __future__ import annotations

import matplotlib
import pytest
import torch

from reversenet_utils import he_lenet
from reversenet_utils.data import MNISTSplit
from reversenet_utils.labels import HE_ATTACKERS
from reversenet_utils.split import RMLE_TUNE_IMAGES, tune_tv_weight

matplotlib.use("Agg")

PARAMS = {"seed": 0, "device_epochs": 1, "attack_steps": 2, "rmle_steps": 2, "n_anchor": 6,
          "recognisable_ssim": 0.3}  # fmt: skip


def _data(n: int, seed: int = 0) -> MNISTSplit:
    g = torch.Generator().manual_seed(seed)
    return MNISTSplit(torch.rand(n, 1, 28, 28, generator=g), torch.arange(n) % 10)


def test_every_attacker_of_their_table_runs_at_both_splits(ctx) -> None:
    owner, attacker, test = _data(48), _data(RMLE_TUNE_IMAGES + 8, 1), _data(10, 2)
    entry, shown = he_lenet.run(ctx, owner, attacker, test, PARAMS, ({}, {}, {}))
    assert entry["device"]["splits"] == [1, 2] and entry["device"]["epochs"] == 1
    found = {(r["threat"], r["split"]) for r in entry["rows"]}
    assert found == {(t, k) for t in HE_ATTACKERS for k in (1, 2)}
    assert all(r["n_images"] == 6 and "ssim_recon_range_ci" in r for r in entry["rows"])
    assert set(entry["tv_weights"]) == {"rMLE", "query-free"}
    assert 0 <= entry["shadow_accuracy"] <= 1
    assert all(r.shape == (6, 1, 28, 28) for r in shown.values())
    table = he_lenet.anchor_table(entry["comparisons"])
    assert table.count("\n") == 1 + len(HE_ATTACKERS) and "39.69 / 0.997" in table
    assert "no number of theirs" in table  # the data-free chain's row
    assert len(he_lenet.figure(test.images, shown, "MNIST").axes) == 2 * (len(HE_ATTACKERS) + 1)
    # notebook 09 trained lenet_he as a target: its device and chains are reused, not retrained
    net = he_lenet.device(ctx, owner, test, PARAMS, {}, {})[1]
    summary = {"accuracy": 0.5, "epochs": 7, "splits": [1, 2]}
    again, _ = he_lenet.run(ctx, owner, attacker, test, PARAMS,
                            ({"lenet_he": summary}, {"lenet_he": net}, {}))  # fmt: skip
    assert again["device"] == summary


def test_verdicts_come_from_the_intervals_in_both_conventions() -> None:
    def row(threat, split, psnr, ssim, theirs) -> dict:
        return {"threat": threat, "split": split, "psnr": psnr,
                "psnr_ci": [psnr - 0.1, psnr + 0.1], "ssim": ssim,
                "ssim_ci": [ssim - 0.001, ssim + 0.001], "ssim_recon_range": theirs,
                "ssim_recon_range_ci": [theirs - 0.001, theirs + 0.001],
                "n_images": 1000}  # fmt: skip

    rows = [
        row("rMLE", 1, 39.7, 0.999, 0.990),  # PSNR: within the interval; SSIM: conventions differ
        row("inverse net, same data", 1, 39.5, 0.990, 0.990),  # 0.2 dB below, inside tolerance
        row("query-free", 2, 5.0, 0.2, 0.2),
    ]
    found = {(c["threat"], c["split"]): c for c in he_lenet.comparisons(rows, "mnist")}
    rmle = found["rMLE", 1]
    assert (rmle["psnr_verdict"], rmle["ssim_verdict"], rmle["their_ssim_verdict"]) == (
        "matches", "beats", "falls short of")  # fmt: skip
    assert found["inverse net, same data", 1]["psnr_verdict"] == "matches"
    assert found["query-free", 2]["psnr_verdict"] == "falls short of"
    table = he_lenet.anchor_table(list(found.values()))
    assert (
        "their SSIM 0.990" in table
        and "SSIM beats theirs (their convention: falls short of theirs)" in table
    )
    assert "not run" in table  # attackers without a row here
    other = he_lenet.comparisons(rows, "fashion_mnist")  # their numbers are MNIST's
    assert all(c["anchor_psnr"] is None and "psnr_verdict" not in c for c in other)


def test_the_rmle_attacker_tunes_its_weight_on_its_own_images() -> None:
    torch.manual_seed(0)
    blocks = [torch.nn.Sequential(torch.nn.Conv2d(1, 4, 5)).requires_grad_(False)]
    own = torch.rand(3, 1, 28, 28)
    assert tune_tv_weight(blocks, own, steps=2, grid=(0.0, 1e-2)) in (0.0, 1e-2)
    with pytest.raises(ValueError, match="grid must list weights"):
        tune_tv_weight(blocks, own, steps=2, grid=())
    with pytest.raises(ValueError, match="grid must list weights"):
        tune_tv_weight(blocks, own, steps=2, grid=(-1.0,))
