"""A trial that runs the user's own training script (`study start --script train.py`).

The script runs in the trial process as `python train.py ARGS` would run it (`__main__`, its own
folder first on sys.path, sys.argv set), with `autotune.session()` returning this trial's
session: the settings, budget and target, and the pipe to the study for pruning and progress.
The result is what the session measured (autotune.session.Session.finish).
"""

from __future__ import annotations

import os
import runpy
import sys
import traceback
from typing import TYPE_CHECKING, Any

import torch

from autotune import sessions
from autotune.budget import Budget
from autotune.errors import RunError, Unsupported
from autotune.run.child import describe_error
from autotune.run.types import RunResult

if TYPE_CHECKING:
    from autotune.hardware import Hardware
    from autotune.launch.requests import ScriptRequest
    from autotune.registry import Registry


def run_script(
    request: "ScriptRequest", settings: dict[str, Any], registry: "Registry", hardware: "Hardware", reporter: Any
) -> RunResult:
    path = os.path.abspath(request.script)
    session = sessions.Session(
        settings, budget=Budget(**request.budget), options=request.options, registry=registry, hardware=hardware,
        device=request.device, on_eval=reporter.on_eval, on_progress=reporter.on_progress, in_trial=True,
    )
    sessions.activate(session)
    argv, path_before = sys.argv, list(sys.path)
    sys.argv = [path, *request.script_args]
    sys.path.insert(0, os.path.dirname(path))
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (None, 0):
            session.result.status, session.result.error = "failed", f"the script exited with code {exc.code}"
    except Unsupported as exc:
        session.result.status, session.result.error = "unsupported", str(exc)
    except torch.OutOfMemoryError as exc:
        session.result.status, session.result.error = "oom", f"out of memory: {str(exc).splitlines()[0]}"
    except RunError as exc:
        session.result.status, session.result.error = "failed", str(exc)
    except Exception as exc:
        session.result.traceback = traceback.format_exc()
        session.result.status = "failed"
        session.result.error = f"the script raised {describe_error(exc)}"
    finally:
        sys.argv, sys.path[:] = argv, path_before
        sessions.activate(None)
        if session.tuned is not None:  # FIT_END unless the script failed, then the cleanups
            session.tuned.close(ended=session.result.status not in ("failed", "oom", "unsupported"))
    return session.finish()
