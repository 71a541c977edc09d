"""End-to-end training runs on a tiny config: resume after SIGKILL, and two-process data parallel."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

TINY = ["model.preset_options={image_size: 32, patch_size: 8, vision_hidden_size: 32, text_hidden_size: 64, vocab_size: 300}",
        "components.vision=full", "components.language=full", "run.progress=false", "run.tensorboard=false",
        "optim.lr=3e-3", "run.log_every_steps=1"]


# the convolutional stem's batch norm statistics move with training: resume must restore them too
CONV_STEM = "model.preset_options={image_size: 32, patch_size: 8, vision_stem: conv, vision_hidden_size: 32, text_hidden_size: 64, vocab_size: 300}"


def _command(dataset, out, *extra):
    return [sys.executable, "-m", "medvlm.cli", "train", f"data.train={dataset / 'train.json'}",
            f"run.output_dir={out}", *TINY, *extra]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def _weights(run_dir):
    return load_file(run_dir / "model" / "model.safetensors")


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_to_the_same_weights(tiny_cxr, tmp_path):
    # batches grouped by length (tasks mixed), loss over the data's mean tokens, reports drawn 1.5 times per
    # epoch (a fresh random half once more each epoch): all must resume exactly too
    steps = ["optim.max_steps=24", "optim.batch_size=4", "run.save_every_steps=4", "run.keep_last=10", CONV_STEM,
             "data.group_by_length=true", "data.group_mix_tasks=true", "optim.loss_weighting=token_global",
             "data.task_weights={report: 1.5}"]
    subprocess.run(_command(tiny_cxr, tmp_path / "straight", *steps), check=True, env=_env(), capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_command(tiny_cxr, killed, *steps), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "checkpoints" / "step-000008").is_dir():
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "model").exists(), "the run finished before SIGKILL; the test did not interrupt it"

    subprocess.run(_command(tiny_cxr, killed, *steps), check=True, env=_env(), capture_output=True)
    starts = [json.loads(line) for line in (killed / "log.jsonl").read_text().splitlines()
              if json.loads(line)["kind"] == "start"]
    assert starts[-1]["resumed"] is True
    straight, resumed = _weights(tmp_path / "straight"), _weights(killed)
    assert straight.keys() == resumed.keys()
    assert any(name.endswith("running_var") for name in straight)
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(tiny_cxr, tmp_path):
    common = ["optim.max_steps=3", "optim.grad_accum=2", "run.seed=1"]
    subprocess.run(_command(tiny_cxr, tmp_path / "one", "optim.batch_size=4", *common),
                   check=True, env=_env(), capture_output=True)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"]
    result = subprocess.run([*torchrun, *_command(tiny_cxr, tmp_path / "two", "optim.batch_size=2", *common)[1:]],
                            env=_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    start = json.loads((tmp_path / "two" / "log.jsonl").read_text().splitlines()[0])
    assert start["processes"] == 2, "torchrun did not start two processes"
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-5, msg=name)
