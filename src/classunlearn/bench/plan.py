"""`--dry-run`: what a study or a deletion request will run, with every value resolved.

Each method's parameters are shown after every layer of defaults (the registry, the
method's budget relative to the recipe, its defaults for the dataset, the reading set, the
variant in brackets, ``--set``, and ``--tune`` where it will choose a value at run time),
each with the layer it came from; then the attacks' settings. Nothing is trained.
"""

from __future__ import annotations

from classunlearn.audit.mia_nn import DEFAULT_FOLDS as MIA_NN_FOLDS
from classunlearn.audit.svc_mia import SVC_C, SVC_GAMMA
from classunlearn.audit.ulira import DEFAULT_FOLDS as ULIRA_FOLDS
from classunlearn.audit.ulira import DEFAULT_VARIANCE
from classunlearn.audit.verdicts import ULIRA_LEVEL, ULIRA_N_BOOT
from classunlearn.methods import resolve_params
from classunlearn.readings import get_readings
from classunlearn.train import Recipe


def _value(v: object) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def method_lines(spec: str, dataset: str, values: dict[str, str] | None, recipe: Recipe,
                 readings: str, tune: bool | str = False,
                 fixed: dict[str, str] | None = None) -> list[str]:
    """`spec`'s parameters, one line each: ``  key = value   (where it came from)``. With
    `tune`, the keys tuning will choose (those not in `fixed`) say so."""
    from classunlearn.tune import grid_for, grid_keys, is_paper_method

    r = resolve_params(spec, dataset, values, recipe, readings)
    tuned: dict[str, tuple] = {}
    if tune and grid_keys(spec) and not (tune == "baselines" and is_paper_method(spec)):
        grid = grid_for(spec)
        keep = fixed or {}
        if not set(grid) <= set(keep):
            tuned = {k: v for k, v in grid.items() if k not in keep}
    tag = " (ORACLE: reads retrained models)" if r.cls.oracle else ""
    lines = [f"  {spec}{tag}"]
    params = r.params.to_dict()
    width = max(len(k) for k in params) if params else 0
    for k, v in params.items():
        source = r.sources.get(k, "registry")
        if k in tuned:
            source = (f"--tune chooses it at run time from {', '.join(map(_value, tuned[k]))} "
                      f"(now: {source})")
        lines.append(f"    {k:<{width}} = {_value(v):<10} {source}")
    return lines


def attack_lines(readings: str, mia_feature: str | None, svc_feature: str | None,
                 references: int, shadows: int) -> list[str]:
    """The attacks' settings after the reading set and the flags."""
    r = get_readings(readings)
    mia = (mia_feature, "--mia-feature") if mia_feature else (r.mia_nn_feature,
                                                              f"readings {r.name}")
    svc = (svc_feature, "--svc-feature") if svc_feature else (r.svc_mia_feature,
                                                              f"readings {r.name}")
    lines = [
        "attacks:",
        f"  MIA-NN   feature={mia[0]} ({mia[1]}), RBF SVM on standardised features, "
        f"{MIA_NN_FOLDS} stratified folds, nn class from the references' mean "
        f"probabilities, references={references}",
        f"  SVC-MIA  feature={svc[0]} ({svc[1]}), RBF SVC C={_value(SVC_C)} "
        f"gamma={SVC_GAMMA}",
    ]
    if shadows:
        lines.append(
            f"  U-LiRA   shadows={shadows} per side, variance={DEFAULT_VARIANCE}, "
            f"folds={ULIRA_FOLDS}; headline: two-fold cross-fitted balanced accuracy "
            f"(50 = chance); verdict: {ULIRA_N_BOOT}-resample {ULIRA_LEVEL:.0%} interval of "
            "the in-sample accuracy against the null (the same attack on retrain's replay)")
    else:
        lines.append("  U-LiRA   off (--shadows 0)")
    return lines


def describe_study(cfg, sources: dict[str, str] | None = None) -> str:
    """The resolved study of a :class:`~classunlearn.bench.runner.BenchConfig` (validated)."""
    from classunlearn.bench.runner import study_recipe, tune_explicit
    from classunlearn.data import DATASETS, parse_forget_classes

    sources = sources or {}
    r = get_readings(cfg.readings)
    ds = cfg.load_data()
    recipe = study_recipe(cfg)
    training = cfg.training()
    model = cfg.model or DATASETS[cfg.dataset].default_model

    def src(key: str) -> str:
        return f" ({sources[key]})" if key in sources else ""

    studies = []
    for forget in cfg.forget_classes:
        fc = parse_forget_classes(forget, ds)
        studies.append(", ".join(f"{c} ({ds.class_names[c]})" for c in fc))
    shadows = min(cfg.shadows, 8) if cfg.quick else cfg.shadows
    lines = [
        f"readings: {r.name}: {r.description}",
        f"dataset: {cfg.dataset}" + (f" from {cfg.data_dir}" if cfg.data_dir else "")
        + f", {len(ds.y_train)} train / {len(ds.y_test)} test images"
        + (f" (subset {cfg.subset} / {cfg.test_subset}, seed {cfg.subset_seed})"
           if cfg.subset or cfg.test_subset else ""),
        f"model: {model}" + (f" {cfg.model_kwargs}" if cfg.model_kwargs else "") + src("model"),
        f"recipe (originals, references, shadows, retrain): "
        f"{', '.join(f'{k}={_value(v)}' for k, v in recipe.to_dict().items())}{src('recipe')}",
        *([f"training: {training.describe()} (docs/own_training.md)"]
          if training.trainer or training.init else []),
        f"forget: {' | '.join(studies)}",
        f"seeds={cfg.seeds}{src('seeds')}, references={cfg.references}{src('references')}, "
        f"shadows={shadows}{src('shadows')}",
        *attack_lines(cfg.readings, cfg.mia_feature, cfg.svc_feature, cfg.references,
                      shadows),
        "methods (value, then the layer it came from: registry < recipe budget < dataset "
        "defaults < readings < variant < --set < --tune):",
    ]
    for spec in cfg.methods:
        lines += method_lines(spec, cfg.dataset, cfg.method_params.get(spec), recipe,
                              cfg.readings, cfg.tune, tune_explicit(cfg, spec))
    lines.append("dry run: nothing was trained")
    return "\n".join(lines)


def describe_request(req, dataset, meta, classes: tuple[int, ...], training=None) -> str:
    """The resolved deletion request of :class:`~classunlearn.forget.ForgetRequest`
    (`training`: the sidecar's, ``trainers.sidecar_training``)."""
    recipe = Recipe.from_dict(meta.recipe)
    r = get_readings(req.readings)
    lines = [
        f"readings: {r.name}: {r.description}",
        f"checkpoint: {req.checkpoint} ({meta.dataset}, model {meta.model})",
        f"forget: {', '.join(f'{c} ({dataset.class_names[c]})' for c in classes)}",
        f"recipe of the references and shadows (the checkpoint's): "
        f"{', '.join(f'{k}={_value(v)}' for k, v in recipe.to_dict().items())}",
        *([f"training of the references and shadows (the checkpoint's): "
           f"{training.describe()}"] if training is not None
          and (training.trainer or training.init) else []),
        *attack_lines(req.readings, req.mia_feature, None, req.references, req.shadows),
        "method (value, then the layer it came from):",
        *method_lines(req.method, meta.dataset, req.params, recipe, req.readings),
        f"out: {req.out}",
        "dry run: nothing was trained",
    ]
    return "\n".join(lines)
