"""Which ``medsr infer`` options combine: one table (:data:`RULES`), one function
(:func:`check_options`); :func:`check` applies it to one run's option objects.

``medsr infer`` runs in one of four modes, set by the flags:

- ``network``: ``--method auto`` (the default), with or without ``--model NAME|PATH``;
- ``classical``: ``--method`` names a classical method (cubic, lanczos, ibp, ...);
- ``self-supervised``: ``--self-supervised`` (a network trained on the scan itself);
- ``saved-fit``: ``--model FIT`` where FIT was saved by ``--self-supervised --save-model``.

The rule for every mode-specific option is the same: an option that would change the
result but does not apply to the mode is an error (one line, exit 2), never silently
ignored; one that only changes speed or memory, or asks for what the mode does anyway, is
a note in the summary. docs/inference.md ("Which options combine") prints this table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medsr import pretrained
from medsr.errors import UserError
from medsr.inference.resolvers import saved_fit
from medsr.options import InferOptions

MODES = ("network", "classical", "self-supervised", "saved-fit")
OK, ERROR, NOTE = "ok", "error", "note"
_SPEED = "only sets speed or memory for networks; {mode} does not use it"

# option -> mode -> "ok" or (ERROR | NOTE, why). A mode an option itself selects is "ok".
RULES: dict[str, dict[str, Any]] = {
    "--scale/--spacing": {
        "network": OK, "classical": OK,
        "self-supervised": (ERROR, "--self-supervised makes the thick axis isotropic with "
                                   "the in-plane spacing; do not combine it with {opt}"),
        "saved-fit": (ERROR, "{model} is a self-supervised fit: it makes the thick axis "
                             "isotropic; do not combine it with {opt}"),
    },
    "--method CLASSICAL": {
        "network": OK, "classical": OK,
        "self-supervised": (ERROR, "--self-supervised trains its own network; do not "
                                   "combine it with {method}"),
        "saved-fit": (ERROR, "--model and {method} do not combine: {model} is a network"),
    },
    "--model": {
        "network": OK, "saved-fit": OK,
        "classical": (ERROR, "--model and {method} do not combine: --model runs a network, "
                             "{method} a classical method; give one"),
        "self-supervised": (ERROR, "--self-supervised trains its own network; do not "
                                   "combine it with --model"),
    },
    "--tta": {
        "network": OK, "self-supervised": OK,  # forces the test-time flips
        "classical": (ERROR, "--tta averages a network over flips; {method} is not a network "
                             "(use --method auto or --model)"),
        "saved-fit": (NOTE, "a saved self-supervised fit always applies the test-time flips; "
                            "--tta changes nothing"),
    },
    "--budget": {"self-supervised": OK},
    "--steps": {"self-supervised": OK},
    "--save-model": {"self-supervised": OK},
    "--seed": {"self-supervised": OK},
    "--slice-thickness": {
        "self-supervised": OK,
        "network": (ERROR, "--slice-thickness needs --slice-profile (the projection onto the "
                           "scan's slices it sets up) or --self-supervised"),
        "classical": (ERROR, "--slice-thickness needs --slice-profile (the projection onto "
                             "the scan's slices it sets up) or --self-supervised"),
        "saved-fit": (ERROR, "{model} is a self-supervised fit: it applies the slice "
                             "profile it was fitted for; do not give --slice-thickness"),
    },
    "--slice-profile": {
        "network": OK, "classical": OK, "self-supervised": OK,
        "saved-fit": (ERROR, "{model} is a self-supervised fit: it applies the slice "
                             "profile it was fitted for; do not give --slice-profile"),
    },
    "--device": {"network": OK, "self-supervised": OK, "saved-fit": OK,
                 "classical": (NOTE, "--device: {method} runs on the CPU")},
    **{flag: {"network": OK, "classical": (NOTE, f"{flag} {_SPEED}"),
              "self-supervised": (NOTE, f"{flag} {_SPEED}"),
              "saved-fit": (NOTE, f"{flag} {_SPEED}")}
       for flag in ("--max-memory", "--tile", "--batch", "--precision", "--compile",
                    "--tile-blend")},
}
_NEEDS_SELFSUP = "{opt} belongs to --self-supervised; without it it would be ignored"
for _flag in ("--budget", "--steps", "--save-model", "--seed"):
    for _mode in MODES:
        RULES[_flag].setdefault(_mode, (ERROR, _NEEDS_SELFSUP))


def mode_of(*, method: str = "auto", self_supervised: bool = False,
            saved_fit: bool = False) -> str:
    """The mode the flags select (self-supervised > saved fit > classical > network)."""
    if self_supervised:
        return "self-supervised"
    if saved_fit:
        return "saved-fit"
    return "network" if method == "auto" else "classical"


def check_options(*, method: str = "auto", model: Any = None, saved_fit: bool = False,
                  self_supervised: bool = False, scale: Any = None, spacing: Any = None,
                  tta: bool = False, budget_s: float | None = None, steps: int | None = None,
                  seed: int | None = None, save_model: Any = None,
                  slice_thickness: float | None = None, slice_profile: Any = None,
                  device: str = "auto", max_memory: float = 1.5e9,
                  tile: Sequence[int] | None = None, batch: int | None = None,
                  precision: str = "auto", compile_model: bool = False,
                  blend: str = "crop") -> tuple[str, list[str]]:
    """(mode, notes) for ``medsr infer``'s options; a :class:`UserError` (one line) for the
    first option that does not apply to the mode (:data:`RULES`). An option counts as given
    when it differs from its default (None, False, "auto", 1.5 GB, "crop")."""
    mode = mode_of(method=method, self_supervised=self_supervised, saved_fit=saved_fit)
    given = {
        "--scale/--spacing": "--scale" if scale is not None else
                             "--spacing" if spacing is not None else None,
        "--method CLASSICAL": f"--method {method}" if method != "auto" else None,
        "--model": model is not None and not saved_fit,
        "--tta": tta, "--budget": budget_s is not None, "--steps": steps is not None,
        "--save-model": save_model is not None, "--seed": seed is not None,
        "--slice-thickness": slice_thickness is not None,
        "--slice-profile": slice_profile not in (None, "auto"),
        "--device": device != "auto", "--max-memory": abs(max_memory - 1.5e9) > 1.0,
        "--tile": tile is not None, "--batch": batch is not None,
        "--precision": precision != "auto", "--compile": compile_model,
        "--tile-blend": blend != "crop",
    }
    if mode in ("network", "classical") and slice_profile not in (None, "auto"):
        given["--slice-thickness"] = False  # it sets up the projection: it applies
    method_flag = f"--method {method}"
    notes: list[str] = []
    for opt, value in given.items():
        if not value:
            continue
        rule = RULES[opt].get(mode, OK)
        if rule == OK:
            continue
        kind, why = rule
        text = why.format(opt=value if isinstance(value, str) else opt, method=method_flag,
                          mode=_MODE_WORDS[mode].format(method=method), model=str(model))
        if kind == ERROR:
            raise UserError(text)
        notes.append(text)
    return mode, notes


_MODE_WORDS = {"network": "the network", "classical": "--method {method}",
               "self-supervised": "--self-supervised", "saved-fit": "a saved fit"}


def table() -> str:
    """:data:`RULES` as a Markdown table (docs/inference.md prints it)."""
    cell = {OK: "ok"}
    lines = ["| option | " + " | ".join(MODES) + " |", "|---" * (len(MODES) + 1) + "|"]
    for opt, row in RULES.items():
        cells = [cell.get(row.get(m, OK), None) or row[m][0] for m in MODES]
        if opt == "--slice-thickness":  # it applies with --slice-profile
            cells = [c if m not in ("network", "classical") else "error without "
                     "`--slice-profile`" for m, c in zip(MODES, cells)]
        lines.append(f"| `{opt}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def check(opts: InferOptions) -> tuple[str, list[str], Any]:
    """(mode, notes, the model to load) for one run's options: the flag rules of
    :func:`check_options`, then a shipped name resolved
    (:func:`medsr.pretrained.resolve`), before any work."""
    run, ss = opts.run, opts.selfsup
    fitted = saved_fit(run.model)
    mode, notes = check_options(
        model=run.model, saved_fit=fitted is not None, method=run.method,
        self_supervised=ss.enabled, scale=opts.grid.scale, spacing=opts.grid.spacing,
        tta=run.tta, budget_s=ss.budget_s, steps=ss.steps, seed=ss.seed,
        save_model=ss.save_model, slice_thickness=run.slice_thickness,
        slice_profile=run.profile, device=run.device, max_memory=run.max_memory,
        tile=run.tile, batch=run.batch, precision=run.precision,
        compile_model=run.compile_model, blend=run.blend)
    model = run.model
    if model is not None and fitted is None:
        model, note = pretrained.resolve(model)
        if note:
            notes.append(note)
    return mode, notes, model


def check_flags(model: Any = None, **flags: Any) -> tuple[list[str], Any]:
    """(notes, the model to load) for flat keywords (:meth:`InferOptions.from_kwargs`'
    names): :func:`check` for callers that hold no option objects (the Python API)."""
    _, notes, model = check(InferOptions.from_kwargs(model=model, **flags))
    return notes, model
