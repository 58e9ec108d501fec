"""The `classunlearn` command line: datasets, methods, train, unlearn, audit, tune, forget,
verify (and bench, report). Bad input exits 2 with one line on stderr; internal failures exit
1 with the traceback written to a log file, not the screen."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path

from classunlearn.errors import ParameterError, UserError


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage as a one-line UserError instead of printing usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see `{self.prog} --help`)")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        """As argparse's, but an unknown argument points at the command's own help."""
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            cmd = getattr(ns, "command", None)
            prog = f"{self.prog} {cmd}" if cmd else self.prog
            raise UserError(f"unrecognized arguments: {' '.join(extras)} (see `{prog} "
                            "--help`)")
        return ns


def _seed(text: str) -> int:
    """--seed: an integer in 0..2**32-1 (numpy and torch both take it)."""
    from classunlearn.forget import SEED_MAX

    try:
        value = int(text)
    except ValueError:
        raise ParameterError(f"--seed expects an integer, got '{text}'") from None
    if not 0 <= value <= SEED_MAX:
        raise ParameterError(f"--seed must be an integer in 0..{SEED_MAX}, got {value}")
    return value


def _print_classes(indices, class_names, what: str = "forget classes") -> None:
    """Every command shows the classes it resolved, as `index (name)`, before any work."""
    from classunlearn.data import describe_classes

    print(f"{what}: {describe_classes(indices, class_names)}", flush=True)


def _key_values(items: list[str] | None, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ParameterError(f"{flag} expects KEY=VALUE, got '{item}'")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _model_kwargs(items: list[str] | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for k, v in _key_values(items, "--model-arg").items():
        try:
            out[k] = int(v)
        except ValueError:
            raise ParameterError(f"--model-arg {k} expects an integer, got '{v}'") from None
        if out[k] < 0:
            raise ParameterError(f"--model-arg {k} must be >= 0, got {out[k]}")
    return out


def check_device(name: str) -> None:
    """Refuse an unknown or absent --device before any work."""
    import torch

    if name == "auto":
        return
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ParameterError(f"unknown --device '{name}'; use auto, cpu or cuda[:N]") from None
    ok = {"cpu": True, "cuda": torch.cuda.is_available()
          and (dev.index or 0) < torch.cuda.device_count(),
          "mps": torch.backends.mps.is_available()}.get(dev.type, False)
    if not ok:
        raise ParameterError(f"--device {name} is not available on this machine; use "
                             "--device auto or cpu")


def check_checkpoint_out(out: Path, inputs: list[str]) -> None:
    """A new checkpoint path: .safetensors, writable, and not one of the inputs."""
    if out.suffix != ".safetensors":
        raise ParameterError(f"--out {out} must end in .safetensors (its .json sidecar is "
                             "written beside it)")
    for i in inputs:
        if Path(i).resolve() == out.resolve():
            raise ParameterError(f"--out {out} is also an input checkpoint; write to a new "
                                 "file so the input is kept")
    from classunlearn.checkpoint import check_writable

    check_writable(out)




# ------------------------------------------------------------------ commands

def cmd_datasets(args: argparse.Namespace) -> int:
    from classunlearn.data import DATASETS, load_dataset

    for info in DATASETS.values():
        size = ""
        if info.embedded:
            d = load_dataset(info.name)
            size = (f"{len(d.y_train)} train / {len(d.y_test)} test, {d.num_classes} classes, "
                    f"inputs {d.input_shape}; ")
        where = "embedded" if info.embedded else "needs --data-dir"
        print(f"{info.name:14s} {size}{info.description} [{where}; default model "
              f"{info.default_model}]")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from classunlearn.methods import METHODS

    for name in sorted(METHODS):
        m = METHODS[name]
        tag = "  [ORACLE: reads retrained references]" if m.oracle else ""
        print(f"{name:16s} {m.summary}{tag}\n{'':16s} source: {m.source}")
    return 0


def _dataset(name: str, data_dir: str | None):
    from classunlearn.data import load_dataset

    return load_dataset(name, data_dir)


def cmd_train(args: argparse.Namespace) -> int:
    from classunlearn.checkpoint import CheckpointMeta, save_checkpoint
    from classunlearn.data import DATASETS, ForgetSplit, check_data_dir
    from classunlearn.errors import TrainingDiverged
    from classunlearn.models import (
        build_model,
        canonical_model_name,
        check_model_source,
        model_source_sha256,
    )
    from classunlearn.train import default_recipe, override, recipe_from_strings
    from classunlearn.trainers import check_init, check_trainer_source, make_training

    out = Path(args.out)
    check_checkpoint_out(out, [])
    check_device(args.device)
    check_data_dir(args.dataset, args.data_dir)
    ds = _dataset(args.dataset, args.data_dir)
    model_name = canonical_model_name(args.model or DATASETS[args.dataset].default_model)
    source_sha = model_source_sha256(model_name)  # plug-in models: their file's hash
    model_kwargs = _model_kwargs(args.model_arg)
    recipe = override(default_recipe(args.dataset), epochs=args.epochs, lr=args.lr,
                      batch_size=args.batch_size)
    recipe = recipe_from_strings(recipe, _key_values(args.recipe_arg, "--recipe-arg"))
    # a plug-in trainer and an init checkpoint: hashed and checked before any work
    training = make_training(recipe, args.trainer, args.init, args.init_map)
    x, y, excluded = ds.x_train, ds.y_train, []
    if args.exclude_class:
        split = ForgetSplit.make(ds, args.exclude_class)
        x, y = split.part("train_retain")
        excluded = list(split.forget_classes)
        _print_classes(excluded, ds.class_names, "excluded classes")
    model = build_model(model_name, ds.input_shape, ds.num_classes, seed=args.seed,
                        **model_kwargs)
    if not any(p.requires_grad for p in model.parameters()):
        raise ParameterError(f"model '{model_name}' has no trainable parameters, so there is "
                             "nothing to train; give the model at least one nn.Parameter")
    report = training.start(model)  # the init checkpoint's weights, where they fit
    if report is not None:
        print(report.line(training.init))
    if training.trainer:
        print(f"trainer: {training.trainer} (SHA-256 {training.trainer_sha256[:12]}...)")
    try:
        model = training.fit(model, x, y, args.seed, args.device, desc=f"train {model_name}")
    except TrainingDiverged as e:  # its hint names `--set`, which train does not take
        if training.trainer:
            raise
        raise TrainingDiverged(f"{str(e).split('; lower')[0]}; lower the learning rate (--lr, "
                               f"now {recipe.lr:g}) or the number of epochs (--epochs)"
                               ) from None
    check_model_source(model_name, source_sha)  # the file did not change while training
    if training.trainer:  # nor did the trainer's, nor the init checkpoint
        check_trainer_source(training.trainer, training.trainer_sha256)
    if training.init:
        check_init(training.init, training.init_sha256)
    meta = CheckpointMeta(dataset=args.dataset, class_names=ds.class_names,
                          input_shape=list(ds.input_shape), model=model_name,
                          model_kwargs=model_kwargs, excluded_classes=excluded,
                          recipe=recipe.to_dict(), seed=args.seed,
                          model_source_sha256=source_sha, input_norm=ds.norm_stats)
    meta.set_training(training)
    save_checkpoint(model, meta, out)
    print(f"wrote {out} ({'retrained without ' + str(excluded) if excluded else 'original'})")
    return 0


def cmd_unlearn(args: argparse.Namespace) -> int:
    from classunlearn.checkpoint import load_checkpoint, load_meta, save_checkpoint
    from classunlearn.data import ForgetSplit
    from classunlearn.methods import UnlearnData, make_params, parse_spec
    from classunlearn.train import Recipe

    out = Path(args.out)
    check_checkpoint_out(out, [args.checkpoint, *(args.reference or [])])
    check_device(args.device)
    from classunlearn.data import check_data_dir

    meta = load_meta(args.checkpoint)
    check_data_dir(meta.dataset, args.data_dir)
    ds = _dataset(meta.dataset, args.data_dir)
    model, meta = load_checkpoint(args.checkpoint, ds)
    split = ForgetSplit.make(ds, args.forget_class)
    _print_classes(split.forget_classes, ds.class_names)
    cls, _ = parse_spec(args.method)
    if cls.follows_recipe and not meta.recipe:
        raise ParameterError(f"{args.checkpoint} records no training recipe, so `retrain` "
                             "cannot repeat it; retrain with `classunlearn train "
                             "--exclude-class ...` and the original's settings")
    cls, params = make_params(args.method, meta.dataset, _key_values(args.set, "--set"),
                              recipe=Recipe.from_dict(meta.recipe) if meta.recipe else None)
    seed = args.seed
    if cls.follows_recipe and seed is None:
        seed = meta.seed + 1  # a fresh seed: never the original's initial weights
    elif cls.follows_recipe and seed == meta.seed:
        raise ParameterError(f"--seed {seed} is the original's own seed: retrain would start "
                             f"from its initial weights; pass another, e.g. --seed {seed + 1}")
    seed = 0 if seed is None else seed
    refs, ref_records = [], []
    for r in args.reference or []:
        ref_model, ref_meta = load_checkpoint(r, ds)
        refs.append(ref_model)
        ref_records.append({"path": str(Path(r).resolve()), "sha256": ref_meta.sha256})
    training = None
    if cls.follows_recipe:  # retrain: the original's trainer and init checkpoint too
        from classunlearn.trainers import sidecar_training

        training = sidecar_training(meta, args.checkpoint)
    unlearned, record = cls().unlearn(model, UnlearnData.from_split(split), params,
                                      seed=seed, device=args.device, references=refs,
                                      training=training)
    parent = meta.sha256
    meta.method = {"name": cls.name, "params": record.params,
                   "forget_classes": list(split.forget_classes), "seed": seed,
                   "oracle": cls.oracle, "wall_time_s": record.wall_time_s}
    if cls.oracle:  # the audit refuses these as its references, and replays with them
        meta.method["references"] = ref_records
    meta.parent_sha256 = parent
    save_checkpoint(unlearned, meta, out)
    from classunlearn.data import describe_classes

    tag = " (ORACLE)" if cls.oracle else ""
    print(f"wrote {out}: {cls.name}{tag} forgot "
          f"{describe_classes(split.forget_classes, ds.class_names)} in "
          f"{record.wall_time_s:.2f} s ({record.steps} steps)")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from classunlearn.bench.audit import audit_checkpoint, json_ready, preflight
    from classunlearn.bench.summary import write_text_atomic

    preflight(args)  # bad input fails before any work
    if args.json:
        from classunlearn.checkpoint import check_writable

        target = Path(args.json)
        if target.is_dir():
            raise ParameterError(f"--json {target} is a folder; pass a file in it, e.g. "
                                 f"--json {target / 'audit.json'}")
        if target.exists() and not target.is_file():
            raise ParameterError(f"--json {target} is not a regular file (a device or a "
                                 "pipe); pass a path for a new .json file")
        check_writable(target.parent / "audit.json")  # probes the folder the file goes in
    _checked_classes(args)
    result = audit_checkpoint(args)
    if args.json:
        write_text_atomic(Path(args.json), json.dumps(json_ready(result), indent=2,
                                                      allow_nan=False))
        print(f"wrote {args.json}")
    return 0


def _checked_classes(args: argparse.Namespace) -> None:
    """audit, tune: refuse --data-dir for embedded data, show the resolved classes."""
    from classunlearn.checkpoint import load_meta
    from classunlearn.data import check_data_dir, parse_forget_classes

    meta = load_meta(args.checkpoint)
    check_data_dir(meta.dataset, args.data_dir)
    ds = _dataset(meta.dataset, args.data_dir)
    _print_classes(parse_forget_classes(args.forget_class, ds), ds.class_names)


def cmd_forget(args: argparse.Namespace) -> int:
    from classunlearn.forget import ForgetRequest, exit_code, run_forget, verdict_lines

    req = ForgetRequest(
        checkpoint=Path(args.checkpoint), forget_classes=args.forget_class, out=Path(args.out),
        data_dir=args.data_dir, method=args.method, references=args.references,
        shadows=args.shadows, note=args.note or "",
        previous=Path(args.previous) if args.previous else None,
        cache=Path(args.cache) if args.cache else None, seed=args.seed,
        command=list(args.argv), params=_key_values(args.set, "--set"),
        readings=args.readings, mia_feature=args.mia_feature, tune=args.tune,
        trainer=args.trainer, init=args.init)
    if args.dry_run:
        from classunlearn.forget import describe

        print(describe(req))
        return 0
    result = run_forget(req, log=lambda m: print(m, file=sys.stderr, flush=True),
                        show=lambda m: print(m, flush=True))
    for line in verdict_lines(result.record):
        print(line)
    out = Path(args.out)
    print(f"wrote {out / 'unlearned.safetensors'}, {out / 'record.json'} and "
          f"{out / 'record.html'}; {result.units_computed} units computed, "
          f"{result.units_reused} reused (cache {result.record['audit']['cache']})")
    return exit_code(result.record)


def cmd_verify(args: argparse.Namespace) -> int:
    from classunlearn.verify import verify_record

    failure = verify_record(Path(args.record), hashes_only=args.hashes_only,
                            log=lambda m: print(m, file=sys.stderr, flush=True),
                            search=[Path(d) for d in args.search or []])
    if failure:
        print(f"verify FAILED: {failure}")
        return 1
    print(f"verified {args.record}: every file and number reproduces"
          + (" (hashes only)" if args.hashes_only else ""))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from classunlearn.bench import executors

    if args.executor == "process":  # the workers boot while this process imports torch
        executors.prestart(args.workers)
    try:
        return _bench(args)
    finally:
        executors.discard_prestarted()  # not taken: the run stopped before it began


def _bench(args: argparse.Namespace) -> int:
    from classunlearn.bench.report import render_tables
    from classunlearn.bench.runner import ALL_METHODS, BenchConfig, run_bench
    from classunlearn.bench.summary import oracle_methods

    methods = ALL_METHODS if args.methods == "all" else [
        m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods or len(set(methods)) != len(methods):
        raise ParameterError(f"--methods '{args.methods}' is empty or names a method twice; "
                             "give 'all' or a comma-separated list of distinct methods")
    model_kwargs = _model_kwargs(args.model_arg)
    method_params: dict[str, dict[str, str]] = {}
    for item in args.set or []:
        if ":" not in item.split("=", 1)[0]:
            raise ParameterError(f"bench --set expects METHOD:KEY=VALUE, got '{item}'")
        method, kv = item.split(":", 1)
        if method not in methods:
            raise ParameterError(f"bench --set '{item}' names method '{method}', which is not "
                                 "in --methods; add it there or drop the --set")
        method_params.setdefault(method, {}).update(_key_values([kv], "--set"))
    from classunlearn.presets import bench_settings

    settings = bench_settings(args.preset, {
        "model": args.model, "model_kwargs": model_kwargs, "seeds": args.seeds,
        "references": args.references, "shadows": args.shadows, "subset": args.subset,
        "test_subset": args.test_subset})
    if args.recipe_arg:  # on top of the preset's (or the dataset's default) recipe
        from classunlearn.train import Recipe, default_recipe, recipe_from_strings

        base = (Recipe.from_dict(settings["recipe"]) if settings["recipe"]
                else default_recipe(args.dataset))
        settings["recipe"] = recipe_from_strings(
            base, _key_values(args.recipe_arg, "--recipe-arg")).to_dict()
    cfg = BenchConfig(
        dataset=args.dataset, data_dir=args.data_dir, model=settings["model"],
        model_kwargs=settings["model_kwargs"], recipe=settings["recipe"],
        forget_classes=[[c] for c in args.forget_class] if not args.forget_set
        else [s.split(",") for s in args.forget_set],
        methods=methods, seeds=settings["seeds"], shadows=settings["shadows"],
        references=settings["references"], subset=settings["subset"],
        test_subset=settings["test_subset"], subset_seed=args.subset_seed, preset=args.preset,
        executor=args.executor, address=args.address, workers=args.workers,
        gpus_per_task=args.gpus_per_task, quick=args.quick,
        epochs=args.epochs, method_params=method_params, out=args.out, tune=args.tune or False,
        readings=args.readings, mia_feature=args.mia_feature, svc_feature=args.svc_feature,
        trainer=args.trainer, init=args.init, init_map=args.init_map)
    if args.dry_run:
        from classunlearn.bench.plan import describe_study

        cfg.validate()
        print(describe_study(cfg, _setting_sources(args)))
        return 0
    import time as _time

    start = _time.perf_counter()
    result = run_bench(cfg, log=lambda m: print(m, file=sys.stderr, flush=True))
    results = json.loads((result.out / "results.json").read_text())
    mia, svc = cfg.attack_features()
    print(f"readings: {cfg.readings} (MIA-NN feature {mia}, SVC-MIA feature {svc}; "
          "docs/readings.md section 9)\n")
    print(render_tables(results, oracle_methods(results["summary"])))
    for k, v in result.failed.items():
        print(f"FAILED {k}: {v}")
    print(f"\n{result.computed} units computed, {result.reused} reused, "
          f"{_time.perf_counter() - start:.0f} s; report: {result.out / 'report.html'}")
    return 0


def _setting_sources(args: argparse.Namespace) -> dict[str, str]:
    """Where bench's model, recipe, seeds, references and shadows came from (--dry-run)."""
    fallback = f"preset {args.preset}" if args.preset else "default"
    out = {k: (f"--{k}" if getattr(args, k) is not None else fallback)
           for k in ("seeds", "references", "shadows")}
    out["model"] = "--model" if args.model else (
        f"preset {args.preset}" if args.preset else f"{args.dataset}'s default")
    out["recipe"] = ("--epochs on " if args.epochs else "") + (
        f"preset {args.preset}" if args.preset else f"{args.dataset}'s default recipe") + (
        ", --quick halves the epochs" if args.quick else "") + (
        ", --recipe-arg" if args.recipe_arg else "")
    return out


def cmd_tune(args: argparse.Namespace) -> int:
    from classunlearn.bench.runner import ALL_METHODS
    from classunlearn.tune import chosen_line, format_table, tunable_methods, tune_checkpoint

    if args.methods == "all":
        methods = tunable_methods(ALL_METHODS)
    else:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods or len(set(methods)) != len(methods):
        raise ParameterError(f"--methods '{args.methods}' is empty or names a method twice; "
                             "give 'all' or a comma-separated list of distinct methods")
    _checked_classes(args)
    out = tune_checkpoint(args.checkpoint, args.forget_class, methods, args.data_dir,
                          args.out, args.seed,
                          log=lambda m: print(m, file=sys.stderr, flush=True),
                          trainer=args.trainer, init=args.init)
    for r in out.results:
        print(format_table(r) + "\n")
    print("chosen (flags for `classunlearn forget --method METHOD` and `unlearn --method "
          "METHOD`; bench: --set METHOD:KEY=VALUE; `forget --tune` applies them itself):")
    for r in out.results:
        print(chosen_line(r))
    print(f"\n{out.computed} units computed, {out.reused} reused (cache {out.cache})")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from classunlearn.bench.report import write_report
    from classunlearn.bench.store import Store
    from classunlearn.bench.summary import summarise

    out = Path(args.out)
    if not (out / "results.db").exists():
        raise UserError(f"no results.db in {out}; run `classunlearn bench --out {out}` first")
    store = Store(out)
    write_report(out, summarise(store), store.get_meta("failed", {}),
                 store.get_meta("details", {}))
    print(f"wrote {out / 'report.md'} and {out / 'report.html'}")
    return 0


# ------------------------------------------------------------------ parser

DATA_DIR_HELP = ("folder (or .npz file) of a dataset read from local files; not for embedded "
                 "datasets (see `classunlearn datasets`)")

TRAINER_HELP = ("your training function as MODULE:FUNCTION (a dotted module or a .py path); "
                "FUNCTION(model, x, y, seed, device) trains the freshly built model on (x, y) "
                "and returns it, deterministically for a seed (docs/own_training.md)")
INIT_HELP = ("a .safetensors checkpoint every model starts from (fine-tuning a pretrained "
             "backbone): tensors of the same name and shape are loaded, the rest (a new head) "
             "are drawn from the seed")


def _training_flags(p: argparse.ArgumentParser, trains: bool) -> None:
    """--trainer / --init (/ --init-map, --recipe-arg) of the commands that train from
    scratch (train, bench), or that follow a checkpoint's sidecar (forget, audit, tune)."""
    if trains:
        p.add_argument("--trainer", metavar="MODULE:FUNCTION", help=TRAINER_HELP)
        p.add_argument("--init", metavar="CKPT", help=INIT_HELP)
        p.add_argument("--init-map", action="append", metavar="CKPT_PREFIX=MODEL_PREFIX",
                       help="rename the --init checkpoint's tensors: those under CKPT_PREFIX "
                            "load into MODEL_PREFIX...; with a map, only mapped tensors load "
                            "(repeatable)")
        p.add_argument("--recipe-arg", action="append", metavar="KEY=VALUE",
                       help="set a field of the training recipe, e.g. optimizer=adamw, "
                            "label_smoothing=0.1, warmup_epochs=1, nesterov=true, momentum, "
                            "weight_decay, schedule, augment (repeatable)")
        return
    p.add_argument("--trainer", metavar="MODULE:FUNCTION",
                   help="where the checkpoint's plug-in trainer is now, if it moved (default: "
                        "the one its sidecar records; its SHA-256 must be the recorded one)")
    p.add_argument("--init", metavar="CKPT",
                   help="where the checkpoint's init checkpoint is now, if it moved (default: "
                        "its sidecar's; its SHA-256 must be the recorded one)")


def _reading_flags(p: argparse.ArgumentParser) -> None:
    from classunlearn.readings import DEFAULT_READINGS, READINGS

    p.add_argument("--readings", choices=list(READINGS), default=DEFAULT_READINGS,
                   help="the reading set: 'default' (the project's evidence-based readings) "
                        "or 'paper' (the paper's method and attack as public material "
                        "describes them); docs/readings.md section 9. Single flags win over it")
    p.add_argument("--mia-feature", help="MIA-NN feature kind: logits, probs, nn_prob or "
                   "labels (default: the reading set's: labels; paper: logits)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="classunlearn", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("datasets", help="list the datasets").set_defaults(func=cmd_datasets)
    sub.add_parser("methods", help="list the unlearning methods").set_defaults(func=cmd_methods)

    t = sub.add_parser("train", help="train an original model (or a retrained reference)")
    t.add_argument("--dataset", required=True,
                   help="dataset name: digits, mnist-5k, mnist1d (embedded) or one read with "
                        "--data-dir (see `classunlearn datasets`)")
    t.add_argument("--data-dir", help=DATA_DIR_HELP)
    t.add_argument("--model", help="model name (default: the dataset's default), or your "
                   "own as MODULE:FUNCTION (a dotted module or a .py path; FUNCTION("
                   "input_shape, num_classes, **model_args) returns an nn.Module)")
    t.add_argument("--model-arg", action="append", metavar="KEY=INT",
                   help="model argument, e.g. width=16 (repeatable)")
    t.add_argument("--exclude-class", nargs="+", metavar="C",
                   help="train without these classes: a retrained reference (an index or a "
                        "class name; name:X or index:N where a name is also another index)")
    t.add_argument("--seed", type=_seed, default=0,
                   help="seed of the initial weights and the batch order, 0..2**32-1 "
                        "(default 0)")
    t.add_argument("--epochs", type=int, help="training epochs (default: the dataset's recipe)")
    t.add_argument("--lr", type=float, help="learning rate (default: the dataset's recipe)")
    t.add_argument("--batch-size", type=int, help="batch size (default: the dataset's recipe)")
    _training_flags(t, trains=True)
    t.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, "
                   "cuda or cuda:N")
    t.add_argument("--out", required=True, help="output .safetensors path")
    t.set_defaults(func=cmd_train)

    u = sub.add_parser("unlearn", help="apply an unlearning method to a checkpoint")
    u.add_argument("--checkpoint", required=True, metavar="CKPT",
                   help="the model to unlearn from (.safetensors with its .json sidecar)")
    u.add_argument("--forget-class", nargs="+", required=True, metavar="C",
                   help="classes to forget: indices or class names (name:X or index:N where "
                        "a name is also another index)")
    u.add_argument("--method", required=True, help="e.g. trw, trw[weights], rwft, ft, ...")
    u.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="set a hyperparameter (repeatable)")
    u.add_argument("--reference", action="append", metavar="CKPT",
                   help="retrained reference (only oracle methods read it)")
    u.add_argument("--data-dir", help=DATA_DIR_HELP)
    u.add_argument("--seed", type=_seed, help="the run's seed (default 0; for retrain, the "
                   "original's seed + 1: a retrained model starts from fresh weights)")
    u.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, "
                   "cuda or cuda:N")
    u.add_argument("--out", required=True, help="output .safetensors path (its .json sidecar "
                   "is written beside it)")
    u.set_defaults(func=cmd_unlearn)

    a = sub.add_parser("audit", help="measure a model against retrained references")
    a.add_argument("--checkpoint", required=True, metavar="CKPT",
                   help="the unlearned model to audit (.safetensors with its sidecar)")
    a.add_argument("--forget-class", nargs="+", required=True, metavar="C",
                   help="the forgotten classes: indices or class names")
    a.add_argument("--reference", action="append", required=True, metavar="CKPT",
                   help="a model retrained without the forget class (repeatable)")
    a.add_argument("--metrics", default="all",
                   help="'all' or comma-separated groups: accuracy,tv,svc_mia,mia_nn,ulira")
    a.add_argument("--shadows", type=int, default=16,
                   help="U-LiRA shadow models per side: even and at least 8 (default 16; "
                        "0 = skip U-LiRA)")
    a.add_argument("--cache", metavar="DIR",
                   help="store for shadow models (default: .classunlearn-cache beside the "
                        "checkpoint)")
    _reading_flags(a)
    a.add_argument("--svc-feature", help="SVC-MIA feature (default: the reading set's, "
                   "confidence)")
    a.add_argument("--seed", type=_seed, default=0,
                   help="seed of SVC-MIA's member subsample and of MIA-NN's folds")
    a.add_argument("--data-dir", help=DATA_DIR_HELP)
    a.add_argument("--json", metavar="FILE", help="also write every number and verdict to "
                   "this JSON file")
    _training_flags(a, trains=False)
    a.set_defaults(func=cmd_audit)

    f = sub.add_parser(
        "forget", help="honour a deletion request: unlearn, audit, write a verifiable record",
        description="Unlearn the classes from CKPT with the recommended method, train what the "
        "audit needs and the cache lacks (M references retrained without the classes, U-LiRA "
        "shadows), run the full audit and write DIR/unlearned.safetensors, DIR/record.json and "
        "DIR/record.html. Exit 0: every verdict passed or is inconclusive; 3: an attack tells "
        "the model from retrained ones (files still written); 2: bad input. See "
        "docs/forget.md.")
    f.add_argument("--checkpoint", required=True, metavar="CKPT",
                   help="the model trained on the classes (from `classunlearn train`)")
    f.add_argument("--forget-class", nargs="+", required=True, metavar="C",
                   help="classes to forget: indices or class names (name:X or index:N where "
                        "a name is also another index); printed as index (name) first")
    f.add_argument("--data-dir", help=DATA_DIR_HELP)
    f.add_argument("--method", default="rwft",
                   help="unlearning method (default rwft: the closest to retraining on MIA-NN "
                        "on every embedded dataset, median z 1.6 to 1.9 against 2.3 to 5.8 "
                        "for TRW at beta 10; docs/audit.md, 'Which methods stand out')")
    f.add_argument("--references", type=int, default=5,
                   help="M retrained references (default 5: the fewest for a MIA-NN 'leaks' "
                        "verdict)")
    f.add_argument("--shadows", type=int, default=16,
                   help="U-LiRA shadows per side: even and at least 8 (default 16; 0 = skip)")
    f.add_argument("--note", help="free text stored in the record (e.g. the request's ticket)")
    f.add_argument("--previous", metavar="RECORD",
                   help="the record.json of an earlier request whose unlearned model is "
                        "--checkpoint: forget more classes, keep the chain")
    f.add_argument("--cache", metavar="DIR",
                   help="store of references, shadows and replays (default: "
                        ".classunlearn-cache beside DIR, shared by sibling requests; a bench "
                        "--out folder works too)")
    f.add_argument("--seed", type=_seed, default=0,
                   help="the unlearning run's seed, 0..2**32-1 (default 0)")
    f.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="set a hyperparameter of the method (repeatable; `classunlearn tune` "
                        "prints these)")
    f.add_argument("--tune", action="store_true",
                   help="first choose the method's lr and epochs on this model, as "
                        "`classunlearn tune` does (cached); --set values win")
    _reading_flags(f)
    _training_flags(f, trains=False)
    f.add_argument("--dry-run", action="store_true",
                   help="print the resolved request (the method's parameters and where each "
                        "came from, the attacks' settings) and exit without training")
    f.add_argument("--out", required=True, metavar="DIR",
                   help="a new (or empty) folder for the request; a folder holding a record "
                        "is refused, nothing is overwritten")
    f.set_defaults(func=cmd_forget)

    v = sub.add_parser("verify", help="re-hash the files of a forget record and recompute "
                       "its numbers (exit 0: all reproduce, 1: the first that does not)")
    v.add_argument("record", metavar="RECORD", help="DIR/record.json written by `forget`")
    v.add_argument("--hashes-only", action="store_true",
                   help="check the seal, the files' hashes and the record's claims against "
                        "the checkpoints' sidecars, not the numbers")
    v.add_argument("--search", action="append", metavar="DIR",
                   help="a folder to look in for files that moved (found by SHA-256: the "
                        "hashes decide, not the paths; repeatable)")
    v.set_defaults(func=cmd_verify)

    b = sub.add_parser("bench", help="the whole study: every method, every metric, a report")
    b.add_argument("--dataset", default="digits")
    b.add_argument("--data-dir")
    b.add_argument("--model", help="model name (default: the dataset's default), or your "
                   "own as MODULE:FUNCTION (see `train --help`)")
    b.add_argument("--model-arg", action="append", metavar="KEY=INT")
    b.add_argument("--forget-class", nargs="+", default=["3"], metavar="C",
                   help="one study per class (default: 3)")
    b.add_argument("--forget-set", action="append", metavar="C1,C2",
                   help="a study forgetting several classes together (repeatable)")
    b.add_argument("--methods", default="all", help="'all' or a comma-separated list")
    b.add_argument("--set", action="append", metavar="METHOD:KEY=VALUE",
                   help="override a method's hyperparameter, e.g. ga:lr=1e-4")
    b.add_argument("--preset", choices=["paper", "cpu"],
                   help="a whole configuration (model, recipe, seeds, references, shadows, "
                   "subset; see docs/cifar10.md); the flags below still override it")
    b.add_argument("--seeds", type=int, help="study seeds (default 3)")
    b.add_argument("--shadows", type=int,
                   help="U-LiRA shadows per side: even and at least 8 (0 = skip U-LiRA; "
                   "default 16)")
    b.add_argument("--references", type=int, help="M retrained references (default 3)")
    b.add_argument("--subset", type=int, metavar="N",
                   help="train on a stratified, seeded subset of N training images")
    b.add_argument("--test-subset", type=int, metavar="N",
                   help="evaluate on a stratified subset of N test images (default: all)")
    b.add_argument("--subset-seed", type=int, default=0,
                   help="seed of the subsets' draw (default 0)")
    b.add_argument("--executor", choices=["local", "process", "ray"], default="process")
    b.add_argument("--address", help="Ray cluster address (with --executor ray)")
    b.add_argument("--workers", type=int, help="worker processes (default: one per core)")
    b.add_argument("--gpus-per-task", type=float, default=0.0,
                   help="Ray only: GPUs each unit asks the cluster for (e.g. 1 or 0.25)")
    b.add_argument("--epochs", type=int, help="override the training recipe's epochs")
    _training_flags(b, trains=True)
    b.add_argument("--quick", action="store_true", help="half the epochs and 8 shadows")
    b.add_argument("--tune", nargs="?", const="all", choices=["all", "baselines"],
                   help="first choose each method's lr/epochs on the original (see `tune`): "
                        "'all' (the default when given alone) or 'baselines' (every method "
                        "but TRW and RWFT, which keep their reading set's budget); explicit "
                        "--set values and the reading set's values win")
    _reading_flags(b)
    b.add_argument("--svc-feature", help="SVC-MIA feature (default: the reading set's, "
                   "confidence)")
    b.add_argument("--dry-run", action="store_true",
                   help="print the resolved study (every method's parameters and where each "
                        "came from, the attacks' settings) and exit without training")
    b.add_argument("--out", default="runs/bench")
    b.set_defaults(func=cmd_bench)

    tu = sub.add_parser("tune", help="choose each method's lr and epochs for a checkpoint "
                        "(forget accuracy <= 1%%, then best accuracy on held-out D_r)")
    tu.add_argument("--checkpoint", required=True, help="the original model (from `train`)")
    tu.add_argument("--forget-class", nargs="+", required=True, metavar="C",
                    help="classes to forget: indices or class names")
    tu.add_argument("--methods", default="all",
                    help="'all' (every tunable method) or a comma-separated list")
    tu.add_argument("--data-dir", help=DATA_DIR_HELP)
    tu.add_argument("--out", metavar="DIR", help="cache of the tuning runs (default: "
                    ".classunlearn-cache beside the checkpoint)")
    tu.add_argument("--seed", type=_seed, default=0,
                    help="seed of the validation split and of every run")
    _training_flags(tu, trains=False)
    tu.set_defaults(func=cmd_tune)

    r = sub.add_parser("report", help="rebuild report.md/report.html from a bench's results")
    r.add_argument("--out", required=True, metavar="DIR",
                   help="the bench's --out folder (holding results.db); the report is "
                        "written there")
    r.set_defaults(func=cmd_report)
    return p


def _log_path() -> Path:
    return Path(os.environ.get("CLASSUNLEARN_LOG",
                               Path(tempfile.gettempdir()) / "classunlearn-error.log"))


def main(argv: list[str] | None = None) -> int:
    from classunlearn.bench.executors import Stopped, stop_on_signals

    args = None
    try:
        # SIGTERM (kill, batch schedulers, pre-emption) stops like Ctrl-C: the executors end
        # their workers in their `finally`, finished units stay in the store
        with stop_on_signals():
            args = build_parser().parse_args(argv)
            args.argv = list(sys.argv[1:] if argv is None else argv)
            return args.func(args)
    except UserError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        how = f"stopped by {e.name}" if isinstance(e, Stopped) else "interrupted"
        out = getattr(args, "out", None) if getattr(args, "func", None) is cmd_bench else None
        kept = (f"finished units are kept in {out}; rerun the same command to resume"
                if out else "finished work is kept")
        print(f"{how}; {kept}", file=sys.stderr, flush=True)
        return e.exit_code if isinstance(e, Stopped) else 130
    except Exception as e:  # internal failure: traceback to the log, one line on screen
        log = _log_path()
        try:
            with open(log, "a") as f:
                traceback.print_exc(file=f)
            where = f"traceback in {log}"
        except OSError:
            where = "could not write the log"
        print(f"internal error: {type(e).__name__}: {e} ({where})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
