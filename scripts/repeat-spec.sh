#!/bin/sh
# Runs one spec many times on each lane, to prove a fix for a flaky one (not
# part of make check). Usage: scripts/repeat-spec.sh N FILE FILTER
# Prints, per lane, how many of the N runs passed (busted prints a summary
# line per run); exits non-zero if any run failed.
set -u
cd "$(dirname "$0")/.."
n=$1 file=$2 filter=$3
status=0
for lane in fifo attach; do
    out=$(LOCKUP_LANE=$lane lua5.4 /usr/bin/busted --repeat="$n" --filter="$filter" "$file" 2>&1)
    runs=$(printf '%s\n' "$out" | grep -ac " / .* failures\? / .* errors\? / ")
    clean=$(printf '%s\n' "$out" | grep -a " / .* failures\? / .* errors\? / " | grep -ac " 0 failures / 0 errors")
    echo "$lane lane, '$filter' in $file: $clean of $runs runs passed (asked for $n)"
    if [ "$clean" -ne "$n" ] || [ "$runs" -ne "$n" ]; then
        status=1
        printf '%s\n' "$out" | grep -a -A8 "^Failure\|^Error" | head -40
    fi
done
exit $status
