#!/usr/bin/env bash
# Install fer-edge as a systemd service on Raspberry Pi OS (Bookworm or later, 64-bit).
#
#   sudo ./install.sh                                  # fer-edge[mqtt] from the package index
#   sudo ./install.sh --package ./fer_edge-0.1.0-py3-none-any.whl[mqtt]
#   sudo ./install.sh --no-start                       # install and enable, start after editing the config
#
# What it does: apt installs python3-venv and python3-picamera2 (libcamera's Python bindings come from
# Raspberry Pi OS, not from pip); creates the user fer-edge (group video); creates a venv in
# /opt/fer-edge/venv with --system-site-packages so picamera2 is importable; pip installs fer-edge with
# numpy held at the system's version (picamera2's compiled helpers are built against it); copies the
# example config to /etc/fer-edge/config.toml and a random token (the preview's and the API's beyond
# loopback) to /etc/fer-edge/token unless they exist; installs and enables the unit.
# Run it again to upgrade: the config and the token are kept.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEPLOY="$(dirname "$HERE")"
PREFIX="/opt/fer-edge"
CONFIG_DIR="/etc/fer-edge"
SERVICE_USER="fer-edge"
PACKAGE="fer-edge[mqtt]"
START=1

usage() {
    sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while [ "$#" -gt 0 ]; do
    case "$1" in
        --package) PACKAGE="${2:?--package needs a value}"; shift 2 ;;
        --prefix) PREFIX="${2:?--prefix needs a value}"; shift 2 ;;
        --no-start) START=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
done

if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root: sudo $0 $*" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1 || ! command -v systemctl >/dev/null 2>&1; then
    echo "install.sh: expected Raspberry Pi OS (apt-get and systemd); see deploy/README.md for other systems" >&2
    exit 1
fi

echo "== apt: python3-venv, python3-picamera2"
apt-get update
apt-get install -y --no-install-recommends python3-venv python3-pip
if apt-cache show python3-picamera2 >/dev/null 2>&1; then
    apt-get install -y --no-install-recommends python3-picamera2
else
    echo "install.sh: python3-picamera2 is not in this system's apt sources (not Raspberry Pi OS?):" \
         "--picamera will not work, --camera N (USB) will" >&2
fi

echo "== user $SERVICE_USER"
if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/fer-edge --no-create-home --shell /usr/sbin/nologin \
        --groups video "$SERVICE_USER"
fi

echo "== venv $PREFIX/venv (with system site packages, for picamera2)"
install -d -m 0755 "$PREFIX"
python3 -m venv --system-site-packages "$PREFIX/venv"
"$PREFIX/venv/bin/pip" install --quiet --upgrade pip
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
# picamera2's compiled helpers (simplejpeg, ...) are built against Debian's numpy: keep that one
if system_numpy="$(python3 -c 'import numpy; print(numpy.__version__)' 2>/dev/null)"; then
    echo "numpy==$system_numpy" > "$constraints"
fi
"$PREFIX/venv/bin/pip" install --upgrade --constraint "$constraints" "$PACKAGE"
"$PREFIX/venv/bin/fer-edge" --help >/dev/null

echo "== config $CONFIG_DIR/config.toml"
install -d -m 0750 -o root -g "$SERVICE_USER" "$CONFIG_DIR"
if [ ! -f "$CONFIG_DIR/config.toml" ]; then
    install -m 0640 -o root -g "$SERVICE_USER" "$DEPLOY/config.example.toml" "$CONFIG_DIR/config.toml"
else
    echo "kept the existing $CONFIG_DIR/config.toml"
fi

echo "== token $CONFIG_DIR/token (serve_token_file in the config; docs/security.md)"
if [ ! -s "$CONFIG_DIR/token" ]; then
    (umask 0137 && python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > "$CONFIG_DIR/token")
    chgrp "$SERVICE_USER" "$CONFIG_DIR/token"
else
    echo "kept the existing $CONFIG_DIR/token"
fi

echo "== systemd unit"
sed "s#/opt/fer-edge/venv#$PREFIX/venv#g" "$DEPLOY/systemd/fer-edge.service" > /etc/systemd/system/fer-edge.service
chmod 0644 /etc/systemd/system/fer-edge.service
systemctl daemon-reload
if [ "$START" -eq 1 ]; then
    systemctl enable --now fer-edge.service
    echo "fer-edge is running: journalctl -u fer-edge -f"
else
    systemctl enable fer-edge.service
    echo "fer-edge is enabled; edit $CONFIG_DIR/config.toml, then: systemctl start fer-edge"
fi
