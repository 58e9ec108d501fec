"""Issue #26: a deletion request that cannot go wrong silently. Each test holds one case of
the issue (docs/reliability.md, "Deletion requests (issue #26)"): the right class is
forgotten and shown, the record is sealed and its claims are checked against the
checkpoints' sidecars, a finished request is never overwritten and a failed one leaves
nothing that looks finished, a model that never learned the class is refused, records can
be moved, and the errors a new user met are one clean line with a fix that works.

Fast on purpose: digits, 3 epochs, 2 references, no U-LiRA (``--shadows 0``)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

from classunlearn.cli import build_parser, main

FAST = ["--shadows", "0", "--references", "2"]


def run(capsys, argv: list) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    got = capsys.readouterr()
    return code, got.out, got.err


def one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, (code, err)
    assert err.count("\n") == 1 and err.startswith("error: "), err  # the CLI contract
    for f in fragments:
        assert f in err, (f, err)


def snapshot(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def write_images(root: Path, classes: list[str], odd_name_in: str | None = None) -> Path:
    """train/<class>/*.png and test/<class>/*.png, one colour channel per class (separable
    in a few epochs); optionally one file whose name is not UTF-8."""
    from PIL import Image

    for split, n in (("train", 12), ("test", 6)):
        for i, c in enumerate(classes):
            folder = root / split / c
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(n):
                rng = np.random.default_rng(100 * i + k)
                px = (np.arange(3) == i % 3) * 200 + rng.integers(0, 30, (6, 6, 3))
                Image.fromarray(px.astype(np.uint8)).save(folder / f"{k}.png")
    if odd_name_in is not None:
        folder = os.fsencode(root / "train" / odd_name_in)
        os.rename(folder + b"/0.png", folder + b"/\xff\xfe.png")
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A digits original, a model trained without class 4, and one finished request that
    forgot class 3 (so its references are cached for the other requests here)."""
    w = tmp_path_factory.mktemp("issue26")
    for name, extra in (("orig", []), ("no4", ["--exclude-class", "4"])):
        assert main(["train", "--dataset", "digits", "--epochs", "3", *extra, "--out",
                     str(w / f"{name}.safetensors")]) == 0
    assert main(["forget", "--checkpoint", str(w / "orig.safetensors"), "--forget-class", "3",
                 *FAST, "--note", "ticket 1", "--out", str(w / "req")]) == 0
    return w


@pytest.fixture()
def record(world):
    """The request's record.json, restored after the test."""
    path = world / "req" / "record.json"
    kept = path.read_bytes()
    yield path
    path.write_bytes(kept)


def edit(path: Path, change) -> None:
    r = json.loads(path.read_text())
    change(r)
    path.write_text(json.dumps(r, indent=2))


# ------------------------------------------------------------------ 1. the right class

@pytest.fixture(scope="module")
def numbered(tmp_path_factory):
    """An image folder with classes 1, 2, 10 (one file name not UTF-8) and a model of it."""
    d = tmp_path_factory.mktemp("numbered")
    write_images(d / "images", ["1", "2", "10"], odd_name_in="2")
    assert main(["train", "--dataset", "imagefolder", "--data-dir", str(d / "images"),
                 "--model", "mlp", "--epochs", "5", "--out", str(d / "m.safetensors")]) == 0
    return d


def test_numeric_class_folders_are_ordered_by_number(numbered):
    from classunlearn.data import load_dataset

    assert load_dataset("imagefolder", str(numbered / "images")).class_names == ["1", "2", "10"]


def test_a_value_that_is_a_name_and_another_index_is_refused(numbered, capsys):
    code, _, err = run(capsys, ["forget", "--checkpoint", numbered / "m.safetensors",
                                "--data-dir", numbered / "images", "--forget-class", "1",
                                *FAST, "--out", numbered / "amb"])
    one_line_error(code, err, "'1' is ambiguous", "name of class 0", "index of class 1",
                   "(named '2')", "name:1", "index:1")
    assert not (numbered / "amb").exists()


def test_the_class_named_10_is_forgotten_and_shown_first(numbered, capsys):
    code, out, err = run(capsys, ["forget", "--checkpoint", numbered / "m.safetensors",
                                  "--data-dir", numbered / "images", "--forget-class", "10",
                                  *FAST, "--out", numbered / "req10"])
    assert code in (0, 3), err
    assert out.splitlines()[0] == "forget classes: 2 (10)"  # shown first (stdout)
    r = json.loads((numbered / "req10" / "record.json").read_text())
    assert r["request"]["forget_classes"] == [{"index": 2, "name": "10"}]
    # the image named with non-UTF-8 bytes: named in the record, shown on the page, verified
    assert any("\udcff" in p for p in r["files"]["data"])
    assert "\ufffd" in (numbered / "req10" / "record.html").read_text(encoding="utf-8")
    assert run(capsys, ["verify", numbered / "req10" / "record.json", "--hashes-only"])[0] == 0


def test_train_shows_the_classes_it_excludes(tmp_path, capsys):
    code, out, _ = run(capsys, ["train", "--dataset", "digits", "--epochs", "0",
                                "--exclude-class", "3", "--out", tmp_path / "m.safetensors"])
    assert code == 0 and out.splitlines()[0] == "excluded classes: 3 (3)"


def test_a_non_utf8_file_name_does_not_break_the_record_page(tmp_path):
    from pages import example_record

    from classunlearn.record_page import write_record_page

    record = example_record()
    record["files"]["data"] = {"/data/train/2/\udcff\udcfe.png": "ab" * 32}
    write_record_page(record, tmp_path / "record.html")
    assert "\ufffd\ufffd.png" in (tmp_path / "record.html").read_text(encoding="utf-8")


# ------------------------------------------------------------------ 2. the seal

@pytest.mark.parametrize("change, named", [
    (lambda r: r["request"]["forget_classes"][0].update(index=5, name="5"),
     "request.forget_classes changed"),
    (lambda r: r["request"].update(note="edited"), "request.note changed"),
    (lambda r: r["request"].update(time="2020-01-01T00:00:00Z"), "request.time changed"),
    (lambda r: r["command"].append("--shadows"), "command changed"),
    (lambda r: r["method"].update(seed=7), "method.seed changed"),
    (lambda r: r.pop("seal"), "has no valid seal"),
])
def test_any_edit_of_the_record_fails_verify_naming_it(record, capsys, change, named):
    edit(record, change)
    code, out, err = run(capsys, ["verify", record, "--hashes-only"])
    assert code == 1 and out.startswith("verify FAILED: ") and named in out, out
    assert len(out.strip().splitlines()) == 1 and "internal error" not in err


def test_classes_changed_in_both_places_is_a_clean_failure(record, capsys):
    def both(r):
        for key in ("forget_classes", "audited_forget_classes"):
            r["request"][key] = [{"index": 5, "name": "5"}]

    edit(record, both)
    code, out, err = run(capsys, ["verify", record])
    assert code == 1 and out.startswith("verify FAILED: "), out + err
    assert "unlearned model's sidecar says [3]" in out and "internal error" not in err


def test_emptied_references_is_a_clean_failure(record, capsys):
    edit(record, lambda r: r["files"].update(references=[]))
    code, out, err = run(capsys, ["verify", record])
    assert code == 1 and out.startswith("verify FAILED: "), out + err
    assert "files.references is empty" in out and "reference_forget_probs" not in out + err


def test_a_damaged_record_fails_verify(record, capsys):
    text = record.read_text()
    record.write_text(text.replace('"schema"', '"schema" :: ', 1))
    code, out, _ = run(capsys, ["verify", record])
    assert code == 1 and "the record is damaged" in out


def test_an_old_unsealed_record_still_verifies_with_a_note(record, capsys):
    def legacy(r):
        r["schema"] = "classunlearn.record/1"
        del r["seal"]

    edit(record, legacy)
    code, out, err = run(capsys, ["verify", record, "--hashes-only"])
    assert code == 0 and "unsealed classunlearn.record/1 record" in err


def test_the_record_claims_are_checked_against_the_sidecars(world, record, capsys):
    """An unsealed (legacy) record cannot rely on its seal: the sidecars still tell."""
    def legacy_forget_5(r):
        r["schema"] = "classunlearn.record/1"
        del r["seal"]
        for key in ("forget_classes", "audited_forget_classes"):
            r["request"][key] = [{"index": 5, "name": "5"}]

    edit(record, legacy_forget_5)
    code, out, _ = run(capsys, ["verify", record, "--hashes-only"])
    assert code == 1 and "the unlearned model's sidecar says [3]" in out


# ------------------------------------------------------------------ 3. nothing overwritten

def test_a_folder_holding_a_record_is_refused(world, capsys):
    before = snapshot(world / "req")
    code, _, err = run(capsys, ["forget", "--checkpoint", world / "orig.safetensors",
                                "--forget-class", "5", *FAST, "--out", world / "req"])
    one_line_error(code, err, "already holds a finished request", "to keep both",
                   f"--out {world / 'req'}-2")
    assert snapshot(world / "req") == before


def test_a_folder_with_other_files_is_refused(world, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = run(capsys, ["forget", "--checkpoint", world / "orig.safetensors",
                                "--forget-class", "5", *FAST, "--out", tmp_path])
    one_line_error(code, err, "is not empty", "notes.txt")


@pytest.mark.parametrize("fault", [RuntimeError("boom"), KeyboardInterrupt()])
def test_a_failed_request_leaves_nothing_that_looks_finished(world, monkeypatch, capsys,
                                                             fault):
    import classunlearn.forget as forget

    def fail(*a, **k):
        raise fault

    monkeypatch.setattr(forget, "audit_verdicts", fail)  # after the unlearned model is saved
    out = world / f"failed-{type(fault).__name__}"
    code, _, _ = run(capsys, ["forget", "--checkpoint", world / "orig.safetensors",
                              "--forget-class", "3", *FAST, "--out", out])
    assert code in (1, 130)
    assert not out.exists() and not list(world.glob(f".{out.name}*"))


# ------------------------------------------------------------------ 4. nothing to forget

def test_a_model_trained_without_the_class_is_refused(world, capsys):
    code, _, err = run(capsys, ["forget", "--checkpoint", world / "no4.safetensors",
                                "--forget-class", "4", *FAST, "--out", world / "r4"])
    one_line_error(code, err, "was trained without class 4 (4)", "nothing to forget")
    assert not (world / "r4").exists()


def test_a_model_that_never_learned_the_class_is_refused_without_a_sidecar_hint(world,
                                                                                capsys):
    """A plug-in model's sidecar may not say what it was trained on: accuracy on D_f does."""
    for suffix in (".safetensors", ".json"):
        shutil.copy(world / f"no4{suffix}", world / f"blind{suffix}")
    edit(world / "blind.json", lambda m: m.update(excluded_classes=[]))
    code, _, err = run(capsys, ["forget", "--checkpoint", world / "blind.safetensors",
                                "--forget-class", "4", *FAST, "--out", world / "rb"])
    one_line_error(code, err, "does not recognise class 4 (4)", "below chance (10.0%)")


# ------------------------------------------------------------------ 5. records move

def test_paths_are_relative_and_moved_records_verify(world, tmp_path, capsys):
    r = json.loads((world / "req" / "record.json").read_text())
    assert r["files"]["original"]["path"] == "../orig.safetensors"
    # the whole tree moved: the relative paths still hold
    for name in ("orig.safetensors", "orig.json"):
        shutil.copy(world / name, tmp_path / name)
    shutil.copytree(world / "req", tmp_path / "req")
    hidden = world / "orig.safetensors.away"
    os.rename(world / "orig.safetensors", hidden)
    try:
        assert run(capsys, ["verify", tmp_path / "req" / "record.json", "--hashes-only"])[0] == 0
    finally:
        os.rename(hidden, world / "orig.safetensors")
    # the request folder alone: the original is found by its hash with --search
    alone = tmp_path / "elsewhere" / "req"
    shutil.copytree(world / "req", alone)
    code, out, _ = run(capsys, ["verify", alone / "record.json", "--hashes-only"])
    assert code == 1 and "is missing; if it moved, pass its folder with --search" in out
    code, out, err = run(capsys, ["verify", alone / "record.json", "--search", world])
    assert code == 0 and "found ../orig.safetensors" in err, out + err


# ------------------------------------------------------------------ clean errors

def test_a_model_without_parameters_is_refused(tmp_path, capsys):
    (tmp_path / "fixed.py").write_text(
        "from torch import nn\n"
        "class Fixed(nn.Module):\n"
        "    def __init__(self, k):\n        super().__init__()\n        self.k = k\n"
        "    def forward(self, x):\n        return x.flatten(1)[:, :self.k]\n"
        "def build(input_shape, num_classes, **kw):\n    return Fixed(num_classes)\n")
    code, _, err = run(capsys, ["train", "--dataset", "digits", "--model",
                                f"{tmp_path / 'fixed.py'}:build", "--epochs", "1", "--out",
                                tmp_path / "m.safetensors"])
    one_line_error(code, err, "has no trainable parameters")


@pytest.mark.parametrize("command", ["train", "forget"])
def test_an_out_of_range_seed_is_refused(world, capsys, command):
    argv = (["train", "--dataset", "digits", "--out", world / "s.safetensors"]
            if command == "train" else
            ["forget", "--checkpoint", world / "orig.safetensors", "--forget-class", "3", *FAST,
             "--out", world / "seeded"])
    code, _, err = run(capsys, [*argv, "--seed", "99999999999999999999"])
    one_line_error(code, err, "--seed must be an integer in 0..4294967295")
    assert "--model-arg" not in err


def test_a_forget_class_without_test_samples_is_refused_before_any_work(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "gaps.npz", x_train=rng.random((60, 4), dtype=np.float32),
             y_train=np.arange(60) % 3, x_test=rng.random((12, 4), dtype=np.float32),
             y_test=np.array([0, 2] * 6))
    assert main(["train", "--dataset", "npz", "--data-dir", str(tmp_path / "gaps.npz"),
                 "--epochs", "1", "--out", str(tmp_path / "m.safetensors")]) == 0
    code, _, err = run(capsys, ["forget", "--checkpoint", tmp_path / "m.safetensors",
                                "--data-dir", tmp_path / "gaps.npz", "--forget-class", "1",
                                *FAST, "--out", tmp_path / "req"])
    one_line_error(code, err, "forget class 1 (1) has no test samples", "add test samples")
    assert not (tmp_path / ".classunlearn-cache").exists()  # nothing was trained


def test_train_on_nan_names_its_own_flags(tmp_path, capsys):
    code, _, err = run(capsys, ["train", "--dataset", "digits", "--lr", "1e9", "--epochs", "1",
                                "--out", tmp_path / "m.safetensors"])
    one_line_error(code, err, "(--lr, now 1e+09)", "(--epochs)")
    assert "--set" not in err


def test_a_missing_model_file_names_a_fix_forget_takes(tmp_path, capsys):
    (tmp_path / "net.py").write_text(
        "import math\nfrom torch import nn\n"
        "def build(input_shape, num_classes, **kw):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), "
        "num_classes))\n")
    assert main(["train", "--dataset", "digits", "--model", f"{tmp_path / 'net.py'}:build",
                 "--epochs", "1", "--out", str(tmp_path / "m.safetensors")]) == 0
    (tmp_path / "net.py").rename(tmp_path / "net.py.moved")
    code, _, err = run(capsys, ["forget", "--checkpoint", tmp_path / "m.safetensors",
                                "--forget-class", "3", *FAST, "--out", tmp_path / "req"])
    one_line_error(code, err, f"put {tmp_path / 'net.py'} back", "SHA-256")
    assert "pass an existing .py file as PATH.py:FUNCTION" not in err


def test_audit_json_to_a_device_is_refused_plainly(world, capsys):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    refs = [a for j in range(2) for a in
            ("--reference", world / "req" / "references" / f"reference_{j}.safetensors")]
    code, _, err = run(capsys, ["audit", "--checkpoint", world / "req" / "unlearned.safetensors",
                                "--forget-class", "3", *refs, "--shadows", "0", "--json",
                                "/dev/full"])
    one_line_error(code, err, "--json /dev/full is not a regular file", "new .json file")
    assert "is a file, not a folder" not in err


def test_an_unknown_argument_points_at_the_commands_help(capsys):
    code, _, err = run(capsys, ["forget", "--checkpoint", "x.safetensors", "--forget-class",
                                "3", "--out", "x", "--bogus"])
    one_line_error(code, err, "unrecognized arguments: --bogus",
                   "see `classunlearn forget --help`")


@pytest.mark.parametrize("command", ["forget", "train"])
def test_data_dir_for_embedded_data_is_refused(world, tmp_path, capsys, command):
    argv = (["forget", "--checkpoint", world / "orig.safetensors", "--forget-class", "3",
             *FAST, "--out", tmp_path / "req"] if command == "forget" else
            ["train", "--dataset", "digits", "--epochs", "0", "--out",
             tmp_path / "m.safetensors"])
    code, _, err = run(capsys, [*argv, "--data-dir", tmp_path])
    one_line_error(code, err, "digits is embedded", "drop --data-dir")
    assert not (tmp_path / "req").exists()


# ------------------------------------------------------------------ what an owner expects

def test_tune_prints_flags_forget_takes_and_forget_tune_applies_them(world, capsys):
    code, out, _ = run(capsys, ["tune", "--checkpoint", world / "orig.safetensors",
                                "--forget-class", "3", "--methods", "ssd",
                                "--out", world / ".classunlearn-cache"])
    assert code == 0 and "`classunlearn forget --method METHOD`" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("ssd: --set"))
    flags = line.split(":", 1)[1].split()
    code, _, err = run(capsys, ["forget", "--checkpoint", world / "orig.safetensors",
                                "--forget-class", "3", "--method", "ssd", *flags, *FAST,
                                "--dry-run", "--out", world / "dry"])
    assert code == 0, err
    code, _, err = run(capsys, ["forget", "--checkpoint", world / "orig.safetensors",
                                "--forget-class", "3", "--method", "ssd", "--tune", *FAST,
                                "--out", world / "tuned"])
    assert code in (0, 3), err
    r = json.loads((world / "tuned" / "record.json").read_text())
    chosen = dict(kv.split("=") for kv in flags[1::2])
    assert {k: str(v) for k, v in r["method"]["tuned"]["applied"].items()} == chosen
    assert all(str(r["method"]["params"][k]) == v for k, v in chosen.items())
    assert r["audit"]["units_reused"] >= 1  # the tuning unit `tune` computed


def test_the_record_shows_no_ratio_of_times_measured_differently(world):
    r = json.loads((world / "req" / "record.json").read_text())
    assert "ratio_to_retrain" not in r["method"] and r["method"]["run_s"] > 0
    page = (world / "req" / "record.html").read_text(encoding="utf-8")
    assert "run time / retraining time" not in page and "not comparable" in page


def test_verdict_cards_read_as_sentences():
    import re

    from pages import example_record

    from classunlearn.record_page import render_record_page

    page = render_record_page(example_record())
    visible = re.sub(r"<details>.*?</details>", "", page, flags=re.S)
    for key in ("acc_forget_low", "z_leak", "null_high", "n_references"):
        assert key not in visible and key in page  # the numbers stay, folded away
    assert "recognises 0.4% of the forgotten class" in visible
    assert "1.10 standard deviations" in visible and "58.2%" in visible


@pytest.mark.parametrize("command", ["train", "unlearn", "audit", "tune", "report", "forget",
                                     "verify"])
def test_every_option_has_help(command):
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    missing = [a.option_strings or a.dest for a in sub.choices[command]._actions
               if a.help is None]
    assert not missing, missing


def test_report_charts_keep_labels_apart_and_colours_distinct():
    import matplotlib

    matplotlib.use("Agg")
    from classunlearn.bench.report import _mia_nn_figure, cost_figure, roc_figure

    methods = [f"method-{i}" for i in range(17)] + ["retrain"]
    summary = {m: {"mia_nn": {"mean": 50.0 + i % 3, "std": 1.0},
                   "mia_nn_ref_mean": {"mean": 50.0}, "mia_nn_ref_std": {"mean": 1.0},
                   "runtime_ratio": {"mean": 0.5 if i > 8 else 0.2 + 0.01 * i},
                   "ulira": {"mean": 60.0 + i % 2}, "mia_nn_z": {"mean": 1.0 + 0.02 * i}}
               for i, m in enumerate(methods)}

    def apart(fig, texts) -> None:
        from matplotlib.text import Text

        fig.canvas.draw()
        boxes = [Text.get_window_extent(t) for t in texts]  # the text, not its leader line
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert not a.overlaps(b), "labels overlap"

    fig = _mia_nn_figure("s", summary)
    apart(fig, fig.axes[0].get_yticklabels())
    fig = cost_figure(summary)
    for ax in fig.axes:
        apart(fig, ax.texts)
    x = np.linspace(0, 1, 5)
    fig = roc_figure("s", {"methods": {m: {"ulira_roc": [[list(x), list(x)]]}
                                       for m in methods}})
    colours = {}
    for ln in fig.axes[0].get_lines():
        if (ln.get_gid() or "").startswith("roc:"):
            colours[ln.get_gid().split(":")[1]] = matplotlib.colors.to_hex(ln.get_color())
    assert len(colours) == 18 and len(set(colours.values())) == 18


def test_outputs_follow_the_umask(world):
    mask = os.umask(0o022)
    os.umask(mask)
    if mask != 0o022:
        pytest.skip("the test reads modes under umask 022")
    for p in (world / "orig.safetensors", world / "orig.json", world / "req" / "record.json",
              world / "req" / "unlearned.safetensors"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p
    assert stat.S_IMODE((world / "req").stat().st_mode) == 0o755
