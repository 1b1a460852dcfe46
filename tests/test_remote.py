"""`edgecnn profile --on ssh://...` against a real sshd on 127.0.0.1 and a torch-free board venv."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sshd_board
from conftest import run_cli
from sshd_board import free_port, write_ssh_home

from edgecnn.errors import EdgeCNNError
from edgecnn.profile.report import read_report
from edgecnn.remote import SSHTarget, report_path_for

sshd, board_python, ssh_home = sshd_board.sshd, sshd_board.board_python, sshd_board.ssh_home  # the fixtures


def _one_line_error(capsys, *args) -> str:
    rc = run_cli(*args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("edgecnn: error: ") and "Traceback" not in err[0], err
    return err[0]


def test_profile_on_board_matches_local_schema_and_merges(digits_bundle, sshd, board_python, ssh_home, tmp_path,
                                                          capsys):
    url = sshd.url(str(board_python))
    rc = run_cli("profile", digits_bundle, "--on", url, "--on", "this", "--precision", "fp32", "--threads", "1",
                 "--runs", "40", "--warmup", "5", "--report", tmp_path / "p.json", "--markdown", tmp_path / "p.md")
    out = capsys.readouterr().out
    assert rc == 0, out
    target = SSHTarget.parse(url)
    remote = read_report(report_path_for(tmp_path / "p.json", target.label))  # validated: edgecnn.profile/1
    local = read_report(report_path_for(tmp_path / "p.json", "this"))
    # the same schema as a local profile, plus the block that says where it ran
    assert set(remote) - set(local) == {"remote"} and set(local) <= set(remote)
    assert remote["remote"]["python"] == str(board_python) and remote["remote"]["board"] == target.label
    # every artifact on every backend the board has (its venv has no OpenVINO; this machine may)
    board_backends = {r["backend"] for r in remote["results"]}
    local_rows = [r for r in local["results"] if r["backend"] in board_backends]
    assert [(r["artifact"], r["backend"], r["threads"]) for r in remote["results"]] == \
        [(r["artifact"], r["backend"], r["threads"]) for r in local_rows]
    for r, q in zip(remote["results"], local_rows):
        assert set(r) == set(q) and set(r["latency_ms"]) == set(q["latency_ms"]) and r["latency_ms"]["count"] == 40
    assert set(remote["environment"]) == set(local["environment"])
    # the board's environment is the board venv's: no torch among its libraries, edgecnn from its own wheel
    assert "torch" not in json.dumps(remote["environment"]["libraries"])
    # one merged comparison table: both devices, every artifact
    md = (tmp_path / "p.md").read_text()
    assert f"@ {target.label}" in md and md.count("| lenet5-digits |") == len(remote["results"]) + len(local["results"])
    assert f"@ {target.label}" in out


def test_board_has_no_torch(board_python):
    res = subprocess.run([str(board_python), "-c", "import torch"], capture_output=True, text=True, timeout=60,
                         cwd="/")
    assert res.returncode != 0 and "No module named 'torch'" in res.stderr


def test_unreachable_host_is_one_line(digits_bundle, ssh_home, capsys):
    err = _one_line_error(capsys, "profile", digits_bundle, "--on", f"ssh://root@127.0.0.1:{free_port()}")
    assert "cannot reach the board over SSH" in err and "refused" in err.lower()


def test_unknown_host_key_is_one_line(digits_bundle, sshd, board_python, tmp_path, monkeypatch, capsys):
    home = write_ssh_home(tmp_path / "stranger", sshd, known=False)  # the key is right, the host is unknown
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    err = _one_line_error(capsys, "profile", digits_bundle, "--on", sshd.url(str(board_python)))
    assert "host key not verified" in err and f"ssh -p {sshd.port} {sshd.user}@127.0.0.1" in err


def test_no_edgecnn_on_board_is_one_line_with_install_line(digits_bundle, sshd, ssh_home, tmp_path, capsys):
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-c", "import sys, venv; venv.create(sys.argv[1], with_pip=False)", str(bare)],
                   check=True, timeout=60)
    err = _one_line_error(capsys, "profile", digits_bundle, "--on", sshd.url(str(bare / "bin" / "python")))
    assert "edgecnn is not installed on the board" in err and "pip install 'edgecnn[tflite]'" in err


def test_board_side_failure_comes_back_as_one_line(digits_bundle, sshd, board_python, ssh_home, capsys):
    err = _one_line_error(capsys, "profile", digits_bundle, "--on", sshd.url(str(board_python)),
                          "--precision", "fp16", "--runs", "5")
    assert "failed on the board (exit 2)" in err and "nothing to profile" in err


@pytest.mark.parametrize("url, message", [
    ("http://host", "expected ssh://"),
    ("ssh://u:secret@host", "passwords are not accepted"),
    ("ssh://host:99999", "port"),
    ("ssh://host?pyhton=/x", "unknown option 'pyhton'"),
])
def test_bad_target_urls(url, message):
    with pytest.raises(EdgeCNNError, match=message):
        SSHTarget.parse(url)


def test_target_parts():
    t = SSHTarget.parse("ssh://pi@pi5.local:2222?python=/home/pi/venv/bin/python")
    assert (t.host, t.port, t.username, t.python, t.label) == ("pi5.local", 2222, "pi", "/home/pi/venv/bin/python",
                                                               "pi@pi5.local:2222")
    assert SSHTarget.parse("ssh://pi5").ssh_command() == "ssh pi5"
    assert report_path_for(Path("out/p.json"), "pi@pi5.local:2222") == Path("out/p.pi_pi5.local_2222.json")


def test_tune_on_board_reports_its_sweep(digits_bundle, sshd, board_python, ssh_home, tmp_path, capsys):
    """`edgecnn tune --on`: the sweep runs on the board (its backends, no torch) and its report comes back."""
    url = sshd.url(str(board_python))
    rc = run_cli("tune", digits_bundle, "--on", url, "--threads", "1", "--budget-s", "0.5", "--no-cache",
                 "--report", tmp_path / "t.json")
    out = capsys.readouterr().out
    assert rc == 0, out
    report = json.loads((tmp_path / "t.json").read_text())
    assert report["remote"]["python"] == str(board_python)
    measured = {r["backend"] for r in report["results"] if r["p50_ms"] is not None}
    assert measured and measured <= {"onnxruntime", "litert"}  # the board venv has no OpenVINO
    assert report["choice"] and f"choice on {SSHTarget.parse(url).label}" in out
