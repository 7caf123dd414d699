"""A/B comparison of served entities and drift checks, on frames from `inference_table`.

`compare_entities` answers "which served entity is better, and are we sure?": traffic, error
rates and latency per entity, how their predictions are distributed, and, given ground-truth
labels joined on `client_request_id`, a quality metric per entity with a 95 % confidence interval,
a significance test of each challenger against the control (Holm-corrected when there are
several), and a verdict in plain words. `drift` compares two samples (two time windows or two
entities) feature by feature with the population stability index and a KS or chi-square test.
"""

from __future__ import annotations

import datetime as _dt
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from jupyter_serving.capture.row import SHADOW_KEY, TTFT_KEY
from jupyter_serving.tables.reader import RESERVED

ENTITY = "served_entity_name"
HIGHER_IS_BETTER = {"accuracy": True, "mae": False}


# -- small statistics --------------------------------------------------------------------------


MAX_CLASSES = 50  # integer predictions with at most this many values are classes, not numbers


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval for a proportion; unlike the normal one it behaves near 0 and 1."""
    if n == 0:
        return (math.nan, math.nan)
    z = stats.norm.ppf(1 - alpha / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # Exactly at 0/n or n/n rounding leaves a bound a hair past p (1e-17): clamp to [0, p] and [p, 1].
    return (max(0.0, min(centre - half, p)), min(1.0, max(centre + half, p)))


def mean_interval(values: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    n = len(values)
    if n < 2:
        return (math.nan, math.nan)
    half = stats.t.ppf(1 - alpha / 2, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return (values.mean() - half, values.mean() + half)


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (controls the family-wise error rate)."""
    order = np.argsort(p_values)
    adjusted = np.empty(len(p_values))
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()


def is_discrete(values: pd.Series) -> bool:
    """Class labels (strings, booleans, integers, integral floats with few values) vs scores."""
    values = values.dropna()
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return True
    if pd.api.types.is_integer_dtype(values):
        return True
    as_float = values.astype(float)
    return bool((as_float == np.round(as_float)).all()) and as_float.nunique() <= 50


# -- operational comparison --------------------------------------------------------------------


def per_request(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per request (an unpacked frame has one per input row)."""
    return frame.drop_duplicates("databricks_request_id")


def entity_summary(frame: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Requests, input rows, error rate with its interval, and latency percentiles per entity;
    for streamed requests (agents), time to first token too (`ttft_p50_ms`, `ttft_p95_ms`, NaN
    for an entity without streams), when the table recorded it (legacy tables do, AI Gateway
    tables have no column for it)."""
    requests = per_request(frame)
    rows = []
    for entity, group in requests.groupby(ENTITY, sort=True):
        errors = int((group["status_code"] >= 400).sum())
        low, high = wilson_interval(errors, len(group), alpha)
        latency = group["execution_time_ms"].astype(float)
        ttft: dict[str, float] = {}
        if TTFT_KEY in group:
            first = group[TTFT_KEY].astype(float)
            ttft = {"ttft_p50_ms": first.quantile(0.50), "ttft_p95_ms": first.quantile(0.95)}
        rows.append(
            {
                ENTITY: entity,
                "requests": len(group),
                "rows": int((frame[ENTITY] == entity).sum()),
                "errors": errors,
                "error_rate": errors / len(group),
                "error_rate_ci_low": low,
                "error_rate_ci_high": high,
                "latency_p50_ms": latency.quantile(0.50),
                "latency_p95_ms": latency.quantile(0.95),
                "latency_p99_ms": latency.quantile(0.99),
                **ttft,
            }
        )
    return pd.DataFrame(rows).set_index(ENTITY)


def successful(frame: pd.DataFrame, prediction: str = "prediction") -> pd.DataFrame:
    return frame[(frame["status_code"] < 400) & frame[prediction].notna()]


def prediction_distribution(frame: pd.DataFrame, prediction: str = "prediction") -> pd.DataFrame:
    """Share of each predicted class per entity, or summary statistics of a numeric prediction."""
    ok = successful(frame, prediction)
    if is_discrete(ok[prediction]):
        return pd.crosstab(ok[ENTITY], ok[prediction], normalize="index")
    return ok.groupby(ENTITY)[prediction].describe(percentiles=[0.05, 0.5, 0.95])


def prediction_shift(frame: pd.DataFrame, control: str, prediction: str = "prediction") -> pd.DataFrame:
    """Does each challenger predict differently from the control? Chi-square or KS, per pair."""
    ok = successful(frame, prediction)
    base = ok.loc[ok[ENTITY] == control, prediction]
    discrete = is_discrete(ok[prediction])
    rows = []
    for entity in sorted(set(ok[ENTITY]) - {control}):
        other = ok.loc[ok[ENTITY] == entity, prediction]
        if discrete:
            statistic, p_value, test = _chi_square(base, other)
        else:
            result = stats.ks_2samp(base.astype(float), other.astype(float))
            statistic, p_value, test = float(result.statistic), float(result.pvalue), "ks"
        rows.append(
            {ENTITY: entity, "control": control, "test": test, "statistic": statistic, "p_value": p_value}
        )
    return pd.DataFrame(rows, columns=[ENTITY, "control", "test", "statistic", "p_value"])


def _chi_square(a: pd.Series, b: pd.Series) -> tuple[float, float, str]:
    table = pd.crosstab(
        np.r_[np.zeros(len(a)), np.ones(len(b))], np.r_[a.astype(str).to_numpy(), b.astype(str).to_numpy()]
    )
    if table.shape[1] < 2 or len(a) == 0 or len(b) == 0:
        return (0.0, 1.0, "chi-square")
    result = stats.chi2_contingency(table.to_numpy())
    return (float(result.statistic), float(result.pvalue), "chi-square")


# -- quality against ground truth --------------------------------------------------------------


def join_labels(
    frame: pd.DataFrame,
    labels: pd.DataFrame | pd.Series | Mapping[str, Any],
    label_column: str = "label",
) -> pd.DataFrame:
    """Successful rows with their ground truth in `label`, joined on `client_request_id`.

    `labels` is a frame with `client_request_id` and `label_column` (plus `row_index` to label
    each row of a batched request), or a mapping / Series from client request id to label.
    """
    if isinstance(labels, Mapping):
        labels = pd.Series(labels)
    if isinstance(labels, pd.Series):
        labels = pd.DataFrame(
            {"client_request_id": labels.index.astype(str), label_column: labels.to_numpy()}
        )
    keys = ["client_request_id", "row_index"] if "row_index" in labels else ["client_request_id"]
    truth = labels[[*keys, label_column]].rename(columns={label_column: "label"})
    truth = truth.drop_duplicates(keys, keep="last")
    ok = successful(frame).drop(columns=["label"], errors="ignore")
    ok = ok[ok["client_request_id"].notna()]
    return ok.merge(truth, on=keys, how="inner")


def choose_metric(joined: pd.DataFrame) -> str:
    return "accuracy" if is_discrete(joined["label"]) else "mae"


def _scores(group: pd.DataFrame, metric: str) -> np.ndarray:
    """Per-row score whose mean is the metric: 1/0 correctness, or absolute error."""
    if metric == "accuracy":
        return _matches(group["prediction"], group["label"]).astype(float)
    return np.abs(group["prediction"].astype(float) - group["label"].astype(float)).to_numpy()


def _matches(predictions: pd.Series, labels: pd.Series) -> np.ndarray:
    """Equality that treats 1, 1.0 and "1" alike: JSON and label files disagree on number types."""
    p_num, l_num = pd.to_numeric(predictions, errors="coerce"), pd.to_numeric(labels, errors="coerce")
    numeric = (p_num.notna() & l_num.notna()).to_numpy()
    same_number = (p_num.to_numpy(dtype=float) == l_num.to_numpy(dtype=float)) & numeric
    same_text = predictions.astype(str).to_numpy() == labels.astype(str).to_numpy()
    return np.where(numeric, same_number, same_text)


def _estimate(scores: np.ndarray, metric: str, alpha: float) -> tuple[float, float, float]:
    if len(scores) == 0:
        return (math.nan, math.nan, math.nan)
    if metric == "accuracy":
        return (float(scores.mean()), *wilson_interval(int(scores.sum()), len(scores), alpha))
    return (float(scores.mean()), *mean_interval(scores, alpha))


def quality_table(
    joined: pd.DataFrame, metric: str, alpha: float = 0.05, by: list[str] | None = None
) -> pd.DataFrame:
    """The metric per entity (or per `by` keys) with its confidence interval and sample size."""
    rows = []
    for key, group in joined.groupby(by or [ENTITY], sort=True):
        value, low, high = _estimate(_scores(group, metric), metric, alpha)
        keys = dict(zip(by or [ENTITY], key, strict=True))
        rows.append({**keys, "n": len(group), metric: value, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=[*(by or [ENTITY]), "n", metric, "ci_low", "ci_high"])


def _difference(a: np.ndarray, b: np.ndarray, metric: str, alpha: float) -> dict[str, Any]:
    """Challenger minus control: estimate, interval, two-sided p-value, detectable difference."""
    z = stats.norm.ppf(1 - alpha / 2)
    diff = float(b.mean() - a.mean())
    if metric == "accuracy":
        pooled = (a.sum() + b.sum()) / (len(a) + len(b))
        se0 = math.sqrt(pooled * (1 - pooled) * (1 / len(a) + 1 / len(b)))
        p_value = 1.0 if se0 == 0 else float(2 * stats.norm.sf(abs(diff) / se0))
        se = math.sqrt(a.mean() * (1 - a.mean()) / len(a) + b.mean() * (1 - b.mean()) / len(b))
        test = "two-proportion z-test"
    else:
        se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
        p_value = float(stats.ttest_ind(b, a, equal_var=False).pvalue) if se > 0 else 1.0
        test = "Welch t-test"
        se0 = se
    # Smallest true difference this sample would detect with 80 % power.
    detectable = (z + stats.norm.ppf(0.8)) * (se0 if se0 > 0 else se)
    return {
        "difference": diff,
        "diff_ci_low": diff - z * se,
        "diff_ci_high": diff + z * se,
        "p_value": p_value if not math.isnan(p_value) else 1.0,
        "test": test,
        "detectable_difference": detectable,
    }


def compare_quality(joined: pd.DataFrame, metric: str, control: str, alpha: float = 0.05) -> pd.DataFrame:
    """Each challenger against `control`, with Holm-adjusted p-values and a `better` flag."""
    base = _scores(joined[joined[ENTITY] == control], metric)
    rows = []
    for entity in sorted(set(joined[ENTITY]) - {control}):
        other = _scores(joined[joined[ENTITY] == entity], metric)
        if len(base) < 2 or len(other) < 2:
            continue
        rows.append(
            {ENTITY: entity, "control": control, "metric": metric, **_difference(base, other, metric, alpha)}
        )
    comparisons = pd.DataFrame(rows)
    if comparisons.empty:
        return comparisons
    comparisons["p_adjusted"] = holm(comparisons["p_value"].tolist())
    comparisons["significant"] = comparisons["p_adjusted"] < alpha
    sign = 1 if HIGHER_IS_BETTER[metric] else -1
    comparisons["better"] = comparisons["significant"] & (sign * comparisons["difference"] > 0)
    comparisons["worse"] = comparisons["significant"] & (sign * comparisons["difference"] < 0)
    return comparisons


# -- the report --------------------------------------------------------------------------------


@dataclass
class ABReport:
    """Everything `compare_entities` found; `verdict` is the short answer in words."""

    control: str
    summary: pd.DataFrame
    prediction_distribution: pd.DataFrame
    prediction_shift: pd.DataFrame
    metric: str | None
    quality: pd.DataFrame | None
    comparisons: pd.DataFrame | None
    verdict: str

    def __str__(self) -> str:
        return self.verdict

    def __repr__(self) -> str:
        """The verdict and the per-entity table as text (nbconvert, terminals), not the dataclass
        fields with every DataFrame inside."""
        parts = [f"A/B comparison (control: {self.control})", self.verdict, "", self._shown().to_string()]
        if self.quality is not None:
            parts += ["", self.quality.to_string(index=False, float_format=lambda v: f"{v:.4g}")]
        return "\n".join(parts)

    def _shown(self) -> pd.DataFrame:
        """The summary as people read it: rates in %, latencies with "< 1 ms" for the table's zeros."""
        summary = self.summary.copy()
        ttft = [c for c in ("ttft_p50_ms", "ttft_p95_ms") if c in summary]
        for column in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms", *ttft):
            summary[column] = summary[column].map(format_ms)
        summary["error_rate"] = summary["error_rate"].map(lambda v: f"{v:.1%}")
        columns = ["requests", "errors", "error_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms"]
        return summary[columns + ttft]

    def plot(self) -> Any:
        """The comparison as a matplotlib Figure (error rate, latency, quality per entity)."""
        from jupyter_serving.tables.plots import plot_comparison

        return plot_comparison(self)

    def _repr_html_(self) -> str:
        import base64
        import html
        import io

        parts = [f"<p><b>A/B comparison</b> (control: {html.escape(self.control)})</p>"]
        parts += [f"<p>{html.escape(line)}</p>" for line in self.verdict.split("\n")]
        try:
            buffer = io.BytesIO()
            self.plot().savefig(buffer, format="png", dpi=80)
            chart = base64.b64encode(buffer.getvalue()).decode()
            parts.append(f'<img alt="A/B comparison" src="data:image/png;base64,{chart}"/>')
        except ImportError:  # no matplotlib: the verdict and tables alone
            pass
        parts.append(self._shown().to_html())
        if self.quality is not None:
            parts.append(self.quality.to_html(index=False, float_format=lambda v: f"{v:.4g}"))
        return "\n".join(parts)


def default_control(frame: pd.DataFrame) -> str:
    """The entity with the most requests; the first by name among equals."""
    counts = per_request(frame)[ENTITY].dropna().value_counts()
    return str(min(counts.index, key=lambda name: (-counts[name], str(name))))


def format_ms(value: float) -> str:
    """A latency from the table, which stores whole milliseconds (Databricks' schema): 0 there
    means under a millisecond, so it reads "< 1 ms", never a false "0 ms"."""
    if math.isnan(value):
        return "-"
    return "< 1 ms" if value < 1 else f"{value:.0f} ms"


def compare_entities(
    frame: pd.DataFrame,
    labels: pd.DataFrame | pd.Series | Mapping[str, Any] | None = None,
    *,
    control: str | None = None,
    metric: str | None = None,
    label_column: str = "label",
    alpha: float = 0.05,
) -> ABReport:
    """Compare the served entities in an unpacked inference table (see module docstring).

    `control` defaults to the entity that took the most requests (the one in production; ties go
    to the first by name), not to the first name: "challenger" sorts before "champion".
    `metric` is ``"accuracy"`` (class labels) or ``"mae"`` (numeric labels); by default chosen
    from the labels. Shadow rows (mirrored requests) are left out: this compares live traffic;
    `compare_shadow` compares a shadow with the live answers to the same requests.
    """
    if SHADOW_KEY in frame:  # mirrored requests' rows share the live row's id: see compare_shadow
        frame = frame[~frame[SHADOW_KEY].astype(bool)]
    entities = sorted(frame[ENTITY].dropna().unique())
    if not entities:
        raise ValueError("the inference table has no requests with a served entity")
    control = control or default_control(frame)
    if control not in entities:
        raise ValueError(f"control {control!r} is not among the served entities {entities}")
    summary = entity_summary(frame, alpha)
    lines = _operational_verdict(summary, control, alpha)
    quality = comparisons = None
    if labels is not None:
        joined = join_labels(frame, labels, label_column)
        if joined.empty:
            lines.append("No labels matched a logged client_request_id, so quality was not compared.")
        else:
            metric = metric or choose_metric(joined)
            quality = quality_table(joined, metric, alpha)
            comparisons = compare_quality(joined, metric, control, alpha)
            lines.extend(_quality_verdict(quality, comparisons, metric, control, alpha))
    else:
        lines.append("No ground-truth labels given: compared traffic, errors and latency only.")
    return ABReport(
        control=control,
        summary=summary,
        prediction_distribution=prediction_distribution(frame),
        prediction_shift=prediction_shift(frame, control),
        metric=metric if quality is not None else None,
        quality=quality,
        comparisons=comparisons,
        verdict="\n".join(lines),
    )


def compare_shadow(frame: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Live against shadow on the same requests, one row per shadow entity.

    `frame` is `inference_table(path)` of an endpoint that mirrored requests (its `shadow` column
    marks the mirrored rows). Each shadow row is paired with the live row of the same
    `databricks_request_id` and input row; a shadow row whose live row is not in the frame (a
    time window cutting between them) is left out. Columns: `requests` (mirrored requests paired),
    `live_entity` (the live entity that answered most of them), `agreement` (share of input rows
    where both succeeded and every prediction column is equal) with its Wilson interval,
    `live_errors`/`shadow_errors` (requests with status >= 400), and latency percentiles of both
    on those requests (`execution_time_ms`) with the ratio of the medians.
    """
    if SHADOW_KEY not in frame or not frame[SHADOW_KEY].astype(bool).any():
        raise ValueError("the inference table has no shadow rows (no requests were mirrored)")
    is_shadow = frame[SHADOW_KEY].astype(bool)
    key = ["databricks_request_id", "row_index"] if "row_index" in frame else ["databricks_request_id"]
    live, shadow = frame[~is_shadow], frame[is_shadow]
    pairs = shadow.merge(live, on=key, suffixes=("_shadow", "_live"))
    predictions = [c for c in frame if c == "prediction" or str(c).startswith("prediction_")]
    rows = []
    for entity, group in pairs.groupby(f"{ENTITY}_shadow", sort=True):
        ok = (group["status_code_shadow"] < 400) & (group["status_code_live"] < 400)
        same = ok.copy()
        for column in predictions:
            a, b = group[f"{column}_shadow"], group[f"{column}_live"]
            same &= (a == b).fillna(False).astype(bool) | (a.isna() & b.isna())
        agreed, compared = int(same.sum()), int(ok.sum())
        low, high = wilson_interval(agreed, compared, alpha)
        requests = group.drop_duplicates("databricks_request_id")
        live_ms = requests["execution_time_ms_live"].astype(float)
        shadow_ms = requests["execution_time_ms_shadow"].astype(float)
        rows.append(
            {
                "shadow_entity": entity,
                "live_entity": requests[f"{ENTITY}_live"].mode().iloc[0],
                "requests": len(requests),
                "agreement": agreed / compared if compared else math.nan,
                "agreement_ci_low": low,
                "agreement_ci_high": high,
                "live_errors": int((requests["status_code_live"] >= 400).sum()),
                "shadow_errors": int((requests["status_code_shadow"] >= 400).sum()),
                "live_latency_p50_ms": live_ms.quantile(0.50),
                "shadow_latency_p50_ms": shadow_ms.quantile(0.50),
                "live_latency_p95_ms": live_ms.quantile(0.95),
                "shadow_latency_p95_ms": shadow_ms.quantile(0.95),
                "latency_ratio_p50": shadow_ms.quantile(0.50) / live_ms.quantile(0.50)
                if live_ms.quantile(0.50) > 0
                else math.nan,
            }
        )
    return pd.DataFrame(rows).set_index("shadow_entity")


def _operational_verdict(summary: pd.DataFrame, control: str, alpha: float) -> list[str]:
    lines = []
    base = summary.loc[control]
    for entity, row in summary.drop(index=control).iterrows():
        diff = _difference(
            np.r_[np.ones(int(base["errors"])), np.zeros(int(base["requests"] - base["errors"]))],
            np.r_[np.ones(int(row["errors"])), np.zeros(int(row["requests"] - row["errors"]))],
            "accuracy",
            alpha,
        )
        if diff["p_value"] < alpha:
            more = "more" if diff["difference"] > 0 else "less"
            lines.append(
                f"{entity} fails {more} often than {control}: {row['error_rate']:.1%} vs "
                f"{base['error_rate']:.1%} of requests (p = {diff['p_value']:.2g})."
            )
        lines.append(
            f"Latency p50/p95 {entity}: {_p50_p95(row)}, {control}: {_p50_p95(base)} (control: {control})."
        )
        if "ttft_p50_ms" in summary and not (
            math.isnan(row["ttft_p50_ms"]) and math.isnan(base["ttft_p50_ms"])
        ):
            lines.append(
                f"Time to first token p50/p95 {entity}: {_p50_p95(row, 'ttft')}, "
                f"{control}: {_p50_p95(base, 'ttft')}."
            )
    return lines


def _p50_p95(row: pd.Series, measure: str = "latency") -> str:
    return f"{format_ms(row[f'{measure}_p50_ms'])} / {format_ms(row[f'{measure}_p95_ms'])}"


def _fmt(value: float, metric: str) -> str:
    return f"{value:.3f}" if metric == "accuracy" else f"{value:.4g}"


def _with_ci(row: pd.Series, metric: str, level: str) -> str:
    low, high = _fmt(row["ci_low"], metric), _fmt(row["ci_high"], metric)
    return f"{_fmt(row[metric], metric)} ({level} CI {low} to {high}, n={int(row['n'])})"


def _quality_verdict(
    quality: pd.DataFrame, comparisons: pd.DataFrame, metric: str, control: str, alpha: float
) -> list[str]:
    q = quality.set_index(ENTITY)
    if comparisons.empty:
        return [f"Not enough labelled requests per entity to compare {metric} (need at least 2 each)."]
    lines = []
    level = f"{1 - alpha:.0%}"
    for _, c in comparisons.iterrows():
        entity = c[ENTITY]
        values = (
            f"{metric} {_with_ci(q.loc[entity], metric, level)} vs {_with_ci(q.loc[control], metric, level)}"
        )
        evidence = f"{c['test']}, p = {c['p_adjusted']:.2g}"
        if c["better"] or c["worse"]:
            word = "better" if c["better"] else "worse"
            lines.append(
                f"{entity} is {word} than {control}: {values}; the difference of {c['difference']:+.3g} "
                f"({level} CI {c['diff_ci_low']:+.3g} to {c['diff_ci_high']:+.3g}) is statistically "
                f"significant ({evidence})."
            )
        else:
            lines.append(
                f"No significant difference between {entity} and {control}: {values} ({evidence}). "
                f"With this much labelled traffic, a true difference smaller than about "
                f"±{c['detectable_difference']:.2g} would likely go unnoticed."
            )
    return lines


# -- drift -------------------------------------------------------------------------------------


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """Model inputs in an unpacked frame: every column the reader did not add itself."""
    return [c for c in frame.columns if c not in RESERVED and not str(c).startswith("prediction_")]


def split_by_time(frame: pd.DataFrame, at: _dt.datetime | str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(before `at`, from `at` on), for a drift check between two windows."""
    moment = pd.Timestamp(at)
    moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
    before = frame["timestamp"] < moment
    return frame[before], frame[~before]


def split_by_entity(frame: pd.DataFrame, reference: str, current: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    return frame[frame[ENTITY] == reference], frame[frame[ENTITY] == current]


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index over the reference's quantile bins (numeric values)."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        edges = np.array([reference.min() - 0.5, reference.max() + 0.5])
    edges[0], edges[-1] = -np.inf, np.inf
    return _psi_from_counts(np.histogram(reference, edges)[0], np.histogram(current, edges)[0])


def _psi_from_counts(expected: np.ndarray, actual: np.ndarray) -> float:
    # A floor on the shares keeps an empty bin from making the index infinite.
    e = np.maximum(expected / max(expected.sum(), 1), 1e-4)
    a = np.maximum(actual / max(actual.sum(), 1), 1e-4)
    return float(np.sum((a - e) * np.log(a / e)))


def _severity(value: float) -> str:
    return "stable" if value < 0.1 else ("moderate" if value < 0.25 else "major")


def drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    features: list[str] | None = None,
    bins: int = 10,
    psi_threshold: float = 0.2,
) -> pd.DataFrame:
    """Per feature (and the prediction): PSI, a KS (numeric) or chi-square (categorical) test.

    `drifted` is PSI >= `psi_threshold`; `severity` uses the usual bands (< 0.1 stable,
    < 0.25 moderate, else major). Tests are reported but not used for the flag: with a lot of
    traffic they call negligible shifts significant.
    """
    if features is None:
        features = [c for c in feature_columns(reference) if c in current.columns]
        features += ["prediction"] if "prediction" in reference and "prediction" in current else []
    rows = [_drift_row(name, reference[name].dropna(), current[name].dropna(), bins) for name in features]
    out = pd.DataFrame(
        rows, columns=["feature", "kind", "psi", "test", "statistic", "p_value", "n_ref", "n_cur"]
    )
    out["severity"] = out["psi"].map(_severity)
    out["drifted"] = out["psi"] >= psi_threshold
    return out


def _categorical(name: str, ref: pd.Series, cur: pd.Series) -> bool:
    """Strings and booleans are categories; so are a classifier's integer class predictions."""
    if not pd.api.types.is_numeric_dtype(ref) or pd.api.types.is_bool_dtype(ref):
        return True
    if name != "prediction" or not pd.api.types.is_integer_dtype(ref):
        return False
    return pd.concat([ref, cur]).nunique() <= MAX_CLASSES


def _drift_row(name: str, ref: pd.Series, cur: pd.Series, bins: int) -> dict[str, Any]:
    base = {"feature": name, "n_ref": len(ref), "n_cur": len(cur)}
    if len(ref) == 0 or len(cur) == 0:
        return {
            **base,
            "kind": None,
            "psi": math.nan,
            "test": None,
            "statistic": math.nan,
            "p_value": math.nan,
        }
    if _categorical(name, ref, cur):
        categories = sorted(set(ref.astype(str)) | set(cur.astype(str)))
        expected = ref.astype(str).value_counts().reindex(categories, fill_value=0).to_numpy()
        actual = cur.astype(str).value_counts().reindex(categories, fill_value=0).to_numpy()
        statistic, p_value, test = _chi_square(ref, cur)
        return {
            **base,
            "kind": "categorical",
            "psi": _psi_from_counts(expected, actual),
            "test": test,
            "statistic": statistic,
            "p_value": p_value,
        }
    r, c = ref.astype(float).to_numpy(), cur.astype(float).to_numpy()
    with warnings.catch_warnings():  # ties make scipy fall back from the exact to the asymptotic p-value
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ks_2samp(r, c)
    return {
        **base,
        "kind": "numeric",
        "psi": psi(r, c, bins),
        "test": "ks",
        "statistic": float(result.statistic),
        "p_value": float(result.pvalue),
    }
