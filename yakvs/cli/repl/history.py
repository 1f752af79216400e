"""Where the REPL keeps its history: the XDG data folder, as pgcli and iredis do."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

HISTORY_ENV = "YAKVS_HISTORY_FILE"


def history_path(environ: Mapping[str, str] | None = None) -> Path:
    """$YAKVS_HISTORY_FILE, else $XDG_DATA_HOME/yakvs/history, else ~/.local/share/yakvs/history."""
    env = os.environ if environ is None else environ
    override = env.get(HISTORY_ENV)
    if override:
        return Path(override).expanduser()
    # XDG says a relative XDG_DATA_HOME is invalid and must be ignored.
    data_home = env.get("XDG_DATA_HOME", "")
    if os.path.isabs(data_home):
        return Path(data_home) / "yakvs" / "history"
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home / ".local" / "share" / "yakvs" / "history"
