#!/bin/sh
# Makes this machine ready to build, test and run lockup, doing only what is
# missing: Debian packages, a Docker Engine that answers, the local test image.
# Idempotent; run by `make example` and `make check` (see README.md).
set -eu
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Temporary directories (image roots) and files to remove on exit, even on failure.
# A root debootstrap left mounts in (killed mid-run) is unmounted first, and rm
# stays on its file system, so a bind mount never takes the host's files along.
TEMP_DIRS=""
cleanup() {
    for d in $TEMP_DIRS; do
        [ -e "$d" ] || continue
        for m in $(awk -v d="$d/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r); do
            as_root umount -l "$m" 2>/dev/null || true
        done
        as_root rm -rf --one-file-system "$d" || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- Debian packages --------------------------------------------------------
PACKAGES="make gcc pkg-config lua5.4 liblua5.4-dev lua-cjson libcurl4-openssl-dev
lua-busted docker.io busybox-static bash-static debootstrap libarchive-dev libssl-dev
${LOCKUP_EXTRA_PACKAGES:-}"
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
# Is process $1 alive? A zombie is not: this machine's init may reap late.
alive() {
    s=$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null)
    [ -n "$s" ] && [ "$s" != Z ]
}

# A dockerd or containerd killed hard leaves its pid file, and a new one
# refuses to start while it is there: wait a little for a dying one to go,
# then remove the pid files of processes that are gone.
clear_stale_pid_files() {
    for pidfile in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile" 2>/dev/null)
        n=0
        while [ -n "$pid" ] && alive "$pid" && [ $n -lt 20 ]; do sleep 0.5; n=$((n + 1)); done
        if [ -z "$pid" ] || ! alive "$pid"; then as_root rm -f "$pidfile"; fi
    done
}

# Starts dockerd and waits until it answers: 0, or 1 when it exited or did
# not answer within 60 s.
start_dockerd() {
    clear_stale_pid_files
    say "starting dockerd (log: /var/log/lockup-dockerd.log)"
    # No bridge, no iptables: containers run with networking off (README.md, "Secure defaults").
    pid=$(as_root sh -c 'nohup dockerd --bridge=none --iptables=false --ip-masq=false \
        >/var/log/lockup-dockerd.log 2>&1 & echo $!')
    i=0
    until docker version >/dev/null 2>&1; do
        i=$((i + 1))
        if ! alive "$pid"; then say "dockerd exited; the end of its log:"; tail -n 5 /var/log/lockup-dockerd.log >&2; return 1; fi
        [ $i -le 120 ] || { say "dockerd did not answer in 60 s; see /var/log/lockup-dockerd.log"; return 1; }
        sleep 0.5
    done
}

# A docker CLI may exist with no daemon behind it: ask the daemon itself.
if ! docker version >/dev/null 2>&1; then
    command -v dockerd >/dev/null || { say "dockerd not found after installing docker.io"; exit 1; }
    # Once more if the first one exits (e.g. a pid file whose process was still dying).
    start_dockerd || { sleep 2; start_dockerd; } || exit 1
fi

# --- test images FROM scratch: Debian's static busybox, and for bash:local
# Debian's static bash as /bin/sh and /bin/bash (busybox for the other tools) --
# scratch_image TAG [SHELL]: builds TAG unless the Engine already has it.
scratch_image() {
    tag=$1 shell=${2:-}
    docker image inspect "$tag" >/dev/null 2>&1 && return 0
    say "building image $tag"
    root=$(mktemp -d)
    TEMP_DIRS="$TEMP_DIRS $root"
    mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root" "$root/home/sandbox"
    chmod 1777 "$root/tmp"
    cp /bin/busybox "$root/bin/busybox"
    if [ -n "$shell" ]; then
        cp "$shell" "$root/bin/bash"
        ln -s bash "$root/bin/sh"
    fi
    for applet in $("$root/bin/busybox" --list); do
        [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nsandbox:x:1000:1000:sandbox:/home/sandbox:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nsandbox:x:1000:\nnogroup:x:65534:\n' >"$root/etc/group"
    chown 1000:1000 "$root/home/sandbox"
    tar -C "$root" -c . | docker import - "$tag" >/dev/null
}
scratch_image busybox:local
scratch_image bash:local /bin/bash-static

# --- gVisor: Debian's runsc as the Engine's runtime "runsc", when installed ---
# With the ptrace platform (no KVM here) and gVisor's own --network=none: a box
# has networking off anyway, and runsc refuses to set up interfaces here
# ("cannot run with network enabled in root network namespace"). The runtime
# goes into /etc/docker/daemon.json (merged with what is there) and dockerd
# rereads that file on SIGHUP: no restart, running containers are left alone.
RUNSC_ARGS='"--platform=ptrace","--network=none"'
# Does the Engine know runtime runsc, with these arguments?
runsc_registered() {
    docker info --format '{{json .Runtimes.runsc}}' | grep -qF "\"runtimeArgs\":[$RUNSC_ARGS]"
}
register_runsc() {
    runsc=$(command -v runsc) || return 0
    runsc_registered && return 0
    say "registering runtime runsc ($runsc $RUNSC_ARGS) in /etc/docker/daemon.json"
    as_root mkdir -p /etc/docker
    merged=$(RUNSC=$runsc RUNSC_ARGS=$RUNSC_ARGS lua5.4 -e '
        local cjson = require "cjson"
        if cjson.encode_escape_forward_slash then cjson.encode_escape_forward_slash(false) end
        local f, conf = io.open("/etc/docker/daemon.json"), {}
        if f then conf = cjson.decode(f:read("a")); f:close() end
        conf.runtimes = conf.runtimes or {}
        conf.runtimes.runsc = { path = os.getenv("RUNSC"), runtimeArgs = cjson.decode("[" .. os.getenv("RUNSC_ARGS") .. "]") }
        io.write(cjson.encode(conf), "\n")') || { say "/etc/docker/daemon.json is not valid JSON: fix it first"; exit 1; }
    printf '%s\n' "$merged" | as_root tee /etc/docker/daemon.json.lockup >/dev/null
    as_root mv /etc/docker/daemon.json.lockup /etc/docker/daemon.json
    pid=$(cat /var/run/docker.pid 2>/dev/null) || pid=""
    [ -n "$pid" ] || { say "no /var/run/docker.pid: reload dockerd yourself (SIGHUP) to see runtime runsc"; exit 1; }
    as_root kill -HUP "$pid"
    i=0
    until runsc_registered; do
        i=$((i + 1))
        [ $i -le 20 ] || { say "dockerd did not take runtime runsc; see /var/log/lockup-dockerd.log"; exit 1; }
        sleep 0.5
    done
}
register_runsc

# --- Debian images, built with debootstrap from this machine's apt mirror ------
# The mirror: the first URIs: of debian.sources that is not the security archive,
# else the first deb line of sources.list (skipping an [option] block).
debian_mirror() {
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) if ($i !~ /-security/) { print $i; exit } }' \
            /etc/apt/sources.list.d/debian.sources
    elif [ -f /etc/apt/sources.list ]; then
        awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) while (i <= NF && $i !~ /\]$/) i++; if ($i ~ /\]$/) i++; print $i; exit }' \
            /etc/apt/sources.list
    fi
}

# debian_image TAG PACKAGES: a minimal bookworm (minbase) with PACKAGES (comma
# separated) imported as TAG, unless the Engine already has TAG.
debian_image() {
    tag=$1 include=$2
    docker image inspect "$tag" >/dev/null 2>&1 && return 0
    mirror=$(debian_mirror)
    [ -n "$mirror" ] || { say "no Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"; exit 1; }
    say "building image $tag (debootstrap, about a minute)"
    started=$(date +%s)
    dir=$(mktemp -d)
    TEMP_DIRS="$TEMP_DIRS $dir $dir.log"
    as_root debootstrap --variant=minbase --include="$include" bookworm "$dir" "$mirror" \
        >"$dir.log" 2>&1 || { say "debootstrap failed for $tag; its last lines:"; tail -n 20 "$dir.log" >&2; exit 1; }
    # Shrink: no package cache, no apt lists, no man pages or docs (copyrights stay).
    as_root rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/cache/apt/*.bin \
        "$dir"/var/lib/apt/lists/* "$dir"/usr/share/man/* "$dir"/usr/share/info/*
    as_root find "$dir/usr/share/doc" -type f ! -name copyright -delete
    as_root chmod 1777 "$dir/tmp"
    as_root tar -C "$dir" -c . | docker import - "$tag" >/dev/null
    as_root rm -rf --one-file-system "$dir" "$dir.log"
    say "built image $tag in $(($(date +%s) - started)) s"
}
debian_image debian-gm:local graphicsmagick
debian_image debian-lua:local lua5.4,lua-cjson
say "ready"
