import math

import pytest
import torch

from classunlearn.errors import ParameterError, TrainingDiverged
from classunlearn.models import MODELS, build_model, final_linear
from classunlearn.train import (
    Recipe,
    accuracy,
    batch_sizes,
    batches,
    epoch_batches,
    lr_factor,
    make_scheduler,
    predict_logits,
    train_model,
)


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


@pytest.mark.parametrize("n,b,sizes", [(10, 5, [5, 5]), (12, 5, [5, 5, 2]), (11, 5, [5, 6]),
                                       (3, 5, [3]), (1, 5, [1]), (0, 5, []), (4, 1, [1, 1, 2])])
def test_batches_keep_the_rest_and_merge_a_last_batch_of_one(n, b, sizes):
    assert batch_sizes(n, b) == sizes
    out = epoch_batches(n, b, torch.Generator().manual_seed(0))
    assert [len(t) for t in out] == sizes
    assert sorted(torch.cat(out).tolist() if out else []) == list(range(n))
    again = batches(n, b, torch.Generator().manual_seed(0))  # the older name
    assert all(torch.equal(u, v) for u, v in zip(out, again, strict=True))


def test_batch_sizes_follow_the_original_rule():
    for n in range(30):
        for b in range(1, 8):
            starts = list(range(0, n, b))
            if len(starts) > 1 and n - starts[-1] == 1:
                starts.pop()
            assert batch_sizes(n, b) == [e - s for s, e in zip(starts, starts[1:] + [n])]


@pytest.mark.parametrize("total", [1, 2, 3, 7, 40])
def test_lr_factor_is_the_classic_schedulers_in_closed_form(total):
    """cosine = CosineAnnealingLR, step = MultiStepLR at int(50%), int(75%), constant = 1."""
    classic = {
        "cosine": lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, total),
        "step": lambda o: torch.optim.lr_scheduler.MultiStepLR(
            o, [int(total * 0.5), int(total * 0.75)], gamma=0.1),
        "constant": lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda _: 1.0),
    }
    for schedule, make in classic.items():
        ours = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        theirs = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        sa, sb = make_scheduler(ours, schedule, total), make(theirs)
        for step in range(total):
            lr = ours.param_groups[0]["lr"]
            assert lr == pytest.approx(0.1 * lr_factor(schedule, step, total), abs=1e-15)
            assert lr == pytest.approx(theirs.param_groups[0]["lr"], rel=1e-9, abs=1e-15)
            ours.step()
            theirs.step()
            sa.step()
            sb.step()
    assert lr_factor("cosine", 0, 10) == 1.0 and lr_factor("cosine", 5, 10) == 0.5
    assert lr_factor("step", 4, 10) == 1.0 and lr_factor("step", 5, 10) == pytest.approx(0.1)
    assert lr_factor("step", 7, 10) == pytest.approx(0.01)


def test_train_model_takes_one_step_per_batch_and_ends_its_schedule(monkeypatch):
    """21 examples in batches of 5: 5, 5, 5, 6 (a last batch of one merged), so 4 steps an
    epoch, and the cosine schedule spans exactly the steps taken."""
    seen: list[tuple[int, float]] = []
    step = torch.optim.SGD.step

    def spy(self, *a, **k):
        seen.append((len(seen), self.param_groups[0]["lr"]))
        return step(self, *a, **k)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    x, y = torch.randn(21, 1, 8, 8), torch.randint(0, 3, (21,))
    train_model(build_model("mlp", (1, 8, 8), 3, seed=0), x, y,
                Recipe(epochs=3, batch_size=5, lr=0.1), seed=0)
    assert len(seen) == 12
    assert [lr for _, lr in seen] == pytest.approx(
        [0.05 * (1 + math.cos(math.pi * t / 12)) for t in range(12)])
