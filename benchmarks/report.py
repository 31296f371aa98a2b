"""What every benchmark result records about the machine it ran on, and how the JSON is written."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path


def machine_record(load_at_start: tuple[float, float, float]) -> dict:
    """Cores, the load average when the run started and now (load from other work inflates times), Python."""
    return {
        "cpus": os.cpu_count(),
        "load_avg_at_start": list(load_at_start),
        "load_avg_at_end": list(os.getloadavg()),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_report(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")
