#!/usr/bin/env bash
# Set up edgecnn's device side on an NVIDIA Jetson (JetPack). Idempotent.
#
#   devices/setup_jetson.sh [BUNDLE_DIR]     # run from a checkout of edgecnn, as the normal user
#
# TensorRT and OpenCV-with-GStreamer come from JetPack (apt), never from PyPI (PyPI's tensorrt wheels
# are not built for Jetson; pip's OpenCV has no GStreamer, which CSI cameras need).
#
#  * JetPack 6 (L4T R36, Ubuntu 22.04, Python 3.10): a venv WITH --system-site-packages that sees
#    JetPack's tensorrt and cv2; pip installs edgecnn (numpy only, no pip OpenCV) and onnxruntime (CPU
#    fallback), keeping numpy < 2 because JetPack's cv2/tensorrt are built against numpy 1.x. Then it
#    builds a TensorRT fp16 engine for the bundle and classifies the bundle's samples with it.
#  * JetPack 4/5 (Python 3.6/3.8, below edgecnn's 3.9): JetPack's TensorRT bindings exist only for that
#    old Python, so edgecnn runs on the CPU from a newer Python that you provide:
#        EDGECNN_PYTHON=/path/to/python3.11 devices/setup_jetson.sh
#    (e.g. `uv python install 3.11` then EDGECNN_PYTHON="$(uv python find 3.11)"); it gets edgecnn[tflite].
#
# Environment: EDGECNN_VENV (default ~/edgecnn-venv), EDGECNN_PYTHON, EDGECNN_NO_APT=1.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${EDGECNN_VENV:-$HOME/edgecnn-venv}"
BUNDLE="${1:-$REPO/export/lenet5-digits}"

say() { echo "[setup_jetson] $*"; }
die() { echo "[setup_jetson] error: $*" >&2; exit 2; }
py_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; }

# --- checks first ------------------------------------------------------------------------------
[ "$(uname -m)" = aarch64 ] || die "this is $(uname -m), not a Jetson (aarch64)"
MODEL=""
[ -r /proc/device-tree/model ] && MODEL="$(tr -d '\0' </proc/device-tree/model)"
[ -r /etc/nv_tegra_release ] || die "/etc/nv_tegra_release not found: not a JetPack (L4T) system (board: '${MODEL:-unknown}')"
L4T_MAJOR="$(sed -n 's/^# R\([0-9]*\) (release).*/\1/p' /etc/nv_tegra_release)"
L4T_REV="$(sed -n 's/.*REVISION: \([0-9.]*\).*/\1/p' /etc/nv_tegra_release)"
say "board: ${MODEL:-unknown}; L4T R${L4T_MAJOR:-?}.${L4T_REV:-?} ($(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release 2>/dev/null))"
SYS_PY="$(command -v python3 || true)"
[ -n "$SYS_PY" ] || die "python3 not found"
say "JetPack's python3: $("$SYS_PY" --version 2>&1)"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_install() {
  if [ "${EDGECNN_NO_APT:-0}" = 1 ]; then
    say "skipping apt (EDGECNN_NO_APT=1): would install $*"
    return 1
  fi
  say "apt install $*"
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

if py_ok "$SYS_PY"; then
  MODE=jetpack  # JetPack 6: TensorRT + GStreamer OpenCV straight from the system Python
  PY="$SYS_PY"
  "$PY" -c 'import ensurepip' 2>/dev/null || apt_install python3-venv || die "no venv support: sudo apt install python3-venv"
  "$PY" -c 'import tensorrt' 2>/dev/null || apt_install python3-libnvinfer \
    || die "TensorRT's Python bindings are missing: sudo apt install nvidia-jetpack (or python3-libnvinfer)"
  has_gst() { "$PY" -c 'import cv2, re, sys; sys.exit(not re.search(r"GStreamer:\s+YES", cv2.getBuildInformation()))' 2>/dev/null; }
  if ! has_gst; then
    apt_install nvidia-opencv || apt_install python3-opencv || true
    has_gst || die "no OpenCV with GStreamer for $PY: sudo apt install nvidia-opencv (JetPack) or python3-opencv"
  fi
  say "TensorRT $("$PY" -c 'import tensorrt; print(tensorrt.__version__)'), OpenCV $("$PY" -c 'import cv2; print(cv2.__version__)') with GStreamer (JetPack)"
else
  MODE=cpu  # JetPack 4/5: Python < 3.9; TensorRT bindings unusable from a newer Python
  PY="${EDGECNN_PYTHON:-}"
  if [ -z "$PY" ]; then
    for cand in python3.13 python3.12 python3.11 python3.10 python3.9; do
      if command -v "$cand" >/dev/null && py_ok "$(command -v "$cand")"; then PY="$(command -v "$cand")"; break; fi
    done
  fi
  if [ -z "$PY" ] || ! py_ok "$PY"; then die "JetPack's Python is $("$SYS_PY" --version 2>&1 | cut -d' ' -f2) and edgecnn needs >= 3.9.
  Install a newer Python next to it and point this script at it, e.g.:
    curl -LsSf https://astral.sh/uv/install.sh | sh && ~/.local/bin/uv python install 3.11
    EDGECNN_PYTHON=\"\$(~/.local/bin/uv python find 3.11)\" $0
  edgecnn then runs on the CPU (LiteRT); see docs/jetson.md for the TensorRT route on JetPack 4/5."; fi
  say "using $("$PY" --version 2>&1) at $PY: CPU inference (JetPack's TensorRT bindings are for $("$SYS_PY" --version 2>&1) only)"
fi

# --- venv + edgecnn ------------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  if [ "$MODE" = jetpack ]; then
    say "creating $VENV (--system-site-packages: tensorrt and cv2 come from JetPack)"
    "$PY" -m venv --system-site-packages "$VENV"
  else
    say "creating $VENV"
    "$PY" -m venv "$VENV"
  fi
fi
CONSTRAINTS="$VENV/edgecnn-constraints.txt"
if [ "$MODE" = jetpack ]; then
  # JetPack's cv2 and tensorrt are compiled against Ubuntu's numpy 1.x: numpy 2 in the venv breaks them.
  echo "numpy<2" >"$CONSTRAINTS"
  say "pip install edgecnn (no pip OpenCV: JetPack's has GStreamer) + onnxruntime (CPU fallback)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -c "$CONSTRAINTS" "$REPO" onnxruntime \
    || die "pip install failed"
  "$VENV/bin/python" -c 'import tensorrt, cv2' || die "tensorrt or cv2 does not import inside $VENV (numpy clash?)"
  BACKEND=tensorrt
else
  : >"$CONSTRAINTS"
  say "pip install 'edgecnn[tflite]'"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${REPO}[tflite]" || die "pip install failed"
  BACKEND=litert
fi

# --- what we have, and a self-check on real images ---------------------------------------------
"$VENV/bin/edgecnn" info
if [ -d "$BUNDLE/samples" ]; then
  if [ "$BACKEND" = tensorrt ]; then
    say "building a TensorRT fp16 engine for $BUNDLE on this GPU (cached under $BUNDLE/engines/)"
    "$VENV/bin/edgecnn" build-engine "$BUNDLE" --fp16 || die "edgecnn build-engine failed"
  fi
  say "classifying $BUNDLE/samples with $BACKEND"
  "$VENV/bin/python" "$REPO/devices/classify_samples.py" "$BUNDLE" --backend "$BACKEND" \
    || die "the sample images were not all classified correctly (see above)"
else
  say "no bundle at $BUNDLE: copy one from the host (edgecnn export ... --out DIR) and run: $0 DIR"
fi
command -v nvpmodel >/dev/null && say "power mode: $(nvpmodel -q 2>/dev/null | head -1) (for timing: sudo nvpmodel -m 0 && sudo jetson_clocks)"
PROFILE="$("$VENV/bin/python" -c 'from edgecnn.devices.detect import detect; print(detect()["suggested_profile"] or "linux-aarch64")')"
say "ready. Live demo:   $VENV/bin/edgecnn run $BUNDLE --device $PROFILE"
say "       profile:     $VENV/bin/edgecnn profile $BUNDLE --device $PROFILE"
