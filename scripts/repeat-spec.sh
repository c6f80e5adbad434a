#!/bin/sh
# Runs one spec many times on each lane, to prove a fix for a flaky one (not
# part of make check). Usage: scripts/repeat-spec.sh N FILE FILTER
# Prints each lane's count of runs that passed; exits non-zero if any failed.
set -u
cd "$(dirname "$0")/.."
n=$1 file=$2 filter=$3
status=0
for lane in fifo attach; do
    out=$(LOCKUP_LANE=$lane lua5.4 /usr/bin/busted --repeat="$n" --filter="$filter" "$file" 2>&1)
    summary=$(printf '%s\n' "$out" | grep -a "successes\|success /" | tail -n 1)
    echo "$lane lane, $n runs of '$filter': $summary"
    printf '%s\n' "$summary" | grep -q " 0 failures / 0 errors" || { status=1; printf '%s\n' "$out" | grep -a -A8 "^Failure\|^Error" | head -40; }
done
exit $status
