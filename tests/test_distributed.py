"""Exact means across data-parallel processes: ``reduce(..., group=...)`` over ``mx.distributed``.

Launches ``tests/distributed_checks.py`` on 2 and 3 local processes over MLX's ``ring`` backend
(127.0.0.1, each test its own ports, a timeout, and the whole process group stopped after it);
every process must report every case ok.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("distributed_checks.py")
CASES = 10
TIMEOUT = 120


@pytest.mark.parametrize("processes, port", [(2, 31200), (3, 31300)])
def test_global_mean_over_ranks_equals_one_process_on_the_whole_batch(processes, port):
    launch = Path(sys.executable).with_name("mlx.launch")
    command = [str(launch), "--backend", "ring", "-n", str(processes), "--starting-port", str(port), "--python", sys.executable, str(SCRIPT)]
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = job.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        stdout, stderr = job.communicate()
        pytest.fail(f"{processes} processes did not finish in {TIMEOUT} s: {stdout}{stderr}")
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode == 0, stdout + stderr
    assert stdout.count(" ok") == processes * CASES, stdout + stderr
