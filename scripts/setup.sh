#!/bin/sh
# Makes this machine ready to build, test and run lockup, doing only what is
# missing: Debian packages, a Docker Engine that answers, the local test image.
# Idempotent; run by `make example` and `make check` (see README.md).
set -eu
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# --- Debian packages --------------------------------------------------------
PACKAGES="make gcc pkg-config lua5.4 liblua5.4-dev lua-cjson libcurl4-openssl-dev
lua-busted docker.io busybox-static ${LOCKUP_EXTRA_PACKAGES:-}"
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    say "installing:$missing"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

# --- a Docker Engine --------------------------------------------------------
# A docker CLI may exist with no daemon behind it: ask the daemon itself.
if ! docker version >/dev/null 2>&1; then
    command -v dockerd >/dev/null || { say "dockerd not found after installing docker.io"; exit 1; }
    # A dockerd or containerd killed hard leaves its pid file, and a new one
    # refuses to start while it is there: remove those of dead processes.
    for pidfile in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
        if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then as_root rm -f "$pidfile"; fi
    done
    say "starting dockerd (log: /var/log/lockup-dockerd.log)"
    # No bridge, no iptables: containers run with networking off (see DESIGN.md).
    as_root sh -c 'nohup dockerd --bridge=none --iptables=false --ip-masq=false \
        >/var/log/lockup-dockerd.log 2>&1 &'
    i=0
    until docker version >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -le 60 ] || { say "dockerd did not answer in 30 s; see /var/log/lockup-dockerd.log"; exit 1; }
        sleep 0.5
    done
fi

# --- the test image: busybox:local, FROM scratch + Debian's static busybox ----
if ! docker image inspect busybox:local >/dev/null 2>&1; then
    say "building image busybox:local"
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root" "$root/home/sandbox"
    chmod 1777 "$root/tmp"
    cp /bin/busybox "$root/bin/busybox"
    for applet in $("$root/bin/busybox" --list); do
        [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nsandbox:x:1000:1000:sandbox:/home/sandbox:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nsandbox:x:1000:\nnogroup:x:65534:\n' >"$root/etc/group"
    chown 1000:1000 "$root/home/sandbox"
    tar -C "$root" -c . | docker import - busybox:local >/dev/null
fi
say "ready"
