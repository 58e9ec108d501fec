"""Model registry: MLP, small CNN and CIFAR-style ResNet-18, written here (no torchvision),
plus plug-in models of the user's own.

Every registry model is a :class:`Classifier`: a ``body`` that maps inputs to penultimate
features and a linear ``head`` that maps features to logits. TRW's `weights` and `features`
similarity sources and BE read the output layer; :func:`final_linear` finds it by name
(``head=``), as ``model.head``, or as the one ``nn.Linear`` with as many outputs as classes.

A plug-in model is named ``MODULE:FUNCTION`` wherever a registry name is accepted: MODULE is
an importable dotted module name or a path to a ``.py`` file, and
``FUNCTION(input_shape, num_classes, **model_args)`` returns an ``nn.Module`` mapping a batch
of inputs to ``(batch, num_classes)`` logits. The module is imported with importlib (a
``.py`` path through ``importlib.util.spec_from_file_location``); :func:`model_source` gives
its file and the SHA-256 of that file, which checkpoints and bench keys record so that a
changed file is noticed. Only that one file is hashed, not what it imports.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from classunlearn.errors import ParameterError


class Classifier(nn.Module):
    def __init__(self, body: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.body = body
        self.head = nn.Linear(feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def mlp(input_shape: tuple[int, ...], num_classes: int, hidden: int = 256, depth: int = 2
        ) -> Classifier:
    """Fully connected net: `depth` hidden ReLU layers of widths hidden, hidden/2, ..."""
    layers: list[nn.Module] = [nn.Flatten()]
    width_in = math.prod(input_shape)
    width = hidden
    for _ in range(depth):
        layers += [nn.Linear(width_in, width), nn.ReLU()]
        width_in, width = width, max(width // 2, 8)
    return Classifier(nn.Sequential(*layers), width_in, num_classes)


def cnn(input_shape: tuple[int, ...], num_classes: int, width: int = 32) -> Classifier:
    """Small CNN: two conv blocks and a dense layer; Conv1d for (C, L) inputs, Conv2d for
    (C, H, W). No batch norm, so shadow models can be trained as one stacked ensemble."""
    if len(input_shape) not in (2, 3):
        raise ParameterError(
            f"model 'cnn' needs inputs shaped (C, L) or (C, H, W), got {input_shape}; use 'mlp'"
        )
    conv, pool, adapt, side = (
        (nn.Conv2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d, 4)
        if len(input_shape) == 3
        else (nn.Conv1d, nn.MaxPool1d, nn.AdaptiveAvgPool1d, 8)
    )
    c = input_shape[0]
    body = nn.Sequential(
        conv(c, width, 3, padding=1), nn.ReLU(),
        conv(width, width, 3, padding=1), nn.ReLU(), pool(2),
        conv(width, 2 * width, 3, padding=1), nn.ReLU(),
        adapt(side), nn.Flatten(),
        nn.Linear(2 * width * side ** (len(input_shape) - 1), 128), nn.ReLU(),
    )
    return Classifier(body, 128, num_classes)


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def resnet18(input_shape: tuple[int, ...], num_classes: int, width: int = 64) -> Classifier:
    """CIFAR-style ResNet-18 (3x3 stem, no max-pool); `width` scales every stage (64 is
    the standard net, 16 a narrow variant for CPU work). Works for 32x32 and 64x64 inputs."""
    if len(input_shape) != 3:
        raise ParameterError(f"model 'resnet18' needs image inputs (C, H, W), got {input_shape}")
    layers: list[nn.Module] = [
        nn.Conv2d(input_shape[0], width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
    ]
    c_in = width
    for i, c_out in enumerate([width, 2 * width, 4 * width, 8 * width]):
        stride = 1 if i == 0 else 2
        layers += [_BasicBlock(c_in, c_out, stride), _BasicBlock(c_out, c_out, 1)]
        c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return Classifier(nn.Sequential(*layers), c_in, num_classes)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    build: Callable[..., Classifier]
    stackable: bool  # no batch norm: shadow copies can be trained as one vmapped ensemble


MODELS: dict[str, ModelInfo] = {
    m.name: m
    for m in [
        ModelInfo("mlp", "fully connected ReLU net (hidden=256, depth=2)", mlp, True),
        ModelInfo("cnn", "small CNN, Conv1d or Conv2d by input rank (width=32)", cnn, True),
        ModelInfo("resnet18", "CIFAR-style ResNet-18 with batch norm (width=64)", resnet18,
                  False),
    ]
}


def is_plugin(name: str) -> bool:
    """True for a plug-in reference ``MODULE:FUNCTION`` (registry names have no colon)."""
    return ":" in name


_HOW = ("name your model as MODULE:FUNCTION, where MODULE is an importable dotted module or a "
        "path to a .py file and FUNCTION(input_shape, num_classes, **model_args) returns an "
        "nn.Module")


def _split_ref(ref: str, kind: str = "model", how: str = _HOW) -> tuple[str, str, bool]:
    """(module, function, module is a file path) of ``MODULE:FUNCTION``. `kind` and `how`
    word the messages (plug-in trainers share this machinery: classunlearn.trainers)."""
    module, _, function = ref.rpartition(":")
    module, function = module.strip(), function.strip()
    is_path = module.endswith(".py") or "/" in module or "\\" in module
    if not module or not function or not all(p.isidentifier() for p in function.split(".")):
        raise ParameterError(f"bad {kind} reference '{ref}'; {how}")
    if not is_path and not all(p.isidentifier() for p in module.split(".")):
        raise ParameterError(f"bad {kind} reference '{ref}': '{module}' is neither a dotted "
                             f"module name nor a path to a .py file; {how}")
    return module, function, is_path


def canonical_model_name(name: str) -> str:
    """A registry name as it is; a plug-in's ``.py`` path made absolute, so that a
    checkpoint or a bench worker finds the same file from any working directory."""
    if not is_plugin(name):
        return name
    module, function, is_path = _split_ref(name)
    return f"{Path(module).expanduser().resolve()}:{function}" if is_path else name


@dataclass(frozen=True)
class ModelSource:
    """Where a plug-in model comes from: its reference, source file and that file's SHA-256."""

    ref: str
    module: str
    function: str
    path: Path
    sha256: str
    is_path: bool


def _file_sha256(path: Path, ref: str, kind: str = "model") -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        raise ParameterError(f"cannot read {kind} file {path} of '{ref}' ({e.strerror or e}); "
                             "pass an existing .py file as PATH.py:FUNCTION") from None


def model_source(name: str) -> ModelSource | None:
    """The source file of a plug-in model and its SHA-256 (None for a registry model).
    A dotted module is located without running it (its parent packages are imported)."""
    if not is_plugin(name):
        return None
    return plugin_source(name)


def plugin_source(name: str, kind: str = "model", how: str = _HOW) -> ModelSource:
    """The source file of the plug-in ``MODULE:FUNCTION`` and its SHA-256; `kind` ("model",
    "trainer") and `how` word the one-line refusals."""
    module, function, is_path = _split_ref(name, kind, how)
    if is_path:
        path = Path(module).expanduser()
        if not path.is_file():
            raise ParameterError(f"{kind} file {path} not found (from '{name}'); pass an "
                                 "existing .py file as PATH.py:FUNCTION")
        if path.suffix != ".py":
            raise ParameterError(f"{kind} file {path} is not a .py file; pass PATH.py:FUNCTION")
    else:
        try:
            spec = importlib.util.find_spec(module)
        except Exception as e:  # a parent package that fails to import, a bad name
            raise ParameterError(f"cannot import {kind} module '{module}' ({type(e).__name__}: "
                                 f"{e}); {how}") from None
        if spec is None:
            raise ParameterError(f"cannot import {kind} module '{module}': no such module on "
                                 f"the Python path; install it, add its folder to PYTHONPATH, "
                                 "or pass a path to the .py file")
        if not spec.origin or not spec.has_location or not Path(spec.origin).is_file():
            raise ParameterError(f"{kind} module '{module}' has no source file to record; pass "
                                 "a path to a .py file instead")
        path = Path(spec.origin)
    return ModelSource(name, module, function, path.resolve(), _file_sha256(path, name, kind),
                       is_path)


def model_source_sha256(name: str) -> str | None:
    """SHA-256 of a plug-in model's source file; None for a registry model."""
    src = model_source(name)
    return src.sha256 if src else None


def check_model_source(name: str, expected_sha256: str | None) -> None:
    """Refuse, in one line, a plug-in whose source file changed since `expected_sha256` was
    recorded (a registry model, or no recorded hash, passes)."""
    src = model_source(name)
    if src is not None and expected_sha256 and src.sha256 != expected_sha256:
        raise ParameterError(f"model file {src.path} changed since it was recorded (SHA-256 "
                             f"{expected_sha256[:12]}..., now {src.sha256[:12]}...); restore "
                             "that file, or start again with the changed model")


_imported: dict[str, str] = {}  # dotted module name -> SHA-256 of the source it was run from


def _import(src: ModelSource, kind: str = "model", how: str = _HOW) -> object:
    try:
        if src.is_path:
            mod_name = f"_classunlearn_{kind}_{src.sha256[:16]}"
            if mod_name in sys.modules:
                return sys.modules[mod_name]
            spec = importlib.util.spec_from_file_location(mod_name, src.path)
            if spec is None or spec.loader is None:
                raise ImportError("not an importable Python file")
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module  # dataclasses and pickling look modules up here
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[mod_name]
                raise
            if _file_sha256(src.path, src.ref, kind) != src.sha256:
                del sys.modules[mod_name]
                raise ParameterError(f"{kind} file {src.path} changed while it was being "
                                     "imported; try again")
            return module
        module = importlib.import_module(src.module)
        if _imported.setdefault(src.module, src.sha256) != src.sha256:
            module = importlib.reload(module)  # the file changed since this process read it
            _imported[src.module] = src.sha256
        return module
    except ParameterError:
        raise
    except Exception as e:  # the user's module failed to import: say so in one line
        where = src.path if src.is_path else f"module '{src.module}'"
        msg = " ".join(str(e).split())
        raise ParameterError(f"cannot import {kind} {where} ({type(e).__name__}: {msg}); fix "
                             f"it, or {how}") from None


def plugin_function(src: ModelSource, kind: str = "model", how: str = _HOW,
                    args: str = "input_shape, num_classes, **model_args",
                    returns: str = "an nn.Module") -> Callable[..., nn.Module]:
    """The function a plug-in reference names (a model factory, or a `kind` such as a
    trainer taking `args` and returning `returns`), refused in one line if absent."""
    obj: object = _import(src, kind, how)
    where = src.path if src.is_path else f"'{src.module}'"
    for part in src.function.split("."):
        if not hasattr(obj, part):
            raise ParameterError(f"{kind} module {where} has no '{src.function}'; define "
                                 f"{src.function}({args}) there or name another function "
                                 "after the colon")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ParameterError(f"'{src.ref}' is a {type(obj).__name__}, not a function; name a "
                             f"function({args}) returning {returns}")
    return obj  # type: ignore[return-value]


_checked: set[tuple] = set()  # plug-in builds whose output shape was checked


def _check_output(model: nn.Module, src: ModelSource, input_shape: tuple[int, ...],
                  num_classes: int, kwargs: dict) -> None:
    """One forward pass on two zero inputs (eval mode, no grad, mode restored): the model
    must return (2, num_classes) logits. Done once per reference, hash, shape and args."""
    key = (src.ref, src.sha256, input_shape, num_classes, tuple(sorted(kwargs.items())))
    if key in _checked:
        return
    param = next(model.parameters(), None)
    x = torch.zeros(2, *input_shape, device=param.device if param is not None else "cpu")
    was_training = model.training
    try:
        with torch.no_grad():
            out = model.eval()(x)
    except Exception as e:
        msg = " ".join(str(e).split())
        raise ParameterError(f"the model of '{src.ref}' fails on a batch of inputs shaped "
                             f"{tuple(x.shape)} ({type(e).__name__}: {msg}); it must accept "
                             f"(batch, *{input_shape}) inputs") from None
    finally:
        model.train(was_training)
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != (2, num_classes):
        raise ParameterError(f"the model of '{src.ref}' maps inputs shaped {tuple(x.shape)} to "
                             f"{shape}; it must return logits shaped (batch, num_classes) = "
                             f"(2, {num_classes})")
    _checked.add(key)


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int,
                seed: int | None = None, **kwargs: object) -> nn.Module:
    """Build a registered model, or a plug-in ``MODULE:FUNCTION`` (see the module docstring);
    with `seed`, its initial weights depend on that seed only (the global RNG is left as it
    was). Unknown names or arguments, and plug-ins that cannot be imported, are not callable,
    or do not return a module giving (batch, num_classes) logits, are refused in one line."""
    src = model_source(name)
    if src is None and name not in MODELS:
        raise ParameterError(f"unknown model '{name}'; choose one of: {', '.join(MODELS)} "
                             "(or your own as MODULE:FUNCTION)")
    build = MODELS[name].build if src is None else plugin_function(src)
    input_shape = tuple(input_shape)
    try:
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            model = build(input_shape, num_classes, **kwargs)
            if src is not None:
                if not isinstance(model, nn.Module):
                    raise ParameterError(f"'{name}' returned a {type(model).__name__}, not a "
                                         "torch.nn.Module; make it return the model")
                _check_output(model, src, input_shape, num_classes, kwargs)
            return model
    except ParameterError:
        raise
    except (TypeError, RuntimeError, ValueError) as e:  # unknown argument, impossible size
        msg = " ".join(str(e).split())
        raise ParameterError(f"bad arguments {kwargs} for model '{name}': {msg}; fix "
                             "--model-arg" + ("" if src is None else " or the model function")
                             ) from None
    except Exception as e:  # anything else a user's function raises: one line, not a crash
        if src is None:
            raise
        msg = " ".join(str(e).split())
        raise ParameterError(f"'{name}' failed to build the model ({type(e).__name__}: {msg}); "
                             "fix the model function") from None


def is_stackable(name: str) -> bool:
    """Whether shadow copies of model `name` can be trained as one stacked ensemble: a
    registry model's ``stackable`` flag; a plug-in is never stacked (it may hold batch norm
    or layers the stacked engine does not know), it is trained model by model. Unknown names
    and bad plug-in references are refused in one line."""
    if model_source(name) is not None:
        return False
    if name not in MODELS:
        raise ParameterError(f"unknown model '{name}'; choose one of: {', '.join(MODELS)}")
    return MODELS[name].stackable


def final_linear(model: nn.Module, head: str | None = None, num_classes: int | None = None
                 ) -> nn.Linear:
    """The model's output layer (its rows are the class weight vectors): the submodule
    named `head` (dotted, e.g. "fc" or "classifier.3"), else ``model.head``, else the one
    ``nn.Linear`` with `num_classes` outputs. Anything ambiguous is refused with a message
    saying how to name the layer (``head=``; for TRW and BE, ``--set head=...``)."""
    how = ("pass head='NAME' (the dotted name of the output nn.Linear; for TRW and BE: "
           "--set head=NAME)")
    if head is not None:
        try:
            layer = model.get_submodule(head)
        except AttributeError:
            names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
            raise ParameterError(f"head='{head}': the model has no such submodule; its "
                                 f"nn.Linear layers are {names or 'none'}") from None
        if not isinstance(layer, nn.Linear):
            raise ParameterError(f"head='{head}' is a {type(layer).__name__}, not an nn.Linear; "
                                 "name the model's output nn.Linear")
        if num_classes is not None and layer.out_features != num_classes:
            raise ParameterError(f"head='{head}' has {layer.out_features} outputs but there are "
                                 f"{num_classes} classes; name the model's output layer")
        return layer
    named = getattr(model, "head", None)
    if isinstance(named, nn.Linear) and (num_classes is None
                                         or named.out_features == num_classes):
        return named
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ParameterError("the model has no nn.Linear layer; similarity 'weights' and "
                             "'features' and method BE need one as its output layer")
    if num_classes is None:
        if len(linears) == 1:
            return linears[0][1]
        raise ParameterError(f"cannot tell which of the model's nn.Linear layers "
                             f"{[n for n, _ in linears]} is the output layer; {how}")
    fits = [(n, m) for n, m in linears if m.out_features == num_classes]
    if len(fits) == 1:
        return fits[0][1]
    if not fits:
        raise ParameterError(f"no nn.Linear of the model has {num_classes} outputs (one per "
                             f"class; layers: {[n for n, _ in linears]}); {how}")
    raise ParameterError(f"several nn.Linear layers have {num_classes} outputs "
                         f"({', '.join(n for n, _ in fits)}), so the output layer is ambiguous; "
                         f"{how}")


__all__ = ["MODELS", "Classifier", "ModelInfo", "ModelSource", "build_model",
           "canonical_model_name", "check_model_source", "cnn", "final_linear", "is_plugin",
           "is_stackable", "mlp", "model_source", "model_source_sha256", "resnet18"]
