"""The command line end to end on digits, and its one-line errors (exit 2, no traceback)."""

import json

import pytest

from classunlearn.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("ck")
    assert main(["train", "--dataset", "digits", "--epochs", "5", "--out",
                 str(d / "o.safetensors")]) == 0
    for s in (1, 2):
        assert main(["train", "--dataset", "digits", "--epochs", "5", "--exclude-class", "3",
                     "--seed", str(s), "--out", str(d / f"r{s}.safetensors")]) == 0
    return d


def test_lists(capsys):
    code, out, _ = run(capsys, "datasets")
    assert code == 0 and "digits" in out and "1257 train" in out and "cifar10" in out
    code, out, _ = run(capsys, "methods")
    assert code == 0 and "trw" in out and "arXiv 2506.20893" in out


def test_train_unlearn_audit(capsys, ckpts):
    u = ckpts / "u.safetensors"
    code, out, err = run(capsys, "unlearn", "--checkpoint", str(ckpts / "o.safetensors"),
                         "--forget-class", "3", "--method", "trw", "--set", "epochs=3",
                         "--out", str(u))
    assert code == 0, err
    side = json.loads(u.with_suffix(".json").read_text())
    assert side["method"]["name"] == "trw" and side["method"]["params"]["epochs"] == 3
    assert side["parent_sha256"]
    code, out, err = run(capsys, "audit", "--checkpoint", str(u), "--forget-class", "3",
                         "--reference", str(ckpts / "r1.safetensors"), "--reference",
                         str(ckpts / "r2.safetensors"), "--metrics", "accuracy,tv",
                         "--json", str(ckpts / "a.json"))
    assert code == 0, err
    metrics = json.loads((ckpts / "a.json").read_text())["metrics"]
    assert metrics["acc_forget"] < 10 and metrics["test_acc_retain"] > 90


@pytest.mark.parametrize("argv,fragment", [
    (["train", "--dataset", "nope", "--out", "x.safetensors"], "unknown dataset"),
    (["train", "--dataset", "digits", "--epochs", "-1", "--out", "{d}/x.safetensors"],
     "epochs must be"),
    (["train", "--dataset", "digits", "--exclude-class", "12", "--out", "{d}/x.safetensors"],
     "out of range"),
    (["unlearn", "--checkpoint", "{d}/missing.safetensors", "--forget-class", "3",
      "--method", "trw", "--out", "{d}/u.safetensors"], "not found"),
    (["unlearn", "--checkpoint", "{d}/o.safetensors", "--forget-class", "3", "--method",
      "nope", "--out", "{d}/u.safetensors"], "unknown method"),
    (["unlearn", "--checkpoint", "{d}/o.safetensors", "--forget-class", "3", "--method",
      "trw", "--set", "beta=abc", "--out", "{d}/u.safetensors"], "not a valid float"),
    (["unlearn", "--checkpoint", "{d}/o.safetensors", "--forget-class", "3", "3",
      "--method", "trw", "--out", "{d}/u.safetensors"], "twice"),
    (["audit", "--checkpoint", "{d}/o.safetensors", "--forget-class", "3", "--reference",
      "{d}/o.safetensors"], "not the forget classes"),
    (["bench", "--seeds", "0", "--out", "{d}/b"], "--seeds"),
    (["bench", "--shadows", "3", "--out", "{d}/b"], "--shadows"),
    (["bench", "--gpus-per-task", "1", "--executor", "local", "--out", "{d}/b"],
     "applies to --executor ray"),
    (["bench", "--gpus-per-task", "nan", "--executor", "ray", "--out", "{d}/b"], ">= 0"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_is_one_line_exit_2(capsys, ckpts, argv, fragment):
    code, _, err = run(capsys, *[a.format(d=ckpts) for a in argv])
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and fragment in err
    assert "Traceback" not in err


def test_unwritable_output_refused_before_work(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(capsys, "train", "--dataset", "digits", "--out",
                       str(blocker / "sub" / "m.safetensors"))
    assert code == 2 and "cannot write" in err


def test_internal_error_goes_to_log(capsys, monkeypatch, tmp_path):
    import classunlearn.cli as cli

    log = tmp_path / "err.log"
    monkeypatch.setenv("CLASSUNLEARN_LOG", str(log))
    monkeypatch.setattr(cli, "cmd_datasets", lambda a: 1 / 0)
    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["datasets"].set_defaults(
        func=lambda a: 1 / 0)
    code, _, err = run(capsys, "datasets")
    assert code == 1 and "ZeroDivisionError" in err and "Traceback" not in err
    assert "Traceback" in log.read_text()
