#!/bin/sh
# Makes a Podman service answer at $PODMAN_SOCK (default
# /run/podman/podman.sock) for `make test-podman`, doing only what is missing:
# Debian's podman, the service itself, the test images. Run after
# scripts/setup.sh (the images come from the Docker Engine it starts).
set -eu
cd "$(dirname "$0")/.."

SOCK=${PODMAN_SOCK:-/run/podman/podman.sock}
LOG=/var/log/lockup-podman.log
# The service's own configuration, not /etc/containers/containers.conf (a
# user's, left alone): Debian's podman 4.3 runs containers on this kind of
# machine only with runc and cgroupfs (crun refuses cgroup hybrid mode) and
# without default ulimits (root here cannot raise them).
CONF=${PODMAN_CONF:-/run/lockup-podman/containers.conf}

say() { printf 'podman: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
answers() { curl -sf --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1; }

if ! command -v podman >/dev/null; then
    say "installing podman"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman >/dev/null
fi

if ! answers; then
    as_root mkdir -p "$(dirname "$CONF")" "$(dirname "$SOCK")"
    printf '[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\nruntime = "runc"\n' |
        as_root tee "$CONF" >/dev/null
    say "starting podman system service on $SOCK (config $CONF, log $LOG)"
    as_root sh -c "CONTAINERS_CONF='$CONF' nohup podman system service --time=0 'unix://$SOCK' >'$LOG' 2>&1 &"
    i=0
    until answers; do
        i=$((i + 1))
        [ $i -le 60 ] || { say "the service did not answer in 30 s; see $LOG"; tail -n 5 "$LOG" >&2; exit 1; }
        sleep 0.5
    done
fi

# The test images, from the Docker Engine (Podman names them localhost/NAME).
for image in busybox:local debian-lua:local; do
    as_root podman image exists "localhost/$image" && continue
    say "loading $image from the Docker Engine"
    docker save "$image" | as_root podman load -q >/dev/null
done
