#!/bin/sh
# A second Docker Engine reached over TLS, for `make test-tls` (spec/tls_spec.lua
# and the core specs over TLS). `tls-daemon.sh start` makes what is missing and
# does nothing when the daemon already answers; `tls-daemon.sh stop` ends it.
#
# - $DIR/certs: a CA (made here with openssl), the daemon's certificate for
#   127.0.0.1 and localhost, and a client's in the layout DOCKER_CERT_PATH wants
#   ($DIR/certs/client: ca.pem, cert.pem, key.pem); and, for the specs' failure
#   cases, another CA that signed nothing of the daemon's ($DIR/certs/other-ca),
#   an expired client certificate of the real CA ($DIR/certs/expired-client) and
#   an expired server certificate for 127.0.0.1 ($DIR/certs/expired-server).
# - dockerd with --tlsverify on tcp://127.0.0.1:$PORT (loopback only) and a
#   unix socket of its own, its own --data-root, --exec-root and --pidfile, and
#   the flags scripts/setup.sh gives the main one (no bridge, no iptables).
# - the test images loaded from the main Engine (docker save | docker load),
#   those it does not have yet.
#
# Environment: LOCKUP_TLS_DIR (/var/lib/lockup-tls), LOCKUP_TLS_PORT (2376),
# LOCKUP_TLS_IMAGES ("busybox:local").
set -eu
cd "$(dirname "$0")/.."

DIR=${LOCKUP_TLS_DIR:-/var/lib/lockup-tls}
PORT=${LOCKUP_TLS_PORT:-2376}
IMAGES=${LOCKUP_TLS_IMAGES:-busybox:local}
RUN=/run/lockup-tls
SOCK=$RUN/docker.sock
PIDFILE=$RUN/docker.pid
LOG=/var/log/lockup-tls-dockerd.log
CERTS=$DIR/certs

say() { printf 'tls-daemon: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
# The TLS daemon through its unix socket (no certificates needed there).
tls_docker() { docker -H "unix://$SOCK" "$@"; }
answers() { tls_docker version >/dev/null 2>&1; }
alive() {
    s=$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null)
    [ -n "$s" ] && [ "$s" != Z ]
}

# sign NAME CN EXT [openssl ca dates...]: a key and a certificate signed by the
# CA in $CERTS, with the extensions EXT (an openssl config section's lines).
sign() {
    name=$1 cn=$2 ext=$3
    shift 3
    work=$CERTS/.ca
    mkdir -p "$work/new"
    [ -f "$work/index.txt" ] || : >"$work/index.txt"
    [ -f "$work/serial" ] || echo 1000 >"$work/serial"
    cat >"$work/ca.cnf" <<EOF
[ca]
default_ca = lockup
[lockup]
database = $work/index.txt
new_certs_dir = $work/new
serial = $work/serial
default_md = sha256
default_days = 3650
policy = any
unique_subject = no
x509_extensions = ext
[any]
commonName = supplied
[ext]
basicConstraints = CA:FALSE
$ext
EOF
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$CERTS/$name-key.pem" \
        -out "$work/$name.csr" -subj "/CN=$cn" 2>/dev/null
    openssl ca -batch -notext -config "$work/ca.cnf" -cert "$CERTS/ca.pem" -keyfile "$CERTS/ca-key.pem" \
        -in "$work/$name.csr" -out "$CERTS/$name-cert.pem" "$@" 2>/dev/null
}

make_certs() {
    [ -f "$CERTS/expired-server/cert.pem" ] && return 0
    say "making a CA and certificates in $CERTS"
    rm -rf "$CERTS"
    mkdir -p "$CERTS"
    chmod 700 "$CERTS"
    (
        umask 077
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$CERTS/ca-key.pem" \
            -out "$CERTS/ca.pem" -days 3650 -subj "/CN=lockup test CA" 2>/dev/null
        server_ext="subjectAltName = IP:127.0.0.1,DNS:localhost
extendedKeyUsage = serverAuth"
        client_ext="extendedKeyUsage = clientAuth"
        sign server 127.0.0.1 "$server_ext"
        sign client lockup-client "$client_ext"
        sign expired-client lockup-client "$client_ext" -startdate 20200101000000Z -enddate 20200102000000Z
        sign expired-server 127.0.0.1 "$server_ext" -startdate 20200101000000Z -enddate 20200102000000Z
        mkdir -p "$CERTS/client" "$CERTS/expired-client" "$CERTS/expired-server" "$CERTS/other-ca"
        for d in client expired-client expired-server; do
            cp "$CERTS/ca.pem" "$CERTS/$d/ca.pem"
            mv "$CERTS/$d-cert.pem" "$CERTS/$d/cert.pem"
            mv "$CERTS/$d-key.pem" "$CERTS/$d/key.pem"
        done
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$CERTS/other-ca/key.pem" \
            -out "$CERTS/other-ca/ca.pem" -days 3650 -subj "/CN=lockup test CA" 2>/dev/null
    )
}

start() {
    if answers; then
        load_images
        return 0
    fi
    command -v dockerd >/dev/null || { say "dockerd not found: run scripts/setup.sh first"; exit 1; }
    docker version >/dev/null 2>&1 || { say "the main Docker Engine does not answer: run scripts/setup.sh first"; exit 1; }
    make_certs
    mkdir -p "$RUN" "$DIR/docker"
    # A daemon killed hard leaves its pid file; a new one refuses to start then.
    if [ -f "$PIDFILE" ]; then
        pid=$(cat "$PIDFILE" 2>/dev/null) || pid=""
        if [ -z "$pid" ] || ! alive "$pid"; then rm -f "$PIDFILE"; fi
    fi
    say "starting dockerd with --tlsverify on tcp://127.0.0.1:$PORT (log: $LOG)"
    # The flags of the main daemon (scripts/setup.sh): no bridge, no iptables.
    pid=$(as_root sh -c "nohup dockerd --bridge=none --iptables=false --ip-masq=false \
        --data-root '$DIR/docker' --exec-root '$RUN/exec' --pidfile '$PIDFILE' \
        -H 'unix://$SOCK' -H 'tcp://127.0.0.1:$PORT' --tlsverify --tlscacert '$CERTS/ca.pem' \
        --tlscert '$CERTS/server-cert.pem' --tlskey '$CERTS/server-key.pem' \
        >'$LOG' 2>&1 & echo \$!")
    i=0
    until answers; do
        i=$((i + 1))
        if ! alive "$pid"; then say "dockerd exited; the end of its log:"; tail -n 5 "$LOG" >&2; exit 1; fi
        [ $i -le 120 ] || { say "dockerd did not answer in 60 s; see $LOG"; exit 1; }
        sleep 0.5
    done
    load_images
}

load_images() {
    for image in $IMAGES; do
        tls_docker image inspect "$image" >/dev/null 2>&1 && continue
        say "loading image $image from the main Engine"
        docker save "$image" | tls_docker load >/dev/null
    done
}

stop() {
    pid=$(cat "$PIDFILE" 2>/dev/null) || pid=""
    if [ -z "$pid" ] || ! alive "$pid"; then say "not running"; return 0; fi
    as_root kill "$pid"
    i=0
    while alive "$pid"; do
        i=$((i + 1))
        [ $i -le 60 ] || { say "dockerd ($pid) did not stop in 30 s"; exit 1; }
        sleep 0.5
    done
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
