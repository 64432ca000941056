#!/bin/busybox sh
# shellcheck shell=dash source=guest-common.sh
# /init of L1, the Linux that QEMU (TCG, emulated AMD CPU with SVM) boots to host our VMM.
# Loads KVM with nested=1, proves /dev/kvm with kvm_probe, and with rig.mode=vmm runs the
# L2 guest under `vmm run` from the shared disk (QEMU's virtio disk, ext4, mounted at
# /share), then powers off. One marker line per step, as in l2-init.sh:
#   RIG: step l1-NAME ok|fail|skip DETAIL
#
# Parameters (kernel command line, from run.sh):
#   rig.mode=probe|vmm
#   rig.l2_memory=SIZE rig.l2_cpus=N   the L2 VM's size
#   rig.l2_disk=FILE rig.l2_dvd=FILE   names on the shared disk
#   rig.vmm_timeout=SECONDS            how long `vmm run` may take
/bin/busybox mkdir -p /proc /sys /dev /tmp /share /usr/bin /usr/sbin /bin /sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
exec </dev/console >/dev/console 2>&1
. /etc/rig/common.sh

VMM_PASS_STATUS=64 # the L2 /init writes 0 to the test-exit port when its plan passed

step_kvm_modules() {
	local bad
	bad=$(load_modules /etc/rig/modules-kvm kvm-amd nested=1)
	if [ -z "$bad" ] && [ -c /dev/kvm ]; then
		marker l1-kvm-modules ok "$(wc -l </etc/rig/modules-kvm) loaded, kvm_amd nested=$(cat /sys/module/kvm_amd/parameters/nested)"
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

step_vmm() {
	local disk dvd status
	disk=/share/$(param l2_disk l2.vhdx)
	dvd=/share/$(param l2_dvd dvd.iso)
	if [ ! -x /usr/bin/vmm ]; then
		marker l1-vmm fail "no vmm in the L1 initramfs"
		return
	fi
	echo "RIG: L1 running: vmm run --gen 1 --memory $(param l2_memory 1G) --cpus $(param l2_cpus 2) --disk ide:0:0=$disk --dvd ide:1:0=$dvd --serial stdio --test-exit"
	timeout "$(param vmm_timeout 900)" vmm run --gen 1 --memory "$(param l2_memory 1G)" \
		--cpus "$(param l2_cpus 2)" --disk "ide:0:0=$disk" --dvd "ide:1:0=$dvd" \
		--serial stdio --test-exit </dev/null
	status=$?
	case $status in
	"$VMM_PASS_STATUS") marker l1-vmm ok "vmm exited $status: the guest reported success on the test-exit port" ;;
	143) marker l1-vmm fail "vmm killed after $(param vmm_timeout 900) s" ;;
	*) marker l1-vmm fail "vmm exited $status (want $VMM_PASS_STATUS)" ;;
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
