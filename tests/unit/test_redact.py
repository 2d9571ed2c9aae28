"""No secret in a record: secrets planted where they enter (a DSN password, an ``env:`` reference,
a pod's env var, log lines) appear nowhere in the saved notebook nor in its HTML export, while the
runbooks still connect and work."""
from __future__ import annotations

from smartops_nb import redact


def test_scrub_masks_log_line_secrets():
    assert redact.scrub("GET /api?token=tk-123456 user=ann") == "GET /api?token=****** user=ann"
    assert redact.scrub("Authorization: Bearer eyJhbGciOi.abc.def") == "Authorization: Bearer ******"
    assert redact.scrub("DB_PASSWORD=hunter22 api_key: k-999999") == "DB_PASSWORD=****** api_key: ******"
    assert redact.scrub("max_tokens=5 keys=10") == "max_tokens=5 keys=10"  # not secrets
    assert redact.scrub('{"line": "token=abc123"}') == '{"line": "token=******"}'  # JSON stays JSON


def test_runner_finds_env_secrets_again_without_the_kernel(monkeypatch):
    from smartops_nb.redact import secrets_in as secrets_of

    monkeypatch.setenv("SMARTOPS_T_DSN", "postgresql://u:pw-from-env@h/db")
    found = secrets_of({"postgres_admin_dsn": "env:SMARTOPS_T_DSN", "redis_url": "redis://:inline-pw@h:6379/0",
                        "mode": "investigate"})
    assert set(found) == {"postgresql://u:pw-from-env@h/db", "pw-from-env", "inline-pw"}


def test_secrets_with_quotes_backslashes_and_non_ascii_are_scrubbed_from_the_notebook():
    import nbformat

    from smartops_nb.records import record

    secrets = ["pässwörd-1", 'p"ssw0rd-2', "back\\slash-3"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"dsn = {s!r}") for s in secrets])
    nb.metadata["papermill"] = {"parameters": {"a": secrets[0], "b": secrets[1], "c": secrets[2]}}
    clean = record.scrub_notebook(nb, secrets)
    text = nbformat.writes(clean)
    for s in secrets:
        assert s not in text and repr(s) not in text

