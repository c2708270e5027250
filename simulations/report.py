"""What a simulation invocation shows and leaves behind: a table, a plot, a summary.

Byte ratios are against the full-model FedAvg run of the same invocation when there is
one (same task, clients and seed), so "×" always compares like with like.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from fedlora.run_layout import InvocationLayout


def _final(summary: dict[str, Any], key: str) -> float | None:
    final = summary.get("final") or {}
    return (final.get(key) or {}).get("mean")


def comparison_rows(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    full = next((s for s in summaries if s["settings"]["method"] == "full"), None)
    rows = []
    for summary in summaries:
        up = summary["bytes_up_per_client_round"]
        payload = summary.get("payload_up_per_client_round")
        rows.append(
            {
                "run": summary["run"],
                "method": summary["settings"]["method"],
                "wire": summary["settings"]["wire"],
                "bytes_up_per_client_round": up,
                "payload_up_per_client_round": payload,
                "payload_ratio_vs_full": (full["payload_up_per_client_round"] / payload) if full and payload else None,
                "bytes_down_per_client_round": summary["bytes_down_per_client_round"],
                "total_bytes": summary["total_bytes"],
                "uplink_ratio_vs_full": (full["bytes_up_per_client_round"] / up) if full and up else None,
                "total_ratio_vs_full": (full["total_bytes"] / summary["total_bytes"]) if full and summary["total_bytes"] else None,
                "base": _final(summary, "base"),
                "global": _final(summary, "global"),
                "personal": _final(summary, "personal"),
                "wall_time_per_round": summary["wall_time_per_round"],
            }
        )
    return rows


def print_table(rows: list[dict[str, Any]], metric: str, console: Console) -> None:
    table = Table(title=f"federation results ({metric}; final evaluation over all clients)")
    columns = (
        "run", "wire", "up B/client/round", "(tensors only)", "down B/client/round", "total bytes",
        "up ×full", "tensors ×full", "total ×full", "base", "global", "personalized", "s/round",
    )  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "run" else "right")
    fmt = lambda value, pattern: "—" if value is None else pattern.format(value)  # noqa: E731
    for row in rows:
        table.add_row(
            row["run"],
            row["wire"],
            fmt(row["bytes_up_per_client_round"], "{:,.0f}"),
            fmt(row["payload_up_per_client_round"], "{:,.0f}"),
            fmt(row["bytes_down_per_client_round"], "{:,.0f}"),
            fmt(row["total_bytes"], "{:,}"),
            fmt(row["uplink_ratio_vs_full"], "{:,.0f}×"),
            fmt(row["payload_ratio_vs_full"], "{:,.0f}×"),
            fmt(row["total_ratio_vs_full"], "{:,.1f}×"),
            fmt(row["base"], "{:.4f}"),
            fmt(row["global"], "{:.4f}"),
            fmt(row["personal"], "{:.4f}"),
            fmt(row["wall_time_per_round"], "{:.2f}"),
        )
    console.print(table)


def print_devices(summaries: list[dict[str, Any]], console: Console) -> None:
    """For fleet runs: per device profile, what its clients trained and what their updates
    cost on their uplinks; then every client that was excluded, with the reason."""
    for summary in summaries:
        if not summary.get("plans") or not any(p.get("profile") for p in summary["plans"]):
            continue
        table = Table(title=f"{summary['run']}: devices (per update; limits judge the uplink)")
        for column in ("profile", "link", "clients", "ranks", "adapted layers", "up bytes", "up airtime s", "up wall s", "down wall s", "over limits"):
            table.add_column(column, justify="left" if column in ("profile", "link", "adapted layers", "over limits") else "right")
        devices = summary.get("devices") or {}
        by_profile: dict[str, list[dict]] = {}
        for plan in summary["plans"]:
            by_profile.setdefault(plan["profile"], []).append(plan)
        for profile, plans in sorted(by_profile.items()):
            stats = devices.get(profile, {})
            fmt = lambda key, pattern: pattern.format(stats[key]) if key in stats else "—"  # noqa: E731
            table.add_row(
                profile,
                plans[0]["link"] or "—",
                str(len(plans)),
                ", ".join(sorted({str(p["rank"]) for p in plans})),
                ", ".join(sorted({p["targets"] or "(run default)" for p in plans})),
                fmt("up_bytes_mean", "{:,.0f}"),
                fmt("up_airtime_s_mean", "{:.3f}"),
                fmt("up_wall_s_mean", "{:.2f}"),
                fmt("down_wall_s_mean", "{:.2f}"),
                ", ".join(stats.get("clients_over_limits", [])) or "none",
            )
        console.print(table)
        for excluded in summary.get("excluded", []):
            console.print(f"excluded {excluded['client']} ({excluded.get('profile') or 'no profile'}): {excluded['reason']}")


def print_lost(summaries: list[dict[str, Any]], console: Console) -> None:
    """Every client a run lost, with the stage and the reason: a degraded run is never silent."""
    for summary in summaries:
        for lost in summary.get("lost", []):
            console.print(f"[bold red]lost[/] {summary['run']}: {lost['client']} in {lost['stage']}: {lost['reason']}", soft_wrap=True)
        absences, skipped = summary.get("absences", []), summary.get("skipped_rounds", [])
        for absence in absences:
            console.print(f"[yellow]absent[/] {summary['run']}: {absence['client']} from {absence['stage']}: {absence['reason']}", soft_wrap=True)
        if skipped:
            console.print(f"[bold red]{summary['run']} skipped rounds {', '.join(map(str, skipped))}[/]: too few replies for --min-replies")
        if summary.get("status") == "degraded":
            console.print(
                f"[bold red]{summary['run']} is degraded[/]: it went on without {len(summary['lost'])} lost client(s) "
                f"and {len(absences)} missed round(s) (--min-clients {summary['settings']['min-clients']}, "
                f"--max-absences {summary['settings'].get('max-absences', 0)})"
            )


def plot(layout: InvocationLayout, metric: str) -> Path:
    """Personalized metric against cumulative bytes, one line per run of the invocation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(10, 5))
    for run in layout.runs():
        rounds = [json.loads(line) for line in run.rounds.read_text().splitlines() if line]
        points = [(r["cumulative_bytes"], r["personal"]["mean"]) for r in rounds if r.get("personal") and r["kind"] == "train"]
        final = [(r["cumulative_bytes"], r["personal"]["mean"]) for r in rounds if r.get("personal") and r["kind"] == "final"]
        if points:
            (line,) = axis.plot(*zip(*points), marker="o", markersize=3, alpha=0.6, label=f"{run.name} (sampled clients)")
            if final:  # the evaluation of every client after the last round
                axis.plot(*zip(*final), marker="*", markersize=14, linestyle="none", color=line.get_color(), label=f"{run.name}, all clients")
    axis.set_xscale("log")
    axis.set_xlabel("cumulative bytes on the wire (up + down, incl. base download)")
    axis.set_ylabel(f"personalized {metric} (mean over clients)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))  # beside the plot, never over it
    figure.tight_layout()
    path = layout.plot
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_summary(layout: InvocationLayout, summaries: list[dict[str, Any]], rows: list[dict[str, Any]]) -> Path:
    path = layout.summary
    path.write_text(json.dumps({"runs": summaries, "comparison": rows}, indent=2))
    return path
