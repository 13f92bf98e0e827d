"""Feature visualisation: objectives, hooks on in-place ReLUs, parameterisations, rendering,
GIFs."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn

from reversenet_utils.featureviz import (
    ImageParam,
    activations,
    blur_penalty,
    channel,
    class_logit,
    folded_batchnorm,
    layer,
    neuron,
    render,
    robustness,
    save_gif,
)


def _tiny_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    )  # fmt: skip


def test_render_raises_the_objective_of_every_image() -> None:
    model = _tiny_cnn()
    objective = channel("2", [0, 3, 5])  # one channel per image, one optimisation
    result = render(
        model,
        objective,
        batch=3,
        size=32,
        steps=100,
        lr=0.05,
        transform=robustness(pad=2, jitter=2),
    )
    with torch.no_grad():  # the same seeded initial images, before any step
        start = objective(
            activations(
                model, ImageParam(3, 32, generator=torch.Generator().manual_seed(0))(), ["2"]
            )
        )
    assert (
        result.images.shape == (3, 3, 32, 32)
        and 0 <= result.images.min()
        and result.images.max() <= 1
    )
    assert (result.objective > start).all() and result.objective.mean() > start.mean() + 0.02
    assert len(result.history) == 100 and not any(p.requires_grad for p in model.parameters())


def test_hooks_see_pre_relu_values_of_torchvision_vgg19() -> None:
    from torchvision.models import vgg19

    model = vgg19().eval()  # random weights, in-place ReLUs
    x = torch.rand(1, 3, 64, 64)
    acts = activations(model, x, ["features.0", "features.1"])
    assert (acts["features.0"] < 0).any()  # the conv's output, before its in-place ReLU
    assert (acts["features.1"] >= 0).all()
    assert torch.equal(acts["features.1"], acts["features.0"].clamp_min(0))
    with pytest.raises(ValueError, match="no module 'features.99x'"):
        activations(model, x, ["features.99x"])


def test_objectives_compose_and_check_units() -> None:
    acts = {
        "a": torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2),
        "output": torch.eye(2, 4),
    }
    mean_c1 = acts["a"][:, 1].flatten(1).mean(1)
    assert torch.allclose(channel("a", 1)(acts), mean_c1)
    assert torch.allclose(
        (channel("a", 1) - 0.5 * layer("a"))(acts),
        mean_c1 - 0.5 * acts["a"].pow(2).flatten(1).mean(1),
    )
    assert neuron("a", [0, 2])(acts).tolist() == [
        acts["a"][0, 0, 1, 1].item(),
        acts["a"][1, 2, 1, 1].item(),
    ]
    assert class_logit([0, 1])(acts).tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="3 channels"):
        channel("a", 7)(acts)
    with pytest.raises(ValueError, match="one per image"):
        channel("a", [0, 1, 2])(acts)


@pytest.mark.parametrize("kind,channels", [("pixel", 3), ("fft", 3), ("fft", 1)])
def test_parameterisations_give_images(kind: str, channels: int) -> None:
    images = ImageParam(2, 17, channels, kind)()
    assert images.shape == (2, channels, 17, 17) and 0 < images.min() and images.max() < 1
    with pytest.raises(ValueError, match="kind"):
        ImageParam(1, 8, kind="wavelet")


def test_transforms_and_penalties() -> None:
    x = torch.rand(4, 3, 20, 20)
    assert robustness()(x).shape == (
        4,
        3,
        32,
        32,
    )  # padded by 12 on every side, cropped by 8 + 4 like Lucid
    assert robustness(crop=False)(x).shape == (4, 3, 44, 44)
    assert robustness(pad=0, jitter=2, final_jitter=1, crop=False)(x).shape == x.shape
    # no jitter, scale or rotation: the one affine resampling is exactly the padding
    still = robustness(pad=5, jitter=0, final_jitter=0, scales=(1.0, 1.0), degrees=0.0)
    assert torch.allclose(still(x), torch.nn.functional.pad(x, (5,) * 4, value=0.5), atol=1e-6)
    moved = robustness()(x[:1].expand(4, -1, -1, -1).clone())  # one image, four times
    assert not torch.allclose(moved[0], moved[1])  # every image gets its own transform
    with pytest.raises(ValueError, match="nothing after cropping"):
        robustness(pad=0)(torch.rand(1, 3, 10, 10))
    with pytest.raises(ValueError, match="whole number"):
        robustness(jitter=-1)
    assert blur_penalty(torch.ones(2, 1, 8, 8)).tolist() == [0.0, 0.0]
    assert (blur_penalty(torch.rand(2, 1, 8, 8)) > 0).all()


def test_gif_is_written(tmp_path) -> None:
    result = render(_tiny_cnn(), class_logit(2), size=16, steps=6, frame_every=2)
    assert len(result.frames) == 4  # steps 0, 2, 4 and the final image
    path = save_gif(result.frames, tmp_path / "anim.gif")
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 4 and gif.size == (16, 16)
    with pytest.raises(ValueError, match="no frames"):
        save_gif([], tmp_path / "none.gif")


def test_a_missing_weights_file_is_an_error(tmp_path) -> None:
    from reversenet_utils.featureviz import load_imagenet_net

    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_imagenet_net(tmp_path / "nope.pth")


def test_offline_fallback_is_efficientnet_lite0_and_says_why(tmp_path, monkeypatch, capsys) -> None:
    from reversenet_utils.featureviz import load_imagenet_net

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty hub cache
    monkeypatch.setenv("REVERSENET_NO_DOWNLOAD", "1")
    net = load_imagenet_net()
    assert net.name == "efficientnet-lite0" and len(net.categories) == 1000
    assert "downloading is off" in capsys.readouterr().out
    with torch.no_grad():
        acts = activations(
            net.model, net.preprocess(torch.rand(1, 3, 96, 96)), [net.early, net.late]
        )
    assert acts["output"].shape == (1, 1000) and acts[net.early].shape[1] < acts[net.late].shape[1]


class _PaddedConv(nn.Conv2d):
    """A Conv2d subclass that calls F.conv2d on its own weight (as EfficientNet's static-padding
    convolutions do)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(
            torch.nn.functional.pad(x, (1, 1, 1, 1)), self.weight, self.bias
        )


def _bn_net() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU6(),
        _PaddedConv(8, 8, 3, bias=False),
        nn.BatchNorm2d(8, affine=False),
        nn.ReLU(),
        nn.Conv2d(8, 4, 1),
        nn.BatchNorm2d(4),
        nn.Flatten(),
        nn.LazyLinear(3),
    )
    net(torch.rand(2, 3, 8, 8))  # materialise the lazy layer
    for m in net:
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            if m.affine:
                nn.init.uniform_(m.weight, 0.5, 2)
                nn.init.uniform_(m.bias, -1, 1)
    return net.eval()


def test_folded_batchnorm_keeps_the_function_and_restores_the_model() -> None:
    net = _bn_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    params = list(net.parameters())
    x = torch.rand(5, 3, 8, 8)
    with torch.no_grad():
        expected = net(x)
        with folded_batchnorm(net) as folded:
            # all three, the subclass's too
            assert sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) == 0
            assert isinstance(folded[1], nn.Identity) and folded[3].bias is not None
            assert torch.allclose(folded(x), expected, atol=1e-5)
    assert (
        isinstance(net[1], nn.BatchNorm2d)
        and net[3].bias is None
        and list(net.parameters()) == params
    )
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    with pytest.raises(RuntimeError, match="inside"), folded_batchnorm(net):
        raise RuntimeError("an error inside the block")
    # restored on the way out of an error too
    assert isinstance(net[4], nn.BatchNorm2d) and net[3].bias is None
    with pytest.raises(ValueError, match="eval"), folded_batchnorm(net.train()):
        pass  # training mode normalises by batch statistics: nothing to fold


def test_folded_batchnorm_spares_recorded_convolutions_and_what_it_cannot_fold() -> None:
    net = _bn_net()
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        conv_out = net[0](x)
        # an objective records the first convolution's own output
        with folded_batchnorm(net, keep=["0"]):
            assert isinstance(net[1], nn.BatchNorm2d) and isinstance(net[4], nn.Identity)
            assert torch.equal(net[0](x), conv_out)
    plain = _tiny_cnn().eval()
    with folded_batchnorm(plain):
        assert not any(isinstance(m, nn.Identity) for m in plain.modules())  # nothing to fold

    class Branchy(nn.Module):  # data-dependent control flow: torch.fx cannot trace it
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bn(self.conv(x)) if x.sum() > 0 else x

    branchy = Branchy().eval()
    with folded_batchnorm(branchy):
        assert isinstance(branchy.bn, nn.BatchNorm2d)


def test_render_through_a_folded_network_records_a_normalisation_layer() -> None:
    net = _bn_net()
    net.train()
    # hooks the (folded) BatchNorm
    result = render(net, channel("1", 0), batch=1, size=8, steps=3, transform=None)
    # its normalisation and its mode are back
    assert isinstance(net[1], nn.BatchNorm2d) and net.training
    with torch.no_grad():
        # the objective, plain network
        unfolded = channel("1", 0)(activations(net.eval(), result.images, ["1"]))
    assert torch.allclose(result.objective, unfolded, atol=1e-5)
