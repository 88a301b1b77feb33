#!/usr/bin/env bash
# Proves the README's commands on a freshly installed Debian 12: builds a minimal Debian 12 root
# with debootstrap, copies a clean clone of this repository into it (committed files only), and
# runs there, as root in a chroot, the README's first command (set-up, build, generate), then
# `scripts/test.sh -L unit`. Prints the wall time of each. Needs root and a Debian mirror.
#
#   scripts/fresh_machine_test.sh [WORKDIR]     (default: a temporary folder, removed after)
#   DEBIAN_MIRROR=http://... scripts/fresh_machine_test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
if [ "$(id -u)" -ne 0 ]; then
  echo "fresh_machine_test: needs root (debootstrap, mount, chroot)" >&2
  exit 2
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

keep=1
work=${1:-}
if [ -z "$work" ]; then
  work=$(mktemp -d /var/tmp/diffuse-fresh-XXXXXX)
  keep=0
fi
root="$work/root"
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
mounts=()
cleanup() {
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
  if [ "$keep" -eq 0 ]; then rm -rf "$work"; fi
}
trap cleanup EXIT
bind() {  # bind SRC DEST [ro]
  mkdir -p "$2"
  mount --bind "$1" "$2"
  mounts+=("$2")
  if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$2"; fi
}

seconds() { date +%s; }
t0=$(seconds)
if [ ! -x "$root/bin/bash" ]; then
  echo "fresh_machine_test: debootstrap bookworm into $root"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log"; exit 1; }
fi
cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
cp /etc/resolv.conf "$root/etc/resolv.conf"
# A network that intercepts TLS needs its local certificate authorities; they are the network's
# set-up, not the project's, so the host's are carried in (ca-certificates adds them at install).
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  if [ -x "$root/usr/sbin/update-ca-certificates" ]; then
    chroot "$root" /usr/sbin/update-ca-certificates >/dev/null 2>&1 || true
  fi
fi
t1=$(seconds)

# A clean clone: what CI and a new user get (committed files only, no build, no third_party).
rm -rf "$root/src"
mkdir -p "$root/src"
git clone -q "$repo" "$root/src/diffuse"
# The reference data sits beside the clone, as on CI (read-only).
if [ -d "$repo/../shared/reference" ]; then
  bind "$repo/../shared/reference" "$root/src/shared/reference" ro
fi
bind /proc "$root/proc"
bind /sys "$root/sys"
bind /dev "$root/dev"
bind /dev/pts "$root/dev/pts"

# The README's first command, read from the README itself.
first=$(sed -n '/^```sh/,/^```/p' README.md | grep -m1 '^scripts/setup.sh')
echo "fresh_machine_test: running the README's first command: $first"
chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
  NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt /bin/bash -c "cd /src/diffuse && $first"
test -s "$root/src/diffuse/emoji.png"
t2=$(seconds)
echo "fresh_machine_test: running scripts/test.sh -L unit"
chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
  NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt /bin/bash -c "cd /src/diffuse && scripts/test.sh -L unit"
t3=$(seconds)

echo "fresh_machine_test: passed"
echo "  debootstrap:                  $((t1 - t0)) s"
echo "  README first command:         $((t2 - t1)) s"
echo "  scripts/test.sh -L unit:      $((t3 - t2)) s"
