"""`classunlearn audit` end to end on digits: train -> train --exclude-class (x3) -> unlearn ->
audit --json, in this process through `cli.main` (a subprocess per command would spend
most of the time starting Python).

Digits because it is the smallest embedded dataset: with 5 training epochs and 8 shadow
models per side, the whole file runs in well under a minute on one core. The numbers are
not checked for quality here (tests/test_audit_known_truths.py does that), only the
contract: keys, finiteness, caching, refusals.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from classunlearn.bench.audit import CONTRACT_KEYS, recorded_method
from classunlearn.checkpoint import CheckpointMeta
from classunlearn.cli import main

EPOCHS = "5"
SHADOWS = "8"


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """An original, three references retrained without class 3, and RL applied to the
    original (2 epochs), all on digits with a 5-epoch recipe."""
    d = tmp_path_factory.mktemp("audit-cli")
    paths = {"original": d / "original.safetensors", "rl": d / "rl.safetensors"}
    assert main(["train", "--dataset", "digits", "--epochs", EPOCHS, "--seed", "0",
                 "--out", str(paths["original"])]) == 0
    for s in (1, 2, 3):
        paths[f"ref{s}"] = d / f"ref{s}.safetensors"
        assert main(["train", "--dataset", "digits", "--epochs", EPOCHS, "--seed", str(s),
                     "--exclude-class", "3", "--out", str(paths[f"ref{s}"])]) == 0
    assert main(["unlearn", "--checkpoint", str(paths["original"]), "--forget-class", "3",
                 "--method", "rl", "--set", "epochs=2", "--out", str(paths["rl"])]) == 0
    return d, paths


def _refs(paths: dict) -> list[str]:
    return [a for s in (1, 2, 3) for a in ("--reference", str(paths[f"ref{s}"]))]


@pytest.fixture(scope="module")
def audited(ckpts):
    """The full audit of the RL checkpoint, run twice on the same cache."""
    d, paths = ckpts
    cache = d / "cache"
    docs = []
    for i in range(2):
        out = d / f"audit{i}.json"
        rc = main(["audit", "--checkpoint", str(paths["rl"]), "--forget-class", "3",
                   *_refs(paths), "--shadows", SHADOWS, "--cache", str(cache),
                   "--json", str(out)])
        assert rc == 0
        docs.append(json.loads(out.read_text()))
    return docs


def test_json_has_every_contract_key_finite(audited):
    doc = audited[0]
    m = doc["metrics"]
    assert set(CONTRACT_KEYS) <= set(m)
    for key in CONTRACT_KEYS:  # an RL checkpoint with 3 references measures every one
        assert isinstance(m[key], float) and math.isfinite(m[key]), (key, m[key])
    assert m["svc_mia_feature"] and m["mia_nn_feature"]
    assert doc["method"] == "rl" and doc["method_params"]["epochs"] == 2
    assert doc["ulira_details"]["method"] == "rl"
    assert doc["ulira_details"]["params"]["epochs"] == 2  # replayed with the recorded params
    assert "ulira" in doc["avg_gap_left_out"]  # references have no U-LiRA of their own
    assert doc["avg_gap_keys"] == ["acc_retain", "acc_forget", "test_acc_retain",
                                   "test_acc_forget", "svc_mia", "mia_nn"]
    assert m["runtime_s"] > 0
    assert len(doc["references"]) == 3
    for ref in doc["references"]:  # each reference scored against the other two
        assert math.isfinite(ref["mia_nn"]) and math.isfinite(ref["tv"])
        assert ref["acc_forget"] == 0.0


def test_json_has_the_verdicts(audited):
    """audit --json: one verdict per attack (docs/audit.md, "Verdicts"); U-LiRA's null is
    retrain replayed on the same shadows."""
    doc = audited[0]
    v = {x["attack"]: x for x in doc["verdicts"]}
    assert list(v) == ["accuracy", "mia_nn", "ulira"]
    assert v["mia_nn"]["numbers"]["n_references"] == 3
    assert v["mia_nn"]["verdict"] != "leaks"  # 3 references never suffice for "leaks"
    u = doc["ulira_details"]
    assert v["ulira"]["numbers"]["null_point"] == u["ulira_null"]["point"]
    # the verdict's statistic is the in-sample number, not the cross-fitted headline
    assert v["ulira"]["numbers"]["point"] == pytest.approx(doc["metrics"]["ulira_in_sample"])


def test_second_audit_reuses_every_shadow_unit(audited):
    first, second = (d["ulira_details"] for d in audited)
    # shadow originals, shadow retrains, the method replayed, retrain replayed (the null)
    assert first["units_computed"] == 4 and first["units_reused"] == 0
    assert second["units_computed"] == 0 and second["units_reused"] == 4
    assert audited[0]["metrics"]["ulira"] == audited[1]["metrics"]["ulira"]


def test_table_lists_model_and_references(ckpts, capsys):
    d, paths = ckpts
    rc, out, _ = _run(capsys, "audit", "--checkpoint", str(paths["rl"]), "--forget-class", "3",
                      *_refs(paths), "--metrics", "accuracy,mia_nn,tv")
    assert rc == 0
    assert "audited (rl)" in out and "reference 2 (vs others)" in out
    assert "MIA-NN feature:" in out and "Avg.Gap averages" in out
    assert "U-LiRA" not in out.split("\n\n")[1]  # not requested: no column


def test_ulira_unavailable_without_method_record(ckpts, capsys):
    """The RL weights with the method record removed from the sidecar: nothing says how the
    model was made, so U-LiRA is reported unavailable with the reason, never a number."""
    d, paths = ckpts
    bare = d / "bare.safetensors"
    shutil.copy(paths["rl"], bare)
    side = json.loads(paths["rl"].with_suffix(".json").read_text())
    side["method"] = None
    bare.with_suffix(".json").write_text(json.dumps(side))
    out_json = d / "bare.json.out"
    rc, out, _ = _run(capsys, "audit", "--checkpoint", str(bare), "--forget-class", "3",
                      *_refs(paths), "--metrics", "accuracy,ulira", "--shadows", SHADOWS,
                      "--cache", str(d / "bare-cache"), "--json", str(out_json))
    assert rc == 0
    assert "U-LiRA unavailable:" in out and "records no method" in out
    doc = json.loads(out_json.read_text())
    assert doc["metrics"]["ulira"] is None and doc["metrics"]["ulira_auc"] is None
    assert doc["metrics"]["ulira_in_sample"] is None
    assert "records no method" in doc["unavailable"]["ulira"]
    assert doc["metrics"]["runtime_s"] is None
    assert not (d / "bare-cache").exists()  # no shadow was trained for nothing


@pytest.mark.parametrize("bad", ["accuracy,bogus", "", "ulira;tv"])
def test_bad_metrics_refused_in_one_line(ckpts, capsys, bad):
    d, paths = ckpts
    rc, out, err = _run(capsys, "audit", "--checkpoint", str(paths["rl"]), "--forget-class",
                        "3", *_refs(paths), "--metrics", bad)
    assert rc == 2
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "--metrics" in err and "Traceback" not in err
    assert out == ""


@pytest.mark.parametrize("extra,fragment", [
    (["--shadows", "3"], "--shadows"),
    (["--mia-feature", "softmax"], "--mia-feature"),
    (["--svc-feature", "loss"], "--svc-feature"),
    (["--json", "{ref1}"], "would overwrite"),
    (["--json", "{rl_side}"], "would overwrite"),
])
def test_other_bad_options_refused_before_work(ckpts, capsys, extra, fragment):
    d, paths = ckpts
    fill = {"ref1": str(paths["ref1"]), "rl_side": str(paths["rl"].with_suffix(".json"))}
    before = paths["rl"].with_suffix(".json").read_text()
    rc, _, err = _run(capsys, "audit", "--checkpoint", str(paths["rl"]), "--forget-class",
                      "3", *_refs(paths), *[a.format(**fill) for a in extra])
    assert rc == 2 and fragment in err and err.count("\n") == 1
    assert paths["rl"].with_suffix(".json").read_text() == before  # the sidecar is intact


def test_reference_must_exclude_the_forget_class(ckpts, capsys):
    d, paths = ckpts
    rc, _, err = _run(capsys, "audit", "--checkpoint", str(paths["rl"]), "--forget-class",
                      "5", "--reference", str(paths["ref1"]), "--metrics", "accuracy")
    assert rc == 2 and "exclude-class" in err


def _meta(**kw) -> CheckpointMeta:
    base = dict(dataset="digits", class_names=[str(i) for i in range(10)],
                input_shape=[1, 8, 8], model="mlp", recipe={"epochs": 5, "lr": 0.05}, seed=4)
    return CheckpointMeta(**{**base, **kw})


def test_recorded_method_readings():
    """What U-LiRA replays, read from a sidecar (no model needed)."""
    m, why = recorded_method(_meta(), (3,))
    assert (m.name, m.params, m.seed, why) == ("original", {}, 4, None)
    m, _ = recorded_method(_meta(excluded_classes=[3]), (3,))
    assert m.name == "retrain" and m.params == {"epochs": 5, "lr": 0.05}
    m, _ = recorded_method(_meta(method={"name": "ga", "params": {"lr": 0.01},
                                         "forget_classes": [3], "seed": 7},
                                 parent_sha256="ab"), (3,))
    assert (m.name, m.params, m.seed) == ("ga", {"lr": 0.01}, 7)
    for meta, text in [(_meta(parent_sha256="ab"), "records no method"),
                       (_meta(recipe={}), "neither an unlearning method nor a training recipe"),
                       (_meta(excluded_classes=[5]), "not the forget classes"),
                       (_meta(method={"name": "ga", "params": {}, "forget_classes": [5]}),
                        "not the audited forget classes")]:
        m, why = recorded_method(meta, (3,))
        assert m is None and text in why


def test_json_is_strict(audited, ckpts):
    d, _ = ckpts
    text = (Path(d) / "audit0.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
