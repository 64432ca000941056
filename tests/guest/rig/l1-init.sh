#!/bin/busybox sh
# shellcheck shell=dash source=guest-common.sh
# /init of L1, the Linux that QEMU (TCG, emulated AMD CPU with SVM) boots to host our VMM.
# Loads KVM with nested=1, proves /dev/kvm with kvm_probe, and with rig.mode=vmm runs the
# L2 guest under `vmm run` from the shared disk (QEMU's virtio disk, ext4, mounted at
# /share) and drives it with `vmm ctl` on its control socket, then powers off. One marker
# line per step, as in l2-init.sh:
#   RIG: step NAME ok|fail|skip DETAIL
#
# Parameters (kernel command line, from run.sh):
#   rig.mode=probe|vmm
#   rig.l2_memory=SIZE rig.l2_cpus=N   the L2 VM's size
#   rig.l2_disk=FILE rig.l2_dvd=FILE   names on the shared disk
#   rig.vmm_timeout=SECONDS            how long `vmm run` may take
#   rig.l2_exit=button|acpi|port       how L2 ends its run (its rig.exit)
#   rig.l2_format=vhdx|vhd rig.l2_disk_bytes=N rig.l2_dvd_bytes=N
#                                      what query-block must report for the drives
#   rig.kvm_amd=OPT,OPT...             more kvm_amd options (e.g. vls=0,vgif=0)
#   rig.diag_every=SECONDS             while vmm runs, print the state of each of its
#                                      threads that often (a hung L2: is a vCPU thread in
#                                      KVM, or blocked in the VMM, and where)
/bin/busybox mkdir -p /proc /sys /dev /tmp /share /usr/bin /usr/sbin /bin /sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
exec </dev/console >/dev/console 2>&1
. /etc/rig/common.sh

VMM_PASS_STATUS=64 # with rig.l2_exit=port: the L2 /init wrote 0 to the test-exit port

step_kvm_modules() {
	local bad extra
	extra=$(param kvm_amd | tr ',' ' ')
	# shellcheck disable=SC2086 # one option per word
	bad=$(load_modules /etc/rig/modules-kvm kvm-amd nested=1 $extra)
	if [ -z "$bad" ] && [ -c /dev/kvm ]; then
		marker l1-kvm-modules ok "$(wc -l </etc/rig/modules-kvm) loaded, kvm_amd nested=$(cat /sys/module/kvm_amd/parameters/nested)${extra:+ $extra}"
	else
		marker l1-kvm-modules fail "not loaded:${bad:- none, but no /dev/kvm}; cpu flags: $(grep -o -w -e svm -e vmx /proc/cpuinfo | sort -u | tr '\n' ' ')"
	fi
}

step_kvm_probe() {
	local out
	if out=$(kvm_probe 2>&1); then
		echo "$out"
		marker l1-kvm-probe ok "$(echo "$out" | grep -c ' cap ') capabilities listed, real-mode guest ran"
	else
		echo "$out"
		marker l1-kvm-probe fail "$(echo "$out" | grep -e MISSING -e FAILED -e cannot | tr '\n' ' ')"
	fi
}

step_share() {
	local bad
	bad=$(load_modules /etc/rig/modules-share)
	[ -z "$bad" ] || {
		marker l1-share fail "modules not loaded:$bad"
		return 1
	}
	wait_for /dev/vda 10
	if mount -t ext4 /dev/vda /share; then
		marker l1-share ok "/dev/vda on /share: $(ls /share | tr '\n' ' ')"
	else
		marker l1-share fail "cannot mount /dev/vda (ext4) on /share"
		return 1
	fi
}

# ---- vmm run, and vmm ctl on its control socket while L2 runs ----

CTL_SOCK=/run/vmm.sock
L2_LOG=/tmp/l2-serial.log   # L2's serial output (vmm's stdout) as it passes to the console
L2_FIFO=/tmp/l2-serial.fifo # the same, line by line, for L1's script (file descriptor 3)
VMM_STATUS=/tmp/vmm.status  # vmm's exit status, once it exited
WAITING_MARKER="RIG: waiting for power button"
L2_PATTERN_KIB=1024 # l2-init.sh's pattern step writes and reads back 1 MiB
PAUSE_SECONDS=4     # L2 stays paused this long (far below its own I/O timeouts)
POWERDOWN_WAIT=60   # seconds from powerdown to vmm's exit

ctl() { # COMMAND [KEY=VALUE...]: one request on the control socket; the reply as text
	vmm ctl --timeout 10 "$CTL_SOCK" "$@" 2>&1
}

# The value of KEY in `vmm ctl` text on stdin: "key: value" lines, indented, with "- "
# before the first key of a list item.
field() { # KEY
	awk -v key="$1" '{ sub(/^ *(- )?/, "") }
		index($0, key ": ") == 1 { print substr($0, length(key) + 3); exit }'
}

vmm_exited() {
	[ -e "$VMM_STATUS" ]
}

# Reads L2's serial lines until one holds TEXT (left in L2_LINE); false at their end (vmm
# exited). Blocking reads, not polling: every process L1 starts while L2 runs costs the
# nested guests time (and interprocessor interrupts, which QEMU's emulated SVM has been
# seen to mishandle).
wait_l2() { # TEXT
	while read -r L2_LINE <&3; do
		case $L2_LINE in *"$1"*) return 0 ;; esac
	done
	return 1
}

# L1 reads no more of L2's lines: something must still empty the FIFO, or tee blocks.
stop_reading_l2() {
	cat <&3 >/dev/null &
	exec 3<&-
}

l2_log_size() {
	wc -c <"$L2_LOG"
}

last_tick() {
	grep -ao 'RIG: tick [0-9]*' "$L2_LOG" | tail -n 1 | cut -d' ' -f3
}

# The KiB L2's fio steps (named PREFIX-*, default fio) report: "wrote N KiB" or
# "verified N KiB", summed.
l2_fio_kib() { # wrote|verified [PREFIX]
	tr -d '\r' <"$L2_LOG" | grep -a "RIG: step ${2:-fio}-[^ ]* ok" |
		sed -n "s/.* $1 \([0-9]*\) KiB.*/\1/p" | awk '{ kib += $1 } END { print kib + 0 }'
}

# Runs the L2 VM; its serial output goes to stdout. Leaves the exit status in VMM_STATUS.
# With rig.l2_scsi, a SCSI disk from /share rides on VMBus (SynIC as rig.l2_synic says);
# with rig.l2_kernel, L2's kernel, initrd and command line come from /share (--kernel).
# With rig.l2_gen=2 the VM is generation 2: OVMF from /share, no IDE drives.
run_vmm() { # DISK DVD
	local disk=$1 dvd=$2 scsi
	scsi=$(param l2_scsi)
	set --
	[ -z "$scsi" ] || set -- --disk "scsi:0:0=/share/$scsi" --dvd "scsi:0:1=$dvd" \
		--synic "$(param l2_synic auto)"
	[ -z "$(param l2_kernel)" ] ||
		set -- "$@" --kernel /share/vmlinuz --initrd /share/initrd.img --append "$(cat /share/cmdline)"
	if [ "$(param l2_gen 1)" = 2 ]; then
		set -- --gen 2 --firmware /share/OVMF_CODE_4M.fd --uefi-vars /share/OVMF_VARS_4M.fd "$@"
	else
		set -- --gen 1 --disk "ide:0:0=$disk" --dvd "ide:1:0=$dvd" "$@"
	fi
	echo "RIG: L1 running: vmm run --memory $(param l2_memory 1G) --cpus $(param l2_cpus 2) $* --control $CTL_SOCK --serial stdio --test-exit"
	timeout "$(param vmm_timeout 900)" vmm run --memory "$(param l2_memory 1G)" \
		--cpus "$(param l2_cpus 2)" "$@" \
		--control "$CTL_SOCK" --serial stdio --test-exit </dev/null
	echo $? >"$VMM_STATUS"
}

# Every EVERY seconds while vmm runs: one line per thread of it (name, state, kernel wait
# channel) and the kernel stack of the vCPU threads.
diagnose_vmm() { # EVERY
	local pid t
	sleep 2
	pid=$(pidof vmm) || return 0
	while sleep "$1" && [ -d "/proc/$pid" ]; do
		for t in /proc/"$pid"/task/*; do
			echo "RIG-DIAG: $(cat "$t/comm") state $(cut -d' ' -f3 "$t/stat") wchan $(cat "$t/wchan")"
			case $(cat "$t/comm") in vcpu*) tr '\n' ' ' <"$t/stack" | sed 's/^/RIG-DIAG:   /'; echo ;; esac
		done
	done
}

step_ctl_status() {
	local out
	if ! wait_l2 "RIG: L2 init"; then
		marker ctl-status fail "L2 never started its /init"
		return
	fi
	out=$(ctl query-status)
	if [ "$(echo "$out" | field status)" = running ]; then
		marker ctl-status ok "query-status while L2 runs: status running"
	else
		marker ctl-status fail "query-status while L2 runs: $(echo "$out" | tr '\n' ' ')"
	fi
}

# Compares what query-block said (NAME KEY, from query_drive) with what it should say;
# each difference goes into $problems.
expect() { # NAME KEY WANT
	local got
	got=$(field "$2" <"/tmp/block-$1")
	[ "$got" = "$3" ] || problems="$problems $1.$2='$got' (want '$3');"
}

expect_at_least() { # WHAT GOT MIN
	[ "$2" -ge "$3" ] 2>/dev/null || problems="$problems $1=$2 (want >= $3);"
}

query_drive() { # LOCATION NAME: saves the drive's query-block reply as /tmp/block-NAME
	ctl query-block location="$1" >"/tmp/block-$2"
}

counter() { # NAME KEY
	field "$2" <"/tmp/block-$1"
}

# query-block on LOCATION, saved as disk-before once L2 prints step FIRST and as disk once
# it prints step LAST; a ctl-block failure when L2 never gets there.
sample_disk_around() { # LOCATION FIRST LAST
	if ! wait_l2 "RIG: step $2 "; then
		marker ctl-block fail "L2 never reached its $2 step"
		return 1
	fi
	query_drive "$1" disk-before
	if ! wait_l2 "RIG: step $3 "; then
		marker ctl-block fail "L2 never reached its $3 step"
		return 1
	fi
	query_drive "$1" disk
}

# The disk's counters grew by at least what L2 says it wrote and read back; sets wr and rd.
expect_disk_growth() { # WROTE_KIB READ_KIB
	wr=$(($(counter disk wr_bytes) - $(counter disk-before wr_bytes)))
	rd=$(($(counter disk rd_bytes) - $(counter disk-before rd_bytes)))
	expect_at_least disk.wr_bytes-growth "$wr" $(($1 * 1024))
	expect_at_least disk.rd_bytes-growth "$rd" $(($2 * 1024))
}

# query-block before L2's fio steps (at its disk step; the DVD step comes in between) and
# after its pattern step: the disk's counters must have grown by at least what fio and the
# pattern step say they wrote and read back.
step_ctl_block() { # DISK DVD
	local problems="" wrote_kib read_kib wr rd
	sample_disk_around ide:0:0 disk pattern || return
	query_drive ide:1:0 dvd
	expect disk kind disk
	expect disk format "$(param l2_format vhdx)"
	expect disk file "$1"
	expect disk size "$(param l2_disk_bytes)"
	expect disk inserted true
	expect disk read_only false
	expect dvd kind dvd
	expect dvd format raw
	expect dvd file "$2"
	expect dvd size "$(param l2_dvd_bytes)"
	expect dvd inserted true
	expect dvd read_only true
	wrote_kib=$(($(l2_fio_kib wrote) + L2_PATTERN_KIB))
	read_kib=$(($(l2_fio_kib verified) + L2_PATTERN_KIB))
	expect_disk_growth "$wrote_kib" "$read_kib"
	expect_at_least dvd.rd_bytes "$(counter dvd rd_bytes)" "$(param l2_dvd_bytes)"
	if [ -z "$problems" ]; then
		marker ctl-block ok "ide:0:0 disk $(counter disk format) $(counter disk size) bytes," \
			"wr_bytes +$wr rd_bytes +$rd during fio and the pattern (L2 wrote $wrote_kib KiB," \
			"read back $read_kib KiB); ide:1:0 dvd $(counter dvd format) inserted," \
			"rd_bytes $(counter dvd rd_bytes)"
	else
		marker ctl-block fail "$problems replies: $(tr '\n' ' ' </tmp/block-disk) / $(tr '\n' ' ' </tmp/block-dvd)"
	fi
}

# Generation 2's counterpart of step_ctl_block: query-block on the SCSI disk, whose
# counters must have grown by at least what L2's SCSI fio steps wrote and read back.
step_ctl_block_scsi() {
	local problems="" wrote_kib read_kib wr rd
	sample_disk_around scsi:0:0 scsi-disk scsi-fio-seq1m || return
	expect disk kind disk
	expect disk format vhdx
	expect disk file "/share/$(param l2_scsi)"
	expect disk inserted true
	wrote_kib=$(l2_fio_kib wrote scsi-fio)
	read_kib=$(l2_fio_kib verified scsi-fio)
	expect_disk_growth "$wrote_kib" "$read_kib"
	if [ -z "$problems" ] && [ "$wrote_kib" -gt 0 ]; then
		marker ctl-block ok "scsi:0:0 disk $(counter disk format) $(counter disk size) bytes," \
			"wr_bytes +$wr rd_bytes +$rd during fio (L2 wrote $wrote_kib KiB, read back" \
			"$read_kib KiB)"
	else
		marker ctl-block fail "${problems:- the SCSI fio steps wrote nothing;} reply: $(tr '\n' ' ' </tmp/block-disk)"
	fi
}

# Pause while L2 ticks (it waits for the power button): query-status says paused and no
# serial output comes for PAUSE_SECONDS; after resume it says running and the ticks go on.
step_ctl_pause() {
	local size paused_size state resumed_state tick out
	if ! wait_l2 "$WAITING_MARKER" || ! wait_l2 "RIG: tick"; then
		marker ctl-pause fail "L2 never printed '$WAITING_MARKER' and a tick"
		return
	fi
	if ! out=$(ctl pause); then
		marker ctl-pause fail "pause: $out"
		return
	fi
	state=$(ctl query-status | field status)
	sleep 1 # what the guest wrote just before the pause may still be on its way
	size=$(l2_log_size)
	tick=$(last_tick)
	sleep $PAUSE_SECONDS
	paused_size=$(l2_log_size)
	out=$(ctl resume) || out="resume failed: $out"
	resumed_state=$(ctl query-status | field status)
	wait_for_growth "$paused_size" 10
	if [ "$state" = paused ] && [ "$paused_size" = "$size" ] &&
		[ "$resumed_state" = running ] && [ "$(l2_log_size)" -gt "$paused_size" ]; then
		marker ctl-pause ok "query-status paused; no serial output for $PAUSE_SECONDS s" \
			"(last tick $tick); resume: query-status running, ticks went on to $(last_tick)"
	else
		marker ctl-pause fail "paused: status '$state', serial output $size -> $paused_size" \
			"bytes in $PAUSE_SECONDS s; resume: '$out', status '$resumed_state'," \
			"serial output $(l2_log_size) bytes"
	fi
}

wait_for_growth() { # SIZE SECONDS: until L2's serial output is longer than SIZE
	local i=0
	while [ "$(l2_log_size)" -le "$1" ] && [ $i -lt "$2" ]; do
		sleep 1
		i=$((i + 1))
	done
}

# The ACPI power button: L2's acpid runs its handler, which powers off (S5), and vmm run
# exits 0.
step_powerdown() {
	local out state i=0 status
	if ! out=$(ctl powerdown); then
		marker powerdown fail "powerdown: $out"
		ctl quit >/dev/null
		return
	fi
	state=$(ctl query-status | field status)
	while ! vmm_exited && [ $i -lt $POWERDOWN_WAIT ]; do
		sleep 1
		i=$((i + 1))
	done
	if ! vmm_exited; then
		marker powerdown fail "vmm still runs $POWERDOWN_WAIT s after powerdown (status $state)"
		ctl quit >/dev/null
		return
	fi
	status=$(cat "$VMM_STATUS")
	if [ "$status" = 0 ] && grep -aq "RIG: step power-button ok" "$L2_LOG"; then
		marker powerdown ok "query-status $state; L2's acpid ran its handler and vmm exited 0" \
			"within $((i + 1)) s: the guest powered off through ACPI S5"
	else
		marker powerdown fail "vmm exited $status after powerdown; L2's handler" \
			"$(grep -aq 'RIG: step power-button ok' "$L2_LOG" && echo ran || echo did not run)"
	fi
}

# What L1 proves through the control socket while L2 runs. With the power-button ending it
# also pauses L2 and presses the button; otherwise L2 ends the run itself.
# VM exits over one of L2's I/O windows (query-stats at its begin and end lines), per I/O,
# with the VMBus interrupts L2 counted.
step_ctl_window() { # NAME
	local begin end ios irqs
	if ! wait_l2 "RIG: window begin $1"; then
		marker "ctl-scsi-$1" fail "L2 never began its $1 window"
		return
	fi
	begin=$(ctl query-stats | field exits)
	if ! wait_l2 "RIG: window end $1"; then
		marker "ctl-scsi-$1" fail "L2 never ended its $1 window"
		return
	fi
	end=$(ctl query-stats | field exits)
	ios=$(echo "$L2_LINE" | sed -n 's/.* ios=\([0-9]*\).*/\1/p')
	irqs=$(echo "$L2_LINE" | sed -n 's/.* irqs=\([0-9]*\).*/\1/p')
	if [ -n "$begin" ] && [ -n "$end" ] && [ "${ios:-0}" -gt 0 ]; then
		marker "ctl-scsi-$1" ok "$(awk -v e=$((end - begin)) -v n="$ios" -v i="${irqs:-0}" 'BEGIN {
			printf "%.2f VM exits and %.2f guest VMBus interrupts per 4k read (%d exits, %d interrupts, %d reads; SynIC '"$(param l2_synic auto)"')", e / n, i / n, e, i, n }')"
	else
		marker "ctl-scsi-$1" fail "query-stats: '${begin:-}' '${end:-}'; L2: $L2_LINE"
	fi
}

# What L2's drivers negotiated with the VMBus host and storvsp, and how many requests went.
step_ctl_scsi_bus() {
	local out protocol
	out=$(ctl query-stats)
	protocol=$(echo "$out" | field protocol)
	if [ -n "$protocol" ] && [ "$protocol" != 0.0 ]; then
		marker ctl-scsi-bus ok "VMBus $(echo "$out" | sed -n '/^vmbus:/,$p' | field version), storvsp protocol $protocol, $(echo "$out" | field subchannels) sub-channel(s), $(echo "$out" | field requests) requests"
	else
		marker ctl-scsi-bus fail "query-stats: $(echo "$out" | tr '\n' ' ')"
	fi
}

# Hot-add, hot-remove and online resize, each when L2 asks for it.
step_ctl_scsi_changes() {
	local out
	if wait_l2 "RIG: hotplug add please" &&
		out=$(ctl scsi-add controller=0 lun=2 file=/share/hot.vhdx); then
		marker ctl-scsi-add ok "scsi-add /share/hot.vhdx at scsi:0:2"
	else
		marker ctl-scsi-add fail "${out:-L2 never asked}"
	fi
	if wait_l2 "RIG: hotplug remove please" && out=$(ctl scsi-remove controller=0 lun=2); then
		marker ctl-scsi-remove ok "scsi-remove scsi:0:2"
	else
		marker ctl-scsi-remove fail "${out:-L2 never asked}"
	fi
	if wait_l2 "RIG: resize please" &&
		out=$(ctl block-resize controller=0 lun=0 size="$(param l2_grow_bytes)"); then
		marker ctl-scsi-resize ok "block-resize scsi:0:0 to $(param l2_grow_bytes) bytes"
	else
		marker ctl-scsi-resize fail "${out:-L2 never asked}"
	fi
}

control_vmm() { # DISK DVD
	local button=0
	[ "$(param l2_exit button)" != button ] || button=1
	step_ctl_status
	if [ "$(param l2_gen 1)" = 2 ]; then
		step_ctl_block_scsi
	else
		step_ctl_block "$1" "$2"
	fi
	if [ -n "$(param l2_scsi)" ]; then
		step_ctl_window qd1
		step_ctl_window qd32
		step_ctl_scsi_bus
		step_ctl_scsi_changes
	fi
	[ $button -eq 0 ] || step_ctl_pause
	stop_reading_l2
	[ $button -eq 0 ] || step_powerdown
}

step_vmm() {
	local disk dvd status want
	disk=/share/$(param l2_disk l2.vhdx)
	dvd=/share/$(param l2_dvd dvd.iso)
	if [ ! -x /usr/bin/vmm ]; then
		marker l1-vmm fail "no vmm in the L1 initramfs"
		return
	fi
	want=0
	[ "$(param l2_exit button)" != port ] || want=$VMM_PASS_STATUS
	mkdir -p /run
	rm -f "$L2_LOG" "$L2_FIFO" "$VMM_STATUS"
	mkfifo "$L2_FIFO"
	run_vmm "$disk" "$dvd" 2>&1 | tee "$L2_LOG" "$L2_FIFO" &
	[ -z "$(param diag_every)" ] || diagnose_vmm "$(param diag_every)" &
	exec 3<"$L2_FIFO"
	# L1's markers wait until vmm is done: on the console they would cut into L2's lines.
	control_vmm "$disk" "$dvd" >/tmp/ctl-markers 2>&1
	wait
	cat /tmp/ctl-markers
	status=$(cat "$VMM_STATUS" 2>/dev/null || echo none)
	case $status in
	"$want") marker l1-vmm ok "vmm exited $status: $([ "$want" = 0 ] && echo "the guest powered off" || echo "the guest reported success on the test-exit port")" ;;
	143) marker l1-vmm fail "vmm killed after $(param vmm_timeout 900) s" ;;
	*) marker l1-vmm fail "vmm exited $status (want $want)" ;;
	esac
}

echo "RIG: L1 init on $(uname -r), mode $(param mode probe)"
step_kvm_modules
step_kvm_probe
if [ "$(param mode probe)" = vmm ] && step_share; then
	step_vmm
	sync
	umount /share || marker l1-share fail "cannot unmount /share"
fi
echo "RIG: L1 finished $([ $failures -eq 0 ] && echo ok || echo "fail ($failures steps failed)")"
poweroff -f
