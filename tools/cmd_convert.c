/* vdisk convert: copy what an image reads (a chain: flattened) into an image of another
 * format, through the copy engine (storage/copy.h).
 *
 * A new target is built under a temporary name next to DST and renamed over it only once
 * the copy is complete and flushed: a failed or interrupted convert never leaves a partial
 * DST behind, and --force never destroys the old DST before the new one is whole.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "copy.h"
#include "progress.h"
#include "size.h"

static void convert_help(FILE *out)
{
	fprintf(out,
		"Usage: vdisk convert [OPTIONS] SRC DST\n\n"
		"Copies the disk SRC holds into a new image DST of the same virtual size. A\n"
		"differencing SRC is read through its whole chain (flattened). Ranges that read\n"
		"as zeros are not written, so dynamic targets stay sparse. DST is written under\n"
		"a temporary name and appears only once it is complete.\n\n"
		"Options:\n"
		"  -f, --format FMT         read SRC as FMT instead of probing its content\n"
		"  -O, --output-format FMT  raw, vhd or vhdx; raw by default, as with qemu-img\n"
		"  -t, --type TYPE          VHD and VHDX targets: dynamic (default) or fixed\n"
		"  -b, --block-size SIZE    VHD and VHDX targets: the allocation block size\n"
		"      --sparse             raw and fixed targets: leave the host file "
		"unallocated\n"
		"                           where SRC reads as zeros (default: fully allocated)\n"
		"      --target-existing    write into the existing image DST (at least SRC's\n"
		"                           size; the part past it is left as it is); its\n"
		"                           contents are not assumed zero\n"
		"      --force              replace DST if it exists\n"
		"  -T, --src-cache MODE     direct or writeback (default) for reading SRC\n"
		"      --cache MODE         direct (default) or writeback for writing DST; the\n"
		"                           target is flushed at the end either way\n"
		"      --depth N            requests in flight (default %u)\n"
		"      --chunk SIZE         bytes per request (default %u KiB)\n"
		"  -p, --progress           show a progress bar even when stderr is no terminal\n"
		"      --json               report the result as JSON\n"
		"  -h, --help               show this help\n\n"
		"VHD targets keep SRC's exact size in the footer's current size, as Hyper-V and\n"
		"QEMU read it (the CHS geometry that old tools use may describe a little less).\n"
		"A VHDX target takes SRC's logical sector size, and its physical one when SRC\n"
		"is a VHDX. Sizes a format cannot hold (not a multiple of 512 bytes, over 2040\n"
		"GiB for VHD, over 64 TiB for VHDX) are refused.\n",
		VDISK_COPY_DEFAULT_DEPTH, VDISK_COPY_DEFAULT_CHUNK >> 10);
}

struct convert_args {
	const char *src, *dst;
	const char *src_format;
	struct vdisk_create_options create;
	bool target_existing, force, json, progress;
	enum vdisk_cache_mode src_cache, dst_cache;
	unsigned depth;
	uint32_t chunk;
};

/* ---- the temporary target ---- */

/* The temporary file, removed on failure and when SIGINT or SIGTERM stops the command. */
static char tmp_path[4096];

static void remove_tmp(void)
{
	if (tmp_path[0])
		unlink(tmp_path);
	tmp_path[0] = 0;
}

static void on_signal(int sig)
{
	if (tmp_path[0])
		unlink(tmp_path); /* async-signal-safe */
	signal(sig, SIG_DFL);
	raise(sig);
}

static void catch_signals(bool on)
{
	struct sigaction sa = { .sa_handler = on ? on_signal : SIG_DFL };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

/* Reserves a hidden name in DST's directory (".NAME.XXXXXX") with the mode a new file
 * would get. */
static int reserve_tmp(const char *dst)
{
	char dir_buf[4096], base_buf[4096];
	snprintf(dir_buf, sizeof(dir_buf), "%s", dst);
	snprintf(base_buf, sizeof(base_buf), "%s", dst);
	int n = snprintf(tmp_path, sizeof(tmp_path), "%s/.%s.XXXXXX", dirname(dir_buf),
			 basename(base_buf));
	if (n < 0 || (size_t)n >= sizeof(tmp_path)) {
		tmp_path[0] = 0;
		return -ENAMETOOLONG;
	}
	catch_signals(true);
	int fd = mkstemp(tmp_path);
	if (fd < 0) {
		tmp_path[0] = 0;
		return -errno;
	}
	mode_t mask = umask(0);
	umask(mask);
	int ret = fchmod(fd, 0666 & ~mask) == 0 ? 0 : -errno;
	close(fd);
	return ret;
}

/* Fails with -EBUSY when another process holds the image lock of path (a VM using it). */
static int check_unlocked(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	int ret = flock(fd, LOCK_EX | LOCK_NB) == 0 ? 0 : errno == EWOULDBLOCK ? -EBUSY : -errno;
	close(fd);
	return ret;
}

/* Moves the finished temporary file to dst: replacing what is there with --force, never
 * otherwise (even if a file appeared meanwhile). Then makes the rename durable. */
static int publish_tmp(const char *dst, bool replace)
{
	int ret;
	if (replace) {
		ret = check_unlocked(dst);
		if (ret == 0 && rename(tmp_path, dst) != 0)
			ret = -errno;
	} else {
		ret = renameat2(AT_FDCWD, tmp_path, AT_FDCWD, dst, RENAME_NOREPLACE) == 0 ? 0
											  : -errno;
		if (ret == -EINVAL || ret == -ENOSYS) { /* no RENAME_NOREPLACE here */
			ret = link(tmp_path, dst) == 0 ? 0 : -errno;
			if (ret == 0)
				unlink(tmp_path);
		}
	}
	if (ret < 0)
		return ret;
	tmp_path[0] = 0;
	char dir_buf[4096];
	snprintf(dir_buf, sizeof(dir_buf), "%s", dst);
	int fd = open(dirname(dir_buf), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		if (fsync(fd) != 0)
			ret = -errno;
		close(fd);
	}
	return ret;
}

/* ---- the steps ---- */

/* Whether path names an image of src's chain (converting onto it would destroy it). */
static bool in_source_chain(struct vdisk *src, const char *path)
{
	struct stat target;
	if (stat(path, &target) != 0)
		return false;
	for (struct vdisk *d = src; d; d = vdisk_backing(d)) {
		struct stat st;
		if (stat(vdisk_path(d), &st) == 0 && st.st_dev == target.st_dev &&
		    st.st_ino == target.st_ino)
			return true;
	}
	return false;
}

/* Creates the temporary target with src's size and sector sizes. */
static int create_target(const struct convert_args *a, struct vdisk *src)
{
	struct vdisk_create_options o = a->create;
	struct vdisk_info info;
	int ret = vdisk_get_info(src, &info);
	if (ret < 0)
		return cli_fail("convert", a->src, ret, "cannot describe the source: %s",
				strerror(-ret));
	json_decref(info.details);
	o.size = info.virtual_size;
	o.overwrite = true; /* the reserved temporary file */
	if (!strcmp(o.format, "vhdx")) {
		o.logical_sector_size = info.logical_sector_size;
		/* only a VHDX records a physical sector size worth keeping */
		if (!strcmp(info.format, "vhdx"))
			o.physical_sector_size = info.physical_sector_size;
	}
	ret = reserve_tmp(a->dst);
	if (ret < 0)
		return cli_fail("convert", a->dst, ret, "cannot create a file next to it: %s",
				strerror(-ret));
	char err[256];
	ret = vdisk_create(tmp_path, &o, err, sizeof(err));
	if (ret < 0)
		return cli_fail("convert", a->dst, ret,
				"cannot create a %s image of the source's size (%" PRIu64
				" bytes): %s",
				o.format, o.size, err);
	return 0;
}

/* Opens the target: the temporary one, or DST itself with --target-existing. */
static int open_target(const struct convert_args *a, struct vdisk *src, struct vdisk **dst)
{
	struct vdisk_options opts = { .cache = a->dst_cache };
	if (a->target_existing)
		opts.format = a->create.format;
	const char *path = a->target_existing ? a->dst : tmp_path;
	char err[256];
	int ret = vdisk_open(path, &opts, dst, err, sizeof(err));
	if (ret < 0)
		return cli_fail("convert", a->dst, ret, "cannot open: %s", err);
	if (a->target_existing ? vdisk_size(*dst) < vdisk_size(src)
			       : vdisk_size(*dst) != vdisk_size(src)) {
		cli_fail("convert", a->dst, -EINVAL,
			 "its virtual size (%" PRIu64 " bytes) cannot hold the source's (%" PRIu64
			 " bytes)%s",
			 vdisk_size(*dst), vdisk_size(src),
			 a->target_existing ? "; resize it first" : "");
		vdisk_close(*dst);
		return CLI_EXIT_FAIL;
	}
	return 0;
}

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int report(const struct convert_args *a, struct vdisk *src, const char *dst_format,
		  const struct vdisk_copy_stats *st, double seconds)
{
	uint64_t size = vdisk_size(src);
	double mbps = seconds > 0 ? (double)size / seconds / 1e6 : 0;
	if (a->json)
		return cli_print_json(json_pack(
			"{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:f, s:f}", "source", a->src,
			"source_format", vdisk_format_name(src), "target", a->dst, "target_format",
			dst_format, "virtual_size", (json_int_t)size, "bytes_read",
			(json_int_t)st->bytes_read, "bytes_written", (json_int_t)st->bytes_written,
			"bytes_zeroed", (json_int_t)st->bytes_zeroed, "seconds", seconds,
			"mb_per_s", mbps));
	char human[32], written[32];
	size_format(size, human, sizeof(human));
	size_format(st->bytes_written, written, sizeof(written));
	printf("converted %s (%s, %s) to %s (%s): %s written in %.2f s, %.0f MB/s\n", a->src,
	       vdisk_format_name(src), human, a->dst, dst_format, written, seconds, mbps);
	return CLI_EXIT_OK;
}

/* Copies src into the target; returns the exit code. */
static int convert(const struct convert_args *a, struct vdisk *src)
{
	if (in_source_chain(src, a->dst))
		return cli_fail("convert", a->dst, -EINVAL,
				"is the source or one of its parents; choose another target");
	if (!a->target_existing) {
		int ret = create_target(a, src);
		if (ret)
			return ret;
	}
	struct vdisk *dst;
	int ret = open_target(a, src, &dst);
	if (ret)
		return ret;
	const char *dst_format = vdisk_format_name(dst);
	struct progress bar;
	progress_init(&bar, "converting", a->progress);
	struct vdisk_copy_stats stats;
	struct vdisk_copy_options o = { .depth = a->depth,
					.chunk = a->chunk,
					.target_is_zero = !a->target_existing,
					.progress = progress_cb,
					.opaque = &bar,
					.stats = &stats };
	char err[512];
	double start = now_seconds();
	ret = vdisk_copy(src, dst, &o, err, sizeof(err));
	progress_finish(&bar);
	vdisk_close(dst);
	if (ret < 0)
		return cli_fail("convert", NULL, ret, "%s", err);
	if (!a->target_existing) {
		ret = publish_tmp(a->dst, a->force);
		if (ret < 0)
			return cli_fail("convert", a->dst, ret,
					"cannot put the new image in place: %s",
					ret == -EEXIST	? "it appeared while converting"
					: ret == -EBUSY ? "it is in use by another process (locked)"
							: strerror(-ret));
	}
	return report(a, src, dst_format, &stats, now_seconds() - start);
}

/* ---- the command line ---- */

/* Parses the options into a; returns -1 to go on, or the exit code. */
static int parse_args(int argc, char **argv, struct convert_args *a)
{
	static const struct option options[] = { { "format", required_argument, NULL, 'f' },
						 { "output-format", required_argument, NULL, 'O' },
						 { "type", required_argument, NULL, 't' },
						 { "block-size", required_argument, NULL, 'b' },
						 { "sparse", no_argument, NULL, 's' },
						 { "target-existing", no_argument, NULL, 'E' },
						 { "force", no_argument, NULL, 'F' },
						 { "src-cache", required_argument, NULL, 'T' },
						 { "cache", required_argument, NULL, 'c' },
						 { "depth", required_argument, NULL, 'd' },
						 { "chunk", required_argument, NULL, 'k' },
						 { "progress", no_argument, NULL, 'p' },
						 { "json", no_argument, NULL, 'j' },
						 { "help", no_argument, NULL, 'h' },
						 { 0 } };
	uint64_t value;
	bool format_given = false;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "f:O:t:b:T:ph", options, NULL)) != -1) {
		switch (c) {
		case 'f':
			a->src_format = optarg;
			break;
		case 'O':
			a->create.format = optarg;
			format_given = true;
			break;
		case 't':
			a->create.type = optarg;
			break;
		case 'b':
			if (!cli_parse_size("convert", "--block-size", optarg, &value))
				return CLI_EXIT_USAGE;
			if (value > UINT32_MAX)
				return cli_usage_error("convert", "--block-size '%s' is too large",
						       optarg);
			a->create.block_size = (uint32_t)value;
			break;
		case 's':
			a->create.sparse = true;
			break;
		case 'E':
			a->target_existing = true;
			break;
		case 'F':
			a->force = true;
			break;
		case 'T':
			if (!cli_parse_cache("convert", optarg, &a->src_cache))
				return CLI_EXIT_USAGE;
			break;
		case 'c':
			if (!cli_parse_cache("convert", optarg, &a->dst_cache))
				return CLI_EXIT_USAGE;
			break;
		case 'd':
			if (!cli_parse_uint("convert", "--depth", optarg, 1, 1024, &a->depth))
				return CLI_EXIT_USAGE;
			break;
		case 'k':
			if (!cli_parse_size("convert", "--chunk", optarg, &value))
				return CLI_EXIT_USAGE;
			if (value == 0 || value % 4096 || value > (64u << 20))
				return cli_usage_error(
					"convert",
					"--chunk '%s' must be a multiple of 4 KiB up to 64 MiB",
					optarg);
			a->chunk = (uint32_t)value;
			break;
		case 'p':
			a->progress = true;
			break;
		case 'j':
			a->json = true;
			break;
		case 'h':
			convert_help(stdout);
			return CLI_EXIT_OK;
		default:
			return cli_bad_option("convert", argv);
		}
	}
	if (argc - optind < 2)
		return cli_usage_error("convert", "missing SRC or DST");
	if (argc - optind > 2)
		return cli_usage_error("convert", "unexpected argument '%s'", argv[optind + 2]);
	a->src = argv[optind];
	a->dst = argv[optind + 1];
	if (a->target_existing && a->force)
		return cli_usage_error("convert",
				       "--force and --target-existing exclude each other");
	if (a->target_existing && (a->create.type || a->create.block_size || a->create.sparse))
		return cli_usage_error(
			"convert", "--type, --block-size and --sparse describe a new image, not an "
				   "existing one");
	if (a->target_existing && !format_given)
		a->create.format = NULL; /* probe the existing image */
	return -1;
}

static int convert_run(int argc, char **argv)
{
	struct convert_args a = { .create = { .format = "raw" },
				  .src_cache = VDISK_CACHE_WRITEBACK,
				  .dst_cache = VDISK_CACHE_DIRECT };
	int ret = parse_args(argc, argv, &a);
	if (ret >= 0)
		return ret;
	struct stat st;
	if (!a.target_existing && !a.force && stat(a.dst, &st) == 0)
		return cli_fail("convert", a.dst, -EEXIST,
				"exists; pass --force to replace it, or --target-existing to write "
				"into it");
	struct vdisk_options opts = { .read_only = true,
				      .cache = a.src_cache,
				      .format = a.src_format };
	struct vdisk *src;
	ret = cli_open("convert", a.src, &opts, &src);
	if (ret)
		return ret;
	ret = convert(&a, src);
	vdisk_close(src);
	remove_tmp();
	catch_signals(false);
	return ret;
}

const struct cli_command cmd_convert = {
	.name = "convert",
	.summary = "copy an image into a new one of any format (flattening a chain)",
	.run = convert_run,
	.help = convert_help,
};
