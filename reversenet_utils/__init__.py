"""reversenet_utils: the thin helper package shared by the ReverseNet notebooks.

One concern per module, named after what it does (docs/design.md):

- ``data``: verified offline MNIST and Fashion-MNIST; ``models``: the targets by name (with
  per-target budgets) and the VAE;
- ``train``: the one training loop, evaluation, prediction, load-or-train of targets and the VAE;
- ``context``: a run's context (dataset, device, project root, notebook name and clock), handed to
  everything that loads or saves;
- ``artifacts``: checkpoints (fingerprinted), the one ``load_or_train``, results JSON;
- ``analytic``: the inverse of a chain of layers, with domain handling (notebook 02), built from
  ``layer_inverses``, the inverse of each PyTorch layer kind;
- ``inverse_weights``: learned inverse matrices of a sigmoid MLP (notebook 03);
- ``progressive``: block-wise inverse modules, their losses and schedules (notebook 04);
- ``synthetic``: data-free training inputs: structured noise, target-only synthesis;
- ``optimise``: optimisation-based inversion and its image priors (shared with ``featureviz``);
- ``featureviz``: input optimisation for units, layers and classes (notebook 06);
- ``metrics``: MSE, PSNR, SSIM, re-classification, timing; ``plotting``: grids, rows, curves,
  tables;
- ``notebook``: what the notebooks share: parameter checks (types and ranges), row look-up;
- each notebook's stages: ``pseudo_inverse`` (02), ``zero_shot`` (04), ``featureviz.stages`` (06),
  ``benchmark`` (07), ``privacy`` (09), beside the method modules that hold 01, 03, 05 and 08's;
  ``claims``: what each notebook concludes, from its results alone;
- one home each for what claims, gates and README share: ``labels`` (method, chain and threat names,
  display order), ``anchors`` (published numbers with their sources), ``thresholds`` (float
  precision, the zero-shot gap).

Import the modules you need; importing the package itself loads nothing heavy.
"""

__version__ = "0.1.0"
