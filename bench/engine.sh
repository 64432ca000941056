#!/usr/bin/env bash
# Engine benchmark: fio (io_uring, O_DIRECT), `vdisk bench` and `qemu-img bench`, side by
# side in one run on the same files, printed as markdown tables with ratios.
#
#   raw:  the same raw file through fio, vdisk and qemu-img (ratios to fio);
#   vhd, vhdx: a fully allocated dynamic image against the raw file and against qemu-img
#         on the same image, and writes that each allocate a new block of an empty one.
#
# Each row runs every tool ROUNDS times, rotating which goes first, and reports the median,
# because the host disk is shared and noisy: only ratios within one run mean anything.
#
# Usage: bench/engine.sh [--quick] [--rounds N] [--runtime S] [--size SIZE] [--dir DIR]
#                        [--only raw|vhd|vhdx]
#   --quick      CI slice: 1 round of 2 s each on a 1 GiB file
#   VDISK=path   the vdisk binary (default: build/tools/vdisk)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
vdisk=${VDISK:-$root/build/tools/vdisk}
rounds=3
runtime=5
size=4G
only=""
dir=${BENCH_DIR:-$root/out/bench}

while [ $# -gt 0 ]; do
	case "$1" in
	--quick) rounds=1 runtime=2 size=1G ;;
	--rounds) rounds=$2; shift ;;
	--runtime) runtime=$2; shift ;;
	--size) size=$2; shift ;;
	--dir) dir=$2; shift ;;
	--only) only=$2; shift ;;
	-h|--help) sed -n '2,16p' "$0"; exit 0 ;;
	*) echo "engine.sh: unknown option '$1' (see --help)" >&2; exit 3 ;;
	esac
	shift
done

for tool in fio qemu-img jq numfmt "$vdisk"; do
	command -v "$tool" >/dev/null || { echo "engine.sh: '$tool' not found (run scripts/install-deps.sh and build first)" >&2; exit 2; }
done

mkdir -p "$dir"
bytes=$(numfmt --from=iec "$size")
raw=$dir/engine-$size.raw
vhd=$dir/engine-$size.vhd
vhdx=$dir/engine-$size.vhdx

# Files hold real data written through the device: reads of holes or unwritten extents
# never reach the disk and would measure nothing.
prepare_raw() {
	[ -f "$raw" ] && [ "$(stat -c %s "$raw")" = "$bytes" ] && return
	echo "engine.sh: writing $size of data to $raw" >&2
	rm -f "$raw"
	fio --name=fill --filename="$raw" --size="$bytes" --rw=write --bs=1M --direct=1 \
		--ioengine=io_uring --iodepth=8 --output=/dev/null
}

prepare_image() { # format path: a dynamic image of $size, every block written
	local fmt=$1 image=$2
	[ -f "$image" ] && "$vdisk" info --json "$image" 2>/dev/null |
		jq -e ".virtual_size == $bytes" >/dev/null && [ -f "$image.full" ] && return
	echo "engine.sh: writing $size of data to the dynamic ${fmt^^} $image" >&2
	rm -f "$image.full"
	"$vdisk" create -f "$fmt" --force "$image" "$size" >/dev/null
	"$vdisk" bench --rw write --bs 1M --iodepth 8 --ios $((bytes >> 20)) "$image" >/dev/null
	touch "$image.full"
}

side_of() { case $1 in *write) echo write ;; *) echo read ;; esac; }

# Each measurement prints "IOPS MBps p99_us".
run_fio() { # file rw bs depth
	fio --name=engine --filename="$1" --rw="$2" --bs="$3" --iodepth="$4" \
		--direct=1 --ioengine=io_uring --time_based --runtime="$runtime" --norandommap \
		--randrepeat=0 --output-format=json 2>/dev/null |
		jq -r ".jobs[0].$(side_of "$2") | \"\(.iops) \(.bw_bytes / 1e6) \((.clat_ns.percentile[\"99.000000\"] // 0) / 1e3)\""
}

run_vdisk() { # file rw bs depth [extra vdisk bench arguments...]
	local file=$1 rw=$2 bs=$3 depth=$4
	shift 4
	"$vdisk" bench --rw "$rw" --bs "$bs" --iodepth "$depth" --runtime "$runtime" "$@" --json "$file" |
		jq -r ".$(side_of "$rw") | \"\(.iops) \(.bw_bytes / 1e6) \(.lat_ns.p99 / 1e3)\""
}

# qemu-img bench counts requests instead of timing and has no random pattern: its rows
# are sequential with the same block size and depth.
run_qemu() { # file fmt rw bs depth count [extra qemu-img bench arguments...]
	local file=$1 fmt=$2 rw=$3 bs=$4 depth=$5 count=$6 write=""
	shift 6
	case $rw in *write) write=-w ;; esac
	local out secs
	out=$(qemu-img bench -f "$fmt" -t none -i io_uring -c "$count" -d "$depth" -s "$bs" \
		$write "$@" "$file" 2>&1)
	secs=$(sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p' <<<"$out")
	[ -n "$secs" ] || { echo "engine.sh: qemu-img bench failed: $out" >&2; echo "0 0 0"; return; }
	awk -v c="$count" -v s="$secs" -v b="$(numfmt --from=iec "${bs^^}")" \
		'BEGIN { printf "%f %f 0\n", c / s, c * b / s / 1e6 }'
}

# A request count that takes about runtime seconds at the given rate.
count_for() { awk -v r="$1" -v t="$runtime" 'BEGIN { c = int(r * t); print c < 1000 ? 1000 : c }'; }

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# Runs the named measurement commands (one per column) ROUNDS times each, rotating the
# order, and sets med_iops[i], med_mb[i], med_p99[i] for column i.
declare -a med_iops med_mb med_p99
measure() {
	local n=$# r k
	local -a cmds=("$@") iops mb p99
	for ((k = 0; k < n; k++)); do iops[k]="" mb[k]="" p99[k]=""; done
	for ((r = 0; r < rounds; r++)); do
		for ((k = 0; k < n; k++)); do
			local c=$(((k + r) % n)) a b d
			read -r a b d < <(eval "${cmds[c]}")
			iops[c]+="$a " mb[c]+="$b " p99[c]+="$d "
		done
	done
	for ((k = 0; k < n; k++)); do
		med_iops[k]=$(tr ' ' '\n' <<<"${iops[k]}" | grep . | median)
		med_mb[k]=$(tr ' ' '\n' <<<"${mb[k]}" | grep . | median)
		med_p99[k]=$(tr ' ' '\n' <<<"${p99[k]}" | grep . | median)
	done
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b ? a / b : 0 }'; }
value() { # iops mb workload
	case $3 in *1m*) printf '%.0f MB/s' "$2" ;; *) printf '%.0f IOPS' "$1" ;; esac
}

raw_table() {
	echo "### raw file ($size): vdisk and qemu-img against fio"
	echo
	echo '| workload | fio | vdisk | vdisk/fio | qemu-img | qemu-img/fio | vdisk p99 | fio p99 |'
	echo '|---|---|---|---|---|---|---|---|'
	local worst="" row rw bs depth
	for row in "randread 4k 1" "randread 4k 32" "randwrite 4k 32" "read 1m 8" "write 1m 8"; do
		read -r rw bs depth <<<"$row"
		local rate
		rate=$(run_vdisk "$raw" "$rw" "$bs" "$depth" | awk '{ print $1 }')
		local count
		count=$(count_for "$rate")
		measure "run_fio '$raw' $rw $bs $depth" "run_vdisk '$raw' $rw $bs $depth" \
			"run_qemu '$raw' raw $rw $bs $depth $count"
		local w="$rw $bs QD$depth" metric=0
		case $bs in 1m) metric=1 ;; esac
		local f v q
		if ((metric)); then f=${med_mb[0]} v=${med_mb[1]} q=${med_mb[2]}; else f=${med_iops[0]} v=${med_iops[1]} q=${med_iops[2]}; fi
		local seq=""
		case $rw in rand*) seq=" (seq)" ;; esac
		printf '| %s | %s | %s | %s | %s%s | %s | %.0f us | %.0f us |\n' "$w" \
			"$(value "${med_iops[0]}" "${med_mb[0]}" "$w")" \
			"$(value "${med_iops[1]}" "${med_mb[1]}" "$w")" "$(ratio "$v" "$f")" \
			"$(value "${med_iops[2]}" "${med_mb[2]}" "$w")" "$seq" "$(ratio "$q" "$f")" \
			"${med_p99[1]}" "${med_p99[0]}"
		local r
		r=$(ratio "$v" "$f")
		worst=$(awk -v a="$worst" -v b="$r" 'BEGIN { print (a == "" || b < a) ? b : a }')
	done
	echo
	echo "lowest vdisk/fio: $worst (target >= 0.95)"
	echo
}

# A fully allocated dynamic image of the format against the raw file and against qemu-img,
# and writes that each allocate a new block of an empty one.
#   format_table FORMAT QEMU_FORMAT FULL_IMAGE BLOCK_SIZE TARGETS
format_table() {
	local fmt=$1 qfmt=$2 image=$3 block=$4 targets=$5
	echo "### dynamic ${fmt^^} ($size, fully allocated, default blocks; allocating writes: $block blocks)"
	echo
	echo "| workload | vdisk on ${fmt^^} | vdisk on raw | ${fmt^^}/raw | qemu-img on ${fmt^^} | vdisk/qemu-img |"
	echo '|---|---|---|---|---|---|'
	local rate count
	measure "run_vdisk '$image' randread 4k 32" "run_vdisk '$raw' randread 4k 32"
	printf '| randread 4k QD32 | %.0f IOPS | %.0f IOPS | %s | - | - |\n' "${med_iops[0]}" \
		"${med_iops[1]}" "$(ratio "${med_iops[0]}" "${med_iops[1]}")"
	# QEMU submits the requests it queues during one event loop turn together; --batch 32
	# does the same (submit once per completion round) so both see the same pattern.
	rate=$(run_vdisk "$image" read 4k 32 --batch 32 | awk '{ print $1 }')
	count=$(count_for "$rate")
	measure "run_vdisk '$image' read 4k 32 --batch 32" "run_qemu '$image' $qfmt read 4k 32 $count"
	printf '| read 4k QD32 (seq, batched) | %.0f IOPS | - | - | %.0f IOPS | %s |\n' \
		"${med_iops[0]}" "${med_iops[1]}" "$(ratio "${med_iops[0]}" "${med_iops[1]}")"

	# Each write allocates a new block: 4k at the start of every block of an empty 64 GiB
	# image with $block blocks (enough blocks that fixed costs, such as the header update
	# before the first write, do not dominate). Both tools start from a new empty image
	# every time; the raw file's 4k random overwrite rate is the reference.
	local ios=8000
	alloc_vdisk() {
		"$vdisk" create -f "$fmt" --block-size "$block" --force "$empty" 64G >/dev/null
		"$vdisk" bench --rw write --bs 4k --stride "$block" --iodepth 32 --batch 32 \
			--ios $ios --json "$empty" |
			jq -r '.write | "\(.iops) \(.bw_bytes / 1e6) \(.lat_ns.p99 / 1e3)"'
	}
	alloc_qemu() {
		"$vdisk" create -f "$fmt" --block-size "$block" --force "$empty" 64G >/dev/null
		run_qemu "$empty" "$qfmt" write 4k 32 500 -S "$block"
	}
	local empty=$dir/engine-empty.$fmt
	measure alloc_vdisk alloc_qemu "run_vdisk '$raw' randwrite 4k 32"
	printf '| allocating write 4k QD32 | %.0f IOPS | %.0f IOPS (4k overwrite) | %s | %.0f IOPS | %s |\n' \
		"${med_iops[0]}" "${med_iops[2]}" "$(ratio "${med_iops[0]}" "${med_iops[2]}")" \
		"${med_iops[1]}" "$(ratio "${med_iops[0]}" "${med_iops[1]}")"
	rm -f "$empty"
	echo
	echo "targets: $targets"
	echo
}

echo "engine.sh: $rounds round(s) x ${runtime}s per tool and row, files in $dir" >&2
prepare_raw
case $only in "" | raw) raw_table ;; esac
case $only in "" | vhd)
	prepare_image vhd "$vhd"
	format_table vhd vpc "$vhd" 2M \
		"VHD/raw >= 0.97 (randread); read vdisk/qemu-img >= 1.0; allocating vdisk/qemu-img >= 10" ;;
esac
case $only in "" | vhdx)
	if "$vdisk" create -f vhdx --force "$dir/probe.vhdx" 1M >/dev/null 2>&1; then
		rm -f "$dir/probe.vhdx"
		prepare_image vhdx "$vhdx"
		format_table vhdx vhdx "$vhdx" 1M \
			"VHDX/raw >= 0.97 (randread); read vdisk/qemu-img >= 1.1; allocating >= 0.6 x raw overwrite and >= 20 x qemu-img"
	else
		echo "(vhdx rows skipped: this vdisk cannot create VHDX images)"
	fi ;;
esac
