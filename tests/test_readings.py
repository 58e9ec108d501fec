"""Reading sets (`--readings default|paper`) and `--dry-run` (docs/readings.md section 9).

The default set must leave every method's parameters (so every cache key) exactly as they
were; the paper set gives TRW and RWFT the paper's similarity and budget and MIA-NN the logit
feature; single flags, variants and --set win over it; both sets share every trained unit;
a dry run prints the resolved values with their sources and trains nothing."""

from __future__ import annotations

import json

import pytest

from classunlearn.audit.mia_nn import DEFAULT_FEATURE as MIA_NN_DEFAULT
from classunlearn.audit.svc_mia import DEFAULT_FEATURE as SVC_MIA_DEFAULT
from classunlearn.bench.runner import ALL_METHODS, BenchConfig, run_bench
from classunlearn.cli import main
from classunlearn.errors import ParameterError
from classunlearn.methods import make_params, resolve_params
from classunlearn.readings import PAPER_BUDGET, READINGS, attack_features, get_readings
from classunlearn.train import default_recipe


def test_default_set_is_the_modules_defaults():
    r = READINGS["default"]
    assert r.mia_nn_feature == MIA_NN_DEFAULT
    assert r.svc_mia_feature == SVC_MIA_DEFAULT
    assert r.methods == {}  # TRW/RWFT: the registry's own defaults


@pytest.mark.parametrize("dataset", ["digits", "mnist-5k", "imagefolder"])
def test_default_set_changes_no_parameter(dataset):
    recipe = default_recipe(dataset)
    for spec in ALL_METHODS:
        plain = make_params(spec, dataset, None, recipe=recipe)[1]
        assert make_params(spec, dataset, None, recipe=recipe, readings="default")[1] == plain


def test_paper_set_gives_trw_and_rwft_the_paper_reading():
    recipe = default_recipe("digits")
    _, trw = make_params("trw", "digits", None, recipe=recipe, readings="paper")
    assert (trw.similarity, trw.beta, trw.tau) == ("weights", 10.0, 0.1)
    for key, value in PAPER_BUDGET.items():
        assert getattr(trw, key) == value, key
    _, rwft = make_params("rwft", "digits", None, recipe=recipe, readings="paper")
    assert rwft.beta == 0.0 and rwft.epochs == 10 and rwft.batch_size == 128
    assert rwft.schedule == "step" and rwft.retain_fraction == 1.0
    # baselines are the same under both sets
    for spec in ("ft", "rl", "ga", "salun", "scrub", "trw-2r-budget"):
        assert (make_params(spec, "digits", None, recipe=recipe, readings="paper")
                == make_params(spec, "digits", None, recipe=recipe))
    assert attack_features("paper") == ("logits", "confidence")
    assert attack_features("default") == ("labels", "confidence")


def test_flags_variants_and_set_win_over_the_set():
    recipe = default_recipe("digits")
    r = resolve_params("trw[features]", "digits", {"beta": "5", "lr": "0.1"}, recipe, "paper")
    assert r.params.similarity == "features" and r.sources["similarity"] == "variant"
    assert r.params.beta == 5.0 and r.sources["beta"] == "--set"
    assert r.params.lr == 0.1 and r.params.epochs == 10
    assert r.sources["epochs"] == "readings paper"
    assert attack_features("paper", "probs") == ("probs", "confidence")
    assert attack_features("paper", None, "entropy") == ("logits", "entropy")


def test_sources_name_every_layer():
    recipe = default_recipe("digits")
    r = resolve_params("trw", "digits", None, recipe, "default")
    assert r.sources["similarity"] == "registry"
    assert r.sources["retain_fraction"] == "recipe budget"
    assert r.sources["epochs"] == "0.5 x the recipe's 10 epochs"
    rwft = resolve_params("rwft", "digits", None, recipe, "default")
    assert rwft.sources["retain_fraction"] == "digits defaults"
    retrain = resolve_params("retrain", "digits", None, recipe, "paper")
    assert set(retrain.sources.values()) == {"the original's recipe"}


def test_unknown_set_is_refused():
    with pytest.raises(ParameterError, match="unknown reading set 'papr'"):
        get_readings("papr")


def _bench(out, readings, methods):
    cfg = BenchConfig(dataset="digits", methods=methods, seeds=1, shadows=0, references=2,
                      executor="local", epochs=3, out=str(out), readings=readings)
    return run_bench(cfg, log=lambda m: None)


def test_both_sets_share_every_trained_unit(tmp_path):
    first = _bench(tmp_path, "default", ["retrain", "original", "ft", "trw"])
    # the original model, 2 references, and the retrain, original, ft and trw rows
    assert first.computed == 7
    again = _bench(tmp_path, "paper", ["retrain", "original", "ft", "trw"])
    assert again.computed == 1  # only TRW under the paper's parameters
    assert again.reused == 6
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["run"]["config"]["readings"] == "paper"
    assert results["summary"]["trw"]["mia_nn"]["mean"] is not None


def test_bench_dry_run_prints_the_paper_values(tmp_path, capsys):
    out = tmp_path / "never"
    rc = main(["bench", "--readings", "paper", "--dry-run", "--methods",
               "retrain,trw,rwft,ft", "--tune", "baselines", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and not out.exists()
    assert "feature=logits (readings paper)" in text
    lines = text.splitlines()
    trw = lines.index("  trw")
    block = "\n".join(lines[trw:trw + 15])
    assert "similarity        = weights" in block and "readings paper" in block
    assert "--tune chooses" not in block  # --tune baselines leaves TRW at its reading
    ft = lines.index("  ft")
    assert "--tune chooses it at run time" in "\n".join(lines[ft:ft + 3])
    assert "dry run: nothing was trained" in text


def test_bench_dry_run_default_shows_our_readings(capsys):
    assert main(["bench", "--dry-run", "--methods", "trw", "--mia-feature", "probs"]) == 0
    text = capsys.readouterr().out
    assert "feature=probs (--mia-feature)" in text
    assert "similarity        = confusion  registry" in text


def test_forget_dry_run_trains_nothing(tmp_path, capsys):
    orig = tmp_path / "orig.safetensors"
    assert main(["train", "--dataset", "digits", "--epochs", "2", "--out", str(orig)]) == 0
    capsys.readouterr()
    out = tmp_path / "req"
    rc = main(["forget", "--checkpoint", str(orig), "--forget-class", "3", "--readings",
               "paper", "--set", "lr=0.02", "--dry-run", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and not out.exists()
    assert not (tmp_path / ".classunlearn-cache").exists()
    assert "feature=logits (readings paper)" in text
    assert "lr                = 0.02       --set" in text
    assert "epochs            = 10         readings paper" in text


def test_bad_readings_flag_exits_2(capsys):
    assert main(["bench", "--readings", "both", "--dry-run"]) == 2
    assert "invalid choice: 'both'" in capsys.readouterr().err


def test_forget_under_the_paper_set_is_recorded_and_verifies(tmp_path, capsys):
    orig = tmp_path / "orig.safetensors"
    assert main(["train", "--dataset", "digits", "--epochs", "5", "--out", str(orig)]) == 0
    out = tmp_path / "req"
    rc = main(["forget", "--checkpoint", str(orig), "--forget-class", "3", "--readings",
               "paper", "--shadows", "0", "--references", "2", "--out", str(out)])
    assert rc in (0, 3)
    record = json.loads((out / "record.json").read_text())
    assert record["audit"]["readings"] == "paper"
    assert record["audit"]["mia_nn_feature"] == "logits"
    assert record["method"]["params"]["epochs"] == 10
    assert record["method"]["params"]["batch_size"] == 128
    capsys.readouterr()
    assert main(["verify", str(out / "record.json")]) == 0, capsys.readouterr()


def test_audit_takes_the_reading_set(tmp_path, capsys):
    orig, ref1, ref2 = (tmp_path / f"{n}.safetensors" for n in ("orig", "ref1", "ref2"))
    assert main(["train", "--dataset", "digits", "--epochs", "3", "--out", str(orig)]) == 0
    for seed, ref in ((1, ref1), (2, ref2)):
        assert main(["train", "--dataset", "digits", "--epochs", "3", "--exclude-class", "3",
                     "--seed", str(seed), "--out", str(ref)]) == 0
    out = {}
    for readings in ("paper", "default"):
        path = tmp_path / f"{readings}.json"
        assert main(["audit", "--checkpoint", str(orig), "--forget-class", "3", "--reference",
                     str(ref1), "--reference", str(ref2), "--metrics", "mia_nn,svc_mia",
                     "--readings", readings, "--json", str(path)]) == 0
        out[readings] = json.loads(path.read_text())["metrics"]
    capsys.readouterr()
    assert out["paper"]["mia_nn_feature"] == "logits"
    assert out["default"]["mia_nn_feature"] == "labels"
    assert out["paper"]["svc_mia_feature"] == out["default"]["svc_mia_feature"] == "confidence"


def test_api_audit_takes_the_reading_set(digits_models):
    import classunlearn as cu

    split, original, refs = digits_models
    ds = split.dataset
    common = dict(train=(ds.x_train, ds.y_train), test=(ds.x_test, ds.y_test),
                  forget_classes=[3], references=refs, metrics="mia_nn")
    paper = cu.audit(original, readings="paper", **common)
    assert paper["mia_nn_feature"] == "logits"
    assert cu.audit(original, readings="paper", mia_feature="probs",
                    **common)["mia_nn_feature"] == "probs"
