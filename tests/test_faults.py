"""Faults a cluster throws at ``snn-lats train``, reproduced with real processes: group SIGTERM
with loader workers, kill -9 at random moments, a torchrun worker killed and restarted, a stalled
peer, a changed flag on resume, two writers on one directory, a symlink loop, a full disk.

The oracle of every resume is the same run left alone: its final checkpoint, tensor by tensor.
"""

from __future__ import annotations

import hashlib
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import free_port, image_folder

from snn_lats.engine.checkpoint import CheckpointError, load_checkpoint
from snn_lats.engine.recipe import RecipeError, TrainConfig
from snn_lats.engine.rundir import RunDirectory, RunDirectoryBusy, check_resume

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
# 2 classes x 16 training images at batch 4: 8 steps per epoch in one process, 4 per rank in two.
FLAGS = [
    "--model", "sew_resnet18", "--T", "2", "--width", "4", "--stem", "cifar", "--train-crop-size", "8",
    "--val-resize-size", "8", "--val-crop-size", "8", "-b", "4", "--prune", "lats", "--final-threshold", "0.05",
    "--sops-batches", "1", "--print-freq", "1", "--device", "cpu",
]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return image_folder(tmp_path_factory.mktemp("faults") / "data", per_class=(16, 4), size=12)


def command(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "snn_lats",
        "train",
        "--data-path",
        str(data),
        *FLAGS,
        "--output-dir",
        str(out),
        *extra,
    ]


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=600, env=ENV, **kwargs)


def start(args: list[str], log: Path) -> subprocess.Popen:
    """A run in its own session (process group), as a scheduler starts a job."""
    return subprocess.Popen(args, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=ENV, start_new_session=True)


def wait_for(log: Path, text: str, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while text not in log.read_text():
        assert process.poll() is None, f"the run ended before {text!r}:\n{log.read_text()[-3000:]}"
        assert time.time() < deadline, f"no {text!r} after {timeout} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.01)  # the signals of these tests land within a few steps of the line


def assert_same_run(a: dict, b: dict) -> None:
    assert (a["epoch"], a["step"], a["epoch_step"]) == (b["epoch"], b["step"], b["epoch_step"])
    assert a["model"].keys() == b["model"].keys()
    for key in b["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["pruner"]["thresholds"] == b["pruner"]["thresholds"]
    strip = [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in b["history"]]
    for ra, rb in zip(a["history"], strip, strict=True):
        assert ra["val"] == rb["val"] and ra["train"]["loss"] == rb["train"]["loss"], (ra, rb)


def digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the hash of its content."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def reference_run(data, tmp_path_factory) -> tuple[dict, float]:
    """The uninterrupted single-process run (2 epochs, 2 loader workers): its final checkpoint and
    its wall-clock seconds, start-up included."""
    out = tmp_path_factory.mktemp("reference") / "run"
    start_time = time.monotonic()
    result = run(command(data, out, "--epochs", "2", "-j", "2"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return load_checkpoint(out / "checkpoint.pth"), time.monotonic() - start_time


@pytest.fixture(scope="module")
def reference(reference_run) -> dict:
    return reference_run[0]


# ------------------------------------------------------------------------------------------ preemption


@pytest.mark.slow
def test_group_sigterm_with_loader_workers_checkpoints_and_resumes_exactly(data, reference, tmp_path):
    """``scancel``/requeue signals the whole process group, loader workers included (they used to
    die first and crash the main process mid-step, with no checkpoint)."""
    out, log = tmp_path / "run", tmp_path / "run.log"
    job = start(command(data, out, "--epochs", "2", "-j", "2"), log)
    wait_for(log, "epoch 0 [3/", job)
    os.killpg(job.pid, signal.SIGTERM)
    assert job.wait(timeout=120) == 128 + signal.SIGTERM, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()
    interrupted = load_checkpoint(out / "checkpoint.pth")
    # A step boundary after the line, or an epoch's end when the signal came during its validation
    # (a fast machine can finish a few steps between the log line and the signal).
    assert (interrupted["epoch"], interrupted["epoch_step"]) >= (0, 3)

    # The requeued job runs the same command with --resume auto; 1 worker instead of 2 is allowed.
    result = run(command(data, out, "--epochs", "2", "-j", "1", "--resume", "auto"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert_same_run(load_checkpoint(out / "checkpoint.pth"), reference)


@pytest.mark.slow
def test_ctrl_c_is_answered_at_once_and_a_second_one_aborts_in_one_line(data, tmp_path):
    """The first Ctrl-C says at once that the run stops after this step; a second one, within that
    step, aborts with one line and exit 130, and the last checkpoint written stays whole. Steps
    are made slow (96 px crops of a wider network) so that the second lands inside one."""
    out, log = tmp_path / "run", tmp_path / "run.log"
    slow = ["--epochs", "3", "--width", "16", "--train-crop-size", "96", "-b", "8", "-j", "0"]
    job = start(command(data, out, *slow), log)
    wait_for(log, "epoch 1 [1/", job)  # epoch 0's checkpoint is written
    before = (out / "checkpoint.pth").read_bytes()
    os.killpg(job.pid, signal.SIGINT)
    wait_for(log, "SIGINT received: stopping after this step", job, timeout=10)  # at once, mid-step
    os.killpg(job.pid, signal.SIGINT)
    assert job.wait(timeout=120) == 130
    text = log.read_text()
    assert "Traceback" not in text and text.rstrip().endswith(
        "snn-lats train: aborted by a second Ctrl-C; the last checkpoint written is intact"
    ), text[-2000:]
    assert (out / "checkpoint.pth").read_bytes() == before and load_checkpoint(out / "checkpoint.pth")["epoch"] == 1


@pytest.mark.slow
def test_kill_9_at_random_moments_leaves_loadable_files_and_an_exact_resume(data, reference_run, tmp_path):
    reference, wall_s = reference_run
    out, rng, kills = tmp_path / "run", random.Random(0), 0
    for _ in range(6):
        job = start(command(data, out, "--epochs", "2", "-j", "2", "--resume", "auto"), tmp_path / "run.log")
        # Moments as fractions of the reference run's wall-clock, so that the first attempt is killed
        # before it ends on a fast machine as on a loaded one; at most half of it, as this run may
        # go twice as fast as the reference did (it ended before a kill at 0.74 once, in CI).
        time.sleep(rng.uniform(0.1, 0.5) * wall_s)
        if job.poll() is not None:
            break
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
        kills += 1
        for path in out.glob("*.pth"):  # whatever the moment, every file there is a whole checkpoint
            load_checkpoint(path)
    # Finish the run (if it finished in the loop, --resume auto only evaluates its last checkpoint).
    result = run(command(data, out, "--epochs", "2", "-j", "2", "--resume", "auto"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert not list(out.glob(".*.tmp"))  # the half-written files of the killed writers were removed
    assert_same_run(load_checkpoint(out / "checkpoint.pth"), reference)
    assert kills >= 1


# ------------------------------------------------------------------------------------------ torchrun


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master-port={free_port()}", *args]


@pytest.fixture(scope="module")
def two_process_reference(data, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("ddp-reference") / "run"
    result = run(torchrun("-m", "snn_lats", "train", *command(data, out, "--epochs", "3", "-j", "1")[4:]))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return load_checkpoint(out / "checkpoint.pth")


@pytest.mark.slow
def test_torchrun_restarts_a_killed_worker_and_resume_auto_continues_exactly(data, two_process_reference, tmp_path):
    """One of 2 gloo workers is killed with SIGKILL mid-epoch; torchrun (--max-restarts 2) starts
    both again, and --resume auto continues from the last checkpoint."""
    out, log = tmp_path / "run", tmp_path / "run.log"
    train = command(data, out, "--epochs", "3", "-j", "1", "--resume", "auto")[4:]
    job = start(torchrun("--max-restarts=2", "-m", "snn_lats", "train", *train), log)
    wait_for(log, "epoch 1 [2/", job)
    agent_children = subprocess.run(["pgrep", "-P", str(job.pid)], capture_output=True, text=True).stdout.split()
    assert len(agent_children) == 2, agent_children
    os.kill(int(agent_children[-1]), signal.SIGKILL)
    assert job.wait(timeout=300) == 0, log.read_text()[-4000:]
    assert log.read_text().count("Configuration:") == 2  # the first round and the restarted one
    assert_same_run(load_checkpoint(out / "checkpoint.pth"), two_process_reference)


@pytest.mark.slow
def test_group_sigterm_under_torchrun_checkpoints_every_rank_and_resumes_exactly(data, two_process_reference, tmp_path):
    """Each rank checkpoints its own RNG state and epoch sums: the resumed 2-process run equals the
    uninterrupted one (with 2 loader workers per rank here, 1 there: the same augmentation)."""
    out, log = tmp_path / "run", tmp_path / "run.log"
    train = command(data, out, "--epochs", "3", "-j", "2", "--resume", "auto")[4:]
    job = start(torchrun("-m", "snn_lats", "train", *train), log)
    wait_for(log, "epoch 1 [2/", job)
    os.killpg(job.pid, signal.SIGTERM)
    job.wait(timeout=120)  # torchrun's own code is 1 (its agent got the signal); the ranks' is 143
    assert log.read_text().count("training interrupted by SIGTERM; checkpoint of the last completed step") == 2
    interrupted = load_checkpoint(out / "checkpoint.pth")
    # A step boundary after the line, or an epoch's end when the signal came during its validation.
    assert (interrupted["epoch"], interrupted["epoch_step"]) >= (1, 2) and len(interrupted["rng"]) == 2
    result = run(torchrun("-m", "snn_lats", "train", *train))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert_same_run(load_checkpoint(out / "checkpoint.pth"), two_process_reference)


@pytest.mark.parametrize(
    "message, failed",
    [
        # what gloo raised in the test below when the stall hit DDP's buffer broadcast (CI, 2026-12-07)
        ("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Application timeout caused pair closure", True),
        ("[../third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 5000ms for recv", True),
        ("[../third_party/gloo/gloo/transport/tcp/pair.cc:598] Connection closed by peer [127.0.0.1]:1234", True),
        ("The size of tensor a (3) must match the size of tensor b (4) at non-singleton dimension 1", False),
    ],
)
def test_what_a_peer_s_failure_looks_like(message, failed):
    from snn_lats.engine.distributed import peer_failure

    assert peer_failure(RuntimeError(message)) is failed


@pytest.mark.slow
def test_a_stalled_peer_becomes_an_error_after_the_timeout(data, tmp_path):
    out, log = tmp_path / "run", tmp_path / "run.log"
    # 100 epochs (about a minute) that the stall cuts short: a peer stopped after its last
    # collective goes unnoticed, and a 3-epoch run could end within the moment the stop takes.
    train = command(data, out, "--epochs", "100", "-j", "0", "--dist-timeout", "5")[4:]
    job = start(torchrun("-m", "snn_lats", "train", *train), log)
    wait_for(log, "epoch 0 [2/", job)
    workers = subprocess.run(["pgrep", "-P", str(job.pid)], capture_output=True, text=True).stdout.split()
    assert len(workers) == 2, workers
    os.kill(int(workers[-1]), signal.SIGSTOP)  # one rank stops answering
    started = time.time()
    code = job.wait(timeout=300)
    assert code != 0
    assert "error: another process of the job stopped answering (for --dist-timeout 5 s) or died" in log.read_text(), (
        log.read_text()[-4000:]
    )
    assert time.time() - started < 120


# ------------------------------------------------------------------------------------------ resume


@pytest.mark.slow
def test_resume_refuses_a_changed_trajectory_and_changes_nothing(data, tmp_path):
    out = tmp_path / "run"
    result = run(command(data, out, "--epochs", "1", "-j", "0"))
    assert result.returncode == 0, result.stderr[-3000:]
    before = digest(out)
    for flags, named in (
        (["--lr", "0.5"], "--lr 0.5"),
        (["--epochs", "3"], "--epochs 3"),
        (["-b", "2"], "--batch-size 2"),
        (["--final-threshold", "0.1"], "--final-threshold 0.1"),
        (["--seed", "1"], "--seed 1"),
    ):
        refused = run(
            [sys.executable, "-m", "snn_lats", "train", "--resume", str(out / "checkpoint.pth"), "--data-path",
             str(data), *flags]
        )  # fmt: skip
        assert refused.returncode == 2, refused.stderr
        assert f"error: resuming would change the run: {named}" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
        assert digest(out) == before
    # What only changes how the run runs is accepted: the run is complete, so it only evaluates.
    accepted = run(
        [sys.executable, "-m", "snn_lats", "train", "--resume", str(out / "checkpoint.pth"), "--print-freq", "7",
         "-j", "1", "--data-path", str(data)]
    )  # fmt: skip
    assert accepted.returncode == 0, accepted.stderr[-3000:]


@pytest.mark.slow
def test_resume_path_writes_next_to_the_checkpoint_and_never_into_the_original(data, tmp_path):
    original = tmp_path / "original"
    job = start(command(data, original, "--epochs", "2", "-j", "0"), tmp_path / "a.log")
    wait_for(tmp_path / "a.log", "epoch 1 [2/", job)
    job.send_signal(signal.SIGTERM)
    assert job.wait(timeout=120) == 128 + signal.SIGTERM
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "checkpoint.pth").write_bytes((original / "checkpoint.pth").read_bytes())
    before = digest(original)
    result = run([sys.executable, "-m", "snn_lats", "train", "--resume", str(copy / "checkpoint.pth")])
    assert result.returncode == 0, result.stderr[-3000:]
    assert digest(original) == before  # the copied run's summary did not land in the original
    assert (copy / "summary.json").is_file() and load_checkpoint(copy / "checkpoint.pth")["epoch"] == 2


def test_resume_at_another_world_size_is_refused():
    config = TrainConfig(dataset="digits")
    checkpoint = {"config": config.to_dict(), "world_size": 2}
    check_resume(config, checkpoint, world_size=2)
    with pytest.raises(RecipeError, match="written by 2 process.*this run has 1"):
        check_resume(config, checkpoint, world_size=1)


# ------------------------------------------------------------------------------------------ run directory


@pytest.mark.slow
def test_a_second_writer_is_refused_and_the_first_runs_on_unchanged(data, reference, tmp_path):
    out, log = tmp_path / "run", tmp_path / "first.log"
    # The second writer is a real `snn-lats train`, its modules imported beforehand (the package
    # is lazy) so that it starts within a second of the go (the first run lasts a few seconds only).
    second = subprocess.Popen(
        [sys.executable, "-c", "import sys, snn_lats.cli.train, snn_lats.cli.evaluate, snn_lats.engine.rundir, "
         "snn_lats.engine.trainer; from snn_lats.cli import main; "
         "print('ready', flush=True); "
         f"sys.stdin.readline(); sys.exit(main({command(data, out, '--epochs', '2', '-j', '0')[3:]!r}))"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    assert second.stdout.readline().strip() == "ready"
    first = start(command(data, out, "--epochs", "2", "-j", "2"), log)
    wait_for(log, "epoch 0 [2/", first)
    _, stderr = second.communicate("go\n", timeout=120)
    assert second.returncode == 2, stderr[-2000:]
    assert "is in use by snn-lats train, pid" in stderr and str(first.pid) in stderr, stderr
    assert first.wait(timeout=300) == 0, log.read_text()[-3000:]
    assert_same_run(load_checkpoint(out / "checkpoint.pth"), reference)  # as if alone
    assert len(list((out / "tensorboard").iterdir())) == 1  # one event file: the first run's

    # A fresh run into the finished run's directory is refused; --resume auto would continue it.
    before = digest(out)
    fresh = run(command(data, out, "--epochs", "2", "-j", "0"))
    assert fresh.returncode == 2 and "already holds a run's checkpoint.pth; --resume auto" in fresh.stderr
    assert digest(out) == before


def test_the_lock_is_exclusive_between_processes_and_released_by_a_dying_holder(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from snn_lats.engine.rundir import RunDirectory; "
         f"d = RunDirectory({str(tmp_path)!r}); d.lock(); d.announce(); print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(RunDirectoryBusy, match=f"pid {holder.pid}"):
        RunDirectory(tmp_path).lock()
    holder.kill()
    holder.wait()
    run_dir = RunDirectory(tmp_path)
    run_dir.lock()  # the kernel dropped the dead holder's lock
    run_dir.release()


# ------------------------------------------------------------------------------------------ data, disk


def test_a_symlink_loop_in_the_image_folder_is_refused_and_links_elsewhere_work(data, tmp_path):
    looped = tmp_path / "looped"
    image_folder(looped, per_class=(16, 4), size=12)
    (looped / "train" / "blue" / "loop").symlink_to("..")
    result = run(command(looped, tmp_path / "run", "--epochs", "1", "-j", "0"))
    assert result.returncode == 2
    assert "train/blue/loop' is a symbolic link to a folder already in the data set" in result.stderr
    assert not (tmp_path / "run").exists()

    # A class folder on another disk, linked in: its images count once, under its own label.
    linked = tmp_path / "linked"
    image_folder(linked, per_class=(16, 4), size=12)
    elsewhere = tmp_path / "elsewhere"
    (linked / "train" / "red").rename(elsewhere)
    (linked / "train" / "red").symlink_to(elsewhere, target_is_directory=True)
    from snn_lats.data import scan_image_folder

    classes, samples = scan_image_folder(linked / "train")
    assert classes == ["blue", "red"] and len(samples) == 32
    assert sorted(label for _, label in samples) == [0] * 16 + [1] * 16


def _limit_file_size(limit: int):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


@pytest.mark.slow
@pytest.mark.parametrize("limit, refused", [(16 << 10, "tensorboard"), (256 << 10, "checkpoint")])
def test_a_full_disk_is_one_error_line_and_the_previous_checkpoint_is_intact(data, tmp_path, limit, refused):
    """The disk is "full" for files over ``limit`` (RLIMIT_FSIZE: a real write error from the
    kernel, EFBIG, at the size a full disk would refuse). Config files fit either way; at 16 KiB
    the TensorBoard event file (weight histograms) is refused first, at 256 KiB the checkpoint."""
    out = tmp_path / "run"
    job = start(command(data, out, "--epochs", "2", "-j", "0"), tmp_path / "a.log")
    wait_for(tmp_path / "a.log", "epoch 0 [3/", job)
    job.send_signal(signal.SIGTERM)
    assert job.wait(timeout=120) == 128 + signal.SIGTERM
    previous = (out / "checkpoint.pth").read_bytes()

    result = run(command(data, out, "--epochs", "2", "-j", "0", "--resume", "auto"), preexec_fn=_limit_file_size(limit))
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    expected = {
        "tensorboard": f"cannot write the TensorBoard events in {str(out / 'tensorboard')!r}: File too large",
        "checkpoint": f"cannot write {str(out / 'checkpoint.pth')!r}: File too large; the previous checkpoint "
        "is intact",
    }[refused]
    assert errors == [f"snn-lats train: error: {expected}"], result.stderr
    assert (out / "checkpoint.pth").read_bytes() == previous
    load_checkpoint(out / "checkpoint.pth")
    assert not list(out.glob(".*.tmp"))


def test_a_checkpoint_of_an_unknown_format_version_is_refused(tmp_path):
    from snn_lats.engine.checkpoint import FORMAT

    torch.save({"format": FORMAT, "version": 99, "model": {}}, tmp_path / "future.pth")
    with pytest.raises(CheckpointError, match="reads versions 1, 2"):
        load_checkpoint(tmp_path / "future.pth")


def test_temporaries_of_a_killed_writer_are_removed_and_nothing_else(tmp_path):
    (tmp_path / ".checkpoint.pth.k2j4x9qa.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / ".summary.json.0f8d7c1b.tmp").write_text("{")
    (tmp_path / "checkpoint.pth").write_bytes(b"kept")
    (tmp_path / "notes.tmp").write_text("a user's file, not one of ours")
    run_dir = RunDirectory(tmp_path)
    run_dir.lock()
    removed = run_dir.clean_temporaries()
    run_dir.release()
    assert sorted(p.name for p in removed) == [".checkpoint.pth.k2j4x9qa.tmp", ".summary.json.0f8d7c1b.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".snn-lats.lock", "checkpoint.pth", "notes.tmp"]
