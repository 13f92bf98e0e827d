"""Progress bars: a widget where a Jupyter front end renders widgets, plain text everywhere else.

In JupyterLab, Colab and Voilà, :func:`progress_bar` is ``tqdm.notebook.tqdm`` (an ipywidgets bar);
in a terminal, under papermill, nbval and CI it is the plain ``tqdm`` bar, whose text a committed
notebook keeps. A kernel cannot see whether its front end renders widgets, so batch runs say so: the
project's runners (``make run``, ``make test``) set ``REVERSENET_BATCH=1``, which
:func:`widget_front_end` reads. ``TQDM_DISABLE=1`` silences either kind.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

__all__ = ["BATCH_ENV", "widget_front_end", "progress_bar"]

#: set (to anything but "" or "0") by the runners: no widget front end, plain-text bars and static
#: panels
BATCH_ENV = "REVERSENET_BATCH"


def widget_front_end() -> bool:
    """True inside a Jupyter kernel with ipywidgets importable, unless :data:`BATCH_ENV` says it is
    a batch run."""
    if os.environ.get(BATCH_ENV, "") not in ("", "0"):
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):  # a terminal IPython, or plain Python
        return False
    return importlib.util.find_spec("ipywidgets") is not None


def progress_bar(*args: Any, **kwargs: Any):
    """A tqdm bar (same arguments as ``tqdm``): a widget in a Jupyter front end, text elsewhere."""
    if widget_front_end():
        from tqdm.notebook import tqdm
    else:
        from tqdm import tqdm
    return tqdm(*args, **kwargs)
