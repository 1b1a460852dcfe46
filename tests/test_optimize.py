"""`edgecnn optimize` on the session's LeNet-5 digits checkpoint: a small real search, Ctrl-C and resume,
a budget no trial meets, bad input; and (slow) the same search timed on a board over SSH."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sshd_board
from conftest import REPO, run_cli

from edgecnn.bundle import Bundle
from edgecnn.optimize.report import choose
from edgecnn.optimize.trials import TrialLog

sshd, board_python, ssh_home = sshd_board.sshd, sshd_board.board_python, sshd_board.ssh_home  # the fixtures

# onnxruntime only: the trial count must not depend on which other backends this machine has
SMALL = ("--ratios", "0,0.3", "--finetune-epochs", "1", "--formats", "onnx", "--backends", "onnxruntime",
         "--threads", "1", "--runs", "30", "--warmup", "5", "--qat-epochs", "0")


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def test_optimize_small_search_ctrl_c_resumes_and_picks_fastest_within_budget(digits_ckpt, tmp_path, capsys):
    out = tmp_path / "opt"
    args = ["optimize", str(digits_ckpt), "--data", "digits", "--max-drop", "1.0", "--out", str(out), *SMALL]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("EDGECNN_DEBUG", None)
    # SIGINT back to its default in the child: a parent started in the background may ignore it, and Python
    # installs its KeyboardInterrupt handler only where SIGINT is not ignored at start-up
    proc = subprocess.Popen([sys.executable, "-m", "edgecnn", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=REPO,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None and len(_lines(out / "trials.jsonl")) < 3:
            time.sleep(0.2)  # the unpruned bundle's 3 trials (fp32, fp16, int8) are in: Ctrl-C while pruning
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "run the same command again to continue" in err.strip().splitlines()[-1]
    kept = _lines(out / "trials.jsonl")
    assert len(kept) >= 3 and all(t["status"] == "ok" for t in kept)
    assert not (out / "bundle").exists()  # nothing claimed before the search ended

    assert run_cli(*args) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "optimize.json").read_text())
    assert report["schema"] == "edgecnn.optimize/1" and report["trials_resumed"] == len(kept)
    trials = TrialLog(out / "trials.jsonl").measured()
    assert len(trials) == 6 and {t["ratio"] for t in trials} == {0.0, 0.3}
    for t in kept:  # the interrupted run's trials were reused, not measured again
        assert [x["measured"] for x in trials if x["ratio"] == t["ratio"] and x["precision"] == t["precision"]] \
            == [t["measured"]]
    # the chosen point is the fastest measured trial within the budget (recomputed from the log)
    best, within = choose(trials, 1.0)
    assert within and min(within, key=lambda t: t["latency_ms"]["p50"]) is best
    chosen = report["chosen"]
    assert (chosen["ratio"], chosen["precision"], chosen["backend"], chosen["threads"]) == \
        (best["ratio"], best["precision"], best["backend"], best["threads"])
    assert chosen["drop_points"] <= 1.0 and chosen["p50_ms"] == best["latency_ms"]["p50"]
    assert f"fastest of the {len(within)} measured trial(s) within the 1-point budget" in chosen["why"]
    # the chosen bundle: that artifact alone, integrity checked, same accuracy through the chosen backend
    b = Bundle.load(out / "bundle")
    b.check_integrity()
    assert len(b.artifacts) == 1 and b.artifacts[0].precision == best["precision"]
    assert b.manifest["optimized"]["backend"] == best["backend"]
    assert chosen["final_check"]["accuracy"] == pytest.approx(best["accuracy"], abs=0.002)
    assert (out / "pareto.png").stat().st_size > 10_000 and "| * |" in (out / "optimize.md").read_text()
    assert "chosen: fastest" in printed

    # a third run measures nothing new and picks the same point
    assert run_cli(*args) == 0
    again = json.loads((out / "optimize.json").read_text())
    assert again["trials_resumed"] == 6 and again["chosen"]["p50_ms"] == chosen["p50_ms"]


def test_budget_no_trial_meets_names_the_closest(digits_ckpt, tmp_path, capsys):
    out = tmp_path / "opt"
    rc = run_cli("optimize", digits_ckpt, "--data", "digits", "--max-drop", "0.5", "--out", out, "--ratios", "0.9",
                 "--finetune-epochs", "0", "--formats", "onnx", "--precisions", "fp32", "--threads", "1",
                 "--runs", "10", "--warmup", "2", "--no-progress")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert "no trial is within 0.5 point(s)" in err[0] and "closest: prune 90% onnx fp32" in err[0]
    report = json.loads((out / "optimize.json").read_text())  # everything measured is still written
    assert report["chosen"] is None and report["closest"]["drop_points"] > 0.5 and not (out / "bundle").exists()


@pytest.mark.parametrize("extra, message", [
    (("--data", "fashion-mnist"), "optimize measures accuracy on the checkpoint's own test split"),
    (("--data", "digits", "--ratios", "1.2"), "--ratios must be in [0, 1)"),
    (("--data", "digits", "--precisions", "int4"), "unknown 'int4'"),
    (("--data", "digits", "--target", "ftp://x"), "use 'this' (this machine) or ssh://"),
])
def test_bad_input_is_one_line(digits_ckpt, tmp_path, capsys, extra, message):
    rc = run_cli("optimize", digits_ckpt, "--out", tmp_path / "o", *extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err


def test_out_folder_of_another_search_is_refused(digits_ckpt, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "search.json").write_text(json.dumps({"schema": "edgecnn.optimize-search/1", "checkpoint_sha256": "0" * 64}))
    rc = run_cli("optimize", digits_ckpt, "--data", "digits", "--out", out)
    err = capsys.readouterr().err
    assert rc == 2 and "holds a search of another checkpoint" in err


@pytest.mark.slow
def test_optimize_target_ssh_board(digits_ckpt, sshd, board_python, ssh_home, tmp_path, capsys):
    """The same kind of search, latency measured on the torch-free board over SSH."""
    out = tmp_path / "opt"
    url = sshd.url(str(board_python))
    rc = run_cli("optimize", digits_ckpt, "--data", "digits", "--target", url, "--out", out, "--ratios", "0",
                 "--formats", "onnx,tflite", "--precisions", "fp32,int8", "--threads", "1", "--runs", "30",
                 "--warmup", "5", "--qat-epochs", "0", "--no-progress")
    assert rc == 0, capsys.readouterr().err
    report = json.loads((out / "optimize.json").read_text())
    trials = TrialLog(out / "trials.jsonl").measured(url)
    assert report["target"]["name"] == url and len(trials) == 4
    assert {t["backend"] for t in trials} == {"onnxruntime", "litert"}
    best, _ = choose(trials, 1.0)
    assert report["chosen"]["p50_ms"] == best["latency_ms"]["p50"] and report["chosen"]["target"] == url
