#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "size.h"

const char *cli_program = "vdisk";

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: %s: ", cli_program, cmd);
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\nTry '%s %s --help'.\n", cli_program, cmd);
	va_end(ap);
	return CLI_EXIT_USAGE;
}

int cli_bad_option(const char *cmd, char **argv)
{
	return cli_usage_error(cmd, "unknown or incomplete option '%s'", argv[optind - 1]);
}

int cli_expect_one(const char *cmd, const char *name, int argc)
{
	if (optind == argc - 1)
		return 0;
	if (optind >= argc)
		return cli_usage_error(cmd, "missing %s", name);
	return cli_usage_error(cmd, "expected one %s, got %d", name, argc - optind);
}

static const char *hint_for(int err)
{
	switch (err) {
	case ENOENT:
		return "check the path (create an image with 'vdisk create')";
	case EISDIR:
		return "name the image file, not its directory";
	case EACCES:
	case EPERM:
		return "check the file's permissions, or open it read-only";
	case EROFS:
		return "the image or file system is read-only; open it read-only";
	case EBUSY:
		return "stop the VM or tool that has the image open, then try again";
	case ENOSPC:
		return "free space on the file system that holds the image";
	case EEXIST:
		return "choose another name, or pass --force to replace the file";
	case EINVAL:
	case EFBIG:
	case ERANGE:
		return NULL;
	default:
		return NULL;
	}
}

int cli_fail(const char *cmd, const char *file, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: %s: ", cli_program, cmd);
	if (file)
		fprintf(stderr, "'%s': ", file);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	const char *hint = hint_for(err < 0 ? -err : err);
	if (hint)
		fprintf(stderr, "%s: %s: hint: %s\n", cli_program, cmd, hint);
	return CLI_EXIT_FAIL;
}

void cli_note(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: %s: note: ", cli_program, cmd);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

int cli_open(const char *cmd, const char *path, const struct vdisk_options *opts,
	     struct vdisk **out)
{
	char err[256];
	int ret = vdisk_open(path, opts, out, err, sizeof(err));
	if (ret < 0)
		return cli_fail(cmd, path, ret, "cannot open: %s", err);
	const char *why = vdisk_engine_fallback_reason(*out);
	if (why)
		cli_note(cmd, "%s", why);
	return 0;
}

bool cli_parse_size(const char *cmd, const char *option, const char *text, uint64_t *out)
{
	int ret = size_parse(text, out);
	if (ret == -ERANGE)
		cli_usage_error(cmd, "%s '%s' is too large (at most 16 EiB - 1)", option, text);
	else if (ret < 0)
		cli_usage_error(cmd, "%s '%s' is not a size (examples: 512, 4k, 10G, 1.5T)", option,
				text);
	return ret == 0;
}

bool cli_parse_uint(const char *cmd, const char *option, const char *text, unsigned min,
		    unsigned max, unsigned *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(text, &end, 10);
	if (!*text || *end || errno || text[0] == '-' || v < min || v > max) {
		cli_usage_error(cmd, "%s '%s' must be a whole number from %u to %u", option, text,
				min, max);
		return false;
	}
	*out = (unsigned)v;
	return true;
}

bool cli_parse_engine(const char *cmd, const char *text, enum vdisk_engine_kind *out)
{
	static const struct {
		const char *name;
		enum vdisk_engine_kind kind;
	} engines[] = { { "auto", VDISK_ENGINE_AUTO },
			{ "io_uring", VDISK_ENGINE_URING },
			{ "libaio", VDISK_ENGINE_AIO },
			{ "sync", VDISK_ENGINE_SYNC } };
	for (unsigned i = 0; i < sizeof(engines) / sizeof(engines[0]); i++) {
		if (!strcmp(text, engines[i].name)) {
			*out = engines[i].kind;
			return true;
		}
	}
	cli_usage_error(cmd, "unknown engine '%s' (auto, io_uring, libaio, sync)", text);
	return false;
}

bool cli_parse_cache(const char *cmd, const char *text, enum vdisk_cache_mode *out)
{
	if (!strcmp(text, "direct") || !strcmp(text, "none"))
		*out = VDISK_CACHE_DIRECT;
	else if (!strcmp(text, "writeback"))
		*out = VDISK_CACHE_WRITEBACK;
	else {
		cli_usage_error(cmd, "unknown cache mode '%s' (direct, writeback)", text);
		return false;
	}
	return true;
}

int cli_print_json(json_t *value)
{
	if (!value) {
		fprintf(stderr, "%s: out of memory\n", cli_program);
		return CLI_EXIT_FAIL;
	}
	int ret = json_dumpf(value, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	fputc('\n', stdout);
	json_decref(value);
	return ret == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}
