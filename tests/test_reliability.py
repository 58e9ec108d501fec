"""Reliability and security: a catalogue of bad inputs through the real CLI, faults (a
diverging method, SIGKILLs, corrupted artifacts, a full disk) and untrusted files.

Every bad input must exit 2 with exactly one line on stderr, ``error: <what is wrong>; <how
to fix it>``, no traceback, and must leave finished work (checkpoints, bench results)
byte for byte as it was. docs/reliability.md lists every case with its message; tests
that already cover a case elsewhere (test_cli.py, test_checkpoint.py, test_data_files.py)
are referenced there, not repeated here.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import pty
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from classunlearn.bench.runner import BenchConfig, run_bench
from classunlearn.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from classunlearn.cli import main
from classunlearn.data import load_dataset
from classunlearn.models import build_model

# ----------------------------------------------------------------------------- helpers

TINY = ["--dataset", "digits", "--forget-class", "3", "--methods", "retrain,original,trw,ft",
        "--seeds", "1", "--shadows", "8", "--references", "2", "--epochs", "3",
        "--executor", "local"]
N_UNITS = 13  # 1 original + 2 references + 2 shadow sets + 4 methods + their 4 replays
TIMES = ("runtime_s", "runtime_ratio")


def tiny_config(out: Path, **kw) -> BenchConfig:
    """The same study as the TINY command line (same unit keys)."""
    kw.setdefault("methods", ["retrain", "original", "trw", "ft"])
    return BenchConfig(dataset="digits", forget_classes=[["3"]], seeds=1, shadows=8,
                       references=2, executor="local", epochs=3, out=str(out), **kw)


def canon(summary: dict) -> str:
    """A summary as comparable text, without wall-time keys."""
    return json.dumps({m: {k: v for k, v in ms.items() if k not in TIMES}
                       for m, ms in summary.items()}, sort_keys=True)


def table_of(out: Path) -> str:
    return canon(json.loads((out / "results.json").read_text())["summary"])


def run(capsys, argv: list) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    got = capsys.readouterr()
    return code, got.out, got.err


def assert_one_line_error(code: int, out: str, err: str, *fragments: str) -> None:
    assert code == 2, (code, err)
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "Traceback" not in err + out
    for f in fragments:
        assert f in err, (f, err)


def snapshot(*roots: Path) -> dict[str, str]:
    """SHA-256 of every file under the roots: finished work must stay byte for byte."""
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def finished_units(out: Path) -> dict[str, tuple]:
    """key -> (inode, mtime_ns) of both files of every unit whose sidecar exists and whose
    hash matches: the units a kill cannot take back."""
    done = {}
    for side in (out / "artifacts").glob("*.json"):
        tensors = side.with_suffix(".safetensors")
        try:
            info = json.loads(side.read_text())
            if hashlib.sha256(tensors.read_bytes()).hexdigest() != info["sha256"]:
                continue
        except (OSError, ValueError, KeyError):
            continue
        a, b = tensors.stat(), side.stat()
        done[side.stem] = (a.st_ino, a.st_mtime_ns, b.st_ino, b.st_mtime_ns)
    return done


class Evil:
    """A pickle that would create `marker` if anything ever unpickled it."""

    def __init__(self, marker: Path, how: str = "open") -> None:
        self.marker, self.how = str(marker), how

    def __reduce__(self):
        if self.how == "system":
            return (os.system, (f"touch {self.marker}",))
        return (open, (self.marker, "w"))


def idx(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    return struct.pack(f">I{len(dims)}I", magic, *dims) + payload


def write_idx(folder: Path, n_train: int = 20, n_test: int = 10) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        pixels = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8).tobytes()
        labels = (np.arange(n) % 10).astype(np.uint8).tobytes()
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(idx(0x803, (n, 28, 28), pixels))
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(idx(0x801, (n,), labels))


def write_cifar(folder: Path, batch: dict | bytes | None = None) -> Path:
    """cifar-10-batches-py with valid batches, data_batch_1 replaced by `batch`."""
    root = folder / "cifar-10-batches-py"
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        good = {b"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8),
                b"labels": list(range(10))}
        (root / name).write_bytes(pickle.dumps(good, protocol=2))
    if batch is not None:
        blob = batch if isinstance(batch, bytes) else pickle.dumps(batch, protocol=2)
        (root / "data_batch_1").write_bytes(blob)
    return folder


def write_png(path: Path, seed: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def save_npz(path: Path, y_train, y_test, features: int = 4, x_train=None) -> Path:
    rng = np.random.default_rng(len(y_train))
    x_tr = rng.random((len(y_train), features), dtype=np.float32) if x_train is None else x_train
    np.savez(path, x_train=x_tr, y_train=np.asarray(y_train),
             x_test=rng.random((len(y_test), features), dtype=np.float32),
             y_test=np.asarray(y_test))
    return path


def untrained_checkpoint(path: Path, dataset: str = "digits", data_dir=None, model: str = "mlp",
                         nan: bool = False, **model_kwargs) -> Path:
    """A checkpoint as `train` writes it (untrained weights: fast, and just as valid)."""
    ds = load_dataset(dataset, data_dir)
    m = build_model(model, ds.input_shape, ds.num_classes, seed=0, **model_kwargs)
    if nan:
        with torch.no_grad():
            m.head.weight[0, 0] = float("nan")
    meta = CheckpointMeta(dataset=dataset, class_names=ds.class_names,
                          input_shape=list(ds.input_shape), model=model,
                          model_kwargs=model_kwargs)
    return save_checkpoint(m, meta, path)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """An uninterrupted run of the tiny study: the table every fault test must reproduce."""
    out = tmp_path_factory.mktemp("baseline") / "bench"
    result = run_bench(tiny_config(out), log=lambda _: None)
    assert result.computed == N_UNITS and not result.failed
    return out, canon(result.summary["summary"])


@pytest.fixture(scope="module")
def world(tmp_path_factory, baseline):
    """Every fixture file the catalogue needs, written once."""
    w = tmp_path_factory.mktemp("world")
    ck = w / "ck"
    ck.mkdir()
    untrained_checkpoint(ck / "orig.safetensors")
    untrained_checkpoint(ck / "nan.safetensors", nan=True)
    # weights of a cnn behind a sidecar that says mlp
    untrained_checkpoint(ck / "cnn.safetensors", model="cnn")
    side = json.loads((ck / "cnn.json").read_text())
    (ck / "cnn.json").write_text(json.dumps({**side, "model": "mlp"}))
    shutil.copy(ck / "orig.safetensors", ck / "trunc.safetensors")
    shutil.copy(ck / "orig.json", ck / "trunc.json")
    (ck / "trunc.safetensors").write_bytes((ck / "orig.safetensors").read_bytes()[:200])
    shutil.copy(ck / "orig.safetensors", ck / "nosidecar.safetensors")
    shutil.copy(ck / "orig.safetensors", ck / "badsidecar.safetensors")
    (ck / "badsidecar.json").write_text("[1, 2, 3]")
    (ck / "dir.safetensors").mkdir()
    torch.save(build_model("mlp", (1, 8, 8), 10).state_dict(), ck / "weights.pt")
    # pickle bytes behind a .safetensors name, with a sidecar forged to match their hash
    blob = pickle.dumps({"w": torch.zeros(2).numpy()}, protocol=2)
    (ck / "pickled.safetensors").write_bytes(blob)
    (ck / "pickled.json").write_text(json.dumps(
        {**json.loads((ck / "orig.json").read_text()),
         "sha256": hashlib.sha256(blob).hexdigest()}))

    data = w / "data"
    write_idx(data / "mnist-trunc")
    f = data / "mnist-trunc" / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])
    write_idx(data / "mnist-magic")
    f = data / "mnist-magic" / "train-images-idx3-ubyte"
    f.write_bytes(struct.pack(">I", 0x0801) + f.read_bytes()[4:])
    (data / "empty").mkdir()
    write_cifar(data / "cifar-keys", {b"images": np.zeros((10, 3072), np.uint8),
                                      b"labels": list(range(10))})
    write_cifar(data / "cifar-shape", {b"data": np.zeros((10, 100), np.uint8),
                                       b"labels": list(range(10))})
    (data / "cifar-tar").mkdir()
    (data / "cifar-tar" / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b not extracted")
    for split in ("train", "test"):
        for i, cls in enumerate(("a", "b")):
            write_png(data / "images" / split / cls / "0.png", seed=i)
    (data / "images" / "train" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"x" * 9)
    save_npz(data / "nan.npz", [0, 1] * 5, [0, 1],
             x_train=np.where(np.eye(10, 4) > 0, np.nan, 0.0).astype(np.float32))
    # class 1 has no test samples, class 2 no training samples
    save_npz(data / "gaps.npz", [0, 1] * 10, [0, 2] * 3)
    save_npz(data / "two.npz", [0, 1] * 10, [0, 1] * 3)
    save_npz(data / "three.npz", [0, 1, 2] * 7, [0, 1, 2] * 2)
    untrained_checkpoint(ck / "two.safetensors", "npz", data / "two.npz")

    (w / "afile").write_text("a regular file, not a folder")
    bench = w / "bench"
    shutil.copytree(baseline[0], bench)
    (w / "baddb").mkdir()
    (w / "baddb" / "results.db").write_bytes(b"this is not sqlite " * 50)
    return w


# ----------------------------------------------------------------------------- catalogue


@dataclass
class Case:
    id: str
    argv: list[str]
    fragments: tuple[str, ...]  # what is wrong, and how to fix it
    patch: str | None = None
    marks: list = field(default_factory=list)


def _no_ray(monkeypatch, w):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError


def _ray_tmp(monkeypatch, w):
    monkeypatch.setenv("CLASSUNLEARN_RAY_TMPDIR", str(w / "ray"))


PATCHES = {"no_ray": _no_ray, "ray_tmp": _ray_tmp}
CK = "{w}/ck/orig.safetensors"
UNLEARN = ["unlearn", "--checkpoint", CK, "--forget-class", "3", "--method", "ft",
           "--out", "{w}/new/u.safetensors"]
BENCH = ["bench", *TINY, "--out", "{w}/bench"]
BENCH_ANY_EXECUTOR = ["bench", *TINY[:-2]]
NPZ = "{w}/data/gaps.npz"
ON_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")

CASES = [
    # names
    Case("unknown-dataset", [*BENCH, "--dataset", "imagenet"],
         ("unknown dataset 'imagenet'", "choose one of: digits")),
    Case("unknown-method", ["bench", *TINY, "--methods", "retrain,forgetit", "--out",
                            "{w}/bench"], ("unknown method 'forgetit'", "classunlearn methods")),
    Case("unknown-model", ["train", "--dataset", "digits", "--model", "vgg", "--out",
                           "{w}/new/m.safetensors"], ("unknown model 'vgg'", "choose one of")),
    Case("unknown-model-bench", [*BENCH, "--model", "vgg"], ("unknown model 'vgg'",)),
    Case("unknown-variant", [*UNLEARN[:-2], "--method", "trw[zzz]", "--out",
                             "{w}/new/u.safetensors"], ("got 'zzz'", "must be one of")),
    # forget classes
    Case("forget-out-of-range", [*UNLEARN[:4], "10", *UNLEARN[5:]],
         ("forget class 10 is out of range", "0..9")),
    Case("forget-negative", [*UNLEARN[:4], "-1", *UNLEARN[5:]], ("-1 is out of range",)),
    Case("forget-unknown-name", [*UNLEARN[:4], "seven", *UNLEARN[5:]],
         ("'seven' is not a class of digits", "choose an index 0..9")),
    Case("forget-all", ["train", "--dataset", "digits", "--exclude-class", *map(str, range(10)),
                        "--out", "{w}/new/m.safetensors"],
         ("cannot forget all 10 classes", "leave at least one")),
    Case("forget-set-duplicate", [*BENCH, "--forget-set", "3,3"],
         ("forget class 3 is given twice", "list each class once")),
    Case("forget-study-duplicate", [*BENCH, "--forget-class", "3", "3"],
         ("forget classes [3] are given twice", "list each study once")),
    Case("forget-set-all", [*BENCH, "--forget-set", ",".join(map(str, range(10)))],
         ("cannot forget all",)),
    # a class missing from one split
    Case("empty-class-train", ["train", "--dataset", "npz", "--data-dir", NPZ,
                               "--exclude-class", "2", "--out", "{w}/new/m.safetensors"],
         ("forget class 2 has no training samples", "pick another class")),
    Case("empty-class-test", ["bench", "--dataset", "npz", "--data-dir", NPZ, "--forget-class",
                              "1", "--out", "{w}/bench"],
         ("forget class 1 has no test samples", "add test samples")),
    # data files
    Case("data-dir-needed", ["train", "--dataset", "mnist", "--out", "{w}/new/m.safetensors"],
         ("read from local files", "pass --data-dir")),
    Case("data-dir-missing", ["train", "--dataset", "mnist", "--data-dir", "{w}/nowhere",
                              "--out", "{w}/new/m.safetensors"],
         ("does not exist", "pass the folder holding mnist")),
    Case("data-dir-empty", ["train", "--dataset", "fashion-mnist", "--data-dir",
                            "{w}/data/empty", "--out", "{w}/new/m.safetensors"],
         ("Fashion-MNIST not found", "download the four IDX files")),
    Case("idx-truncated", ["train", "--dataset", "mnist", "--data-dir", "{w}/data/mnist-trunc",
                           "--out", "{w}/new/m.safetensors"],
         ("train-images-idx3-ubyte is truncated", "download the file again")),
    Case("idx-wrong-magic", ["train", "--dataset", "mnist", "--data-dir",
                             "{w}/data/mnist-magic", "--out", "{w}/new/m.safetensors"],
         ("magic number 0x00000801, expected 0x00000803", "check that the file")),
    Case("cifar-wrong-keys", ["train", "--dataset", "cifar10", "--data-dir",
                              "{w}/data/cifar-keys", "--out", "{w}/new/m.safetensors"],
         ("data_batch_1 lacks key(s) data", "is this a CIFAR-10 file")),
    Case("cifar-wrong-shape", ["train", "--dataset", "cifar10", "--data-dir",
                               "{w}/data/cifar-shape", "--out", "{w}/new/m.safetensors"],
         ("shape (10, 100)", "expected a uint8 array of shape (N, 3072)")),
    Case("cifar-not-extracted", ["train", "--dataset", "cifar10", "--data-dir",
                                 "{w}/data/cifar-tar", "--out", "{w}/new/m.safetensors"],
         ("not extracted", "tar -xzf")),
    Case("image-unreadable", ["train", "--dataset", "imagefolder", "--data-dir",
                              "{w}/data/images", "--out", "{w}/new/m.safetensors"],
         ("cannot read image", "broken.png", "replace or delete the file")),
    Case("npz-nan", ["train", "--dataset", "npz", "--data-dir", "{w}/data/nan.npz", "--out",
                     "{w}/new/m.safetensors"], ("NaN or infinite", "clean the data")),
    # checkpoints
    Case("ckpt-missing", [*UNLEARN, "--reference", "{w}/ck/gone.safetensors"],
         ("gone.safetensors not found", "pass the .safetensors file")),
    Case("ckpt-truncated", [*UNLEARN[:2], "{w}/ck/trunc.safetensors", *UNLEARN[3:]],
         ("does not match the hash", "re-create it")),
    Case("ckpt-other-data", ["unlearn", "--checkpoint", "{w}/ck/two.safetensors",
                             "--data-dir", "{w}/data/three.npz", "--forget-class", "1",
                             "--method", "ft", "--out", "{w}/new/u.safetensors"],
         ("trained on 'npz' (2 classes", "(3 classes", "pass the data it was trained on")),
    Case("ckpt-other-model", [*UNLEARN[:2], "{w}/ck/cnn.safetensors", *UNLEARN[3:]],
         ("does not hold a 'mlp' model", "another model")),
    Case("ckpt-nan", [*UNLEARN[:2], "{w}/ck/nan.safetensors", *UNLEARN[3:]],
         ("NaN or infinite weights", "retrain or unlearn it again")),
    Case("ckpt-is-pt", [*UNLEARN[:2], "{w}/ck/weights.pt", *UNLEARN[3:]],
         ("is a pickle/torch .pt file", "safetensors.torch.save_file")),
    Case("ckpt-is-pickle", [*UNLEARN[:2], "{w}/ck/pickled.safetensors", *UNLEARN[3:]],
         ("is a pickle", "never unpickles")),
    Case("ckpt-no-sidecar", [*UNLEARN[:2], "{w}/ck/nosidecar.safetensors", *UNLEARN[3:]],
         ("nosidecar.json is missing", "keep the .json")),
    Case("ckpt-bad-sidecar", [*UNLEARN[:2], "{w}/ck/badsidecar.safetensors", *UNLEARN[3:]],
         ("not valid checkpoint JSON", "re-create the checkpoint")),
    Case("ckpt-is-dir", [*UNLEARN[:2], "{w}/ck/dir.safetensors", *UNLEARN[3:]],
         ("is not a file", "pass the .safetensors file")),
    Case("ckpt-is-sidecar", [*UNLEARN[:2], "{w}/ck/orig.json", *UNLEARN[3:]],
         ("is a sidecar", "pass the .safetensors file beside it")),
    # hyperparameters and options
    Case("set-unknown-key", [*UNLEARN, "--set", "gamma=2"],
         ("ft has no hyperparameter 'gamma'", "valid keys: epochs")),
    Case("set-ill-typed", [*UNLEARN, "--set", "epochs=1.5"], ("epochs='1.5'", "valid int")),
    Case("set-no-equals", [*UNLEARN, "--set", "lr"], ("--set expects KEY=VALUE", "'lr'")),
    Case("set-bad-schedule", [*UNLEARN, "--set", "schedule=warp"],
         ("got 'warp'", "must be one of")),
    Case("set-negative-epochs", [*UNLEARN, "--set", "epochs=-2"], ("epochs must be >= 0",)),
    Case("bench-set-ill-typed", [*BENCH, "--set", "ft:lr=fast"], ("lr='fast'", "valid float")),
    Case("bench-set-other-method", [*BENCH, "--set", "ga:lr=1"],
         ("names method 'ga', which is not in --methods", "add it there")),
    Case("bench-set-no-method", [*BENCH, "--set", "lr=1"], ("expects METHOD:KEY=VALUE",)),
    Case("bench-methods-empty", [*BENCH, "--methods", ","], ("is empty", "give 'all'")),
    Case("bench-methods-twice", [*BENCH, "--methods", "ft,ft"], ("names a method twice",)),
    Case("model-arg-not-int", ["train", "--dataset", "digits", "--model-arg", "hidden=wide",
                               "--out", "{w}/new/m.safetensors"],
         ("--model-arg hidden expects an integer", "'wide'")),
    Case("model-arg-negative", [*BENCH, "--model-arg", "hidden=-5"],
         ("--model-arg hidden must be >= 0", "got -5")),
    Case("epochs-not-int", ["train", "--dataset", "digits", "--epochs", "ten", "--out",
                            "{w}/new/m.safetensors"], ("invalid int value: 'ten'", "--help")),
    Case("bench-negative-epochs", [*BENCH, "--epochs", "-1"], ("epochs must be >= 0",)),
    Case("bench-odd-shadows", [*BENCH, "--shadows", "1"], ("--shadows must be 0", "even")),
    Case("bench-negative-shadows", [*BENCH, "--shadows", "-4"], ("--shadows must be 0",)),
    Case("bench-zero-references", [*BENCH, "--references", "0"], ("--references must be >= 1",)),
    Case("bench-zero-workers", [*BENCH, "--workers", "0"], ("--workers must be >= 1",
                                                            "leave it out")),
    Case("device-unknown", [*UNLEARN, "--device", "tpu"], ("unknown --device 'tpu'",
                                                           "use auto, cpu")),
    Case("device-absent", ["train", "--dataset", "digits", "--device", "cuda", "--out",
                           "{w}/new/m.safetensors"],
         ("--device cuda is not available", "--device auto or cpu"), marks=[ON_GPU]),
    # output locations
    Case("out-not-safetensors", ["train", "--dataset", "digits", "--out", "{w}/new/m.pt"],
         ("must end in .safetensors",)),
    Case("out-is-input", [*UNLEARN[:-1], CK], ("is also an input checkpoint",
                                               "write to a new file")),
    Case("out-under-file", [*UNLEARN[:-1], "{w}/afile/u.safetensors"],
         ("cannot write to", "afile is a file, not a folder", "choose a writable --out")),
    Case("bench-out-under-file", [*BENCH[:-1], "{w}/afile/bench"],
         ("cannot write to", "choose a writable --out")),
    Case("bench-out-is-file", [*BENCH[:-1], "{w}/afile"], ("afile is a file, not a folder",)),
    Case("report-nothing", ["report", "--out", "{w}/data/empty"],
         ("no results.db", "run `classunlearn bench")),
    Case("report-corrupt-db", ["report", "--out", "{w}/baddb"],
         ("results.db (file is not a database)", "move the file away and rerun bench")),
    # ray
    Case("ray-not-installed", [*BENCH_ANY_EXECUTOR, "--executor", "ray", "--out", "{w}/bench"],
         ("--executor ray needs Ray", "pip install"), patch="no_ray"),
    Case("ray-unreachable", [*BENCH_ANY_EXECUTOR, "--executor", "ray", "--address", "127.0.0.1:1",
                             "--out", "{w}/bench"],
         ("cannot reach the Ray cluster at '127.0.0.1:1'", "ray start --head"),
         patch="ray_tmp"),
    Case("ray-bad-address", [*BENCH_ANY_EXECUTOR, "--executor", "ray", "--address", "head:port",
                             "--out", "{w}/bench"], ("has no valid port", "host:port"),
         patch="ray_tmp"),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_bad_input_is_one_clear_line_and_loses_nothing(case, world, capsys, monkeypatch):
    if case.patch:
        PATCHES[case.patch](monkeypatch, world)
    argv = [a.format(w=world) for a in case.argv]
    protected = [world / "ck", world / "bench", world / "data"]
    before = snapshot(*protected)
    started = time.perf_counter()
    code, out, err = run(capsys, argv)
    assert_one_line_error(code, out, err, *case.fragments)
    assert time.perf_counter() - started < 30  # refused before any real work
    assert snapshot(*protected) == before
    assert not (world / "new" / "u.safetensors").exists()
    assert not (world / "new" / "m.safetensors").exists()
    if os.environ.get("RELIABILITY_CATALOGUE"):  # docs/reliability.md is built from this
        with open(os.environ["RELIABILITY_CATALOGUE"], "a") as f:
            f.write(json.dumps({"id": case.id, "argv": argv, "err": err.strip(),
                                "root": str(world)}) + "\n")


def test_catalogue_is_large_enough():
    assert len(CASES) >= 25 and len({c.id for c in CASES}) == len(CASES)


def _run_on_a_terminal(argv: list[str], env: dict) -> subprocess.Popen:
    """Start the real CLI with stderr on a pseudo-terminal, as a user would see it."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "classunlearn", *argv], env=env,
                            stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    proc.master = master  # type: ignore[attr-defined]
    return proc


def _read_terminal(proc: subprocess.Popen) -> str:
    chunks = []
    while True:
        try:
            data = os.read(proc.master, 4096)  # type: ignore[attr-defined]
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(proc.master)  # type: ignore[attr-defined]
    return b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")


def test_no_traceback_reaches_a_real_terminal(world, tmp_path):
    """Three bad inputs through `python -m classunlearn` in parallel, stderr on a pty."""
    env = {**os.environ, "CLASSUNLEARN_PROGRESS": "1", "CLASSUNLEARN_LOG": str(tmp_path / "l"),
           "CLASSUNLEARN_RAY_TMPDIR": str(tmp_path / "ray")}
    w = world
    runs = {
        "malicious pickle": (["unlearn", "--checkpoint", f"{w}/ck/weights.pt", "--forget-class",
                              "3", "--method", "ft", "--out", f"{tmp_path}/u.safetensors"],
                             "is a pickle"),
        "truncated IDX": (["train", "--dataset", "mnist", "--data-dir",
                           f"{w}/data/mnist-trunc", "--out", f"{tmp_path}/m.safetensors"],
                          "is truncated"),
        "unreachable Ray": (["bench", *TINY[:-2], "--executor", "ray", "--address",
                             "127.0.0.1:1", "--out", f"{tmp_path}/b"], "cannot reach"),
    }
    procs = {k: _run_on_a_terminal(argv, env) for k, (argv, _) in runs.items()}
    for name, proc in procs.items():
        err = _read_terminal(proc)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 2, (name, err)
        assert err.count("\n") == 1 and err.startswith("error: "), (name, err)
        assert runs[name][1] in err and "Traceback" not in err + out.decode(), name
    assert not (tmp_path / "l").exists()  # nothing was an internal error


# ----------------------------------------------------------------------------- full disk


def _enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["rename", "second-temp-file"])
def test_full_disk_keeps_the_existing_checkpoint(where, tmp_path, capsys, monkeypatch):
    """Disk full while writing a checkpoint: exit 2 saying to free space; the checkpoint that
    was there before is untouched and still loads (weights never beside an old sidecar)."""
    out = untrained_checkpoint(tmp_path / "m.safetensors")
    before = snapshot(tmp_path)
    import tempfile

    if where == "rename":
        monkeypatch.setattr(os, "replace", _enospc)
    else:
        real, calls = tempfile.mkstemp, []

        def mkstemp(*a, **k):
            calls.append(1)
            return _enospc() if len(calls) == 2 else real(*a, **k)

        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    code, o, err = run(capsys, ["train", "--dataset", "digits", "--epochs", "0", "--out", out])
    monkeypatch.undo()
    assert_one_line_error(code, o, err, "No space left on device", "free disk space")
    assert snapshot(tmp_path) == before  # no temp files left, old checkpoint byte for byte
    load_checkpoint(out, load_dataset("digits"))


def test_full_disk_during_bench_keeps_finished_units(tmp_path, capsys, monkeypatch):
    """The disk fills up after the first unit: exit 2 ("free disk space"), the finished unit
    stays valid and is reused, nothing half-written is ever read as valid."""
    import classunlearn.bench.store as store_mod

    real, calls = store_mod._atomic_write, []

    def filling(path, data):
        calls.append(path)
        if len(calls) > 3:  # the 2nd unit's sidecar and everything after it
            _enospc()
        real(path, data)

    monkeypatch.setattr(store_mod, "_atomic_write", filling)
    out = tmp_path / "b"
    code, o, err = run(capsys, ["bench", *TINY, "--out", out])
    lines = err.splitlines()
    assert code == 2 and lines[-1].startswith("error: cannot write results"), err
    assert "No space left on device" in lines[-1] and "free disk space" in lines[-1]
    assert sum(ln.startswith("error:") for ln in lines) == 1 and "Traceback" not in err + o
    finished = finished_units(out)
    assert len(finished) == 1
    store = store_mod.Store(out)
    for side in (out / "artifacts").glob("*.safetensors"):
        valid = store.load(side.stem) is not None
        assert valid == (side.stem in finished)  # the orphan weights are not trusted
    assert not list((out / "artifacts").glob(".*.tmp"))


# ----------------------------------------------------------------------------- faults


def test_nan_loss_in_unlearn_names_method_step_and_loss(world, tmp_path, capsys, monkeypatch):
    from classunlearn.methods import METHODS

    monkeypatch.setitem(METHODS, "nanloss", NanLoss)
    out = tmp_path / "u.safetensors"
    code, o, err = run(capsys, ["unlearn", "--checkpoint", world / "ck/orig.safetensors",
                                "--forget-class", "3", "--method", "nanloss", "--out", out])
    assert_one_line_error(code, o, err, "method nanloss", "loss became nan", "at step 0",
                          "lower the learning rate")
    assert not out.exists()


def test_diverging_methods_fail_alone_and_the_study_goes_on(baseline, tmp_path, capsys,
                                                            monkeypatch):
    """ga with lr=1e9 explodes and nanloss turns NaN: both are stopped with method, step and
    loss named, marked failed in results.json and report.md, every other method keeps its
    row with the numbers of the uninterrupted run."""
    from classunlearn.methods import METHODS

    monkeypatch.setitem(METHODS, "nanloss", NanLoss)
    out = tmp_path / "b"
    shutil.copytree(baseline[0], out)
    argv = ["bench", *TINY, "--methods", "retrain,original,trw,ft,ga,nanloss",
            "--set", "ga:lr=1e9", "--out", out]
    code, o, err = run(capsys, argv)
    assert code == 0, err
    assert "Traceback" not in o + err
    assert re.search(r"FAILED .*ga: method ga: loss became \S+ at step \d+", o), o
    assert re.search(r"FAILED .*nanloss: method nanloss: loss became nan at step 0", o), o
    results = json.loads((out / "results.json").read_text())
    failed = {k.split()[-1]: v for k, v in results["failed"].items()}
    assert set(failed) == {"ga", "nanloss"}
    assert "at step" in failed["ga"] and "loss became" in failed["ga"]
    report = (out / "report.md").read_text()
    assert "## Failed runs" in report
    assert re.search(r"- FAILED \S+ ga: method ga: loss became", report)
    assert re.search(r"- FAILED \S+ nanloss: method nanloss: loss became nan", report)
    for m in ("retrain", "original", "trw", "ft"):
        assert re.search(rf"^\| {m}\b", report, re.M), m
    kept = {m: v for m, v in results["summary"].items() if m not in failed}
    assert canon(kept) == baseline[1]


def test_bench_survives_five_sigkills(baseline, tmp_path):
    """SIGKILL the same bench five times in a row at random points (during start-up, mid
    unit, right after an artifact), then let it finish: the table equals the uninterrupted
    run's and no unit finished before a kill is computed again."""
    out = tmp_path / "killed"
    argv = [sys.executable, "-m", "classunlearn", "bench", *TINY, "--out", str(out)]
    env = {**os.environ, "CLASSUNLEARN_PROGRESS": "0"}
    rng = random.Random(int(os.environ.get("RELIABILITY_SEED", "20261128")))
    kept: dict[str, tuple] = {}
    plan: list[str] = []
    startup = 4.0  # replaced by the measured time to a first finished unit
    for round_ in range(5):
        done = finished_units(out) if out.exists() else {}
        assert {k: done.get(k) for k in kept} == kept  # finished units are never redone
        after_artifact = round_ % 2 == 0 and len(done) < N_UNITS - 2
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        started = time.time()
        if after_artifact:  # wait for k more finished units, then a random moment more
            k = rng.choice([1, 2])
            deadline = started + 120
            while time.time() < deadline and proc.poll() is None:
                n = len(list((out / "artifacts").glob("*.json")))
                if round_ == 0 and n > len(done):
                    startup = min(startup, time.time() - started)
                if n >= len(done) + k:
                    break
                time.sleep(0.02)
            time.sleep(rng.uniform(0, 0.3))
            plan.append(f"after {k} new unit(s)")
        else:  # a random moment while starting up or in the first unit it computes
            delay = rng.uniform(0.3, startup if len(done) < N_UNITS - 2 else startup / 2)
            time.sleep(delay)
            plan.append(f"after {delay:.1f} s")
        assert proc.poll() is None, f"bench finished before kill {round_ + 1} ({plan})"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kept.update(finished_units(out))
    assert kept, plan
    res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    m = re.search(r"(\d+) units computed, (\d+) reused", res.stdout)
    assert m, res.stdout
    assert (int(m.group(1)), int(m.group(2))) == (N_UNITS - len(kept), len(kept)), plan
    done = finished_units(out)
    assert {k: done[k] for k in kept} == kept  # same files: not one was recomputed
    assert table_of(out) == baseline[1]
    print(f"kills: {plan}; {len(kept)} of {N_UNITS} units finished before the last one")


def test_corrupt_artifacts_are_recomputed_never_read(baseline, tmp_path):
    """A truncated file, a flipped byte (same size), a cut sidecar and a sidecar that is not
    a JSON object: each is detected by its hash or parse, recomputed, and the table is the
    same as before."""
    from classunlearn.bench.store import Store

    out = tmp_path / "b"
    shutil.copytree(baseline[0], out)
    art = out / "artifacts"
    keys = {(info["kind"], info["label"]): p.stem for p in art.glob("*.json")
            for info in [json.loads(p.read_text())]}
    original, ref, trw = (keys["train", "original seed 0"], keys["train", "reference 1"],
                          keys["method", "trw seed 0"])
    shadows = keys["shadows", "8 shadow retrains seed 0"]
    damaged = {original, ref, trw, shadows}
    f = art / f"{original}.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])  # truncated
    f = art / f"{ref}.safetensors"
    blob = bytearray(f.read_bytes())
    blob[-5] ^= 0xFF  # same length, one byte changed: only the hash can tell
    f.write_bytes(bytes(blob))
    f = art / f"{trw}.json"
    f.write_text(f.read_text()[:20])  # cut sidecar
    (art / f"{shadows}.json").write_text("[]")  # valid JSON, not an object
    store = Store(out)
    for key in damaged:
        assert store.load(key) is None
    result = run_bench(tiny_config(out), log=lambda _: None)
    assert (result.computed, result.reused) == (len(damaged), N_UNITS - len(damaged))
    assert canon(result.summary["summary"]) == baseline[1]
    assert len(finished_units(out)) == N_UNITS


# ----------------------------------------------------------------------------- untrusted files


@pytest.mark.parametrize("form", ["protocol0", "protocol2", "protocol5", "torch.save",
                                  "pt-name"])
def test_malicious_checkpoint_runs_nothing(form, world, tmp_path, capsys):
    """A pickle with a __reduce__ payload, as a checkpoint (even with a sidecar forged to
    match its hash): refused in one line, the payload never runs."""
    marker = tmp_path / "pwned"
    name = "evil.pt" if form == "pt-name" else "evil.safetensors"
    path = tmp_path / name
    evil = Evil(marker, how="system" if form == "protocol5" else "open")
    if form == "torch.save" or form == "pt-name":
        torch.save({"state": evil}, path)
    else:
        path.write_bytes(pickle.dumps(evil, protocol=int(form[-1])))
    if form != "pt-name":
        side = json.loads((world / "ck/orig.json").read_text())
        side["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        path.with_suffix(".json").write_text(json.dumps(side))
    for argv in (["unlearn", "--checkpoint", path, "--forget-class", "3", "--method", "ft",
                  "--out", tmp_path / "u.safetensors"],
                 ["unlearn", "--checkpoint", world / "ck/orig.safetensors", "--forget-class",
                  "3", "--method", "trw-2r-oracle", "--reference", path,
                  "--out", tmp_path / "u.safetensors"]):
        code, out, err = run(capsys, argv)
        assert_one_line_error(code, out, err, str(path))
        assert re.search(r"pickle|not a readable safetensors", err), err
        assert not marker.exists()
    assert not (tmp_path / "u.safetensors").exists()


def test_malicious_cifar_batch_and_npz_run_nothing(tmp_path, capsys):
    marker = tmp_path / "pwned"
    for how in ("open", "system"):
        blob = pickle.dumps({b"data": Evil(marker, how), b"labels": [0]}, protocol=2)
        root = write_cifar(tmp_path / f"cifar-{how}", blob)
        code, out, err = run(capsys, ["train", "--dataset", "cifar10", "--data-dir", root,
                                      "--out", tmp_path / "m.safetensors"])
        assert_one_line_error(code, out, err, "data_batch_1 is not a valid CIFAR file",
                              "download it again")
        assert not marker.exists()
    npz = tmp_path / "evil.npz"
    np.savez(npz, x_train=np.array([Evil(marker)], dtype=object), y_train=np.array([0]),
             x_test=np.zeros((1, 2)), y_test=np.array([0]))
    code, out, err = run(capsys, ["train", "--dataset", "npz", "--data-dir", npz, "--out",
                                  tmp_path / "m.safetensors"])
    assert_one_line_error(code, out, err, "pickled object array", "save numeric arrays only")
    assert not marker.exists()


def test_valid_checkpoint_that_starts_like_a_pickle_still_loads(tmp_path, capsys):
    """A safetensors header of 640 bytes begins 80 02, the signature of pickle protocol 2:
    such a checkpoint (an mlp of depth 3, hidden 250 on digits) must load, not be refused."""
    ck = tmp_path / "m.safetensors"
    code, _, err = run(capsys, ["train", "--dataset", "digits", "--epochs", "0", "--model-arg",
                                "depth=3", "--model-arg", "hidden=250", "--out", ck])
    assert code == 0, err
    assert ck.read_bytes()[:2] == b"\x80\x02"
    code, _, err = run(capsys, ["unlearn", "--checkpoint", ck, "--forget-class", "3",
                                "--method", "original", "--out", tmp_path / "u.safetensors"])
    assert code == 0, err


# a test-only method whose loss is NaN from the first step


def _nan_method():
    from classunlearn.methods.base import FinetuneMethod, FinetuneParams

    class _NanLoss(FinetuneMethod):
        """Test only: a loss that is NaN at once."""

        name = "nanloss"
        summary = "test only: NaN loss"
        source = "tests/test_reliability.py"
        Params = FinetuneParams

        def loss(self, model, batch, params, ctx):
            return model(batch.x).sum() * float("nan")

    return _NanLoss


NanLoss = _nan_method()
