/* vdisk bench: measure the I/O engine and format driver on an image, fio-style. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cli.h"
#include "size.h"

static void bench_help(FILE *out)
{
	fprintf(out,
		"Usage: vdisk bench [OPTIONS] FILE\n\n"
		"Runs an I/O workload on an image through the block layer and reports IOPS,\n"
		"bandwidth and latency percentiles. The parameters mean what fio's do.\n"
		"Write workloads overwrite the image's data.\n\n"
		"Options:\n"
		"      --rw MODE          randread, randwrite, randrw, read, write, rw\n"
		"                         (default randread)\n"
		"      --bs SIZE          block size (default 4k)\n"
		"  -d, --iodepth N        requests in flight per queue (default 32)\n"
		"      --batch N          submit once N requests are queued (default 1, as\n"
		"                         fio's iodepth_batch_submit)\n"
		"  -q, --queues N         queues, each on its own thread (default 1)\n"
		"      --numjobs N        the same as --queues\n"
		"  -t, --runtime SECONDS  how long to run (default 10)\n"
		"      --ramp SECONDS     run this long first without measuring (default 0)\n"
		"  -n, --ios N            stop after N requests in total instead of a time\n"
		"      --rwmixread PCT    share of reads for randrw and rw (default 50)\n"
		"      --offset SIZE      start of the region used (default 0)\n"
		"      --size SIZE        length of the region used (default: to the end)\n"
		"      --fsync N          flush after every N writes (default 0: never)\n"
		"      --stride SIZE      sequential patterns: distance between requests\n"
		"                         (default: the block size)\n"
		"      --engine ENGINE    auto, io_uring, libaio or sync (default auto)\n"
		"      --cache MODE       direct (O_DIRECT, default) or writeback\n"
		"  -f, --format FMT       read the image as FMT instead of probing its content\n"
		"      --seed N           random seed for offsets (default 1)\n"
		"      --json             print the results as one JSON object\n"
		"  -h, --help             show this help\n");
}

struct bench_cli {
	struct bench_params p;
	struct vdisk_options opts;
	bool json;
	const char *path;
};

static bool parse_seconds(const char *option, const char *text, double *out)
{
	char *end;
	double v = strtod(text, &end);
	if (!*text || *end || !(v >= 0) || v > 86400 * 7) {
		cli_usage_error("bench", "%s '%s' must be a number of seconds (0 to 604800)",
				option, text);
		return false;
	}
	*out = v;
	return true;
}

enum {
	OPT_RW = 256,
	OPT_BS,
	OPT_NUMJOBS,
	OPT_RAMP,
	OPT_MIX,
	OPT_OFFSET,
	OPT_SIZE,
	OPT_ENGINE,
	OPT_CACHE,
	OPT_SEED,
	OPT_JSON,
	OPT_BATCH,
	OPT_STRIDE,
	OPT_FSYNC
};

static int parse_option(struct bench_cli *b, int c)
{
	uint64_t v64;
	unsigned v;
	switch (c) {
	case OPT_RW:
		if (!bench_pattern_parse(optarg, &b->p.pattern))
			return cli_usage_error("bench", "unknown --rw mode '%s'", optarg);
		return 0;
	case OPT_BS:
		if (!cli_parse_size("bench", "--bs", optarg, &v64))
			return CLI_EXIT_USAGE;
		if (v64 < 512 || v64 > 64 << 20 || v64 % 512)
			return cli_usage_error("bench", "--bs must be a multiple of 512 up to 64M");
		b->p.block_size = (uint32_t)v64;
		return 0;
	case 'd':
		return cli_parse_uint("bench", "--iodepth", optarg, 1, 4096, &b->p.iodepth)
			       ? 0
			       : CLI_EXIT_USAGE;
	case OPT_BATCH:
		return cli_parse_uint("bench", "--batch", optarg, 1, 4096, &b->p.batch)
			       ? 0
			       : CLI_EXIT_USAGE;
	case 'q':
	case OPT_NUMJOBS:
		return cli_parse_uint("bench", "--queues", optarg, 1, 64, &b->p.queues)
			       ? 0
			       : CLI_EXIT_USAGE;
	case 't':
		return parse_seconds("--runtime", optarg, &b->p.runtime_s) ? 0 : CLI_EXIT_USAGE;
	case OPT_RAMP:
		return parse_seconds("--ramp", optarg, &b->p.ramp_s) ? 0 : CLI_EXIT_USAGE;
	case 'n':
		if (!cli_parse_size("bench", "--ios", optarg, &b->p.ios))
			return CLI_EXIT_USAGE;
		return 0;
	case OPT_MIX:
		if (!cli_parse_uint("bench", "--rwmixread", optarg, 0, 100, &v))
			return CLI_EXIT_USAGE;
		b->p.read_pct = v;
		return 0;
	case OPT_OFFSET:
		return cli_parse_size("bench", "--offset", optarg, &b->p.offset) ? 0
										 : CLI_EXIT_USAGE;
	case OPT_FSYNC:
		return cli_parse_uint("bench", "--fsync", optarg, 0, 1u << 30, &b->p.fsync_every)
			       ? 0
			       : CLI_EXIT_USAGE;
	case OPT_STRIDE:
		if (!cli_parse_size("bench", "--stride", optarg, &b->p.stride))
			return CLI_EXIT_USAGE;
		if (b->p.stride && b->p.stride < b->p.block_size)
			return cli_usage_error("bench", "--stride must be at least --bs");
		return 0;
	case OPT_SIZE:
		return cli_parse_size("bench", "--size", optarg, &b->p.size) ? 0 : CLI_EXIT_USAGE;
	case OPT_ENGINE:
		return cli_parse_engine("bench", optarg, &b->opts.engine) ? 0 : CLI_EXIT_USAGE;
	case OPT_CACHE:
		return cli_parse_cache("bench", optarg, &b->opts.cache) ? 0 : CLI_EXIT_USAGE;
	case OPT_SEED:
		return cli_parse_size("bench", "--seed", optarg, &b->p.seed) ? 0 : CLI_EXIT_USAGE;
	case 'f':
		b->opts.format = optarg;
		return 0;
	case OPT_JSON:
		b->json = true;
		return 0;
	}
	return -1;
}

static int parse_args(struct bench_cli *b, int argc, char **argv)
{
	static const struct option options[] = {
		{ "rw", required_argument, NULL, OPT_RW },
		{ "bs", required_argument, NULL, OPT_BS },
		{ "iodepth", required_argument, NULL, 'd' },
		{ "batch", required_argument, NULL, OPT_BATCH },
		{ "queues", required_argument, NULL, 'q' },
		{ "numjobs", required_argument, NULL, OPT_NUMJOBS },
		{ "runtime", required_argument, NULL, 't' },
		{ "ramp", required_argument, NULL, OPT_RAMP },
		{ "ios", required_argument, NULL, 'n' },
		{ "rwmixread", required_argument, NULL, OPT_MIX },
		{ "offset", required_argument, NULL, OPT_OFFSET },
		{ "size", required_argument, NULL, OPT_SIZE },
		{ "stride", required_argument, NULL, OPT_STRIDE },
		{ "fsync", required_argument, NULL, OPT_FSYNC },
		{ "engine", required_argument, NULL, OPT_ENGINE },
		{ "cache", required_argument, NULL, OPT_CACHE },
		{ "format", required_argument, NULL, 'f' },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "d:q:t:n:f:h", options, NULL)) != -1) {
		if (c == 'h') {
			bench_help(stdout);
			return -1;
		}
		int ret = parse_option(b, c);
		if (ret < 0)
			return cli_bad_option("bench", argv);
		if (ret)
			return ret;
	}
	int operands = cli_expect_one("bench", "FILE", argc);
	if (operands)
		return operands;
	b->path = argv[optind];
	return 0;
}

static json_t *side_json(const struct bench_side *s, double secs)
{
	const struct latency *l = &s->lat;
	return json_pack("{s:I, s:I, s:f, s:f, s:{s:I, s:f, s:I, s:I, s:I, s:I}}", "ios",
			 (json_int_t)s->ios, "bytes", (json_int_t)s->bytes, "iops",
			 secs > 0 ? (double)s->ios / secs : 0.0, "bw_bytes",
			 secs > 0 ? (double)s->bytes / secs : 0.0, "lat_ns", "min",
			 (json_int_t)(l->count ? l->min_ns : 0), "mean", latency_mean(l), "p50",
			 (json_int_t)latency_percentile(l, 0.50), "p99",
			 (json_int_t)latency_percentile(l, 0.99), "p99.9",
			 (json_int_t)latency_percentile(l, 0.999), "max", (json_int_t)l->max_ns);
}

static int print_json(const struct bench_cli *b, struct vdisk *disk, const struct bench_result *r)
{
	json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:f}", "file",
			      b->path, "format", vdisk_format_name(disk), "virtual_size",
			      (json_int_t)vdisk_size(disk), "engine", vdisk_engine_name(disk),
			      "cache", b->opts.cache == VDISK_CACHE_DIRECT ? "direct" : "writeback",
			      "rw", bench_pattern_name(b->p.pattern), "bs", (int)b->p.block_size,
			      "iodepth", (int)b->p.iodepth, "batch", (int)b->p.batch, "queues",
			      (int)b->p.queues, "seconds", r->seconds);
	if (o) {
		json_object_set_new(o, "read", side_json(&r->read, r->seconds));
		json_object_set_new(o, "write", side_json(&r->write, r->seconds));
	}
	return cli_print_json(o);
}

static void human_count(double v, char *out, size_t size)
{
	if (v >= 1e6)
		snprintf(out, size, "%.2fM", v / 1e6);
	else if (v >= 1e3)
		snprintf(out, size, "%.1fk", v / 1e3);
	else
		snprintf(out, size, "%.0f", v);
}

static void print_side(const char *name, const struct bench_side *s, double secs)
{
	if (!s->ios)
		return;
	char iops[32], bw[32];
	human_count((double)s->ios / secs, iops, sizeof(iops));
	size_format((uint64_t)((double)s->bytes / secs), bw, sizeof(bw));
	const struct latency *l = &s->lat;
	printf("  %-5s IOPS=%s, BW=%s/s (%.1f MB/s), ios=%" PRIu64 "\n", name, iops, bw,
	       (double)s->bytes / secs / 1e6, s->ios);
	printf("        lat (usec): min=%.1f, mean=%.1f, p50=%.1f, p99=%.1f, p99.9=%.1f, "
	       "max=%.1f\n",
	       (double)l->min_ns / 1e3, latency_mean(l) / 1e3,
	       (double)latency_percentile(l, 0.50) / 1e3, (double)latency_percentile(l, 0.99) / 1e3,
	       (double)latency_percentile(l, 0.999) / 1e3, (double)l->max_ns / 1e3);
}

static void print_text(const struct bench_cli *b, struct vdisk *disk, const struct bench_result *r)
{
	char size[32], bs[32];
	size_format(vdisk_size(disk), size, sizeof(size));
	size_format(b->p.block_size, bs, sizeof(bs));
	printf("%s: %s, %s; engine %s, cache %s\n", b->path, vdisk_format_name(disk), size,
	       vdisk_engine_name(disk),
	       b->opts.cache == VDISK_CACHE_DIRECT ? "direct" : "writeback");
	printf("%s bs=%s iodepth=%u queues=%u: %.2f s\n", bench_pattern_name(b->p.pattern), bs,
	       b->p.iodepth, b->p.queues, r->seconds);
	if (r->seconds > 0) {
		print_side("read", &r->read, r->seconds);
		print_side("write", &r->write, r->seconds);
	}
}

static int bench_main(int argc, char **argv)
{
	struct bench_cli b = {
		.p = { .pattern = BENCH_RANDREAD,
		       .block_size = 4096,
		       .iodepth = 32,
		       .batch = 1,
		       .queues = 1,
		       .runtime_s = 10,
		       .read_pct = 50,
		       .seed = 1 },
		.opts = { .cache = VDISK_CACHE_DIRECT, .engine = VDISK_ENGINE_AUTO },
	};
	int ret = parse_args(&b, argc, argv);
	if (ret)
		return ret < 0 ? CLI_EXIT_OK : ret;
	bool writes = b.p.pattern != BENCH_RANDREAD && b.p.pattern != BENCH_READ;
	b.opts.read_only = !writes;
	b.opts.queues = b.p.queues;
	b.opts.queue_depth = b.p.iodepth;
	struct vdisk *disk;
	ret = cli_open("bench", b.path, &b.opts, &disk);
	if (ret)
		return ret;
	struct bench_result r;
	int err = bench_run(disk, &b.p, &r);
	if (err == -ERANGE)
		ret = cli_fail("bench", b.path, err,
			       "the region (--offset/--size) does not fit in the %" PRIu64
			       "-byte disk or is smaller than one block",
			       vdisk_size(disk));
	else if (err < 0)
		ret = cli_fail("bench", b.path, err, "cannot run: %s", strerror(-err));
	else if (r.error)
		ret = cli_fail("bench", b.path, r.error, "I/O failed at offset %" PRIu64 ": %s",
			       r.error_offset, strerror(-r.error));
	else if (b.json)
		ret = print_json(&b, disk, &r);
	else
		print_text(&b, disk, &r);
	vdisk_close(disk);
	return ret;
}

const struct cli_command cmd_bench = {
	.name = "bench",
	.summary = "measure IOPS, bandwidth and latency of an image",
	.run = bench_main,
	.help = bench_help,
};
