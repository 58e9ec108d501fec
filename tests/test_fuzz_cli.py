"""Property tests over the command line and the files it reads.

Whatever the arguments, ``main(argv)`` returns 0 or 2 (argparse's --help exits 0 after
printing usage), never raises, never prints a traceback and never logs an internal error;
a 2 comes with exactly one ``error: ...`` line on stderr.

Fuzzed commands must stay cheap, so real work is stubbed out: training returns the model
as built, a method's optimisation loop returns the model unchanged (its validation, the
oracle check and the checkpoint writing still run), `bench` stops after validating its
whole configuration (the CLI's pre-flight checks run for real), `audit` stops after the
CLI's own checks, and `import ray` fails.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from classunlearn.cli import main
from classunlearn.errors import UserError

FUZZ = settings(max_examples=100, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
FEW = settings(FUZZ, max_examples=40)

# ----------------------------------------------------------------------------- sandbox

_counter = itertools.count()


@pytest.fixture(scope="module", autouse=True)
def sandbox(tmp_path_factory):
    """Fixture files, a scratch working directory and the stubs that keep fuzzing cheap."""
    from classunlearn.checkpoint import CheckpointMeta, save_checkpoint
    from classunlearn.data import load_dataset
    from classunlearn.methods.base import Method
    from classunlearn.models import build_model

    root = tmp_path_factory.mktemp("fuzz")
    ds = load_dataset("digits")
    for name, excluded in (("ck", []), ("ref", [3])):
        meta = CheckpointMeta(dataset="digits", class_names=ds.class_names,
                              input_shape=list(ds.input_shape), model="mlp",
                              excluded_classes=excluded)
        save_checkpoint(build_model("mlp", ds.input_shape, 10, seed=0), meta,
                        root / f"{name}.safetensors")
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    np.savez(data / "ok.npz", x_train=rng.random((30, 5), dtype=np.float32),
             y_train=np.arange(30) % 3, x_test=rng.random((9, 5), dtype=np.float32),
             y_test=np.arange(9) % 3)
    (data / "bad.npz").write_bytes(b"PK\x03\x04 not really a zip")
    (root / "afile").write_text("x")
    (root / "cwd").mkdir()

    real_unlearn = Method.unlearn

    def fast_unlearn(self, *args, **kwargs):
        self.run = lambda model, data, params, ctx: model  # validation runs, training not
        return real_unlearn(self, *args, **kwargs)

    def stop_bench(cfg, log=print):
        cfg.validate()
        raise UserError("fuzz stub: bench stops after validation")

    def stop_audit(args):
        raise UserError("fuzz stub: audit stops after the CLI's checks")

    old_cwd = os.getcwd()
    os.chdir(root / "cwd")  # relative --out values land in the sandbox
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("classunlearn.train.train_model", lambda model, *a, **k: model.eval())
            mp.setattr(Method, "unlearn", fast_unlearn)
            mp.setattr("classunlearn.bench.runner.run_bench", stop_bench)
            mp.setattr("classunlearn.bench.audit.audit_checkpoint", stop_audit)
            mp.setitem(sys.modules, "ray", None)
            mp.setenv("CLASSUNLEARN_LOG", str(root / "internal-errors.log"))
            mp.setenv("CLASSUNLEARN_PROGRESS", "0")
            yield root
    finally:
        os.chdir(old_cwd)
    assert not (root / "internal-errors.log").exists(), (root / "internal-errors.log"
                                                          ).read_text()


def fresh(root: Path) -> Path:
    """A new, empty output folder for one example (inputs are never written to)."""
    return root / "out" / str(next(_counter))


def check(argv: list[str]) -> int:
    """Run the CLI and assert the contract; return the exit code."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's --help, nothing else
            assert e.code == 0 and "usage:" in out.getvalue(), (argv, e.code, err.getvalue())
            return 0
    o, e = out.getvalue(), err.getvalue()
    assert code in (0, 2), (argv, code, e)
    assert "Traceback" not in o + e, (argv, e)
    if code == 2:
        assert e.count("\n") == 1 and e.startswith("error: "), (argv, e)
    return code


# ----------------------------------------------------------------------------- strategies

FLAGS = {
    "train": ["--dataset", "--data-dir", "--model", "--model-arg", "--exclude-class", "--seed",
              "--epochs", "--lr", "--batch-size", "--device", "--out"],
    "unlearn": ["--checkpoint", "--forget-class", "--method", "--set", "--reference",
                "--data-dir", "--seed", "--device", "--out"],
    "audit": ["--checkpoint", "--forget-class", "--reference", "--metrics", "--shadows",
              "--cache", "--mia-feature", "--svc-feature", "--seed", "--data-dir", "--json"],
    "bench": ["--dataset", "--data-dir", "--model", "--model-arg", "--forget-class",
              "--forget-set", "--methods", "--set", "--seeds", "--shadows", "--references",
              "--executor", "--address", "--workers", "--epochs", "--quick", "--out"],
    "report": ["--out"],
    "methods": [],
}
PATH_FLAGS = {"--checkpoint", "--reference", "--out", "--data-dir", "--json", "--cache"}
JUNK_FLAGS = ["--nope", "-x", "--help", "--", "--out=", "--seed=3", "--forget"]
WORDS = ["digits", "npz", "mnist", "cifar10", "imagefolder", "tinyimagenet", "nope", "mlp",
         "cnn", "resnet18", "vgg", "3", "0", "9", "10", "-1", "1", "2", "4", "1e9", "nan",
         "inf", "-0", "0x10", "abc", "", " ", "=", "a=b", "lr=1e9", "epochs=-1", "epochs=0",
         "beta=2", "hidden=8", "width=0", "depth=-1", "ft:lr=2", "ga:epochs=0", "trw[weights]",
         "trw[x]", "ft", "ga", "trw", "retrain", "original", "all", "ft,ga", ",", "local",
         "process", "ray", "cpu", "cuda", "auto", "tpu", "127.0.0.1:1", "accuracy,tv",
         "accuracy", "bogus", "3,4", "3,3", "-", "é", "日本", "0,1,2,3,4,5,6,7,8,9"]
TEXT = st.text(alphabet="abcdefgilnoprstuvwxyz0123456789-_=:,.[]/ é", max_size=12)


def path_values(root: Path, out: Path) -> st.SearchStrategy[str]:
    return st.sampled_from([
        str(root / "ck.safetensors"), str(root / "ref.safetensors"), str(root / "ck.json"),
        str(root / "afile"), str(root / "afile" / "x.safetensors"), str(root / "missing"),
        str(root / "data" / "ok.npz"), str(root / "data" / "bad.npz"), str(root / "data"),
        str(out / "m.safetensors"), str(out / "m.pt"), str(out / "dir"), str(out / "a.json"),
        "rel.safetensors", "relative-dir", ".", "",
    ])


@st.composite
def argvs(draw, root: Path) -> list[str]:
    out = fresh(root)
    sub = draw(st.sampled_from([*FLAGS, "frobnicate", "", "-h"]))
    argv = [sub] if sub else []
    for _ in range(draw(st.integers(0, 7))):
        flag = draw(st.sampled_from(FLAGS.get(sub) or ["--out"]) | st.sampled_from(JUNK_FLAGS))
        argv.append(flag)
        pool = path_values(root, out) if flag in PATH_FLAGS else st.sampled_from(WORDS)
        argv += draw(st.lists(pool | TEXT, max_size=3))
    return argv


def base_commands(root: Path, out: Path) -> list[tuple[str, list[tuple[str, str]]]]:
    """Valid commands as (subcommand, [(flag, value), ...])."""
    ck, ref = str(root / "ck.safetensors"), str(root / "ref.safetensors")
    return [
        ("train", [("--dataset", "digits"), ("--epochs", "1"),
                   ("--out", str(out / "m.safetensors"))]),
        ("train", [("--dataset", "npz"), ("--data-dir", str(root / "data" / "ok.npz")),
                   ("--exclude-class", "2"), ("--out", str(out / "m.safetensors"))]),
        ("unlearn", [("--checkpoint", ck), ("--forget-class", "3"), ("--method", "ft"),
                     ("--out", str(out / "u.safetensors"))]),
        ("unlearn", [("--checkpoint", ck), ("--forget-class", "3"),
                     ("--method", "trw-2r-oracle"), ("--reference", ref), ("--set", "beta=2"),
                     ("--out", str(out / "u.safetensors"))]),
        ("audit", [("--checkpoint", ck), ("--forget-class", "3"), ("--reference", ref),
                   ("--metrics", "accuracy,tv"), ("--shadows", "0"),
                   ("--json", str(out / "a.json"))]),
        ("bench", [("--methods", "retrain,ft"), ("--seeds", "1"), ("--shadows", "8"),
                   ("--references", "1"), ("--executor", "local"), ("--out", str(out / "b"))]),
        ("report", [("--out", str(out))]),
    ]


@st.composite
def mutated(draw, root: Path) -> list[str]:
    """A valid command with one or two of its flags given another value, dropped, or added
    (a flag of the same subcommand with a value from the pools)."""
    out = fresh(root)
    sub, pairs = draw(st.sampled_from(base_commands(root, out)))
    pairs = list(pairs)
    for _ in range(draw(st.integers(1, 2))):
        op = draw(st.sampled_from(["replace", "replace", "add", "drop"]))
        i = draw(st.integers(0, len(pairs) - 1)) if pairs else 0
        flag = pairs[i][0] if op == "replace" and pairs else draw(st.sampled_from(FLAGS[sub]))
        pool = path_values(root, out) if flag in PATH_FLAGS else st.sampled_from(WORDS)
        value = draw(pool | TEXT)
        if op == "replace" and pairs:
            pairs[i] = (flag, value)
        elif op == "add":
            pairs.append((flag, value))
        elif pairs:
            del pairs[i]
    return [sub, *(x for pair in pairs for x in pair)]


# ----------------------------------------------------------------------------- CLI fuzzing


@FUZZ
@given(data=st.data())
def test_random_command_lines_exit_0_or_2(sandbox, data):
    check(data.draw(argvs(sandbox)))


@FUZZ
@given(data=st.data())
def test_mutated_valid_commands_exit_0_or_2(sandbox, data):
    check(data.draw(mutated(sandbox)))


SET_VALUES = st.sampled_from(["0", "1", "2", "3", "-1", "0.5", "1e-3", "1e9", "1e400",
                              "nan", "inf", "none", "true", "abc", "", "weights", "logits",
                              "cosine", "step", "adam", "sgd", "1.5", "0x1", "1_000"])


@FUZZ
@given(sets=st.lists(st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(
        ["epochs", "lr", "beta", "tau", "similarity", "schedule", "optimizer", "batch_size",
         "retain_fraction", "momentum", "pca_k", "weight_decay", "alpha", "nope", ""]),
        SET_VALUES | TEXT), TEXT), min_size=1, max_size=3),
    method=st.sampled_from(["ft", "trw", "trw[logits]", "ga", "rl", "salun", "scrub", "ssd",
                            "unsir", "bs", "be", "l1-sparse", "rwft", "original", "retrain"]))
def test_random_set_strings_exit_0_or_2(sandbox, sets, method):
    out = fresh(sandbox)
    argv = ["unlearn", "--checkpoint", str(sandbox / "ck.safetensors"), "--forget-class", "3",
            "--method", method, "--out", str(out / "u.safetensors")]
    for s in sets:
        argv += ["--set", s]
    check(argv)
    bench = ["bench", "--methods", method, "--seeds", "1", "--shadows", "0", "--references",
             "1", "--executor", "local", "--out", str(out / "b")]
    for s in sets:
        bench += ["--set", f"{method}:{s}"]
    check(bench)


FORGET = st.lists(st.integers(-3, 12).map(str), min_size=1, max_size=11) | st.lists(
    st.one_of(st.integers(-3, 12).map(str), st.sampled_from(
        ["0", "9", "03", "+3", " 3", "3.0", "seven", "", "-", "1e1", "٣"]), TEXT),
    min_size=1, max_size=11)


@FUZZ
@given(classes=FORGET, where=st.sampled_from(["unlearn", "train", "bench", "forget-set"]))
def test_random_forget_classes_exit_0_or_2(sandbox, classes, where):
    out = fresh(sandbox)
    if where == "unlearn":
        argv = ["unlearn", "--checkpoint", str(sandbox / "ck.safetensors"), "--forget-class",
                *classes, "--method", "ft", "--out", str(out / "u.safetensors")]
    elif where == "train":
        argv = ["train", "--dataset", "digits", "--exclude-class", *classes, "--out",
                str(out / "m.safetensors")]
    else:
        argv = ["bench", "--methods", "retrain", "--seeds", "1", "--shadows", "0",
                "--references", "1", "--executor", "local", "--out", str(out / "b")]
        argv += (["--forget-set", ",".join(classes)] if where == "forget-set"
                 else ["--forget-class", *classes])
    check(argv)


# ----------------------------------------------------------------------------- loader inputs

DTYPES = ["float32", "float64", "uint8", "int64", "int8", "bool", "float16", "U3"]


@st.composite
def arrays(draw, n: int | None = None, label: bool = False):
    n = draw(st.integers(0, 6)) if n is None else n
    if label:
        shape = draw(st.sampled_from([(n,), (n, 1), (n, 2), ()]))
        dtype = draw(st.sampled_from(["int64", "uint8", "int32", "float32", "U3"]))
        values = st.integers(-2, 4)
    else:
        shape = (n, *draw(st.lists(st.integers(0, 5), min_size=0, max_size=3)))
        dtype = draw(st.sampled_from(DTYPES))
        values = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                           st.integers(-300, 300))
    size = int(np.prod(shape)) if shape else 1
    flat = draw(st.lists(values, min_size=size, max_size=size))
    with np.errstate(all="ignore"):
        try:
            return np.array(flat, dtype=object).astype(dtype).reshape(shape)
        except (ValueError, OverflowError, TypeError):
            return np.zeros(shape, dtype="float32")


@FEW
@given(data=st.data())
def test_random_npz_files_exit_0_or_2(sandbox, data):
    """Valid archives with one part replaced by a random array (or left out)."""
    n_train, n_test = data.draw(st.integers(1, 8)), data.draw(st.integers(1, 4))
    rng = np.random.default_rng(n_train)
    parts = {"x_train": rng.random((n_train, 3), dtype=np.float32),
             "y_train": np.arange(n_train) % 3, "x_test": rng.random((n_test, 3)),
             "y_test": np.arange(n_test) % 3}
    key = data.draw(st.sampled_from([None, *parts]))
    if key is not None:
        n = n_train if key.endswith("train") else n_test
        parts[key] = data.draw(arrays(data.draw(st.sampled_from([n, 0, n + 1])),
                                      label=key.startswith("y")))
    drop = data.draw(st.sampled_from([None, None, None, "x_train", "y_test"]))
    out = fresh(sandbox)
    out.mkdir(parents=True)
    np.savez(out / "d.npz", **{k: v for k, v in parts.items() if k != drop})
    forget = data.draw(st.sampled_from(["0", "1", "2"]))
    check(["train", "--dataset", "npz", "--data-dir", str(out / "d.npz"), "--exclude-class",
           forget, "--out", str(out / "m.safetensors")])


@FEW
@given(n=st.integers(0, 3), rows=st.sampled_from([28, 28, 0, 27, 5]),
       cols=st.sampled_from([28, 28, 1, 29]),
       magic=st.sampled_from([0x803, 0x803, 0x801, 0x0, 0x803 | 0x1000000]),
       extra=st.sampled_from([0, 0, 0, -1, 1, -5]), data=st.data())
def test_random_idx_headers_exit_0_or_2(sandbox, n, rows, cols, magic, extra, data):
    size = data.draw(st.sampled_from([n, n, n, 0, n + 1]))
    labels = data.draw(st.lists(st.integers(0, 12), min_size=size, max_size=size))
    out = fresh(sandbox)
    out.mkdir(parents=True)
    payload = bytes(max(0, n * rows * cols + extra))
    for prefix in ("train", "t10k"):
        (out / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">4I", magic, n, rows, cols) + payload)
        (out / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">2I", 0x801, len(labels)) + bytes(labels))
    check(["train", "--dataset", "mnist", "--data-dir", str(out), "--out",
           str(out / "m.safetensors")])


SIDE_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**6), st.text(max_size=6),
                        st.lists(st.integers(-2, 64), max_size=4),
                        st.dictionaries(st.sampled_from(["hidden", "depth", "width", "x"]),
                                        st.integers(-2, 300) | st.text(max_size=3),
                                        max_size=2),
                        st.lists(st.text(max_size=3), max_size=11))


@FEW
@given(changes=st.dictionaries(st.sampled_from(
    ["dataset", "class_names", "input_shape", "model", "model_kwargs", "excluded_classes",
     "recipe", "seed", "method", "sha256", "format_version", "extra"]), SIDE_VALUES,
    min_size=1, max_size=3), weights=st.sampled_from(["keep", "truncate", "empty", "zeros"]))
def test_random_checkpoint_sidecars_and_weights_exit_0_or_2(sandbox, changes, weights):
    out = fresh(sandbox)
    out.mkdir(parents=True)
    ck = out / "c.safetensors"
    blob = (sandbox / "ck.safetensors").read_bytes()
    ck.write_bytes({"keep": blob, "truncate": blob[: len(blob) // 3], "empty": b"",
                    "zeros": bytes(64)}[weights])
    side = json.loads((sandbox / "ck.json").read_text())
    side.update(changes)
    ck.with_suffix(".json").write_text(json.dumps(side))
    check(["unlearn", "--checkpoint", str(ck), "--forget-class", "3", "--method", "ft",
           "--out", str(out / "u.safetensors")])


def test_stubs_keep_the_sandbox_clean(sandbox):
    """Fuzzing writes only under the sandbox; the fixture checkpoints are as written."""
    assert (sandbox / "ck.safetensors").exists() and (sandbox / "ref.safetensors").exists()
    shutil.rmtree(sandbox / "out", ignore_errors=True)
