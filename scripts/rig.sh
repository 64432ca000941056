#!/usr/bin/env bash
# The nested Linux guest rig (tests/guest/rig): builds its images from Debian packages (cached
# in ~/.cache/hvstack-rig) and runs the given modes in order. Usage: scripts/rig.sh [MODE...]
#   probe     L1 under QEMU TCG loads kvm-amd nested=1 and proves /dev/kvm
#   l2-qemu   QEMU (SeaBIOS, PIIX IDE) boots the L2 disk: the test plan's oracle
#   vmm       our `vmm run --gen 1` boots the L2 disk inside L1 (skipped until vmm is built)
# Default: probe l2-qemu vmm. Exits non-zero if a mode failed; a skipped mode is reported.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ $# -gt 0 ] || set -- probe l2-qemu vmm
failed=()
for mode in "$@"; do
	status=0
	"$root/tests/guest/rig/run.sh" "--$mode" || status=$?
	case $status in
	0) ;;
	77) echo "rig: --$mode skipped" ;;
	*) failed+=("$mode") ;;
	esac
done
if [ ${#failed[@]} -gt 0 ]; then
	echo "rig: FAILED: ${failed[*]}"
	exit 1
fi
