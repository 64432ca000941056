# shellcheck shell=dash
# Sourced by the L1 and L2 /init scripts (as /etc/rig/common.sh in their initramfs): the
# marker lines run.sh parses and the rig.* kernel command-line parameters.

failures=0

marker() { # STEP ok|fail|skip DETAIL...
	local step=$1 status=$2
	shift 2
	echo "RIG: step $step $status $*"
	[ "$status" != fail ] || failures=$((failures + 1))
}

param() { # NAME [DEFAULT]: value of rig.NAME= on the kernel command line
	local word
	for word in $(cat /proc/cmdline); do
		case $word in rig.$1=*)
			echo "${word#*=}"
			return
			;;
		esac
	done
	echo "${2:-}"
}

wait_for() { # PATH SECONDS: true once PATH exists
	local i=0
	while [ ! -e "$1" ] && [ $i -lt $(($2 * 10)) ]; do
		usleep 100000
		i=$((i + 1))
	done
	[ -e "$1" ]
}

# Loads the modules listed in FILE (in-guest paths, dependency order), giving module NAME
# the OPTIONS. Prints the ones that failed, with the reason.
load_modules() { # FILE [NAME OPTIONS...]
	local file=$1 name="" mod err bad=""
	shift
	if [ $# -gt 0 ]; then
		name=$1
		shift
	fi
	while read -r mod; do
		if [ "$(basename "$mod" .ko)" = "$name" ]; then
			err=$(insmod "$mod" "$@" 2>&1) || bad="$bad $name(${err##*: })"
		else
			err=$(insmod "$mod" 2>&1) || bad="$bad $(basename "$mod" .ko)(${err##*: })"
		fi
	done <"$file"
	echo "$bad"
}
