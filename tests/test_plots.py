"""Report plots and progress output (issue 16): ratios as linear bars from 0 with a line at 1.0, accuracy axes
fitted to the data within [0, 100] with the budget line, configurations named "1 thread" (never "t1"), and no
progress-bar carriage returns in piped logs. Checked on the matplotlib figures of real reports (real profiles,
a real optimize search, the recorded benchmark in docs/benchmarks), not on PNG pixels."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest
from conftest import REFERENCE_BUNDLE, REPO
from plot_checks import (
    TERSE,
    assert_accuracy_axis,
    assert_config_labels,
    assert_ratio_axis,
    axis_titled,
    figure_texts,
)

from edgecnn.profile import plots
from edgecnn.profile.profiler import profile_bundle

PROFILE = ["profile", str(REFERENCE_BUNDLE), "--backend", "onnxruntime", "--precision", "fp32", "--threads", "1",
           "--runs", "50", "--warmup", "2"]


def _edgecnn(args: list[str], *, without_tqdm: bool = False, stderr_tty: bool = False) -> tuple[int, bytes, bytes]:
    """Run the CLI in a fresh process: (rc, stdout, stderr); stderr is a pipe, or a pseudo-terminal."""
    code = ("import sys\n" + ("sys.modules['tqdm'] = None  # import tqdm raises ImportError\n" if without_tqdm else "")
            + "from edgecnn.cli import main\nsys.exit(main(sys.argv[1:]))")
    cmd = [sys.executable, "-c", code, *args]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    if not stderr_tty:
        p = subprocess.run(cmd, capture_output=True, env=env, cwd=REPO, timeout=600)
        return p.returncode, p.stdout, p.stderr
    leader, follower = pty.openpty()
    # a real terminal's size (a fresh pseudo-terminal is 0 x 0 and tqdm draws nothing into 0 columns)
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=follower, env=env, cwd=REPO)
    os.close(follower)
    err = b""
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the child's end is closed
            break
        if not data:
            break
        err += data
    os.close(leader)
    out = proc.stdout.read()
    return proc.wait(timeout=60), out, err


@pytest.mark.parametrize("without_tqdm", [False, True], ids=["tqdm", "plain-counter"])
def test_piped_profile_has_no_progress_debris_but_a_terminal_gets_a_bar(without_tqdm):
    rc, out, err = _edgecnn(PROFILE, without_tqdm=without_tqdm)
    assert rc == 0, err[-2000:]
    assert b"\r" not in out and b"\r" not in err, err[-500:]
    assert b"model.onnx" in out and b"(1 thread)" not in err  # the table printed, no bar drawn
    # on a terminal the same run does draw its bar (tqdm's, or the plain counter) on stderr
    rc, out, err = _edgecnn(PROFILE, without_tqdm=without_tqdm, stderr_tty=True)
    assert rc == 0, err[-2000:]
    assert b"\rmodel.onnx onnxruntime (1 thread)" in err, err[-500:]
    assert b"\r" not in out


def test_piped_train_has_no_progress_debris(tmp_path):
    rc, out, err = _edgecnn(["train", "lenet5", "--data", "digits", "--epochs", "1", "--train-limit", "300",
                             "--out", str(tmp_path / "run"), "--seed", "0"])
    assert rc == 0, err[-2000:]
    assert b"\r" not in out and b"\r" not in err, err[-500:]
    assert b"epoch 1/1" in out


@pytest.fixture(scope="module")
def reports():
    """Real profiles of the committed reference bundle: 1 and 2 threads (batch 1), and default threads at batch 2."""
    quiet = {"progress": False, "log": lambda s: None}
    by_threads = profile_bundle(REFERENCE_BUNDLE, backend="onnxruntime", threads="1,2", runs=20, warmup=2,
                                per_op=True, **quiet)
    batched = profile_bundle(REFERENCE_BUNDLE, backend="onnxruntime", precision="fp32", threads=None, batch=2,
                             runs=20, warmup=2, **quiet)
    return by_threads, batched


def test_profile_plots_name_threads_in_words(reports):
    by_threads, batched = reports
    fig = plots.latency_figure(by_threads)
    legend = [t.get_text() for t in axis_titled(fig, "latency CDF").get_legend().get_texts()]
    assert legend == ["model.onnx onnxruntime (1 thread)", "model.onnx onnxruntime (2 threads)",
                      "model.int8.onnx onnxruntime (1 thread)", "model.int8.onnx onnxruntime (2 threads)"]
    assert_config_labels(figure_texts(fig))  # every configuration batch 1: no batch in the labels
    assert not any("batch" in t for t in figure_texts(fig))
    lo, hi = axis_titled(fig, "latency CDF").get_ylim()
    assert lo == 0 and 1 <= hi < 1.1  # a fraction of runs
    per_op = plots.per_op_figure(by_threads["results"][0])
    assert_config_labels(figure_texts(per_op), "model.onnx onnxruntime (1 thread)")

    fig = plots.reports_figure([by_threads, batched])
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(ticks) == 5 and fig.axes[0].get_xscale() == "log"  # latency may stay on a log axis
    # one configuration is batch 2, so every label names its batch
    assert_config_labels(ticks, "model.onnx onnxruntime (1 thread, batch 1)", "(2 threads, batch 1)",
                         "model.onnx onnxruntime (default threads, batch 2)")
    assert not fig.axes[0].patches  # dots on the log axis, not bars (a bar's length there means nothing)


def test_benchmark_figure_of_the_recorded_benchmark():
    """docs/benchmarks/lenet5-digits: a real `edgecnn benchmark` result, re-plotted."""
    from edgecnn.profile.benchmark import benchmark_figure, read_benchmark

    result = read_benchmark(REPO / "docs" / "benchmarks" / "lenet5-digits" / "benchmark.json")
    rows = result["rows"]
    fig = benchmark_figure(result)
    eager = rows[0]["latency_ms"]["p50"]
    assert rows[0]["format"] == "pytorch"
    assert_ratio_axis(axis_titled(fig, "speed-up"), [eager / r["latency_ms"]["p50"] for r in rows])
    ax = axis_titled(fig, "lenet5 on digits")
    assert ax.get_xscale() == "log"
    assert_accuracy_axis(ax, [100 * r["accuracy"] for r in rows], [100 * rows[0]["accuracy"] - 1.0])
    assert ax.get_ylim()[1] - ax.get_ylim()[0] < 10  # 97.2-97.3% and the 96.3% line: not drawn on 0-100
    assert_config_labels(figure_texts(fig), "(1 thread)")


def test_optimize_report_plot_ratios_budget_and_labels(digits_ckpt, tmp_path):
    """A real, small search (no prune / prune 90% without fine-tuning, ONNX fp32/int8, 1 thread), piped."""
    from matplotlib.colors import to_rgba

    from edgecnn.optimize.report import choose, pareto_figure, plain_baseline, shown_trials
    from edgecnn.optimize.trials import TrialLog

    out = tmp_path / "opt"
    rc, out_text, err = _edgecnn(["optimize", str(digits_ckpt), "--data", "digits", "--max-drop", "1.0", "--out", str(out),
                           "--ratios", "0,0.9", "--finetune-epochs", "0", "--formats", "onnx", "--precisions",
                           "fp32,int8", "--backends", "onnxruntime", "--threads", "1", "--runs", "20",
                           "--warmup", "2", "--qat-epochs", "0"])
    assert rc == 0, err[-2000:]
    assert b"\r" not in out_text and b"\r" not in err  # prune, export, int8 calibration, measure: all piped
    report = json.loads((out / "optimize.json").read_text())
    trials = TrialLog(out / "trials.jsonl").measured()
    chosen, _ = choose(trials, 1.0)
    base = plain_baseline(trials)
    assert chosen is not None and base is not None
    base_acc = report["baseline_accuracy"]
    fig = pareto_figure(trials, chosen, base, base_acc, 1.0, "search")
    shown = shown_trials(trials, chosen, base)
    p50 = lambda t: t["latency_ms"]["p50"]  # noqa: E731
    ratio_ax = axis_titled(fig, "speed-up")
    assert_ratio_axis(ratio_ax, [p50(base) / p50(t) for t in shown])
    gold = [p.get_width() for p in ratio_ax.patches if p.get_facecolor() == to_rgba("gold")]
    assert gold == [pytest.approx(p50(base) / p50(chosen))]  # the chosen trial's bar, and only it
    acc_ax = axis_titled(fig, "search")
    # the 90%-pruned trials sit far below the budget: the axis holds them and the lines, inside [0, 100]
    assert_accuracy_axis(acc_ax, [100 * t["accuracy"] for t in trials], [100 * base_acc, 100 * base_acc - 1.0])
    assert_config_labels(figure_texts(fig), "no prune onnx fp32 onnxruntime (1 thread)")
    table = [line for line in (out / "optimize.md").read_text().splitlines() if line.startswith("|")]
    assert table and not any(TERSE.search(line) for line in table)
    assert any("(1 thread)" in line for line in table)


@pytest.mark.parametrize("values, lines, scale, want", [
    ([97.0, 97.4, 98.0], [], 100, (96.3, 98.7)),  # close points: not 0-100
    ([97.0, 97.1], [], 100, (95.85, 98.25)),  # 0.1 point apart: at least a 2-point span, not a cliff
    ([99.9, 100.0], [], 100, (97.6, 100.0)),  # clamped at 100, the span kept
    ([0.4, 0.5], [], 100, (0.0, 2.4)),  # clamped at 0
    ([12.0, 96.9], [95.9], 100, (0.0, 100.0)),  # far points and the budget line: all of them shown
    ([0.26, 0.97], [], 1, (0.148, 1.0)),  # fractions
])
def test_accuracy_limits(values, lines, scale, want):
    assert plots.accuracy_limits(values, lines, scale=scale) == pytest.approx(want, abs=1e-6)
