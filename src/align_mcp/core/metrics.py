"""Pure statistics for judge–human agreement: rates, kappas, McNemar flips and the corrected pass rate."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, Field

from align_mcp.core.models import FlipReport, Interval, Metrics, Rate, Score, ScoreType
from align_mcp.errors import InvalidInput

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> Interval | None:
    """Wilson score interval for k successes in n trials; None when n == 0."""
    if n == 0:
        return None
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Interval(low=max(0.0, center - half), high=min(1.0, center + half))


def rate(k: int, n: int) -> Rate:
    """k/n with its Wilson 95% interval; value and ci are None when n == 0."""
    return Rate(value=k / n if n else None, k=k, n=n, ci=wilson(k, n))


def confusion(pairs: Sequence[tuple[Score, Score]], labels: Sequence[Score]) -> dict[str, dict[str, int]]:
    """confusion[str(human)][str(judge)] = count, with every label as a key (zeros included), in label order."""
    matrix = {str(h): {str(j): 0 for j in labels} for h in labels}
    for human, judge in pairs:
        row = matrix.get(str(human))
        if row is None or str(judge) not in row:
            bad = human if row is None else judge
            raise InvalidInput(
                f"Score {bad!r} is not one of the labels {list(labels)}; validate scores first."
            )
        row[str(judge)] += 1
    return matrix


def cohen_kappa(pairs: Sequence[tuple[Score, Score]], labels: Sequence[Score]) -> float | None:
    """Cohen's kappa; None when undefined (no pairs, or chance agreement pe == 1)."""
    matrix = confusion(pairs, labels)
    n = len(pairs)
    keys = [str(label) for label in labels]
    agree = sum(matrix[key][key] for key in keys)
    # Integer numerators over n*n keep pe == 1 exact: kappa = (n*agree - sum(row*col)) / (n*n - sum(row*col)).
    chance = sum(sum(matrix[key].values()) * sum(matrix[h][key] for h in keys) for key in keys)
    if n == 0 or chance == n * n:
        return None
    return (n * agree - chance) / (n * n - chance)


def weighted_kappa(
    pairs: Sequence[tuple[int, int]],
    labels: Sequence[int],
    weights: Literal["linear", "quadratic"] = "quadratic",
) -> float | None:
    """Weighted kappa on ordered labels (distance = difference of positions); None when undefined."""
    matrix = confusion(pairs, labels)
    n = len(pairs)
    keys = [str(label) for label in labels]
    rows = [sum(matrix[key].values()) for key in keys]
    cols = [sum(matrix[h][key] for h in keys) for key in keys]
    power = 2 if weights == "quadratic" else 1
    observed = expected = 0
    for i, human in enumerate(keys):
        for j, judge in enumerate(keys):
            weight = abs(i - j) ** power
            observed += weight * matrix[human][judge] * n
            expected += weight * rows[i] * cols[j]
    if n == 0 or expected == 0:
        return None
    return 1 - observed / expected


def kappa_interval(
    pairs: Sequence[tuple[Score, Score]],
    labels: Sequence[Score],
    weights: Literal["none", "quadratic"] = "none",
    z: float = Z95,
) -> Interval | None:
    """The large-sample 95% interval of Cohen's kappa (or its quadratic-weighted form), kappa ± z·SE.

    SE is the non-null asymptotic standard error of Fleiss, Cohen and Everitt (1969), computed from the
    confusion matrix with agreement weights w (1 on the diagonal; 1 − (i − j)²/(k − 1)² when quadratic):
    Var = [Σ p_ij (w_ij − (w̄_i. + w̄_.j)(1 − κ))² − (κ − p_e(1 − κ))²] / (n (1 − p_e)²), with w̄_i. = Σ_j p_.j w_ij
    and w̄_.j = Σ_i p_i. w_ij. Clipped to [−1, 1]. None when kappa is undefined or its variance is zero (every
    pair agrees, or n < 2): no interval can be estimated from such a sample, and none is made up.
    """
    n = len(pairs)
    if n < 2:
        return None
    matrix = confusion(pairs, labels)
    keys = [str(label) for label in labels]
    k = len(keys)
    p = [[matrix[h][j] / n for j in keys] for h in keys]
    rows = [sum(row) for row in p]
    cols = [sum(p[i][j] for i in range(k)) for j in range(k)]
    if weights == "quadratic" and k > 1:
        w = [[1 - (i - j) ** 2 / (k - 1) ** 2 for j in range(k)] for i in range(k)]
    else:
        w = [[1.0 if i == j else 0.0 for j in range(k)] for i in range(k)]
    observed = sum(w[i][j] * p[i][j] for i in range(k) for j in range(k))
    expected = sum(w[i][j] * rows[i] * cols[j] for i in range(k) for j in range(k))
    if expected >= 1:
        return None
    kappa = (observed - expected) / (1 - expected)
    w_row = [sum(cols[j] * w[i][j] for j in range(k)) for i in range(k)]
    w_col = [sum(rows[i] * w[i][j] for i in range(k)) for j in range(k)]
    spread = sum(
        p[i][j] * (w[i][j] - (w_row[i] + w_col[j]) * (1 - kappa)) ** 2 for i in range(k) for j in range(k)
    )
    variance = (spread - (kappa - expected * (1 - kappa)) ** 2) / (n * (1 - expected) ** 2)
    if variance <= 1e-15:
        return None
    half = z * math.sqrt(variance)
    return Interval(low=max(-1.0, kappa - half), high=min(1.0, kappa + half))


def compute_metrics(score_type: ScoreType, pairs: Sequence[tuple[Score, Score | None]]) -> Metrics:
    """Agreement metrics for (human, judge) pairs; a judge None is an errored call, counted and never scored."""
    scored = [(h, j) for h, j in pairs if j is not None]
    # A pairwise judge may end in a tie (orders that disagree) even where the evaluator allows none.
    labels = score_type.values() if score_type.kind != "pairwise" else ["A", "B", "tie"]
    n = len(scored)
    metrics = Metrics(
        kind=score_type.kind,
        n=n,
        errors=len(pairs) - n,
        agreement=rate(sum(h == j for h, j in scored), n),
        confusion=confusion(scored, labels),
    )
    if score_type.kind == "binary":
        cells = metrics.confusion
        tp, fn, fp, tn = cells["1"]["1"], cells["1"]["0"], cells["0"]["1"], cells["0"]["0"]
        metrics.kappa = cohen_kappa(scored, labels)
        metrics.kappa_ci = kappa_interval(scored, labels)
        metrics.tpr = rate(tp, tp + fn)
        metrics.tnr = rate(tn, tn + fp)
        metrics.precision = rate(tp, tp + fp)
        metrics.false_pass = fp
        metrics.false_fail = fn
    elif score_type.kind == "ordinal":
        ints = [(int(h), int(j)) for h, j in scored]
        metrics.kappa = weighted_kappa(ints, [int(v) for v in labels], "quadratic")
        metrics.kappa_ci = kappa_interval(scored, labels, "quadratic")
        metrics.unweighted_kappa = cohen_kappa(scored, labels)
        metrics.within_one = rate(sum(abs(h - j) <= 1 for h, j in ints), n)
    else:
        metrics.kappa = cohen_kappa(scored, labels)
        metrics.kappa_ci = kappa_interval(scored, labels)
        metrics.per_label_recall = {
            key: rate(row[key], sum(row.values())) for key, row in metrics.confusion.items()
        }
    return metrics


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value: 2 * P(X <= min(b, c)), X ~ Binomial(b + c, 1/2), capped at 1."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    # Integer true division is correctly rounded even when 2**n is too large for a float.
    return min(1.0, 2 * tail / (1 << n))


def _format_p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def flip_report(
    baseline: Mapping[str, bool],
    candidate: Mapping[str, bool],
    baseline_name: str,
    candidate_name: str,
    alpha: float = 0.05,
) -> FlipReport:
    """Compare per-example judge–human agreement of two prompts on the run ids both judged."""
    shared = sorted(baseline.keys() & candidate.keys())
    fixed = [i for i in shared if not baseline[i] and candidate[i]]
    broken = [i for i in shared if baseline[i] and not candidate[i]]
    both_right = sum(baseline[i] and candidate[i] for i in shared)
    n = len(shared)
    p_value: float | None = None
    if n == 0:
        verdict = (
            f"{candidate_name} and {baseline_name} have no judged examples in common; nothing to compare."
        )
    else:
        p_value = mcnemar_exact(len(fixed), len(broken))
        head = f"{candidate_name} fixed {len(fixed)} and broke {len(broken)} of {n} shared example{'s' * (n != 1)}"
        if not fixed and not broken:
            verdict = f"{head}; no example changed verdict."
        elif p_value < alpha:
            change = "improvement" if len(fixed) > len(broken) else "regression"
            verdict = f"{head}; McNemar {_format_p(p_value)}: a real {change} at the {alpha:g} level."
        else:
            verdict = (
                f"{head}; McNemar {_format_p(p_value)}: not distinguishable from noise at the {alpha:g} level"
                " — label more examples or look at the flips."
            )
    return FlipReport(
        baseline=baseline_name,
        candidate=candidate_name,
        n=n,
        fixed=fixed,
        broken=broken,
        both_right=both_right,
        both_wrong=n - both_right - len(fixed) - len(broken),
        p_value=p_value,
        verdict=verdict,
    )


class CorrectedPassRate(BaseModel):
    """The judge's pass rate on unlabeled runs, corrected for its measured errors (Rogan–Gladen)."""

    observed: float = Field(description="Share of unlabeled runs the judge passed (p_obs)")
    corrected: float = Field(
        description="Estimated true pass rate: (p_obs + TNR - 1) / (TPR + TNR - 1), clipped to [0, 1]"
    )
    ci: Interval = Field(description="Percentile bootstrap interval of the corrected rate")
    tpr: float = Field(description="Judge pass among human pass on the labeled set")
    tnr: float = Field(description="Judge fail among human fail on the labeled set")
    n_unlabeled: int = Field(description="Unlabeled runs judged")
    n_labeled: int = Field(description="Labeled (human, judge) pairs used to measure TPR and TNR")
    n_boot: int = Field(description="Bootstrap resamples drawn")
    skipped_resamples: int = Field(
        description="Resamples dropped because a class was missing or TPR + TNR <= 1 in them"
    )
    clipped: bool = Field(description="True when the raw estimate fell outside [0, 1] and was clipped")


def _recalls(labeled: Sequence[tuple[bool, bool]]) -> tuple[float, float] | None:
    """(TPR, TNR) of (human_pass, judge_pass) pairs; None when either class is missing."""
    passes = [judge for human, judge in labeled if human]
    fails = [not judge for human, judge in labeled if not human]
    if not passes or not fails:
        return None
    return sum(passes) / len(passes), sum(fails) / len(fails)


def _percentile(ordered: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile of sorted data (numpy's default)."""
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


EXACT_RESAMPLE = 20_000
"""Most unlabeled verdicts resampled one by one in the bootstrap; above it a resample's pass count is drawn from
its distribution (binomial), which is the same thing without m draws per resample."""


class PassCount(BaseModel):
    """The judge's verdicts on unlabeled runs as counts (a streamed pass rate keeps no verdict list)."""

    passes: int
    total: int


def _resampled_passes(rng: random.Random, passes: int, m: int) -> int:
    """Passes among m draws with replacement from m verdicts of which `passes` pass: Binomial(m, passes/m).

    Normal approximation (continuity-corrected) where both counts are large, Poisson for a rare class; both are
    far inside the bootstrap's own error at the sizes they are used (m > EXACT_RESAMPLE)."""
    rare = min(passes, m - passes)
    if rare == 0:
        return passes
    if rare < 30:
        limit, k, product = math.exp(-rare), 0, rng.random()
        while product > limit:
            k += 1
            product *= rng.random()
        k = min(k, m)
        return k if passes == rare else m - k
    p = passes / m
    draw = round(rng.gauss(m * p, math.sqrt(m * p * (1 - p))))
    return min(m, max(0, draw))


def corrected_pass_rate(
    judge_pass_unlabeled: Sequence[bool] | PassCount,
    labeled: Sequence[tuple[bool, bool]],
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> CorrectedPassRate:
    """Rogan–Gladen corrected pass rate with a bootstrap interval; labeled pairs are (human_pass, judge_pass).

    The unlabeled verdicts are a list (resampled one by one up to EXACT_RESAMPLE of them) or a PassCount (a
    streamed estimate), whose resamples draw their pass count from its binomial."""
    if isinstance(judge_pass_unlabeled, PassCount):
        m, passes, verdicts = judge_pass_unlabeled.total, judge_pass_unlabeled.passes, None
    else:
        m, passes, verdicts = len(judge_pass_unlabeled), sum(judge_pass_unlabeled), judge_pass_unlabeled
    if not m:
        raise InvalidInput("No unlabeled runs to estimate a pass rate for; judge some unlabeled runs first.")
    if not labeled:
        raise InvalidInput("No labeled pairs to measure the judge's error rates; label some runs first.")
    if not any(human for human, _ in labeled):
        raise InvalidInput("No human-pass examples in the labeled set; label some passing runs first.")
    if all(human for human, _ in labeled):
        raise InvalidInput("No human-fail examples in the labeled set; label some failing runs first.")
    if n_boot < 1 or not 0 < confidence < 1:
        raise InvalidInput(
            f"Need n_boot >= 1 and 0 < confidence < 1; got n_boot={n_boot}, confidence={confidence}."
        )
    recalls = _recalls(labeled)
    assert recalls is not None
    tpr, tnr = recalls
    if tpr + tnr <= 1:
        raise InvalidInput(
            f"The judge is no better than chance on the labeled set (TPR={tpr:.2f}, TNR={tnr:.2f}, TPR + TNR <= 1), "
            "so its pass rate cannot be corrected; improve the prompt until TPR + TNR > 1."
        )
    raw = (passes / m + tnr - 1) / (tpr + tnr - 1)

    rng = random.Random(seed)
    estimates: list[float] = []
    for _ in range(n_boot):
        boot_recalls = _recalls(rng.choices(labeled, k=len(labeled)))
        if verdicts is not None and m <= EXACT_RESAMPLE:
            boot_passes = sum(rng.choices(verdicts, k=m))
        else:
            boot_passes = _resampled_passes(rng, passes, m)
        if boot_recalls is None or sum(boot_recalls) <= 1:
            continue
        boot_tpr, boot_tnr = boot_recalls
        theta = (boot_passes / m + boot_tnr - 1) / (boot_tpr + boot_tnr - 1)
        estimates.append(min(1.0, max(0.0, theta)))
    if not estimates:
        raise InvalidInput(
            "Every bootstrap resample lacked a class or was at chance; label more passing and failing runs."
        )
    estimates.sort()
    tail = (1 - confidence) / 2
    return CorrectedPassRate(
        observed=passes / m,
        corrected=min(1.0, max(0.0, raw)),
        ci=Interval(low=_percentile(estimates, tail), high=_percentile(estimates, 1 - tail)),
        tpr=tpr,
        tnr=tnr,
        n_unlabeled=m,
        n_labeled=len(labeled),
        n_boot=n_boot,
        skipped_resamples=n_boot - len(estimates),
        clipped=not 0 <= raw <= 1,
    )


def flip_share(scores: Sequence[Score | None]) -> float | None:
    """Share of valid verdicts that differ from the most common one; None with fewer than two."""
    valid = [s for s in scores if s is not None]
    if len(valid) < 2:
        return None
    top = Counter(json.dumps(s, sort_keys=True) for s in valid).most_common(1)[0][1]
    return 1 - top / len(valid)
