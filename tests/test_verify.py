"""`classunlearn verify` on a request over a real data file (a .npz of five digit classes
written here, so the record names a data file): an untouched record verifies; tampering with
the data file, the original, the unlearned model, a reference, the stored U-LiRA scores or a
number of the record itself exits 1 naming it (an edit of the record breaks its seal first);
bad input exits 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from classunlearn.cli import main


@pytest.fixture(scope="module")
def request_dir(tmp_path_factory):
    from sklearn.datasets import load_digits

    d = tmp_path_factory.mktemp("verify")
    x, y = load_digits(return_X_y=True)
    keep = y < 5
    x, y = x[keep].astype(np.float32), y[keep].astype(np.int64)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    x, y = x[order], y[order]
    cut = int(0.7 * len(y))
    data = d / "five.npz"
    np.savez(data, x_train=x[:cut], y_train=y[:cut], x_test=x[cut:], y_test=y[cut:])
    orig = d / "orig.safetensors"
    assert main(["train", "--dataset", "npz", "--data-dir", str(data), "--epochs", "8",
                 "--out", str(orig)]) == 0
    rc = main(["forget", "--checkpoint", str(orig), "--data-dir", str(data), "--forget-class",
               "2", "--references", "2", "--shadows", "8", "--out", str(d / "req")])
    assert rc in (0, 3)
    return d, d / "req" / "record.json"


def test_untouched_record_verifies(request_dir, capsys):
    d, record = request_dir
    r = json.loads(record.read_text())
    assert list(r["files"]["data"]) == [str(d / "five.npz")]  # a real file is named
    assert main(["verify", str(record)]) == 0
    assert "every file and number reproduces" in capsys.readouterr().out


def _flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("which", ["data", "original", "unlearned", "reference", "ulira"])
def test_tampered_file_fails(request_dir, capsys, which):
    d, record = request_dir
    path = {"data": d / "five.npz", "original": d / "orig.safetensors",
            "unlearned": d / "req" / "unlearned.safetensors",
            "reference": d / "req" / "references" / "reference_1.safetensors",
            "ulira": d / "req" / "ulira.safetensors"}[which]
    kept = path.read_bytes()
    try:
        _flip(path)
        assert main(["verify", str(record), "--hashes-only"]) == 1
        out = capsys.readouterr().out
        assert f"file {path.resolve()} changed" in out, out
        assert len(out.strip().splitlines()) == 1
    finally:
        path.write_bytes(kept)


def test_missing_file_fails(request_dir, capsys):
    d, record = request_dir
    path = d / "req" / "references" / "reference_0.safetensors"
    kept = path.read_bytes()
    try:
        path.unlink()
        assert main(["verify", str(record), "--hashes-only"]) == 1
        assert "is missing" in capsys.readouterr().out
    finally:
        path.write_bytes(kept)


@pytest.mark.parametrize("edit, where", [
    (lambda r: r["metrics"]["acc_retain"].update(value=r["metrics"]["acc_retain"]["value"]
                                                 - 1.0), "metrics.acc_retain.value"),
    (lambda r: r["verdicts"][1].update(verdict="leaks"), "verdicts[1].verdict"),
])
def test_edited_number_fails(request_dir, capsys, edit, where):
    d, record = request_dir
    kept = record.read_bytes()
    try:
        r = json.loads(kept)
        edit(r)
        record.write_text(json.dumps(r, indent=2))
        # the files are intact, but the seal names the edited field (issue #26)...
        assert main(["verify", str(record), "--hashes-only"]) == 1
        out = capsys.readouterr().out
        assert "sealed it" in out and f"{where.split('.')[0].split('[')[0]}" in out, out
        # ...and the full run also names the number that does not reproduce
        assert main(["verify", str(record)]) == 1
        out = capsys.readouterr().out
        assert f"{where}: recorded" in out and "recomputed" in out, out
    finally:
        record.write_bytes(kept)


def test_bad_input_exits_2(request_dir, tmp_path, capsys):
    assert main(["verify", str(tmp_path / "none.json")]) == 2
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": "something else"}))
    assert main(["verify", str(other)]) == 2
    err = capsys.readouterr().err
    assert "is not a classunlearn.record/2 record" in err and "Traceback" not in err
