#!/usr/bin/env bash
# Convert benchmark: `vdisk convert` against `qemu-img convert` in one run on the same
# files, printed as one markdown table with the ratio vdisk/qemu-img.
#
#   raw -> VHDX: a raw file of SIZE, half random data and half zeros (in alternating
#                64 MiB stripes; the zeros are written, so both tools must read them),
#                to a new dynamic VHDX;
#   VHDX -> raw: a dynamic VHDX holding the same disk (made once by qemu-img, so that
#                neither tool reads its own output) to a new sparse raw file.
#
# Rates are virtual bytes per second (the disk's size over the wall time). Each row runs
# both tools ROUNDS times, alternating which goes first, each time onto a fresh target,
# and reports the medians; every output is checked with `qemu-img compare`. The host disk
# is shared and noisy: only ratios within one run mean anything.
#
# Cache modes are each tool's defaults. qemu-img convert reads with cache=writeback and
# writes with cache=unsafe: the target goes to the page cache and is never flushed, so
# its data may not be on disk when it exits. vdisk convert reads with writeback, writes
# with O_DIRECT and flushes the target before it exits. So by default both timings end
# with a `sync` of the output file: the time to a durable copy, which is what the target
# (>= 1.5) is measured on. --no-sync times each tool's defaults as they are.
#
# Usage: bench/convert.sh [--quick] [--rounds N] [--size SIZE] [--dir DIR] [--no-sync]
#   --quick      CI slice: 1 round on 512 MiB
#   VDISK=path   the vdisk binary (default: build/tools/vdisk)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
vdisk=${VDISK:-$root/build/tools/vdisk}
rounds=5
size=4G
sync_output=1
dir=${BENCH_DIR:-$root/out/bench}

while [ $# -gt 0 ]; do
	case "$1" in
	--quick) rounds=1 size=512M ;;
	--rounds) rounds=$2; shift ;;
	--size) size=$2; shift ;;
	--dir) dir=$2; shift ;;
	--no-sync) sync_output=0 ;;
	-h|--help) sed -n '2,24p' "$0"; exit 0 ;;
	*) echo "convert.sh: unknown option '$1' (see --help)" >&2; exit 3 ;;
	esac
	shift
done

for tool in qemu-img numfmt "$vdisk"; do
	command -v "$tool" >/dev/null || { echo "convert.sh: '$tool' not found (run scripts/install-deps.sh and build first)" >&2; exit 2; }
done

mkdir -p "$dir"
bytes=$(numfmt --from=iec "$size")
stripe=$((64 << 20))
((bytes % (2 * stripe) == 0)) || { echo "convert.sh: --size must be a multiple of 128M" >&2; exit 3; }
src_raw=$dir/convert-$size.raw
src_vhdx=$dir/convert-$size.vhdx
out_vhdx=$dir/convert-out.vhdx
out_raw=$dir/convert-out.raw
trap 'rm -f "$out_vhdx" "$out_raw"' EXIT

prepare_sources() {
	if [ ! -f "$src_raw" ] || [ "$(stat -c %s "$src_raw")" != "$bytes" ]; then
		echo "convert.sh: writing $size (half random, half zeros) to $src_raw" >&2
		rm -f "$src_raw" "$src_vhdx"
		local i
		for ((i = 0; i < bytes / stripe / 2; i++)); do
			head -c $stripe /dev/urandom
			head -c $stripe /dev/zero
		done >"$src_raw"
		sync "$src_raw"
	fi
	if [ ! -f "$src_vhdx" ]; then
		qemu-img convert -f raw -O vhdx "$src_raw" "$src_vhdx.tmp"
		mv "$src_vhdx.tmp" "$src_vhdx"
		sync "$src_vhdx"
	fi
}

# Runs a command on a fresh target and prints its wall time in seconds.
timed() { # target command...
	local target=$1 start end
	shift
	rm -f "$target"
	start=$(date +%s%N)
	"$@" >/dev/null
	((sync_output)) && sync "$target"
	end=$(date +%s%N)
	awk -v ns=$((end - start)) 'BEGIN { printf "%.6f\n", ns / 1e9 }'
}

# The output must read like the source.
verify() { # source source_fmt target target_fmt tool
	qemu-img compare -f "$2" -F "$4" "$1" "$3" >/dev/null ||
		{ echo "convert.sh: $5 wrote $3 that differs from $1" >&2; exit 1; }
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
rate() { awk -v b="$bytes" -v s="$1" 'BEGIN { printf "%.0f", (s > 0) ? b / s / 1e6 : 0 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b ? a / b : 0 }'; }

# One row: both tools ROUNDS times, alternating the order. Prints the table line.
row() { # label source source_fmt target target_fmt "vdisk args" "qemu-img args"
	local label=$1 source=$2 sfmt=$3 target=$4 tfmt=$5 vargs=$6 qargs=$7
	local r v_times="" q_times=""
	for ((r = 0; r < rounds; r++)); do
		local order=(vdisk qemu)
		((r % 2)) && order=(qemu vdisk)
		local tool
		for tool in "${order[@]}"; do
			if [ "$tool" = vdisk ]; then
				# shellcheck disable=SC2086
				v_times+="$(timed "$target" "$vdisk" convert $vargs "$source" "$target") "
			else
				# shellcheck disable=SC2086
				q_times+="$(timed "$target" qemu-img convert $qargs "$source" "$target") "
			fi
			verify "$source" "$sfmt" "$target" "$tfmt" "$tool"
		done
	done
	local v q
	v=$(rate "$(tr ' ' '\n' <<<"$v_times" | grep . | median)")
	q=$(rate "$(tr ' ' '\n' <<<"$q_times" | grep . | median)")
	printf '| %s | %s MB/s | %s MB/s | %s |\n' "$label" "$v" "$q" "$(ratio "$v" "$q")"
}

prepare_sources
echo "convert.sh: $rounds round(s) per tool and row on $size, files in $dir" >&2
echo "### convert ($size disk, half zeros; rates are virtual bytes per second)"
echo
echo '| conversion | vdisk convert | qemu-img convert | vdisk/qemu-img |'
echo '|---|---|---|---|'
row "raw -> VHDX (dynamic)" "$src_raw" raw "$out_vhdx" vhdx "-f raw -O vhdx" "-f raw -O vhdx"
rm -f "$out_vhdx"
row "VHDX -> raw (sparse)" "$src_vhdx" vhdx "$out_raw" raw "-f vhdx -O raw --sparse" "-f vhdx -O raw"
echo
if ((sync_output)); then
	echo "cache: each tool's defaults, plus a sync of the output file in both timings"
else
	echo "cache: each tool's defaults (qemu-img: source writeback, target unsafe, never flushed;" \
		"vdisk: source writeback, target O_DIRECT, flushed)"
fi
echo "target: vdisk/qemu-img >= 1.5 on both rows"
