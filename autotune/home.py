"""Where autotune keeps its state: studies, the daemon's files, logs, downloaded data."""

from __future__ import annotations

import os
from pathlib import Path


def autotune_home() -> Path:
    """$AUTOTUNE_HOME, or ~/.autotune. Not created here: writers create what they need."""
    raw = os.environ.get("AUTOTUNE_HOME")
    return Path(raw).expanduser() if raw else Path.home() / ".autotune"
