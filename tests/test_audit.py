"""Audit your own split model (reversenet_utils.audit, scripts/audit.py): a network the study did
not design is loaded in every form, checked before anything trains (each failure naming the layer),
cut into blocks, and attacked and defended by notebook 09's stages."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from reversenet_utils import audit, models, privacy
from reversenet_utils.claims import check_gates
from reversenet_utils.claims import privacy as claims
from reversenet_utils.data import MNISTSplit
from reversenet_utils.models import build_target

from test_privacy import PARAMS, _data

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = "audit_examples/small_bn_net.py:build"
AUDIT = {"audit_model": EXAMPLE, "audit_weights": "", "audit_split": 8}


@pytest.fixture(autouse=True)
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test registers into a copy of the registry: no audited target outlives it."""
    monkeypatch.setattr(models, "TARGETS", dict(models.TARGETS))


def _probe() -> torch.Tensor:
    return torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def _example() -> nn.Sequential:
    net, build = audit.load_network(EXAMPLE, root=REPO)
    assert build is not None
    return net


def test_the_example_loads_from_a_file_a_module_torchscript_and_a_state_dict(tmp_path) -> None:
    torch.manual_seed(0)
    net = _example()
    x = _probe()
    weights = tmp_path / "state.pt"
    torch.save(net.state_dict(), weights)
    again, _ = audit.load_network(EXAMPLE, str(weights), REPO)  # a fresh build, then the weights
    assert torch.equal(again(x), net(x))
    module, build = audit.load_network("audit_examples.small_bn_net:build", root=REPO)
    assert callable(build) and isinstance(module, nn.Sequential)
    scripted = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(net), scripted)
    loaded, build = audit.load_network(str(scripted))
    assert build is None and torch.allclose(loaded(x), net(x))
    layers, names = audit.as_layers(loaded, x)  # a TorchScript network's layers, by their names
    assert (
        len(layers) == 12
        and names[0] == "0"
        and audit.describe_layers(layers)[3].startswith("4: AvgPool2d -> (6, 12, 12)")
    )
    assert audit.defences_left_out(layers, 8, rebuildable=False).keys() == {
        "nopeek", "dp", "adversarial"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("model", "weights", "message"),
    [
        ("", "", "no model given"),
        ("missing.py:build", "", "no file"),
        ("audit_examples/small_bn_net.py:nothing", "", "has no function 'nothing'"),
        ("audit_examples/small_bn_net.py:1build", "", "give 'path/to/file.py:function'"),
        ("no_such_module_here:build", "", "cannot import"),
        ("torch:zeros", "", "building the network failed"),
        ("math:pi", "", "has no function"),
        ("missing.pt", "", "no file"),
        (EXAMPLE, "missing.pt", "no file"),
    ],
)
def test_a_model_that_cannot_load_says_why(model, weights, message) -> None:
    with pytest.raises(audit.AuditError, match=message):
        audit.load_network(model, weights, REPO)


def test_files_of_the_wrong_kind_and_weights_of_another_network_are_refused(tmp_path) -> None:
    state = tmp_path / "state.pt"
    torch.save(_example().state_dict(), state)
    with pytest.raises(audit.AuditError, match="is not a TorchScript file.*WEIGHTS="):
        audit.load_network(str(state))
    other = tmp_path / "other.pt"
    torch.save(build_target("mlp_relu").state_dict(), other)
    with pytest.raises(audit.AuditError, match="do not fit the model.*missing: 0.bias, 0.weight"):
        audit.load_network(EXAMPLE, str(other), REPO)
    resized = _example().state_dict() | {"0.weight": torch.zeros(6, 1, 5, 5)}
    torch.save(resized, other)
    with pytest.raises(
        audit.AuditError,
        match=r"shape mismatch: 0.weight is \(6, 1, 5, 5\) where the model has \(6, 1, 4, 4\)",
    ):
        audit.load_network(EXAMPLE, str(other), REPO)
    torch.save([1, 2], other)
    with pytest.raises(audit.AuditError, match="hold a list, not a state dict"):
        audit.load_network(EXAMPLE, str(other), REPO)
    (tmp_path / "text.pt").write_text("not a tensor file")
    with pytest.raises(audit.AuditError, match="not a state dict saved"):
        audit.load_network(EXAMPLE, str(tmp_path / "text.pt"), REPO)
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"state_dict": _example().state_dict()}, wrapped)  # a training checkpoint's layout
    audit.load_network(EXAMPLE, str(wrapped), REPO)
    parallel = {f"module.{k}": v for k, v in _example().state_dict().items()}  # DataParallel's
    torch.save(parallel, wrapped)
    audit.load_network(EXAMPLE, str(wrapped), REPO)
    torch.save(_example().half().state_dict(), wrapped)  # half precision: run in float32
    net, _ = audit.load_network(EXAMPLE, str(wrapped), REPO)
    assert net(_probe()).dtype == torch.float32


class _Round(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * 4)


class _Inf(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / 0


class _Pair(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x


class _Residual(nn.Module):
    """Children conv and head, but the forward adds a skip across the conv: not a chain."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x + self.conv(x))


class _Block(nn.Module):
    """A residual block: one layer, a black box to the audit."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.conv(x))


def _head(width: int) -> list[nn.Module]:
    return [nn.Flatten(), nn.Linear(width, 10)]


@pytest.mark.parametrize(
    ("layers", "split", "message"),
    [
        ([nn.Conv2d(3, 4, 3), *_head(4 * 26 * 26)], 1, r"layer 1 \(0: Conv2d\) fails on its input"),
        ([nn.Linear(784, 10), nn.ReLU(), nn.Linear(10, 10)], 1, "starts with nn.Flatten"),
        ([nn.Conv2d(1, 4, 3), _Pair(), *_head(4 * 26 * 26)], 1, r"layer 2 .*returns a tuple"),
        ([nn.Conv2d(1, 4, 3), _Round(), *_head(4 * 26 * 26)], 2,
         r"layer 2 \(1: _Round\) passes no gradient"),
        ([nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 26 * 26, 5)], 1, "10 logits"),
        ([nn.Conv2d(1, 4, 3), *_head(4 * 26 * 26)], 3, r"split must be a whole number in 1\.\.2"),
        ([nn.Conv2d(1, 4, 3), *_head(4 * 26 * 26)], 0, "1: Conv2d -> \\(4, 26, 26\\)"),
        ([nn.Conv2d(1, 4, 3), *_head(4 * 26 * 26)], True, "got True"),
        ([nn.Flatten(), nn.Linear(784, 64000), nn.Linear(64000, 10)], 2, "no inverse module"),
        ([nn.Conv2d(1, 4, 3), _Inf(), *_head(4 * 26 * 26)], 2,
         r"layer 2 \(1: _Inf\) gives non-finite values"),
    ],
)  # fmt: skip
def test_a_network_the_attackers_cannot_handle_fails_before_training_naming_the_layer(
    layers, split, message
) -> None:
    net = nn.Sequential(*layers)
    with pytest.raises(audit.AuditError, match=message):
        seq, names = audit.as_layers(net, _probe())
        audit.check_network(seq, names, split)


def test_a_forward_that_is_not_its_layers_in_order_is_refused_and_a_residual_block_is_one_layer():
    with pytest.raises(audit.AuditError, match="is not its layers applied in order"):
        audit.as_layers(_Residual(), _probe())
    with pytest.raises(audit.AuditError, match="has no layers to split"):
        audit.as_layers(nn.ReLU(), _probe())
    net = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.Sequential(_Block(), nn.ReLU()),
                        *_head(4 * 13 * 13))  # fmt: skip
    seq, names = audit.as_layers(net, _probe())  # the nested Sequential flattened
    assert names == ["0", "1.0", "1.1", "2", "3"]
    assert audit.check_network(seq, names, 3) == (1, 3, 5)  # the block starts one: a weight
    inplace = nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(1, 4, 3), nn.ReLU(inplace=True),
                            *_head(4 * 26 * 26))  # fmt: skip
    assert audit.check_network(*audit.as_layers(inplace, _probe()), 3) == (1, 3, 5)


def test_blocks_start_at_each_weight_and_a_flatten_joins_the_layer_after_it() -> None:
    layers = _example()
    assert audit.block_ends(layers, 8) == (4, 8, 12)
    assert audit.block_ends(layers, 11) == (4, 8, 11, 12)
    assert audit.block_ends(layers, 2) == (2, 12)  # a split inside a block ends it there
    mlp = build_target("mlp_relu")  # Flatten, Linear, ReLU, Linear
    assert audit.block_ends(mlp, 3) == (3, 4)
    assert audit.block_ends(mlp, 1) == (1, 4)


def test_prepare_refuses_untrained_weights_and_parameters_without_a_model(ctx, tmp_path) -> None:
    params = {**PARAMS, "audit_model": "", "audit_weights": "", "audit_split": 0}
    assert audit.prepare(ctx, params, _data(16)) == (params, {})
    with pytest.raises(audit.AuditError, match="need audit_model"):
        audit.prepare(ctx, {**params, "audit_split": 3}, _data(16))
    scripted = tmp_path / "untrained.pt"
    torch.jit.save(torch.jit.script(_example()), scripted)
    test = MNISTSplit(torch.zeros(20, 1, 28, 28), torch.arange(20) % 10)  # one class predicted
    with pytest.raises(audit.AuditError, match=r"classify 10\.0% of the MNIST test images"):
        audit.prepare(ctx, {**params, "audit_model": str(scripted), "audit_split": 4}, test)


def test_the_example_is_audited_by_notebook_09s_stages(ctx) -> None:
    test = _data(16)
    params, audited = audit.prepare(ctx, {**PARAMS, **AUDIT, "audit_model": str(REPO / EXAMPLE)},
                                    test)  # fmt: skip
    (name,) = audited
    assert name == "audit:small_bn_net" and params["targets"] == [name]
    assert params["defence_split"] == 2 and params["anchor_table"] is False
    a = audited[name]
    assert a.source == EXAMPLE and a.net is None and a.left_out.keys() == {"dp"}
    assert "BatchNorm" in a.left_out["dp"] and a.analytic.startswith("applies")
    assert "blocks ending after layers 4, 8" in audit.describe(audited)
    assert audit.describe({}).startswith("no audit_model")
    assert audit.results_name("09_split_computing_privacy", EXAMPLE) == "09_audit_small_bn_net"
    assert audit.results_name("09_x", "nets/zoo.py:mlp") == "09_audit_zoo_mlp"
    assert audit.results_name("09_x", "pkg.nets:resnet") == "09_audit_nets_resnet"
    assert audit.results_name("09_x", "/a/b/net-v2.ts") == "09_audit_net_v2"
    assert audit.figure_name(ctx, "leaks", audited) == "99_demo_leaks"
    assert audit.figure_name(ctx, "leaks", {}) == "99_leaks"
    owner, attacker = privacy.split_halves(_data(64), torch.Generator().manual_seed(0))
    x, y = test.images[:8], test.labels[:8]
    judge = build_target("judge_cnn").eval()
    inputs = {"mnist": (x, y), "fashion_mnist": (x.flip(-1), None)}
    device, net, chains, rows, _ = privacy.attack_device(
        ctx, name, owner, attacker.images, test, inputs, judge, params, a
    )
    assert device["splits"] == [1, 2] and device["audit"]["left_out"].keys() == {"dp"}
    assert "1 epochs on the owner's half" in privacy.describe_device(name, device, "MNIST")
    naive = chains["inverse net, other data"]
    defended = privacy.defend_device(ctx, name, net, device, naive, owner, attacker.images, test,
                                     (x, y), judge, params)  # fmt: skip
    assert {r["defence"] for r in defended} == {"gaussian", "laplace", "dropout", "quantise",
                                                 "nopeek", "adversarial"}  # fmt: skip
    assert "| dp |" not in privacy.defence_table(rows + defended, params)
    from reversenet_utils.frontier import frontier_points, recommend
    from reversenet_utils.split import cheapest_defence

    points = frontier_points(rows + defended, "mnist")
    metrics = {"dataset": "mnist", "shifted_dataset": "fashion_mnist", "devices": {name: device},
               "rows": rows + defended, "cheapest": {name: cheapest_defence(
                   rows + defended, name, 2, 0.01, 0.3)},
               "frontier": points, "recommended": recommend(points, 0.3, 0.01),
               "settings": {"n_eval": 8, "n_opt": 2, "recognisable_ssim": 0.3,
                            "defence_split": 2, "max_accuracy_loss": 0.01}}  # fmt: skip
    check_gates(claims.gates(metrics, params))  # the audit's gates, not the study's
    notes = "\n".join(claims.notes(metrics, "Fashion-MNIST"))
    assert f"Audited `{EXAMPLE}`" in notes and "Left out for" in notes and "dp, which" in notes
    trained = audit.AuditedNetwork(name, EXAMPLE, net, 8, a.ends, True, accuracy=0.5)
    given, *_ = privacy.attack_device(ctx, name, owner, attacker.images, test, inputs, judge,
                                      {**params, "attack_steps": 1}, trained)  # fmt: skip
    assert given["epochs"] == 0 and "its given weights" in privacy.describe_device(
        name, given, "MNIST"
    )


def test_the_audit_gates_fail_when_an_attacker_or_a_defence_is_missing() -> None:
    device = {"accuracy": 0.9, "splits": [1], "conv": True,
              "audit": {"left_out": {"dp": "why"}}}  # fmt: skip
    metrics = {"rows": [], "devices": {"audit:x": device}, "settings": {"defence_split": 1}}
    verdicts = [c.holds for c in claims.gates(metrics, PARAMS)]
    assert verdicts == [True, False, False, True]


def test_the_script_checks_the_model_before_notebook_09_runs(capsys, monkeypatch) -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import audit as script
    finally:
        sys.path.pop(0)
    monkeypatch.chdir(REPO)
    assert script._absolute("") == ""
    assert script._absolute(EXAMPLE) == f"{REPO / 'audit_examples/small_bn_net.py'}:build"
    assert script._absolute("audit_examples.small_bn_net:build").endswith("small_bn_net.py:build")
    assert script._absolute("no_such_module_here:f") == "no_such_module_here:f"
    assert "device blocks ending after layers 4, 8" in script.preflight(EXAMPLE, "", 8)
    assert script.main(["--model", EXAMPLE, "--split", "12"]) == 2
    assert "split must be a whole number in 1..11" in capsys.readouterr().err
