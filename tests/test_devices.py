"""Device detection on fake /proc, /sys, /etc and /dev trees; device profiles; `edgecnn info`.

The fake files copy what the real boards expose (device-tree strings are NUL-terminated, cpuinfo
lists Arm "CPU part" codes, Jetsons carry /etc/nv_tegra_release).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgecnn.cli import main
from edgecnn.devices import detect as det
from edgecnn.devices.profiles import apply_profile, load_profile, profile_names, validate_profile
from edgecnn.errors import EdgeCNNError


def arm_cpuinfo(part: str, cores: int, model_line: str | None = None) -> str:
    blocks = [
        f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
        f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: {part}\nCPU revision\t: 3\n"
        for i in range(cores)
    ]
    tail = f"Revision\t: c03114\nModel\t\t: {model_line}\n" if model_line else ""
    return "\n".join(blocks) + "\n" + tail


def write(root: Path, rel: str, content: str | bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)


def video_node(root: Path, n: int, name: str, index: int = 0) -> None:
    write(root, f"dev/video{n}", b"")
    write(root, f"sys/class/video4linux/video{n}/name", name + "\n")
    write(root, f"sys/class/video4linux/video{n}/index", f"{index}\n")


DEBIAN_OS = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n'
UBUNTU_2204 = 'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nNAME="Ubuntu"\nVERSION_ID="22.04"\nVERSION_CODENAME=jammy\n'


@pytest.fixture
def pi4_root(tmp_path: Path) -> Path:
    write(tmp_path, "proc/device-tree/model", b"Raspberry Pi 4 Model B Rev 1.4\x00")
    write(tmp_path, "proc/device-tree/compatible", b"raspberrypi,4-model-b\x00brcm,bcm2711\x00")
    write(tmp_path, "proc/cpuinfo", arm_cpuinfo("0xd08", 4, "Raspberry Pi 4 Model B Rev 1.4"))
    write(tmp_path, "etc/os-release", DEBIAN_OS)
    video_node(tmp_path, 0, "HD USB Camera: HD USB Camera", index=0)
    video_node(tmp_path, 1, "HD USB Camera: HD USB Camera", index=1)  # UVC metadata node
    video_node(tmp_path, 2, "unicam-image")  # CSI receiver: raw Bayer, only through libcamera
    video_node(tmp_path, 10, "bcm2835-codec-decode")
    video_node(tmp_path, 14, "bcm2835-isp")
    return tmp_path


@pytest.fixture
def pi5_root(tmp_path: Path) -> Path:
    # Only the /sys/firmware path, as in containers that hide /proc/device-tree.
    write(tmp_path, "sys/firmware/devicetree/base/model", b"Raspberry Pi 5 Model B Rev 1.0\x00")
    write(tmp_path, "sys/firmware/devicetree/base/compatible", b"raspberrypi,5-model-b\x00brcm,bcm2712\x00")
    write(tmp_path, "proc/cpuinfo", arm_cpuinfo("0xd0b", 4))
    write(tmp_path, "etc/os-release", DEBIAN_OS)
    for n in range(8):
        video_node(tmp_path, n, "rp1-cfe")
    for n in range(20, 28):
        video_node(tmp_path, n, "pispbe")
    return tmp_path


@pytest.fixture
def orin_root(tmp_path: Path) -> Path:
    write(tmp_path, "proc/device-tree/model", b"NVIDIA Jetson Orin Nano Developer Kit\x00")
    write(
        tmp_path,
        "proc/device-tree/compatible",
        b"nvidia,p3768-0000+p3767-0005\x00nvidia,p3767-0005\x00nvidia,tegra234\x00",
    )
    write(
        tmp_path,
        "etc/nv_tegra_release",
        "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
        "DATE: Wed Jan  8 01:49:37 UTC 2025\n# KERNEL_VARIANT: oot\nTARGET_USERSPACE_LIB_DIR=nvidia\n",
    )
    write(tmp_path, "var/lib/nvpmodel/status", "pmode:0001 fmode:quiet\n")
    write(
        tmp_path,
        "etc/nvpmodel.conf",
        "< POWER_MODEL ID=0 NAME=15W >\nCPU_ONLINE CORE_0 1\n< POWER_MODEL ID=1 NAME=7W >\nCPU_ONLINE CORE_0 1\n",
    )
    write(tmp_path, "proc/cpuinfo", arm_cpuinfo("0xd42", 6))
    write(tmp_path, "etc/os-release", UBUNTU_2204)
    video_node(tmp_path, 0, "vi-output, imx219 9-0010")
    return tmp_path


def test_pi4_detected_with_usb_camera_and_no_codec_nodes(pi4_root: Path) -> None:
    info = det.detect(pi4_root, machine="aarch64")
    assert info["family"] == "raspberry-pi"
    assert info["board"] == "Raspberry Pi 4 Model B Rev 1.4"
    assert info["compatible"] == ["raspberrypi,4-model-b", "brcm,bcm2711"]
    assert info["cpu"] == {"model": "4x Cortex-A72", "cores": 4, "arch": "aarch64"}
    assert info["os"]["pretty_name"] == "Debian GNU/Linux 12 (bookworm)"
    assert info["jetson"] is None
    assert [c["uri"] for c in info["cameras"] if c["kind"] == "v4l2"] == ["v4l2:///dev/video0"]
    assert info["suggested_profile"] == "rpi4"


def test_pi5_detected_from_sys_firmware_and_isp_nodes_skipped(pi5_root: Path) -> None:
    info = det.detect(pi5_root, machine="aarch64")
    assert info["board"] == "Raspberry Pi 5 Model B Rev 1.0"
    assert info["cpu"]["model"] == "4x Cortex-A76"
    assert [c for c in info["cameras"] if c["kind"] != "picamera2"] == []
    if importlib.util.find_spec("picamera2") is None:  # the CSI receiver is there, its Python API is not
        assert any("sudo apt install python3-picamera2" in n for n in info["notes"])
    assert info["suggested_profile"] == "rpi5"


def test_pi_with_32bit_os_gets_no_profile(pi4_root: Path) -> None:
    info = det.detect(pi4_root, machine="armv7l")
    assert info["family"] == "raspberry-pi"
    assert info["suggested_profile"] is None


def test_jetson_orin_nano_release_power_mode_and_csi_camera(orin_root: Path) -> None:
    info = det.detect(orin_root, machine="aarch64")
    assert info["family"] == "jetson"
    assert info["jetson"] == {
        "model": "NVIDIA Jetson Orin Nano Developer Kit",
        "soc": "tegra234",
        "l4t": "36.4.3",
        "jetpack": "6.2",
        "power_mode": {"id": 1, "name": "7W"},
    }
    assert info["cpu"] == {"model": "6x Cortex-A78AE", "cores": 6, "arch": "aarch64"}
    csi = [c for c in info["cameras"] if c["kind"] == "csi"]
    assert [(c["uri"], c["device"]) for c in csi] == [("csi://0", "/dev/video0")]
    assert info["suggested_profile"] == "jetson-orin-nano"


def test_jetson_nano_jetpack4_and_no_tensorrt_int8(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path, "proc/device-tree/model", b"NVIDIA Jetson Nano Developer Kit\x00")
    write(
        tmp_path,
        "proc/device-tree/compatible",
        b"nvidia,p3450-0000\x00nvidia,jetson-nano\x00nvidia,tegra210\x00",
    )
    write(
        tmp_path,
        "etc/nv_tegra_release",
        "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64, DATE: Sat Feb 19 2022\n",
    )
    monkeypatch.setattr(det, "backends_present", lambda: {"tensorrt": {"version": "8.2.1.8"}})
    info = det.detect(tmp_path, machine="aarch64")
    assert info["jetson"]["l4t"] == "32.7.1"
    assert info["jetson"]["jetpack"] == "4.6.1"
    assert info["jetson"]["power_mode"] is None  # no nvpmodel status file
    assert info["precisions"] == {"tensorrt": ["fp32", "fp16"]}
    assert info["suggested_profile"] == "jetson-nano"


def test_x86_machine_with_none_of_the_files(tmp_path: Path) -> None:
    info = det.detect(tmp_path, machine="x86_64")
    assert info["family"] == "generic"
    assert info["board"] is None and info["jetson"] is None and info["compatible"] == []
    assert info["cpu"] == {"model": None, "cores": None, "arch": "x86_64"}
    assert info["os"] == {"name": None, "version_id": None, "pretty_name": None, "codename": None}
    assert [c for c in info["cameras"] if c["kind"] != "picamera2"] == []
    assert info["suggested_profile"] == "linux-x86_64"
    assert info["notes"] == []


def test_unreadable_and_garbled_files_do_not_break_detection(tmp_path: Path) -> None:
    (tmp_path / "proc/device-tree/model").mkdir(parents=True)  # a directory where a file should be
    write(tmp_path, "sys/firmware/devicetree/base/model", b"")  # empty
    (tmp_path / "proc").mkdir(exist_ok=True)
    (tmp_path / "proc/cpuinfo").symlink_to(tmp_path / "missing")  # dangling symlink
    write(tmp_path, "etc/nv_tegra_release", b"\xff\xfe not a release line")
    write(tmp_path, "var/lib/nvpmodel/status", "garbage\n")
    write(tmp_path, "dev/videoX", b"")  # not a numbered node
    info = det.detect(tmp_path, machine="aarch64")
    assert info["board"] is None
    assert info["cpu"]["model"] is None and info["cpu"]["cores"] is None
    assert info["jetson"]["l4t"] is None and info["jetson"]["jetpack"] is None
    assert info["jetson"]["power_mode"] is None
    assert [c for c in info["cameras"] if c["kind"] != "picamera2"] == []


@pytest.mark.parametrize(
    ("text", "l4t", "jetpack"),
    [
        ("# R35 (release), REVISION: 4.1, GCID: 33958178", "35.4.1", "5.1.2"),
        ("# R36 (release), REVISION: 3.0, GCID: 36191598", "36.3.0", "6.0"),
        ("# R36 (release), REVISION: 9, GCID: 1", "36.9.0", "6.x"),  # newer than the table
        ("# R99 (release), REVISION: 1.0", "99.1.0", None),
        ("", None, None),
    ],
)
def test_l4t_release_to_jetpack(text: str, l4t: str | None, jetpack: str | None) -> None:
    assert det.parse_l4t_release(text) == l4t
    assert det.jetpack_for_l4t(l4t) == jetpack


def test_x86_cpuinfo_model_name() -> None:
    text = "processor\t: 0\nmodel name\t: Intel(R) Core(TM) i7-12700K\n\nprocessor\t: 1\nmodel name\t: Intel(R) Core(TM) i7-12700K\n"
    assert det.parse_cpuinfo(text) == {"model": "Intel(R) Core(TM) i7-12700K", "cores": 2}


def test_this_machine_lists_the_installed_backends() -> None:
    info = det.detect("/")
    assert info["cpu"]["cores"] and info["cpu"]["cores"] >= 1
    ort = pytest.importorskip("onnxruntime")
    assert info["backends"]["onnxruntime"]["version"] == ort.__version__
    assert "CPUExecutionProvider" in info["backends"]["onnxruntime"]["providers"]
    assert "int8" in info["precisions"]["onnxruntime"]


# --- profiles ---------------------------------------------------------------------------------------


def test_every_packaged_profile_loads_and_every_suggestion_exists() -> None:
    names = profile_names()
    assert set(names) == {"rpi4", "rpi5", "jetson-nano", "jetson-orin-nano", "linux-x86_64", "linux-aarch64"}
    for name in names:
        p = load_profile(name)
        assert p["name"] == name
        for ref in p["reference_numbers"]:
            assert ref["source"].startswith("https://")
    assert det.classify_board("Raspberry Pi 400 Rev 1.0", None, "aarch64") == ("raspberry-pi", "rpi4")
    assert det.classify_board("Raspberry Pi Compute Module 5 Rev 1.0", None, "aarch64") == (
        "raspberry-pi",
        "rpi5",
    )
    assert det.classify_board("Raspberry Pi 3 Model B Rev 1.2", None, "aarch64") == (
        "raspberry-pi",
        "linux-aarch64",
    )
    assert det.classify_board(None, None, "aarch64") == ("generic", "linux-aarch64")


def test_unknown_profile_is_one_clear_error() -> None:
    with pytest.raises(EdgeCNNError, match="unknown device profile 'rpi3'; choose one of: jetson-nano"):
        load_profile("rpi3")


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("runtime", "backend"), "tpu", "backend must be one of onnxruntime|litert|tensorrt|openvino"),
        (("runtime", "threads"), 0, "threads must be >= 1 or null"),
        (("camera", "source"), "/dev/video0", "source must be a URI"),
        (("reference_numbers", 0, "source"), "http://example.com", "must be an https:// URL"),
        (("schema",), "edgecnn.device-profile/0", "schema must be"),
    ],
)
def test_invalid_profiles_are_rejected_naming_the_field(path: tuple, value, message: str) -> None:
    p = json.loads(json.dumps(load_profile("rpi4")))
    target = p
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(EdgeCNNError, match=message):
        validate_profile(p, "rpi4.json")


def test_profile_missing_a_field_is_rejected() -> None:
    p = json.loads(json.dumps(load_profile("rpi4")))
    del p["known_limits"]
    with pytest.raises(EdgeCNNError, match="profile: missing field 'known_limits'"):
        validate_profile(p)


def test_apply_profile_fills_only_what_the_user_left_unset() -> None:
    args = argparse.Namespace(backend="auto", precision="fp32", threads=None, source="video.mp4")
    applied = apply_profile(args, load_profile("rpi4"))
    assert applied == {"backend": "litert", "threads": 4}
    assert (args.backend, args.precision, args.threads, args.source) == ("litert", "fp32", 4, "video.mp4")
    # a profile command has no source; threads=null profiles leave threads alone
    args = argparse.Namespace(backend=None, precision=None, threads=None)
    assert apply_profile(args, load_profile("jetson-orin-nano")) == {
        "backend": "tensorrt",
        "precision": "fp16",
    }
    assert not hasattr(args, "source") and args.threads is None


# --- edgecnn info -------------------------------------------------------------------------------------


def test_info_json_on_a_fake_pi4(pi4_root: Path, capsys) -> None:
    assert main(["info", "--json", "--root", str(pi4_root), "--arch", "aarch64"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["schema"] == "edgecnn.device/1"
    assert set(info) >= {
        "board",
        "cpu",
        "os",
        "python",
        "backends",
        "precisions",
        "cameras",
        "suggested_profile",
    }
    assert info["board"] == "Raspberry Pi 4 Model B Rev 1.4"
    assert info["cpu"]["cores"] == 4
    assert any(c["uri"] == "v4l2:///dev/video0" for c in info["cameras"])
    assert info["cpu"]["arch"] == "aarch64" and info["suggested_profile"] == "rpi4"


def test_info_text_on_a_fake_orin(orin_root: Path, capsys) -> None:
    assert main(["info", "--root", str(orin_root), "--arch", "aarch64"]) == 0
    out = capsys.readouterr().out
    assert "NVIDIA Jetson Orin Nano Developer Kit" in out
    assert "L4T 36.4.3, JetPack 6.2, SoC tegra234" in out
    assert "1 (7W)" in out
    assert "csi://0" in out
    assert "profile     jetson-orin-nano" in out


def test_info_bad_input_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["info", "--root", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgecnn: error: --root") and "\n" not in err
    assert main(["info", "--profile", "pi"]) == 2
    assert "unknown device profile 'pi'" in capsys.readouterr().err


def test_info_lists_and_shows_profiles(capsys) -> None:
    assert main(["info", "--profiles", "--json"]) == 0
    assert [p["name"] for p in json.loads(capsys.readouterr().out)] == profile_names()
    assert main(["info", "--profile", "rpi5"]) == 0
    out = capsys.readouterr().out
    assert "backend=litert precision=int8 threads=4" in out
    assert "https://huggingface.co/Arm/" in out


def test_devices_side_never_imports_torch() -> None:
    code = (
        "import sys, edgecnn.devices.cli, edgecnn.devices.detect as d; d.detect();"
        "import edgecnn.devices.profiles as p; [p.load_profile(n) for n in p.profile_names()];"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('edgecnn.train', 'edgecnn.export'))];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the on-device self-check (devices/classify_samples.py) on the shared exported bundle -------------


def _classify_samples():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "devices" / "classify_samples.py"
    spec = importlib.util.spec_from_file_location("classify_samples", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.parametrize("backend", ["litert", "onnxruntime"])
def test_sample_self_check_passes_on_a_real_bundle(digits_bundle: Path, backend: str, capsys) -> None:
    pytest.importorskip({"litert": "ai_edge_litert", "onnxruntime": "onnxruntime"}[backend])
    assert _classify_samples()([str(digits_bundle), "--backend", backend, "--threads", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("(")[1].split(")")[0] for line in lines] == ["fp32", "int8"]
    for line in lines:
        assert f"{backend} " in line and "/20 samples correct" in line


def test_sample_self_check_catches_a_wrong_answer(digits_bundle: Path, tmp_path: Path, capsys) -> None:
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(digits_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    # A real image that PyTorch classifies correctly, relabelled as another class by its file name:
    # the device's right answer now disagrees with the name, and the check must fail on it.
    rec = next(r for r in manifest["samples"] if r.get("reference_prediction") == r["label"])
    other = next(c for c in manifest["classes"] if c != rec["label"])
    manifest["samples"] = []  # judged by file names alone
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    (bundle / rec["file"]).rename(bundle / f"samples/{other}_99.png")
    assert _classify_samples()([str(bundle), "--backend", "onnxruntime", "--threads", "1"]) == 1
    assert f"WRONG {other}_99.png: predicted {rec['label']!r}, label {other!r}" in capsys.readouterr().out
