#!/usr/bin/env bash
# storvsp + VMBus host microbenchmark: the host CPU per 4 KiB request that storvsp,
# scsi_disk and the VMBus host add to the disk queue, and the notifications per request,
# with the test VSC playing the Linux guest (no VM). Rows: a RAM disk (a raw image on
# /dev/shm) and an O_DIRECT raw file, random reads and writes, QD1 and QD32, one and two
# channels, printed as a markdown table (--json: JSON). See bench/vsp/README.md.
#
# Usage: bench/vsp.sh [--quick] [--json] [--runtime S] [--dir DIR] [vspbench options...]
#   --quick         CI slice: five rows of 0.2 s (about 2 s in all)
#   VSPBENCH=path   the benchmark binary (default: build/bench/vsp/vspbench)
# The program fails when a row moved no request or counted nothing; it asserts no timing.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
bin=${VSPBENCH:-$root/build/bench/vsp/vspbench}
dir=${BENCH_DIR:-$root/out/bench}

case "${1:-}" in -h|--help) sed -n '2,11p' "$0"; exec "$bin" --help ;; esac
[ -x "$bin" ] || { echo "vsp.sh: '$bin' not found (build first: scripts/build.sh build)" >&2; exit 2; }
mkdir -p "$dir"
echo "vsp.sh: O_DIRECT file in $dir, RAM disk in /dev/shm" >&2
exec "$bin" --dir "$dir" "$@"
