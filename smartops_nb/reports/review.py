"""The weekly incident review: the archive's index rows → incidents, response times, causes, post-mortems.

Definitions (the review notebook states them too):

* **Incident**: the records sharing one ``incident_id`` (an investigation, a mitigation, a
  confirming run). Its runbook and severity are its first record's; it is *confirmed* when any of
  its records confirmed a cause. A record that confirms nothing and has no confirmed record before
  it is a *false alarm* (still counted as an incident of its runbook).
* **Time to diagnosis**: from ``detected_at`` to the end of the first record that confirmed a
  cause (the index keeps no finer time; the record's timeline does).
* **Time to resolution**: from ``detected_at`` to the end of the first later run of the same
  runbook that confirms nothing (as :func:`smartops_nb.reports.postmortem.resolved_at` says); none yet →
  unresolved.
* **Target**: the seed's response time for the severity (:data:`smartops_nb.response.TARGETS`);
  an incident *met* it when it was diagnosed (resp. resolved) within it.
* **Lacks a post-mortem**: a confirmed incident with no ``postmortem-<incident_id>.md`` (the name
  ``smartops postmortem`` gives) in the archive folder or its ``postmortems/`` folder.

Everything but :func:`load_rows`, :func:`postmortems_in` and the ``plot_*`` functions is a pure
function of a DataFrame of index rows (the columns of :meth:`smartops_nb.records.archive.Archive.list`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from smartops_nb.params import Param, parse_time
from smartops_nb.response import TARGETS

COLUMNS = ["name", "runbook", "severity", "environment", "incident_id", "status", "confirmed", "causes",
           "detected_at", "started_at", "finished_at", "mode", "actions_executed"]
POSTMORTEM_FOLDER = "postmortems"
NOTEBOOK = "incident_review.ipynb"
#: The review notebook's parameters (its parameters cell is generated from these).
PARAMETERS = (
    Param("archive", str, "incidents", "the archive to review: a folder or s3://bucket/prefix"),
    Param("index", str, "", "its index: sqlite or a PostgreSQL DSN (empty: $SMARTOPS_INDEX, else sqlite)"),
    Param("since", str, "", "first day reviewed (ISO 8601 or 7d, 4w) (empty: from the first record)"),
    Param("until", str, "", "last day reviewed (ISO 8601, empty: up to now)"),
)


# -- reading the archive ----------------------------------------------------------------------------
def load_rows(archive: str | Path, index_dsn: str = "") -> pd.DataFrame:
    """The archive's index rows; a folder's records' own metadata when there is no index."""
    from smartops_nb.records.archive import open_archive
    from smartops_nb.records.entries import IndexMissing, describe, public_row
    from smartops_nb.records.storage import record_files

    loc = open_archive(archive, index_dsn or None)
    folder = loc.folder if loc.folder is not None else Path(loc.local_dir)
    try:
        rows = loc.list(limit=0)
    except IndexMissing:
        import nbformat

        rows = []
        for path in record_files(folder):
            try:
                data = path.read_bytes()
                row, _ = describe(nbformat.reads(data.decode(), as_version=4), data, path.name)
            except Exception:  # not a SmartOps record
                continue
            rows.append(public_row(row))
    return frame(rows)


def frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Index rows as a DataFrame with parsed UTC times (missing columns filled)."""
    df = pd.DataFrame(list(rows))
    for c in COLUMNS:
        if c not in df:
            df[c] = pd.Series(dtype=object)
    df = df[COLUMNS + [c for c in df.columns if c not in COLUMNS]].copy()
    for c in ("detected_at", "started_at", "finished_at"):
        df[c] = pd.to_datetime(df[c], utc=True, errors="coerce")
    df["detected_at"] = df["detected_at"].fillna(df["started_at"])
    df["incident_id"] = df["incident_id"].where(df["incident_id"].astype(bool), df["name"])
    df["confirmed"] = df["confirmed"].fillna(False).astype(bool)
    for c in ("causes", "actions_executed"):
        df[c] = df[c].apply(lambda v: list(v) if isinstance(v, (list, tuple)) else [])
    return df.sort_values(["started_at", "name"]).reset_index(drop=True)


def between(df: pd.DataFrame, since: str = "", until: str = "") -> pd.DataFrame:
    """Records detected in [since, until) (ISO times or ``7d``-style ages for ``since``; empty: open)."""
    out = df
    if since:
        from smartops_nb.records.archive import parse_since

        out = out[out["detected_at"] >= pd.Timestamp(parse_since(since))]
    if until:
        out = out[out["detected_at"] < pd.Timestamp(parse_time(until, name="until"))]
    return out


def postmortems_in(archive: str | Path) -> set[str]:
    """Incident ids that have a ``postmortem-<id>.md`` in the archive or its ``postmortems/`` folder
    (for an ``s3://`` archive: under its prefix, or ``postmortems/`` below it)."""
    if str(archive).startswith("s3://"):
        from smartops_nb.records.storage import S3Storage

        names = S3Storage(str(archive)).files(("", POSTMORTEM_FOLDER))
    else:
        folder = Path(archive)
        names = [p.name for where in (folder, folder / POSTMORTEM_FOLDER) if where.is_dir()
                 for p in where.glob("postmortem-*.md")]
    return {Path(n).stem[len("postmortem-"):] for n in names if n.startswith("postmortem-") and n.endswith(".md")}


# -- incidents --------------------------------------------------------------------------------------
def _slug(text: str) -> str:
    from smartops_nb.records.record import slug

    return slug(text)


def incidents(df: pd.DataFrame, postmortems: Iterable[str] = ()) -> pd.DataFrame:
    """One row per incident: runbook, severity, detected, diagnosed, resolved, times, target, met."""
    have = set(postmortems)
    out = []
    for incident_id, g in df.groupby("incident_id", sort=False):
        g = g.sort_values("started_at")
        first = g.iloc[0]
        confirmed = g[g["confirmed"]]
        diagnosed = confirmed["finished_at"].iloc[0] if len(confirmed) else pd.NaT
        resolved = pd.NaT
        if len(confirmed):
            later = g[(g["started_at"] >= confirmed["started_at"].iloc[0]) & ~g["confirmed"]
                      & (g["status"] == "completed") & (g["runbook"] == first["runbook"])]
            if len(later):
                resolved = later["finished_at"].iloc[0]
        severity = first["severity"] or ""
        target = TARGETS.get(severity)
        detected = first["detected_at"]
        ttd = diagnosed - detected if pd.notna(diagnosed) else pd.NaT
        ttr = resolved - detected if pd.notna(resolved) else pd.NaT
        out.append({
            "incident_id": incident_id, "runbook": first["runbook"], "severity": severity,
            "environment": first["environment"], "detected_at": detected, "week": _week(detected),
            "records": len(g), "confirmed": bool(len(confirmed)),
            "causes": sorted({c for cs in g["causes"] for c in cs}),
            "mitigations": [a for acts in g["actions_executed"] for a in acts],
            "diagnosed_at": diagnosed, "resolved_at": resolved,
            "time_to_diagnosis_min": ttd.total_seconds() / 60 if pd.notna(ttd) else float("nan"),
            "time_to_resolution_min": ttr.total_seconds() / 60 if pd.notna(ttr) else float("nan"),
            "target_min": target.total_seconds() / 60 if target else float("nan"),
            "diagnosis_met": bool(target and pd.notna(ttd) and ttd <= target) if len(confirmed) else None,
            "resolution_met": bool(target and pd.notna(ttr) and ttr <= target) if len(confirmed) else None,
            "postmortem": incident_id in have or _slug(incident_id) in have,
            "last_record": g.iloc[-1]["name"],
        })
    return pd.DataFrame(out, columns=INCIDENT_COLUMNS)


INCIDENT_COLUMNS = ["incident_id", "runbook", "severity", "environment", "detected_at", "week", "records", "confirmed",
                    "causes", "mitigations", "diagnosed_at", "resolved_at", "time_to_diagnosis_min",
                    "time_to_resolution_min", "target_min", "diagnosis_met", "resolution_met", "postmortem",
                    "last_record"]


def _week(t) -> str:
    if pd.isna(t):
        return ""
    year, week, _ = t.isocalendar()
    return f"{year}-W{week:02d}"


def per_runbook_week(inc: pd.DataFrame) -> pd.DataFrame:
    """Incidents per runbook (rows) and ISO week (columns)."""
    if inc.empty:
        return pd.DataFrame()
    return inc.pivot_table(index="runbook", columns="week", values="incident_id", aggfunc="count", fill_value=0)


def response_by_severity(inc: pd.DataFrame) -> pd.DataFrame:
    """Per severity, over confirmed incidents: count, median times, target, share diagnosed / resolved in time."""
    c = inc[inc["confirmed"]] if not inc.empty else inc
    rows = []
    for severity in sorted(set(c["severity"])) if not c.empty else []:
        g = c[c["severity"] == severity]
        rows.append({
            "severity": severity, "incidents": len(g), "target_min": g["target_min"].iloc[0],
            "median_time_to_diagnosis_min": g["time_to_diagnosis_min"].median(),
            "median_time_to_resolution_min": g["time_to_resolution_min"].median(),
            "diagnosed_within_target": share(g["diagnosis_met"]),
            "resolved_within_target": share(g["resolution_met"]),
            "unresolved": int(g["resolved_at"].isna().sum()),
        })
    return pd.DataFrame(rows, columns=["severity", "incidents", "target_min", "median_time_to_diagnosis_min",
                                       "median_time_to_resolution_min", "diagnosed_within_target",
                                       "resolved_within_target", "unresolved"])


def share(flags: pd.Series) -> float:
    """Fraction of True among the incidents it applies to (None = not applicable); NaN if none."""
    vals = [bool(v) for v in flags if v is not None and not (isinstance(v, float) and pd.isna(v))]
    return sum(vals) / len(vals) if vals else float("nan")


def top_causes(inc: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """Cause codes by the number of incidents that confirmed them."""
    counts = pd.Series([c for cs in inc.get("causes", []) for c in cs], dtype=object).value_counts().head(n)
    return counts.rename_axis("cause").reset_index(name="incidents")


def mitigations_run(df: pd.DataFrame) -> pd.DataFrame:
    """Executed mitigations by action name (from every record, an action counted once per record)."""
    names = [a.split(" on ", 1)[0] for acts in df.get("actions_executed", []) for a in acts]
    counts = pd.Series(names, dtype=object).value_counts()
    return counts.rename_axis("action").reset_index(name="times")


def lacking_postmortem(inc: pd.DataFrame) -> pd.DataFrame:
    """Confirmed incidents with no post-mortem yet, oldest first."""
    cols = ["incident_id", "runbook", "severity", "detected_at", "causes", "resolved_at", "last_record"]
    if inc.empty:
        return pd.DataFrame(columns=cols)
    return inc[inc["confirmed"] & ~inc["postmortem"]].sort_values("detected_at")[cols].reset_index(drop=True)


def headline(inc: pd.DataFrame) -> dict[str, Any]:
    c = inc[inc["confirmed"]] if not inc.empty else inc
    return {"incidents": len(inc), "confirmed": len(c), "false_alarms": len(inc) - len(c),
            "diagnosed_within_target": share(c["diagnosis_met"]) if len(c) else float("nan"),
            "resolved_within_target": share(c["resolution_met"]) if len(c) else float("nan"),
            "lacking_postmortem": int((c["confirmed"] & ~c["postmortem"]).sum()) if len(c) else 0}


# -- charts (matplotlib; drawn inline in the notebook) ------------------------------------------------
def plot_per_week(table: pd.DataFrame, title: str = "Incidents per runbook and week"):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    if table.empty:
        ax.text(0.5, 0.5, "no incidents in this period", ha="center", va="center")
    else:
        table.T.plot(kind="bar", stacked=True, ax=ax)
        ax.set_xlabel("ISO week")
        ax.set_ylabel("incidents")
        ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    plt.show()
    return fig


def plot_times_by_severity(inc: pd.DataFrame, title: str = "Time to diagnosis and resolution against target"):
    import matplotlib.pyplot as plt

    c = inc[inc["confirmed"]] if not inc.empty else inc
    fig, ax = plt.subplots(figsize=(8, 3.5))
    if c.empty:
        ax.text(0.5, 0.5, "no confirmed incidents in this period", ha="center", va="center")
    else:
        sev = sorted(set(c["severity"]))
        x = {s: i for i, s in enumerate(sev)}
        ax.scatter([x[s] - 0.1 for s in c["severity"]], c["time_to_diagnosis_min"], label="diagnosis", marker="o")
        ax.scatter([x[s] + 0.1 for s in c["severity"]], c["time_to_resolution_min"], label="resolution", marker="s")
        for s in sev:
            t = TARGETS[s].total_seconds() / 60 if s in TARGETS else None
            if t:
                ax.hlines(t, x[s] - 0.35, x[s] + 0.35, colors="#cf222e", linestyles="--",
                          label="target" if s == sev[0] else None)
        ax.set_xticks(range(len(sev)), sev)
        ax.set_ylabel("minutes after detection")
        ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    plt.show()
    return fig


def plot_counts(table: pd.DataFrame, label: str, value: str, title: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.4 * max(len(table), 3) + 1))
    if table.empty:
        ax.text(0.5, 0.5, "none in this period", ha="center", va="center")
    else:
        ax.barh(table[label][::-1], table[value][::-1], color="#0969da")
        ax.set_xlabel(value)
    ax.set_title(title)
    fig.tight_layout()
    plt.show()
    return fig
