"""`edgecnn bundle activate|list` and `edgecnn service unit|install|uninstall|status` (docs/deploy.md).

Activation runs on the committed reference bundle (export/lenet5-digits: real digits, ONNX + TFLite,
fp32 + int8, 20 real sample images); the unit is checked by systemd's own `systemd-analyze verify`.
This machine has no systemd PID 1, so `install` is exercised up to where systemctl would take over.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REFERENCE_BUNDLE, run_cli

from edgecnn.bundle import Bundle, write_manifest
from edgecnn.deploy.activate import bundle_id
from edgecnn.deploy.unit import UnitSpec, parse_exec_start, render_unit

SYSTEMD_ANALYZE = Path("/usr/bin/systemd-analyze")
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def _one_line_error(capsys, *args) -> str:
    rc = run_cli(*args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("edgecnn: error: ") and "Traceback" not in err[0], err
    return err[0]


def onnx_only_copy(src: Path, dst: Path) -> Path:
    """The reference bundle without its TFLite files: a second, different (and still valid) bundle."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    for a in manifest["artifacts"]:
        if a["format"] == "tflite":
            (dst / a["file"]).unlink()
    manifest["artifacts"] = [a for a in manifest["artifacts"] if a["format"] != "tflite"]
    write_manifest(dst, manifest)
    return dst


def _state(root: Path) -> tuple[str, list[str], list[str]]:
    """(current link target, bundle dirs, every entry of root and bundles/ incl. hidden ones)."""
    entries = sorted(p.name for p in root.iterdir()) + sorted(p.name for p in (root / "bundles").iterdir())
    return os.readlink(root / "current"), sorted(p.name for p in (root / "bundles").iterdir()), entries


# -- bundle activate ------------------------------------------------------------------------------


def test_activate_switch_keep_and_rollback(tmp_path, capsys):
    root = tmp_path / "root"
    a = REFERENCE_BUNDLE
    b = onnx_only_copy(a, tmp_path / "b")
    ida, idb = bundle_id(Bundle.load(a)), bundle_id(Bundle.load(b))
    assert ida != idb and ida.startswith("lenet5-digits-")

    assert run_cli("bundle", "activate", a, "--root", root, "--threads", "1") == 0
    out = capsys.readouterr().out
    # every artifact verified on this machine's backends against the 20 real sample images
    assert out.count("20/20 samples right") == 4 and "onnxruntime" in out and "litert" in out
    assert os.readlink(root / "current") == f"bundles/{ida}"
    assert Bundle.load(root / "current").name == "lenet5-digits"

    assert run_cli("bundle", "activate", b, "--root", root, "--json") == 0
    res = json.loads(capsys.readouterr().out)
    assert (res["current"], res["previous"], res["changed"]) == (idb, ida, True)
    assert [c["precision"] for c in res["checks"]] == ["fp32", "int8"]  # onnx only: the tflite files are gone
    assert all(c["correct"] + c["model_mistakes"] == c["total"] == 20 for c in res["checks"])
    assert os.readlink(root / "current") == f"bundles/{idb}"

    # the same bundle again: nothing to do, and Ansible can tell (changed false)
    assert run_cli("bundle", "activate", b, "--root", root, "--json") == 0
    assert json.loads(capsys.readouterr().out)["changed"] is False

    assert run_cli("bundle", "activate", "--rollback", "--root", root, "--json") == 0
    res = json.loads(capsys.readouterr().out)
    assert (res["current"], res["previous"]) == (ida, idb)
    assert os.readlink(root / "current") == f"bundles/{ida}"
    assert run_cli("bundle", "list", "--root", root, "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["current"] == ida and [h["id"] for h in listed["history"]] == [ida] and listed["other"] == [idb]
    # nothing older to go back to
    assert "no previous bundle to roll back to" in _one_line_error(capsys, "bundle", "activate", "--rollback",
                                                                    "--root", root)


def test_activate_keeps_only_n_previous(tmp_path, capsys):
    root = tmp_path / "root"
    bundles = [REFERENCE_BUNDLE, onnx_only_copy(REFERENCE_BUNDLE, tmp_path / "b")]
    c = onnx_only_copy(REFERENCE_BUNDLE, tmp_path / "c")
    m = json.loads((c / "manifest.json").read_text())
    m["name"] = "lenet5-digits-c"
    write_manifest(c, m)
    bundles.append(c)
    for bundle in bundles:
        assert run_cli("bundle", "activate", bundle, "--root", root, "--keep", "1", "--backend", "onnxruntime") == 0
    capsys.readouterr()
    ids = [bundle_id(Bundle.load(x)) for x in bundles]
    current, dirs, _ = _state(root)
    assert current == f"bundles/{ids[2]}" and dirs == sorted(ids[1:])
    history = json.loads((root / "activations.json").read_text())["history"]
    assert [h["id"] for h in history] == ids[1:]


@pytest.mark.parametrize("sabotage, message", [
    ("artifact", "model.onnx: sha256 does not match the manifest"),
    ("sample", "samples wrong on this device"),
])
def test_failed_activation_changes_nothing(tmp_path, capsys, sabotage, message):
    root = tmp_path / "root"
    # the running bundle is another one (a copy of the reference itself would be "already current")
    running = onnx_only_copy(REFERENCE_BUNDLE, tmp_path / "running")
    assert run_cli("bundle", "activate", running, "--root", root, "--backend", "onnxruntime") == 0
    capsys.readouterr()
    before = _state(root)
    history = (root / "activations.json").read_bytes()
    bad = tmp_path / "bad"
    shutil.copytree(REFERENCE_BUNDLE, bad)
    if sabotage == "artifact":
        data = bytearray((bad / "model.onnx").read_bytes())
        data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the weights
        (bad / "model.onnx").write_bytes(bytes(data))
    else:
        # a real digit that the model gets right, labelled as another class (file name and manifest agree)
        m = json.loads((bad / "manifest.json").read_text())
        rec = next(r for r in m["samples"] if r.get("reference_prediction") == r["label"])
        other = next(c for c in m["classes"] if c != rec["label"])
        new_file = f"samples/{other}_9.png"
        (bad / rec["file"]).rename(bad / new_file)
        rec.update(file=new_file, label=other, reference_prediction=other)
        write_manifest(bad, m)
    err = _one_line_error(capsys, "bundle", "activate", bad, "--root", root, "--backend", "onnxruntime")
    assert message in err and "nothing was changed" in err
    assert _state(root) == before  # same link, same bundles, no staging directory or temp link left
    assert (root / "activations.json").read_bytes() == history


def test_activate_bad_input_is_one_line(tmp_path, capsys):
    root = tmp_path / "root"
    assert "bundle not found" in _one_line_error(capsys, "bundle", "activate", tmp_path / "nope", "--root", root)
    assert "no current bundle to roll back from" in _one_line_error(capsys, "bundle", "activate", "--rollback",
                                                                     "--root", root)
    (root / "current").mkdir(parents=True)
    assert "is not a symlink" in _one_line_error(capsys, "bundle", "activate", REFERENCE_BUNDLE, "--root", root)
    assert "not both" in _one_line_error(capsys, "bundle", "activate", REFERENCE_BUNDLE, "--rollback",
                                         "--root", root)


def test_bundle_commands_do_not_import_torch(tmp_path):
    code = (f"import sys; from edgecnn.cli import main; "
            f"rc = main(['bundle', 'activate', {str(REFERENCE_BUNDLE)!r}, '--root', {str(tmp_path)!r}, "
            f"'--backend', 'onnxruntime', '--json']); "
            f"rc2 = main(['service', 'unit', '--source', '0', '--root', {str(tmp_path)!r}, '--run-as', 'root']); "
            f"assert rc == rc2 == 0; assert 'torch' not in sys.modules, 'torch imported'")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


@pytest.mark.slow
def test_activate_verifies_a_series_bundle_on_its_windows(tmp_path, capsys):
    """A series bundle's samples are CSV windows (BasicMotions, real accelerometer/gyroscope data)."""
    from test_series_pipeline import BASIC_MOTIONS

    out = tmp_path / "ckpt"
    assert run_cli("train", "cnn1d", "--data", f"ts:{BASIC_MOTIONS}", "--epochs", "15", "--out", out,
                   "--seed", "0") == 0
    assert run_cli("export", out / "best.pt", "--formats", "onnx", "--out", tmp_path / "cnn1d-bm") == 0
    capsys.readouterr()
    assert run_cli("bundle", "activate", tmp_path / "cnn1d-bm", "--root", tmp_path / "root", "--json") == 0
    res = json.loads(capsys.readouterr().out)
    windows = len(list((tmp_path / "cnn1d-bm" / "samples").glob("*.csv")))
    assert windows >= 4 and res["changed"] and res["checks"]
    assert all(c["total"] == windows and c["correct"] + c["model_mistakes"] == windows for c in res["checks"])


# -- service unit ---------------------------------------------------------------------------------


def _verify(unit: Path) -> None:
    """systemd's own parser: exit 0 and not one warning about the unit (unknown keys/values only warn)."""
    if not SYSTEMD_ANALYZE.is_file():
        pytest.fail("systemd-analyze is missing (Debian package systemd; scripts/setup.sh installs it)")
    res = subprocess.run([str(SYSTEMD_ANALYZE), "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and unit.name not in res.stderr, res.stderr


@pytest.mark.parametrize("user", [False, True])
def test_service_unit_passes_systemd_analyze_verify(tmp_path, capsys, user):
    root = tmp_path / "edge root"  # a space: the unit must quote it
    args = ["service", "unit", "--source", "http://cam.local:8080/video?x=1%20&y=$HOME", "--source", "0",
            "--root", root, "--predictions", root / "predictions.jsonl", "--no-health", *(["--user"] if user else ["--run-as", "pi"]),
            "--", "--threads", "2", "--serve", "127.0.0.1:8090"]
    assert run_cli(*args) == 0
    text = capsys.readouterr().out
    unit = tmp_path / "edgecnn.service"
    unit.write_text(text)
    _verify(unit)
    for key in ("Type=notify", "NotifyAccess=main", "WatchdogSec=30", "Restart=always", "NoNewPrivileges=yes"):
        assert f"\n{key}\n" in text
    if user:
        assert "ProtectSystem" not in text and "User=" not in text and "WantedBy=default.target" in text
    else:
        assert "\nProtectSystem=strict\n" in text and "\nPrivateTmp=yes\n" in text and "\nUser=pi\n" in text
        assert f'\nReadWritePaths="{root}"\n' in text
    # nothing that would hide the camera's device nodes
    for key in ("PrivateDevices=", "DeviceAllow=", "DevicePolicy=", "ProtectClock="):
        assert f"\n{key}" not in text
    # the command systemd will run is exactly the edgecnn run command line, quoting included
    argv = parse_exec_start(text)
    assert argv == [sys.executable, "-m", "edgecnn", "run", str(root / "current"), "--source",
                    "http://cam.local:8080/video?x=1%20&y=$HOME", "--source", "0", "--headless", "--reconnect-timeout", "0",
                    "--predictions",
                    str(root / "predictions.jsonl"), "--threads", "2", "--serve", "127.0.0.1:8090"]


def test_service_unit_refuses_what_run_would_refuse(tmp_path, capsys):
    base = ["service", "unit", "--source", "0", "--root", tmp_path, "--run-as", "pi", "--no-health"]
    assert "edgecnn run would refuse these options" in _one_line_error(capsys, *base, "--", "--no-such-flag")
    assert "must be an absolute path" in _one_line_error(capsys, *base, "--python", "python3")
    assert "not after --" in _one_line_error(capsys, *base, "--", "--source", "1")
    spec = UnitSpec(sources=["0"], root=tmp_path, name="a/b", health=None)
    with pytest.raises(Exception, match="unit name"):
        render_unit(spec)


def test_service_status_shows_the_health_answer_of_a_real_run(tmp_path, capsys):
    """`edgecnn service status --health` against `edgecnn run --health` on a looping real video."""
    from sshd_board import free_port

    port = free_port()
    run = subprocess.Popen([sys.executable, "-m", "edgecnn", "run", str(REFERENCE_BUNDLE), "--source", str(VTEST),
                            "--loop", "--realtime", "--headless", "--health", f"127.0.0.1:{port}", "--threads", "1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline, rc = time.monotonic() + 60, 1
        while time.monotonic() < deadline and run.poll() is None and rc != 0:
            time.sleep(0.3)
            rc = run_cli("service", "status", "--health", f"127.0.0.1:{port}")
        out = capsys.readouterr().out.strip().splitlines()
        assert rc == 0, (out[-1:], run.poll())
        code_body = out[-1].split(f"health http://127.0.0.1:{port}/healthz: ")[1]
        assert code_body.startswith("200 ") and json.loads(code_body[4:])["status"] == "ok"
    finally:
        run.terminate()
        run.wait(timeout=30)
    assert run_cli("service", "status", "--health", f"127.0.0.1:{port}") == 1
    assert "no answer" in capsys.readouterr().out


def test_service_install_uninstall_without_systemd(tmp_path, capsys):
    units = tmp_path / "units"
    base = ["--source", "0", "--root", tmp_path / "root", "--run-as", "pi", "--no-health", "--", "--serve",
            "127.0.0.1:9"]
    if not Path("/run/systemd/system").is_dir():  # this machine: no systemd PID 1, so nothing may be written
        err = _one_line_error(capsys, "service", "install", *base)
        assert "systemd is not running on this machine" in err and "nothing was installed" in err
        assert not Path("/etc/systemd/system/edgecnn.service").exists()
    assert run_cli("service", "install", "--unit-dir", units, "--name", "cam1", *base) == 0
    _verify(units / "cam1.service")
    # status reads the health address from the installed unit; nothing listens there: exit 1, said why
    assert run_cli("service", "status", "--unit-dir", units, "--name", "cam1") == 1
    assert "health http://127.0.0.1:9/healthz: no answer" in capsys.readouterr().out
    assert run_cli("service", "uninstall", "--unit-dir", units, "--name", "cam1") == 0
    assert not (units / "cam1.service").exists()
    assert "no unit" in _one_line_error(capsys, "service", "uninstall", "--unit-dir", units, "--name", "cam1")
