#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian/Ubuntu machine with Python >= 3.10 and pip:
#  1. Debian's real offline datasets used by the tests and benchmarks (when root or sudo works):
#     dataset-fashion-mnist (Fashion-MNIST IDX files), opencv-doc (digits.png, vtest.avi), and the
#     tools some tests drive (chromium + chromedriver, openssh-server, gcc-arm-none-eabi, systemd's
#     systemd-analyze);
#  2. a virtual environment at .venv with edgecnn and everything the demo, tests and benchmarks
#     need (host side: torch, onnx, the LiteRT tooling, torch-pruning).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

need_apt=()
[ -d /usr/share/datasets/fashion-mnist ] || need_apt+=(dataset-fashion-mnist)
[ -f /usr/share/doc/opencv-doc/examples/data/vtest.avi ] || need_apt+=(opencv-doc)
# tools the tests drive for real: a headless browser (dashboard page test), an sshd on 127.0.0.1
# (remote profiling), the Cortex-M cross-compiler (TFLite Micro sources)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
# systemd-analyze verifies the unit `edgecnn service unit` writes (no systemd PID 1 needed)
[ -x /usr/bin/systemd-analyze ] || need_apt+=(systemd)
command -v arm-none-eabi-g++ >/dev/null || need_apt+=(gcc-arm-none-eabi libnewlib-arm-none-eabi)
# PortAudio for sounddevice (`edgecnn run --source mic://`; its test needs the library, not a microphone)
ldconfig -p 2>/dev/null | grep -q libportaudio.so.2 || need_apt+=(libportaudio2)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
  if command -v apt-get >/dev/null && { [ -z "$SUDO" ] || sudo -n true 2>/dev/null; }; then
    echo "[setup] apt-get install ${need_apt[*]}"
    $SUDO apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "[setup] note: Debian packages ${need_apt[*]} are missing and cannot be installed here (no root);"
    echo "        tests that read their real data will fail: apt-get install ${need_apt[*]}" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
STAMP=.venv/.edgecnn-installed
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] || [ requirements-lock.txt -nt "$STAMP" ]; then
  echo "[setup] installing dependencies into .venv (torch is large: a few minutes the first time)"
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first and pinned: an unpinned 'torch' would pull the newest CUDA build.
  .venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
  .venv/bin/python -m pip install -q -c requirements-lock.txt -e ".[dev]"
  touch "$STAMP"
fi
echo "[setup] ready: $(.venv/bin/edgecnn --version)"
