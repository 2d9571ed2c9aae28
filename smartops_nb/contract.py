"""Names shared across the kernel boundary and with automation, defined once.

Both sides of a run read these: the host (``execution``: the runner and the warm kernels, ``server``,
``cli``) sets environment variables that the code inside the kernel (``kernel``) reads; the exit codes
are what automation relies on; the record schema version is what an archive reader checks. A module
that needs one of these names imports it from here, never writes its own copy.
"""
from __future__ import annotations

# -- exit codes of every `smartops` command -------------------------------------------------------
EXIT_OK = 0          # the command did its job (a runbook ran to the end, whatever it found)
EXIT_FAILED = 1      # it ran and failed (the notebook failed, a record could not be written, verify found problems)
EXIT_BAD_INPUT = 2   # bad input: a one-line error, nothing done
EXIT_PENDING = 3     # handed on and not finished yet (an approval queued, its outcome still unknown)

# -- the record --------------------------------------------------------------------------------------
RECORD_SCHEMA = 1    # metadata["smartops"]["schema"]

# -- environment: host -> kernel ----------------------------------------------------------------------
STATE_ENV = "SMARTOPS_STATE_FILE"        # where the kernel writes the run's summary after every step
HEADLESS_ENV = "SMARTOPS_HEADLESS"       # set by the runner: no widgets, nobody to click them
CONTACTS_ENV = "SMARTOPS_CONTACTS"       # the parameters file's contacts: section, as JSON
LESSONS_ENV = "SMARTOPS_LESSONS"         # the runbook's lessons from earlier incidents, as JSON (newest first)
PARAMETERS_ENV = "SMARTOPS_PARAMETERS"   # files a live JupyterLab session applies (':'-separated)
APPROVALS_ENV = "SMARTOPS_APPROVALS"     # force the approval widgets on/off in a kernel
SESSION_ENV = "JPY_SESSION_NAME"         # jupyter_server gives its kernels the notebook's path here

# -- environment: configuration of the tool ----------------------------------------------------------
ARCHIVE_ENV = "SMARTOPS_ARCHIVE"         # the archive: a folder or s3://bucket/prefix
INDEX_ENV = "SMARTOPS_INDEX"             # its index: sqlite (beside a folder) or a PostgreSQL DSN
STATE_DIR_ENV = "SMARTOPS_STATE_DIR"     # this machine's state (spool of unsent records, serve.secret): ~/.smartops
FALLBACK_ENV = "SMARTOPS_FALLBACK_DIR"   # where a record the archive refused is kept
NOTEBOOKS_ENV = "SMARTOPS_NOTEBOOKS"     # the runbook notebooks' folder (default: the repository's)
SERVE_TOKEN_ENV = "SMARTOPS_SERVE_TOKEN"  # bearer token of `smartops serve`
QUEUE_ENV = "SMARTOPS_QUEUE"             # the job queue's PostgreSQL DSN (`serve`, `worker`, `queue`)
LAB_TOKEN_ENV = "SMARTOPS_LAB_TOKEN"     # token of `smartops lab`
PUBLIC_URL_ENV = "SMARTOPS_PUBLIC_URL"   # where people reach `smartops serve`'s pages (links in notifications)
TRUSTED_PROXIES_ENV = "SMARTOPS_TRUSTED_PROXIES"   # `smartops serve --trusted-proxy`: reverse proxies (comma-separated)

DEFAULT_ARCHIVE = "incidents"


class ParameterError(ValueError):
    """Bad input (exit 2): the message is one line naming the parameter and the problem."""
