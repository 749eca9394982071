"""Where autotune keeps its state (studies, the daemon's files, logs, downloaded data), and how
files there are written (private to the user: folders 0o700, files 0o600) and a log read back."""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path

from autotune.errors import UsageError


def autotune_home() -> Path:
    """$AUTOTUNE_HOME, or ~/.autotune. Not created here: writers create what they need."""
    raw = os.environ.get("AUTOTUNE_HOME")
    return Path(raw).expanduser() if raw else Path.home() / ".autotune"


def study_folder(name: str) -> str:
    """A file-system-safe folder name for study `name`: the name's safe characters (at most 40)
    plus a short hash of the whole name, so two names never share a folder and no name (however
    long, or however odd: `..`, a newline) reaches the file system as given."""
    readable = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:40].lstrip(".") or "study"
    digest = hashlib.blake2b(name.encode(), digest_size=4).hexdigest()
    return f"{readable}-{digest}"


def trial_logs(name: str, home: Path | None = None) -> Path:
    """Where the trials of study `name` write their output (one N.log per trial), under `home`
    (the folder of the autotune.db a reader opened), by default autotune_home()."""
    return (home or autotune_home()) / "logs" / "trials" / study_folder(name)


def log_tail(path: str | Path | None, lines: int = 40) -> str:
    """The last `lines` lines of a log (from its last 16 KiB); "" when there is none or it cannot
    be read. A launcher reads its child's this way, the terminal UI a running trial's."""
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def study_dir(name: str) -> Path:
    """Files study `name` keeps besides its trials' records (an inference study's trained model)."""
    return autotune_home() / "studies" / study_folder(name)


def private_file(path: Path) -> Path:
    """Create `path` empty and readable by the user only (0o600) unless it exists, and its folder
    (0o700) unless that exists.

    Databases are created this way before SQLite opens them: SQLite would create them 0o644, and
    they hold study specs and storage URLs. (SQLite gives its -wal and -shm files the same mode.)
    """
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    return path


def ensure_home(home: Path | None = None) -> Path:
    """Create the home directory (0o700) and its logs folder; one clear error if that fails."""
    home = (home or autotune_home()).absolute()
    try:
        created = not home.exists()
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        if created or (home.stat().st_uid == os.getuid() and home.stat().st_mode & 0o077):
            os.chmod(home, 0o700)
        (home / "logs").mkdir(mode=0o700, exist_ok=True)
        probe = home / f".write-test-{os.getpid()}"
        probe.touch(mode=0o600)
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UsageError(
            f"AUTOTUNE_HOME {home} is not usable ({reason}); point AUTOTUNE_HOME at a writable directory"
        ) from None
    return home


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` so readers see the old or the new content, never a part (mode 0o600)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
