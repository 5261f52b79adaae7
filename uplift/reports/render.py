"""Render a :class:`WeeklyReport` as one self-contained HTML page, Markdown and JSON.

The HTML embeds its figures as base64 PNG and carries its own style sheet, so it opens
offline from a mail attachment. Here (and only here) numbers are rounded for reading.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from uplift.data.files import atomic_path, write_json
from uplift.reports import plots
from uplift.reports.results import Headline, WeeklyReport

__all__ = ["headline_cards", "save_report", "to_html", "to_markdown"]

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:980px;
margin:2em auto;padding:0 1em;color:#1d2430;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #e3e7ee;padding-bottom:.2em;
margin-top:1.8em}.sub{color:#5b6575}
.cards{display:flex;gap:1em;flex-wrap:wrap}.card{flex:1 1 200px;background:#f4f6fa;
border-radius:8px;padding:.8em 1em}.card .v{font-size:1.5em;font-weight:600}
.card .k{color:#5b6575;font-size:.9em}table{border-collapse:collapse;margin:.6em 0;
font-size:.88em}th,td{padding:.25em .6em;border-bottom:1px solid #e3e7ee;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f4f6fa}
.flag{background:#fde8e8;border-left:4px solid #c0392b;padding:.6em 1em}
.ok{background:#e8f6ec;border-left:4px solid #27ae60;padding:.6em 1em}
img{max-width:100%}li{margin:.3em 0}.wide{overflow-x:auto}
"""

Formatter = Callable[[object], str]


def _number(value: object, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def money(value: float) -> str:
    """A currency amount for reading: thousands separated, no decimals."""
    return _number(value) if not math.isfinite(value) else f"{value:,.0f}"


#: Columns shown as percentages: shares of orders and differences of them.
PERCENT = frozenset(
    {"retention", "uplift", "ci_lower", "ci_upper", "predicted", "measured", "se", "cancel_rate"}
    | {"uplift_ci_lower", "uplift_ci_upper", "predicted_uplift", "delivered"}
)
#: Columns of the arm table on the page (report.json has them all).
ARM_COLUMNS = (
    "arm", "orders", "retention", "uplift", "ci_lower", "ci_upper", "p_value",
    "protected", "cost", "net_value", "net_ci_lower", "net_ci_upper",
)  # fmt: skip


def _percent(value: object) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.2%}"
    return _number(value)


def _cells(frame: pd.DataFrame, percent: frozenset[str]) -> list[list[str]]:
    formats = [_percent if c in percent else _number for c in frame.columns]
    return [
        [fmt(v) for fmt, v in zip(formats, row, strict=True)]
        for row in frame.astype(object).itertuples(index=False)
    ]


def html_table(frame: pd.DataFrame, limit: int | None = None, percent: bool = False) -> str:
    """An HTML table of ``frame`` (first ``limit`` rows), numbers rounded for reading.

    With ``percent``, the columns named in :data:`PERCENT` are shown as percentages.
    """
    if frame.empty:
        return "<p class='sub'>No rows.</p>"
    shown = frame if limit is None else frame.head(limit)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
        for row in _cells(shown, PERCENT if percent else frozenset())
    )
    more = (
        f"<p class='sub'>{len(frame) - len(shown)} more rows in report.json.</p>"
        if len(shown) < len(frame)
        else ""
    )
    return (
        f"<div class='wide'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
        f"</table></div>{more}"
    )


def markdown_table(frame: pd.DataFrame, limit: int | None = None, percent: bool = False) -> str:
    """A Markdown pipe table of ``frame``, numbers rounded for reading."""
    if frame.empty:
        return "_No rows._"
    shown = frame if limit is None else frame.head(limit)
    lines = [
        "| " + " | ".join(map(str, shown.columns)) + " |",
        "|" + "---|" * len(shown.columns),
    ]
    lines += [
        "| " + " | ".join(row) + " |" for row in _cells(shown, PERCENT if percent else frozenset())
    ]
    return "\n".join(lines)


def _image(figure: Figure, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{plots.png_base64(figure)}">'


def headline_cards(h: Headline) -> list[tuple[str, str]]:
    """The four headline figures as (label, text) pairs."""
    rpc = "–" if not math.isfinite(h.return_per_cost) else f"{h.return_per_cost:,.1f}"
    return [
        (
            "retained revenue protected",
            f"{money(h.retained_revenue_protected)}"
            f" ({money(h.protected_ci_lower)} to {money(h.protected_ci_upper)})",
        ),
        (
            "cancellations avoided",
            f"{h.cancellations_avoided:,.0f}"
            f" ({h.avoided_ci_lower:,.0f} to {h.avoided_ci_upper:,.0f})",
        ),
        ("cost of the interventions", money(h.cost)),
        ("revenue protected per unit spent", rpc),
    ]


def _learn_words(report: WeeklyReport) -> tuple[str, str]:
    """(css class, sentence) saying whether last week's predictions held."""
    learn = report.learn
    if learn is None:
        return "sub", "No model was in place last week, so there are no predictions to check."
    if learn.flagged:
        arms = ", ".join(learn.by_arm.loc[learn.by_arm["flagged"], "arm"])
        return "flag", (
            f"Predictions of model {learn.model_id} disagree with the holdout for {arms}: "
            "measured uplift lies outside what noise explains. The world may have drifted; "
            "trust this week's readout over the model and check the challenger below."
        )
    return "ok", (
        f"Predictions of model {learn.model_id} agree with the holdout: no arm's predicted "
        "uplift is further from the measured one than the noise of both explains "
        f"(|z| < {learn.threshold_z:.2f} for every arm)."
    )


def _section_blocks(report: WeeklyReport) -> list[tuple[str, list[str]]]:
    """The report's sections as (title, HTML blocks)."""
    css, words = _learn_words(report)
    learn: list[str] = [f"<p class='{css}'>{html.escape(words)}</p>"]
    if report.learn is not None:
        learn += [
            _image(plots.calibration_plot(report.learn), "calibration"),
            html_table(report.learn.by_arm, percent=True),
        ]
    if report.models is not None:
        learn += [
            f"<p>{html.escape(report.models.reason)}</p>",
            html_table(report.models.table),
        ]
    srm = report.srm
    srm_words = f"Sample-ratio check: p = {srm.p_value:.3g} " + (
        "(passed)." if srm.passed else "(FAILED: the arms' sizes do not match the design)."
    )
    if math.isnan(srm.p_value):
        srm_words = (
            "Sample-ratio check: not applicable (the arms' probabilities differ from order to "
            "order, so there is no one design to check the counts against)."
        )
    blocks: list[tuple[str, list[str]]] = [
        (
            "What to change",
            ["<ul>" + "".join(f"<li>{html.escape(a.text)}</li>" for a in report.actions) + "</ul>"]
            if report.actions
            else ["<p>No change recommended this week.</p>"],
        ),
        ("The policy against its holdout", _policy_blocks(report)),
        (
            "Experiment readout",
            [
                *_readout_caveat(report),
                f"<p class='{'ok' if srm.passed else 'flag'}'>{html.escape(srm_words)}</p>",
                _image(plots.arm_effects_plot(report.arms), "arm effects"),
                html_table(report.arms[list(ARM_COLUMNS)], percent=True),
                "<h3>By segment</h3>",
                html_table(report.segments, limit=30, percent=True),
            ],
        ),
        ("Learn: did last week's predictions hold?", learn),
        ("The loop over time", _loop_blocks(report)),
        (
            "Targeting: Qini curves and policy value",
            [
                _image(plots.qini_plot(report.qini), "qini curves"),
                html_table(report.qini_summary),
                _image(plots.policy_value_plot(report.policy_values), "policy value"),
                html_table(report.policy_values),
            ],
        ),
        ("Capacity and shadow prices", _capacity_blocks(report)),
        (
            "Drift",
            [
                _image(plots.base_rate_plot(report.base_rates), "base cancellation rate"),
                html_table(report.base_rates, percent=True),
                "<h3>Order mix, largest changes against last week</h3>",
                html_table(report.mix, limit=12),
            ],
        ),
    ]
    if report.notes:
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes)
        blocks.append(("Notes", [f"<ul>{notes}</ul>"]))
    return blocks


def _policy_words(report: WeeklyReport) -> str:
    """One sentence: what the policy's decisions protected against its holdout."""
    if report.policy.empty:
        return (
            "This week's arms were not decided by a stored queue (a randomised test, or the "
            "first weeks of the loop), so there is no policy to read out against its holdout."
        )
    total = report.policy.iloc[-1]
    arms = report.policy.iloc[:-1]
    small = arms[arms["protected"].isna()]
    unmeasured = "".join(
        f" {row.arm} ({row.acted:,.0f} acted, {row.held:,.0f} held out) had too few orders to "
        "measure and is left out."
        for row in small.itertuples()
    )
    return (
        f"The orders the policy acted on ({total['acted']:,.0f}) kept "
        f"{money(total['protected'])} more net value than its holdout predicts they would have "
        f"without action ({money(total['protected_ci_lower'])} to "
        f"{money(total['protected_ci_upper'])}), about {total['orders_saved']:,.0f} orders. "
        "Each arm compares the orders given it with the held-out orders the policy intended "
        f"it for.{unmeasured}"
    )


def _readout_caveat(report: WeeklyReport) -> list[str]:
    """In a week the policy decided, say how the per-arm readout below is to be read."""
    if report.policy.empty:
        return []
    words = (
        "This week's arms were decided by the policy, not drawn at random: each arm is compared "
        "with control over all orders by inverse-propensity weighting, which leans on the few "
        "orders explored or held out. Its intervals are wide; the policy's own readout above is "
        "the measure of what its decisions did."
    )
    return [f"<p class='sub'>{html.escape(words)}</p>"]


def _policy_blocks(report: WeeklyReport) -> list[str]:
    blocks = [f"<p>{html.escape(_policy_words(report))}</p>"]
    if not report.policy.empty:
        blocks.append(html_table(report.policy, percent=True))
    if not report.compliance.empty:
        blocks += ["<h3>Compliance with the queue</h3>", html_table(report.compliance)]
    return blocks


def _loop_blocks(report: WeeklyReport) -> list[str]:
    loop = report.loop
    if loop.empty or loop["protected"].isna().all():
        return ["<p class='sub'>No week of the loop has been decided by the policy yet.</p>"]
    blocks = [_image(plots.loop_plot(loop), "loop over time"), html_table(loop)]
    if "oracle_value" in loop.columns:
        blocks += [
            "<h3>Against the simulation's truth</h3>",
            "<p class='sub'>Only a simulation knows every order's true effects: this panel "
            "shows what the decisions were truly worth next to the oracle's allocation with the "
            "same capacities.</p>",
            _image(plots.truth_plot(loop), "truth"),
        ]
    return blocks


def _capacity_blocks(report: WeeklyReport) -> list[str]:
    if report.capacity.empty:
        return ["<p class='sub'>No queue was ranked this week.</p>"]
    return [_image(plots.capacity_plot(report.capacity), "capacity"), html_table(report.capacity)]


def to_html(report: WeeklyReport) -> str:
    """The report as one self-contained HTML page."""
    cards = "".join(
        f"<div class='card'><div class='v'>{html.escape(v)}</div><div class='k'>"
        f"{html.escape(k)}</div></div>"
        for k, v in headline_cards(report.headline)
    )
    h = report.headline
    body = [
        f"<h1>Uplift report, week {html.escape(report.week)}</h1>",
        f"<p class='sub'>{h.orders:,} orders, {h.treated_orders:,} treated, "
        f"{h.holdout_orders:,} in the holdout; written {html.escape(report.created_at)}. "
        "Intervals are 95%.</p>",
        f"<div class='cards'>{cards}</div>",
    ]
    for title, blocks in _section_blocks(report):
        body.append(f"<h2>{html.escape(title)}</h2>")
        body.extend(blocks)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Uplift report {html.escape(report.week)}</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    )


def to_markdown(report: WeeklyReport) -> str:
    """The report as Markdown text (tables, no figures)."""
    lines = [f"# Uplift report, week {report.week}", ""]
    lines += [f"- **{k}**: {v}" for k, v in headline_cards(report.headline)]
    lines += ["", "## What to change", ""]
    lines += [f"- {a.text}" for a in report.actions] or ["No change recommended this week."]
    srm = report.srm
    lines += ["", "## Experiment readout", "", f"Sample-ratio check p = {srm.p_value:.3g}", ""]
    lines += [markdown_table(report.arms[list(ARM_COLUMNS)], percent=True), ""]
    lines += ["## The policy against its holdout", "", _policy_words(report), ""]
    if not report.policy.empty:
        lines += [markdown_table(report.policy, percent=True), ""]
    if not report.compliance.empty:
        lines += [markdown_table(report.compliance), ""]
    lines += ["## Learn", "", _learn_words(report)[1], ""]
    if report.learn is not None:
        lines += [markdown_table(report.learn.by_arm, percent=True), ""]
    if report.models is not None:
        lines += [report.models.reason, "", markdown_table(report.models.table), ""]
    if not report.loop.empty:
        lines += ["## The loop over time", "", markdown_table(report.loop), ""]
    lines += ["## Policy value", "", markdown_table(report.policy_values), ""]
    lines += ["## Capacity", "", markdown_table(report.capacity), ""]
    lines += ["## Drift", "", markdown_table(report.base_rates, percent=True), ""]
    lines += [markdown_table(report.mix, limit=12), ""]
    lines += [f"- {n}" for n in report.notes]
    return "\n".join(lines).rstrip() + "\n"


def _write_text(text: str, path: Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def save_report(report: WeeklyReport, folder: str | Path) -> dict[str, Path]:
    """Write ``index.html``, ``report.md`` and ``report.json`` into ``folder``, atomically."""
    folder = Path(folder)
    return {
        "html": _write_text(to_html(report), folder / "index.html"),
        "markdown": _write_text(to_markdown(report), folder / "report.md"),
        "json": write_json(report.to_dict(), folder / "report.json"),
    }
