import math
from typing import Any, Literal

import pytest

from align_mcp.core import metrics
from align_mcp.core.metrics import (
    cohen_kappa,
    compute_metrics,
    confusion,
    corrected_pass_rate,
    flip_report,
    mcnemar_exact,
    rate,
    weighted_kappa,
    wilson,
)
from align_mcp.core.models import Interval, ScoreType
from align_mcp.errors import InvalidInput

BINARY = ScoreType(kind="binary")

# A binary reference set worked by hand: 8 true pass, 2 false fail, 1 false pass, 9 true fail (n = 20).
# po = (8 + 9) / 20 = 0.85; human pass share 10/20, judge pass share 9/20;
# pe = 0.5 * 0.45 + 0.5 * 0.55 = 0.5; kappa = (0.85 - 0.5) / (1 - 0.5) = 0.7.
HAND_BINARY = [(1, 1)] * 8 + [(1, 0)] * 2 + [(0, 1)] * 1 + [(0, 0)] * 9


# --- wilson / rate ---


def test_wilson_matches_the_formula_worked_out_for_8_of_10():
    z = 1.96
    p, n = 0.8, 10
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    interval = wilson(8, 10, z=1.96)
    assert interval is not None
    assert interval.low == pytest.approx(center - half)
    assert interval.high == pytest.approx(center + half)
    assert (round(interval.low, 4), round(interval.high, 4)) == (0.4902, 0.9433)


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    # Newcombe (1998), Statistics in Medicine 17:857, Table II, method 3 (Wilson score, z = 1.96).
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_reproduces_newcombes_published_intervals(k, n, low, high):
    interval = wilson(k, n, z=1.96)
    assert interval is not None
    assert (round(interval.low, 4), round(interval.high, 4)) == (low, high)


def test_wilson_is_none_when_there_are_no_trials():
    assert wilson(0, 0) is None


def test_wilson_is_clamped_to_the_unit_interval_at_the_extremes():
    all_fail, all_pass = wilson(0, 5), wilson(5, 5)
    assert all_fail is not None and all_pass is not None
    assert all_fail.low == 0.0 and all_pass.high == 1.0
    # By symmetry, 0/5 and 5/5 are mirror images: high(0/5) = 1 - low(5/5).
    assert all_fail.high == pytest.approx(1 - all_pass.low)


def test_rate_carries_value_counts_and_wilson_interval():
    r = rate(3, 4)
    assert (r.value, r.k, r.n) == (0.75, 3, 4)
    assert r.ci == wilson(3, 4)


def test_rate_of_nothing_has_no_value_and_no_interval():
    r = rate(0, 0)
    assert (r.value, r.k, r.n, r.ci) == (None, 0, 0, None)


# --- confusion ---


def test_confusion_counts_human_rows_and_judge_columns_with_zeros_in_label_order():
    matrix = confusion([("good", "ok"), ("good", "ok"), ("ok", "ok")], ["good", "ok", "bad"])
    assert matrix == {
        "good": {"good": 0, "ok": 2, "bad": 0},
        "ok": {"good": 0, "ok": 1, "bad": 0},
        "bad": {"good": 0, "ok": 0, "bad": 0},
    }
    assert list(matrix) == ["good", "ok", "bad"]
    assert list(matrix["bad"]) == ["good", "ok", "bad"]


def test_confusion_rejects_a_score_outside_the_labels():
    with pytest.raises(InvalidInput, match="'meh' is not one of the labels"):
        confusion([("good", "meh")], ["good", "bad"])


# --- cohen_kappa ---


def test_cohen_kappa_matches_the_hand_computed_value():
    assert cohen_kappa(HAND_BINARY, [0, 1]) == pytest.approx(0.7)


def test_cohen_kappa_is_one_for_perfect_agreement_on_both_classes():
    assert cohen_kappa([(0, 0), (1, 1), (1, 1)], [0, 1]) == 1.0


def test_cohen_kappa_is_minus_one_for_total_disagreement_on_a_balanced_set():
    # po = 0; pe = 0.5 * 0.5 + 0.5 * 0.5 = 0.5; kappa = (0 - 0.5) / (1 - 0.5) = -1.
    assert cohen_kappa([(0, 1), (1, 0)], [0, 1]) == -1.0


def test_cohen_kappa_is_undefined_without_pairs():
    assert cohen_kappa([], [0, 1]) is None


def test_cohen_kappa_is_undefined_when_chance_agreement_is_one():
    # Human and judge both always say pass: pe = 1 * 1 + 0 * 0 = 1, so (po - pe) / (1 - pe) is 0 / 0.
    assert cohen_kappa([(1, 1)] * 5, [0, 1]) is None


# --- weighted_kappa ---

# Ordinal pairs on 1..3 worked by hand: (1,1), (2,2), (3,3), (1,3); n = 4.
# Human row totals r = (2, 1, 1); judge column totals c = (1, 1, 2).
HAND_ORDINAL = [(1, 1), (2, 2), (3, 3), (1, 3)]


def test_quadratic_weighted_kappa_matches_the_hand_computed_value():
    # Observed disagreement: (1 - 3)^2 = 4 from one pair, so 4 / 4 = 1.
    # Expected: sum of r_i * c_j * (i - j)^2 / n^2 over cells
    #   (1,2) 2*1*1 + (1,3) 2*2*4 + (2,1) 1*1*1 + (2,3) 1*2*1 + (3,1) 1*1*4 + (3,2) 1*1*1 = 26, so 26 / 16.
    # kappa_w = 1 - 1 / (26 / 16) = 10 / 26 = 5 / 13.
    assert weighted_kappa(HAND_ORDINAL, [1, 2, 3]) == pytest.approx(5 / 13)


def test_linear_weighted_kappa_matches_the_hand_computed_value():
    # Observed: |1 - 3| = 2, so 2 / 4 = 0.5.
    # Expected: (1,2) 2*1*1 + (1,3) 2*2*2 + (2,1) 1*1*1 + (2,3) 1*2*1 + (3,1) 1*1*2 + (3,2) 1*1*1 = 16, so 16 / 16 = 1.
    # kappa_w = 1 - 0.5 / 1 = 0.5.
    assert weighted_kappa(HAND_ORDINAL, [1, 2, 3], weights="linear") == pytest.approx(0.5)


def test_weighted_kappa_is_one_for_perfect_agreement():
    assert weighted_kappa([(1, 1), (3, 3), (5, 5)], [1, 2, 3, 4, 5]) == 1.0


def test_weighted_kappa_is_undefined_without_pairs_or_without_spread():
    assert weighted_kappa([], [1, 2, 3]) is None
    # Both raters always say 2: expected disagreement is 0, so kappa_w = 1 - 0 / 0.
    assert weighted_kappa([(2, 2), (2, 2)], [1, 2, 3]) is None


# --- compute_metrics ---


def test_binary_metrics_match_the_hand_computed_confusion_and_exclude_errors():
    metrics = compute_metrics(BINARY, [*HAND_BINARY, (1, None), (0, None)])
    assert (metrics.kind, metrics.n, metrics.errors) == ("binary", 20, 2)
    assert (metrics.agreement.k, metrics.agreement.n) == (17, 20)
    assert metrics.kappa == pytest.approx(0.7)
    assert metrics.tpr is not None and (metrics.tpr.k, metrics.tpr.n) == (8, 10)  # judge pass / human pass
    assert metrics.tnr is not None and (metrics.tnr.k, metrics.tnr.n) == (9, 10)  # judge fail / human fail
    assert metrics.precision is not None and (metrics.precision.k, metrics.precision.n) == (8, 9)
    assert (metrics.false_pass, metrics.false_fail) == (1, 2)
    assert metrics.confusion == {"0": {"0": 9, "1": 1}, "1": {"0": 2, "1": 8}}
    assert (
        metrics.within_one is None and metrics.unweighted_kappa is None and metrics.per_label_recall is None
    )


def test_always_pass_judge_on_a_90_percent_pass_set_agrees_90_percent_with_kappa_zero():
    # po = 9/10; pe = 0.9 * 1.0 + 0.1 * 0.0 = 0.9; kappa = (0.9 - 0.9) / (1 - 0.9) = 0.
    metrics = compute_metrics(BINARY, [(1, 1)] * 9 + [(0, 1)])
    assert metrics.agreement.value == pytest.approx(0.9)
    assert metrics.kappa == pytest.approx(0.0)
    assert metrics.tpr is not None and metrics.tpr.value == 1.0
    assert metrics.tnr is not None and (metrics.tnr.k, metrics.tnr.n) == (0, 1)
    assert metrics.false_pass == 1


def test_metrics_with_only_errors_have_no_rates():
    metrics = compute_metrics(BINARY, [(1, None), (0, None), (1, None)])
    assert (metrics.n, metrics.errors) == (0, 3)
    assert (metrics.agreement.value, metrics.agreement.ci) == (None, None)
    assert metrics.kappa is None
    assert metrics.tpr is not None and metrics.tpr.value is None
    assert metrics.confusion == {"0": {"0": 0, "1": 0}, "1": {"0": 0, "1": 0}}


def test_binary_metrics_on_an_all_pass_set_leave_tnr_and_kappa_undefined():
    metrics = compute_metrics(BINARY, [(1, 1), (1, 1), (1, 0)])
    # Human never fails: TNR has no denominator. Judge says pass 2/3, human 3/3:
    # pe = 1 * 2/3 + 0 * 1/3 = 2/3 < 1, so kappa is defined: (2/3 - 2/3) / (1 - 2/3) = 0.
    assert metrics.tnr is not None and (metrics.tnr.value, metrics.tnr.n) == (None, 0)
    assert metrics.kappa == pytest.approx(0.0)
    perfect = compute_metrics(BINARY, [(1, 1), (1, 1)])
    assert perfect.agreement.value == 1.0 and perfect.kappa is None  # pe == 1


def test_ordinal_metrics_use_quadratic_kappa_and_within_one():
    # Same hand example as above on a 1..5 scale: rows and columns 4 and 5 are empty and add nothing.
    # Unweighted: po = 3/4; pe = (2*1 + 1*1 + 1*2) / 16 = 5/16; kappa = (12/16 - 5/16) / (11/16) = 7/11.
    metrics = compute_metrics(ScoreType(kind="ordinal", min=1, max=5), [*HAND_ORDINAL, (2, None)])
    assert (metrics.n, metrics.errors) == (4, 1)
    assert metrics.kappa == pytest.approx(5 / 13)
    assert metrics.unweighted_kappa == pytest.approx(7 / 11)
    assert metrics.within_one is not None and (metrics.within_one.k, metrics.within_one.n) == (3, 4)
    assert list(metrics.confusion) == ["1", "2", "3", "4", "5"]
    assert metrics.tpr is None and metrics.per_label_recall is None


def test_categorical_metrics_give_recall_per_label():
    # good->good x3, good->ok x1, ok->ok x2, bad->good x1, bad->bad x1 (n = 8).
    # po = 6/8; rows (4, 2, 2), columns (4, 3, 1); pe = (4*4 + 2*3 + 2*1) / 64 = 24/64;
    # kappa = (48/64 - 24/64) / (40/64) = 0.6.
    pairs = [("good", "good")] * 3 + [
        ("good", "ok"),
        ("ok", "ok"),
        ("ok", "ok"),
        ("bad", "good"),
        ("bad", "bad"),
    ]
    metrics = compute_metrics(ScoreType(kind="categorical", labels=["good", "ok", "bad"]), pairs)
    assert metrics.agreement.value == pytest.approx(6 / 8)
    assert metrics.kappa == pytest.approx(0.6)
    assert metrics.per_label_recall is not None
    recall = {label: (r.k, r.n) for label, r in metrics.per_label_recall.items()}
    assert recall == {"good": (3, 4), "ok": (2, 2), "bad": (1, 2)}
    assert metrics.tpr is None and metrics.within_one is None


# --- mcnemar_exact ---


def test_mcnemar_matches_the_hand_computed_binomial_tail():
    # n = 6, P(X <= 1) = (C(6,0) + C(6,1)) / 2^6 = 7/64; two-sided p = 14/64.
    assert mcnemar_exact(5, 1) == pytest.approx(14 / 64)
    assert mcnemar_exact(1, 5) == pytest.approx(14 / 64)
    # n = 10, P(X <= 0) = 1/1024; p = 2/1024.
    assert mcnemar_exact(10, 0) == pytest.approx(2 / 1024)


def test_mcnemar_is_one_without_discordant_pairs_and_capped_at_one_when_balanced():
    assert mcnemar_exact(0, 0) == 1.0
    # n = 6, P(X <= 3) = (1 + 6 + 15 + 20) / 64 = 42/64; 2 * 42/64 > 1, so 1.
    assert mcnemar_exact(3, 3) == 1.0


def test_mcnemar_handles_thousands_of_flips_without_overflow():
    assert mcnemar_exact(0, 3000) == 0.0  # 2 / 2^3000 underflows to zero
    assert 0.0 < mcnemar_exact(1000, 1200) < 0.001


# --- flip_report ---


def _verdicts(
    fixed: int, broken: int, both_right: int, both_wrong: int
) -> tuple[dict[str, bool], dict[str, bool]]:
    baseline: dict[str, bool] = {}
    candidate: dict[str, bool] = {}
    groups = [("f", fixed, False, True), ("b", broken, True, False), ("r", both_right, True, True)]
    for prefix, count, before, after in [*groups, ("w", both_wrong, False, False)]:
        for i in range(count):
            baseline[f"{prefix}{i:02d}"], candidate[f"{prefix}{i:02d}"] = before, after
    return baseline, candidate


def test_flip_report_calls_a_small_difference_noise_and_ignores_unshared_ids():
    baseline, candidate = _verdicts(fixed=5, broken=1, both_right=30, both_wrong=4)
    baseline["only-baseline"] = False
    candidate["only-candidate"] = True
    report = flip_report(baseline, candidate, "v3", "draft")
    assert (report.baseline, report.candidate, report.n) == ("v3", "draft", 40)
    assert report.fixed == ["f00", "f01", "f02", "f03", "f04"]
    assert report.broken == ["b00"]
    assert (report.both_right, report.both_wrong) == (30, 4)
    assert report.p_value == pytest.approx(14 / 64)
    assert report.verdict == (
        "draft fixed 5 and broke 1 of 40 shared examples; McNemar p = 0.22: "
        "not distinguishable from noise at the 0.05 level — label more examples or look at the flips."
    )


def test_flip_report_calls_a_lopsided_difference_a_real_improvement_or_regression():
    baseline, candidate = _verdicts(fixed=10, broken=0, both_right=20, both_wrong=0)
    better = flip_report(baseline, candidate, "v1", "draft")
    assert better.p_value == pytest.approx(2 / 1024)
    assert better.verdict == (
        "draft fixed 10 and broke 0 of 30 shared examples; McNemar p = 0.002: a real improvement at the 0.05 level."
    )
    worse = flip_report(candidate, baseline, "v1", "draft")
    assert worse.broken == better.fixed and worse.fixed == []
    assert worse.verdict.endswith("McNemar p = 0.002: a real regression at the 0.05 level.")


def test_flip_report_respects_a_stricter_alpha():
    baseline, candidate = _verdicts(fixed=10, broken=0, both_right=0, both_wrong=0)
    report = flip_report(baseline, candidate, "v1", "draft", alpha=0.001)
    assert "not distinguishable from noise at the 0.001 level" in report.verdict


def test_flip_report_says_so_when_no_example_changed():
    baseline, candidate = _verdicts(fixed=0, broken=0, both_right=3, both_wrong=1)
    report = flip_report(baseline, candidate, "v2", "draft")
    assert (report.fixed, report.broken, report.p_value) == ([], [], 1.0)
    assert report.verdict == "draft fixed 0 and broke 0 of 4 shared examples; no example changed verdict."


def test_flip_report_without_shared_examples_has_no_p_value():
    report = flip_report({"a": True}, {"b": False}, "v2", "draft")
    assert (report.n, report.p_value, report.both_right, report.both_wrong) == (0, None, 0, 0)
    assert "no judged examples in common" in report.verdict


# --- corrected_pass_rate ---

# Labeled set: 10 human pass (judge passes 8) and 10 human fail (judge fails 9): TPR = 0.8, TNR = 0.9.
LABELED = [(True, True)] * 8 + [(True, False)] * 2 + [(False, True)] * 1 + [(False, False)] * 9


def test_corrected_pass_rate_matches_rogan_gladen_by_hand():
    unlabeled = [True] * 50 + [False] * 50
    result = corrected_pass_rate(unlabeled, LABELED, n_boot=500)
    # theta = (p_obs + TNR - 1) / (TPR + TNR - 1) = (0.5 + 0.9 - 1) / (0.8 + 0.9 - 1) = 0.4 / 0.7.
    assert result.observed == 0.5
    assert result.corrected == pytest.approx(0.4 / 0.7)
    assert (result.tpr, result.tnr) == (pytest.approx(0.8), pytest.approx(0.9))
    assert (result.n_unlabeled, result.n_labeled, result.n_boot, result.clipped) == (100, 20, 500, False)
    assert 0.0 <= result.ci.low < result.corrected < result.ci.high <= 1.0


def test_corrected_pass_rate_is_reproducible_for_a_seed():
    unlabeled = [True] * 30 + [False] * 70
    first = corrected_pass_rate(unlabeled, LABELED, n_boot=300, seed=7)
    assert corrected_pass_rate(unlabeled, LABELED, n_boot=300, seed=7) == first
    assert corrected_pass_rate(unlabeled, LABELED, n_boot=300, seed=8).ci != first.ci


def test_corrected_pass_rate_clips_estimates_outside_the_unit_interval():
    # p_obs = 0.05: (0.05 + 0.9 - 1) / 0.7 = -0.05 / 0.7 < 0, clipped to 0.
    low = corrected_pass_rate([True] * 5 + [False] * 95, LABELED, n_boot=200)
    assert (low.corrected, low.clipped) == (0.0, True)
    # p_obs = 0.95: (0.95 + 0.9 - 1) / 0.7 = 0.85 / 0.7 > 1, clipped to 1.
    high = corrected_pass_rate([True] * 95 + [False] * 5, LABELED, n_boot=200)
    assert (high.corrected, high.clipped) == (1.0, True)
    assert low.ci.low == 0.0 and high.ci.high == 1.0  # resamples are clipped too


def test_corrected_pass_rate_of_a_perfect_judge_is_the_observed_rate_with_bootstrap_spread():
    # TPR = TNR = 1, so theta = p_obs in every resample. With unlabeled [pass, fail] a resample's p_obs is
    # 0, 0.5 or 1 with chances 1/4, 1/2, 1/4, so the 2.5th and 97.5th percentiles are 0 and 1.
    perfect = [(True, True)] * 10 + [(False, False)] * 10
    result = corrected_pass_rate([True, False], perfect, n_boot=1000)
    assert (result.corrected, result.clipped, result.skipped_resamples) == (0.5, False, 0)
    assert result.ci == Interval(low=0.0, high=1.0)


def test_corrected_pass_rate_skips_and_counts_resamples_missing_a_class():
    # Labeled set of one pass and one fail: a resample of 2 misses a class with chance 2 * (1/2)^2 = 1/2.
    result = corrected_pass_rate([True, True], [(True, True), (False, False)], n_boot=2000)
    assert 900 < result.skipped_resamples < 1100
    assert result.ci == Interval(low=1.0, high=1.0)


def test_corrected_pass_rate_requires_unlabeled_runs():
    with pytest.raises(InvalidInput, match="No unlabeled runs"):
        corrected_pass_rate([], LABELED)


def test_corrected_pass_rate_requires_labeled_pairs():
    with pytest.raises(InvalidInput, match="No labeled pairs"):
        corrected_pass_rate([True], [])


def test_corrected_pass_rate_requires_both_classes_in_the_labeled_set():
    with pytest.raises(
        InvalidInput, match="No human-fail examples in the labeled set; label some failing runs"
    ):
        corrected_pass_rate([True], [(True, True), (True, False)])
    with pytest.raises(
        InvalidInput, match="No human-pass examples in the labeled set; label some passing runs"
    ):
        corrected_pass_rate([True], [(False, True), (False, False)])


def test_corrected_pass_rate_refuses_a_judge_no_better_than_chance():
    # TPR = 1/2, TNR = 1/2: TPR + TNR - 1 = 0, so the correction divides by zero.
    chance = [(True, True), (True, False), (False, True), (False, False)]
    with pytest.raises(InvalidInput, match=r"no better than chance .*TPR=0\.50, TNR=0\.50"):
        corrected_pass_rate([True], chance)


# ---- kappa's interval -------------------------------------------------------------------------------------------


def _delta_method_se(counts: list[list[int]], weights: list[list[float]]) -> float:
    """kappa's asymptotic standard error by the delta method, numerically: the gradient of kappa over the cell
    proportions, under the multinomial covariance diag(p) − ppᵀ. Independent of the closed form under test."""
    k = len(counts)
    n = sum(map(sum, counts))
    cells = [counts[i][j] / n for i in range(k) for j in range(k)]

    def kappa_of(p: list[float]) -> float:
        rows = [sum(p[i * k + j] for j in range(k)) for i in range(k)]
        cols = [sum(p[i * k + j] for i in range(k)) for j in range(k)]
        observed = sum(weights[i][j] * p[i * k + j] for i in range(k) for j in range(k))
        expected = sum(weights[i][j] * rows[i] * cols[j] for i in range(k) for j in range(k))
        return (observed - expected) / (1 - expected)

    h = 1e-6
    grad = []
    for c in range(len(cells)):
        up, down = list(cells), list(cells)
        up[c] += h
        down[c] -= h
        grad.append((kappa_of(up) - kappa_of(down)) / (2 * h))
    mean = sum(g * p for g, p in zip(grad, cells, strict=True))
    variance = sum(p * (g - mean) ** 2 for g, p in zip(grad, cells, strict=True)) / n
    return math.sqrt(variance)


def _pairs(counts: list[list[int]], labels: list[Any]) -> list[tuple[Any, Any]]:
    return [
        (labels[i], labels[j]) for i, row in enumerate(counts) for j, c in enumerate(row) for _ in range(c)
    ]


@pytest.mark.parametrize(
    ("counts", "labels", "weighting"),
    [
        ([[20, 5], [10, 15]], [1, 0], "none"),
        ([[30, 4, 2], [6, 25, 5], [1, 7, 20]], ["a", "b", "c"], "none"),
        (
            [[9, 3, 1, 0, 0], [2, 8, 4, 1, 0], [0, 3, 10, 3, 1], [0, 1, 2, 7, 3], [0, 0, 1, 2, 6]],
            [1, 2, 3, 4, 5],
            "quadratic",
        ),
    ],
)
def test_kappa_interval_is_kappa_plus_minus_its_delta_method_standard_error(
    counts: list[list[int]], labels: list[Any], weighting: Literal["none", "quadratic"]
) -> None:
    k = len(labels)
    if weighting == "quadratic":
        weights = [[1 - (i - j) ** 2 / (k - 1) ** 2 for j in range(k)] for i in range(k)]
    else:
        weights = [[float(i == j) for j in range(k)] for i in range(k)]
    pairs = _pairs(counts, labels)
    ci = metrics.kappa_interval(pairs, labels, weighting)
    assert ci is not None
    point = (
        metrics.weighted_kappa(pairs, labels, "quadratic")
        if weighting == "quadratic"
        else metrics.cohen_kappa(pairs, labels)
    )
    assert point is not None
    se = _delta_method_se(counts, weights)
    assert ci.low == pytest.approx(point - 1.959963984540054 * se, abs=1e-6)
    assert ci.high == pytest.approx(point + 1.959963984540054 * se, abs=1e-6)


def test_kappa_interval_is_none_when_it_cannot_be_estimated() -> None:
    assert metrics.kappa_interval([(1, 1)] * 10 + [(0, 0)] * 10, [1, 0]) is None  # every pair agrees
    assert metrics.kappa_interval([(1, 0)], [1, 0]) is None  # one pair
    assert metrics.kappa_interval([(1, 1)] * 5, [1, 0]) is None  # kappa undefined (one class only)


def test_metrics_carry_kappas_interval_for_every_score_type() -> None:
    binary_pairs = [(1, 1)] * 20 + [(1, 0)] * 5 + [(0, 1)] * 10 + [(0, 0)] * 15
    ordinal_pairs = [(1, 1)] * 8 + [(2, 3)] * 4 + [(3, 3)] * 9 + [(4, 2)] * 3 + [(5, 5)] * 6
    categorical_pairs = (
        [("good", "good")] * 12 + [("ok", "bad")] * 4 + [("bad", "bad")] * 9 + [("ok", "ok")] * 5
    )
    cases = [
        (ScoreType(kind="binary"), binary_pairs, "none"),
        (ScoreType(kind="ordinal", min=1, max=5), ordinal_pairs, "quadratic"),
        (ScoreType(kind="categorical", labels=["good", "ok", "bad"]), categorical_pairs, "none"),
    ]
    for score_type, pairs, weighting in cases:
        m = metrics.compute_metrics(score_type, pairs)
        assert m.kappa_ci is not None and m.kappa is not None, score_type.kind
        assert m.kappa_ci.low < m.kappa < m.kappa_ci.high, score_type.kind
        expected = metrics.kappa_interval(pairs, score_type.values(), weighting)
        assert expected is not None
        assert (m.kappa_ci.low, m.kappa_ci.high) == (
            pytest.approx(expected.low, abs=1e-12),
            pytest.approx(expected.high, abs=1e-12),
        )
