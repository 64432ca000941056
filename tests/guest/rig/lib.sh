# shellcheck shell=bash disable=SC2034
# Shared by build.sh and run.sh (sourced, never run). Defines the rig's paths, the log
# helpers and the one place the L2 boot loader's config is written.

rig_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
rig_root=$(cd "$rig_dir/../../.." && pwd)
rig_build=${HVSTACK_BUILD:-$rig_root/build}
rig_cache_root=${HVSTACK_RIG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hvstack-rig}

rig_log() {
	echo "rig: $*" >&2
}

rig_die() {
	echo "rig: error: $*" >&2
	exit 2
}

# --help prints the caller's usage and exits 0; anything else is a usage error (exit 3).
rig_help_or_usage_error() { # ARG
	case $1 in
	-h | --help)
		usage
		exit 0
		;;
	esac
	usage >&2
	exit 3
}

rig_need_tools() { # TOOL...: every tool must be on PATH
	local tool missing=()
	for tool in "$@"; do
		command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
	done
	[ ${#missing[@]} -eq 0 ] ||
		rig_die "missing ${missing[*]}; run scripts/install-deps.sh (Debian packages)"
}

rig_vdisk() {
	local vdisk=${VDISK:-$rig_build/tools/vdisk}
	[ -x "$vdisk" ] || rig_die "no vdisk at $vdisk: build the tree (scripts/build.sh build) or set VDISK"
	"$vdisk" "$@"
}

# Writes the L2 boot loader config to FILE. The L2 /init reads its parameters (rig.*) from
# the kernel command line this sets; see l2-init.sh for their meaning.
# L2's kernel command line: the test plan's parameters (l2-init.sh). Uses l2.env.
rig_l2_cmdline() { # EXIT(button|acpi|port) TOKEN [SCSI_SECTORS]
	echo "console=ttyS0 ${RIG_L2_QUIET-quiet} panic=-1 rig.exit=$1 rig.token=$2 rig.disk_sectors=$L2_DISK_SECTORS rig.data_sectors=$L2_DATA_SECTORS rig.pattern_mib=$L2_PATTERN_MIB rig.dvd_bytes=$L2_DVD_BYTES rig.dvd_sha256=$L2_DVD_SHA256${3:+ rig.scsi_sectors=$3}"
}

rig_write_syslinux_cfg() { # FILE EXIT(button|acpi|port) TOKEN [SCSI_SECTORS]; uses l2.env
	cat >"$1" <<EOF
SERIAL 0 115200
DEFAULT rig
PROMPT 0
TIMEOUT 0
LABEL rig
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND $(rig_l2_cmdline "$2" "$3" "${4:-}")
EOF
}

# Puts a new boot loader config into the boot partition of the raw L2 disk IMAGE.
rig_set_l2_cmdline() { # IMAGE EXIT TOKEN [SCSI_SECTORS]
	local cfg
	cfg=$(mktemp)
	rig_write_syslinux_cfg "$cfg" "$2" "$3" "${4:-}"
	MTOOLS_SKIP_CHECK=1 mcopy -o -i "$1@@$((L2_BOOT_START_MIB * 1048576))" "$cfg" ::/syslinux.cfg
	rm -f "$cfg"
}
