"""Render a :class:`WeeklyReport` as one self-contained HTML page, Markdown and JSON.

The HTML embeds its figures as base64 PNG and carries its own style sheet, so it opens
offline from a mail attachment. Here (and only here) numbers are rounded for reading, each
measure in one unit across the page (see :mod:`uplift.reports.formats`), and every table is
narrow enough for the page: an estimate shares its cell with its interval, headers wrap.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from uplift.data.files import atomic_path, write_json
from uplift.reports import captions, plots, tables
from uplift.reports.formats import count, money, span
from uplift.reports.results import (
    DEFAULT_WORDS,
    Headline,
    OutcomeWords,
    RiskSources,
    WeeklyReport,
)
from uplift.reports.tables import Column

__all__ = ["headline_cards", "save_report", "to_html", "to_markdown"]

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:980px;
margin:2em auto;padding:0 1em;color:#1d2430;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #e3e7ee;padding-bottom:.2em;
margin-top:1.8em}.sub{color:#5b6575}
.cards{display:flex;gap:1em;flex-wrap:wrap}.card{flex:1 1 200px;background:#f4f6fa;
border-radius:8px;padding:.8em 1em}.card .v{font-size:1.5em;font-weight:600}
.card .ci{display:block;font-size:.6em;font-weight:400;margin-bottom:.3em;white-space:normal}
.card .k{color:#5b6575;font-size:.9em}table{border-collapse:collapse;margin:.6em 0;
font-size:.85em;max-width:100%}th,td{padding:.25em .5em;border-bottom:1px solid #e3e7ee;
text-align:right;vertical-align:top}th{background:#f4f6fa;vertical-align:bottom}
th:first-child,td:first-child,.t{text-align:left}td.t{white-space:nowrap}
.ci{white-space:nowrap;color:#5b6575}.caption{color:#3a4454;margin:.3em 0 1em}
.flag{background:#fde8e8;border-left:4px solid #c0392b;padding:.6em 1em}
.ok{background:#e8f6ec;border-left:4px solid #27ae60;padding:.6em 1em}
img{max-width:100%}li{margin:.3em 0}.wide{overflow-x:auto}
"""


def _td(cell: tables.Cell) -> str:
    if cell.is_text:
        return f"<td class='t'>{html.escape(cell.text)}</td>"
    bounds = f" <span class='ci'>{html.escape(cell.interval)}</span>" if cell.interval else ""
    return f"<td>{html.escape(cell.text)}{bounds}</td>"


def html_table(frame: pd.DataFrame, columns: list[Column], limit: int | None = None) -> str:
    """An HTML table of ``frame`` (first ``limit`` rows) as ``columns`` say."""
    if frame.empty:
        return "<p class='sub'>No rows.</p>"
    shown, rows = tables.view(frame, columns, limit)
    head = "".join(
        f"<th{' class=t' if c.unit == 'text' else ''}>{html.escape(c.header)}</th>" for c in shown
    )
    body = "".join("<tr>" + "".join(_td(c) for c in row) + "</tr>" for row in rows)
    more = (
        f"<p class='sub'>{len(frame) - len(rows)} more rows in report.json.</p>"
        if len(rows) < len(frame)
        else ""
    )
    # The wrapper scrolls only as a last resort: the tables are built to fit the page.
    return (
        f"<div class='wide'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
        f"</table></div>{more}"
    )


def markdown_table(frame: pd.DataFrame, columns: list[Column], limit: int | None = None) -> str:
    """A Markdown pipe table of ``frame`` as ``columns`` say."""
    if frame.empty:
        return "_No rows._"
    shown, rows = tables.view(frame, columns, limit)
    lines = ["| " + " | ".join(c.header for c in shown) + " |", "|" + "---|" * len(shown)]
    lines += [
        "| " + " | ".join(f"{c.text} {c.interval}".rstrip() for c in row) + " |" for row in rows
    ]
    return "\n".join(lines)


def _image(figure: Figure, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{plots.png_base64(figure)}">'


def _caption(text: str) -> str:
    return f"<p class='caption'>{html.escape(text)}</p>"


def _ratio(value: float) -> str:
    return f"{value:,.1f}" if math.isfinite(value) else "–"


def _cards(
    h: Headline, currency: str, words: OutcomeWords
) -> list[tuple[str, str, tuple[str, str]]]:
    """The four headline figures as (label, estimate, (interval's lower, upper end))."""
    return [
        (
            f"{words.kept} revenue protected",
            money(h.retained_revenue_protected, currency),
            (money(h.protected_ci_lower, currency), money(h.protected_ci_upper, currency)),
        ),
        (
            words.avoided,
            count(h.cancellations_avoided),
            (count(h.avoided_ci_lower), count(h.avoided_ci_upper)),
        ),
        ("cost of the interventions", money(h.cost, currency), ("–", "–")),
        (
            "revenue protected per unit spent",
            _ratio(h.return_per_cost),
            (_ratio(h.return_ci_lower), _ratio(h.return_ci_upper)),
        ),
    ]


def headline_cards(
    h: Headline, currency: str = "", words: OutcomeWords = DEFAULT_WORDS
) -> list[tuple[str, str]]:
    """The four headline figures as (label, text) pairs, each with its 95% interval."""
    return [(label, span(value, *bounds)) for label, value, bounds in _cards(h, currency, words)]


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


def _srm_words(report: WeeklyReport) -> str:
    srm = report.srm
    if math.isnan(srm.p_value):
        return (
            "Sample-ratio check: not applicable (the arms' probabilities differ from order to "
            "order, so there is no one design to check the counts against)."
        )
    return f"Sample-ratio check: p = {srm.p_value:.3g} " + (
        "(passed)." if srm.passed else "(FAILED: the arms' sizes do not match the design)."
    )


def _readout_blocks(report: WeeklyReport) -> list[str]:
    words, currency = report.outcome_words, report.currency
    return [
        *_readout_caveat(report),
        f"<p class='{'ok' if report.srm.passed else 'flag'}'>{html.escape(_srm_words(report))}</p>",
        _image(plots.arm_effects_plot(report.arms, words), "arm effects"),
        _caption(captions.arm_caption(report.arms, words)),
        html_table(report.arms, tables.arm_columns(words, currency)),
        "<h3>By segment</h3>",
        _caption(captions.segment_caption(report.segments, words)),
        html_table(report.segments, tables.segment_columns(report.segments), limit=30),
    ]


def _learn_blocks(report: WeeklyReport) -> list[str]:
    css, words = _learn_words(report)
    blocks = [f"<p class='{css}'>{html.escape(words)}</p>"]
    learn = report.learn
    if learn is not None:
        blocks += [
            _image(plots.calibration_plot(learn), "calibration"),
            _caption(captions.calibration_caption(learn.by_arm, learn.threshold_z)),
            html_table(learn.by_arm, tables.learn_columns()),
        ]
    if report.models is not None:
        blocks += [
            f"<p>{html.escape(report.models.reason)}</p>",
            html_table(report.models.table, tables.model_columns(report.currency)),
        ]
    return blocks


def _targeting_blocks(report: WeeklyReport) -> list[str]:
    currency = report.currency
    return [
        _image(plots.qini_plot(report.qini, report.outcome_words), "qini curves"),
        _caption(captions.qini_caption(report.qini_summary)),
        html_table(report.qini_summary, tables.qini_columns(report.qini_summary)),
        _image(plots.policy_value_plot(report.policy_values, currency), "policy value"),
        _caption(captions.policy_value_caption(report.policy_values, currency)),
        html_table(report.policy_values, tables.policy_value_columns(currency)),
    ]


def _drift_blocks(report: WeeklyReport) -> list[str]:
    words = report.outcome_words
    return [
        _image(plots.base_rate_plot(report.base_rates, words), f"base {words.rate}"),
        _caption(captions.drift_caption(report.base_rates, words)),
        html_table(report.base_rates, tables.base_rate_columns(words)),
        "<h3>Order mix, largest changes against last week</h3>",
        html_table(tables.mix_text(report.mix), tables.mix_columns(), limit=12),
    ]


def _section_blocks(report: WeeklyReport) -> list[tuple[str, list[str]]]:
    """The report's sections as (title, HTML blocks)."""
    blocks: list[tuple[str, list[str]]] = [
        (
            "What to change",
            ["<ul>" + "".join(f"<li>{html.escape(a.text)}</li>" for a in report.actions) + "</ul>"]
            if report.actions
            else ["<p>No change recommended this week.</p>"],
        ),
        ("The policy against its holdout", _policy_blocks(report)),
        *([("Where the risk comes from", _risk_blocks(report))] if report.risk else []),
        ("Experiment readout", _readout_blocks(report)),
        ("Learn: did last week's predictions hold?", _learn_blocks(report)),
        ("The loop over time", _loop_blocks(report)),
        ("Targeting: Qini curves and policy value", _targeting_blocks(report)),
        ("Capacity and shadow prices", _capacity_blocks(report)),
        ("Drift", _drift_blocks(report)),
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
    currency = report.currency
    return (
        f"The orders the policy acted on ({total['acted']:,.0f}) kept "
        f"{money(total['protected'], currency)} more net value than its holdout predicts they "
        f"would have without action ({money(total['protected_ci_lower'], currency)} to "
        f"{money(total['protected_ci_upper'], currency)}), about {total['orders_saved']:,.0f} "
        "orders. Each arm compares the orders given it with the held-out orders the policy "
        f"intended it for.{unmeasured}"
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
        blocks.append(html_table(report.policy, tables.policy_columns(report.currency)))
    if not report.compliance.empty:
        blocks += [
            "<h3>Compliance with the queue</h3>",
            html_table(report.compliance, tables.compliance_columns()),
        ]
    return blocks


def _risk_words(risk: RiskSources, words: OutcomeWords) -> str:
    """What the section's risk and cause are, and which model scored the orders."""
    said = (
        f"An order's risk is the {words.rate} that model {risk.model_id}'s risk model predicts "
        "for it without action; its cause is the family of signals (payment, stock, "
        "fulfilment, serviceability, confidence, other) that raises its risk most above an "
        "average order's (none: no family does). Revenue at risk is order value x risk."
    )
    if risk.last_week:
        said += (
            f" Last week's orders ({risk.last_week}) are scored by the same model, so a change "
            "of shares is a change of the orders, not of the model."
        )
    return f"{said} {risk.model_note}".rstrip()


def _risk_blocks(report: WeeklyReport) -> list[str]:
    risk, words, currency = report.risk, report.outcome_words, report.currency
    if risk is None:
        return []
    return [
        f"<p>{html.escape(_risk_words(risk, words))}</p>",
        _image(plots.risk_sources_plot(risk), "risk by cause"),
        _caption(captions.risk_source_caption(risk, currency)),
        html_table(risk.causes, tables.risk_cause_columns(currency)),
        "<h3>What the arms did for each cause's orders</h3>",
        _caption(captions.risk_effect_caption(risk, words, currency)),
        html_table(risk.effects, tables.risk_effect_columns(words, currency, risk.basis)),
        "<h3>Is the risk calibrated?</h3>",
        _image(plots.risk_calibration_plot(risk, words), "risk calibration"),
        _caption(captions.risk_calibration_caption(risk, words)),
    ]


def _markdown_risk(report: WeeklyReport) -> list[str]:
    risk, words, currency = report.risk, report.outcome_words, report.currency
    if risk is None:
        return []
    return [
        "## Where the risk comes from",
        "",
        _risk_words(risk, words),
        "",
        captions.risk_source_caption(risk, currency),
        "",
        markdown_table(risk.causes, tables.risk_cause_columns(currency)),
        "",
        captions.risk_effect_caption(risk, words, currency),
        "",
        markdown_table(risk.effects, tables.risk_effect_columns(words, currency, risk.basis)),
        "",
        captions.risk_calibration_caption(risk, words),
        "",
    ]


def _loop_blocks(report: WeeklyReport) -> list[str]:
    loop, currency = report.loop, report.currency
    if loop.empty or loop["protected"].isna().all():
        return ["<p class='sub'>No week of the loop has been decided by the policy yet.</p>"]
    blocks = [
        _image(plots.loop_plot(loop, currency), "loop over time"),
        _caption(captions.loop_caption(loop, currency)),
        html_table(loop, tables.loop_columns(currency)),
    ]
    if "oracle_value" in loop.columns:
        blocks += [
            "<h3>Against the simulation's truth</h3>",
            "<p class='sub'>Only a simulation knows every order's true effects: this panel "
            "shows what the decisions were truly worth next to the oracle's allocation with the "
            "same capacities.</p>",
            _image(plots.truth_plot(loop, currency), "truth"),
            _caption(captions.truth_caption(loop, currency)),
        ]
    return blocks


def _capacity_blocks(report: WeeklyReport) -> list[str]:
    capacity, currency = report.capacity, report.currency
    if capacity.empty:
        return ["<p class='sub'>No queue was ranked this week.</p>"]
    return [
        _image(plots.capacity_plot(capacity, currency), "capacity"),
        _caption(captions.capacity_caption(capacity, currency)),
        html_table(capacity, tables.capacity_columns(currency)),
    ]


def _card(label: str, value: str, bounds: tuple[str, str]) -> str:
    ci = f"({bounds[0]} to {bounds[1]})" if "–" not in bounds else ""
    shown = f"<span class='ci'>{html.escape(ci)}</span>" if ci else ""
    return (
        f"<div class='card'><div class='v'>{html.escape(value)}{shown}</div>"
        f"<div class='k'>{html.escape(label)}</div></div>"
    )


def to_html(report: WeeklyReport) -> str:
    """The report as one self-contained HTML page."""
    h = report.headline
    cards = "".join(_card(*card) for card in _cards(h, report.currency, report.outcome_words))
    unit = f" Money is in {report.currency}." if report.currency else ""
    body = [
        f"<h1>Uplift report, week {html.escape(report.week)}</h1>",
        f"<p class='sub'>{h.orders:,} orders, {h.treated_orders:,} treated, "
        f"{h.holdout_orders:,} in the holdout; written {html.escape(report.created_at)}. "
        f"Intervals are 95%.{html.escape(unit)}</p>",
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


def _markdown_learn(report: WeeklyReport) -> list[str]:
    lines = ["## Learn", "", _learn_words(report)[1], ""]
    if report.learn is not None:
        lines += [markdown_table(report.learn.by_arm, tables.learn_columns()), ""]
    if report.models is not None:
        table = markdown_table(report.models.table, tables.model_columns(report.currency))
        lines += [report.models.reason, "", table, ""]
    return lines


def to_markdown(report: WeeklyReport) -> str:
    """The report as Markdown text (tables and the sentences under the charts, no figures)."""
    words, currency = report.outcome_words, report.currency
    lines = [f"# Uplift report, week {report.week}", ""]
    lines += [f"- **{k}**: {v}" for k, v in headline_cards(report.headline, currency, words)]
    lines += ["", "## What to change", ""]
    lines += [f"- {a.text}" for a in report.actions] or ["No change recommended this week."]
    lines += ["", "## Experiment readout", "", _srm_words(report), ""]
    lines += [captions.arm_caption(report.arms, words), ""]
    lines += [markdown_table(report.arms, tables.arm_columns(words, currency)), ""]
    lines += [captions.segment_caption(report.segments, words), ""]
    lines += [
        markdown_table(report.segments, tables.segment_columns(report.segments), limit=30),
        "",
    ]
    lines += ["## The policy against its holdout", "", _policy_words(report), ""]
    if not report.policy.empty:
        lines += [markdown_table(report.policy, tables.policy_columns(currency)), ""]
    if not report.compliance.empty:
        lines += [markdown_table(report.compliance, tables.compliance_columns()), ""]
    lines += _markdown_risk(report)
    lines += _markdown_learn(report)
    if not report.loop.empty:
        lines += ["## The loop over time", "", captions.loop_caption(report.loop, currency), ""]
        lines += [markdown_table(report.loop, tables.loop_columns(currency)), ""]
    lines += ["## Policy value", "", captions.policy_value_caption(report.policy_values, currency)]
    lines += ["", markdown_table(report.policy_values, tables.policy_value_columns(currency)), ""]
    lines += ["## Capacity", "", markdown_table(report.capacity, tables.capacity_columns(currency))]
    lines += ["", "## Drift", "", captions.drift_caption(report.base_rates, words), ""]
    lines += [markdown_table(report.base_rates, tables.base_rate_columns(words)), ""]
    lines += [markdown_table(tables.mix_text(report.mix), tables.mix_columns(), limit=12), ""]
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
