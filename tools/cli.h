/* What every vdisk subcommand shares: exit codes, messages, opening images, JSON output. */
#ifndef HV_TOOLS_CLI_H
#define HV_TOOLS_CLI_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "vdisk.h"

/* Exit codes, the same for every subcommand (listed in `vdisk --help`). */
enum {
	CLI_EXIT_OK = 0,
	CLI_EXIT_NO = 1,    /* the answer is "no": images differ, check found problems */
	CLI_EXIT_FAIL = 2,  /* the operation failed: missing file, bad image, I/O error */
	CLI_EXIT_USAGE = 3, /* the command line is wrong */
};

struct cli_command {
	const char *name;
	const char *summary;
	int (*run)(int argc, char **argv);
	void (*help)(FILE *out);
};

extern const struct cli_command cmd_info, cmd_create, cmd_check, cmd_bench, cmd_convert,
	cmd_compare, cmd_map, cmd_resize, cmd_compact, cmd_merge, cmd_rebase, cmd_chain,
	cmd_mbr2gpt;

/* The program named in messages: "vdisk" unless the program's main sets another. */
extern const char *cli_program;

/* "vdisk: CMD: message" on stderr; returns CLI_EXIT_USAGE. Adds a pointer to --help. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The usage error for the option getopt_long just refused (argv[optind - 1]). */
int cli_bad_option(const char *cmd, char **argv);
/* 0 when exactly one operand (called name: "FILE", "CHILD") follows the options, else the
 * usage error. */
int cli_expect_one(const char *cmd, const char *name, int argc);

/* "vdisk: CMD: 'FILE': reason" and, on the next line, what to do about it (chosen from
 * err); returns CLI_EXIT_FAIL. file may be NULL. */
int cli_fail(const char *cmd, const char *file, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* A note on stderr ("vdisk: CMD: note: ..."). */
void cli_note(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Opens an image, reporting failures with cli_fail and engine fallbacks with cli_note.
 * Returns 0 or the exit code to return. */
int cli_open(const char *cmd, const char *path, const struct vdisk_options *opts,
	     struct vdisk **out);

/* Parsers for option values; on bad input they print a usage error and return false. */
bool cli_parse_size(const char *cmd, const char *option, const char *text, uint64_t *out);
bool cli_parse_uint(const char *cmd, const char *option, const char *text, unsigned min,
		    unsigned max, unsigned *out);
bool cli_parse_engine(const char *cmd, const char *text, enum vdisk_engine_kind *out);
bool cli_parse_cache(const char *cmd, const char *text, enum vdisk_cache_mode *out);

/* Prints a JSON value (pretty, with a newline) on stdout and releases it. */
int cli_print_json(json_t *value);

#endif
