"""What every notebook shares: its parameters (names and types checked), row look-up in results.

- :func:`parameters` reads the names declared in the notebook's ``parameters`` cell (annotated
  assignments such as ``epochs: int = 3``, which IPython records in ``__annotations__``), checks
  each value (a default, or one papermill injected) against its declared type, and returns them as
  the ``params`` dict that goes into the results JSON: derived from the cell, never re-typed.
- :func:`check_value` is the same type check, used by ``scripts/run_notebooks.py`` *before* a
  notebook runs, on papermill's view of the parameters cell.
- :func:`require` checks values beyond their types (ranges, choices), naming every one that is
  wrong, with the rules most parameters follow (:data:`AT_LEAST_0`, :func:`one_of`, ...);
- :func:`find_row` is the one look-up of a row in a list of result rows, :func:`select_rows` of all
  that match.
- :func:`stage_seconds`: the seconds of every cell run so far in this kernel (its stages), which
  ``artifacts.write_results`` records in each results JSON; the clock starts with
  :func:`parameters`.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = [
    "ParameterError",
    "check_value",
    "parameters",
    "Rule",
    "AT_LEAST_0",
    "AT_LEAST_1",
    "FRACTION",
    "one_of",
    "require",
    "find_row",
    "select_rows",
    "stage_name",
    "stage_seconds",
]

_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
}


class ParameterError(TypeError):
    """A notebook parameter has a value of the wrong type (or a name the notebook does not
    declare)."""


def _type_name(kind: Any) -> str:
    return kind.__name__ if isinstance(kind, type) else str(kind).replace("typing.", "")


def check_value(name: str, value: Any, type_name: str, default: Any = None) -> None:
    """Raise :class:`ParameterError` unless ``value`` fits the declared type ``type_name``.

    ``type_name`` is what the parameters cell declares (``"int"``, ``"float"``, ``"list"``, ``"float
    | None"``, ...). ``bool`` is not accepted for ``int`` or ``float`` (``True`` is not an epoch
    count), a string not for ``bool`` (``"false"`` is truthy), and a list's items must have the type
    of the default's items.
    """
    names = [part.strip() for part in type_name.split("|")]
    if value is None and "None" in names:
        return
    # list[str], list[int]: the items are checked
    generic = [re.fullmatch(r"list\[(\w+)\]", n) for n in names]
    items = {m[1] for m in generic if m and m[1] in _TYPES}
    names = ["list" if m else n for n, m in zip(names, generic)]
    if items and isinstance(value, list):
        want = tuple(t for n in items for t in _TYPES[n])
        bad = [
            v
            for v in value
            if not isinstance(v, want) or (isinstance(v, bool) and bool not in want)
        ]
        if bad:
            raise ParameterError(
                f"parameter {name!r}: items {bad!r} are not {' or '.join(sorted(items))} "
                f"(declared {type_name})."
            )
    allowed = tuple(t for n in names if n in _TYPES for t in _TYPES[n])
    if not allowed:
        return  # a type this check does not know: the notebook's own asserts judge the value
    ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
    if ok and isinstance(value, list) and isinstance(default, list) and default:
        item_types = {type(v) for v in default}
        bad = [
            v
            for v in value
            if type(v) not in item_types and not (float in item_types and type(v) is int)
        ]
        if bad:
            want = " or ".join(sorted(t.__name__ for t in item_types))
            raise ParameterError(
                f"parameter {name!r}: items {bad!r} are not {want} (default {default!r})."
            )
    if ok:
        numbers = (
            value
            if isinstance(value, list)
            else list(value.values())
            if isinstance(value, dict)
            else [value]
        )
        bad = [v for v in numbers if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            hint = f" (the default is {json.dumps(default)})" if default is not None else ""
            raise ParameterError(
                f"parameter {name!r} = {value!r} holds {bad[0]!r}: give finite numbers{hint}."
            )
    if not ok:
        hint = f" (the default is {json.dumps(default)})" if default is not None else ""
        raise ParameterError(
            f"parameter {name!r} = {value!r} is a {type(value).__name__}, but the parameters cell "
            f"declares it {type_name}: give a value of type {type_name}{hint}."
        )


def parameters(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The notebook's parameters with their current values, each checked against its declared type.

    Call it as ``params = parameters(globals())`` in the cell right after the ``parameters`` cell,
    before any other annotated assignment: the names are those annotated so far (the parameters
    cell's).

    Raises:
        ParameterError: a value does not fit its declared type (every such parameter is named).
    """
    declared = dict(namespace.get("__annotations__", {}))
    if not declared:
        raise ParameterError(
            "no annotated parameters found: declare them as `name: type = default` in the "
            "parameters cell"
        )
    problems = []
    for name, kind in declared.items():
        if name not in namespace:
            problems.append(
                f"parameter {name!r} is declared ({_type_name(kind)}) but has no value: give it a "
                f"default in the parameters cell (`{name}: {_type_name(kind)} = ...`) or pass it "
                f"with papermill -p"
            )
            continue
        try:
            check_value(name, namespace[name], _type_name(kind))
        except ParameterError as exc:
            problems.append(str(exc))
    if problems:
        raise ParameterError("\n".join(problems))
    _CLOCK.start()
    return {name: namespace[name] for name in declared}


#: comments that mark a cell for a tool, not say what it does (``# NBVAL_CHECK_OUTPUT``, a noqa
#: or fmt marker)
_MARKER = re.compile(r"#\s*([A-Z][A-Z0-9_]+|noqa\b.*|fmt: \w+)$")


def stage_name(source: str) -> str:
    """What a cell does, in a few words: its first comment, else its first line of code (70
    characters at most)."""
    lines = [
        line.strip()
        for line in source.splitlines()
        if line.strip() and not _MARKER.match(line.strip())
    ]
    comment = next((line.lstrip("# ") for line in lines[:1] if line.startswith("#")), None)
    return (comment or next((line for line in lines if not line.startswith("#")), ""))[:70]


class _CellClock:
    """Times every cell the IPython kernel runs after :meth:`start` (its
    ``pre_run_cell``/``post_run_cell`` events)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self._began: float | None = None
        self._source = ""
        self._shell: Any = None

    def start(self) -> None:
        try:
            from IPython import get_ipython
        except ImportError:  # plain Python: no cells to time
            return
        shell = get_ipython()
        if shell is None or shell is self._shell:
            return
        self._shell, self.rows = shell, []
        shell.events.register("pre_run_cell", self._pre)
        shell.events.register("post_run_cell", self._post)

    def _pre(self, info: Any) -> None:
        self._began, self._source = time.perf_counter(), getattr(info, "raw_cell", "") or ""

    def _post(self, result: Any) -> None:
        if self._began is not None:
            self.rows.append(
                {
                    "cell": len(self.rows) + 1,
                    "stage": stage_name(self._source),
                    "seconds": round(time.perf_counter() - self._began, 3),
                }
            )
        self._began = None


_CLOCK = _CellClock()


def stage_seconds() -> list[dict[str, Any]]:
    """``[{cell, stage, seconds}]`` of every cell this kernel finished since :func:`parameters` was
    called, ``cell`` counting from 1 (the cell that asks is still running, so it is not among them);
    empty outside IPython."""
    return [dict(r) for r in _CLOCK.rows]


def find_row(
    rows: Sequence[Mapping[str, Any]], missing_ok: bool = False, **match: Any
) -> dict | None:
    """The first row whose fields equal ``match`` (e.g. ``target="cnn_pool", depth=1``).

    ``missing_ok=True`` returns None where no row matches (a method that does not apply); otherwise
    that is a ``KeyError`` that names what was asked and what the rows hold.
    """
    for row in rows:
        if all(row.get(k) == v for k, v in match.items()):
            return dict(row)
    if missing_ok:
        return None
    seen = {k: sorted({str(r.get(k)) for r in rows}) for k in match}
    raise KeyError(f"no row with {match}; the rows hold {seen}")


def select_rows(rows: Sequence[Mapping[str, Any]], **match: Any) -> list[dict]:
    """Every row whose fields equal ``match``, in order (none is an empty list)."""
    return [dict(r) for r in rows if all(r.get(k) == v for k, v in match.items())]


#: a parameter's rule: a test of its value, and what the value must be (said in the error)
Rule = tuple[Callable[[Any], bool], str]
#: the rules most parameters follow
AT_LEAST_0: Rule = (lambda v: v >= 0, ">= 0 (0: the recipe's)")
AT_LEAST_1: Rule = (lambda v: v >= 1, ">= 1")
FRACTION: Rule = (lambda v: 0 <= v < 1, "a fraction in [0, 1)")


def one_of(choices: Sequence[Any], what: str = "") -> Rule:
    """The rule of a list parameter: not empty, and every item one of ``choices``."""
    return (
        lambda v: bool(v) and all(item in choices for item in v),
        f"one or more of {list(choices)}" + (f" ({what})" if what else ""),
    )


def require(
    params: Mapping[str, Any], rules: Mapping[str, Rule], problems: Sequence[str] = ()
) -> None:
    """Check the parameters' values beyond their types (:func:`parameters` checks those): one
    ``ValueError`` that names every parameter whose value breaks its rule (``{name: (test, what it
    must be)}``) and every other problem the notebook found (``problems``: rules that join several
    parameters)."""
    found = [
        f"{name} must be {what}, got {params[name]!r}"
        for name, (test, what) in rules.items()
        if name in params and not test(params[name])
    ]
    found += [p for p in problems if p]
    if found:
        raise ValueError("; ".join(found))
