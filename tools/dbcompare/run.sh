#!/usr/bin/env bash
# Runs every measurement twice; prints to stdout and results/run-<time>.txt.
# Usage: bash run.sh [data-dir]   (data-dir must be on the disk to measure, not tmpfs)
set -euo pipefail
cd "$(dirname "$0")"
DATA=${1:-data}
mkdir -p results "$DATA"
OUT=results/run-$(date -u +%Y%m%dT%H%M%SZ).txt
cargo build --release --quiet
B=target/release/dbbench
TIME=(timeout 600 /usr/bin/time -f 'wall=%es maxrss=%MKiB')
{
  echo "# $(date -u)  $(rustc --version)  fs: $(df -T "$DATA" | awk 'NR==2{print $2, $1}')"
  for round in 1 2; do
    echo "### round $round  load: $(cut -d" " -f1-3 /proc/loadavg)"
    for b in redb redb-qr sqlite-full sqlite-normal; do
      "${TIME[@]}" $B commit $b "$DATA/commit-$b" 300 2>&1
    done
    for b in redb sqlite-full; do
      dir="$DATA/startup-$b"
      "${TIME[@]}" $B populate $b "$dir" 2>&1
      $B startup $b "$dir" >/dev/null   # warm the page cache
      for i in 1 2; do "${TIME[@]}" $B startup $b "$dir" 2>&1; done
      # after an unclean exit (last commit not followed by a clean close)
      dirty=$b; [ $b = redb ] && dirty="redb redb-qr"
      for d in $dirty; do
        for i in 1 2; do
          $B dirty $d "$dir" >/dev/null
          echo "-- reopen after unclean exit, last commit by $d:"
          "${TIME[@]}" $B startup $b "$dir" 2>&1
        done
      done
    done
  done
} | tee "$OUT"
echo "written: $OUT"
