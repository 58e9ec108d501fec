"""Training from scratch the way the user trained: a plug-in training function and a
pretrained start (docs/own_training.md).

Every model the audit compares with is "retrained exactly as the original was": the
study's originals, the references, U-LiRA's shadow originals and shadow retrains, the
``retrain`` row. :class:`Training` says how that is done: the :class:`~classunlearn.train.Recipe`,
and optionally

- a **plug-in trainer** ``MODULE:FUNCTION`` (a dotted module or a ``.py`` path, loaded with
  importlib as plug-in models are), called as ``FUNCTION(model, x, y, seed=..., device=...)``
  with a freshly built model, the training inputs (float, as the model takes them) and
  labels of the unit (D, D_r or a shadow's half), the model's seed and the device; it
  returns the trained model (the same object or one with the same parameter names and
  shapes) and must be deterministic for a given seed. Before the call torch's, numpy's and
  Python's global RNGs are seeded with `seed` (and restored after). A plug-in trainer
  cannot be stacked: shadow sets train their models one at a time with it. Its file's
  SHA-256 goes into sidecars, cache keys and records; a changed file is refused in one line.
- an **init checkpoint** (safetensors): every model starts from its weights before training
  (fine-tuning from a shared backbone). A tensor is loaded where the model has one of the
  same name (after the optional prefix map ``{checkpoint prefix: model prefix}``; with a
  map, only tensors under a mapped prefix are read) and the same shape; the others (a new
  head) keep the weights drawn from the seed. Its SHA-256 goes into keys and records.

``Training.train(model, x, y, seed)`` = ``start`` (the init) then ``fit`` (the trainer, or
``train.train_model`` with the recipe); the bench units, the shadow ensemble and the
``retrain`` method all train through it.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from classunlearn.data.core import Images, to_input
from classunlearn.errors import CheckpointError, ParameterError, TrainingDiverged, UserError
from classunlearn.models import ModelSource, plugin_function, plugin_source
from classunlearn.train import Recipe, resolve_device, train_model

TRAINER_HOW = ("name your training function as MODULE:FUNCTION, where MODULE is an importable "
               "dotted module or a path to a .py file and FUNCTION(model, x, y, seed, device) "
               "returns the trained model")


# ------------------------------------------------------------------ plug-in trainers


def canonical_trainer(ref: str) -> str:
    """A trainer reference with its ``.py`` path made absolute (``/abs/file.py:FUNCTION``),
    so a worker or a later `forget` finds the same file from any working directory."""
    ref = ref.strip()
    if ":" not in ref:
        raise ParameterError(f"bad trainer reference '{ref}'; {TRAINER_HOW}")
    src = trainer_source(ref)
    return f"{src.path}:{src.function}" if src.is_path else ref


def trainer_source(ref: str) -> ModelSource:
    """The trainer's source file and its SHA-256 (refused in one line when missing)."""
    if ":" not in ref:
        raise ParameterError(f"bad trainer reference '{ref}'; {TRAINER_HOW}")
    return plugin_source(ref, "trainer", TRAINER_HOW)


def trainer_sha256(ref: str) -> str:
    return trainer_source(ref).sha256


def trainer_function(ref: str) -> str:
    """The FUNCTION part of a reference (what cache keys name, beside the file's SHA-256:
    moving the file keeps the keys)."""
    return ref.rpartition(":")[2].strip()


def _refuse_changed(src: ModelSource, expected_sha256: str | None) -> None:
    if expected_sha256 and src.sha256 != expected_sha256:
        raise ParameterError(f"trainer file {src.path} changed since it was recorded (SHA-256 "
                             f"{expected_sha256[:12]}..., now {src.sha256[:12]}...); restore "
                             "that file, or start again with the changed trainer")


def check_trainer_source(ref: str, expected_sha256: str) -> None:
    """Refuse, in one line, a trainer whose file changed since `expected_sha256`."""
    _refuse_changed(trainer_source(ref), expected_sha256)


def load_trainer(ref: str, expected_sha256: str | None = None) -> Callable[..., nn.Module]:
    """The training function of `ref` (its file checked against `expected_sha256`)."""
    src = trainer_source(ref)
    _refuse_changed(src, expected_sha256)
    return plugin_function(src, "trainer", TRAINER_HOW, "model, x, y, seed, device",
                           "the trained model")


def run_trainer(fn: Callable[..., nn.Module], ref: str, model: nn.Module,
                x: torch.Tensor | Images, y: torch.Tensor, seed: int,
                device: str | torch.device | None = None) -> nn.Module:
    """``fn(model, x, y, seed=seed, device=device)`` with the global RNGs seeded by `seed`
    (and restored after); the result's weights are copied into `model`, which is returned
    on the CPU in eval mode. A result that is not a model of the same parameters, or holds
    NaN, is refused in one line; so is anything the function raises (a UserError, e.g. a
    diverged run, passes as it is)."""
    dev = resolve_device(device)
    before = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
            out = fn(model, to_input(x), y, seed=seed, device=dev)
    except UserError:
        raise
    except Exception as e:
        msg = " ".join(str(e).split())
        raise ParameterError(f"trainer '{ref}' failed ({type(e).__name__}: {msg}); fix the "
                             "training function") from None
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    if not isinstance(out, nn.Module):
        raise ParameterError(f"trainer '{ref}' returned a {type(out).__name__}, not the "
                             "trained nn.Module; make it return the model")
    state = out.state_dict()
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != before:
        diff = sorted(set(before.items()) ^ set(got.items()))[:3]
        raise ParameterError(f"trainer '{ref}' returned a model whose parameters differ from "
                             f"the one it was given (e.g. {diff}); return the trained model")
    for k, v in state.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise TrainingDiverged(f"trainer '{ref}': tensor {k} holds NaN or infinite weights "
                                   f"after training (seed {seed}); lower its learning rate")
    if out is not model:
        with torch.no_grad():
            model.load_state_dict({k: v.detach().cpu() for k, v in state.items()})
    return model.cpu().eval()


# ------------------------------------------------------------------ init checkpoints

_INIT_HASHES: dict[tuple, str] = {}  # (path, size, mtime_ns) -> SHA-256
_INIT_STATES: dict[str, dict[str, torch.Tensor]] = {}  # SHA-256 -> tensors


def init_sha256(path: str | Path) -> str:
    """SHA-256 of an init checkpoint (hashed once per process while its size and mtime stay)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as e:
        raise ParameterError(f"init checkpoint {p} cannot be read ({e.strerror}); pass an "
                             "existing .safetensors file to --init") from None
    if not p.is_file():
        raise ParameterError(f"init checkpoint {p} is not a file; pass a .safetensors file")
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _INIT_HASHES:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _INIT_HASHES[key] = h.hexdigest()
    return _INIT_HASHES[key]


def check_init(path: str | Path, expected_sha256: str) -> None:
    """Refuse, in one line, an init checkpoint that changed since `expected_sha256`."""
    now = init_sha256(path)
    if expected_sha256 and now != expected_sha256:
        raise ParameterError(f"init checkpoint {path} changed since it was recorded (SHA-256 "
                             f"{expected_sha256[:12]}..., now {now[:12]}...); restore that file, "
                             "or start again with the changed checkpoint")


def parse_init_map(items: list[str] | dict | None) -> dict[str, str]:
    """``["backbone.=body."]`` (or a dict) -> {checkpoint prefix: model prefix}."""
    if not items:
        return {}
    if isinstance(items, dict):
        pairs = list(items.items())
    else:
        pairs = []
        for item in items:
            if "=" not in item:
                raise ParameterError(f"--init-map expects CHECKPOINT_PREFIX=MODEL_PREFIX, got "
                                     f"'{item}'")
            src, dst = item.split("=", 1)
            pairs.append((src.strip(), dst.strip()))
    out: dict[str, str] = {}
    for src, dst in pairs:
        if not isinstance(src, str) or not isinstance(dst, str):
            raise ParameterError(f"init map entries must be strings, got {src!r}: {dst!r}")
        if src in out:
            raise ParameterError(f"--init-map names checkpoint prefix '{src}' twice")
        out[src] = dst
    return out


def load_init(path: str | Path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of an init checkpoint (safetensors only: a pickle is refused unread),
    checked against `expected_sha256`; cached per process by hash."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_bytes

    from classunlearn.checkpoint import _sniff_untrusted

    p = Path(path)
    sha = init_sha256(p)
    if expected_sha256 and sha != expected_sha256:
        check_init(p, expected_sha256)
    if sha not in _INIT_STATES:
        data = p.read_bytes()
        _sniff_untrusted(data[:9], p, len(data))
        try:
            _INIT_STATES[sha] = load_bytes(data)
        except (SafetensorError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"init checkpoint {p} is not a readable safetensors file "
                                  f"({e}); pass a .safetensors file") from None
    return _INIT_STATES[sha]


@dataclass
class InitReport:
    """What :func:`apply_init` did: model tensors loaded, and those left as drawn from the
    seed (with why)."""

    loaded: list[str] = field(default_factory=list)
    drawn: dict[str, str] = field(default_factory=dict)  # name -> why

    def line(self, path: str | Path) -> str:
        total = len(self.loaded) + len(self.drawn)
        out = f"init: {len(self.loaded)} of {total} model tensors from {Path(path).name}"
        if self.drawn:
            names = list(self.drawn)
            shown = ", ".join(f"{n} ({self.drawn[n]})" for n in names[:4])
            out += f"; drawn from the seed: {shown}" + (
                f" and {len(names) - 4} more" if len(names) > 4 else "")
        return out


def map_names(state: dict[str, torch.Tensor], prefix_map: dict[str, str]
              ) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors under the model's names: as they are without a map; with
    one, only those under a mapped prefix (the longest that matches), renamed."""
    if not prefix_map:
        return dict(state)
    out = {}
    for name, t in state.items():
        src = max((s for s in prefix_map if name.startswith(s)), key=len, default=None)
        if src is not None:
            out[prefix_map[src] + name[len(src):]] = t
    return out


def apply_init(model: nn.Module, state: dict[str, torch.Tensor],
               prefix_map: dict[str, str] | None = None, where: str = "the init checkpoint"
               ) -> InitReport:
    """Copy the checkpoint's tensors into `model` (in place) wherever a name (after the
    map) and shape match; the rest keep their seeded values. A checkpoint that shares no
    tensor with the model is refused."""
    mapped = map_names(state, prefix_map or {})
    report = InitReport()
    own = model.state_dict()
    with torch.no_grad():
        for name, t in own.items():
            src = mapped.get(name)
            if src is None:
                report.drawn[name] = "not in the checkpoint"
            elif tuple(src.shape) != tuple(t.shape):
                report.drawn[name] = (f"shape {tuple(t.shape)}, the checkpoint's "
                                      f"{tuple(src.shape)}")
            else:
                t.copy_(src)
                report.loaded.append(name)
    if not report.loaded:
        theirs = list(mapped or state)[:4]
        raise ParameterError(f"{where} shares no tensor with the model (its names: "
                             f"{theirs}; the model's: {list(own)[:4]}); pass --init-map "
                             "CHECKPOINT_PREFIX=MODEL_PREFIX")
    return report


# ------------------------------------------------------------------ the training procedure


@dataclass(frozen=True)
class Training:
    """How a model is trained from scratch: the recipe, and optionally a plug-in trainer
    (reference and its file's SHA-256) and an init checkpoint (path, SHA-256, prefix map)."""

    recipe: Recipe
    trainer: str | None = None
    trainer_sha256: str | None = None
    init: str | None = None
    init_sha256: str | None = None
    init_map: dict | None = None

    @property
    def stackable(self) -> bool:
        """Whether models can train as one stacked ensemble: only with the recipe."""
        return self.trainer is None

    def start(self, model: nn.Module) -> InitReport | None:
        """Load the init checkpoint into `model` (in place); None without one."""
        if not self.init:
            return None
        return apply_init(model, load_init(self.init, self.init_sha256), self.init_map,
                          f"init checkpoint {self.init}")

    def fit(self, model: nn.Module, x: torch.Tensor | Images, y: torch.Tensor, seed: int,
            device: str | torch.device | None = None, desc: str = "train") -> nn.Module:
        """Train `model` (in place; returned on the CPU in eval mode) with the trainer, or
        with ``train_model`` and the recipe."""
        if self.trainer:
            fn = load_trainer(self.trainer, self.trainer_sha256)
            return run_trainer(fn, self.trainer, model, x, y, seed, device)
        return train_model(model, x, y, self.recipe, seed=seed, device=device, desc=desc)

    def train(self, model: nn.Module, x: torch.Tensor | Images, y: torch.Tensor, seed: int,
              device: str | torch.device | None = None, desc: str = "train") -> nn.Module:
        """``start`` then ``fit``: a freshly built model trained as the original was."""
        self.start(model)
        return self.fit(model, x, y, seed, device, desc)

    def describe(self) -> str:
        parts = [f"trainer {self.trainer} (SHA-256 {(self.trainer_sha256 or '')[:12]}...)"
                 if self.trainer else "the recipe"]
        if self.init:
            parts.append(f"from init checkpoint {self.init} (SHA-256 "
                         f"{(self.init_sha256 or '')[:12]}...)"
                         + (f", map {self.init_map}" if self.init_map else ""))
        return ", ".join(parts)


def make_training(recipe: Recipe, trainer: str | None = None, init: str | Path | None = None,
                  init_map: list[str] | dict | None = None) -> Training:
    """A :class:`Training` from user input: the trainer made canonical and hashed, its
    function checked; the init checkpoint made absolute, hashed and read."""
    ref = sha = None
    if trainer:
        ref = canonical_trainer(str(trainer))
        sha = trainer_sha256(ref)
        load_trainer(ref, sha)  # importable, and the function exists
    ipath = isha = None
    imap = parse_init_map(init_map)
    if init:
        ipath = str(Path(init).expanduser().resolve())
        isha = init_sha256(ipath)
        load_init(ipath, isha)
    elif imap:
        raise ParameterError("--init-map maps the names of an --init checkpoint; pass --init too")
    return Training(recipe, ref, sha, ipath, isha, imap or None)


def check_shared(training: Training, model: nn.Module) -> InitReport | None:
    """Before any work: the init checkpoint shares tensors with a model of this architecture
    (on a copy, so `model` is untouched)."""
    if not training.init:
        return None
    import copy

    return training.start(copy.deepcopy(model))


# ------------------------------------------------------------------ what a sidecar records


def sidecar_training(meta, path: str | Path, trainer: str | None = None,
                     init: str | Path | None = None) -> Training:
    """The training procedure a checkpoint's sidecar records (recipe, trainer, init), with
    both files re-hashed: a changed trainer file or init checkpoint is refused in one line
    (CheckpointError, exit 2). `trainer` / `init` say where those files are now when they
    moved; they must hold the recorded SHA-256, and a sidecar that records none refuses
    them."""
    name = Path(path).name
    recipe = Recipe.from_dict(meta.recipe or {})
    ref = None
    if meta.trainer:
        ref = canonical_trainer(trainer) if trainer else meta.trainer
        try:
            src = trainer_source(ref)
        except ParameterError as e:
            raise CheckpointError(
                f"{name} was trained with trainer '{meta.trainer}', which cannot be found now "
                f"({str(e).split('; ')[0]}); put that file back (SHA-256 "
                f"{meta.trainer_sha256[:12]}...) or pass --trainer NEWPATH.py:FUNCTION") from None
        if src.sha256 != meta.trainer_sha256:
            raise CheckpointError(
                f"trainer file {src.path} changed since {name} was trained with it (SHA-256 "
                f"{meta.trainer_sha256[:12]}... recorded, {src.sha256[:12]}... now); restore it "
                "as it was, or retrain the model with the changed trainer")
    elif trainer:
        raise CheckpointError(f"{name} was trained with its recipe, not a plug-in trainer (its "
                              "sidecar records none); drop --trainer, or retrain the model with "
                              "`classunlearn train --trainer ...`")
    ipath = None
    if meta.init_sha256:
        ipath = str(Path(init).expanduser().resolve()) if init else meta.init
        try:
            now = init_sha256(ipath)
        except ParameterError:
            raise CheckpointError(
                f"{name} was fine-tuned from an init checkpoint that cannot be read at "
                f"{ipath}; put it there (SHA-256 {meta.init_sha256[:12]}...) or pass --init "
                "with where it is now") from None
        if now != meta.init_sha256:
            raise CheckpointError(
                f"init checkpoint {ipath} changed since {name} was trained from it (SHA-256 "
                f"{meta.init_sha256[:12]}... recorded, {now[:12]}... now); restore it as it "
                "was, or retrain the model from the changed checkpoint")
    elif init:
        raise CheckpointError(f"{name} was trained from a random start (its sidecar records no "
                              "init checkpoint); drop --init, or retrain the model with "
                              "`classunlearn train --init ...`")
    return Training(recipe, ref, meta.trainer_sha256 if ref else None, ipath,
                    meta.init_sha256 if ipath else None, meta.init_map or None)


def same_training(a, b) -> str | None:
    """None when two sidecars record the same trainer and init checkpoint (by SHA-256),
    else what differs (audit refuses references trained otherwise than the model)."""
    for what, key in (("trainer", "trainer_sha256"), ("init checkpoint", "init_sha256")):
        x, y = getattr(a, key, None) or None, getattr(b, key, None) or None
        if x != y:
            def show(v, what=what):
                return f"{what} SHA-256 {v[:12]}..." if v else f"no {what}"
            return f"{show(y)} where the audited model has {show(x)}"
    if (a.init_map or None) != (b.init_map or None) and a.init_sha256:
        return f"init map {b.init_map} where the audited model has {a.init_map}"
    return None


__all__ = ["InitReport", "TRAINER_HOW", "Training", "apply_init", "canonical_trainer",
           "check_init", "check_shared", "check_trainer_source", "init_sha256", "load_init",
           "load_trainer", "make_training", "map_names", "parse_init_map", "run_trainer",
           "same_training", "sidecar_training", "trainer_function", "trainer_sha256",
           "trainer_source"]
