#!/usr/bin/env bash
# Engine benchmark: fio (io_uring, O_DIRECT), `vdisk bench` and `qemu-img bench` on the
# same raw file, side by side in one run, printed as one markdown table with ratios to fio.
#
# Each row runs every tool ROUNDS times, rotating which goes first, and reports the median,
# because the host disk is shared and noisy: only ratios within one run mean anything.
#
# Usage: bench/engine.sh [--quick] [--rounds N] [--runtime S] [--size SIZE] [--dir DIR]
#   --quick      CI slice: 1 round of 2 s each on a 1 GiB file
#   VDISK=path   the vdisk binary (default: build/tools/vdisk)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
vdisk=${VDISK:-$root/build/tools/vdisk}
rounds=3
runtime=5
size=4G
dir=${BENCH_DIR:-$root/out/bench}

while [ $# -gt 0 ]; do
	case "$1" in
	--quick) rounds=1 runtime=2 size=1G ;;
	--rounds) rounds=$2; shift ;;
	--runtime) runtime=$2; shift ;;
	--size) size=$2; shift ;;
	--dir) dir=$2; shift ;;
	-h|--help) sed -n '2,12p' "$0"; exit 0 ;;
	*) echo "engine.sh: unknown option '$1' (see --help)" >&2; exit 3 ;;
	esac
	shift
done

for tool in fio qemu-img jq "$vdisk"; do
	command -v "$tool" >/dev/null || { echo "engine.sh: '$tool' not found (run scripts/install-deps.sh and build first)" >&2; exit 2; }
done

mkdir -p "$dir"
file=$dir/engine-$size.raw
bytes=$(numfmt --from=iec "$size")
# The file holds real data written through the device: reads of holes or unwritten
# extents never reach the disk and would measure nothing.
if [ ! -f "$file" ] || [ "$(stat -c %s "$file")" != "$bytes" ]; then
	echo "engine.sh: writing $size of data to $file" >&2
	rm -f "$file"
	fio --name=fill --filename="$file" --size="$bytes" --rw=write --bs=1M --direct=1 \
		--ioengine=io_uring --iodepth=8 --refill_buffers=0 --output=/dev/null
fi

# One measurement: prints "IOPS MBps p99_us"
run_fio() { # rw bs depth
	local rw=$1 bs=$2 depth=$3 side=read
	case $rw in *write) side=write ;; esac
	fio --name=engine --filename="$file" --rw="$rw" --bs="$bs" --iodepth="$depth" \
		--direct=1 --ioengine=io_uring --time_based --runtime="$runtime" --norandommap \
		--randrepeat=0 --output-format=json 2>/dev/null |
		jq -r ".jobs[0].$side | \"\(.iops) \(.bw_bytes / 1e6) \((.clat_ns.percentile[\"99.000000\"] // 0) / 1e3)\""
}

run_vdisk() { # rw bs depth
	local rw=$1 bs=$2 depth=$3 side=read
	case $rw in *write) side=write ;; esac
	"$vdisk" bench --rw "$rw" --bs "$bs" --iodepth "$depth" --runtime "$runtime" --json "$file" |
		jq -r ".$side | \"\(.iops) \(.bw_bytes / 1e6) \(.lat_ns.p99 / 1e3)\""
}

# qemu-img bench counts requests instead of timing; it has no random pattern, so its rows
# are sequential with the same block size and depth. The count targets ~runtime seconds
# at the rate vdisk just reached.
run_qemu() { # rw bs depth rate
	local rw=$1 bs=$2 depth=$3 rate=$4 write=""
	case $rw in *write) write=-w ;; esac
	local count
	count=$(awk -v r="$rate" -v t="$runtime" -v b="$bytes" -v s="$(numfmt --from=iec "${bs^^}")" \
		'BEGIN { c = int(r * t); m = int(b / s); if (c < 1000) c = 1000; print c }')
	local out secs
	out=$(qemu-img bench -f raw -t none -i io_uring -c "$count" -d "$depth" \
		-s "$bs" $write "$file" 2>&1)
	secs=$(sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p' <<<"$out")
	[ -n "$secs" ] || { echo "engine.sh: qemu-img bench failed: $out" >&2; echo "0 0 0"; return; }
	awk -v c="$count" -v s="$secs" -v b="$(numfmt --from=iec "${bs^^}")" \
		'BEGIN { printf "%f %f 0\n", c / s, c * b / s / 1e6 }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

rows=(
	"randread 4k 1"
	"randread 4k 32"
	"randwrite 4k 32"
	"read 1m 8"
	"write 1m 8"
)

echo "engine.sh: $file, $rounds round(s) x ${runtime}s per tool and row" >&2
printf '| workload | fio | vdisk | vdisk/fio | qemu-img | qemu-img/fio | vdisk p99 | fio p99 |\n'
printf '|---|---|---|---|---|---|---|---|\n'
worst=""
for row in "${rows[@]}"; do
	read -r rw bs depth <<<"$row"
	fio_iops=() fio_mb=() fio_p99=() vd_iops=() vd_mb=() vd_p99=() qm_iops=() qm_mb=()
	for ((r = 0; r < rounds; r++)); do
		# rotate the order so no tool always runs first
		for k in 0 1 2; do
			case $(((k + r) % 3)) in
			0) read -r a b c < <(run_fio "$rw" "$bs" "$depth")
			   fio_iops+=("$a") fio_mb+=("$b") fio_p99+=("$c") ;;
			1) read -r a b c < <(run_vdisk "$rw" "$bs" "$depth")
			   vd_iops+=("$a") vd_mb+=("$b") vd_p99+=("$c") ;;
			2) read -r a b c < <(run_qemu "$rw" "$bs" "$depth" "${vd_iops[0]:-${fio_iops[0]:-10000}}")
			   qm_iops+=("$a") qm_mb+=("$b") ;;
			esac
		done
	done
	f=$(printf '%s\n' "${fio_iops[@]}" | median)
	v=$(printf '%s\n' "${vd_iops[@]}" | median)
	q=$(printf '%s\n' "${qm_iops[@]}" | median)
	fm=$(printf '%s\n' "${fio_mb[@]}" | median)
	vm=$(printf '%s\n' "${vd_mb[@]}" | median)
	qmm=$(printf '%s\n' "${qm_mb[@]}" | median)
	fp=$(printf '%s\n' "${fio_p99[@]}" | median)
	vp=$(printf '%s\n' "${vd_p99[@]}" | median)
	qnote=""
	case $rw in rand*) qnote=" (seq)" ;; esac
	awk -v w="$rw $bs QD$depth" -v f="$f" -v v="$v" -v q="$q" -v fm="$fm" -v vm="$vm" \
		-v qm="$qmm" -v fp="$fp" -v vp="$vp" -v qn="$qnote" 'BEGIN {
		fmt = (w ~ /1m/) ? "%.0f MB/s" : "%.0f IOPS"
		fv = (w ~ /1m/) ? fm : f; vv = (w ~ /1m/) ? vm : v; qv = (w ~ /1m/) ? qm : q
		printf "| %s | " fmt " | " fmt " | %.2f | " fmt "%s | %.2f | %.0f us | %.0f us |\n",
			w, fv, vv, fv ? vv / fv : 0, qv, qn, fv ? qv / fv : 0, vp, fp
	}'
	ratio=$(awk -v f="$f" -v v="$v" 'BEGIN { printf "%.2f", f ? v / f : 0 }')
	worst=$(awk -v a="$worst" -v b="$ratio" 'BEGIN { print (a == "" || b < a) ? b : a }')
done
echo
echo "lowest vdisk/fio ratio: $worst (target >= 0.95)"
