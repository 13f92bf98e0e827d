"""The one training loop of the project, evaluation, and load-or-train of named targets."""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from functools import partial
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .artifacts import checkpoint_path, load_or_train, save_checkpoint
from .context import Context, in_fast_layout
from .data import MNISTSplit
from .anchors import TARGET_ACCURACY
from .models import ACCURACY_FLOORS, TARGETS, VAE, build_target, get_spec
from .notebook import AT_LEAST_0, FRACTION, require
from .progress import progress_bar

__all__ = [
    "GLOBAL_RNG",
    "seed_everything",
    "run_side_by_side",
    "iterate_minibatches",
    "predict",
    "evaluate",
    "train_loop",
    "fit",
    "build_seeded",
    "train_target",
    "train_targets",
    "training_flops",
    "seed_accuracies",
    "check_training_parameters",
    "targets_summary",
    "targets_metrics",
    "load_target",
    "vae_loss",
    "load_vae",
]


#: Held while torch's global generator is seeded and drawn from (:func:`seed_everything`; a seeded
#: initialisation such as ``progressive.load_or_train_chain``'s): tasks run side by side
#: (:func:`run_side_by_side`) then initialise as they would one after another.
GLOBAL_RNG = threading.RLock()

T = TypeVar("T")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch generator seeded the same way (for
    shuffling)."""
    with GLOBAL_RNG:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def run_side_by_side(
    tasks: Sequence[Callable[[], T]],
    device: torch.device | str = "cpu",
    workers: int | None = None,
    costs: Sequence[float] | None = None,
    processes: str = "",
) -> list[T]:
    """The results of independent tasks (``functools.partial`` of a training call, say), in their
    order.

    On a CPU with several cores the tasks run side by side, ``workers`` at a time (default: the
    intra-op threads, one per core), each on one intra-op thread: the kernels of the small networks
    here scale poorly over threads, so on this 2-core CPU two inverse chains of ``cnn_pool`` trained
    side by side took 10.1 s against 16.2 s one after the other on two threads each (ReLU MLP: 7.8
    against 11.4 s). ``costs`` (one estimate per task, any unit) start the costliest first, so that
    no long task starts last and leaves a core idle while it finishes. On a GPU, or with one
    worker, they run one after the other, in the given order. A task must draw its randomness from
    its own generators, or seed and draw from the global one under :data:`GLOBAL_RNG`. The first
    exception of a task is raised.

    ``processes`` (a progress bar's label): the tasks run in spawned worker processes instead of
    threads, one intra-op thread each, and must pickle, as must their results. For work whose Python
    loop holds the interpreter, such as L-BFGS on a few images: 02's injectivity map, one task per
    row, took 64-67 s against 83-85 s one row after another on two threads (threads gained nothing
    there: each row waits on the other's interpreter). Their progress shows as tasks done.
    """
    workers = torch.get_num_threads() if workers is None else workers
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be a whole number >= 1, got {workers!r}")
    tasks = list(tasks)
    if costs is not None and len(costs) != len(tasks):
        raise ValueError(f"costs must give one estimate per task: {len(costs)} for {len(tasks)}")
    if torch.device(device).type != "cpu" or workers == 1 or len(tasks) < 2:
        return [task() for task in tasks]
    order = (
        range(len(tasks)) if costs is None else sorted(range(len(tasks)), key=lambda i: -costs[i])
    )
    if processes:
        return _run_in_processes(tasks, order, min(workers, len(tasks)), processes)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
            futures = {i: pool.submit(tasks[i]) for i in order}
            return [futures[i].result() for i in range(len(tasks))]
    finally:
        torch.set_num_threads(threads)


def _one_thread() -> None:
    torch.set_num_threads(1)


def _run_in_processes(
    tasks: Sequence[Callable[[], T]], order: Iterable[int], workers: int, desc: str
) -> list[T]:
    """:func:`run_side_by_side`'s tasks in ``workers`` spawned processes of one intra-op thread
    each, started in ``order``; their results in the tasks' order."""
    context = multiprocessing.get_context("spawn")  # no fork of a process with torch's threads
    with (
        ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread) as pool,
        progress_bar(total=len(tasks), desc=desc, unit="task") as bar,
    ):
        futures = {i: pool.submit(tasks[i]) for i in order}
        for _ in as_completed(futures.values()):
            bar.update()
        return [futures[i].result() for i in range(len(tasks))]


def iterate_minibatches(
    n: int, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None
) -> Iterator[torch.Tensor]:
    """Yield index tensors covering ``range(n)`` in batches (shuffled if asked).

    Data sets here fit in memory as tensors, so batching by indexing beats a DataLoader.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    yield from order.split(batch_size)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Logits of ``model`` on ``images``, computed in batches on the model's device (eval mode).

    On a CPU a convolutional model runs as a channels-last copy (``context.in_fast_layout``; the
    caller's model is untouched): the same logits to float rounding (measured: within 1e-5, the same
    classes) and 1.4-1.9x faster for the CNNs here."""
    if not isinstance(images, torch.Tensor) or images.dim() < 2 or len(images) == 0:
        raise ValueError(
            f"predict needs a non-empty batch of inputs (N, ...), got "
            f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}"
        )
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    run = in_fast_layout(model) if images.dim() == 4 else model
    out = [
        run(images[idx].to(device)).cpu() for idx in iterate_minibatches(len(images), batch_size)
    ]
    model.train(was_training)
    return torch.cat(out)


def evaluate(model: nn.Module, split: MNISTSplit, batch_size: int = 256) -> float:
    """Classification accuracy (a fraction) of ``model`` on ``split``.

    Batches of 256 keep a CNN's feature maps in cache: on this 2-core CPU the wider (32-64-64)
    judge of 2026-12-06 scored the 10,000 test images in 0.62 s against 1.47 s in batches of 2,048
    (``cnn_pool`` 0.30 against 0.69 s), with the same accuracy."""
    logits = predict(model, split.images, batch_size)
    return (logits.argmax(1) == split.labels.cpu()).double().mean().item()


OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adagrad": torch.optim.Adagrad,
    "sgd": torch.optim.SGD,
}


def train_loop(
    params: Iterable[nn.Parameter],
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    epochs: int,
    batch_size: int,
    lr: float,
    optimizer: str = "adam",
    cosine: bool = True,
    seed: int = 0,
    desc: str = "train",
    on_epoch: Callable[[], dict[str, float]] | None = None,
) -> list[dict[str, float]]:
    """The project's one training loop, for classifiers and inverses alike.

    Every epoch shuffles ``range(n)`` into minibatches of indices; ``loss_fn(idx)`` returns the loss
    of that batch and the optimiser (``"adam"``, ``"adagrad"`` or ``"sgd"``) steps on it, with a
    cosine decay of the learning rate over all steps if ``cosine``. One tqdm bar covers all steps.

    Returns:
        One dict per epoch: ``epoch``, ``loss`` (batch losses averaged, weighted by batch size),
        ``seconds`` since the start, and whatever ``on_epoch()`` returns (e.g. test accuracy).

    Raises:
        FloatingPointError: the loss became NaN or inf (names the epoch and the learning rate).
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {optimizer!r}")
    params = [p for p in params if p.requires_grad]
    generator = seed_everything(seed)
    steps_per_epoch = -(-n // batch_size)
    opt = OPTIMIZERS[optimizer](params, lr=lr)
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
        if cosine
        else None
    )
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    with progress_bar(
        total=epochs * steps_per_epoch, desc=desc, unit="step", mininterval=1.0
    ) as bar:
        for epoch in range(1, epochs + 1):
            loss_sum = torch.zeros((), device=params[0].device)
            for idx in iterate_minibatches(n, batch_size, shuffle=True, generator=generator):
                loss = loss_fn(idx)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                loss_sum += loss.detach() * len(idx)
                bar.update()
            if not torch.isfinite(loss_sum):
                raise FloatingPointError(
                    f"{desc}: loss became non-finite in epoch {epoch}; lower lr ({lr})."
                )
            row = {"epoch": epoch, "loss": loss_sum.item() / n}
            row.update(on_epoch() if on_epoch is not None else {})
            row["seconds"] = time.perf_counter() - start
            history.append(row)
            bar.set_postfix(
                {k: f"{v:.4g}" for k, v in row.items() if k not in ("epoch", "seconds")}
            )
    return history


def fit(
    model: nn.Module,
    train: MNISTSplit,
    test: MNISTSplit | None = None,
    epochs: int = 3,
    lr: float = 1e-3,
    batch_size: int = 128,
    seed: int = 0,
    desc: str = "train",
    channels_last: bool = False,
) -> list[dict[str, float]]:
    """Train a classifier with Adam, cross-entropy and a cosine learning-rate decay
    (:func:`train_loop`).

    After every epoch the mean loss, train accuracy (on the batches seen) and, if ``test`` is given,
    test accuracy are recorded and shown. ``channels_last``: the model and its batches in the
    channels-last memory layout while training (part of the judge's recipe on Fashion-MNIST); the
    model is returned in the standard layout.

    Returns:
        One dict per epoch: ``epoch``, ``loss``, ``train_accuracy``, ``test_accuracy``, ``seconds``.
    """
    device = next(model.parameters()).device
    correct = torch.zeros((), device=device)

    layout = torch.channels_last if channels_last else torch.contiguous_format

    def loss_fn(idx: torch.Tensor) -> torch.Tensor:
        nonlocal correct
        x, y = train.images[idx].to(device), train.labels[idx].to(device)
        logits = model(x.contiguous(memory_format=layout) if x.dim() == 4 else x)
        correct += (logits.argmax(1) == y).sum()
        return F.cross_entropy(logits, y)

    def on_epoch() -> dict[str, float]:
        nonlocal correct
        row = {"train_accuracy": correct.item() / len(train)}
        correct = torch.zeros((), device=device)
        if test is not None:
            row["test_accuracy"] = evaluate(model, test)  # restores train mode afterwards
        return row

    model.to(memory_format=layout).train()
    history = train_loop(
        model.parameters(),
        loss_fn,
        len(train),
        epochs,
        batch_size,
        lr,
        seed=seed,
        desc=desc,
        on_epoch=on_epoch,
    )
    model.to(memory_format=torch.contiguous_format).eval()
    return history


def _fit_recipe(
    ctx: Context,
    model: nn.Module,
    name: str,
    epochs: int | None,
    seed: int,
    train: MNISTSplit | None,
    test: MNISTSplit | None,
) -> dict[str, Any]:
    """Train ``model`` (a freshly built target ``name``) with its recipe in place; return its
    metadata."""
    spec = get_spec(name).on(ctx.dataset)
    seed = spec.seed + seed
    device = next(model.parameters()).device
    train = train if train is not None else ctx.load("train")
    test = test if test is not None else ctx.load("test")
    epochs = spec.epochs if epochs is None else epochs
    start = time.perf_counter()
    history = fit(
        model,
        train,
        test,
        epochs=epochs,
        lr=spec.lr,
        batch_size=spec.batch_size,
        seed=seed,
        desc=name,
        channels_last=spec.channels_last,
    )
    return {
        "description": spec.description,
        "epochs": epochs,
        "lr": spec.lr,
        "batch_size": spec.batch_size,
        "channels_last": spec.channels_last,
        "seed": seed,
        "test_accuracy": history[-1]["test_accuracy"],
        "train_s": time.perf_counter() - start,
        "device": str(device),
        "history": history,
    }


def build_seeded(name: str, seed: int, device: torch.device | str = "cpu") -> nn.Sequential:
    """Target ``name`` initialised afresh under the seed ``seed`` plus its own, on ``device``."""
    with GLOBAL_RNG:  # seeded and initialised at once, also when targets train side by side
        torch.manual_seed(get_spec(name).seed + seed)
        return build_target(name).to(device)


def train_target(
    ctx: Context,
    name: str,
    epochs: int | None = None,
    seed: int = 0,
    train: MNISTSplit | None = None,
    test: MNISTSplit | None = None,
) -> tuple[nn.Sequential, dict[str, Any]]:
    """Train the named target anew with its recipe on the context's dataset (``epochs`` overrides
    it), on the context's device; save and return it.

    The checkpoint goes to ``artifacts/targets/<name>.pt`` (replacing any earlier one: inverses
    saved for the old weights then refuse to load, by fingerprint) with its test accuracy, wall time
    and per-epoch history as metadata, which is also returned. ``seed`` is added to the recipe's own
    seed (0 for every target but the independent judge, so the judge never shares an
    initialisation).
    """
    if epochs is not None and (
        not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1
    ):
        raise ValueError(
            f"epochs must be a whole number >= 1 (or None for the recipe's "
            f"{get_spec(name).on(ctx.dataset).epochs}), got {epochs!r}"
        )
    model = build_seeded(name, seed, ctx.device)
    meta = {
        "name": name,
        "dataset": ctx.dataset,
        **_fit_recipe(ctx, model, name, epochs, seed, train, test),
    }
    save_checkpoint(model, checkpoint_path(ctx, name), meta)
    return model.requires_grad_(False).eval(), meta


def train_targets(
    ctx: Context,
    names: Sequence[str],
    epochs: int | None = None,
    seed: int = 0,
    train: MNISTSplit | None = None,
    test: MNISTSplit | None = None,
) -> dict[str, dict]:
    """Train each named target (:func:`train_target`); their ``meta`` by name, in the order given.

    On a CPU the targets train side by side, the costliest first (:func:`run_side_by_side`, costs
    from :func:`training_flops`): all eight on MNIST took 1.14-1.19 times less wall time so than one
    after the other on two threads (measured on this 2-core CPU). Each ``train_s`` is then that
    target's wall time beside another's."""
    train = train if train is not None else ctx.load("train")
    test = test if test is not None else ctx.load("test")
    runs = run_side_by_side(
        [
            partial(train_target, ctx, n, epochs=epochs, seed=seed, train=train, test=test)
            for n in names
        ],
        ctx.device,
        costs=[training_flops(n, ctx.dataset, len(train), epochs) for n in names],
    )
    return {name: meta for name, (_, meta) in zip(names, runs)}


def training_flops(name: str, dataset: str, n_images: int, epochs: int | None = None) -> float:
    """The floating-point operations of training target ``name`` with its recipe on ``dataset``
    (``epochs`` overrides it) over ``n_images`` images per epoch: three forward passes' worth
    (forward, and the backward's two products) per image, counted by
    ``torch.utils.flop_counter`` on one image. An estimate to order work by, not a timing."""
    spec = get_spec(name).on(dataset)
    with GLOBAL_RNG, torch.random.fork_rng(devices=[]):  # initialising draws: none leak out
        model = build_target(name)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 1, 28, 28))
    return 3.0 * counter.get_total_flops() * n_images * (spec.epochs if epochs is None else epochs)


def seed_accuracies(
    ctx: Context, name: str, seeds: Sequence[int], epochs: int | None = None
) -> list[float]:
    """The test accuracy of the named target trained with its recipe under each training seed in
    ``seeds`` (added to the recipe's own, as in :func:`train_target`), on the context's dataset
    and device; nothing is saved. What a re-run with another seed moves a target's accuracy by:
    ``scripts/measure_seed_spread.py`` records it, and ``thresholds.ACCURACY_RERUN_TOLERANCE``
    rests on that record."""
    if not seeds:
        raise ValueError(f"seeds must name at least one training seed, got {seeds!r}")
    train, test = ctx.load("train"), ctx.load("test")
    return [
        _fit_recipe(ctx, build_seeded(name, s, ctx.device), name, epochs, s, train, test)[
            "test_accuracy"
        ]
        for s in seeds
    ]


def check_training_parameters(params: Mapping[str, Any]) -> None:
    """Notebook 01's parameters beyond their types (``notebook.require``): the targets are
    registered ones, ``epochs >= 0`` (0: each recipe's), the accuracy floor a fraction (0: each
    target's own)."""
    require(
        params,
        {
            "targets": (
                lambda v: all(t in TARGETS for t in v),
                f"among {list(TARGETS)} (empty: all)",
            ),
            "epochs": AT_LEAST_0,
            "accuracy_floor": FRACTION,
        },
    )


def targets_summary(runs: Mapping[str, dict], floors: Mapping[str, float]) -> dict[str, dict]:
    """Per trained target (``runs``: :func:`train_targets`), what its results record: test
    accuracy, training seconds, epochs, parameter count and the accuracy floor it must clear."""
    return {
        name: {
            "test_accuracy": meta["test_accuracy"],
            "train_s": round(meta["train_s"], 2),
            "epochs": meta["epochs"],
            "parameters": sum(p.numel() for p in get_spec(name).build().parameters()),
            "floor": floors[name],
        }
        for name, meta in runs.items()
    }


def targets_metrics(
    ctx: Context,
    runs: Mapping[str, dict],
    n_test: int,
    accuracy_floor: float = 0.0,
    full_recipes: bool = True,
) -> dict[str, Any]:
    """Notebook 01's results metrics: each trained target's summary (:func:`targets_summary`)
    with its accuracy floor (``accuracy_floor``, else its own in ``models.ACCURACY_FLOORS``), the
    published accuracies for these architectures on the context's dataset (``anchors.py``), the
    test-set size, whether the recipes ran in full, and the dataset."""
    floors = ACCURACY_FLOORS[ctx.dataset]
    published = TARGET_ACCURACY.get(ctx.dataset, {})
    return {
        "targets": targets_summary(runs, {n: accuracy_floor or floors[n] for n in runs}),
        "anchors": {n: {"value": a.value, "what": a.what} for n, a in published.items()},
        "n_test": n_test,
        "full_recipes": full_recipes,
        "dataset": ctx.dataset,
        "dataset_title": ctx.title,
    }


def load_target(ctx: Context, name: str, train_if_missing: bool = True) -> nn.Sequential:
    """A trained target by name for the context's dataset, on its device, frozen and in eval mode
    (``artifacts.load_or_train``).

    Loads ``artifacts/targets/<name>.pt``; when it is missing, trains the target with its
    default recipe (progress bar) and saves it, so every notebook also runs standalone.
    The checkpoint's metadata is attached as ``model.meta``.
    """
    get_spec(name)  # unknown names: a clear error before anything else
    device = ctx.device

    def train(model: nn.Module) -> dict[str, Any]:
        print(f"No checkpoint for {name!r}: training it now (default recipe).")
        return _fit_recipe(ctx, model, name, None, 0, None, None)

    model = load_or_train(
        lambda: build_seeded(name, 0, device),
        checkpoint_path(ctx, name),
        train,
        {"name": name, "dataset": ctx.dataset},
        train_if_missing,
        fix="re-run notebooks/01_train_targets.ipynb",
    )
    return model.to(device).requires_grad_(False).eval()


def vae_loss(model: VAE, x: torch.Tensor, kl_weight: float = 1.0) -> torch.Tensor:
    """Negative ELBO per image: binary cross-entropy (summed over pixels) + ``kl_weight`` x KL(q ||
    N(0, I))."""
    recon, mu, log_var = model(x)
    bce = F.binary_cross_entropy(recon, x, reduction="sum")
    kl = -0.5 * torch.sum(1 + log_var - mu.pow(2) - log_var.exp())
    return (bce + kl_weight * kl) / len(x)


def load_vae(
    ctx: Context,
    latent: int = 16,
    epochs: int = 10,
    lr: float = 2e-3,
    batch_size: int = 256,
    seed: int = 0,
) -> VAE:
    """The VAE with ``latent`` dimensions for the context's dataset, on its device, frozen and in
    eval mode; trained (and saved to ``artifacts/vae/vae_<latent>.pt``) when no checkpoint exists
    (``artifacts.load_or_train``). ``model.meta`` holds its history."""
    device = ctx.device

    def build() -> VAE:
        torch.manual_seed(seed)
        return VAE(latent).to(device)

    def train(model: VAE) -> dict[str, Any]:
        train, test = ctx.load("train"), ctx.load("test")

        def on_epoch() -> dict[str, float]:
            model.eval()
            with torch.no_grad():
                test_loss = sum(
                    vae_loss(model, test.images[i]).item() * len(i)
                    for i in iterate_minibatches(len(test), 2000)
                )
            model.train()
            return {"test_loss": test_loss / len(test)}

        model.train()
        start = time.perf_counter()
        history = train_loop(
            model.parameters(),
            lambda idx: vae_loss(model, train.images[idx]),
            len(train),
            epochs,
            batch_size,
            lr,
            seed=seed,
            desc=f"VAE (latent {latent})",
            on_epoch=on_epoch,
        )
        return {
            "epochs": epochs,
            "lr": lr,
            "seed": seed,
            "history": history,
            "train_s": time.perf_counter() - start,
        }

    model = load_or_train(
        build,
        checkpoint_path(ctx, f"vae_{latent}", kind="vae"),
        train,
        {"latent": latent, "dataset": ctx.dataset},
        fix="re-run notebooks/05_vae_decoder_inversion.ipynb",
        budget={"epochs": epochs},
    )
    return model.requires_grad_(False).eval()
