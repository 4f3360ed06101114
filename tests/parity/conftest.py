"""Shared pytest fixtures for the parity tier.

Each test builds a tiny random model (or input) with an independent
implementation, writes it in the real file format, runs the turbodiff CLI on
it and compares numbers. The seed of every test is printed so a failure can be
replayed with TD_TEST_SEED=<n>.
"""
import os
import pathlib
import subprocess
import time

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("TD_BUILD", ROOT / "build"))


@pytest.fixture
def td_cli():
    exe = BUILD / "tools" / "turbodiff"
    if not exe.exists():
        pytest.fail(f"turbodiff CLI not built at {exe} (set TD_BUILD)")
    return exe


def run_td(exe, *args, check=True, timeout=600):
    """Run the CLI; returns CompletedProcess with text stdout/stderr."""
    p = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"turbodiff {' '.join(map(str, args))} failed ({p.returncode}): {p.stderr}")
    return p


@pytest.fixture
def seed(request):
    s = int(os.environ.get("TD_TEST_SEED", time.time_ns() % (2**31)))
    print(f"{request.node.name}: seed {s} (replay with TD_TEST_SEED={s})")
    return s


def rel_l2(ours, ref):
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, f"shape {ours.shape} vs reference {ref.shape}"
    assert np.all(np.isfinite(ours)), "non-finite values in our output"
    den = np.linalg.norm(ref)
    return float(np.linalg.norm(ours - ref) / (den if den > 0 else 1.0))
