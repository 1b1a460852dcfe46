#!/usr/bin/env bash
# Set up edgecnn's device side on a Raspberry Pi 4/5 running Raspberry Pi OS 64-bit. Idempotent.
#
#   devices/setup_rpi.sh [BUNDLE_DIR]        # run from a checkout of edgecnn, as the normal user
#
# 1. checks: Raspberry Pi OS 64-bit (aarch64), Python >= 3.9 with venv, camera stack (Picamera2);
# 2. apt: python3-venv, python3-picamera2 (the Pi camera's Python API is only packaged by apt);
# 3. a venv at ~/edgecnn-venv WITH --system-site-packages, so Picamera2 from apt is importable;
# 4. pip install edgecnn[tflite] (EDGECNN_EXTRA=onnx for onnxruntime) from this checkout, keeping numpy < 2:
#    apt's Picamera2/simplejpeg are built against Debian's numpy 1.x and break with numpy 2;
# 5. edgecnn info, then classify the bundle's sample images (default export/lenet5-digits) with
#    devices/classify_samples.py: every sample must come out as its file name says.
#
# Environment: EDGECNN_VENV (default ~/edgecnn-venv), EDGECNN_EXTRA (tflite|onnx), EDGECNN_NO_APT=1.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${EDGECNN_VENV:-$HOME/edgecnn-venv}"
EXTRA="${EDGECNN_EXTRA:-tflite}"
BUNDLE="${1:-$REPO/export/lenet5-digits}"

say() { echo "[setup_rpi] $*"; }
die() { echo "[setup_rpi] error: $*" >&2; exit 2; }

case "$EXTRA" in
  tflite) BACKEND=litert ;;
  onnx) BACKEND=onnxruntime ;;
  *) die "EDGECNN_EXTRA must be tflite or onnx, got '$EXTRA'" ;;
esac

# --- checks first ------------------------------------------------------------------------------
MODEL=""
[ -r /proc/device-tree/model ] && MODEL="$(tr -d '\0' </proc/device-tree/model)"
case "$MODEL" in
  "Raspberry Pi"*) say "board: $MODEL" ;;
  *) say "warning: this does not look like a Raspberry Pi (device-tree model: '${MODEL:-none}'); continuing" ;;
esac
ARCH="$(uname -m)"
[ "$ARCH" = aarch64 ] || die "this OS is $ARCH: install Raspberry Pi OS (64-bit); onnxruntime and ai-edge-litert have no 32-bit Arm wheels"
say "os: $(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release 2>/dev/null)"
command -v python3 >/dev/null || die "python3 not found (sudo apt install python3)"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))' \
  || die "python3 is $(python3 --version 2>&1 | cut -d' ' -f2); edgecnn needs >= 3.9 (Raspberry Pi OS Bookworm has 3.11)"
say "python: $(python3 --version 2>&1)"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_need=()
python3 -c 'import ensurepip' 2>/dev/null || apt_need+=(python3-venv)
python3 -c 'import picamera2' 2>/dev/null || apt_need+=(python3-picamera2)
if [ ${#apt_need[@]} -gt 0 ]; then
  if [ "${EDGECNN_NO_APT:-0}" = 1 ]; then
    say "skipping apt (EDGECNN_NO_APT=1); missing: ${apt_need[*]}"
  else
    say "apt install ${apt_need[*]}"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_need[@]}" \
      || die "apt-get install ${apt_need[*]} failed"
  fi
fi
python3 -c 'import ensurepip' 2>/dev/null || die "python3 has no venv support: sudo apt install python3-venv"
if python3 -c 'import picamera2' 2>/dev/null; then
  HAVE_PICAMERA2=1
  say "camera stack: Picamera2 $(python3 -c 'import importlib.metadata as m; print(m.version("picamera2"))' 2>/dev/null || echo '(version unknown)')"
else
  HAVE_PICAMERA2=0
  say "camera stack: no Picamera2 (Camera Module unusable; USB webcams still work through V4L2)"
fi

# --- venv + edgecnn ------------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV (--system-site-packages: Picamera2 and libcamera come from apt)"
  python3 -m venv --system-site-packages "$VENV"
elif ! grep -q '^include-system-site-packages = true' "$VENV/pyvenv.cfg"; then
  die "$VENV exists without --system-site-packages, so Picamera2 is invisible in it; remove it or set EDGECNN_VENV"
fi
CONSTRAINTS="$VENV/edgecnn-constraints.txt"
# Picamera2's simplejpeg (apt) is compiled against numpy 1.x: numpy 2 in the venv breaks `import picamera2`.
echo "numpy<2" >"$CONSTRAINTS"
say "pip install 'edgecnn[$EXTRA]' from $REPO (numpy < 2)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -c "$CONSTRAINTS" "${REPO}[$EXTRA]" \
  || die "pip install failed (no network? a 32-bit OS?)"
if [ "$HAVE_PICAMERA2" = 1 ]; then
  "$VENV/bin/python" -c 'import picamera2' \
    || die "Picamera2 does not import inside the venv (numpy clash?): $VENV/bin/python -c 'import picamera2'"
fi

# --- what we have, and a self-check on real images ---------------------------------------------
"$VENV/bin/edgecnn" info
if [ -d "$BUNDLE/samples" ]; then
  say "classifying $BUNDLE/samples with $BACKEND"
  "$VENV/bin/python" "$REPO/devices/classify_samples.py" "$BUNDLE" --backend "$BACKEND" \
    || die "the sample images were not all classified correctly (see above)"
else
  say "no bundle at $BUNDLE: copy one from the host (edgecnn export ... --out DIR) and run: $0 DIR"
fi
PROFILE="$("$VENV/bin/python" -c 'from edgecnn.devices.detect import detect; print(detect()["suggested_profile"] or "linux-aarch64")')"
SOURCE=/dev/video0
[ "$HAVE_PICAMERA2" = 1 ] && SOURCE=picamera2://0
say "ready. Live demo:   $VENV/bin/edgecnn run $BUNDLE --device $PROFILE --source $SOURCE"
say "       profile:     $VENV/bin/edgecnn profile $BUNDLE --device $PROFILE"
