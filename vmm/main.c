/* vmm: runs a virtual machine (`vmm run`) and controls a running one (`vmm ctl`). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "control.h"
#include "run_args.h"
#include "vhd.h"
#include "vhdx.h"

#define CTL_DEFAULT_TIMEOUT 10 /* seconds */
#define CTL_MAX_TIMEOUT	    3600

static void usage(FILE *out)
{
	fprintf(out, "Usage: vmm COMMAND [OPTIONS] ...\n"
		     "\n"
		     "Runs virtual machines on KVM and controls running ones.\n"
		     "\n"
		     "Commands:\n"
		     "  run   run a virtual machine until it powers off\n"
		     "  ctl   send one request to a running VM's control socket\n"
		     "\n"
		     "'vmm COMMAND --help' describes a command and its exit statuses.\n");
}

static int failure(const char *cmd, const char *message)
{
	return cli_fail(cmd, NULL, 0, "%s", message);
}

/* ---- vmm run ---- */

/* What the parser accepts but this VMM cannot run yet. */
static int refuse_unavailable(const struct vmm_run_config *cfg)
{
	for (unsigned i = 0; i < cfg->ndrives; i++) {
		const struct vmm_drive *d = &cfg->drives[i];
		if (d->loc.bus != VMM_BUS_SCSI || d->kind != VMM_DRIVE_DVD || d->path)
			continue;
		char loc[VMM_LOCATION_TEXT_MAX], msg[160];
		vmm_location_format(&d->loc, loc, sizeof(loc));
		snprintf(msg, sizeof(msg),
			 "--dvd %s: a SCSI DVD drive needs its image (%s=FILE.iso); an empty "
			 "drive is available on IDE (ide:C:L)",
			 loc, loc);
		return failure("run", msg);
	}
	return CLI_EXIT_OK;
}

static int cmd_run(int argc, char **argv)
{
	struct vmm_host_limits host;
	struct vmm_run_config cfg;
	char err[512];
	vmm_host_limits_probe(&host);
	int ret = vmm_run_args_parse(argc, argv, &host, &cfg, err, sizeof(err));
	int status;
	if (ret == -EINVAL)
		status = cli_usage_error("run", "%s", err);
	else if (ret < 0)
		status = failure("run", strerror(-ret));
	else if (cfg.help)
		status = fputs(vmm_run_help(), stdout) < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
	else if (vmm_run_config_check_files(&cfg, err, sizeof(err)) < 0)
		status = failure("run", err);
	else if ((status = refuse_unavailable(&cfg)) == CLI_EXIT_OK)
		status = vmm_run(&cfg);
	vmm_run_config_free(&cfg);
	return status;
}

/* ---- vmm ctl ---- */

static void ctl_help(FILE *out)
{
	fprintf(out, "Usage: vmm ctl [--json] [--timeout SECONDS] SOCK COMMAND [KEY=VALUE...]\n"
		     "\n"
		     "Sends one request to the control socket SOCK of a VM started with\n"
		     "'vmm run --control SOCK' and prints the reply.\n"
		     "\n"
		     "Commands:\n");
	const struct control_command *cmd;
	for (unsigned i = 0; (cmd = control_command_at(i)); i++) {
		fprintf(out, "  %-13s %s\n", cmd->name, cmd->summary);
		for (unsigned a = 0; a < CONTROL_MAX_ARGS && cmd->args[a].name; a++)
			fprintf(out, "      %s=VALUE%s  %s\n", cmd->args[a].name,
				cmd->args[a].required ? "" : " (optional)", cmd->args[a].help);
	}
	fprintf(out,
		"\n"
		"Options:\n"
		"  --json               print the reply as the JSON line the VMM sent\n"
		"  --timeout SECONDS    how long to wait for the reply (default %d)\n"
		"\n"
		"Exit statuses:\n"
		"  0  the command succeeded\n"
		"  1  the VM answered with an error\n"
		"  2  no answer: no socket at SOCK, nobody listening, or no reply in time\n"
		"  3  the command line is wrong\n"
		"\n"
		"Examples:\n"
		"  vmm ctl /run/vm1.sock query-status\n"
		"  vmm ctl /run/vm1.sock query-block location=ide:0:0\n"
		"  vmm ctl --json /run/vm1.sock powerdown\n",
		CTL_DEFAULT_TIMEOUT);
}

struct ctl_options {
	bool json;
	unsigned timeout; /* seconds */
};

/* Parses the options before SOCK; returns the index of SOCK, or -exit status. */
static int parse_ctl_options(int argc, char **argv, struct ctl_options *opts)
{
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *arg = argv[i];
		if (!strcmp(arg, "--json")) {
			opts->json = true;
		} else if (!strncmp(arg, "--timeout", 9) && (!arg[9] || arg[9] == '=')) {
			const char *value = arg[9] ? arg + 10 : i + 1 < argc ? argv[++i] : NULL;
			if (!value)
				return -cli_usage_error("ctl", "--timeout needs a value (SECONDS)");
			if (!cli_parse_uint("ctl", "--timeout", value, 1, CTL_MAX_TIMEOUT,
					    &opts->timeout))
				return -CLI_EXIT_USAGE;
		} else {
			return -cli_usage_error("ctl", "unknown option '%s'", arg);
		}
	}
	if (argc - i < 2)
		return -cli_usage_error("ctl", "%s",
					i == argc ? "missing SOCK and COMMAND"
						  : "missing COMMAND after SOCK");
	return i;
}

static int print_reply(json_t *reply, bool json, const char *command)
{
	json_t *error = json_object_get(reply, "error");
	if (json) {
		char *text = json_dumps(reply, JSON_COMPACT | JSON_PRESERVE_ORDER);
		if (!text)
			return failure("ctl", "out of memory");
		puts(text);
		free(text);
	} else if (error) {
		fprintf(stderr, "vmm: ctl: %s: %s (%s)\n", command,
			json_string_value(json_object_get(error, "desc")),
			json_string_value(json_object_get(error, "class")));
	} else {
		char *text = control_format_text(json_object_get(reply, "return"));
		if (!text)
			return failure("ctl", "out of memory");
		fputs(text, stdout);
		free(text);
	}
	return error ? CLI_EXIT_NO : CLI_EXIT_OK;
}

static int cmd_ctl(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			ctl_help(stdout);
			return CLI_EXIT_OK;
		}
	}
	struct ctl_options opts = { .timeout = CTL_DEFAULT_TIMEOUT };
	int first = parse_ctl_options(argc, argv, &opts);
	if (first < 0)
		return -first;
	const char *sock = argv[first], *command = argv[first + 1];
	char err[512];
	json_t *request, *reply;
	int ret = control_request_build(command, argc - first - 2, argv + first + 2, &request, err,
					sizeof(err));
	if (ret == -EINVAL)
		return cli_usage_error("ctl", "%s", err);
	if (ret < 0)
		return failure("ctl", err);
	ret = control_client_call(sock, request, (int)opts.timeout * 1000, &reply, err,
				  sizeof(err));
	json_decref(request);
	if (ret < 0)
		return failure("ctl", err);
	int status = print_reply(reply, opts.json, command);
	json_decref(reply);
	return status;
}

int main(int argc, char **argv)
{
	cli_program = "vmm";
	vhd_register();
	vhdx_register();
	if (argc < 2) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	const char *name = argv[1];
	if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
		usage(stdout);
		return CLI_EXIT_OK;
	}
	if (!strcmp(name, "run"))
		return cmd_run(argc - 2, argv + 2);
	if (!strcmp(name, "ctl"))
		return cmd_ctl(argc - 1, argv + 1);
	fprintf(stderr, "vmm: unknown command '%s'\nTry 'vmm --help'.\n", name);
	return CLI_EXIT_USAGE;
}
