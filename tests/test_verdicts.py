"""Verdict rules (classunlearn.audit.verdicts): each rule's boundaries by hand, the U-LiRA
bootstrap on synthetic known truths, and the three verdicts on a tiny real digits study
(original must leak, retrain must pass, RL, a known-leaky baseline, must be caught)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from safetensors.numpy import load_file

from classunlearn.audit.ulira import ulira_leave_one_out, ulira_rows
from classunlearn.audit.verdicts import (
    OUTCOMES,
    UliraInterval,
    Verdict,
    accuracy_verdict,
    best_threshold_accuracy,
    mia_nn_verdict,
    ulira_interval,
    ulira_null,
    ulira_phi_interval,
    ulira_verdict,
)
from classunlearn.errors import ParameterError

# ------------------------------------------------------------------ Verdict


def test_verdict_vocabulary_and_dict():
    v = Verdict("mia_nn", "leaks", False, "rule", {"z": 3.0})
    assert v.to_dict() == {"attack": "mia_nn", "outcome": "leaks", "passed": False,
                           "rule": "rule", "numbers": {"z": 3.0}}
    json.dumps(v.to_dict())
    with pytest.raises(ParameterError):
        Verdict("mia_nn", "pass", True, "rule")
    with pytest.raises(ParameterError):
        Verdict("svc", "pass", True, "rule")
    assert set(OUTCOMES) == {"accuracy", "mia_nn", "ulira"}


# ------------------------------------------------------------------ accuracy

REF_F = [0.0, 0.0, 0.0, 0.0, 0.0]
REF_R = [97.9, 96.9, 97.7, 97.7, 97.5]


@pytest.mark.parametrize("acc_f, ta_r, outcome", [
    (0.0, 97.1, "pass"),
    (2.0, 97.1, "pass"),       # the tolerance (2 points: the references' sd is 0) included
    (2.01, 97.1, "fail"),
    (0.0, 94.9, "pass"),       # min 96.9 - 2
    (0.0, 94.89, "fail"),
    (0.0, 99.9, "pass"),       # a higher TA_r is no failure
    (100.0, 97.5, "fail"),     # the original
])
def test_accuracy_boundaries(acc_f, ta_r, outcome):
    v = accuracy_verdict(acc_f, ta_r, REF_F, REF_R)
    assert v.attack == "accuracy" and v.outcome == outcome
    assert v.passed is (outcome == "pass")
    assert "Acc_f" in v.rule and v.numbers["n_references"] == 5


def test_accuracy_tolerance_widens_with_the_references_spread():
    refs_r = [90.0, 96.0, 93.0]  # sd 3 > 2: the tolerance is 3 points
    v = accuracy_verdict(0.0, 87.0, [0.0] * 3, refs_r)
    assert v.outcome == "pass" and v.numbers["tolerance_retain"] == pytest.approx(3.0)
    assert accuracy_verdict(0.0, 86.9, [0.0] * 3, refs_r).outcome == "fail"
    assert accuracy_verdict(0.0, 97.0, [], []).outcome == "inconclusive"
    assert accuracy_verdict(0.0, 97.0, [], []).passed is None
    assert accuracy_verdict(float("nan"), 97.0, REF_F, REF_R).outcome == "fail"
    with pytest.raises(ParameterError):
        accuracy_verdict(0.0, 97.0, REF_F, REF_R, tolerance=-1)


# ------------------------------------------------------------------ MIA-NN


@pytest.mark.parametrize("z, m, outcome", [
    (3.0, 5, "leaks"),
    (2.99, 5, "inconclusive"),
    (2.0, 5, "inconclusive"),
    (1.99, 5, "within the references' spread"),
    (-3.5, 6, "leaks"),                          # |z|
    (10.0, 4, "inconclusive"),                   # too few references to call a leak
    (10.0, 3, "inconclusive"),
    (1.0, 2, "within the references' spread"),
    (1.0, 1, "inconclusive"),                    # no spread with one reference
    (None, 5, "inconclusive"),
    (float("nan"), 5, "inconclusive"),
])
def test_mia_nn_boundaries(z, m, outcome):
    v = mia_nn_verdict(z, m)
    assert v.outcome == outcome
    assert v.passed is {"leaks": False, "within the references' spread": True}.get(outcome)
    assert "3" in v.rule and "5 references" in v.rule


def test_mia_nn_thresholds_are_parameters():
    assert mia_nn_verdict(2.5, 3, z_leak=2.5, min_references=3).outcome == "leaks"
    with pytest.raises(ParameterError):
        mia_nn_verdict(1.0, 5, z_spread=4.0)
    with pytest.raises(ParameterError):
        mia_nn_verdict(1.0, -1)


# ------------------------------------------------------------------ U-LiRA


def _synthetic(seed: int, shift: float, n: int = 8, examples: int = 200):
    """Balanced complementary halves; per-example means drawn once; phi = mean + noise for
    both kinds; the unlearned models' phi shifted by `shift` at the examples they saw."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(0, 2, examples)
    halves = [rng.permutation(examples) < examples // 2 for _ in range(n // 2)]
    mask = np.vstack([m for h in halves for m in (h, ~h)])
    unlearned = mu + rng.normal(0, 1, (n, examples)) + shift * mask
    retrained = mu + rng.normal(0, 1, (n, examples))
    retrained_2 = mu + rng.normal(0, 1, (n, examples))  # a retrain replay: the null
    return unlearned, mask, retrained, retrained_2


def test_rows_reproduce_the_leave_one_out_result():
    u, mask, r, _ = _synthetic(0, 0.0)
    pos, neg, folds = ulira_rows(u, mask, r)
    assert folds == "pairs" and len(pos) == len(neg) == 8
    res = ulira_leave_one_out(u, mask, r)
    assert best_threshold_accuracy(np.concatenate(pos), np.concatenate(neg)) == pytest.approx(
        res.accuracy_best, abs=1e-9)


def test_interval_is_seeded_and_covers_the_point():
    u, mask, r, _ = _synthetic(1, 0.5)
    a = ulira_phi_interval(u, mask, r, n_boot=200, seed=3)
    b = ulira_phi_interval(u, mask, r, n_boot=200, seed=3)
    c = ulira_phi_interval(u, mask, r, n_boot=200, seed=4)
    assert a == b and a != c and a.block == 2
    assert a.low <= a.point <= a.high
    assert a.point == pytest.approx(ulira_leave_one_out(u, mask, r).accuracy_best)
    json.dumps(a.to_dict())


def test_interval_blocks_and_errors():
    rng = np.random.default_rng(0)
    pos = [rng.normal(1, 1, 50) for _ in range(4)]
    neg = [rng.normal(0, 1, 80) for _ in range(3)]
    i = ulira_interval(pos, neg, n_boot=100)
    assert i.block == 0 and i.low <= i.point <= i.high
    with pytest.raises(ParameterError):
        ulira_interval(pos, neg, block=1)
    with pytest.raises(ParameterError):
        ulira_interval(pos, pos, n_boot=5)
    with pytest.raises(ParameterError):
        ulira_interval([[np.nan]], neg)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_leaky_is_distinguishable_and_ideal_is_not(seed):
    u_leak, mask, r, r2 = _synthetic(seed, 1.0)
    u_ideal = _synthetic(seed, 0.0)[0]
    null = ulira_null(r2, mask, r, n_boot=300)
    leaky = ulira_verdict(ulira_phi_interval(u_leak, mask, r, n_boot=300), null)
    ideal = ulira_verdict(ulira_phi_interval(u_ideal, mask, r, n_boot=300), null)
    assert leaky.outcome == "distinguishable" and leaky.passed is False
    assert ideal.outcome != "distinguishable"


@pytest.mark.parametrize("interval, outcome", [
    ({"point": 70.0, "low": 61.0, "high": 80.0}, "distinguishable"),
    ({"point": 70.0, "low": 60.0, "high": 80.0}, "inconclusive"),   # touches the null
    ({"point": 60.0, "low": 55.0, "high": 66.0}, "indistinguishable"),
    ({"point": 60.01, "low": 55.0, "high": 66.0}, "inconclusive"),
])
def test_ulira_verdict_boundaries(interval, outcome):
    null = UliraInterval(point=55.0, low=52.0, high=60.0, level=0.95, n_boot=100, seed=0,
                         n_positive_rows=8, n_negative_rows=8, block=2)
    v = ulira_verdict(interval, null)
    assert v.outcome == outcome and v.numbers["null_high"] == 60.0
    with pytest.raises(ParameterError):
        ulira_verdict({"point": 1.0, "low": 2.0, "high": 0.0}, null)


def test_ulira_verdict_text_names_the_in_sample_statistic():
    """The verdict's numbers are the in-sample statistic; the printed line (audit, forget)
    and the record page's card say so, so no one reads them as the cross-fitted column."""
    from classunlearn.audit.verdicts import verdict_record
    from classunlearn.bench.audit import verdict_line
    from classunlearn.record_page import _verdict_card

    v = verdict_record(ulira_verdict({"point": 69.2, "low": 63.2, "high": 76.0},
                                     {"point": 57.2, "low": 52.9, "high": 64.2}))
    assert verdict_line(v) == ("verdict ---- U-LiRA: inconclusive (U-LiRA in-sample 69.2 "
                               "[63.2, 76.0] vs the null 57.2 [52.9, 64.2])")
    assert "U-LiRA in-sample" in str(_verdict_card(v))
    assert "in-sample" not in str(_verdict_card(verdict_record(mia_nn_verdict(1.0, 5))))


# ------------------------------------------------------------------ a tiny digits study


@pytest.fixture(scope="module")
def digits_study(tmp_path_factory):
    from classunlearn.cli import main
    from classunlearn.data import ForgetSplit, load_dataset

    out = tmp_path_factory.mktemp("verdicts") / "run"
    assert main(["bench", "--dataset", "digits", "--methods", "retrain,original,rl",
                 "--seeds", "1", "--shadows", "8", "--references", "5", "--epochs", "10",
                 "--executor", "local", "--out", str(out)]) == 0
    arts = {}
    for meta in (out / "artifacts").glob("*.json"):
        arts[json.loads(meta.read_text())["label"]] = load_file(meta.with_suffix(".safetensors"))
    results = json.loads((out / "results.json").read_text())
    (rows,) = results["studies"].values()
    split = ForgetSplit(load_dataset("digits"), (3,))
    return rows, arts, split, results


def test_digits_verdicts(digits_study):
    rows, arts, split, _ = digits_study
    y_tr, y_te = split.dataset.y_train.numpy(), split.dataset.y_test.numpy()
    f_tr, r_te = split.train_forget.numpy(), split.test_retain.numpy()
    refs = [a for k, a in arts.items() if k.startswith("reference ")]
    assert len(refs) == 5
    acc = lambda lg, y: 100.0 * float(np.mean(lg.argmax(1) == y))  # noqa: E731
    ref_f = [acc(r["logits_train"][f_tr], y_tr[f_tr]) for r in refs]
    ref_r = [acc(r["logits_test"][r_te], y_te[r_te]) for r in refs]
    mask = arts["8 shadow originals seed 0"]["mask"][:, f_tr].astype(bool)
    ret_phi = arts["8 shadow retrains seed 0"]["phi"]
    null = ulira_null(arts["retrain on 8 shadows seed 0"]["phi"], mask, ret_phi, n_boot=300)
    verdicts = {}
    for method, m in rows.items():
        get = {k: v["mean"] for k, v in m.items()}.__getitem__
        interval = ulira_phi_interval(arts[f"{method} on 8 shadows seed 0"]["phi"], mask,
                                      ret_phi, n_boot=300)
        # the bench's in-sample number (its cross-fitted headline `ulira` is not the
        # verdict's statistic)
        assert interval.point == pytest.approx(get("ulira_in_sample"))
        verdicts[method] = {
            "accuracy": accuracy_verdict(get("acc_forget"), get("test_acc_retain"), ref_f, ref_r),
            "mia_nn": mia_nn_verdict(get("mia_nn_z"), len(refs)),
            "ulira": ulira_verdict(interval, null),
        }
        print(method, {k: (v.outcome, v.numbers) for k, v in verdicts[method].items()})
    original, retrain, rl = verdicts["original"], verdicts["retrain"], verdicts["rl"]
    assert original["accuracy"].outcome == "fail"
    assert original["ulira"].outcome == "distinguishable"
    assert original["mia_nn"].outcome == "leaks"  # z 3.6 with 5 references
    assert all(v.passed for v in retrain.values()), retrain
    assert any(v.passed is False for v in rl.values()), rl
    assert not math.isnan(null.point)


def test_bench_results_carry_the_verdicts(digits_study):
    """results.json["verdicts"][study][method][seed]: the same rules, wired by the runner
    (U-LiRA against the retrain replay of the same seed, 1000 resamples)."""
    *_, results = digits_study
    (study,) = results["verdicts"]
    got = {m: {v["attack"]: v for v in seeds["0"]}
           for m, seeds in results["verdicts"][study].items()}
    assert set(got) == {"retrain", "original", "rl"}
    for m in got.values():
        assert list(m) == ["accuracy", "mia_nn", "ulira"]
        assert all(v["verdict"] == v["outcome"] and v["rule"] for v in m.values())
    assert got["original"]["accuracy"]["verdict"] == "fail"
    assert got["original"]["mia_nn"]["verdict"] == "leaks"
    assert got["original"]["ulira"]["verdict"] == "distinguishable"
    assert all(v["passed"] for v in got["retrain"].values())
    assert got["rl"]["ulira"]["verdict"] == "distinguishable"  # RL passes the other two
    u = got["rl"]["ulira"]["numbers"]
    assert u["point"] == pytest.approx(
        results["studies"][study]["rl"]["ulira_in_sample"]["mean"])
    assert u["null_point"] == pytest.approx(got["retrain"]["ulira"]["numbers"]["point"])


def _two_samples(rng: np.random.Generator, trial: int, levels: int, max_size: int,
                 shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Two samples of random sizes: integer values with many ties on even trials, normal
    ones (the second shifted) on odd trials."""
    a = rng.integers(0, levels, rng.integers(1, max_size)).astype(float)
    b = rng.integers(0, levels, rng.integers(1, max_size)).astype(float)
    if trial % 2:
        a, b = rng.normal(size=a.size), rng.normal(shift, 1.0, b.size)
    return a, b


def test_best_threshold_accuracy_equals_the_two_cdfs_definition_with_ties():
    """One merged sort gives exactly 50 + 50 max_v |F_pos(v) - F_neg(v)| over every observed
    v, ties included (the definition written with searchsorted)."""
    rng = np.random.default_rng(1)
    for trial in range(300):
        a, b = _two_samples(rng, trial, levels=5, max_size=30, shift=0.5)
        sa, sb = np.sort(a), np.sort(b)
        grid = np.concatenate([sa, sb])
        expected = 50 + 50 * float(np.max(np.abs(
            np.searchsorted(sa, grid, side="right") / sa.size
            - np.searchsorted(sb, grid, side="right") / sb.size)))
        assert best_threshold_accuracy(a, b) == expected


def test_resampled_statistics_equal_one_call_per_resample():
    """The interval's batched statistic (counts per distinct pooled value, running sums) is
    exactly best_threshold_accuracy of each resample, ties, unequal sizes and chunks
    included."""
    from classunlearn.audit.verdicts import _resampled_ks

    rng = np.random.default_rng(2)
    for trial in range(20):
        pos, neg = _two_samples(rng, trial, levels=6, max_size=40, shift=0.3)
        draws = [(rng.integers(0, pos.size, rng.integers(1, 50)),
                  rng.integers(0, neg.size, rng.integers(1, 50))) for _ in range(30)]
        expected = [best_threshold_accuracy(pos[p], neg[n]) for p, n in draws]
        assert _resampled_ks(pos, neg, draws).tolist() == expected
    # a pool wide enough that the draws are split into several chunks
    pos, neg = rng.normal(size=300_000), rng.normal(size=300_000)
    draws = [(rng.integers(0, pos.size, 50), rng.integers(0, neg.size, 50)) for _ in range(12)]
    assert _resampled_ks(pos, neg, draws).tolist() == [
        best_threshold_accuracy(pos[p], neg[n]) for p, n in draws]
