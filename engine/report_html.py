"""The HTML report: one self-contained page drawn from the report dict (`Report.as_json()`).

The page needs no network: CSS and JavaScript are inline, fonts are the system's, and the charts
are SVG drawn in the browser by a small vanilla script from the report data, which is embedded as
JSON in `<script type="application/json" id="report-data">`. The tables are rendered here with
Jinja2's autoescaping, so operator text (rule names, variant names) can never become markup.

Every chart is an `<svg data-chart="NAME">`; once drawn it carries `data-drawn="N"`, the number
of marks drawn (bar groups, funnel bars, interval markers, heatmap cells, points), and a chart
with nothing to draw shows a "no data" message and `data-drawn="0"`.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Mapping

from jinja2 import Environment
from markupsafe import Markup

_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                 "\u2028": "\\u2028", "\u2029": "\\u2029"}


def embed_json(data: Mapping[str, Any]) -> Markup:
    """`data` as JSON that is safe inside a `<script>` element: no `</script>`, no `<!--`."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    for raw, escaped in _JSON_ESCAPES.items():
        text = text.replace(raw, escaped)
    return Markup(text)


def count(value: Any) -> str:
    """An integer with thousands separators; a dash for a missing figure."""
    if value is None or value == "":
        return "—"
    return f"{value:,}" if isinstance(value, int) else str(value)


def percent(value: Any, digits: int = 1) -> str:
    return "—" if value is None else f"{float(value) * 100:.{digits}f}%"


def points(value: Any) -> str:
    """A difference of proportions in percentage points, with its sign."""
    return "—" if value is None else f"{float(value) * 100:+.1f} pp"


def p_value(value: Any) -> str:
    if value is None:
        return "—"
    return "< 0.001" if float(value) < 0.001 else f"{float(value):.3f}"


def moment(value: Any) -> str:
    """An ISO timestamp as `2026-11-20 10:00 (+08:00)`; anything else as it is."""
    try:
        t = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value or "")
    offset = t.strftime("%z")
    zone = f" ({offset[:3]}:{offset[3:]})" if offset else ""
    return t.strftime("%Y-%m-%d %H:%M") + zone


def _rule_rows(rules: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in rules:
        suppressed = dict(r.get("suppressed") or {})
        users = sum(g.get("users") or 0 for g in r.get("groups") or [])
        conversions = r.get("conversions")
        rows.append({**r, "suppressed_total": sum(suppressed.values()),
                     "suppressed_items": sorted(suppressed.items(), key=lambda kv: -kv[1]),
                     "conversion_rate": (conversions / users if conversions is not None and users
                                         else None)})
    return rows


def _reasons(rules: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Suppressions by reason over all rules, largest first, with the rules that had them."""
    totals: dict[str, int] = {}
    by_rule: dict[str, list[tuple[str, int]]] = {}
    for r in rules:
        for reason, n in (r.get("suppressed") or {}).items():
            if n:
                totals[reason] = totals.get(reason, 0) + n
                by_rule.setdefault(reason, []).append((str(r.get("name") or r.get("id")), n))
    whole = sum(totals.values())
    return [{"reason": reason, "count": n, "share": n / whole if whole else None,
             "rules": sorted(by_rule[reason], key=lambda kv: -kv[1])}
            for reason, n in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))]


def _uplifts(rules: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{**u, "rule": r.get("name") or r.get("id"), "rule_id": r.get("id"),
             "winner": r.get("winner") == u.get("variant")}
            for r in rules for u in (r.get("uplift") or [])]


_env: Environment | None = None


def _environment() -> Environment:
    global _env
    if _env is None:
        _env = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
        _env.filters.update(count=count, percent=percent, points=points, p_value=p_value,
                            moment=moment)
    return _env


def render_html(data: Mapping[str, Any]) -> str:
    """The whole report as one HTML5 page (UTF-8, no external resources)."""
    rules = list(data.get("rules") or [])
    activity = data.get("activity") or {}
    page = _environment().from_string(PAGE)
    return page.render(data=data, rules=_rule_rows(rules), reasons=_reasons(rules),
                       uplifts=_uplifts(rules), totals=data.get("totals") or {},
                       activity=activity, css=Markup(CSS), js=Markup(SCRIPT),
                       payload=embed_json(data))


PAGE = """<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light">
<title>再来 Zailai report · {{ data.at | moment }}</title>
<style>{{ css }}</style>
</head>
<body>
{% macro figures(rows, empty) %}
{% if rows %}
  <div class="scroll"><table class="figures">
{{ caller() }}
  </table></div>
{% else %}
  <p class="no-data">{{ empty }}</p>
{% endif %}
{% endmacro %}
<header class="masthead">
  <p class="brand">再来 Zailai</p>
  <h1>Campaign report</h1>
  <p class="period">{{ data.since | moment }} → {{ data.at | moment }}
    <span class="tz">{{ data.timezone }}</span></p>
</header>
<main>
<section class="kpis" aria-label="Totals">
{% for key, label in [("matched", "matched"), ("fired", "fired"), ("sent", "sent"),
                      ("suppressed", "suppressed"), ("failed", "failed"),
                      ("unknown", "unknown"), ("conversions", "conversions")] %}
  <div class="kpi kpi-{{ key }}"><span class="kpi-value">{{ totals[key] | count }}</span>
    <span class="kpi-label">{{ label }}</span></div>
{% endfor %}
  <div class="kpi kpi-activity"><span class="kpi-value">{{ activity.dau | count }}</span>
    <span class="kpi-label">DAU · WAU {{ activity.wau | count }} · MAU {{ activity.mau | count }}</span></div>
</section>

<section class="card wide">
  <h2>Sends and suppressions per day</h2>
  <p class="note">Every message a rule fired, by outcome, and every user a rule matched but did
    not message, by suppression reason. Local dates ({{ data.timezone }}).</p>
  <div class="legend" data-legend-for="daily"></div>
  <svg class="chart" data-chart="daily" role="img" aria-label="Sends and suppressions per day"></svg>
</section>

<div class="pair">
<section class="card">
  <h2>Funnel per rule</h2>
  <p class="note">matched → fired (deferred included) → sent → converted (the goal event within
    the goal's window; converted counts holdout users too).</p>
  <div class="legend" data-legend-for="funnel"></div>
  <svg class="chart" data-chart="funnel" role="img" aria-label="Funnel per rule"></svg>
</section>
<section class="card">
  <h2>Conversion by group</h2>
  <p class="note">Conversion rate per variant and holdout with its 95% Wilson score interval, for
    rules with a goal. ★ marks a significant winner.</p>
  <svg class="chart" data-chart="conversion" role="img" aria-label="Conversion rate by group"></svg>
</section>
</div>

<div class="pair">
<section class="card">
  <h2>Retention cohorts</h2>
  <p class="note">Users by signup week (local Monday) active again on day 1 (次日), day 7 (7日)
    and day 30 (30日). Hatched: that day is not complete yet.</p>
  <svg class="chart" data-chart="cohorts" role="img" aria-label="Retention cohort heatmap"></svg>
</section>
<section class="card">
  <h2>Daily active users</h2>
  <p class="note">Users with any event on each local day.</p>
  <svg class="chart" data-chart="activity" role="img" aria-label="Daily active users"></svg>
</section>
</div>

<section class="card wide">
  <h2>Rules</h2>
{% call figures(rules, "No rules in this report.") %}
    <thead><tr><th class="left">rule</th><th>matched</th><th>fired</th><th>deferred</th>
      <th>suppressed</th><th>sent</th><th>failed</th><th>unknown</th><th>pending</th>
      <th>conversions</th><th title="converted users / users reached, all groups">rate</th>
      <th class="left">goal</th></tr></thead>
    <tbody>
{% for r in rules %}
      <tr><td class="left"><span class="rule-name">{{ r.name or r.id }}</span>
          <span class="rule-id">{{ r.id }}{% if r.category %} · {{ r.category }}{% endif %}</span></td>
        <td>{{ r.matched | count }}</td><td>{{ r.fired | count }}</td>
        <td>{{ r.deferred | count }}</td>
        <td title="{% for k, v in r.suppressed_items %}{{ k }} {{ v }}{% if not loop.last %}, {% endif %}{% endfor %}">{{ r.suppressed_total | count }}</td>
        <td>{{ r.sent | count }}</td><td>{{ r.failed | count }}</td>
        <td>{{ r.unknown | count }}</td><td>{{ r.pending | count }}</td>
        <td>{{ r.conversions | count }}</td><td>{{ r.conversion_rate | percent }}</td>
        <td class="left goal">{% if r.goal %}{{ r.goal.event }} within {{ r.goal.within }}{% else %}<span class="muted">no goal</span>{% endif %}</td></tr>
{% endfor %}
    </tbody>
{% endcall %}
</section>

<div class="pair">
<section class="card">
  <h2>Suppressions by reason</h2>
{% call figures(reasons, "No suppressions in this period.") %}
    <thead><tr><th class="left">reason</th><th>users</th><th>share</th><th class="left">rules</th></tr></thead>
    <tbody>
{% for s in reasons %}
      <tr><td class="left"><code>{{ s.reason }}</code></td><td>{{ s.count | count }}</td>
        <td>{{ s.share | percent }}</td>
        <td class="left small">{% for name, n in s.rules %}{{ name }} {{ n | count }}{% if not loop.last %} · {% endif %}{% endfor %}</td></tr>
{% endfor %}
    </tbody>
{% endcall %}
</section>
<section class="card">
  <h2>Uplift against holdout</h2>
{% call figures(uplifts, "No rule with a holdout has conversions to compare yet.") %}
    <thead><tr><th class="left">rule</th><th class="left">variant</th>
      <th>uplift · 95% interval</th><th>p</th><th>significant</th></tr></thead>
    <tbody>
{% for u in uplifts %}
      <tr{% if u.significant %} class="significant"{% endif %}><td class="left">{{ u.rule }}</td>
        <td class="left">{{ u.variant }}{% if u.winner %} <span class="winner" title="winner">★</span>{% endif %}
          <span class="muted">vs {{ u.vs }}</span></td>
        <td>{{ u.difference | points }}
{% if u.low is not none and u.high is not none %}
          <span class="interval">[{{ u.low | points }}, {{ u.high | points }}]</span>
{% endif %}
        </td>
        <td>{{ u.p_value | p_value }}</td><td>{{ "yes" if u.significant else "no" }}</td></tr>
{% endfor %}
    </tbody>
{% endcall %}
  <p class="note">Uplift: difference of conversion rates, 95% Newcombe hybrid score interval,
    two-sided pooled two-proportion z-test, significant when p &lt; 0.05. A winner beats every
    other variant in pairwise z-tests, Holm–Bonferroni adjusted at 0.05.</p>
</section>
</div>
</main>
<footer>Generated by <code>engine report</code> at {{ data.at | moment }} ({{ data.timezone }}).
  Figures cover {{ data.since | moment }} to {{ data.at | moment }}.</footer>
<script type="application/json" id="report-data">{{ payload }}</script>
<script>{{ js }}</script>
</body>
</html>
"""

CSS = """
:root {
  color-scheme: light;
  --ink: #1d2430; --muted: #5b6675; --faint: #8a94a3; --line: #e3e7ec; --paper: #ffffff;
  --page: #f5f6f8; --accent: #2f6fb5; --good: #2f7d5b; --bad: #c8423b;
  font-family: -apple-system, BlinkMacSystemFont, "Segoe UI", "PingFang SC", "Hiragino Sans GB",
    "Microsoft YaHei", "Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Micro Hei",
    Roboto, "Helvetica Neue", Arial, sans-serif;
  font-size: 15px; line-height: 1.5; color: var(--ink); background: var(--page);
}
* { box-sizing: border-box; }
body { margin: 0; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
  font-size: 0.88em; }
.masthead, main, footer { max-width: 1180px; margin: 0 auto; padding: 0 24px; }
.masthead { padding-top: 28px; padding-bottom: 8px; }
.brand { margin: 0; color: var(--accent); font-weight: 600; letter-spacing: 0.04em; }
h1 { margin: 2px 0 4px; font-size: 28px; font-weight: 650; letter-spacing: -0.01em; }
h2 { margin: 0 0 4px; font-size: 17px; font-weight: 620; }
.period { margin: 0; color: var(--muted); font-variant-numeric: tabular-nums; }
.tz { margin-left: 6px; padding: 1px 8px; border-radius: 10px; background: #e8eef6;
  color: var(--accent); font-size: 13px; }
.kpis { display: grid; grid-template-columns: repeat(auto-fit, minmax(118px, 1fr)); gap: 10px;
  margin: 18px 0; }
.kpi { background: var(--paper); border: 1px solid var(--line); border-radius: 10px;
  padding: 10px 14px; }
.kpi-value { display: block; font-size: 22px; font-weight: 650; font-variant-numeric: tabular-nums; }
.kpi-label { color: var(--muted); font-size: 13px; }
.kpi-sent .kpi-value { color: var(--good); }
.kpi-failed .kpi-value { color: var(--bad); }
.card { background: var(--paper); border: 1px solid var(--line); border-radius: 12px;
  padding: 18px 20px; margin: 0 0 16px; min-width: 0; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
.pair > .card { margin-bottom: 16px; }
.note { margin: 0 0 10px; color: var(--muted); font-size: 13px; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; margin: 0 0 6px; font-size: 12.5px;
  color: var(--muted); }
.legend span { display: inline-flex; align-items: center; gap: 5px; }
.legend i { display: inline-block; width: 11px; height: 11px; border-radius: 3px; }
svg.chart { display: block; width: 100%; height: auto; overflow: visible;
  font-family: inherit; font-variant-numeric: tabular-nums; }
svg.chart text { font-size: 12px; }
svg.chart text:not([fill]) { fill: var(--ink); }
svg.chart .axis text, svg.chart .sub { fill: var(--muted); font-size: 11px; }
svg.chart .grid { stroke: var(--line); stroke-width: 1; }
svg.chart .baseline { stroke: #b9c1cc; stroke-width: 1; }
svg.chart text.no-data { fill: var(--faint); font-size: 14px; }
svg.chart .mark:hover { opacity: 0.85; }
.scroll { overflow-x: auto; }
table.figures { width: 100%; border-collapse: collapse; font-size: 13.5px;
  font-variant-numeric: tabular-nums; }
table.figures th { color: var(--muted); font-weight: 560; font-size: 12.5px; text-align: right;
  border-bottom: 1px solid var(--line); padding: 6px 8px; white-space: nowrap; }
table.figures td { text-align: right; padding: 7px 8px; border-bottom: 1px solid #f0f2f5;
  white-space: nowrap; vertical-align: top; }
table.figures .left { text-align: left; }
table.figures td.small { white-space: normal; font-size: 12.5px; color: var(--muted); min-width: 180px; }
table.figures tr.significant td { background: #f1f8f4; }
.rule-name { display: block; font-weight: 560; }
.rule-id { display: block; color: var(--faint); font-size: 12px; }
.muted { color: var(--faint); }
.interval { display: block; color: var(--faint); font-size: 12px; }
.winner { color: #c98a00; }
p.no-data { color: var(--faint); margin: 8px 0; }
footer { color: var(--faint); font-size: 12.5px; padding-bottom: 32px; }
@media (max-width: 900px) {
  .pair { grid-template-columns: 1fr; gap: 0; }
}
@media (max-width: 560px) {
  :root { font-size: 14px; }
  .masthead, main, footer { padding-left: 12px; padding-right: 12px; }
  h1 { font-size: 23px; }
  .card { padding: 14px 12px; border-radius: 10px; }
  .kpi-value { font-size: 19px; }
  .kpis { grid-template-columns: repeat(2, 1fr); }
}
@page { margin: 14mm 12mm; }
@media print {
  :root { background: #fff; font-size: 11pt; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  .masthead, main, footer { max-width: none; padding: 0; }
  .card, .kpi { border-color: #ccd2da; box-shadow: none; }
  .card, figure, tr, .kpis { break-inside: avoid; }
  .scroll { overflow: visible; }
  table.figures { font-size: 8pt; }
  table.figures th { font-size: 7.5pt; }
  table.figures td, table.figures th { padding: 3px 4px; }
  .rule-id { font-size: 7pt; }
  table.figures td.goal { white-space: normal; }
}
"""

SCRIPT = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent || "{}");
  var COLORS = {sent: "#2f7d5b", failed: "#c8423b", unknown: "#e8a19b", pending: "#a7b0bc",
    holdout: "#8a7fd8", capped_global: "#e39b2f", capped_rule: "#f2c55c",
    no_consent: "#4b8fd6", budget_exhausted: "#a35c3c", opted_out: "#6b7785"};
  var SPARE = ["#d36f9e", "#5fb3b3", "#b5a642", "#7d9c4a", "#c27c5a", "#5d6fb8"];
  var STAGES = [["matched", "matched", "#d5dde8"], ["acted", "fired", "#9db9dc"],
    ["sent", "sent", "#4f86c6"], ["conversions", "converted", "#1e4f8f"]];
  var nf = function (n) { return Number(n || 0).toLocaleString("en-US"); };
  var pc = function (x, d) { return (x * 100).toFixed(d === undefined ? 1 : d) + "%"; };

  function el(parent, name, attrs, text) {
    var node = document.createElementNS(parent.namespaceURI, name);
    for (var k in attrs) { if (attrs[k] !== undefined) node.setAttribute(k, attrs[k]); }
    if (text !== undefined) node.textContent = text;
    parent.appendChild(node);
    return node;
  }
  function tip(node, text) { el(node, "title", {}, text); return node; }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function widthOf(svg) {
    return Math.max(300, Math.floor((svg.parentNode.clientWidth || 800) -
      parseFloat(getComputedStyle(svg.parentNode).paddingLeft || 0) -
      parseFloat(getComputedStyle(svg.parentNode).paddingRight || 0)));
  }
  function finish(svg, w, h, marks) {
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    svg.setAttribute("data-drawn", String(marks));
  }
  function noData(svg, w, message) {
    var h = 96;
    el(svg, "rect", {x: 0.5, y: 0.5, width: w - 1, height: h - 1, rx: 8, fill: "#fafbfc",
      stroke: "#e3e7ec", "stroke-dasharray": "4 4"});
    el(svg, "text", {"class": "no-data", x: w / 2, y: h / 2 + 5, "text-anchor": "middle"},
      message);
    finish(svg, w, h, 0);
  }
  function legend(name, items) {
    var box = document.querySelector('[data-legend-for="' + name + '"]');
    if (!box) return;
    clear(box);
    items.forEach(function (it) {
      var span = document.createElement("span");
      var sw = document.createElement("i");
      sw.style.background = it[1];
      span.appendChild(sw);
      span.appendChild(document.createTextNode(it[0]));
      box.appendChild(span);
    });
  }
  function niceMax(v) {  // the top of an axis with four round steps
    if (v <= 0) return 1;
    var step = v / 4, p = Math.pow(10, Math.floor(Math.log10(step))), m = step / p;
    return 4 * (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * p;
  }
  function tick(x) { return String(Math.round(x * 1000) / 10) + "%"; }
  function yAxis(svg, x0, x1, y0, h, max, fmt) {
    var g = el(svg, "g", {"class": "axis"});
    for (var i = 0; i <= 4; i++) {
      var v = max * i / 4, y = y0 + h - h * i / 4;
      el(g, "line", {"class": i ? "grid" : "baseline", x1: x0, x2: x1, y1: y, y2: y});
      el(g, "text", {x: x0 - 6, y: y + 4, "text-anchor": "end"}, fmt(v));
    }
  }
  function short(n) {
    return n >= 10000 ? (n / 1000).toFixed(0) + "k" : n >= 1000 ? (n / 1000).toFixed(1) + "k"
      : String(Math.round(n * 10) / 10);
  }
  function mmdd(iso) { return String(iso).slice(5); }

  function drawDaily(svg, w) {
    var days = data.daily || [];
    var reasons = {};
    days.forEach(function (d) {
      var s = d.suppressed || {};
      for (var k in s) reasons[k] = (reasons[k] || 0) + (s[k] || 0);
    });
    var order = Object.keys(reasons).sort(function (a, b) { return reasons[b] - reasons[a]; });
    var spare = 0, keys = [["sent", "sent"], ["failed", "failed"], ["unknown", "unknown"],
      ["pending", "pending"]];
    order.forEach(function (r) {
      if (!COLORS[r]) COLORS[r] = SPARE[spare++ % SPARE.length];
      keys.push([r, "suppressed: " + r]);
    });
    function parts(d) {
      var s = d.suppressed || {}, out = {sent: d.sent || 0, failed: d.failed || 0,
        unknown: d.unknown || 0};
      out.pending = d.pending !== undefined ? d.pending || 0 : Math.max(0, (d.fired || 0) +
        (d.deferred || 0) - out.sent - out.failed - out.unknown);
      order.forEach(function (r) { out[r] = s[r] || 0; });
      return out;
    }
    var max = 0;
    days.forEach(function (d) {
      var p = parts(d), t = 0;
      for (var k in p) t += p[k];
      max = Math.max(max, t);
    });
    legend("daily", keys.filter(function (k) {
      return days.some(function (d) { return parts(d)[k[0]] > 0; });
    }).map(function (k) { return [k[1], COLORS[k[0]]]; }));
    if (!days.length || max === 0) {
      return noData(svg, w, "No sends or suppressions in this period");
    }
    var ml = 46, mr = 8, mt = 10, mb = 26, h = 230;
    var pw = w - ml - mr, top = niceMax(max), band = pw / days.length;
    var bw = Math.max(1, Math.min(28, band * 0.72));
    yAxis(svg, ml, w - mr, mt, h, top, short);
    var every = Math.max(1, Math.ceil(days.length / Math.max(1, Math.floor(pw / 46))));
    var axis = el(svg, "g", {"class": "axis"});
    days.forEach(function (d, i) {
      var x = ml + band * i + (band - bw) / 2, p = parts(d), y = mt + h;
      var g = el(svg, "g", {"class": "mark bar-group", "data-date": d.date});
      var lines = [d.date];
      keys.forEach(function (k) {
        var v = p[k[0]];
        if (!v) return;
        var bh = h * v / top;
        y -= bh;
        el(g, "rect", {x: x.toFixed(2), y: y.toFixed(2), width: bw.toFixed(2),
          height: Math.max(0.5, bh).toFixed(2), fill: COLORS[k[0]]});
        lines.push(k[1] + ": " + nf(v));
      });
      tip(g, lines.join("\n"));
      if (i % every === 0) {
        el(axis, "text", {x: (x + bw / 2).toFixed(2), y: mt + h + 17, "text-anchor": "middle"},
          mmdd(d.date));
      }
    });
    finish(svg, w, mt + h + mb, days.length);
  }

  function stage(r, key) {  // "fired" counts the deferred fires too: they are sent later
    return key === "acted" ? (r.fired || 0) + (r.deferred || 0) : r[key];
  }
  function drawFunnel(svg, w) {
    var rules = (data.rules || []).filter(function (r) { return (r.matched || 0) > 0; });
    legend("funnel", STAGES.map(function (s) { return [s[1], s[2]]; }));
    if (!rules.length) return noData(svg, w, "No rule matched anyone in this period");
    var narrow = w < 520, row = narrow ? 60 : 46, y = 4, marks = 0, bw = w - 2;
    var barY = narrow ? 36 : 20;  // on a phone the figures get a line of their own
    rules.forEach(function (r) {
      el(svg, "text", {x: 0, y: y + 13, "font-weight": 600}, r.name || r.id);
      var shown = STAGES.filter(function (s) {
        return stage(r, s[0]) !== null && stage(r, s[0]) !== undefined;
      });
      var figures = shown.map(function (s) { return nf(stage(r, s[0])); }).join(" → ");
      el(svg, "text", narrow ? {x: 0, y: y + 29, "class": "sub"}
        : {x: w, y: y + 13, "text-anchor": "end", "class": "sub"}, figures);
      var stages = shown.map(function (s) { return [s, stage(r, s[0]) || 0]; })
        .sort(function (a, b) { return b[1] - a[1]; });
      stages.forEach(function (st) {
        var frac = Math.min(1, st[1] / r.matched);
        var rect = el(svg, "rect", {"class": "mark funnel-bar", "data-stage": st[0][0], x: 1,
          y: y + barY, width: Math.max(st[1] ? 1.5 : 0, bw * frac).toFixed(2), height: 16, rx: 3,
          fill: st[0][2]});
        tip(rect, (r.name || r.id) + "\n" + st[0][1] + ": " + nf(st[1]) + " (" + pc(frac) +
          " of matched)");
        marks++;
      });
      y += row;
    });
    finish(svg, w, y, marks);
  }

  function drawConversion(svg, w) {
    var has = function (g) { return typeof g.rate === "number"; };
    var rules = (data.rules || []).filter(function (r) {
      return r.goal && (r.groups || []).some(has);
    });
    if (!rules.length) return noData(svg, w, "No rule with a goal reached anyone yet");
    var hi = 0;
    rules.forEach(function (r) {
      r.groups.forEach(function (g) { hi = Math.max(hi, g.high || g.rate || 0); });
    });
    var top = Math.min(1, niceMax(hi * 1.05)), label = Math.min(120, w * 0.26), right = 124;
    var x0 = label, x1 = w - right, pw = x1 - x0;
    var sx = function (v) { return x0 + pw * Math.min(1, Math.max(0, v)) / top; };
    var y = 0, marks = 0, rows = [];
    rules.forEach(function (r) {
      rows.push(["rule", r, y]); y += 26;
      r.groups.forEach(function (g) { rows.push(["group", r, y, g]); y += 24; });
      y += 6;
    });
    var axisY = y + 2, g0 = el(svg, "g", {"class": "axis"});
    for (var i = 0; i <= 4; i++) {
      var v = top * i / 4;
      el(g0, "line", {"class": i ? "grid" : "baseline", x1: sx(v), x2: sx(v), y1: 0, y2: axisY});
      el(g0, "text", {x: sx(v), y: axisY + 15, "text-anchor": "middle"}, tick(v));
    }
    var spare = 0, colour = {holdout: "#8a94a3"};
    rows.forEach(function (row) {
      var r = row[1], ry = row[2];
      if (row[0] === "rule") {
        var t = el(svg, "text", {x: 0, y: ry + 17, "font-weight": 600}, r.name || r.id);
        if (r.winner) {
          el(t, "tspan", {fill: "#c98a00", dx: 6}, "★ " + r.winner);
        }
        return;
      }
      var g = row[3], cy = ry + 12;
      if (!colour[g.name]) colour[g.name] = ["#2f6fb5", "#d0702c", "#2f7d5b", "#8a4fb0"][spare++ % 4];
      var c = colour[g.name];
      el(svg, "text", {x: 12, y: cy + 4, "class": "sub"}, g.name);
      if (!has(g)) {
        el(svg, "text", {x: x0 + 6, y: cy + 4, "class": "sub"}, "no users in this group");
        return;
      }
      var m = el(svg, "g", {"class": "mark interval", "data-group": g.name});
      var lo = sx(g.low), up = sx(g.high), mid = sx(g.rate);
      el(m, "line", {x1: lo, x2: up, y1: cy, y2: cy, stroke: c, "stroke-width": 2});
      el(m, "line", {x1: lo, x2: lo, y1: cy - 5, y2: cy + 5, stroke: c, "stroke-width": 2});
      el(m, "line", {x1: up, x2: up, y1: cy - 5, y2: cy + 5, stroke: c, "stroke-width": 2});
      el(m, "circle", {cx: mid, cy: cy, r: 4.5, fill: c, stroke: "#fff", "stroke-width": 1.5});
      tip(m, (r.name || r.id) + " · " + g.name + "\n" + pc(g.rate) + " (" + nf(g.conversions) +
        " of " + nf(g.users) + ")\n95% interval " + pc(g.low) + " – " + pc(g.high));
      el(svg, "text", {x: w, y: cy + 4, "text-anchor": "end"}, pc(g.rate));
      el(svg, "text", {x: w - 52, y: cy + 4, "text-anchor": "end", "class": "sub"},
        nf(g.conversions) + "/" + nf(g.users));
      marks++;
    });
    finish(svg, w, axisY + 22, marks);
  }

  function drawCohorts(svg, w) {
    var cohorts = data.cohorts || [];
    if (!cohorts.length) return noData(svg, w, "No signup cohorts in this period");
    var cols = [["d1", "次日 d1"], ["d7", "7日 d7"], ["d30", "30日 d30"]];
    var label = Math.min(150, w * 0.34), cw = Math.min(140, (w - label) / 3), ch = 30, head = 24;
    var max = 0;
    cohorts.forEach(function (c) { cols.forEach(function (k) {
      if (c[k[0]] !== null && c[k[0]] !== undefined) max = Math.max(max, c[k[0]]);
    }); });
    var defs = el(svg, "defs", {});
    var pat = el(defs, "pattern", {id: "hatch-cohorts", width: 6, height: 6,
      patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)"});
    el(pat, "rect", {width: 6, height: 6, fill: "#f6f7f9"});
    el(pat, "line", {x1: 0, y1: 0, x2: 0, y2: 6, stroke: "#d9dee5", "stroke-width": 2});
    cols.forEach(function (k, j) {
      el(svg, "text", {x: label + cw * j + cw / 2, y: 15, "text-anchor": "middle", "class": "sub"},
        k[1]);
    });
    var marks = 0;
    cohorts.forEach(function (c, i) {
      var y = head + i * ch;
      el(svg, "text", {x: 0, y: y + 14}, c.week);
      el(svg, "text", {x: 0, y: y + 26, "class": "sub"},
        mmdd(c.start) + " · " + nf(c.users) + " users");
      cols.forEach(function (k, j) {
        var v = c[k[0]], x = label + cw * j, empty = v === null || v === undefined;
        var t = empty ? 0 : (max ? v / max : 0);
        var fill = empty ? "url(#hatch-cohorts)" : "rgb(" + Math.round(236 - 206 * t) + "," +
          Math.round(243 - 148 * t) + "," + Math.round(250 - 82 * t) + ")";
        var g = el(svg, "g", {"class": "mark cell" + (empty ? " is-empty" : ""),
          "data-week": c.week, "data-day": k[0]});
        el(g, "rect", {x: x + 1, y: y + 1, width: cw - 2, height: ch - 2, rx: 3, fill: fill});
        el(g, "text", {x: x + cw / 2, y: y + ch / 2 + 4, "text-anchor": "middle",
          fill: empty ? "#8a94a3" : t > 0.55 ? "#ffffff" : "#1d2430"}, empty ? "—" : pc(v));
        tip(g, c.week + " (" + nf(c.users) + " users) · " + k[1] + ": " +
          (empty ? "not complete yet" : pc(v)));
        marks++;
      });
    });
    finish(svg, w, head + cohorts.length * ch + 4, marks);
  }

  function drawActivity(svg, w) {
    var series = ((data.activity || {}).series || []).filter(function (p) { return p.dau !== null; });
    if (!series.length) return noData(svg, w, "No activity in this period");
    var ml = 46, mr = 8, mt = 10, mb = 26, h = 150, pw = w - ml - mr;
    var max = Math.max.apply(null, series.map(function (p) { return p.dau || 0; }));
    var top = niceMax(max || 1), step = series.length > 1 ? pw / (series.length - 1) : 0;
    yAxis(svg, ml, w - mr, mt, h, top, short);
    var xy = series.map(function (p, i) {
      return [ml + (series.length > 1 ? step * i : pw / 2), mt + h - h * (p.dau || 0) / top];
    });
    el(svg, "path", {d: "M" + xy.map(function (q) { return q[0].toFixed(2) + "," + q[1].toFixed(2); })
      .join("L"), fill: "none", stroke: "#2f6fb5", "stroke-width": 2, "stroke-linejoin": "round"});
    var every = Math.max(1, Math.ceil(series.length / Math.max(1, Math.floor(pw / 46))));
    var axis = el(svg, "g", {"class": "axis"});
    series.forEach(function (p, i) {
      tip(el(svg, "circle", {"class": "mark point", cx: xy[i][0].toFixed(2),
        cy: xy[i][1].toFixed(2), r: 2.5, fill: "#2f6fb5"}), p.date + ": " + nf(p.dau) + " DAU");
      if (i % every === 0) {
        el(axis, "text", {x: xy[i][0].toFixed(2), y: mt + h + 17, "text-anchor": "middle"},
          mmdd(p.date));
      }
    });
    finish(svg, w, mt + h + mb, series.length);
  }

  var CHARTS = {daily: drawDaily, funnel: drawFunnel, conversion: drawConversion,
    cohorts: drawCohorts, activity: drawActivity};
  var widths = {};
  function drawAll() {
    Array.prototype.forEach.call(document.querySelectorAll("svg[data-chart]"), function (svg) {
      var name = svg.getAttribute("data-chart"), w = widthOf(svg);
      if (!CHARTS[name] || widths[name] === w) return;
      widths[name] = w;
      clear(svg);
      svg.removeAttribute("data-drawn");
      try {
        CHARTS[name](svg, w);
      } catch (err) {
        clear(svg);
        noData(svg, w, "This chart could not be drawn: " + err.message);
        svg.setAttribute("data-error", String(err.message));
      }
    });
  }
  var pending = null;
  window.addEventListener("resize", function () {
    clearTimeout(pending);
    pending = setTimeout(drawAll, 120);
  });
  drawAll();
})();
"""
