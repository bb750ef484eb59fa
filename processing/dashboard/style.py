"""The dashboard's stylesheet, inlined into the page so the file stands alone.

System fonts only (no web fonts: the file must open offline), tabular figures so
columns of amounts line up, and a print layout: A4, no shadows, no scroll boxes,
sections kept whole on a page where they fit.
"""

from __future__ import annotations

CSS = """
:root {
  --ink: #1f2933; --muted: #616e7c; --line: #d9dee4; --grid: #eceff2; --bg: #f4f6f8; --card: #fff;
  --accent: #4e79a7; --crit: #b42318; --warn: #b54708; --info: #175cd3; --ok: #067647;
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body {
  margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", Arial, sans-serif;
}
.num, td.num, th.num { font-variant-numeric: tabular-nums; text-align: right; white-space: nowrap; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 24px 40px; }
header.top {
  display: flex; flex-wrap: wrap; align-items: flex-end; justify-content: space-between; gap: 8px 24px;
  padding-bottom: 16px; margin-bottom: 20px; border-bottom: 2px solid var(--ink);
}
header.top h1 { margin: 0; font-size: 24px; letter-spacing: -0.01em; }
header.top .issuer { color: var(--muted); font-size: 15px; margin-top: 2px; }
header.top dl { display: grid; grid-template-columns: auto auto; gap: 2px 12px; margin: 0; font-size: 13px; }
header.top dt { color: var(--muted); text-align: right; }
header.top dd { margin: 0; font-weight: 600; }
.kpis { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 12px; margin-bottom: 20px; }
.kpi { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
.kpi .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: 0.04em; }
.kpi .value { font-size: 22px; font-weight: 650; margin: 4px 0 2px; font-variant-numeric: tabular-nums; }
.kpi .value small { font-size: 12px; font-weight: 500; color: var(--muted); margin-left: 3px; }
.kpi .sub { color: var(--muted); font-size: 12px; }
.kpi.alert { border-color: #f2b8b5; background: #fffafa; }
.kpi.alert .value { color: var(--crit); }
.split { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 20px; align-items: start; }
.split .scroll { margin-top: 0; }
section.card {
  background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 16px 18px 14px; margin-bottom: 20px; box-shadow: 0 1px 2px rgba(16, 24, 40, 0.05);
}
section.card h2 { margin: 0 0 2px; font-size: 17px; }
section.card .lede { margin: 0 0 10px; color: var(--muted); font-size: 13px; }
.legend {
  display: flex; flex-wrap: wrap; gap: 4px 16px; margin: 0 0 6px; padding: 0; list-style: none; font-size: 13px;
}
.legend li { display: inline-flex; align-items: center; gap: 6px; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px; }
figure { margin: 0; }
figure.narrow { max-width: 680px; }
svg.chart { display: block; width: 100%; height: auto; overflow: visible; }
svg.chart text { font-size: 11.5px; fill: var(--muted); }
svg.chart text.label { fill: var(--ink); font-size: 12.5px; }
svg.chart text.value { fill: var(--ink); font-size: 12px; font-weight: 600; font-variant-numeric: tabular-nums; }
svg.chart line.grid { stroke: var(--grid); stroke-width: 1; }
svg.chart line.zero { stroke: #9aa5b1; stroke-width: 1; }
svg.chart .mark:hover { opacity: 0.8; }
svg.chart path.line { fill: none; stroke-width: 2.2; stroke-linejoin: round; stroke-linecap: round; }
svg.chart path.area { opacity: 0.12; }
.scroll { max-height: 300px; overflow: auto; margin-top: 12px; border: 1px solid var(--grid); border-radius: 6px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
caption { text-align: left; color: var(--muted); font-size: 12px; padding: 6px 8px; caption-side: top; }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--grid); text-align: left; vertical-align: top; }
thead th { position: sticky; top: 0; background: #f8f9fb; color: var(--muted); font-weight: 600; font-size: 12px; }
tfoot td, tfoot th { font-weight: 700; border-top: 1px solid var(--line); background: #fbfcfd; }
tbody tr:hover { background: #f8fafc; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 11.5px; font-weight: 600; }
.badge.critical { background: #fee4e2; color: var(--crit); }
.badge.warning { background: #fef0c7; color: var(--warn); }
.badge.info { background: #d1e9ff; color: var(--info); }
.badge.settled { background: #dcfae6; color: var(--ok); }
.badge.pending { background: #fef0c7; color: var(--warn); }
.badge.partial { background: #d1e9ff; color: var(--info); }
.badge.nothing-due { background: #eceff2; color: var(--muted); }
.empty { color: var(--muted); font-style: italic; padding: 18px 0; }
.source { color: var(--muted); font-size: 11.5px; margin: 8px 0 0; }
.source code { font-size: 11.5px; }
code { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
td.card-no { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12.5px; }
footer { color: var(--muted); font-size: 12px; border-top: 1px solid var(--line); padding-top: 10px; }
.narrow-only { display: none; }
@media (max-width: 900px) {
  .kpis { grid-template-columns: repeat(2, minmax(0, 1fr)); }
  .split { grid-template-columns: minmax(0, 1fr); }
}
/* A phone (390 px): one column, charts redrawn narrow (sections._responsive), tables as stacked
   rows whose cells say their column (data-label), so nothing scrolls sideways or is cut. */
@media (max-width: 600px) {
  main { padding: 12px 12px 28px; }
  header.top h1 { font-size: 20px; }
  .kpis { grid-template-columns: minmax(0, 1fr); gap: 8px; }
  .kpi .value { font-size: 20px; overflow-wrap: anywhere; }
  section.card { padding: 12px 12px 10px; }
  .wide-only { display: none; }
  .narrow-only { display: block; }
  .scroll { max-height: 460px; overflow-x: hidden; overflow-y: auto; border: 0; }
  table.stack, table.stack tbody, table.stack tfoot, table.stack tr, table.stack td, table.stack th {
    display: block; width: 100%;
  }
  table.stack thead { display: none; }
  table.stack caption { display: block; padding: 6px 0; }
  table.stack tr { border: 1px solid var(--grid); border-radius: 6px; margin-bottom: 8px; padding: 4px 8px; }
  table.stack td, table.stack th { border: 0; padding: 3px 0; text-align: right; white-space: normal;
    overflow-wrap: anywhere; }
  table.stack th[scope=row] { text-align: left; font-weight: 600; }
  table.stack td::before { content: attr(data-label); float: left; color: var(--muted); padding-right: 12px;
    text-align: left; }
  td.card-no { font-size: 12px; }
}
@media print {
  @page { size: A4; margin: 12mm; }
  body { background: #fff; font-size: 11px; }
  main { max-width: none; padding: 0; }
  section.card, .kpi { box-shadow: none; break-inside: avoid; }
  .kpis { grid-template-columns: repeat(4, minmax(0, 1fr)); }
  .scroll { max-height: none; overflow: visible; border: 0; }
  .wide-only { display: block; }
  .narrow-only { display: none; }
  thead th { position: static; }
  svg.chart .mark:hover { opacity: 1; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""
