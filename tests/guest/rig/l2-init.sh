#!/bin/busybox sh
# shellcheck shell=dash source=guest-common.sh
# /init of the L2 guest: the test plan of the nested rig. It runs on the generation 1
# platform (PIIX IDE disk and DVD), under QEMU as the oracle or under our VMM, and prints one
# marker line per step for run.sh to parse:
#   RIG: step NAME ok|fail|skip DETAIL
#   RIG: done ok|fail
# then ends the run as rig.exit says (see finish).
#
# Parameters (kernel command line, written by run.sh into the boot loader's config):
#   rig.disk_sectors=N   size of the IDE disk in 512-byte sectors
#   rig.data_sectors=N   size of partition 2 (the data area fio and the pattern use)
#   rig.dvd_sha256=HEX   SHA-256 of the whole ISO in the DVD drive (rig.dvd_bytes its size)
#   rig.token=WORD       this run's pattern word
#   rig.pattern_mib=N    where the pattern goes in the data area (MiB); 1 MiB long
#   rig.exit=acpi|port|button   how to end the run (see finish)
#   rig.scsi_sectors=N   a synthetic SCSI disk of N sectors is attached (under our VMM);
#                        the scsi steps find it behind hv_storvsc and run fio on it, read
#                        the SCSI DVD (the same ISO as the IDE one), count interrupts per
#                        I/O, and with L1 (which reads these lines) go through a hot-add,
#                        a hot-remove and an online resize:
#   rig.hot_sectors=N    the size of the disk L1 hot-adds
#   rig.grow_sectors=N   the size L1 grows the SCSI disk to
#   rig.gen=2            a generation 2 VM (UEFI, no IDE): the uefi step replaces the IDE
#                        steps, and the SCSI steps are the storage plan
/bin/busybox mkdir -p /proc /sys /dev /tmp /usr/bin /usr/sbin /bin /sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
. /etc/rig/common.sh

TEST_EXIT_PORT=1281 # 0x501, GEN1_TEST_EXIT_PORT
# Bounds on each step's I/O, so a device that stops answering fails that step by name
# (the rest of the plan still runs) instead of hanging the run.
FIO_TIMEOUT=120
IO_TIMEOUT=60
# How long the guest waits for the power button before it gives up and powers off itself.
BUTTON_WAIT=180

step_modules() {
	local bad
	bad=$(load_modules /etc/rig/modules)
	if [ -z "$bad" ]; then
		marker modules ok "$(wc -l </etc/rig/modules) loaded"
	else
		marker modules fail "not loaded:$bad"
	fi
}

# hv_vmbus refuses to load (ENODEV) on a platform that is not Hyper-V (QEMU, or our VMM
# with --synic off): there these are skipped, which fails nothing.
step_hv_modules() {
	local bad
	local msr
	bad=$(load_modules /etc/rig/modules-hv)
	# an MSR the Hyper-V interface offers but neither KVM nor the VMM answers faults
	msr=$(dmesg | grep -m 1 -o 'unchecked MSR access error: [A-Z]* to 0x[0-9a-f]*')
	if [ -z "$bad" ] && [ -n "$msr" ]; then
		marker hv-modules fail "loaded, but the guest's boot saw: $msr"
	elif [ -z "$bad" ]; then
		marker hv-modules ok "$(wc -l </etc/rig/modules-hv) loaded, no MSR the guest used faulted"
	else
		marker hv-modules skip "not loaded (expected without Hyper-V):$bad"
	fi
}

# Generation 2: the kernel was started by UEFI firmware, the ACPI tables are generation 2's
# and no IDE controller is on PCI.
step_uefi() {
	local dsdt ide
	if [ ! -d /sys/firmware/efi ]; then
		marker uefi fail "no /sys/firmware/efi: the kernel did not start from UEFI"
		return
	fi
	dsdt=$(dd if=/sys/firmware/acpi/tables/DSDT bs=1 skip=16 count=6 2>/dev/null)
	ide=$(grep -l '^0x0101' /sys/bus/pci/devices/*/class 2>/dev/null | tr '\n' ' ')
	if [ "$dsdt" = HVGEN2 ] && [ -z "$ide" ]; then
		marker uefi ok "started by $(dmesg | grep -o -m 1 'EFI v[0-9.]* by .*'); DSDT $dsdt; no IDE function on PCI ($(ls /sys/bus/pci/devices | wc -l) PCI functions)"
	else
		marker uefi fail "DSDT '$dsdt' (want HVGEN2); IDE functions: ${ide:-none}"
	fi
}

# The IDE disk: the first sd device whose PCI function is driven by ata_piix.
find_ide_disk() {
	local dev path
	for dev in /sys/block/sd*; do
		[ -e "$dev" ] || continue
		path=$(readlink -f "$dev")
		case $path in */ata[0-9]*) ;; *) continue ;; esac
		if [ "$(basename "$(readlink "${path%%/ata[0-9]*}/driver")")" = ata_piix ]; then
			echo "${dev##*/}"
			return
		fi
	done
}

step_disk() {
	local want want_data got got_data
	want=$(param disk_sectors)
	want_data=$(param data_sectors)
	wait_for /sys/block/sda 30 || {
		marker disk fail "no /sys/block/sda after 30 s"
		return
	}
	disk=$(find_ide_disk)
	if [ -z "$disk" ]; then
		marker disk fail "no sd device behind ata_piix: $(ls /sys/block)"
		return
	fi
	wait_for "/sys/block/$disk/${disk}2" 10
	got=$(cat "/sys/block/$disk/size")
	got_data=$(cat "/sys/block/$disk/${disk}2/size" 2>/dev/null || echo none)
	if [ "$got" = "$want" ] && [ "$got_data" = "$want_data" ]; then
		marker disk ok "/dev/$disk $got sectors, data partition ${disk}2 $got_data sectors"
	else
		marker disk fail "/dev/$disk has $got sectors (want $want), ${disk}2 $got_data (want $want_data)"
	fi
}

step_dvd() {
	local want bytes got size
	want=$(param dvd_sha256)
	bytes=$(param dvd_bytes)
	if ! wait_for /dev/sr0 30; then
		marker dvd fail "no /dev/sr0 after 30 s"
		return
	fi
	size=$(blockdev --getsize64 /dev/sr0)
	got=$(timeout $IO_TIMEOUT sha256sum /dev/sr0)
	got=${got%% *}
	if [ "$got" = "$want" ] && [ "$size" = "$bytes" ]; then
		marker dvd ok "/dev/sr0 $size bytes, sha256 $got"
	else
		marker dvd fail "/dev/sr0 $size bytes (want $bytes), sha256 $got (want $want)"
	fi
}

# fio on the data area: writes, then reads everything back and checks each block's crc32c.
# Passes when fio succeeds and the verify pass read back as many KiB as were written.
run_fio() { # STEP OFFSET SIZE fio-arguments...
	if [ -z "${disk:-}" ]; then
		marker "$1" fail "no disk"
		return
	fi
	fio_on "/dev/${disk}2" "$@"
}

fio_on() { # DEVICE STEP OFFSET SIZE fio-arguments...
	local dev=$1 step=$2 offset=$3 size=$4 out summary
	shift 4
	if ! out=$(timeout $FIO_TIMEOUT fio --name="$step" --filename="$dev" \
		--offset="$offset" --size="$size" --ioengine=libaio --direct=1 \
		--verify=crc32c --do_verify=1 --verify_fatal=1 --runtime=$FIO_TIMEOUT \
		--output-format=terse --terse-version=3 "$@" 2>&1); then
		marker "$step" fail "$(echo "$out" | grep -v '^$' | tail -n 3 | tr '\n' ' ')"
		return
	fi
	# terse v3 fields: 5 error, 6 read KiB, 8 read IOPS, 47 write KiB, 49 write IOPS
	summary=$(echo "$out" | tail -n 1 | awk -F';' '$5 == 0 && $6 == $47 && $47 > 0 {
		printf "wrote %s KiB (%s IOPS), verified %s KiB", $47, $49, $6 }')
	if [ -n "$summary" ]; then
		marker "$step" ok "$summary"
	else
		marker "$step" fail "unexpected result: $(echo "$out" | tail -n 1 | cut -d';' -f1-8)"
	fi
}

# The pattern the host checks after the guest is gone: "hvstack-rig TOKEN\n" repeated over
# 1 MiB at rig.pattern_mib, written O_DIRECT and flushed, then read back O_DIRECT.
step_pattern() {
	local token mib
	token=$(param token)
	mib=$(param pattern_mib)
	if [ -z "${disk:-}" ] || [ -z "$token" ] || [ -z "$mib" ]; then
		marker pattern fail "no disk, rig.token or rig.pattern_mib"
		return
	fi
	yes "hvstack-rig $token" | head -c 1048576 >/tmp/pattern
	if timeout $IO_TIMEOUT dd if=/tmp/pattern of="/dev/${disk}2" bs=1M seek="$mib" \
		oflag=direct conv=notrunc,fsync status=none &&
		timeout $IO_TIMEOUT dd if="/dev/${disk}2" of=/tmp/readback bs=1M skip="$mib" count=1 \
			iflag=direct status=none && cmp -s /tmp/pattern /tmp/readback; then
		marker pattern ok "1 MiB of 'hvstack-rig $token' at ${disk}2 + $mib MiB"
	else
		marker pattern fail "write or read-back at ${disk}2 + $mib MiB failed"
	fi
}

# The input device the ACPI button driver made for the fixed-feature power button
# (LNXPWRBN, named "Power Button"): its eventN handler in /proc/bus/input/devices.
power_button_event() {
	awk '/^N: Name="Power Button"/ { button = 1 }
		/^$/ { button = 0 }
		button && /^H: Handlers=/ {
			for (i = 2; i <= NF; i++) {
				sub(/^Handlers=/, "", $i)
				if ($i ~ /^event[0-9]+$/) { print $i; exit }
			}
		}' /proc/bus/input/devices
}

# The kernel's own account of ACPI and the buttons, for the log: what to read first when
# the power button does not reach the guest.
print_acpi_dmesg() {
	dmesg | grep -i -e acpi -e button -e 'input:' | grep -v -e 'acpiphp: Slot' -e 'ommand line:' |
		sed 's/^/dmesg: /'
}

# busybox acpid reads the input devices and, for KEY_POWER, runs /etc/acpi/PWRF/00000080:
# here a handler that says so and powers off (ACPI S5 through the FADT's PM1a_CNT).
step_acpi_button() {
	local bad event pid
	# A progress line: should the guest stop here, the log says where.
	echo "RIG: loading $(sed 's,.*/,,' /etc/rig/modules-power | tr '\n' ' ')"
	bad=$(load_modules /etc/rig/modules-power)
	event=$(power_button_event)
	[ -z "$event" ] || wait_for "/dev/input/$event" 10
	print_acpi_dmesg
	if [ -n "$bad" ] || [ -z "$event" ] || [ ! -c "/dev/input/$event" ]; then
		marker acpi-button fail "no power button input device (modules not loaded:${bad:- none}); input devices: $(grep '^N: ' /proc/bus/input/devices | tr '\n' ' ')"
		return 1
	fi
	mkdir -p /etc/acpi/PWRF
	printf '%s\n' '#!/bin/sh' \
		'echo "RIG: step power-button ok acpid ran /etc/acpi/PWRF/00000080 on KEY_POWER; powering off"' \
		'exec poweroff -f' >/etc/acpi/PWRF/00000080
	chmod 755 /etc/acpi/PWRF/00000080
	acpid -d -c /etc/acpi -p /tmp/acpid.pid &
	pid=$!
	usleep 500000
	if ! kill -0 $pid 2>/dev/null; then
		marker acpi-button fail "acpid exited at once"
		return 1
	fi
	marker acpi-button ok "Power Button is /dev/input/$event; acpid (pid $pid) watches it;" \
		"$(dmesg | grep -c -i -e 'ACPI Error' -e 'ACPI BIOS Error' -e 'ACPI Warning') ACPI errors or warnings in dmesg"
}

# Waits for the host to press the power button (vmm ctl powerdown, QEMU's system_powerdown):
# acpid's handler then powers off. Meanwhile a tick every half second shows that the guest
# runs; the rig's pause check sees them stop while the VM is paused.
wait_for_power_button() {
	local i=0
	step_acpi_button || return
	echo "RIG: waiting for power button"
	while [ $i -lt $((BUTTON_WAIT * 2)) ]; do
		echo "RIG: tick $i"
		usleep 500000
		i=$((i + 1))
	done
	marker power-button fail "no power button press in $BUTTON_WAIT s"
	print_acpi_dmesg | tail -n 20
}

# Ends the run: rig.exit=acpi powers off at once (ACPI S5); port writes the result (0 pass,
# 1 fail) to the test-exit port first; button waits for the power button first.
finish() {
	sync
	[ -z "${disk:-}" ] || blockdev --flushbufs "/dev/$disk" 2>/dev/null
	if [ $failures -eq 0 ]; then
		echo "RIG: done ok"
	else
		echo "RIG: done fail ($failures steps failed)"
	fi
	case $(param exit acpi) in
	port)
		printf '%b' "\\$([ $failures -eq 0 ] && echo 000 || echo 001)" |
			dd of=/dev/port bs=1 seek=$TEST_EXIT_PORT count=1 conv=notrunc status=none
		sleep 5 # still here: nothing listens on the port
		echo "RIG: the test-exit port did not end the run; powering off"
		;;
	button) wait_for_power_button ;;
	esac
	poweroff -f
}

# The block devices of a kind (sd, sr) whose path runs through the VMBus device, with the
# SCSI address H:C:T:L of each: "NAME H:C:T:L" lines.
vmbus_devices() { # sd|sr
	local dev path
	for dev in /sys/block/"$1"*; do
		[ -e "$dev" ] || continue
		path=$(readlink -f "$dev/device")
		case $(readlink -f "$dev") in */VMBUS:*) echo "${dev##*/} ${path##*/}" ;; esac
	done
}

# The disk behind VMBus at LUN (H:C:T:LUN).
lun_disk() { # LUN
	vmbus_devices sd | awk -v lun="$1" '{ n = split($2, a, ":") } a[n] == lun { print $1; exit }'
}

find_scsi_disk() {
	lun_disk 0
}

dvd_device() {
	vmbus_devices sr | awk '{ print $1; exit }'
}

device_gone() { # NAME
	[ -e "/sys/block/$1" ] || echo gone
}

# Reads a block (the command that meets a capacity-changed unit attention), then rescans
# as udev does on it; prints the size once it is SECTORS.
capacity_is() { # NAME SECTORS
	dd if="/dev/$1" of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null
	echo 1 >"/sys/block/$1/device/rescan"
	[ "$(cat "/sys/block/$1/size")" != "$2" ] || echo "$2"
}

# Waits up to 60 s for COMMAND (a function too) to print something; prints it.
wait_output() { # COMMAND...
	local out i
	for i in $(seq 60); do
		out=$("$@")
		[ -z "$out" ] || { echo "$out"; return 0; }
		sleep 1
	done
	return 1
}

# The SCSI DVD drive holds the same ISO as the IDE one.
step_scsi_dvd() {
	local sr got
	if ! sr=$(wait_output dvd_device); then
		marker scsi-dvd fail "no sr device behind VMBus: $(ls /sys/block | tr '\n' ' ')"
		return
	fi
	got=$(timeout $IO_TIMEOUT sha256sum "/dev/$sr")
	got=${got%% *}
	if [ "$got" = "$(param dvd_sha256)" ] &&
		[ "$(blockdev --getsize64 "/dev/$sr")" = "$(param dvd_bytes)" ]; then
		marker scsi-dvd ok "/dev/$sr behind hv_storvsc, $(param dvd_bytes) bytes, sha256 matches; $(cat "/sys/block/$sr/device/vendor" "/sys/block/$sr/device/model" | tr -s ' \n' ' ')"
	else
		marker scsi-dvd fail "/dev/$sr: sha256 $got (want $(param dvd_sha256))"
	fi
}

# The Hyper-V callback interrupts (VMBus) so far, over every CPU.
hyperv_irqs() {
	awk '$1 == "HYP:" { n = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i; print n }' /proc/interrupts
}

# A window L1 measures VM exits over (it reads these lines): random 4 KiB reads at a queue
# depth, a fixed number of them, and the guest's VMBus interrupts during them.
io_window() { # NAME DEPTH IOS
	local before after
	echo "RIG: window begin $1"
	sleep 3 # L1 takes its first sample meanwhile
	before=$(hyperv_irqs)
	timeout $FIO_TIMEOUT fio --name="$1" --filename="/dev/$scsi" --rw=randread --bs=4k \
		--iodepth="$2" --number_ios="$3" --size=64M --ioengine=libaio --direct=1 \
		--output-format=terse >/dev/null 2>&1
	after=$(hyperv_irqs)
	sleep 1
	echo "RIG: window end $1 ios=$3 irqs=$((after - before))"
}

# L1 hot-adds a disk at LUN 2 when asked, removes it, then grows LUN 0's disk.
step_scsi_hotplug() {
	local hot want sectors
	want=$(param hot_sectors)
	echo "RIG: hotplug add please"
	if hot=$(wait_output lun_disk 2); then
		sectors=$(cat "/sys/block/$hot/size")
		if [ "$sectors" = "$want" ]; then
			marker scsi-hot-add ok "/dev/$hot appeared at LUN 2 with $sectors sectors"
		else
			marker scsi-hot-add fail "/dev/$hot has $sectors sectors (want $want)"
		fi
	else
		marker scsi-hot-add fail "no disk at LUN 2 within 60 s"
	fi
	echo "RIG: hotplug remove please"
	if [ -z "$hot" ]; then
		marker scsi-hot-remove fail "no hot-added disk to see go"
	elif wait_output device_gone "$hot" >/dev/null; then
		marker scsi-hot-remove ok "/dev/${hot:-?} went away"
	else
		marker scsi-hot-remove fail "/dev/$hot still there after 60 s"
	fi
	want=$(param grow_sectors)
	echo "RIG: resize please"
	if wait_output capacity_is "$scsi" "$want" >/dev/null; then
		marker scsi-resize ok "/dev/$scsi now has $want sectors"
	else
		marker scsi-resize fail "/dev/$scsi has $(cat "/sys/block/$scsi/size") sectors (want $want)"
	fi
}

step_scsi() {
	local want got i
	want=$(param scsi_sectors)
	[ -n "$want" ] || return 0
	scsi=
	for i in $(seq 30); do
		scsi=$(find_scsi_disk)
		[ -z "$scsi" ] || break
		sleep 1
	done
	if [ -z "$scsi" ]; then
		marker scsi-disk fail "no sd device behind VMBus after 30 s: $(ls /sys/block); $(dmesg | grep -i -E 'vmbus|storvsc|hv_' | tail -n 5 | tr '\n' ' ')"
		return
	fi
	got=$(cat "/sys/block/$scsi/size")
	if [ "$got" = "$want" ]; then
		marker scsi-disk ok "/dev/$scsi $got sectors behind hv_storvsc, $(ls -d /sys/block/$scsi/mq/* 2>/dev/null | wc -l) queues; $(dmesg | grep -o 'hv_vmbus: Vmbus version:[0-9.]*' | tail -n 1)"
	else
		marker scsi-disk fail "/dev/$scsi has $got sectors (want $want)"
	fi
	fio_on "/dev/$scsi" scsi-fio-rand4k 0 8M --rw=randwrite --bs=4k --iodepth=32 --numjobs=2 \
		--offset_increment=8M --group_reporting=1
	fio_on "/dev/$scsi" scsi-fio-seq1m 32M 16M --rw=write --bs=1M --iodepth=4
	step_scsi_dvd
	io_window qd1 1 1000
	io_window qd32 32 4000
	step_scsi_hotplug
}

echo "RIG: L2 init on $(uname -r)"
step_modules
step_hv_modules
if [ "$(param gen 1)" = 2 ]; then
	step_uefi
else
	step_disk
	step_dvd
	run_fio fio-rand4k 0 8M --rw=randwrite --bs=4k --iodepth=32
	run_fio fio-seq1m 16M 16M --rw=write --bs=1M --iodepth=4
	step_pattern
fi
step_scsi
finish
