"""devices/ansible/rollout.yml: a real `ansible-playbook` run against 127.0.0.1 through a real sshd.

The "devices" (inventory aliases of 127.0.0.1, each with its own bundle root and health port) run the
torch-free board venv of tests/sshd_board.py. There is no systemd PID 1 here, so the role's restart
command is a small stand-in for `systemctl restart`: it stops the device's previous `edgecnn run` and
starts `edgecnn run ROOT/current --health 127.0.0.1:PORT` on a looping real video in the background.

One roll-out to a mixed fleet (one batch): the new bundle has only ONNX artifacts; it verifies on both
devices, the one whose service runs ONNX Runtime switches and answers /healthz 200, the one whose service
is configured for LiteRT (`--backend litert`) never becomes healthy and is rolled back, healthy again on
its previous bundle. Slow: batches of one, where the failed first batch stops the roll-out.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import sshd_board
from conftest import REFERENCE_BUNDLE, run_cli
from sshd_board import board_env, free_port
from test_deploy import onnx_only_copy

from edgecnn.bundle import Bundle, write_manifest
from edgecnn.deploy.activate import bundle_id

sshd, board_python = sshd_board.sshd, sshd_board.board_python  # the fixtures
PLAYBOOK = Path(__file__).resolve().parents[1] / "devices" / "ansible" / "rollout.yml"
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")

# The test's service manager: what `systemctl restart edgecnn` does, minus systemd.
RESTART = """#!/bin/sh
# usage: restart.sh STATE_DIR COMMAND...   stop the run whose pid is in STATE_DIR/run.pid, start COMMAND
set -eu
dir="$1"; shift
if [ -f "$dir/run.pid" ]; then
  pid=$(cat "$dir/run.pid")
  kill "$pid" 2>/dev/null || true
  i=0  # wait for it to exit (a zombie counts as gone)
  while [ -e "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && [ $i -lt 100 ]; do
    sleep 0.1; i=$((i + 1))
  done
fi
setsid nohup "$@" >/dev/null 2>>"$dir/run.log" </dev/null &
echo $! >"$dir/run.pid"
"""


def _health(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


@pytest.fixture
def devices(request, tmp_path, sshd, board_python):
    """Inventory hosts on 127.0.0.1, one per backend in request.param (own root, health port, state dir,
    a service running that backend); their runs are stopped at the end."""
    restart = tmp_path / "restart.sh"
    restart.write_text(RESTART)
    hosts = {}
    for i, backend in enumerate(request.param):
        name = f"board{i + 1}"
        root, state, port = tmp_path / name / "root", tmp_path / name / "state", free_port()
        state.mkdir(parents=True)
        run = [str(board_python), "-m", "edgecnn", "run", str(root / "current"), "--source", str(VTEST), "--loop",
               "--realtime", "--headless", "--health", f"127.0.0.1:{port}", "--backend", backend,
               "--threads", "1"]
        hosts[name] = {"root": root, "state": state, "port": port, "vars": {
            "ansible_host": "127.0.0.1", "edgecnn_root": str(root), "edgecnn_health": f"127.0.0.1:{port}",
            "edgecnn_restart_command": ["sh", str(restart), str(state), *run]}}
    yield hosts
    for h in hosts.values():
        pidfile = h["state"] / "run.pid"
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


def _playbook(tmp_path: Path, sshd, board_python: Path, devices: dict, bundle: Path,
              batch: int) -> subprocess.CompletedProcess:
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line())
    inventory = {"edgecnn_devices": {
        "hosts": {name: h["vars"] for name, h in devices.items()},
        "vars": {"ansible_port": sshd.port, "ansible_user": sshd.user,
                 "ansible_ssh_private_key_file": str(sshd.client_key),
                 "ansible_ssh_common_args": f"-F /dev/null -o IdentitiesOnly=yes -o UserKnownHostsFile={known}",
                 "ansible_python_interpreter": str(board_python),
                 "edgecnn_command": [str(board_python), "-m", "edgecnn"],
                 "edgecnn_restart_become": False, "edgecnn_restart_timeout": 60,
                 "edgecnn_health_retries": 8, "edgecnn_health_delay": 1,
                 "edgecnn_local_tmp": str(tmp_path)}}}
    inv = tmp_path / "inventory.json"  # JSON is YAML: Ansible's YAML inventory plugin reads it
    inv.write_text(json.dumps(inventory))
    control = tempfile.mkdtemp(prefix="acp", dir="/tmp")  # ssh ControlPath sockets need a short path
    env = {**board_env(), "LC_ALL": "C.UTF-8", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_CONFIG": str(PLAYBOOK.with_name("ansible.cfg")),
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"), "ANSIBLE_REMOTE_TMP": str(tmp_path / "ansible-remote"),
           "ANSIBLE_SSH_CONTROL_PATH_DIR": control, "ANSIBLE_HOME": str(tmp_path / "ansible-home")}
    t0 = time.monotonic()
    try:
        res = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(inv), str(PLAYBOOK), "-e",
                              json.dumps({"edgecnn_bundle": str(bundle), "edgecnn_batch": batch})],
                             capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
        (tmp_path / f"ansible-{bundle.name}.log").write_text(res.stdout + res.stderr)  # to read when it fails
        return res
    finally:
        print(f"ansible-playbook {bundle.name} on {len(devices)} device(s): {time.monotonic() - t0:.1f} s")
        shutil.rmtree(control, ignore_errors=True)


def _start(devices: dict, board_python: Path, bundle: Path) -> None:
    """Day 0: each device has `bundle` active (edgecnn bundle activate) and its service running."""
    for h in devices.values():
        assert run_cli("bundle", "activate", bundle, "--root", h["root"], "--backend", "onnxruntime") == 0
        subprocess.run(h["vars"]["edgecnn_restart_command"], check=True, timeout=30, env=board_env())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_health(h["port"]) != 200 for h in devices.values()):
        time.sleep(0.3)
    assert all(_health(h["port"]) == 200 for h in devices.values())


def _bundles(tmp_path: Path) -> tuple[Path, Path, Path, dict[Path, str]]:
    """The running bundle, a new one (same model, another name), and one with only its ONNX artifacts
    (it verifies on the device, but a service configured for `--backend litert` cannot run it)."""
    old = REFERENCE_BUNDLE
    new = tmp_path / "bundles" / "lenet5-digits-v2"  # the same model under another name: a new, healthy bundle
    shutil.copytree(old, new)
    m = json.loads((new / "manifest.json").read_text())
    m["name"] = "lenet5-digits-v2"
    write_manifest(new, m)
    broken = onnx_only_copy(old, tmp_path / "bundles" / "lenet5-digits-onnx")
    return old, new, broken, {b: bundle_id(Bundle.load(b)) for b in (old, new, broken)}


def _check_rolled_out(h: dict, current: str, previous: str, outcome: str) -> None:
    assert os.readlink(h["root"] / "current") == f"bundles/{current}"
    assert _health(h["port"]) == 200
    record = json.loads((h["root"] / "deployed.json").read_text())
    assert (record["bundle"], record["previous"], record["outcome"]) == (current, previous, outcome)
    assert record["health"]["status"] == "ok"


def test_rollout_playbook_syntax(tmp_path):
    """Quick: ansible-playbook parses the playbook and the role (the real roll-outs below are slow)."""
    if not ANSIBLE_PLAYBOOK.is_file():
        pytest.fail("ansible-playbook is missing: pip install 'edgecnn[fleet]' (ansible-core)")
    inv = tmp_path / "inventory.yml"
    inv.write_text("edgecnn_devices:\n  hosts:\n    cam1.local: {}\n")
    env = {**board_env(), "LC_ALL": "C.UTF-8", "ANSIBLE_CONFIG": str(PLAYBOOK.with_name("ansible.cfg")),
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"), "ANSIBLE_HOME": str(tmp_path / "ansible-home")}
    res = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(inv), str(PLAYBOOK), "--list-tasks",
                          "-e", "edgecnn_bundle=/nonexistent"], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    for task in ("Copy the bundle to the device", "Activate the bundle", "Restart the service on the new bundle",
                 "Wait for GET /healthz"):  # (--list-tasks leaves out a block's rescue tasks)
        assert f"edgecnn_bundle : {task}" in res.stdout


@pytest.mark.slow
@pytest.mark.parametrize("devices", [("onnxruntime", "litert")], indirect=True)
def test_ansible_rollout_activates_and_rolls_back_an_unhealthy_device(tmp_path, sshd, board_python, devices):
    if not ANSIBLE_PLAYBOOK.is_file():
        pytest.fail("ansible-playbook is missing: pip install 'edgecnn[fleet]' (ansible-core)")
    old, _, onnx_only, ids = _bundles(tmp_path)
    _start(devices, board_python, old)
    res = _playbook(tmp_path, sshd, board_python, devices, onnx_only, batch=2)
    out = res.stdout
    assert res.returncode != 0, out[-3000:]  # one device failed (and was rolled back)
    assert out.count("PLAY [Roll out an edgecnn bundle]") == 1  # one batch of two
    ok, bad = devices["board1"], devices["board2"]
    _check_rolled_out(ok, ids[onnx_only], ids[old], "activated")
    assert f"rolled back to {ids[old]}, healthy again" in out, out[-3000:]
    _check_rolled_out(bad, ids[old], ids[onnx_only], "rolled back")
    assert "nothing can run this bundle here" in (bad["state"] / "run.log").read_text()  # why it never served
    assert [h["id"] for h in json.loads((bad["root"] / "activations.json").read_text())["history"]] == [ids[old]]
    assert [h["id"] for h in json.loads((ok["root"] / "activations.json").read_text())["history"]] == \
        [ids[old], ids[onnx_only]]


@pytest.mark.slow
@pytest.mark.parametrize("devices", [("litert", "litert")], indirect=True)
def test_ansible_rollout_in_batches_stops_at_a_failed_batch(tmp_path, sshd, board_python, devices):
    old, new, broken, ids = _bundles(tmp_path)
    _start(devices, board_python, old)
    res = _playbook(tmp_path, sshd, board_python, devices, new, batch=1)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert res.stdout.count("PLAY [Roll out an edgecnn bundle]") == 2  # serial: 1 -> two batches
    for h in devices.values():
        _check_rolled_out(h, ids[new], ids[old], "activated")

    res = _playbook(tmp_path, sshd, board_python, devices, broken, batch=1)
    assert res.returncode != 0 and f"rolled back to {ids[new]}, healthy again" in res.stdout, res.stdout[-3000:]
    _check_rolled_out(devices["board1"], ids[new], ids[broken], "rolled back")
    # the failed first batch stopped the roll-out: board2 was never touched
    b2 = devices["board2"]
    assert res.stdout.count("PLAY [Roll out an edgecnn bundle]") == 1
    assert os.readlink(b2["root"] / "current") == f"bundles/{ids[new]}"
    assert not (b2["root"] / "bundles" / ids[broken]).exists()
    assert json.loads((b2["root"] / "deployed.json").read_text())["outcome"] == "activated"
