import math

import pytest
import torch

from classunlearn.errors import ParameterError
from classunlearn.methods import UnlearnData, make_params
from classunlearn.methods.trw import (
    SIMILARITY_SOURCES,
    class_similarity,
    renormalised_probs,
    solve_beta,
    tilt,
    trw_targets,
)
from classunlearn.train import accuracy

LOGITS = torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.0, 3.0, 1.0, 1.0]])
SIM = {0: torch.tensor([0.0, 0.2, 0.7, 0.1])}


def test_renormalised_probs_by_hand():
    p = renormalised_probs(torch.tensor([[5.0, 0.0, math.log(3.0)]]), (0,))
    torch.testing.assert_close(p, torch.tensor([[0.0, 0.25, 0.75]]))


def test_target_sums_to_one_with_zero_forget_mass():
    q = trw_targets(LOGITS, torch.tensor([0, 0]), SIM, (0,), beta=10.0)
    torch.testing.assert_close(q.sum(1), torch.ones(2))
    assert torch.all(q[:, 0] == 0)


def test_beta_zero_is_rwft():
    q = trw_targets(LOGITS, torch.tensor([0, 0]), SIM, (0,), beta=0.0)
    torch.testing.assert_close(q, renormalised_probs(LOGITS, (0,)))


def test_tilt_by_hand():
    # p̄ = (0, .5, .5), s = (0, 0, 1), β = ln 3  ->  q ∝ (0, .5, 1.5) = (0, .25, .75)
    q = tilt(torch.tensor([[0.0, 0.5, 0.5]]), torch.tensor([0.0, 0.0, 1.0]), math.log(3))
    torch.testing.assert_close(q, torch.tensor([[0.0, 0.25, 0.75]]))


def test_larger_beta_moves_mass_to_most_similar_class():
    labels = torch.tensor([0, 0])
    masses = [trw_targets(LOGITS, labels, SIM, (0,), beta=b)[:, 2] for b in (0, 1, 5, 20)]
    for lo, hi in zip(masses, masses[1:]):
        assert torch.all(hi > lo)
    assert torch.all(masses[-1] > 0.99)


def test_dual_form_hits_requested_expected_similarity():
    pbar = renormalised_probs(LOGITS, (0,)).double()
    s = SIM[0].double()
    for c in (0.3, 0.5, 0.65):
        beta = solve_beta(pbar, s, c)
        q = tilt(pbar, s, beta)
        achieved = (q * s).sum(1)
        # rows already above c keep β = 0, the others hit c exactly
        for i in range(len(q)):
            start = float((pbar[i] * s).sum())
            if start >= c:
                assert beta[i] == 0
            else:
                assert abs(float(achieved[i]) - c) < 1e-6
    with pytest.raises(ParameterError, match="unreachable"):
        solve_beta(pbar, s, 0.7)


def test_dual_form_through_targets():
    q = trw_targets(LOGITS, torch.tensor([0, 0]), SIM, (0,), target_similarity=0.6)
    assert torch.all((q * SIM[0]).sum(1) >= 0.6 - 1e-5)


@pytest.mark.parametrize("source", SIMILARITY_SOURCES)
def test_similarity_sources_are_distributions(digits_models, source):
    split, original, _ = digits_models
    s = class_similarity(original, UnlearnData.from_split(split), source)[3]
    assert s.shape == (10,) and s[3] == 0
    assert abs(float(s.sum()) - 1) < 1e-5 and torch.all(s >= 0)


def test_trw_forgets_and_keeps_the_rest(digits_models):
    split, original, refs = digits_models
    data = UnlearnData.from_split(split)
    for spec in ("trw", "trw[weights]", "rwft"):
        cls, params = make_params(spec, "digits", {"epochs": "5"})
        unlearned, record = cls().unlearn(original, data, params, seed=0)
        assert accuracy(unlearned, *split.part("train_forget")) < 5
        assert accuracy(unlearned, *split.part("test_retain")) > 93
        assert record.steps > 0 and record.wall_time_s > 0
    # the original is untouched
    assert accuracy(original, *split.part("train_forget")) > 95


def test_trw_two_forget_classes(digits_models):
    from classunlearn.data import ForgetSplit

    split, original, _ = digits_models
    two = ForgetSplit.make(split.dataset, [3, 8])
    cls, params = make_params("trw", "digits", {"epochs": "3"})
    unlearned, _ = cls().unlearn(original, UnlearnData.from_split(two), params)
    assert accuracy(unlearned, *two.part("train_forget")) < 5


@pytest.mark.parametrize("key,value", [("similarity", "bogus"), ("tau", "0"), ("beta", "-1"),
                                       ("epochs", "x"), ("nope", "1")])
def test_bad_trw_params(key, value):
    with pytest.raises(ParameterError):
        make_params("trw", None, {key: value})
