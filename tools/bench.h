/* The benchmark engine behind `vdisk bench`: fio-like workloads through the block layer,
 * one thread per queue, each keeping iodepth requests in flight. */
#ifndef HV_TOOLS_BENCH_H
#define HV_TOOLS_BENCH_H

#include <stdbool.h>
#include <stdint.h>

#include "latency.h"
#include "vdisk.h"

enum bench_pattern {
	BENCH_RANDREAD,
	BENCH_RANDWRITE,
	BENCH_RANDRW,
	BENCH_READ,
	BENCH_WRITE,
	BENCH_RW,
};

struct bench_params {
	enum bench_pattern pattern;
	uint32_t block_size;
	unsigned iodepth;
	unsigned batch;      /* submit once this many requests are queued (fio's
			      * iodepth_batch_submit); 1 submits each at once */
	unsigned queues;     /* threads; the disk must have at least this many queues */
	double runtime_s;    /* stop after this long (when ios is 0) */
	double ramp_s;       /* run this long first without counting */
	uint64_t ios;        /* stop after this many requests in total (0: use runtime) */
	unsigned read_pct;   /* share of reads for the mixed patterns */
	uint64_t offset;     /* region of the disk used */
	uint64_t size;       /* 0: to the end of the disk */
	uint64_t seed;
	uint64_t stride;     /* sequential patterns: distance between offsets (0: block size),
			      * like qemu-img bench -S */
	unsigned fsync_every; /* flush after every N writes (fio's fsync=N); 0: never */
};

struct bench_side {
	uint64_t ios;
	uint64_t bytes;
	struct latency lat;
};

struct bench_result {
	double seconds; /* measured time, without the ramp */
	struct bench_side read, write;
	int error;      /* first failed request's -errno, 0 if none */
	uint64_t error_offset;
};

bool bench_pattern_parse(const char *text, enum bench_pattern *out);
const char *bench_pattern_name(enum bench_pattern p);
bool bench_pattern_random(enum bench_pattern p);

/* Runs the workload. Returns 0 (the result says whether a request failed) or -errno when
 * it could not start. */
int bench_run(struct vdisk *disk, const struct bench_params *params, struct bench_result *result);

#endif
