#!/bin/sh
# Installs the Debian packages named as arguments when they are missing
# (`make deps`). Says what it installs; as a non-root user it stops and
# names the packages to install instead of failing on apt's lock. Services
# the packages bring (mosquitto, nats-server) are neither started nor
# enabled: a policy-rc.d forbids starts while apt runs, and the units are
# disabled afterwards when systemctl exists.
set -eu

missing=""
for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "deps: Debian packages present:$(printf ' %s' "$@")"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing Debian packages:$missing" >&2
    echo "deps: run as root (e.g. \`sudo make deps\`), or install them yourself:" >&2
    echo "    sudo apt-get install$missing" >&2
    exit 1
fi

echo "deps: installing Debian packages:$missing (services they bring are not started or enabled)"

policy=/usr/sbin/policy-rc.d
saved=""
if [ -e "$policy" ] || [ -L "$policy" ]; then
    saved=$(mktemp /tmp/policy-rc.d.XXXXXX)
    cp -a "$policy" "$saved"
fi
restore() {
    if [ -n "$saved" ]; then
        mv -f "$saved" "$policy"
    else
        rm -f "$policy"
    fi
}
trap restore EXIT INT TERM
# 101: "action forbidden by policy" (invoke-rc.d's convention).
printf '#!/bin/sh\nexit 101\n' > "$policy"
chmod 755 "$policy"

apt-get update -qq
# shellcheck disable=SC2086 # the list is meant to split
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing

if command -v systemctl >/dev/null 2>&1; then
    for unit in mosquitto.service nats-server.service; do
        systemctl disable "$unit" >/dev/null 2>&1 || true
    done
fi
