"""`make bench-perf`: every performance script, one after the other, each printing ratios
measured within its own run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
SCRIPTS = [
    ["methods_ratio.py", "--repeats", "3"],
    ["shadows.py"],
    ["unlearn_stacked.py"],
    ["bench_stages.py"],
    ["gpu_check.py", "--tiny"],
]

if __name__ == "__main__":
    for script, *args in SCRIPTS:
        print(f"\n## {script} {' '.join(args)}\n", flush=True)
        subprocess.run([sys.executable, str(HERE / script), *args], check=True)
