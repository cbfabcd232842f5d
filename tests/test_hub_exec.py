"""``hub exec`` passes SIGTERM on to the command it runs, so no recipe run outlives its Hub."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

CHILD = """
import pathlib, signal, sys, time
got, ready = map(pathlib.Path, sys.argv[1:3])
def stop(signum, frame):
    got.write_text("SIGTERM")
    sys.exit(143)
signal.signal(signal.SIGTERM, stop)
ready.write_text("ready")
time.sleep(120)
"""


@pytest.mark.timeout(60)
def test_sigterm_to_hub_exec_reaches_its_command(tmp_path):
    got, ready = tmp_path / "got", tmp_path / "ready"
    cmd = [sys.executable, "-m", "hubtools", "hub", "exec", "--no-seed", "--data", str(tmp_path / "hub"), "--"]
    proc = subprocess.Popen([*cmd, sys.executable, "-c", CHILD, str(got), str(ready)])
    deadline = time.monotonic() + 45
    while not ready.exists():
        assert proc.poll() is None, "hub exec ended before its command started"
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # to hub exec alone, not its process group
    assert proc.wait(timeout=30) == 143
    assert got.read_text() == "SIGTERM"
