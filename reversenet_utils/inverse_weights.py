"""Learned inverse weights of a sigmoid MLP (notebook 03), and a small decoder that improves on
them.

``InverseWeights`` reproduces the "inverse weight matrices trained after the fact" of the
learned-inverse write-up for a sigmoid MLP ``784 -> h1 -> h2 -> 10``: from the last hidden layer
``h2`` it undoes the sigmoid exactly (logit), subtracts the known bias ``b2``, applies a *learned*
matrix ``W2_inv``, squashes each sample's vector into (0, 1) so that the next logit is defined,
undoes the first sigmoid, subtracts ``b1`` and applies a learned ``W1_inv``. Its loss is the L1
reconstruction error plus a penalty that pulls the intermediate vector into [0, 1], so that the
squash has less to do. :func:`load_inverse_weights` loads the inverse saved for a target (checked
against the target's fingerprint) or trains it.

``MLPDecoder`` is the improvement: a small nonlinear network from the features to the image.
Everything trains with the project's one training loop, ``train.train_loop``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .analytic import domain_counts, invert
from .layer_inverses import InverseActivation
from .artifacts import effective_recipe, inverse_checkpoint, inverse_identity, load_or_train
from .checks import vector_batch
from .context import Context
from .data import MNISTSplit
from .metrics import Timer, reconstruction_report
from .notebook import AT_LEAST_0, AT_LEAST_1, FRACTION, require
from .train import predict, train_loop

__all__ = [
    "SIGMOID_MLP_LAYERS",
    "squash",
    "InverseWeights",
    "inverse_weights_loss",
    "train_inverse_weights",
    "load_inverse_weights",
    "MLPDecoder",
    "optimise_hidden_for_classes",
    "classifier_opinion",
    "generate_classes",
    "unit_projections",
    "train_decoder",
    "check_parameters",
    "train_faithful",
    "faithful_reconstructions",
    "compare_inverses",
    "scores_table",
]


def squash(p: torch.Tensor, margin: float = 0.005) -> torch.Tensor:
    """Min-max scale each row of ``p`` into ``[margin, 1 - margin]`` (strictly inside (0, 1)).

    A constant row has no range to scale and maps to 0.5.
    """
    lo = p.min(dim=1, keepdim=True).values
    span = p.max(dim=1, keepdim=True).values - lo
    unit = torch.where(
        span > 0, (p - lo) / span.clamp_min(torch.finfo(p.dtype).tiny), torch.full_like(p, 0.5)
    )
    return margin + (1 - 2 * margin) * unit


#: the layers of the networks inverse weights apply to: a sigmoid MLP with two hidden layers
SIGMOID_MLP_LAYERS = ["Flatten", "Linear", "Sigmoid", "Linear", "Sigmoid", "Linear"]


class InverseWeights(nn.Module):
    """Learned inverse matrices for a sigmoid MLP ``Flatten, Linear, Sigmoid, Linear, Sigmoid,
    Linear``.

    ``forward(h2)`` maps the last hidden layer (after its sigmoid) to a flat image (N, 784);
    ``from_pre_activation(z2)`` starts from the pre-sigmoid value instead. The target's biases are
    copied and frozen; only ``w2_inv`` and ``w1_inv`` are trained. Weights start from a truncated
    normal with standard deviation ``init_std``, as in the original.
    """

    def __init__(self, target: nn.Sequential, init_std: float = 0.1, eps: float = 1e-6) -> None:
        super().__init__()
        kinds = [type(m).__name__ for m in target]
        if kinds != SIGMOID_MLP_LAYERS:
            raise TypeError(
                f"InverseWeights needs a 2-hidden-layer sigmoid MLP, got layers {kinds}"
            )
        first, second = target[1], target[3]
        self.register_buffer("b1", first.bias.detach().clone())
        self.register_buffer("b2", second.bias.detach().clone())
        self.w2_inv = nn.Parameter(torch.empty(second.out_features, second.in_features))
        self.w1_inv = nn.Parameter(torch.empty(first.out_features, first.in_features))
        for w in (self.w2_inv, self.w1_inv):
            nn.init.trunc_normal_(w, std=init_std, a=-2 * init_std, b=2 * init_std)
        self.sigmoid_inverse = InverseActivation("sigmoid", eps=eps)  # clamps and counts
        self.last_hidden: torch.Tensor | None = None  # the un-squashed h1 estimate of the last call

    def from_pre_activation(self, z2: torch.Tensor) -> torch.Tensor:
        """Flat image from the pre-sigmoid last hidden layer ``z2``."""
        vector_batch(
            z2, "z2", self.w2_inv.shape[0], "the target's last hidden layer before its sigmoid"
        )
        h1 = (z2 - self.b2) @ self.w2_inv
        self.last_hidden = h1
        z1 = self.sigmoid_inverse(squash(h1))
        return (z1 - self.b1) @ self.w1_inv

    def forward(self, h2: torch.Tensor) -> torch.Tensor:
        vector_batch(
            h2,
            "h2",
            self.w2_inv.shape[0],
            "the target's last hidden layer, after its sigmoid "
            "(forward_features of its blocks, or target[:5](x)), not the logits",
        )
        return self.from_pre_activation(self.sigmoid_inverse(h2))


def inverse_weights_loss(
    x: torch.Tensor, x_inv: torch.Tensor, hidden: torch.Tensor
) -> torch.Tensor:
    """The original objective: summed L1 error plus ``(min h1)^2 / 2 + (max h1 - 1)^2 / 2`` over
    the batch."""
    l1 = (x.flatten(1) - x_inv.flatten(1)).abs().sum()
    excess = 0.5 * hidden.min().pow(2) + 0.5 * (hidden.max() - 1).pow(2)
    return l1 + excess


def train_inverse_weights(
    target: nn.Sequential,
    images: torch.Tensor,
    confidence_threshold: float = 0.8,
    steps: int = 1000,
    batch_size: int = 1000,
    lr: float = 0.01,
    seed: int = 0,
) -> tuple[InverseWeights, list[dict[str, float]], int]:
    """Train :class:`InverseWeights` of a sigmoid MLP ``target`` as the original write-up did.

    Only the ``images`` that ``target`` classifies with softmax confidence above
    ``confidence_threshold`` are used; Adagrad (no decay) on :func:`inverse_weights_loss` for about
    ``steps`` batches of ``batch_size``. Returns the inverse (eval mode, clamping counters reset),
    the training history, and how many images were kept.
    """
    if not 0 < confidence_threshold < 1:
        raise ValueError(f"confidence_threshold must be in (0, 1), got {confidence_threshold}")
    device = next(target.parameters()).device
    hidden = predict(target[:5], images).to(device)  # the last hidden layer (after its sigmoid)
    confidence = torch.softmax(predict(target, images), 1).max(1).values
    keep = torch.nonzero(confidence > confidence_threshold)[:, 0].to(device)
    if len(keep) == 0:
        raise ValueError(
            f"no image is classified with confidence > {confidence_threshold} (highest "
            f"{confidence.max():.3f}): lower confidence_threshold, or train the target first"
        )
    x_keep, h_keep = images[keep].to(device), hidden[keep]
    torch.manual_seed(seed)
    inverse = InverseWeights(target).to(device)

    def loss_fn(idx: torch.Tensor) -> torch.Tensor:
        return inverse_weights_loss(x_keep[idx], inverse(h_keep[idx]), inverse.last_hidden)

    history = train_loop(
        inverse.parameters(),
        loss_fn,
        len(keep),
        epochs=math.ceil(steps * batch_size / len(keep)),
        batch_size=batch_size,
        lr=lr,
        optimizer="adagrad",
        cosine=False,
        seed=seed,
        desc="inverse weights",
    )
    inverse.sigmoid_inverse.clamped = inverse.sigmoid_inverse.seen = 0
    return inverse.eval(), history, len(keep)


def load_inverse_weights(
    ctx: Context,
    target: nn.Sequential,
    name: str,
    images: torch.Tensor,
    retrain: bool = False,
    notebook: str = "",
    **recipe: Any,
) -> InverseWeights:
    """The inverse weights of the sigmoid MLP ``target`` (registered as ``name``), through
    ``load_or_train``.

    Loads ``artifacts/inverses/<name>__inverse-weights.pt`` if it was saved for these very target
    weights (fingerprint) and dataset; otherwise trains them on ``images`` with
    :func:`train_inverse_weights` (``recipe`` overrides its defaults) and saves them.
    ``retrain=True`` always trains, as notebook 03 does. ``inverse.meta`` holds the recipe used (its
    defaults included), training time and ``n_kept`` (images above the confidence threshold).
    """
    path = inverse_checkpoint(ctx, name, "inverse weights")

    def train(inverse: InverseWeights) -> dict[str, Any]:
        start = time.perf_counter()
        trained, history, n_kept = train_inverse_weights(target, images, **recipe)
        inverse.load_state_dict(trained.state_dict())
        return {
            **effective_recipe(train_inverse_weights, recipe),
            "n_kept": n_kept,
            "final_loss": history[-1]["loss"],
            "train_s": time.perf_counter() - start,
            "notebook": notebook,
        }

    device = next(target.parameters()).device
    inverse = load_or_train(
        lambda: InverseWeights(target).to(device),
        path,
        train,
        inverse_identity(ctx, name, target, "inverse weights"),
        fix="re-run notebooks/03_learned_inverse_weights.ipynb",
        retrain=retrain,
        budget={"steps": effective_recipe(train_inverse_weights, recipe)["steps"]},
    )
    inverse.sigmoid_inverse.clamped = inverse.sigmoid_inverse.seen = 0
    return inverse


class MLPDecoder(nn.Module):
    """A small nonlinear inverse: features -> hidden (ReLU) -> image in (0, 1) via a sigmoid."""

    def __init__(
        self, in_features: int, hidden: int = 512, image_shape: tuple[int, ...] = (1, 28, 28)
    ) -> None:
        super().__init__()
        self.image_shape = image_shape
        n_out = 1
        for d in image_shape:
            n_out *= d
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, n_out), nn.Sigmoid()
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features.flatten(1)).reshape(len(features), *self.image_shape)


def optimise_hidden_for_classes(
    readout: nn.Module,
    n_hidden: int,
    classes: list[int],
    steps: int = 1000,
    lr: float = 1.0,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Find pre-sigmoid hidden vectors that ``readout(sigmoid(z))`` classifies as ``classes``.

    Gradient descent on the L1 distance between the softmax and the one-hot targets, all classes
    in one batch, starting from zeros (as in the original). Returns ``(z, probabilities)``.
    """
    torch.manual_seed(seed)
    device = next(readout.parameters()).device
    z = torch.zeros(len(classes), n_hidden, device=device, requires_grad=True)
    target = F.one_hot(torch.tensor(classes, device=device), 10).float()
    opt = torch.optim.SGD([z], lr=lr)
    for _ in range(steps):
        loss = (torch.softmax(readout(torch.sigmoid(z)), 1) - target).abs().sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        probs = torch.softmax(readout(torch.sigmoid(z)), 1)
    return z.detach(), probs


# --- notebook 03's experiment stages -----------------------------------------------------------

#: notebook 03's parameters of the faithful inverse's recipe, and the recipe's names for them
RECIPE_PARAMETERS = {
    "confidence_threshold": "confidence_threshold",
    "inverse_steps": "steps",
    "inverse_batch": "batch_size",
    "inverse_lr": "lr",
}


def check_parameters(params: dict[str, Any]) -> None:
    """Notebook 03's parameters beyond their types (``notebook.require``)."""
    require(
        params,
        {
            "confidence_threshold": (lambda v: 0 <= v < 1, "in [0, 1) (0: the recipe's)"),
            **dict.fromkeys(("inverse_steps", "inverse_batch", "inverse_lr"), AT_LEAST_0),
            **dict.fromkeys(("decoder_epochs", "decoder_hidden", "generation_steps"), AT_LEAST_1),
            "min_generation_confidence": FRACTION,
            "min_faithful_reclass": FRACTION,
        },
    )


def train_faithful(
    ctx: Context, net: nn.Sequential, name: str, images: torch.Tensor, params: dict[str, Any]
) -> tuple[InverseWeights, dict[str, Any], float]:
    """Notebook 03's faithful inverse weights of ``net`` (registered as ``name``), trained anew on
    ``images`` with the recipe and the parameters' overrides (:data:`RECIPE_PARAMETERS`; 0 keeps
    the recipe's), saved with the target's fingerprint for notebook 07. Returns the inverse, the
    recipe as trained (its defaults included) and the seconds it took."""
    overrides = {key: params[p] for p, key in RECIPE_PARAMETERS.items() if params[p]}
    with Timer() as t:
        faithful = load_inverse_weights(
            ctx, net, name, images, retrain=True, notebook=ctx.notebook, seed=params["seed"],
            **overrides,
        )  # fmt: skip
    recipe = {key: faithful.meta[key] for key in RECIPE_PARAMETERS.values()}
    return faithful, recipe, t.seconds


@torch.no_grad()
def faithful_reconstructions(
    inverse: InverseWeights, hidden: torch.Tensor
) -> tuple[torch.Tensor, int, int]:
    """The images ``inverse`` reconstructs from the last hidden layer ``hidden``, with how many
    hidden values its logit clamped in this pass, of how many."""
    inverse.sigmoid_inverse.clamped = inverse.sigmoid_inverse.seen = 0
    images = inverse(hidden).reshape(-1, 1, 28, 28)
    return images, inverse.sigmoid_inverse.clamped, inverse.sigmoid_inverse.seen


def compare_inverses(
    net: nn.Sequential,
    faithful: torch.Tensor,
    decoder: MLPDecoder,
    hidden: torch.Tensor,
    test: MNISTSplit,
) -> tuple[dict[str, torch.Tensor], dict[str, dict], dict[str, Any]]:
    """The three inverses of the sigmoid MLP ``net`` from its last hidden layer ``hidden`` (of
    ``test``'s images): the faithful inverse weights' reconstructions ``faithful``, the improved
    ``decoder``'s, and the layer-wise pseudo-inverse's (``analytic.invert``). Returns their
    reconstructions, their scores (``metrics.reconstruction_report`` against ``net``), and the
    pseudo-inverse's clamped values and the condition number of the hidden weight matrix."""
    analytic = invert(net[:5]).to(hidden.device)
    with torch.no_grad():
        recon = {"faithful": faithful, "improved": decoder(hidden), "pinv": analytic(hidden)}
    scores = {
        name: reconstruction_report(test.images, r, test.labels, net) for name, r in recon.items()
    }
    pinv = {
        "clamped": domain_counts(analytic),
        "w2_condition_number": torch.linalg.cond(net[3].weight.double()).item(),
    }
    return recon, scores, pinv


def scores_table(scores: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the inverses' scores (for ``plotting.markdown_table``)."""
    header = ["inverse", "PSNR (dB)", "SSIM", "re-classified"]
    rows = [
        [name, f"{s['psnr']:.2f}", f"{s['ssim']:.3f}", f"{s['reclass']:.2%}"]
        for name, s in scores.items()
    ]
    return header, rows


def classifier_opinion(
    net: nn.Module, images: torch.Tensor, labels: torch.Tensor, reconstructions: torch.Tensor
) -> tuple[dict, torch.Tensor]:
    """How ``net`` classifies the reconstructions of ``images``: as its own prediction on the
    original, as the true label, and the same for the images it gets wrong. Returns the shares and
    the mask of misclassified originals."""
    if len(images) != len(reconstructions) or len(images) != len(labels):
        raise ValueError(
            f"images ({len(images)}), labels ({len(labels)}) and reconstructions "
            f"({len(reconstructions)}) must be as many"
        )
    pred_orig = predict(net, images).argmax(1)
    pred_rec = predict(net, reconstructions.clamp(0, 1)).argmax(1)
    labels = labels.cpu()
    wrong = pred_orig != labels
    opinion = {
        "as_prediction_on_original": (pred_rec == pred_orig).double().mean().item(),
        "as_true_label": (pred_rec == labels).double().mean().item(),
        "misclassified_originals": int(wrong.sum()),
        "misclassified_as_prediction": (pred_rec[wrong] == pred_orig[wrong]).double().mean().item(),
        "misclassified_as_true_label": (pred_rec[wrong] == labels[wrong]).double().mean().item(),
    }
    return opinion, wrong


def generate_classes(
    net: nn.Sequential, inverse: InverseWeights, steps: int = 1000, seed: int = 0
) -> tuple[torch.Tensor, list[float], list[float]]:
    """One image per class of the sigmoid MLP ``net``: a hidden vector optimised until the readout
    picks the class (:func:`optimise_hidden_for_classes`), projected back by ``inverse``. Returns
    the images, the readout's confidence in each class and the network's on each image."""
    z, probs = optimise_hidden_for_classes(
        net[5], net[3].out_features, list(range(10)), steps, seed=seed
    )
    with torch.no_grad():
        generated = inverse.from_pre_activation(z).reshape(-1, 1, 28, 28)
        image_confidence = torch.softmax(net(generated.clamp(0, 1)), 1).diagonal().tolist()
    return generated, probs.diagonal().tolist(), image_confidence


@torch.no_grad()
def unit_projections(inverse: InverseWeights, n_units: int, scale: float = 1e8) -> torch.Tensor:
    """What each hidden unit alone projects to: ``inverse`` of a one-hot pre-activation of size
    ``scale`` per unit, each image min-max scaled to [0, 1] for display."""
    device = next(inverse.parameters()).device
    images = inverse.from_pre_activation(torch.eye(n_units, device=device) * scale)
    images = images.reshape(-1, 1, 28, 28)
    lo = images.amin(dim=(1, 2, 3), keepdim=True)
    hi = images.amax(dim=(1, 2, 3), keepdim=True)
    return (images - lo) / (hi - lo)


def train_decoder(
    features: torch.Tensor, images: torch.Tensor, hidden: int = 512, epochs: int = 5, seed: int = 0
) -> tuple[MLPDecoder, float]:
    """A small nonlinear inverse (:class:`MLPDecoder`) trained with MSE from ``features`` to
    ``images`` (Adam at 2e-3 with cosine decay, batches of 256); returns it and its training
    seconds."""
    torch.manual_seed(seed)
    decoder = MLPDecoder(features.shape[1], hidden).to(features.device)
    start = time.perf_counter()

    def loss(idx: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(decoder(features[idx]), images[idx])

    train_loop(
        decoder.parameters(),
        loss,
        len(images),
        epochs=epochs,
        batch_size=256,
        lr=2e-3,
        seed=seed,
        desc="improved inverse",
    )
    return decoder, time.perf_counter() - start
