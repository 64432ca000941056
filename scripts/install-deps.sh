#!/usr/bin/env bash
# Installs every Debian package hvstack needs to build, test and benchmark.
# Idempotent: packages already present are skipped, and `apt-get update` runs at most once.
set -euo pipefail

packages=(
	# build
	build-essential cmake clang pkg-config libclang-rt-14-dev jq
	# libraries the tree links against
	liburing-dev libaio-dev libxxhash-dev libjansson-dev zlib1g-dev
	# tests and benchmarks
	libcmocka-dev fio qemu-utils libvhdi-utils gdisk fdisk dosfstools mtools xorriso
	# the SCSI target tests decode INQUIRY, VPD pages and sense data with it
	sg3-utils
	# the VMM: firmware, the ACPI compiler for the DSDT, the nested guest rig
	seabios ovmf acpica-tools qemu-system-x86 busybox-static cpio kmod
	# vmm run --kernel: the Linux loader option ROM SeaBIOS runs (linuxboot_dma.bin)
	qemu-system-data
)

missing=()
for pkg in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$pkg")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "install-deps: all ${#packages[@]} packages present"
	exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
