#!/usr/bin/env bash
# Builds the nested rig's images from Debian packages, without root and without installing
# anything: the packages are fetched with `apt-get download` and unpacked with `dpkg-deb -x`.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

usage() {
	cat <<EOF
Usage: tests/guest/rig/build.sh [--print-dir] [--help]

Builds, in a cache directory keyed by the package versions and the rig's scripts
(\$HVSTACK_RIG_CACHE/<key>, default ~/.cache/hvstack-rig/<key>):
  vmlinuz            the Debian 12 kernel linux-image-amd64 depends on (L1 and L2)
  l2-initrd.img      L2: busybox, IDE/SCSI/CD-ROM (and Hyper-V) modules, the ACPI button and
                     evdev modules, fio, the test plan
  l2-disk.raw        L2 boot disk: MBR, FAT boot partition with SYSLINUX, kernel, initramfs,
                     and a data partition; also as l2-disk.vhdx and l2-disk.vhd (vdisk convert)
  dvd.iso            the DVD: random data with a recorded SHA-256
  l1-initrd.img      L1: busybox, kvm/kvm-amd (nested=1), virtio disk and ext4 modules,
                     kvm_probe, and the vmm binary when it is built
  l2.env, l1.env     what run.sh needs to know about them
Only what changed is rebuilt; the downloaded packages are kept in \$HVSTACK_RIG_CACHE/debs.

Environment: HVSTACK_RIG_CACHE (cache root), HVSTACK_BUILD (build tree, default build/),
VDISK (vdisk binary), VMM (vmm binary, default build/vmm/vmm), KVM_PROBE (default
build/tests/guest/rig/kvm_probe).
--print-dir  print only the cache directory on stdout (progress goes to stderr)
EOF
}

print_dir=0
for arg in "$@"; do
	case $arg in
	--print-dir) print_dir=1 ;;
	*) rig_help_or_usage_error "$arg" ;;
	esac
done

# Layout of the L2 disk (MiB): MBR, boot partition, data partition. The data partition's
# first 40 MiB are fio's (run by l2-init.sh); the host checks the pattern at PATTERN_MIB.
BOOT_START_MIB=1
DATA_MIB=64
PATTERN_MIB=40
DVD_DATA_MIB=8

rig_need_tools apt-get apt-cache dpkg dpkg-deb depmod modprobe cpio gzip sfdisk mkfs.fat mcopy \
	xorriso sha256sum ldd flock

# ---- which packages, which versions ----

kernel_package() {
	apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}

# The packages holding the libraries fio loads. The loader of this machine names the files
# (fio from scripts/install-deps.sh); dpkg says which packages they come from.
fio_library_packages() {
	local libs real owners lib
	[ -x /usr/bin/fio ] || rig_die "fio is not installed; run scripts/install-deps.sh"
	mapfile -t libs < <(ldd /usr/bin/fio | awk '/=> \// { print $3 } /^\t\// { print $1 }')
	mapfile -t real < <(readlink -f "${libs[@]}")
	# dpkg knows a file by the path its package ships, which may differ from the one the
	# loader found (/lib vs /usr/lib, symbolic links): ask for both.
	owners=$(dpkg -S "${libs[@]}" "${real[@]}" 2>/dev/null || true)
	for lib in "${libs[@]}"; do
		grep -qF -e ": $lib" -e ": $(readlink -f "$lib")" <<<"$owners" ||
			rig_die "no Debian package owns $lib (a library of fio)"
	done
	sed 's/: .*//' <<<"$owners" | tr ',' '\n' | sed 's/^ *//; s/:.*//' | sort -u
}

# "PACKAGE=VERSION" for each PACKAGE: the version apt would download (one apt-cache call).
candidate_versions() { # PACKAGE...
	apt-cache policy "$@" | awk '
		/^[^ ]+:$/ { pkg = substr($1, 1, length($1) - 1) }
		/^  Candidate:/ { print pkg "=" $2 }'
}

KERNEL_PKG=$(kernel_package)
[ -n "$KERNEL_PKG" ] || rig_die "apt-cache knows no linux-image-amd64; run apt-get update"
mapfile -t fio_packages < <(fio_library_packages)
packages=("$KERNEL_PKG" busybox-static fio syslinux syslinux-common seabios "${fio_packages[@]}")
mapfile -t versions < <(candidate_versions "${packages[@]}")
for pkg in "${packages[@]}"; do
	pv=$(printf '%s\n' "${versions[@]}" | grep "^$pkg=" || true)
	[ -n "$pv" ] && [ "${pv#*=}" != "(none)" ] || rig_die "no candidate version of $pkg; run apt-get update"
done

key=$( (
	printf '%s\n' "${versions[@]}"
	cat "$rig_dir/build.sh" "$rig_dir/lib.sh" "$rig_dir/l2-init.sh" "$rig_dir/guest-common.sh"
) | sha256sum | cut -c1-16)
out=$rig_cache_root/$key
debs=$rig_cache_root/debs
mkdir -p "$out" "$debs"
# One build at a time per cache (runs from several worktrees share it).
exec 9>"$rig_cache_root/.lock"
flock 9

# ---- download and unpack ----

deb_file() { # PACKAGE=VERSION: the downloaded .deb (apt-get names it with %3a for ':')
	local pkg=${1%%=*} ver=${1#*=}
	ls "$debs/${pkg}_${ver//:/%3a}_"*.deb 2>/dev/null | head -n 1
}

download() {
	local want=() pv
	for pv in "${versions[@]}"; do
		[ -n "$(deb_file "$pv")" ] || want+=("$pv")
	done
	[ ${#want[@]} -gt 0 ] || return 0
	rig_log "downloading ${#want[@]} packages"
	# (as root apt warns that it cannot drop privileges to write here; that is harmless)
	(cd "$debs" && apt-get download -qq "${want[@]}") 2>"$debs/download.log" ||
		rig_die "apt-get download failed: $(grep -v unsandboxed "$debs/download.log")"
	for pv in "${want[@]}"; do
		[ -n "$(deb_file "$pv")" ] || rig_die "apt-get download did not produce $pv"
	done
}

unpack() { # DEST PACKAGE=VERSION...
	local dest=$1 pv
	shift
	rm -rf "$dest"
	mkdir -p "$dest"
	for pv in "$@"; do
		dpkg-deb -x "$(deb_file "$pv")" "$dest"
	done
}

version_of() { # PACKAGE: its PACKAGE=VERSION entry
	local pv
	for pv in "${versions[@]}"; do
		[ "${pv%%=*}" != "$1" ] || {
			echo "$pv"
			return
		}
	done
}

# ---- initramfs helpers ----

# The loader a binary asks for, and the libraries it resolves, as "WANTED-PATH FILE" lines.
# With a ROOT (unpacked packages), the loader of ROOT resolves inside ROOT only.
list_libraries() { # BINARY [ROOT]
	local bin=$1 root=${2:-} out
	if [ -z "$root" ]; then
		out=$(ldd "$bin" 2>&1) || {
			[[ $out == *"not a dynamic executable"* ]] && return 0
			rig_die "ldd $bin: $out"
		}
	else
		local dirs
		dirs=$(find "$root" -name '*.so*' -printf '%h\n' | sort -u | tr '\n' ':')
		out=$(LD_LIBRARY_PATH=$dirs "$root/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --list "$bin")
	fi
	if grep -q 'not found' <<<"$out"; then
		rig_die "libraries of $bin not found: $(grep 'not found' <<<"$out" | tr -s '\t\n' '  ')"
	fi
	awk '/=> \// { print $3 } /^\t\// { print $1 }' <<<"$out" | while read -r file; do
		if [ -n "$root" ]; then
			case $file in
			"$root"/*) echo "${file#"$root"} $file" ;;
			/lib64/ld-linux-x86-64.so.2) echo "$file $root/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" ;;
			*) rig_die "$bin needs $file, which none of the downloaded packages holds" ;;
			esac
		else
			echo "$file $file"
		fi
	done
}

# Copies BINARY to DEST/TARGET and every library it loads to the same path under DEST.
install_binary() { # DEST BINARY TARGET [ROOT]
	local dest=$1 bin=$2 target=$3 root=${4:-} wanted file
	install -D -m 755 "$bin" "$dest$target"
	while read -r wanted file; do
		install -D -m 755 "$(readlink -f "$file")" "$dest$wanted"
	done < <(list_libraries "$bin" "$root")
}

# Copies the modules MODULE... need, in load order, into DEST and lists their in-guest paths
# in DEST/LISTFILE. Modules already named in the files of SKIPLISTS are left out.
install_modules() { # DEST LISTFILE "SKIPLISTS" MODULE...
	local dest=$1 list=$2 skip=$3 mod path rel
	shift 3
	mkdir -p "$(dirname "$dest$list")"
	for mod in "$@"; do
		modprobe -d "$kernel_root" -S "$KVER" --show-depends "$mod" ||
			rig_die "module $mod not in $KERNEL_PKG"
	done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }' | while read -r path; do
		rel=${path#"$kernel_root"}
		# shellcheck disable=SC2086
		if [ -n "$skip" ] && grep -qxF "$rel" $skip 2>/dev/null; then
			continue
		fi
		install -D -m 644 "$path" "$dest$rel"
		echo "$rel"
	done >"$dest$list"
}

install_busybox() { # DEST
	install -D -m 755 "$busybox_root/bin/busybox" "$1/bin/busybox"
	install -D -m 644 "$rig_dir/guest-common.sh" "$1/etc/rig/common.sh"
	mkdir -p "$1/dev" "$1/proc" "$1/sys" "$1/tmp"
}

make_cpio() { # DIR OUTPUT: gzip'ed newc archive, files owned by root
	(cd "$1" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -6 >"$2.tmp"
	mv "$2.tmp" "$2"
}

# ---- L2 ----

build_l2_initramfs() {
	local dir=$out/l2-root
	rm -rf "$dir"
	install_busybox "$dir"
	install -m 755 "$rig_dir/l2-init.sh" "$dir/init"
	install_modules "$dir" /etc/rig/modules "" ata_piix sd_mod sr_mod cdrom scsi_mod
	install_modules "$dir" /etc/rig/modules-hv "$dir/etc/rig/modules" hv_vmbus hv_storvsc \
		scsi_transport_fc
	# The ACPI power button and the evdev nodes busybox acpid reads it from.
	install_modules "$dir" /etc/rig/modules-power "" button evdev
	install_binary "$dir" "$fio_root/usr/bin/fio" /usr/bin/fio "$fio_root"
	make_cpio "$dir" "$out/l2-initrd.img"
	rm -rf "$dir"
}

build_dvd() {
	local dir=$out/dvd-root
	rm -rf "$dir"
	mkdir -p "$dir"
	head -c $((DVD_DATA_MIB * 1048576)) /dev/urandom >"$dir/random.bin"
	xorriso -as mkisofs -quiet -V RIGDVD -o "$out/dvd.iso" "$dir" 2>"$out/xorriso.log" ||
		rig_die "xorriso failed: $(cat "$out/xorriso.log")"
	rm -rf "$dir"
}

mib_of() { # FILE: its size rounded up to whole MiB
	echo $((($(stat -c %s "$1") + 1048575) / 1048576))
}

# The boot partition as its own FAT file system: SYSLINUX (installed with mtools), the
# kernel, the initramfs and a default config; the hidden-sector count is the partition start.
build_boot_partition() { # FILE MIB
	rm -f "$1"
	truncate -s "$2M" "$1"
	mkfs.fat -n RIGBOOT -h $((BOOT_START_MIB * 2048)) "$1" >/dev/null
	MTOOLS_SKIP_CHECK=1 "$syslinux_root/usr/bin/syslinux" --install "$1"
	rig_write_syslinux_cfg "$out/syslinux.cfg" acpi default
	MTOOLS_SKIP_CHECK=1 mcopy -i "$1" "$out/vmlinuz" ::/vmlinuz
	MTOOLS_SKIP_CHECK=1 mcopy -i "$1" "$out/l2-initrd.img" ::/initrd.img
	MTOOLS_SKIP_CHECK=1 mcopy -i "$1" "$out/syslinux.cfg" ::/syslinux.cfg
}

build_l2_disk() {
	local boot_mib disk_mib raw=$out/l2-disk.raw
	boot_mib=$(($(mib_of "$out/vmlinuz") + $(mib_of "$out/l2-initrd.img") + 8))
	disk_mib=$((BOOT_START_MIB + boot_mib + DATA_MIB))
	L2_BOOT_START_MIB=$BOOT_START_MIB
	L2_DATA_START_MIB=$((BOOT_START_MIB + boot_mib))
	L2_DISK_SECTORS=$((disk_mib * 2048))
	L2_DATA_SECTORS=$((DATA_MIB * 2048))
	L2_PATTERN_MIB=$PATTERN_MIB
	L2_DVD_BYTES=$(stat -c %s "$out/dvd.iso")
	L2_DVD_SHA256=$(sha256sum <"$out/dvd.iso" | cut -d' ' -f1)

	rm -f "$raw"
	truncate -s "${disk_mib}M" "$raw"
	sfdisk -q "$raw" <<EOF
label: dos
start=$((BOOT_START_MIB * 2048)), size=$((boot_mib * 2048)), type=c, bootable
start=$((L2_DATA_START_MIB * 2048)), size=$L2_DATA_SECTORS, type=da
EOF
	dd if="$syslinux_common_root/usr/lib/syslinux/mbr/mbr.bin" of="$raw" bs=440 count=1 \
		conv=notrunc status=none
	build_boot_partition "$out/boot.fat" "$boot_mib"
	dd if="$out/boot.fat" of="$raw" bs=1M seek=$BOOT_START_MIB conv=notrunc,sparse status=none
	rm -f "$out/boot.fat"
	rm -f "$out/l2-disk.vhdx" "$out/l2-disk.vhd"
	rig_vdisk convert -O vhdx "$raw" "$out/l2-disk.vhdx" >&2
	rig_vdisk convert -O vhd "$raw" "$out/l2-disk.vhd" >&2
}

write_l2_env() {
	cat >"$out/l2.env.tmp" <<EOF
KVER=$KVER
L2_BOOT_START_MIB=$L2_BOOT_START_MIB
L2_DATA_START_MIB=$L2_DATA_START_MIB
L2_DISK_SECTORS=$L2_DISK_SECTORS
L2_DATA_SECTORS=$L2_DATA_SECTORS
L2_PATTERN_MIB=$L2_PATTERN_MIB
L2_DVD_BYTES=$L2_DVD_BYTES
L2_DVD_SHA256=$L2_DVD_SHA256
EOF
	printf '%s\n' "${versions[@]}" >"$out/packages.txt"
	mv "$out/l2.env.tmp" "$out/l2.env"
}

# ---- L1 ----

# What L1 needs from the packages, kept so the unpacked packages can go: busybox, the KVM
# modules, the virtio disk and ext4 modules for the shared disk, SeaBIOS for the VMM.
build_l1_base() {
	local dir=$out/l1-base
	rm -rf "$dir"
	install_busybox "$dir"
	install_modules "$dir" /etc/rig/modules-kvm "" kvm_amd
	install_modules "$dir" /etc/rig/modules-share "" virtio_pci virtio_blk ext4
	mkdir -p "$dir/usr/share/qemu"
	cp -a "$seabios_root/usr/share/seabios" "$dir/usr/share/"
	# the option ROM `vmm run --kernel` loads the kernel with (qemu-system-data, installed)
	cp /usr/share/qemu/linuxboot_dma.bin "$dir/usr/share/qemu/"
}

build_l1_initramfs() { # VMM (may be empty)
	local dir=$out/l1-root
	rm -rf "$dir"
	cp -a "$out/l1-base" "$dir"
	install -m 755 "$rig_dir/l1-init.sh" "$dir/init"
	install_binary "$dir" "$kvm_probe" /usr/bin/kvm_probe
	[ -z "$1" ] || install_binary "$dir" "$1" /usr/bin/vmm
	make_cpio "$dir" "$out/l1-initrd.img"
	rm -rf "$dir"
	echo "L1_HAS_VMM=$([ -n "$1" ] && echo 1 || echo 0)" >"$out/l1.env"
}

kernel_root=$out/kernel
busybox_root=$out/busybox
fio_root=$out/fio
syslinux_root=$out/syslinux
syslinux_common_root=$out/syslinux
seabios_root=$out/seabios

if [ ! -e "$out/l2.done" ]; then
	rig_log "building L2 images in $out"
	download
	unpack "$kernel_root" "$(version_of "$KERNEL_PKG")"
	KVER=$(ls "$kernel_root/lib/modules")
	depmod -b "$kernel_root" "$KVER"
	cp "$kernel_root/boot/vmlinuz-$KVER" "$out/vmlinuz"
	unpack "$busybox_root" "$(version_of busybox-static)"
	unpack "$syslinux_root" "$(version_of syslinux)" "$(version_of syslinux-common)"
	unpack "$seabios_root" "$(version_of seabios)"
	fio_versions=()
	for pv in "${versions[@]}"; do
		case ${pv%%=*} in "$KERNEL_PKG" | busybox-static | syslinux | syslinux-common | seabios) ;;
		*) fio_versions+=("$pv") ;;
		esac
	done
	unpack "$fio_root" "${fio_versions[@]}"
	build_l2_initramfs
	build_dvd
	build_l2_disk
	build_l1_base
	write_l2_env
	rm -rf "$kernel_root" "$busybox_root" "$fio_root" "$syslinux_root" "$seabios_root"
	touch "$out/l2.done"
fi
. "$out/l2.env"

# L1 changes with the probe and the VMM binaries; it is rebuilt when they do.
kvm_probe=${KVM_PROBE:-$rig_build/tests/guest/rig/kvm_probe}
[ -x "$kvm_probe" ] || rig_die "no kvm_probe at $kvm_probe: build the tree (scripts/build.sh build)"
vmm=${VMM:-$rig_build/vmm/vmm}
[ -x "$vmm" ] || vmm=""
l1_inputs=$(cat "$kvm_probe" ${vmm:+"$vmm"} "$rig_dir/l1-init.sh" | sha256sum | cut -c1-16)
if [ ! -e "$out/l1-initrd.img" ] || [ "$(cat "$out/l1.inputs" 2>/dev/null)" != "$l1_inputs" ]; then
	rig_log "building the L1 initramfs (vmm: ${vmm:-not built yet})"
	build_l1_initramfs "$vmm"
	echo "$l1_inputs" >"$out/l1.inputs"
fi

if [ $print_dir -eq 1 ]; then
	echo "$out"
else
	rig_log "images ready in $out"
fi
