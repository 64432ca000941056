#!/usr/bin/env bash
# The main job, end to end on a fresh Debian 12 machine: install dependencies, build, make
# a disk image with vdisk, show what it is, and benchmark the I/O engine on it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh" build
vdisk=$root/build/tools/vdisk
work=${HVSTACK_WORK:-$root/out/demo}
mkdir -p "$work"
disk=$work/disk.raw

echo "== vdisk create"
"$vdisk" create --force "$disk" 1G
echo "== vdisk info"
"$vdisk" info "$disk"
# Fill it with data so reads reach the device instead of unwritten extents.
echo "== vdisk bench: sequential 1M writes fill the disk"
"$vdisk" bench --rw write --bs 1M --iodepth 8 --ios 1024 "$disk"
echo "== vdisk bench: 4k random reads, QD32, 5 s"
"$vdisk" bench --rw randread --bs 4k --iodepth 32 --runtime 5 "$disk"
echo "== vdisk bench: 4k random writes, QD32, 5 s"
"$vdisk" bench --rw randwrite --bs 4k --iodepth 32 --runtime 5 "$disk"
