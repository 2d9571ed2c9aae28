"""Inline matplotlib charts for runbook evidence. Each function draws one figure and shows it."""
from __future__ import annotations

from typing import Iterable

import matplotlib

if not matplotlib.get_backend().lower().startswith(("module://matplotlib_inline", "inline", "module://ipympl")):
    # headless outside a notebook (CLI, tests); inside a kernel keep the inline backend
    try:
        get_ipython  # type: ignore[name-defined]  # noqa: F821
    except NameError:
        matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def _finish(fig, ax, title: str) -> None:
    # No layout pass: the inline backend saves figures with bbox_inches="tight", which already fits
    # labels and legends; fig.tight_layout() on top cost 2-3x the rest of a chart (profiled: most
    # of a warm db-pool-exhausted run went to it).
    ax.set_title(title)
    plt.show()
    plt.close(fig)


def bar_counts(df: pd.DataFrame, column: str, title: str, *, value: str = "connections", top: int = 15) -> None:
    """Horizontal bars of a count column by category (largest first)."""
    fig, ax = plt.subplots(figsize=(7, max(2.0, 0.35 * min(len(df), top) + 1)))
    if len(df):
        d = df.sort_values(value, ascending=True).tail(top)
        ax.barh(d[column].astype(str), d[value], color="#4c72b0")
        for y, v in enumerate(d[value]):
            ax.text(v, y, f" {v}", va="center")
    else:
        ax.text(0.5, 0.5, "no rows", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(value)
    _finish(fig, ax, title)


def usage_against_limit(parts: dict[str, int], limit: int, reserved: int, title: str, *,
                        warn_pct: float | None = None, unit: str = "connections") -> None:
    """One stacked bar of usage by part against a hard limit, with reserved and warning lines."""
    fig, ax = plt.subplots(figsize=(8, 2.4))
    left = 0
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, n) in enumerate(parts.items()):
        if n:
            ax.barh([unit], [n], left=left, label=f"{name} ({n})", color=colours[i % len(colours)])
            left += n
    ax.axvline(limit, color="black", linewidth=2, label=f"limit ({limit})")
    if reserved:
        ax.axvline(limit - reserved, color="grey", linestyle=":", label=f"reserved slots start ({limit - reserved})")
    if warn_pct is not None:
        ax.axvline(limit * warn_pct / 100, color="red", linestyle="--", label=f"warn at {warn_pct:g}%")
    ax.set_xlim(0, max(limit, left) * 1.05 or 1)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=3, fontsize="small")
    _finish(fig, ax, title)


def lines(df: pd.DataFrame, x: str, ys: Iterable[str], title: str, *, ylabel: str = "",
          marker_at=None, marker_label: str = "") -> None:
    """Time series (one line per column), optionally marking a moment such as detected_at."""
    fig, ax = plt.subplots(figsize=(8, 3))
    for y in ys:
        if y in df:
            ax.plot(df[x], df[y], label=y, marker=".")
    if marker_at is not None:
        ax.axvline(marker_at, color="red", linestyle="--", label=marker_label or None)
    ax.set_ylabel(ylabel)
    if len(df):
        ax.legend(fontsize="small")
    _finish(fig, ax, title)


def breakdown_panels(tables: dict[str, pd.DataFrame], title: str, *, value: str = "connections",
                     top: int = 10) -> None:
    """One figure, one horizontal-bar panel per breakdown (e.g. by state / application / client)."""
    # stacked, not side by side: long labels (applications, client addresses) never collide with a
    # neighbour panel, so no layout pass is needed, and the figure reads on a phone
    fig, axes = plt.subplots(len(tables), 1, figsize=(8, 1.6 * len(tables) + 0.8), squeeze=False)
    fig.subplots_adjust(hspace=0.9)
    for ax, (label, df) in zip(axes[:, 0], tables.items()):
        if len(df):
            d = df.sort_values(value).tail(top)
            ax.barh(d[label].astype(str), d[value], color="#4c72b0")
        else:
            ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(f"by {label}")
        ax.set_xlabel(value)
    fig.suptitle(title)
    plt.show()
    plt.close(fig)


def memory_against_limit(used_mib: float | None, limit_mib: float | None, title: str, *,
                         warn_pct: float | None = None) -> None:
    """One bar of memory in use against the workload's limit (either may be unknown)."""
    fig, ax = plt.subplots(figsize=(8, 2.2))
    used = used_mib or 0
    ax.barh(["memory"], [used], color="#4c72b0", label=f"used ({used_mib:.0f} MiB)" if used_mib is not None
            else "used (unknown: not running)")
    if limit_mib:
        ax.axvline(limit_mib, color="black", linewidth=2, label=f"limit ({limit_mib:.0f} MiB)")
        if warn_pct is not None:
            ax.axvline(limit_mib * warn_pct / 100, color="red", linestyle="--", label=f"warn at {warn_pct:g}%")
    else:
        ax.text(0.99, 0.5, "no memory limit set", ha="right", va="center", transform=ax.transAxes)
    ax.set_xlim(0, max(limit_mib or 0, used) * 1.05 or 1)
    ax.set_xlabel("MiB")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=3, fontsize="small")
    _finish(fig, ax, title)


def percent_bars(df: pd.DataFrame, label: str, value: str, title: str, *, warn_pct: float | None = None) -> None:
    """Horizontal bars of a percentage per label (e.g. disk used % per path) on a 0-100 axis."""
    fig, ax = plt.subplots(figsize=(7, max(1.8, 0.4 * len(df) + 1)))
    if len(df):
        colours = ["#cf222e" if warn_pct is not None and v >= warn_pct else "#4c72b0" for v in df[value]]
        ax.barh(df[label].astype(str), df[value], color=colours)
        for y, v in enumerate(df[value]):
            ax.text(min(v, 100), y, f" {v:g}%", va="center")
    if warn_pct is not None:
        ax.axvline(warn_pct, color="red", linestyle="--", label=f"warn at {warn_pct:g}%")
        ax.legend(fontsize="small", loc="lower right")
    ax.set_xlim(0, 110)
    ax.set_xlabel(f"{value}")
    _finish(fig, ax, title)


HISTORY_PANELS = {   # panel -> (frames of probes.prometheus.api_history, title, y label)
    "latency": (("p95", "p99"), "Latency per endpoint (p95 solid, p99 dashed)", "s"),
    "traffic": (("request_rate", "error_rate"), "Requests/s per endpoint (5xx dashed)", "requests/s"),
    "connections": (("db_connections", "pool_in_use"), "PostgreSQL client connections by state "
                    "(API pool in use dashed)", "connections"),
}


def history(frames: dict[str, pd.DataFrame] | None, marker_at=None, *,
            panels: Iterable[str] = ("latency", "traffic", "connections"), threshold: float | None = None) -> None:
    """Prometheus history, one chart per panel, ``marker_at`` (e.g. detected_at) as a red line.

    ``frames`` is :func:`smartops_nb.probes.prometheus.api_history`'s answer; ``None`` draws nothing.
    """
    if frames is None:
        return
    if isinstance(marker_at, str) and marker_at:
        marker_at = pd.Timestamp(marker_at)
    for panel in panels:
        (solid, dashed), title, ylabel = HISTORY_PANELS[panel]
        fig, ax = plt.subplots(figsize=(8, 3))
        drawn = 0
        for key, style in ((solid, "-"), (dashed, "--")):
            df = frames.get(key)
            for col in ([] if df is None else [c for c in df.columns if c != "at"]):
                ax.plot(df["at"], df[col], linestyle=style, label=f"{key} {col}" if col != "value" else key)
                drawn += 1
        if panel == "connections" and frames.get("db_max_connections") is not None and len(frames["db_max_connections"]):
            lim = frames["db_max_connections"]
            ax.plot(lim["at"], lim[lim.columns[-1]], color="black", linewidth=2, label="max_connections")
        if panel == "latency" and threshold is not None:
            ax.axhline(threshold, color="grey", linestyle=":", label=f"threshold {threshold:g} s")
        if marker_at is not None:
            ax.axvline(marker_at, color="red", linestyle="--", label="detected_at")
        if not drawn:
            ax.text(0.5, 0.5, "no data in Prometheus for this window", ha="center", va="center", transform=ax.transAxes)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize="x-small", loc="upper left")
        fig.autofmt_xdate()
        _finish(fig, ax, title)
