"""The comparison as text: one table (transport x metric), ratios, targets, failures."""

from __future__ import annotations

from typing import Any

from pykernel.bench._report import METRICS


def fmt_value(value: float, lower_is_better: bool) -> str:
    """Format a latency (µs, 1-3 significant decimals) or a rate (k/M suffix)."""
    if lower_is_better:
        return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 1000 else f"{value:.0f}"
    if value >= 999_500:  # thresholds sit where rounding would carry (no "1000k", "10.0k")
        return f"{value / 1e6:.2f}M"
    if value >= 9_950:
        return f"{value / 1e3:.0f}k"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def _cell(data: dict[str, Any], transport: str, metric_index: int) -> str:
    m = METRICS[metric_index]
    value = data["values"].get(transport, {}).get(m.key)
    if value is not None:
        return fmt_value(value, m.lower_is_better)
    for r in data["results"]:
        if r["transport"] == transport and r["case"] == m.case:
            return {"timeout": "TIMEOUT"}.get(r["status"], "FAIL")
    return "-"


def render(data: dict[str, Any]) -> str:
    """Render the JSON form of a report (``Report.to_json()``) as the terminal table."""
    mach = data["machine"]
    lines = [
        f"pykernel bench ({data['config'].get('mode', 'custom')}): {mach['cpu_model']}, "
        f"{mach['cores_usable']}/{mach['cores_online']} cores, Linux {mach['kernel']}, "
        f"Python {mach['python']}"
        + (
            f"; load average {mach['load_before']:.1f} -> {mach['load_after']:.1f}"
            if "load_before" in mach
            else ""
        ),
        "Each transport: its own processes, pinned to different cores; every message "
        f"verified; queue depth {data['config'].get('depth', '?')} messages "
        f"({data['config'].get('big_depth', '?')} at 64 KiB+). Shared machines are noisy: "
        "compare rows of the same run.",
        "",
    ]
    heads = ["transport", "wait", *(m.heading for m in METRICS)]
    rows = []
    for t in data["transports"]:
        if t["status"] != "ok":
            rows.append([t["label"], t["wait"], t["status"]])
            continue
        rows.append(
            [t["label"], t["wait"], *(_cell(data, t["key"], i) for i in range(len(METRICS)))]
        )
    full = [r for r in rows if len(r) == len(heads)]
    widths = [max([len(h)] + [len(r[i]) for r in full]) for i, h in enumerate(heads)]
    widths[0] = max([widths[0]] + [len(r[0]) for r in rows])
    widths[1] = max([widths[1]] + [len(r[1]) for r in rows])
    for row in [heads, *rows]:
        if len(row) == 3 and row is not heads:
            lines.append(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}")
            continue
        cells = [f"{c:<{widths[i]}}" if i < 2 else f"{c:>{widths[i]}}" for i, c in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    lines += ["", "pykernel ÷ best peer (latency: below 1 is better; throughput: above 1)"]
    for pk, per_metric in data["ratios"].items():
        parts = []
        for m in METRICS:
            row = per_metric.get(m.key)
            if row and row.get("vs_best") is not None:
                parts.append(f"{m.heading} {row['vs_best']:.2f}x ({row['best_peer']})")
        lines.append(f"  {pk}: " + ("; ".join(parts) if parts else "no comparable numbers"))
    lines += ["", "Targets"]
    for t in data["targets"]:
        mark = {True: "[met]    ", False: "[NOT MET]", None: "[n/a]    "}[t["met"]]
        lines.append(f"  {mark} {t['target']}: {_target_detail(t)}")
    failures = [r for r in data["results"] if r["status"] != "ok"]
    if failures:
        lines += ["", "Failures (reported, the run went on)"]
        lines += [f"  {r['transport']} {r['case']}: {r['status']}: {r['error']}" for r in failures]
    return "\n".join(lines)


def _target_detail(t: dict[str, Any]) -> str:
    if t["value"] is None:
        return t.get("why", "no number")
    lower = t["metric"].startswith("rtt")
    unit = " µs" if lower else " msg/s"
    mine = f"{t['pykernel']} {fmt_value(t['value'], lower)}{unit}"
    if t["ratio"] is None and t["versus"] is not None and t["reference"] is None:
        return f"{mine}; {t.get('why', 'no reference number')}"
    if t["ratio"] is None:
        return f"{mine} (bound {fmt_value(t['reference'], lower)}{unit})"
    return f"{mine} vs {t['versus']} {fmt_value(t['reference'], lower)}{unit} = {t['ratio']:.2f}x"


def render_markdown(data: dict[str, Any]) -> str:
    """Render a report as Markdown: the machine, the table and the target verdicts."""
    mach = data["machine"]
    load = (
        f", load average {mach['load_before']:.1f} → {mach['load_after']:.1f}"
        if "load_before" in mach
        else ""
    )
    lines = [
        f"{mach['cpu_model']}, {mach['cores_usable']} usable of {mach['cores_online']} cores, "
        f"Linux {mach['kernel']}, Python {mach['python']}{load}; mode "
        f"{data['config'].get('mode', 'custom')}, {data['config'].get('repeat', 1)} round(s).",
        "",
        "| transport | wait | " + " | ".join(m.heading for m in METRICS) + " |",
        "| --- | --- |" + " ---: |" * len(METRICS),
    ]
    for t in data["transports"]:
        if t["status"] != "ok":
            cells = [t["status"]] + [""] * (len(METRICS) - 1)
        else:
            cells = [_cell(data, t["key"], i) for i in range(len(METRICS))]
        lines.append(f"| {t['label']} | {t['wait']} | " + " | ".join(cells) + " |")
    lines += ["", "| target | verdict | measured |", "| --- | --- | --- |"]
    for t in data["targets"]:
        verdict = {True: "met", False: "**not met**", None: "n/a"}[t["met"]]
        lines.append(f"| {t['target']} | {verdict} | {_target_detail(t)} |")
    failures = [r for r in data["results"] if r["status"] != "ok"]
    if failures:
        lines += [""] + [
            f"- {r['transport']} {r['case']}: {r['status']}: {r['error']}" for r in failures
        ]
    return "\n".join(lines)
