"""This machine's CPU and memory now (psutil) and the study's device."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from autotune.tui import format as fmt
from autotune.tui.widgets.text_pane import TextPane


def _bar(fraction: float, width: int = 12) -> str:
    filled = round(max(0.0, min(fraction, 1.0)) * width)
    return "█" * filled + "░" * (width - filled)


class HardwarePane(TextPane):
    DEFAULT_CSS = """
    HardwarePane { height: auto; }
    """

    def show(self, system: dict[str, Any], hardware: dict[str, Any], live: list[dict[str, Any]]) -> None:
        text = Text(no_wrap=True, overflow="crop")
        cpu = system.get("cpu_percent")
        if cpu is not None:
            text.append(f"CPU  {_bar(cpu / 100)} {fmt.percent(cpu / 100):>5} of {system.get('cpu_count', '?')} cores\n")
        used, total = system.get("memory_used"), system.get("memory_total")
        if used is not None and total:
            text.append(f"RAM  {_bar(used / total)} {fmt.nbytes(used)} / {fmt.nbytes(total)}\n")
        device = hardware.get("device_type")
        name = hardware.get("device_name") or ""
        text.append(f"dev  {device or '?'} {name}".rstrip())
        if device == "cuda":
            total_gpu = hardware.get("gpu_memory_bytes")
            peak = max((t.get("peak_memory_bytes") or 0 for t in live), default=0)
            text.append("\nGPU  ")
            if total_gpu:
                text.append(f"{_bar(peak / total_gpu)} {fmt.nbytes(peak)} / {fmt.nbytes(total_gpu)} peak")
            else:
                text.append(f"peak {fmt.nbytes(peak)}")
        self.set(text)
