#!/usr/bin/env bash
# Runs the nested rig: builds the images (build.sh, cached), boots them under QEMU, parses
# the marker lines of the serial log and checks the L2 disk on the host afterwards.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

usage() {
	cat <<EOF
Usage: tests/guest/rig/run.sh --probe | --l2-qemu | --vmm [options]

Modes:
  --probe     L1 (Debian kernel under QEMU TCG, emulated AMD CPU with SVM) boots, loads
              kvm/kvm-amd nested=1 and kvm_probe proves /dev/kvm (capabilities + a guest)
  --l2-qemu   the oracle: QEMU itself (-machine pc: SeaBIOS, PIIX IDE) boots the L2 disk
              made by vdisk (VHDX) with the DVD; the whole L2 test plan must pass, then the
              host checks the disk with vdisk and qemu-img
  --vmm       L1 runs our "vmm run --gen 1" on the L2 disk (VHDX) and DVD from a shared
              ext4 disk; then the host takes the VHDX out of it and checks it the same way
              (RIG_GEN=2: "vmm run --gen 2", OVMF, the SCSI plan without IDE; see below)
Options:
  --timeout SECONDS   end QEMU after this long and fail (default: probe 180, l2-qemu 420,
                      vmm 1200; HVSTACK_RIG_TIMEOUT also sets it)
  --l2-exit button|acpi|port
                      how L2 ends: button (default) waits for the ACPI power button, which
                      the rig presses (--vmm: vmm ctl powerdown; --l2-qemu: system_powerdown
                      on QEMU's monitor), and busybox acpid powers off; acpi powers off at
                      once; port writes to the test-exit port 0x501 (under --l2-qemu QEMU's
                      isa-debug-exit device stands in for it)
  --format vhdx|vhd   the L2 disk's format (default vhdx), made by vdisk convert
  --work DIR          where the per-run disk, logs and copies go (default out/rig/MODE)
Exit status: 0 every step passed; 1 a step failed, was missing, or the run timed out;
2 the rig could not be built or started; 77 --vmm without a built vmm (skipped).
Environment: as build.sh (HVSTACK_RIG_CACHE, HVSTACK_BUILD, VDISK, VMM, KVM_PROBE).
EOF
}

mode="" timeout=${HVSTACK_RIG_TIMEOUT:-} l2_exit="" work="" format=vhdx
while [ $# -gt 0 ]; do
	case $1 in
	--probe | --l2-qemu | --vmm) mode=${1#--} ;;
	--timeout) timeout=${2:?--timeout needs seconds} && shift ;;
	--l2-exit) l2_exit=${2:?--l2-exit needs acpi or port} && shift ;;
	--format) format=${2:?--format needs vhdx or vhd} && shift ;;
	--work) work=${2:?--work needs a directory} && shift ;;
	*) rig_help_or_usage_error "$1" ;;
	esac
	shift
done
[ -n "$mode" ] || {
	usage >&2
	exit 3
}
case $mode in
probe) : "${timeout:=180}" ;;
l2-qemu) : "${timeout:=420}" "${l2_exit:=button}" ;;
vmm) : "${timeout:=1200}" "${l2_exit:=button}" ;;
esac
case ${l2_exit:-button} in button | acpi | port) ;; *) rig_die "--l2-exit takes button, acpi or port" ;; esac
case $format in
vhdx) qemu_format=vhdx ;;
vhd) qemu_format=vpc ;;
*) rig_die "--format takes vhdx or vhd" ;;
esac
disk_name=l2.$format
rig_need_tools qemu-system-x86_64 qemu-img vhdiinfo timeout mcopy mke2fs debugfs cmp jq

# RIG_L1_CPUS: L1's CPUs. L2 has 2 vCPUs either way; L1 has one by default: with two, an
# interrupt from one L1 CPU into the other while it runs L2 is what QEMU 7.2's emulated SVM
# mishandles (L2 vCPUs stalled or triple-faulted, L1 died with the stack-guard BUG, in
# about half the runs with the Hyper-V interface); with one, those runs passed.
L1_QEMU=(qemu-system-x86_64 -accel tcg -cpu max -m 4G -smp "${RIG_L1_CPUS:-1}" -nographic -no-reboot
	-nic none)
# The markers each mode must see, in the order the guests print them.
L1_STEPS=(l1-kvm-modules l1-kvm-probe)
L2_STEPS=(modules hv-modules disk dvd fio-rand4k fio-seq1m pattern)
# With RIG_SCSI=1, L2 under our VMM also gets a synthetic SCSI disk (VMBus, hv_storvsc);
# RIG_SYNIC picks the SynIC path in L1 (auto, kernel, user). RIG_DIAG=SECONDS has L1 print
# the state of vmm's threads that often (for a hung L2). RIG_KVM_AMD=OPT,OPT... sets extra
# kvm_amd options in L1; by default KVM in L1 uses neither virtual VMLOAD/VMSAVE nor
# virtual GIF: with them, QEMU 7.2's emulated SVM crashed L1 now and then ("TASK stack
# guard page was hit": a fault inside KVM's VMRUN path before the host's GS is back) or
# left an L2 vCPU stuck, within a minute of L2's disk I/O with two vCPUs.
RIG_KVM_AMD=${RIG_KVM_AMD-vls=0,vgif=0}
L1_KVM_PARAM=${RIG_KVM_AMD:+ rig.kvm_amd=$RIG_KVM_AMD}
# RIG_GEN=2 makes L2 a generation 2 VM: OVMF starts its kernel (fw_cfg, as an EFI program),
# it has no IDE controller, and its storage is the SCSI disk and DVD (RIG_SCSI is implied).
RIG_GEN=${RIG_GEN:-1}
case $RIG_GEN in 1) ;; 2) RIG_SCSI=1 L2_STEPS=(modules hv-modules uefi) ;; *) rig_die "RIG_GEN takes 1 or 2" ;; esac
[ "$RIG_GEN" = 1 ] || [ -r /usr/share/OVMF/OVMF_CODE_4M.fd ] ||
	rig_die "RIG_GEN=2 needs OVMF: install the ovmf package (scripts/install-deps.sh)"
# Generation 2's L1 runs with instruction counting. EDK2 writes CR8 on every return from an
# interrupt, with interrupts off; when KVM in L1 has asked for an interrupt window at that
# moment (the next LAPIC tick already pending), QEMU 7.2's emulated SVM calls cpu_interrupt
# without its global lock and aborts ("tcg_handle_interrupt: assertion failed"; it did
# within 3 s of OVMF's DXE phase in every run). With -icount, L1's time advances with the
# instructions it runs, so a 10 ms tick is millions of instructions, never shorter than
# OVMF's interrupt handler, whatever the nested exits cost.
# shellcheck disable=SC2054 # commas separate the option's settings
[ "$RIG_GEN" = 1 ] || L1_QEMU+=(-icount shift=1,sleep=off)
L2_SCSI_STEPS=()
SCSI_DISK_SECTORS=
if [ "${RIG_SCSI:-0}" = 1 ]; then
	L2_SCSI_STEPS=(scsi-disk scsi-fio-rand4k scsi-fio-seq1m scsi-dvd scsi-hot-add scsi-hot-remove
		scsi-resize)
	SCSI_DISK_SECTORS=$((256 * 2048))
	HOT_DISK_SECTORS=$((64 * 2048))     # the disk L1 hot-adds at LUN 2
	GROW_DISK_SECTORS=$((320 * 2048))   # the size L1 grows the SCSI disk to
fi
# With --l2-exit button: L2 readies acpid, then its handler reports the press.
L2_BUTTON_STEPS=(acpi-button power-button)
# What L1 proves through the control socket while L2 runs (--vmm).
L1_CTL_STEPS=(ctl-status ctl-block)
[ -z "$SCSI_DISK_SECTORS" ] ||
	L1_CTL_STEPS+=(ctl-scsi-qd1 ctl-scsi-qd32 ctl-scsi-bus ctl-scsi-add ctl-scsi-remove
		ctl-scsi-resize)
L1_BUTTON_STEPS=(ctl-pause powerdown)
WAITING_MARKER="RIG: waiting for power button"

images=$("$rig_dir/build.sh" --print-dir) || rig_die "building the images failed"
. "$images/l2.env"
. "$images/l1.env"
work=${work:-$rig_root/out/rig/$mode}
# A work directory is emptied before a run only when a run made it.
if [ -e "$work" ] && [ ! -e "$work/.rig-work" ] && [ -n "$(ls -A "$work")" ]; then
	rig_die "$work is not empty and not a rig work directory; choose another --work"
fi
rm -rf "$work"
mkdir -p "$work"
touch "$work/.rig-work"
log=$work/serial.log
token=$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
results=()
failed=0

record() { # NAME ok|fail DETAIL: a host-side result, reported like the guests' markers
	echo "RIG: step $1 $2 ${*:3}"
	results+=("$*")
	[ "$2" != fail ] || failed=1
}

# Runs COMMAND... with the serial output teed to the log; fails the run on timeout.
# Sets boot_status to QEMU's exit status.
boot() { # COMMAND...
	local started=$SECONDS
	boot_status=0
	rig_log "booting (timeout ${timeout} s): $*"
	timeout -k 10 "$timeout" "$@" </dev/null 2>&1 | tee "$log" || boot_status=${PIPESTATUS[0]}
	boot_seconds=$((SECONDS - started))
	if [ "$boot_status" -eq 124 ] || [ "$boot_status" -eq 137 ]; then
		record qemu fail "timed out after $timeout s (log: $log)"
	fi
	return 0
}

# Every expected step must have printed ok or skip; any fail marker fails the run.
check_markers() { # STEP...
	local step line
	for step in "$@"; do
		line=$(tr -d '\r' <"$log" | grep -ao "RIG: step $step [a-z]*.*" | head -n 1 || true)
		case $line in
		"RIG: step $step ok"* | "RIG: step $step skip"*) results+=("$step ${line#"RIG: step $step "}") ;;
		"")
			results+=("$step missing")
			failed=1
			;;
		*)
			results+=("$step ${line#"RIG: step $step "}")
			failed=1
			;;
		esac
	done
	if tr -d '\r' <"$log" | grep -aq 'RIG: step [^ ]* fail'; then
		failed=1
	fi
	note_kernel_trouble
}

# A kernel's BUG, panic or hung-task report in the log (L1's or L2's) is the first thing to
# read when steps are missing: it is listed with the results (it fails nothing by itself).
note_kernel_trouble() {
	local line
	line=$(tr -d '\r' <"$log" | grep -a -m 1 -e 'BUG:' -e 'Kernel panic' -e 'blocked for more than' \
		-e 'rcu: INFO' || true)
	[ -z "$line" ] || results+=("kernel-log note: $line")
}

# The L2 steps the exit mode adds.
l2_steps() {
	echo "${L2_STEPS[@]}"
	[ "$l2_exit" != button ] || echo "${L2_BUTTON_STEPS[@]}"
}

# A fresh copy of the L2 disk for this run: the boot loader's config gets this run's token and
# exit mode, then vdisk converts it to the run's format (what the VM and QEMU are given).
prepare_l2_disk() { # EXIT [SCSI_SECTORS]
	cp --sparse=always "$images/l2-disk.raw" "$work/l2-disk.raw"
	rig_set_l2_cmdline "$work/l2-disk.raw" "$1" "$token" "${2:-}"
	rig_vdisk convert -O "$format" "$work/l2-disk.raw" "$work/$disk_name" >/dev/null
	rm -f "$work/l2-disk.raw"
}

# A second opinion on the image's structure: qemu-img check for VHDX; qemu-img cannot check
# VHD, so libvhdi's vhdiinfo must at least parse it.
structure_check() { # IMAGE
	local tool=(qemu-img check -f vhdx) name=host-qemu-img-check
	[ "$format" = vhdx ] || tool=(vhdiinfo) name=host-vhdiinfo
	if "${tool[@]}" "$1" >"$work/$name.txt" 2>&1; then
		record "$name" ok "$(grep -v -e '^$' -e '^vhdiinfo ' "$work/$name.txt" | head -n 1)"
	else
		record "$name" fail "$(tr '\n' ' ' <"$work/$name.txt")"
	fi
}

# The host's view of the disk after the guest: vdisk check and a second checker pass, and the
# guest's pattern is at its offset when read through vdisk and through qemu-img.
# The SCSI disk L2's fio wrote through hv_storvsc: vdisk and qemu-img find it consistent and
# allocated where fio wrote (the writes reached the VHDX, not only the guest's cache).
check_scsi_image() { # IMAGE
	local out
	if out=$(rig_vdisk check "$1" 2>&1) && out2=$(qemu-img check -f vhdx "$1" 2>&1); then
		record host-scsi-check ok "vdisk: $(echo "$out" | tail -n 1); qemu-img: $(echo "$out2" | tail -n 1)"
	else
		record host-scsi-check fail "$(echo "$out ${out2:-}" | tr '\n' ' ')"
	fi
	local allocated
	allocated=$(qemu-img map -f vhdx --output=json "$1" | grep -c '"data": true' || true)
	if [ "$allocated" -gt 0 ]; then
		record host-scsi-data ok "$allocated data extents written by the guest"
	else
		record host-scsi-data fail "no data in the SCSI image after the guest's fio"
	fi
}

host_check() { # IMAGE
	local image=$1 mib=$((L2_DATA_START_MIB + L2_PATTERN_MIB)) reader
	yes "hvstack-rig $token" | head -c 1048576 >"$work/pattern.want" || true
	if rig_vdisk check "$image" >"$work/vdisk-check.txt" 2>&1; then
		record host-vdisk-check ok "$(tail -n 1 "$work/vdisk-check.txt")"
	else
		record host-vdisk-check fail "$(tr '\n' ' ' <"$work/vdisk-check.txt")"
	fi
	structure_check "$image"
	# Each tool flattens the image to raw; the pattern is cut out of that. (qemu-img dd is not
	# used: QEMU 7.2 counts its count= from the start of the image, not from skip=.)
	rig_vdisk convert "$image" "$work/after.vdisk.raw" >/dev/null
	qemu-img convert -f "$qemu_format" -O raw "$image" "$work/after.qemu-img.raw"
	for reader in vdisk qemu-img; do
		dd if="$work/after.$reader.raw" of="$work/pattern.$reader" bs=1M skip="$mib" count=1 \
			status=none
		rm -f "$work/after.$reader.raw"
	done
	for reader in vdisk qemu-img; do
		if cmp -s "$work/pattern.want" "$work/pattern.$reader"; then
			record "host-pattern-$reader" ok "1 MiB of 'hvstack-rig $token' at $mib MiB"
		else
			record "host-pattern-$reader" fail "$(cmp "$work/pattern.want" "$work/pattern.$reader" 2>&1 | head -n 1)"
		fi
	done
}

run_probe() {
	boot "${L1_QEMU[@]}" -kernel "$images/vmlinuz" -initrd "$images/l1-initrd.img" \
		-append "console=ttyS0 panic=-1 quiet rig.mode=probe$L1_KVM_PARAM"
	check_markers "${L1_STEPS[@]}"
}

# QEMU's monitor on a pipe (FIFO.in, FIFO.out): once L2 waits for the power button, send
# system_powerdown, as `vmm ctl powerdown` does for our VMM. Writes FIFO.sent when it did.
press_qemu_power_button() { # FIFO
	local waited=0
	exec 8<>"$1.in" 9<>"$1.out" # read-write: opening never blocks, nor do small writes
	until tr -d '\r' <"$log" 2>/dev/null | grep -aq "$WAITING_MARKER"; do
		[ $waited -lt "$timeout" ] || return 0
		sleep 1
		waited=$((waited + 1))
	done
	echo system_powerdown >&8
	date +%s >"$1.sent"
}

run_l2_qemu() {
	local exit_dev=() monitor=() presser="" monitor_fifo=$work/monitor
	prepare_l2_disk "$l2_exit"
	# isa-debug-exit turns the guest's write of v into QEMU's exit status (v << 1) | 1.
	# shellcheck disable=SC2054 # commas separate the device's properties
	[ "$l2_exit" != port ] || exit_dev=(-device isa-debug-exit,iobase=0x501,iosize=1)
	if [ "$l2_exit" = button ]; then
		mkfifo "$monitor_fifo.in" "$monitor_fifo.out"
		monitor=(-monitor "pipe:$monitor_fifo")
		press_qemu_power_button "$monitor_fifo" &
		presser=$!
	fi
	boot qemu-system-x86_64 -accel tcg -machine pc -cpu max -m 1G -smp 2 -nographic \
		-no-reboot -nic none "${exit_dev[@]}" "${monitor[@]}" \
		-drive "file=$work/$disk_name,format=$qemu_format,if=ide,bus=0,unit=0,media=disk" \
		-drive "file=$images/dvd.iso,format=raw,if=ide,bus=1,unit=0,media=cdrom,readonly=on"
	[ -z "$presser" ] || kill "$presser" 2>/dev/null || true
	# shellcheck disable=SC2046 # one word per step
	check_markers $(l2_steps)
	# Power-off ends QEMU with 0; the port with (0 << 1) | 1 when the guest's plan passed.
	if [ "$boot_status" -eq "$([ "$l2_exit" != port ] && echo 0 || echo 1)" ]; then
		record qemu-exit ok "QEMU exited $boot_status after the guest's $l2_exit exit"
	else
		record qemu-exit fail "QEMU exited $boot_status after a $l2_exit exit"
	fi
	if [ "$l2_exit" = button ]; then
		if [ ! -e "$monitor_fifo.sent" ]; then
			record powerdown fail "L2 never printed '$WAITING_MARKER'"
		elif [ "$boot_status" -eq 0 ]; then
			record powerdown ok "system_powerdown on QEMU's monitor; the guest powered off" \
				"$(($(date +%s) - $(cat "$monitor_fifo.sent"))) s later"
		else
			record powerdown fail "QEMU exited $boot_status after system_powerdown"
		fi
	fi
	host_check "$work/$disk_name"
}

# The L2 disk and DVD reach L1 on an ext4 image QEMU gives L1 as a virtio disk; L1 mounts
# it read-write and our VMM opens the VHDX in place. Afterwards the host takes the VHDX out
# of the ext4 image with debugfs (no mount, no root) and checks it.
run_vmm() {
	if [ "$L1_HAS_VMM" != 1 ]; then
		echo "rig: skipped: no vmm binary (${VMM:-$rig_build/vmm/vmm}) to put into L1" >&2
		exit 77
	fi
	mkdir -p "$work/share"
	if [ "$RIG_GEN" = 1 ]; then
		prepare_l2_disk "$l2_exit" "$SCSI_DISK_SECTORS"
		mv "$work/$disk_name" "$work/share/$disk_name"
	fi
	cp "$images/dvd.iso" "$work/share/dvd.iso"
	local scsi_params=
	if [ -n "$SCSI_DISK_SECTORS" ]; then
		rig_vdisk create -f vhdx "$work/share/scsi.vhdx" $((SCSI_DISK_SECTORS * 512)) >/dev/null
		rig_vdisk create -f vhdx "$work/share/hot.vhdx" $((HOT_DISK_SECTORS * 512)) >/dev/null
		scsi_params="rig.l2_scsi=scsi.vhdx rig.l2_synic=${RIG_SYNIC:-auto}"
		# With the Hyper-V interface SeaBIOS has no kvmclock and times its disk waits with
		# the PM timer, an exit per read: SYSLINUX's load through INT 13h crawls in the
		# nested rig. The kernel and initrd go in through fw_cfg DMA instead (--kernel).
		cp "$images/vmlinuz" "$work/share/vmlinuz"
		cp "$images/l2-initrd.img" "$work/share/initrd.img"
		echo "$(rig_l2_cmdline "$l2_exit" "$token" "$SCSI_DISK_SECTORS") rig.hot_sectors=$HOT_DISK_SECTORS rig.grow_sectors=$GROW_DISK_SECTORS" >"$work/share/cmdline"
		scsi_params="$scsi_params rig.l2_grow_bytes=$((GROW_DISK_SECTORS * 512))"
		scsi_params="$scsi_params rig.l2_kernel=1"
	fi
	if [ "$RIG_GEN" = 2 ]; then
		# the installed ovmf package's firmware (scripts/install-deps.sh)
		cp /usr/share/OVMF/OVMF_CODE_4M.fd /usr/share/OVMF/OVMF_VARS_4M.fd "$work/share/"
		echo "$(cat "$work/share/cmdline") rig.gen=2" >"$work/share/cmdline"
		scsi_params="$scsi_params rig.l2_gen=2"
	fi
	mke2fs -q -t ext4 -L rigshare -d "$work/share" "$work/share.img" 1G
	rm -rf "$work/share"
	boot "${L1_QEMU[@]}" -kernel "$images/vmlinuz" -initrd "$images/l1-initrd.img" \
		-drive "file=$work/share.img,format=raw,if=virtio" \
		-append "console=ttyS0 panic=-1 quiet rig.mode=vmm rig.l2_memory=1G rig.l2_cpus=2 rig.l2_disk=$disk_name rig.l2_dvd=dvd.iso rig.vmm_timeout=$((timeout - 60)) rig.l2_exit=$l2_exit rig.l2_format=$format rig.l2_disk_bytes=$((L2_DISK_SECTORS * 512)) rig.l2_dvd_bytes=$L2_DVD_BYTES $scsi_params${RIG_DIAG:+ rig.diag_every=$RIG_DIAG}$L1_KVM_PARAM"
	local l1_steps=("${L1_STEPS[@]}" l1-share "${L1_CTL_STEPS[@]}" l1-vmm)
	[ "$l2_exit" != button ] || l1_steps+=("${L1_BUTTON_STEPS[@]}")
	# shellcheck disable=SC2046 # one word per step
	check_markers "${l1_steps[@]}" $(l2_steps) "${L2_SCSI_STEPS[@]}"
	if [ "$RIG_GEN" = 1 ]; then
		debugfs -R "dump /$disk_name $work/$disk_name" "$work/share.img" >/dev/null 2>&1 ||
			record host-extract fail "debugfs could not take $disk_name out of $work/share.img"
		[ ! -e "$work/$disk_name" ] || host_check "$work/$disk_name"
	fi
	[ -n "$SCSI_DISK_SECTORS" ] || return 0
	debugfs -R "dump /scsi.vhdx $work/scsi.vhdx" "$work/share.img" >/dev/null 2>&1 ||
		record host-extract-scsi fail "debugfs could not take scsi.vhdx out of $work/share.img"
	[ ! -e "$work/scsi.vhdx" ] || check_scsi_image "$work/scsi.vhdx"
	local size
	size=$(rig_vdisk info --json "$work/scsi.vhdx" 2>/dev/null | jq -r .virtual_size)
	if [ "$size" = $((GROW_DISK_SECTORS * 512)) ]; then
		record host-scsi-grown ok "the image L1 grew while L2 ran is $size bytes"
	else
		record host-scsi-grown fail "the grown image is ${size:-?} bytes (want $((GROW_DISK_SECTORS * 512)))"
	fi
}

start=$(date +%s)
"run_${mode//-/_}"
elapsed=$(($(date +%s) - start))

echo "== rig --$mode: $elapsed s, of which QEMU ran ${boot_seconds:-0} s (serial log: $log)"
printf '   %s\n' "${results[@]}"
if [ $failed -ne 0 ]; then
	echo "== rig --$mode: FAILED"
	exit 1
fi
echo "== rig --$mode: passed"
