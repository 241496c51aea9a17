#!/usr/bin/env bash
# Cold release build time and dependency count of a minimal crate that depends
# on only one database. Each build uses a fresh, empty target dir; crate
# sources are fetched before the clock starts (download time not included).
# Usage: bash build-time.sh [runs]   (default 2)
set -euo pipefail
cd "$(dirname "$0")"
RUNS=${1:-2}
WORK=target/buildtime
mkdir -p results "$WORK"
OUT=results/build-$(date -u +%Y%m%dT%H%M%SZ).txt
mk() { # name, dependency line, main.rs body
  mkdir -p "$WORK/$1/src"
  printf '[package]\nname = "min-%s"\nversion = "0.0.0"\nedition = "2021"\n\n[workspace]\n\n[dependencies]\n%s\n' "$1" "$2" >"$WORK/$1/Cargo.toml"
  printf 'fn main() {\n%s\n}\n' "$3" >"$WORK/$1/src/main.rs"
}
mk redb 'redb = "4.6"' '    let db = redb::Database::create("x.redb").unwrap(); drop(db);'
mk sqlite 'rusqlite = { version = "0.43", features = ["bundled"] }' '    let c = rusqlite::Connection::open_in_memory().unwrap(); drop(c);'
{
  echo "# $(date -u)  $(rustc --version)  nproc=$(nproc)  load: $(cut -d' ' -f1-3 /proc/loadavg)"
  for name in redb sqlite; do
    dir="$WORK/$name"
    (cd "$dir" && cargo generate-lockfile --quiet && cargo fetch --quiet)
    deps=$(cd "$dir" && cargo tree -e normal --prefix none | sort -u | wc -l)
    echo "== $name: $(cd "$dir" && cargo tree -e normal --depth 1 --prefix none | sed -n 2p)"
    echo "dependency count (cargo tree -e normal --prefix none | sort -u | wc -l, includes the crate itself): $deps"
    echo "all crates built (incl. build deps): $(cd "$dir" && cargo tree -e normal,build --prefix none | sort -u | wc -l)"
    for i in $(seq "$RUNS"); do
      rm -rf "$dir/target"
      s=$(date +%s.%N)
      (cd "$dir" && cargo build --release --quiet)
      e=$(date +%s.%N)
      echo "cold cargo build --release #$i: $(echo "$e - $s" | bc) s  (load $(cut -d' ' -f1 /proc/loadavg))"
    done
    rm -rf "$dir/target"
  done
} | tee "$OUT"
echo "written: $OUT"
