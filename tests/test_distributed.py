"""Exact means across data-parallel processes: ``reduce(..., group=...)`` over ``mx.distributed``.

Launches ``tests/distributed_checks.py`` on 2 and 3 local processes over MLX's ``ring`` backend
(127.0.0.1, each test its own ports, with a timeout); every process must report every case ok.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("distributed_checks.py")
CASES = 4


@pytest.mark.parametrize("processes, port", [(2, 31200), (3, 31300)])
def test_global_mean_over_ranks_equals_one_process_on_the_whole_batch(processes, port):
    launch = Path(sys.executable).with_name("mlx.launch")
    command = [str(launch), "--backend", "ring", "-n", str(processes), "--starting-port", str(port), "--python", sys.executable, str(SCRIPT)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as err:  # mlx.launch stops its processes when it is killed
        pytest.fail(f"{processes} processes did not finish in 120 s: {err.stdout}{err.stderr}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(" ok") == processes * CASES, done.stdout + done.stderr
