"""Reading TOML on every Python autotune supports: tomllib from 3.11, its backport tomli before."""

from __future__ import annotations

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

TOMLDecodeError = tomllib.TOMLDecodeError
loads = tomllib.loads
load = tomllib.load

__all__ = ["TOMLDecodeError", "load", "loads"]
