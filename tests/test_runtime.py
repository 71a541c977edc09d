"""medvlm.runtime.keep_freed_memory: the `medvlm` command's glibc malloc settings."""

import os
import platform
import subprocess
import sys

import pytest

import medvlm.runtime

# 20 times: allocate and touch 40 MiB (above glibc's largest adaptive mmap threshold, 32 MiB), free it; print the
# minor page faults of the loop
FAULTS = """
import resource, sys
import numpy as np
from medvlm.runtime import keep_freed_memory
print(keep_freed_memory())
np.ones(10 << 20, dtype=np.float32)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    np.ones(10 << 20, dtype=np.float32)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(setting: str) -> tuple[str, int]:
    env = {**os.environ, medvlm.runtime.ENV: setting}
    out = subprocess.run([sys.executable, "-c", FAULTS], env=env, capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    assert _faults("0")[0] == "False"
    applied, tuned = _faults("1")
    _, default = _faults("0")
    assert applied == "True"
    assert default > 20 * 100  # each loop maps fresh pages (here 10,640 faults in all)
    assert tuned < default / 20


def test_the_command_sets_it_before_running_a_verb(monkeypatch, tmp_path):
    from medvlm.cli import main

    calls = []
    monkeypatch.setattr(medvlm.runtime, "keep_freed_memory", lambda: calls.append(1) or True)
    records = tmp_path / "reports.jsonl"
    records.write_text('{"id": "a", "text": "No pneumothorax."}\n')
    assert main(["label", str(records), "--out", str(tmp_path / "labels.csv"), "--quiet"]) == 0
    assert calls == [1]
