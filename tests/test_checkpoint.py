import pickle

import pytest
import torch

from classunlearn.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from classunlearn.data import load_dataset
from classunlearn.errors import CheckpointError
from classunlearn.models import build_model


def _meta(ds, model="mlp"):
    return CheckpointMeta(dataset=ds.name, class_names=ds.class_names,
                          input_shape=list(ds.input_shape), model=model, seed=3)


def test_round_trip(tmp_path, digits):
    m = build_model("mlp", digits.input_shape, 10)
    path = save_checkpoint(m, _meta(digits), tmp_path / "m.safetensors")
    loaded, meta = load_checkpoint(path, digits)
    for a, b in zip(m.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    assert meta.seed == 3 and len(meta.sha256) == 64
    assert (tmp_path / "m.json").exists()


def test_refuses_other_dataset(tmp_path, digits):
    path = save_checkpoint(build_model("mlp", digits.input_shape, 10), _meta(digits),
                           tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="trained on 'digits'"):
        load_checkpoint(path, load_dataset("mnist1d"))


def test_refuses_truncated_and_modified(tmp_path, digits):
    path = save_checkpoint(build_model("mlp", digits.input_shape, 10), _meta(digits),
                           tmp_path / "m.safetensors")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="hash"):
        load_checkpoint(path, digits)


def test_refuses_shape_mismatch(tmp_path, digits):
    meta = _meta(digits)
    path = save_checkpoint(build_model("mlp", digits.input_shape, 10, hidden=32), meta,
                           tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="shaped"):
        load_checkpoint(path, digits)  # sidecar says default hidden=256


def test_refuses_nan_weights(tmp_path, digits):
    m = build_model("mlp", digits.input_shape, 10)
    with torch.no_grad():
        m.head.weight[0, 0] = float("nan")
    path = save_checkpoint(m, _meta(digits), tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="NaN"):
        load_checkpoint(path, digits)


def test_refuses_pickle_without_unpickling(tmp_path, digits):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "m.safetensors"
    save_checkpoint(build_model("mlp", digits.input_shape, 10), _meta(digits), path)
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(path, digits)
    assert not marker.exists()


def test_missing_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.safetensors")
    (tmp_path / "x.safetensors").write_bytes(b"123")
    with pytest.raises(CheckpointError, match="sidecar"):
        load_checkpoint(tmp_path / "x.safetensors")
