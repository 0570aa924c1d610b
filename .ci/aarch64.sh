#!/usr/bin/env bash
# The aarch64 leg: the built wheel on an emulated Debian bookworm arm64 userland (Raspberry Pi OS is
# bookworm, Python 3.11), run through qemu-user-static and binfmt_misc.
#
#     bash .ci/aarch64.sh dist/fer_edge-*.whl      (as root; FER_EDGE_DATA names the data folder)
#
# Inside it: the wheel installed with its base dependencies (+ onnxruntime and pytest), the runtime
# tests, `fer-convert verify` of every shipped INT8 file against its golden outputs, and fer-edge on the
# sample video writing one JSON line per frame. Reports land in .ci-out/aarch64/.
#
# Kernels: LiteRT's XNNPACK delegate does not run under qemu-user (its cpuinfo reads /sys; with /sys
# mounted it crashed), so every .tflite here runs on LiteRT's built-in kernels (--kernels builtin, and
# FER_EDGE_KERNELS=builtin for the tests). Timings under emulation mean nothing and none are taken.
#
# The userland (debootstrap + a venv holding the wheel's dependencies, and their wheels) is cached as a tar under
# ${XDG_CACHE_HOME:-$HOME/.cache}/fer-edge/, keyed on the suite, the Debian packages and the pip
# requirements; each run unpacks a fresh copy. FER_EDGE_ARM64_FRESH=1 rebuilds it from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEEL=${1:?usage: bash .ci/aarch64.sh WHEEL}
DATA=${FER_EDGE_DATA:?set FER_EDGE_DATA to the folder holding fer2013.npz}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBS=python3,python3-venv
EXTRA_PIPS="onnxruntime pytest"  # the [onnx] extra (for the INT8 .onnx gate) and the test runner
OUT=.ci-out/aarch64
VIDEO=samples/fer_test.mp4
RUNTIME_TESTS=${RUNTIME_TESTS:?set RUNTIME_TESTS to the runtime test files}
# the INT8 gate measures a seeded sample of PrivateTest (the reference re-scored on the same faces): every face
# would take about 23 min per .tflite file under emulation on a 2-core host
GATE_SAMPLE=${FER_EDGE_ARM64_GATE_SAMPLE:-1000}

say() { echo "[aarch64 $(date -u +%H:%M:%S)] $*"; }
fail() { echo "CI aarch64: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "needs root (debootstrap, chroot, binfmt_misc)"
[ -f "$WHEEL" ] || fail "no wheel at $WHEEL"

# ---- tools and binfmt_misc ----
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
[ -x /usr/bin/qemu-aarch64-static ] || need+=(qemu-user-static)
command -v update-binfmts >/dev/null || need+=(binfmt-support)
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || fail "cannot mount binfmt_misc (a privileged container is needed)"
fi
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64 || true
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --import qemu-aarch64
grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 || fail "binfmt_misc has no enabled qemu-aarch64 entry"
# F (fix binary): the kernel holds the emulator open, so the userland needs no copy of it inside
grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 || fail "the qemu-aarch64 binfmt entry lacks the F flag"

# ---- the cached userland ----
REQS=$(python3 - "$WHEEL" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    reqs = [l.split(":", 1)[1].strip() for l in z.read(meta).decode().splitlines() if l.startswith("Requires-Dist:")]
print("\n".join(r for r in reqs if "extra ==" not in r))
PY
)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/fer-edge
BUILD=foreign+dpkg-deb  # how the userland is made: part of the cache key
KEY=$(printf '%s\n' "$SUITE" "$DEBS" "$REQS" "$EXTRA_PIPS" "$BUILD" | sha256sum | cut -c1-16)
TAR=$CACHE/arm64-$SUITE-$KEY.tar
ROOT=""
cleanup() {
    [ -n "$ROOT" ] || return 0
    umount "$ROOT/proc" 2>/dev/null || true
    if grep -q " $ROOT/" /proc/mounts; then  # never delete through a mount
        echo "CI aarch64: $ROOT still has mounts; left in place" >&2; return 0
    fi
    rm -rf "$ROOT"
}
trap cleanup EXIT
in_root() {  # run a command inside the arm64 userland with a clean environment
    chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH=/opt/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 "$@"
}
new_root() {
    ROOT=$(mktemp -d "${TMPDIR:-/var/tmp}/fer-edge-arm64.XXXXXX")
    chmod 755 "$ROOT"
}

mapfile -t reqs <<<"$REQS"
fetch_wheels() {
    # pip on the host fetches pip's aarch64 wheels for CPython 3.11 (natively, through the host's index,
    # proxy and certificates); pip inside installs them offline
    local plats=() v
    for v in $(seq 17 36); do plats+=(--platform "manylinux_2_${v}_aarch64"); done  # bookworm: glibc 2.36
    # shellcheck disable=SC2086
    python3 -m pip download -q -d "$ROOT/ci-wheels" --only-binary=:all: --python-version 3.11 "${plats[@]}" \
        "${reqs[@]}" $EXTRA_PIPS
}
if [ -f "$TAR" ] && [ "${FER_EDGE_ARM64_FRESH:-0}" != 1 ]; then
    say "userland from cache $TAR"
else
    start=$SECONDS
    say "building the $SUITE arm64 userland (debootstrap, then pip install of the wheel's dependencies)"
    new_root
    # debootstrap's first stage only (--foreign: download, and unpack the required packages), then every other
    # downloaded package unpacked natively with dpkg-deb. The second stage would run dpkg and every maintainer
    # script under emulation (about 31 min here); those scripts byte-compile, register alternatives and write
    # /etc/passwd from base-passwd, which is all the runtime needs of them: done below by hand.
    debootstrap --foreign --arch=arm64 --variant=minbase --include="$DEBS" "$SUITE" "$ROOT" "$MIRROR" >/dev/null
    for deb in "$ROOT"/var/cache/apt/archives/*.deb; do dpkg-deb -x "$deb" "$ROOT"; done
    cp "$ROOT/usr/share/base-passwd/passwd.master" "$ROOT/etc/passwd"
    cp "$ROOT/usr/share/base-passwd/group.master" "$ROOT/etc/group"
    rm -rf "$ROOT/var/cache/apt/archives/"*.deb "$ROOT/debootstrap"
    in_root /sbin/ldconfig
    in_root python3 -m venv /opt/venv
    fetch_wheels
    # shellcheck disable=SC2086
    in_root pip install -q --no-index --find-links /ci-wheels "${reqs[@]}" $EXTRA_PIPS
    mkdir -p "$CACHE"
    rm -f "$CACHE"/arm64-"$SUITE"-*.tar  # one userland at a time
    tar --one-file-system -C "$ROOT" -cf "$TAR.tmp" . && mv "$TAR.tmp" "$TAR"
    say "userland built in $((SECONDS - start)) s, cached as $TAR ($(du -h "$TAR" | cut -f1))"
    cleanup; ROOT=""
fi

new_root
tar -C "$ROOT" -xf "$TAR"
mount -t proc proc "$ROOT/proc"
mkdir -p "$ROOT/ci/src" "$ROOT/ci/shared/data" "$ROOT/ci/out"
cp "$WHEEL" "$ROOT/ci/"
cp -r tests models pyproject.toml .ci "$ROOT/ci/src/"
cp "$DATA/fer2013.npz" "$ROOT/ci/shared/data/"
cp -r "$DATA/samples" "$ROOT/ci/shared/data/"
if [ -d "$DATA/../models" ]; then cp -r "$DATA/../models" "$ROOT/ci/shared/models"; fi
GOLDENS=$(cd models && ls -- *_golden.npz)
[ -n "$GOLDENS" ] || fail "no models/*_golden.npz to gate"

say "machine inside: $(in_root uname -m), $(in_root python3 --version)"
[ "$(in_root uname -m)" = aarch64 ] || fail "the userland does not run as aarch64"
say "pip install $(basename "$WHEEL") (base dependencies) + $EXTRA_PIPS"
# shellcheck disable=SC2086
in_root pip install -q --no-index --find-links /ci-wheels "/ci/$(basename "$WHEEL")" $EXTRA_PIPS
if in_root python -c "import tensorflow" 2>/dev/null; then fail "tensorflow is importable in the aarch64 runtime"; fi

say "runtime tests (LiteRT built-in kernels)"
# The shipped files' gate test is left to the gate step below, which measures the same files the same way
# (each pass over PrivateTest takes minutes under emulation); the damaged-file test runs here.
# shellcheck disable=SC2086
in_root sh -c "cd /ci/src && FER_EDGE_DATA=/ci/shared/data FER_EDGE_KERNELS=builtin FER_EDGE_EMULATED=1 python -m pytest -q -p no:cacheprovider --durations=10 \
    -k 'not test_shipped_int8_files_pass_the_gate' $RUNTIME_TESTS"

for g in $GOLDENS; do
    name=${g%_golden.npz}
    files=()
    for f in "models/${name}_int8.tflite" "models/${name}_int8.onnx"; do [ -f "$f" ] && files+=("/ci/src/$f"); done
    [ ${#files[@]} -gt 0 ] || fail "models/$g has no INT8 file beside it"
    say "INT8 gate for $name: ${files[*]##*/}"
    in_root fer-convert verify "${files[@]}" --reference "/ci/src/models/$g" --kernels builtin \
        --sample "$GATE_SAMPLE" --data /ci/shared/data --out "/ci/out/gate-$name"
done

say "fer-edge on $VIDEO, JSON Lines"
in_root fer-edge --source "/ci/shared/data/$VIDEO" --kernels builtin --json /ci/out/fer_test.jsonl --quiet
in_root python /ci/src/.ci/check_jsonl.py "/ci/shared/data/$VIDEO" /ci/out/fer_test.jsonl "aarch64 (qemu)"

rm -rf "$OUT"; mkdir -p "$OUT"
cp -r "$ROOT/ci/out/." "$OUT/"
say "done: reports in $OUT"
