"""How findings, tables and the record summary look to a person reading the notebook."""
from __future__ import annotations

import html
from typing import Any

from smartops_nb.records.render import badge, summary_html, summary_text

SUMMARY_MIME = "application/vnd.smartops.summary+json"


def _display(bundle: dict[str, Any]) -> None:
    # the kernel scrubs what it shows: the runner scrubs the record again, but a live notebook
    # (JupyterLab, plain papermill) has no runner behind it
    from smartops_nb import redact

    bundle = {k: redact.scrub_obj(v) for k, v in bundle.items()}
    try:
        from IPython.display import display
    except ImportError:  # plain Python (CLI, tests): print the text
        print(bundle.get("text/plain", ""))
        return
    display(bundle, raw=True)


def show_finding(finding) -> None:
    text = f"[{finding.status}] {finding.check}: {finding.summary}"
    _display({"text/plain": text, "text/html": f"<p>{badge(finding.status)} <b>{html.escape(finding.check)}</b>: "
              f"{html.escape(finding.summary)}</p>"})


def show_table(df, title: str = "") -> None:
    """A DataFrame (or list of dicts) as an HTML table with an optional title."""
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        df = pd.DataFrame(df)
    head = f"<h4>{html.escape(title)}</h4>" if title else ""
    body = df.to_html(index=False, border=0) if len(df) else "<p><i>(no rows)</i></p>"
    _display({"text/plain": (title + "\n" if title else "") + df.to_string(index=False), "text/html": head + body})


def show_message(text: str, status: str = "ok") -> None:
    _display({"text/plain": text, "text/html": f"<p>{badge(status)} {html.escape(text)}</p>"})


def show_summary(summary: dict[str, Any]) -> None:
    _display({"text/plain": summary_text(summary), "text/html": summary_html(summary), SUMMARY_MIME: summary})


def show_lessons(lessons: list[dict[str, Any]], link=None) -> None:
    """"Learned from earlier incidents", newest first; ``link(incident_id)`` gives an incident's page."""
    if not lessons:
        return
    text = ["Learned from earlier incidents:"]
    items = []
    for x in lessons:
        where = link(x["incident_id"]) if link else ""
        text.append(f"- {x['at'][:10]} {x['incident_id']}: {x['text']} ({x['by_whom']})" + (f" {where}" if where else ""))
        inc = html.escape(x["incident_id"])
        ref = f"<a href='{html.escape(where)}'>{inc}</a>" if where else inc
        items.append(f"<li>{html.escape(x['at'][:10])} {ref}: {html.escape(x['text'])} "
                     f"<i>({html.escape(x['by_whom'])})</i></li>")
    _display({"text/plain": "\n".join(text),
              "text/html": f"<div class='smartops-lessons'><b>Learned from earlier incidents</b><ul>{''.join(items)}</ul></div>"})
