#!/bin/bash
# Builds the gateway Debian package (`make deb`): the release binaries, a
# starter config from `gateway config` (a conffile), a hardened systemd
# unit whose LimitNOFILE/LimitMEMLOCK come from `gateway-tune plan` and
# whose stop timeout covers `shutdown.deadline_ms`, assembled with
# `dpkg-deb --build`. Prints the path of the .deb.
#
# Why dpkg-deb and not cargo-deb: the package is seven files and four
# maintainer scripts; dpkg-deb ships with every Debian system, so nothing
# has to be installed from crates.io to build it, and the layout is plain
# files under packaging/deb/ that a Debian packager can read.
#
# Environment: NO_BUILD=1 uses the release binaries already built;
# CARGO_TARGET_DIR as cargo; DEB_OUT (default $TARGET/deb) for the output.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
out=${DEB_OUT:-$target/deb}
bins=(gateway gateway-bench gateway-tune)

if [ "${NO_BUILD:-0}" != 1 ]; then
    (cd "$root" && cargo build --release --bin gateway --bin gateway-bench --bin gateway-tune)
fi
rel=$target/release
for b in "${bins[@]}"; do
    [ -x "$rel/$b" ] || { echo "build-deb: $rel/$b is not built" >&2; exit 1; }
done

# The workspace version ([workspace.package] in Cargo.toml).
version=$(awk '/^\[workspace.package\]/{w=1; next} /^\[/{w=0} w && /^version *=/{gsub(/[" ]/, "", $0); sub(/^version=/, ""); print; exit}' "$root/Cargo.toml")
[ -n "$version" ] || { echo "build-deb: no version in Cargo.toml" >&2; exit 1; }
arch=$(dpkg --print-architecture)

# The limits gateway-tune recommends for its default target. It raises
# them to this shell's hard limits (raise-only); lowered here so the unit
# carries the plan's own floor, not the build host's limits.
dropin=$(ulimit -n 1024; ulimit -Hn 1024; ulimit -l 64; ulimit -Hl 64; "$rel/gateway-tune" plan | sed -n '/gateway.service.d-90-gateway-tune.conf/,/^==>/p')
limit_nofile=$(sed -n 's/^LimitNOFILE=//p' <<<"$dropin")
limit_memlock=$(sed -n 's/^LimitMEMLOCK=//p' <<<"$dropin")
[ -n "$limit_nofile" ] && [ -n "$limit_memlock" ] || { echo "build-deb: gateway-tune plan printed no limits" >&2; exit 1; }

# Stop timeout: the drain deadline of the starter config plus 15 s.
config=$("$rel/gateway" config)
deadline_ms=$(awk '/^\[shutdown\]/{s=1; next} /^\[/{s=0} s && /^deadline_ms *=/{print $3; exit}' <<<"$config")
[ -n "$deadline_ms" ] || { echo "build-deb: no shutdown.deadline_ms in gateway config" >&2; exit 1; }
timeout_stop=$(( (deadline_ms + 999) / 1000 + 15 ))s

# Depends: the newest glibc symbol version the binaries use, and libgcc_s.
glibc=$(objdump -T "${bins[@]/#/$rel/}" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1 || true)
depends="libc6${glibc:+ (>= $glibc)}, libgcc-s1"

stage=$(mktemp -d "${TMPDIR:-/tmp}/gateway-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
pkg=$stage/gateway
install -d "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/etc/gateway" "$pkg/lib/systemd/system" "$pkg/usr/share/doc/gateway"
for b in "${bins[@]}"; do
    # Stripped, as Debian policy asks (the release profile keeps debuginfo).
    install -s -m 755 "$rel/$b" "$pkg/usr/bin/$b"
done
printf '%s\n' "$config" > "$pkg/etc/gateway/gateway.toml"
chmod 644 "$pkg/etc/gateway/gateway.toml"
sed -e "s/@LIMIT_NOFILE@/$limit_nofile/" -e "s/@LIMIT_MEMLOCK@/$limit_memlock/" \
    -e "s/@TIMEOUT_STOP_SEC@/$timeout_stop/" \
    "$root/packaging/deb/gateway.service.in" > "$pkg/lib/systemd/system/gateway.service"
chmod 644 "$pkg/lib/systemd/system/gateway.service"
install -m 644 "$root/LICENSE" "$pkg/usr/share/doc/gateway/copyright"
install -m 644 "$root/README.md" "$pkg/usr/share/doc/gateway/README.md"
install -m 644 "$root/packaging/deb/conffiles" "$pkg/DEBIAN/conffiles"
for s in postinst prerm postrm; do
    install -m 755 "$root/packaging/deb/$s" "$pkg/DEBIAN/$s"
done
size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@INSTALLED_SIZE@/$size/" \
    -e "s/@DEPENDS@/$depends/" "$root/packaging/deb/control.in" > "$pkg/DEBIAN/control"

mkdir -p "$out"
deb=$out/gateway_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
echo "$deb"
