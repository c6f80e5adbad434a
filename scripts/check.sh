#!/bin/sh
# The whole test suite, as CI runs it (README: `make check`). Sets up what is
# missing, then: the specs on the plain build, once with boxes on the fifo
# lane (the default here) and once on the attach lane; the hostile suite again
# under dash and bash on both lanes, and under gVisor (runsc); the specs over
# TLS to a second dockerd (scripts/tls-daemon.sh, started by make test-tls);
# a subset covering every feature against Podman (scripts/podman.sh, by make test-podman);
# the specs with the core under AddressSanitizer + UBSan, the specs again under LuaJIT 2.1
# (against the core built for it), and a short libFuzzer run of each parser.
# Ends with one line of its own, "N passed, N failed", and exits non-zero on
# any failure.
set -u
cd "$(dirname "$0")/.."
LOCKUP_EXTRA_PACKAGES="nginx-light libnginx-mod-http-lua lua-resty-core libluajit2-5.1-dev luajit2 socat util-linux clang libclang-rt-14-dev lua-check runsc podman" ./scripts/setup.sh || exit 1

passed=0 failed=0 pending=0
counts=$(mktemp)
failures=$(mktemp)
times=$(mktemp)
trap 'rm -f "$counts" "$failures" "$times"' EXIT
started=$(date +%s)

# timed NAME COMMAND...: runs it, and notes how long it took for the summary.
timed() {
    t0=$(date +%s)
    shift
    "$@"
    rc=$?
    printf '%5d s  %s\n' $(($(date +%s) - t0)) "$name" >>"$times"
    return $rc
}

# suite NAME COMMAND...: runs a busted suite; its output handler writes the counts.
suite() {
    name=$1
    shift
    echo "== $name"
    : >"$counts"
    LOCKUP_COUNTS=$counts timed "$name" "$@"
    rc=$?
    if read -r p f n <"$counts" && [ -n "$p" ]; then
        passed=$((passed + p)) failed=$((failed + f)) pending=$((pending + n))
        sed -n "s/^FAILED /$name: /p" "$counts" >>"$failures"
        # busted itself failed (e.g. a sanitizer aborted it) after counting: one more failure
        [ $rc -eq 0 ] || [ "$f" -gt 0 ] || failed=$((failed + 1))
    else
        echo "$name: the suite did not finish (exit $rc)" | tee -a "$failures"
        failed=$((failed + 1))
    fi
}

# step NAME COMMAND...: a build step that counts as one test.
step() {
    name=$1
    shift
    echo "== $name"
    if timed "$name" "$@"; then passed=$((passed + 1)); else echo "$name: FAILED" | tee -a "$failures"; failed=$((failed + 1)); fi
}

step "build" make --no-print-directory
step "luacheck" make --no-print-directory lint
suite "specs (fifo lane)" make --no-print-directory test
suite "specs (attach lane)" make --no-print-directory test-attach
for sh in dash bash; do
    suite "hostile suite ($sh, fifo lane)" env LOCKUP_LANE=fifo make --no-print-directory "test-$sh"
    suite "hostile suite ($sh, attach lane)" env LOCKUP_LANE=attach make --no-print-directory "test-$sh"
done
suite "hostile suite (gVisor runsc, attach lane)" make --no-print-directory test-runsc
suite "lockup inside nginx" make --no-print-directory test-openresty
suite "specs over TLS" make --no-print-directory test-tls
suite "specs against Podman" make --no-print-directory test-podman
suite "specs under ASan+UBSan" make --no-print-directory test-asan
suite "specs under LuaJIT 2.1" make --no-print-directory test-luajit
# A short fuzz run per parser: replays the kept corpus, then explores a
# little; two at a time, one per core (each fuzzer is one process).
step "fuzz-build" make --no-print-directory fuzz-build
for pair in "demux sentinel" "output http" "frame cgroup"; do
    set -- $pair
    step "fuzz $1, $2 (${CHECK_FUZZ_SECONDS:-15} s each, side by side)" make --no-print-directory -j2 \
        "fuzz-$1" "fuzz-$2" FUZZ_SECONDS="${CHECK_FUZZ_SECONDS:-15}"
done

# Leftovers would mean a leak the specs did not see.
left=$(docker ps -aq --filter label=lockup.owner | wc -l)
step "no box left behind" test "$left" -eq 0
left=$(docker -H unix:///run/lockup-tls/docker.sock ps -aq --filter label=lockup.owner | wc -l)
step "no box left behind (TLS daemon)" test "$left" -eq 0
left=$(podman --url unix:///run/podman/podman.sock ps -aq --filter label=lockup.owner | wc -l)
step "no box left behind (Podman)" test "$left" -eq 0

echo "== time per part"
cat "$times"
printf '%5d s  make check in all\n' $(($(date +%s) - started))

# What failed, again, where a log cut to its tail still shows it.
[ -s "$failures" ] && { echo "== what failed"; cat "$failures"; }
echo "$passed passed, $failed failed, $pending skipped"
[ "$failed" -eq 0 ]
