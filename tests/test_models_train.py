import pytest
import torch

from classunlearn.errors import ParameterError, TrainingDiverged
from classunlearn.models import MODELS, build_model, final_linear
from classunlearn.train import Recipe, accuracy, predict_logits, train_model


@pytest.mark.parametrize("name,shape,kwargs", [
    ("mlp", (1, 8, 8), {}), ("cnn", (1, 8, 8), {}), ("cnn", (1, 40), {}),
    ("resnet18", (3, 16, 16), {"width": 4}),
])
def test_models_produce_logits(name, shape, kwargs):
    m = build_model(name, shape, 7, **kwargs)
    assert m(torch.randn(3, *shape)).shape == (3, 7)
    assert final_linear(m).out_features == 7


def test_registry_and_bad_arguments():
    assert set(MODELS) == {"mlp", "cnn", "resnet18"}
    with pytest.raises(ParameterError, match="unknown model"):
        build_model("vit", (1, 8, 8), 10)
    with pytest.raises(ParameterError, match="bad arguments"):
        build_model("mlp", (1, 8, 8), 10, depthh=3)
    with pytest.raises(ParameterError, match="needs image"):
        build_model("resnet18", (40,), 10)


def test_training_is_seeded_and_learns(digits):
    r = Recipe(epochs=3, batch_size=64, lr=0.05)
    a = train_model(build_model("mlp", digits.input_shape, 10, seed=5), digits.x_train,
                    digits.y_train, r, seed=5)
    b = train_model(build_model("mlp", digits.input_shape, 10, seed=5), digits.x_train,
                    digits.y_train, r, seed=5)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert accuracy(a, digits.x_test, digits.y_test) > 85
    assert predict_logits(a, digits.x_test[:5]).shape == (5, 10)


def test_divergence_is_reported(digits):
    r = Recipe(epochs=2, batch_size=64, lr=1e6, momentum=0.0, weight_decay=0.0)
    with pytest.raises(TrainingDiverged, match="step"):
        train_model(build_model("mlp", digits.input_shape, 10), digits.x_train, digits.y_train,
                    r, seed=0)


@pytest.mark.parametrize("kw,msg", [({"epochs": -1}, "epochs"), ({"lr": -0.1}, "lr"),
                                    ({"schedule": "x"}, "schedule"), ({"batch_size": 0}, "batch")])
def test_recipe_validation(kw, msg):
    with pytest.raises(ParameterError, match=msg):
        Recipe(**kw)
