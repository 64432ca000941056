#!/usr/bin/env bash
# The main job, end to end on a fresh Debian 12 machine: install dependencies, build, make
# disk images with vdisk (raw and a dynamic VHDX), show what they are, and benchmark the
# I/O engine and the VHDX driver on them; then convert, merge, compact and resize them;
# finally boot a generation 1 VM from a VHDX and run fio inside it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh" build
vdisk=$root/build/tools/vdisk
work=${HVSTACK_WORK:-$root/out/demo}
mkdir -p "$work"
raw=$work/disk.raw
vhdx=$work/disk.vhdx

echo "== vdisk create: a 1 GiB raw disk and a 1 GiB dynamic VHDX"
"$vdisk" create --force "$raw" 1G
"$vdisk" create -f vhdx --force "$vhdx" 1G
# Fill the raw disk so reads reach the device instead of unwritten extents.
echo "== vdisk bench: sequential 1M writes fill the raw disk"
"$vdisk" bench --rw write --bs 1M --iodepth 8 --ios 1024 "$raw"
echo "== vdisk bench: 4k random reads on the raw disk, QD32, 5 s"
"$vdisk" bench --rw randread --bs 4k --iodepth 32 --runtime 5 "$raw"
echo "== vdisk bench: 4k random writes into the empty VHDX (allocating blocks), flushing every 64 writes"
"$vdisk" bench --rw randwrite --bs 4k --iodepth 32 --fsync 64 --runtime 5 "$vhdx"
echo "== vdisk bench: 4k random reads from the VHDX, QD32, 5 s"
"$vdisk" bench --rw randread --bs 4k --iodepth 32 --runtime 5 "$vhdx"
echo "== vdisk info and check on the VHDX"
"$vdisk" info "$vhdx"
"$vdisk" check "$vhdx"
echo "== vdisk convert: the VHDX to a raw copy and to a dynamic VHD; vdisk compare and qemu-img compare agree"
"$vdisk" convert --force "$vhdx" "$work/copy.raw"
"$vdisk" convert --force -O vhd "$vhdx" "$work/copy.vhd"
"$vdisk" compare "$vhdx" "$work/copy.vhd"
qemu-img compare -f vhdx -F vpc "$vhdx" "$work/copy.vhd"
echo "== a differencing VHDX on top, written, then merged back into its parent"
"$vdisk" create -f vhdx --force --parent "$vhdx" "$work/child.vhdx"
"$vdisk" bench --rw randwrite --bs 64k --iodepth 8 --ios 512 --fsync 64 "$work/child.vhdx"
"$vdisk" chain "$work/child.vhdx"
"$vdisk" convert --force "$work/child.vhdx" "$work/flat.raw"
"$vdisk" merge "$work/child.vhdx"
"$vdisk" compare "$vhdx" "$work/flat.raw"
echo "== zeros over the first half of the raw disk, copied into the VHDX, then compact it"
dd if=/dev/zero of="$raw" bs=1M count=512 conv=notrunc status=none
"$vdisk" convert --target-existing "$raw" "$vhdx"
"$vdisk" compact "$vhdx"
"$vdisk" compare "$raw" "$vhdx"
"$vdisk" check "$vhdx"
echo "== grow the VHDX by 1 GiB"
"$vdisk" resize "$vhdx" +1G
"$vdisk" info "$vhdx" | head -5
echo "== vmm: a generation 1 VM boots Linux from a VHDX made by vdisk and runs fio on its IDE disk"
# This machine's /dev/kvm cannot run a Linux kernel, so the VM runs in the nested rig:
# QEMU (TCG, emulated SVM) boots a Debian kernel with kvm-amd, in which `vmm run` boots the
# guest through SeaBIOS from the VHDX (ata_piix, IDE DVD, fio with crc32c verify); the host
# then reads what the guest wrote with vdisk and qemu-img. Takes a few minutes.
"$root/scripts/rig.sh" vmm
