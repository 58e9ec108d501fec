"""`classunlearn forget` on digits (MLP, 10-epoch recipe, 5 references, 8 shadows per side):
the record's schema, the cache (a second request trains nothing), the exit codes (0 for RWFT,
3 for a leaky GA, 2 on bad input), and a sequential request (3, then 5) that chains to the
first record and keeps 3 forgotten."""

from __future__ import annotations

import json
import shutil

import pytest

from classunlearn.checkpoint import file_sha256
from classunlearn.cli import main
from classunlearn.forget import DEFAULT_FORGET_METHOD, RECORD_SCHEMA

SHADOWS = "8"


def _strict(text: str) -> dict:
    def refuse(name):
        raise AssertionError(f"non-strict JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """An original and the request to forget class 3 from it (plus a repeat into a sibling
    folder, which must reuse every unit)."""
    d = tmp_path_factory.mktemp("forget")
    orig = d / "orig.safetensors"
    assert main(["train", "--dataset", "digits", "--epochs", "10", "--out", str(orig)]) == 0
    runs = []
    for name in ("r1", "r1-again"):
        rc = main(["forget", "--checkpoint", str(orig), "--forget-class", "3", "--shadows",
                   SHADOWS, "--note", "ticket 7", "--out", str(d / name)])
        runs.append(rc)
    return d, orig, runs


def test_default_method_is_rwft():
    assert DEFAULT_FORGET_METHOD == "rwft"


def test_record_shape_and_files(first):
    d, orig, runs = first
    assert runs[0] == 0  # RWFT on digits class 3 passes all three (docs/forget.md)
    out = d / "r1"
    for name in ("unlearned.safetensors", "unlearned.json", "record.json", "record.html",
                 "ulira.safetensors"):
        assert (out / name).is_file(), name
    r = _strict((out / "record.json").read_text())
    assert r["schema"] == RECORD_SCHEMA
    assert r["request"]["forget_classes"] == [{"index": 3, "name": "3"}]
    assert r["request"]["note"] == "ticket 7" and r["request"]["previous"] is None
    assert r["request"]["forgotten_before"] == [] and r["request"]["time"].endswith("Z")
    assert r["files"]["original"]["sha256"] == file_sha256(orig)
    assert r["files"]["unlearned"]["sha256"] == file_sha256(out / "unlearned.safetensors")
    assert len(r["files"]["references"]) == 5
    assert r["files"]["data"] == {} and len(r["dataset"]["fingerprint"]) == 64  # embedded
    assert r["method"]["name"] == "rwft" and r["method"]["run_s"] > 0
    assert r["method"]["retrain_s"] > 0 and "ratio_to_retrain" not in r["method"]  # #26
    assert r["files"]["original"]["path"] == "../orig.safetensors"  # relative: movable
    assert len(r["seal"]["sha256"]) == 64 and "request.note" in r["seal"]["fields"]
    m = r["metrics"]["acc_forget"]
    assert m["value"] == 0.0 and len(m["references"]) == 5
    assert "acc_forget_class_3" in r["metrics"] and "ulira" in r["metrics"]
    assert [v["attack"] for v in r["verdicts"]] == ["accuracy", "mia_nn", "ulira"]
    assert all(v["passed"] for v in r["verdicts"])
    ev = r["evidence"]
    assert len(ev["forget_distribution"]["unlearned"]) == 10
    assert ev["forget_distribution"]["original"][3] > 0.5  # the original knew class 3
    assert {"fpr", "tpr", "null_fpr", "null_tpr"} <= set(ev["ulira_roc"])
    assert r["environment"]["torch"] and r["command"][:2] == ["classunlearn", "forget"]
    assert "<html" in (out / "record.html").read_text().lower()


def test_second_request_trains_nothing(first, capsys):
    d, _, runs = first
    assert runs[1] == 0
    again = _strict((d / "r1-again" / "record.json").read_text())
    assert again["audit"]["units_computed"] == 0 and again["audit"]["units_reused"] == 9
    assert again["audit"]["cache"] == str(d / ".classunlearn-cache")
    r1 = _strict((d / "r1" / "record.json").read_text())
    assert again["metrics"] == r1["metrics"] | {"runtime_s": again["metrics"]["runtime_s"]}


def test_leaky_method_exits_3_and_still_writes(first, capsys):
    d, orig, _ = first
    rc = main(["forget", "--checkpoint", str(orig), "--forget-class", "3", "--method", "ga",
               "--shadows", SHADOWS, "--out", str(d / "ga")])
    out = capsys.readouterr().out
    assert rc == 3
    assert "verdict FAIL accuracy: fail" in out  # GA wrecks TA_r here (62.7 vs 97.5)
    assert (d / "ga" / "record.json").is_file()
    r = _strict((d / "ga" / "record.json").read_text())
    assert r["audit"]["units_computed"] == 1  # only GA's replay on the cached shadows


@pytest.mark.parametrize("extra, message", [
    (["--method", "trw-2r-oracle"], "is an oracle"),
    (["--method", "retrain"], "retrains from scratch"),
    (["--references", "1"], "--references must be at least 2"),
    (["--shadows", "5"], "shadow"),
    (["--forget-class", "12"], "out of range"),
])
def test_bad_input_exits_2(first, capsys, extra, message):
    d, orig, _ = first
    forget = [] if "--forget-class" in extra else ["--forget-class", "3"]
    assert main(["forget", "--checkpoint", str(orig), *forget, "--out", str(d / "bad"),
                 *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def second(first):
    d, orig, _ = first
    rc = main(["forget", "--previous", str(d / "r1" / "record.json"), "--checkpoint",
               str(d / "r1" / "unlearned.safetensors"), "--forget-class", "5", "--shadows",
               SHADOWS, "--out", str(d / "r2")])
    return d, rc


def test_sequential_request_chains_and_keeps_3_forgotten(second):
    d, rc = second
    assert rc in (0, 3)  # U-LiRA may tell the two-step model apart (docs/forget.md)
    r = _strict((d / "r2" / "record.json").read_text())
    sha = file_sha256(d / "r1" / "record.json")
    assert r["request"]["previous"]["sha256"] == sha == r["record_sha256_of_previous"]
    assert r["request"]["forgotten_before"] == [{"index": 3, "name": "3"}]
    assert [c["index"] for c in r["request"]["audited_forget_classes"]] == [3, 5]
    assert r["metrics"]["acc_forget_class_3"]["value"] == 0.0
    kept = [v for v in r["verdicts"] if v.get("scope")]
    assert kept and kept[0]["attack"] == "accuracy" and kept[0]["passed"]
    assert r["files"]["original"]["sha256"] == file_sha256(d / "r1" / "unlearned.safetensors")
    assert main(["verify", str(d / "r2" / "record.json")]) == 0


def test_sequential_refuses_another_checkpoint(first, capsys):
    d, orig, _ = first
    rc = main(["forget", "--previous", str(d / "r1" / "record.json"), "--checkpoint",
               str(orig), "--forget-class", "5", "--out", str(d / "r2-bad")])
    assert rc == 2
    assert "is not the unlearned model of --previous" in capsys.readouterr().err


def test_sequential_refuses_a_class_forgotten_before(first, capsys):
    d, _, _ = first
    rc = main(["forget", "--previous", str(d / "r1" / "record.json"), "--checkpoint",
               str(d / "r1" / "unlearned.safetensors"), "--forget-class", "3", "--out",
               str(d / "r2-bad")])
    assert rc == 2
    assert "forgotten by the previous request" in capsys.readouterr().err


def test_verify_follows_the_chain(second, capsys):
    d, _ = second
    rec = d / "r1" / "record.json"
    kept = rec.read_bytes()
    try:
        r = json.loads(kept)
        r["request"]["note"] = "edited"
        rec.write_text(json.dumps(r, indent=2))
        assert main(["verify", str(d / "r2" / "record.json"), "--hashes-only"]) == 1
        assert "previous record" in capsys.readouterr().out
    finally:
        rec.write_bytes(kept)
    shutil.rmtree(d / "bad", ignore_errors=True)
