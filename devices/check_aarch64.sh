#!/usr/bin/env bash
# Proves that the device install path works on 64-bit Arm, from an x86-64 machine:
#   1. a Debian arm64 userland (debootstrap) run through qemu-user emulation (binfmt_misc),
#   2. one venv per device extra, `pip install edgecnn[tflite]` and `pip install edgecnn[onnx]`, with the
#      aarch64 wheels from PyPI (ai-edge-litert, onnxruntime, opencv-python-headless, numpy), plus
#      `edgecnn[tflite]` under numpy<2 as devices/setup_rpi.sh installs it next to apt's Picamera2,
#   3. the reference bundle's sample images classified by each backend through edgecnn's runtime,
#      every prediction checked against the label in the image's file name, on two emulated CPUs
#      (Cortex-A72 as in a Pi 4, Cortex-A76 as in a Pi 5).
# Timings under emulation say nothing about a real board, so none are printed.
#
# Usage (as root: debootstrap, chroot and binfmt_misc need it):
#   sudo devices/check_aarch64.sh [BUNDLE_DIR]        # default: export/lenet5-digits
# Idempotent: the rootfs is cached in .cache/aarch64/rootfs (gitignored) and reused; the venvs are
# reused and the project is reinstalled from the working tree on every run.
# Environment: EDGECNN_AARCH64_CACHE (cache dir), DEBIAN_MIRROR, DEBIAN_SUITE (default bookworm).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${EDGECNN_AARCH64_CACHE:-$REPO/.cache/aarch64}"
ROOTFS="$CACHE/rootfs"
SUITE="${DEBIAN_SUITE:-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BUNDLE="${1:-$REPO/export/lenet5-digits}"
# What gets installed, one venv each: "extra" or "extra:pip constraint". The third is what
# devices/setup_rpi.sh installs next to apt's Picamera2 (which needs numpy 1.x).
VARIANTS=(tflite onnx "tflite:numpy<2")
# The backend each extra must make usable (names as in edgecnn.runtime).
declare -A BACKEND_OF=([tflite]=litert [onnx]=onnxruntime)

say() { echo "[check_aarch64] $*"; }
die() { echo "[check_aarch64] error: $*" >&2; exit 2; }

# --- what we need first --------------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap, chroot and binfmt_misc need it): sudo $0 $*"
[ "$(uname -s)" = Linux ] || die "needs Linux (qemu-user + binfmt_misc), this is $(uname -s)"
[ -d "$BUNDLE" ] || die "bundle not found: $BUNDLE (make it with: edgecnn export ... --out $BUNDLE)"
[ -f "$BUNDLE/manifest.json" ] || die "$BUNDLE has no manifest.json: not an edgecnn bundle"
compgen -G "$BUNDLE/samples/*.png" >/dev/null || die "$BUNDLE/samples/*.png: no sample images to classify"

HOST_ARCH="$(uname -m)"
need_pkgs=()
command -v debootstrap >/dev/null || need_pkgs+=(debootstrap)
if [ "$HOST_ARCH" != aarch64 ]; then
  command -v qemu-aarch64-static >/dev/null || need_pkgs+=(qemu-user-static)
  command -v update-binfmts >/dev/null || need_pkgs+=(binfmt-support)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || die "missing ${need_pkgs[*]} and no apt-get to install them"
  say "installing ${need_pkgs[*]} (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# binfmt_misc lets the kernel hand aarch64 binaries to qemu-aarch64-static ('F' flag: no copy in the rootfs).
if [ "$HOST_ARCH" != aarch64 ]; then
  if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
      || die "cannot mount binfmt_misc (a container needs --privileged for qemu-user emulation)"
  fi
  if ! grep -qs '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64; then
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
  fi
  grep -qs '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 \
    || die "qemu-aarch64 is not registered with binfmt_misc (try: update-binfmts --enable qemu-aarch64)"
fi

# --- the arm64 userland, built once --------------------------------------------------------------
if [ ! -f "$ROOTFS/.edgecnn-rootfs-complete" ]; then
  say "building a Debian $SUITE arm64 userland in $ROOTFS (downloads ~60 MB, a few minutes)"
  mkdir -p "$CACHE"
  rm -rf "$ROOTFS.partial"
  debootstrap --arch=arm64 --variant=minbase \
    --include=python3,python3-venv,python3-pip,ca-certificates,libglib2.0-0 \
    "$SUITE" "$ROOTFS.partial" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
    || die "debootstrap failed; see $CACHE/debootstrap.log"
  date -u +%FT%TZ >"$ROOTFS.partial/.edgecnn-rootfs-complete"
  rm -rf "$ROOTFS"
  mv "$ROOTFS.partial" "$ROOTFS"  # only a complete rootfs ever sits at $ROOTFS
fi

mounted=()
cleanup() {
  local m
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    m="${mounted[$i]}"
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}
trap cleanup EXIT
for fs in proc dev sys; do
  mountpoint -q "$ROOTFS/$fs" && continue
  case "$fs" in
    proc) mount -t proc proc "$ROOTFS/proc" ;;
    *) mount --bind "/$fs" "$ROOTFS/$fs" ;;
  esac
  mounted+=("$ROOTFS/$fs")
done
cp -L /etc/resolv.conf "$ROOTFS/etc/resolv.conf"  # pip inside needs DNS

# Which Arm CPU the emulator plays. Not qemu's default "max" CPU: that one has SME (Armv9), which no
# Raspberry Pi or Jetson has, and with it LiteRT's int8 kernels return wrong results under qemu 7.2
# (fp32 and onnxruntime stay correct; whether qemu's SME emulation or the SME kernels are at fault
# cannot be told here). The samples are classified as a Cortex-A72 (Pi 4: Armv8.0) and as a
# Cortex-A76 (Pi 5: Armv8.2 with dot product), which take different int8 kernel paths.
# qemu-user also passes the host's x86 /proc/cpuinfo through, in which the cpuinfo library inside
# LiteRT and onnxruntime finds no Arm core and segfaults: a matching Arm /proc/cpuinfo is
# bind-mounted over it (its content rewritten per CPU model). A real board needs none of this.
declare -A CPU_PART=([cortex-a72]=0xd08 [cortex-a76]=0xd0b)
declare -A CPU_FEATURES=(
  [cortex-a72]="fp asimd evtstrm crc32 cpuid"
  [cortex-a76]="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
)
QEMU_CPU=""
emulate_cpu() {  # emulate_cpu cortex-a72|cortex-a76
  QEMU_CPU="$1"
  local i
  {
    for ((i = 0; i < $(nproc); i++)); do
      printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\n' "$i" "${CPU_FEATURES[$1]}"
      printf 'CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: %s\nCPU revision\t: 1\n\n' "${CPU_PART[$1]}"
    done
  } >"$CACHE/cpuinfo.aarch64"  # same inode: the bind mount shows the new content
}
if [ "$HOST_ARCH" != aarch64 ]; then
  EMULATED_CPUS=(cortex-a72 cortex-a76)
  emulate_cpu cortex-a76
  mount --bind "$CACHE/cpuinfo.aarch64" "$ROOTFS/proc/cpuinfo"
  mounted+=("$ROOTFS/proc/cpuinfo")
else
  EMULATED_CPUS=(native)
fi

in_arm() {
  local env=(HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 PIP_CERT=/etc/ssl/certs/ca-certificates.crt)
  [ -n "$QEMU_CPU" ] && env+=("QEMU_CPU=$QEMU_CPU")  # read by qemu-aarch64 (binfmt) when it starts
  chroot "$ROOTFS" /usr/bin/env -i "${env[@]}" "$@"
}
arch_inside="$(in_arm uname -m)"
[ "$arch_inside" = aarch64 ] || die "the rootfs runs as $arch_inside, expected aarch64"
# Behind a TLS-inspecting proxy the host trusts extra CAs: the arm64 userland must trust them too.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  mkdir -p "$ROOTFS/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$ROOTFS/usr/local/share/ca-certificates/"
  in_arm update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates failed inside the rootfs"
fi
# shellcheck disable=SC2016  # $PRETTY_NAME is expanded by the shell inside the rootfs
say "userland: $(in_arm sh -c '. /etc/os-release; echo "$PRETTY_NAME"'), $(in_arm python3 --version), $arch_inside"

# --- the project and the bundle, copied in fresh -------------------------------------------------
SRC=/opt/edgecnn-src
rm -rf "$ROOTFS$SRC" "$ROOTFS/opt/bundle"
mkdir -p "$ROOTFS$SRC"
# The working tree as git sees it (tracked + new, minus ignored files): what a user's checkout holds.
git -C "$REPO" ls-files -z --cached --others --exclude-standard \
  | tar -C "$REPO" --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -C "$ROOTFS$SRC" -xf -
cp -r "$BUNDLE" "$ROOTFS/opt/bundle"

# --- one venv per extra, then classify ------------------------------------------------------------
status=0
for variant in "${VARIANTS[@]}"; do
  extra="${variant%%:*}"
  pin=""
  [ "$variant" = "$extra" ] || pin="${variant#*:}"
  venv="/opt/venv-$extra${pin:+-pinned}"
  label="edgecnn[$extra]${pin:+ with $pin}"
  backend="${BACKEND_OF[$extra]}"
  if [ ! -x "$ROOTFS$venv/bin/python" ]; then
    say "creating $venv"
    in_arm python3 -m venv "$venv"
  fi
  echo "$pin" >"$ROOTFS$venv/constraints.txt"
  say "pip install $label into $venv (aarch64 wheels from PyPI; slow under emulation)"
  # Binary wheels only for the heavy dependencies: a source build would mean no aarch64 wheel exists.
  in_arm "$venv/bin/python" -m pip install -q --disable-pip-version-check -c "$venv/constraints.txt" \
    --only-binary=numpy,onnxruntime,ai-edge-litert,opencv-python-headless \
    "${SRC}[$extra]" || die "pip install $label failed on aarch64"
  in_arm "$venv/bin/python" -m pip list --disable-pip-version-check --format=freeze 2>/dev/null \
    | grep -iE '^(edgecnn|numpy|onnxruntime|ai-edge-litert|opencv-python-headless|tflite-runtime)==' \
    | sed "s/^/[check_aarch64]   $label: /"
  if in_arm "$venv/bin/python" -c "import torch" 2>/dev/null; then
    die "torch got installed by $label: the device side must not need it"
  fi
  for cpu in "${EMULATED_CPUS[@]}"; do
    [ "$cpu" = native ] || emulate_cpu "$cpu"
    say "classifying $(basename "$BUNDLE")/samples with backend=$backend ($label, aarch64, CPU: $cpu)"
    if ! in_arm "$venv/bin/python" "$SRC/devices/classify_samples.py" /opt/bundle --backend "$backend"; then
      status=1
    fi
  done
  [ "$HOST_ARCH" = aarch64 ] || emulate_cpu cortex-a76
done

[ "$status" -eq 0 ] || die "some samples were misclassified or a backend failed (see above)"
say "OK: edgecnn[tflite], edgecnn[onnx] and edgecnn[tflite] with numpy<2 install on aarch64, and every"
say "    sample got its label (or, where the source PyTorch model itself errs, exactly PyTorch's answer)"
say "    with every precision and emulated CPU"
say "(run under qemu-user emulation: no timing from this run describes a real Arm board)"
