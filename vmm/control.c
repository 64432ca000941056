/* The control socket server: the command registry, request handling, and one poll loop
 * thread serving every client. */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "errmsg.h"
#include "json_util.h"
#include "run_args.h"

/* ---- query-block objects ---- */

int control_block_append(json_t *drives, const struct control_block_info *info)
{
	int ret = 0;
	json_t *stats = json_object(), *d = json_object();
	if (!stats || !d) {
		json_decref(stats);
		json_decref(d);
		return -ENOMEM;
	}
	vdisk_json_set(stats, "rd_bytes", vdisk_json_u64(info->rd_bytes), &ret);
	vdisk_json_set(stats, "wr_bytes", vdisk_json_u64(info->wr_bytes), &ret);
	vdisk_json_set(stats, "rd_operations", vdisk_json_u64(info->rd_operations), &ret);
	vdisk_json_set(stats, "wr_operations", vdisk_json_u64(info->wr_operations), &ret);
	vdisk_json_set(stats, "flush_operations", vdisk_json_u64(info->flush_operations), &ret);
	vdisk_json_set(d, "location", json_string(info->location), &ret);
	vdisk_json_set(d, "kind", json_string(info->dvd ? "dvd" : "disk"), &ret);
	vdisk_json_set(d, "format", info->format ? json_string(info->format) : json_null(), &ret);
	vdisk_json_set(d, "file", info->file ? json_string(info->file) : json_null(), &ret);
	vdisk_json_set(d, "size", vdisk_json_u64(info->size), &ret);
	vdisk_json_set(d, "read_only", json_boolean(info->read_only), &ret);
	vdisk_json_set(d, "inserted", json_boolean(info->inserted), &ret);
	vdisk_json_set(d, "stats", stats, &ret);
	vdisk_json_append(drives, d, &ret);
	return ret;
}

/* ---- commands ---- */

static int failed(const char **err_class, const char *class, int ret)
{
	*err_class = class;
	return ret;
}

/* The error of an op: its own text, or strerror when it left none. */
static int op_failed(int ret, const char **err_class, char *err, size_t err_size)
{
	if (!err[0])
		snprintf(err, err_size, "%s", strerror(ret < 0 ? -ret : EIO));
	return failed(err_class, CONTROL_ERR_FAILED, ret < 0 ? ret : -EIO);
}

static int unsupported(const char *what, const char **err_class, char *err, size_t err_size)
{
	snprintf(err, err_size, "this VMM cannot %s", what);
	return failed(err_class, CONTROL_ERR_FAILED, -ENOTSUP);
}

static const char *const run_state_names[] = {
	[CONTROL_RUNNING] = "running",
	[CONTROL_PAUSED] = "paused",
	[CONTROL_SHUTTING_DOWN] = "shutting-down",
};

static int run_query_status(const struct control_ops *ops, void *opaque, json_t *args, json_t **ret,
			    const char **err_class, char *err, size_t err_size)
{
	(void)args;
	if (!ops->query_status)
		return unsupported("report its status", err_class, err, err_size);
	enum control_run_state state = CONTROL_RUNNING;
	int r = ops->query_status(opaque, &state, err, err_size);
	if (r < 0)
		return op_failed(r, err_class, err, err_size);
	if ((unsigned)state >= sizeof(run_state_names) / sizeof(run_state_names[0])) {
		snprintf(err, err_size, "unknown run state %d", (int)state);
		return failed(err_class, CONTROL_ERR_FAILED, -EIO);
	}
	*ret = json_pack("{s:s, s:b}", "status", run_state_names[state], "running",
			 state == CONTROL_RUNNING);
	return *ret ? 0 : -ENOMEM;
}

/* Keeps only the drive at location in drives (an array of query-block objects). */
static int select_location(json_t *drives, const char *location, const char **err_class, char *err,
			   size_t err_size)
{
	size_t i;
	json_t *d;
	json_array_foreach (drives, i, d) {
		const char *loc = json_string_value(json_object_get(d, "location"));
		if (!loc || strcmp(loc, location))
			continue;
		json_incref(d);
		json_array_clear(drives);
		return json_array_append_new(drives, d) ? -ENOMEM : 0;
	}
	snprintf(err, err_size, "no drive at location '%s'", location);
	return failed(err_class, CONTROL_ERR_DEVICE_NOT_FOUND, -ENODEV);
}

static int run_query_block(const struct control_ops *ops, void *opaque, json_t *args, json_t **ret,
			   const char **err_class, char *err, size_t err_size)
{
	if (!ops->query_block)
		return unsupported("list its drives", err_class, err, err_size);
	json_t *drives = json_array();
	if (!drives)
		return -ENOMEM;
	int r = ops->query_block(opaque, drives, err, err_size);
	if (r < 0) {
		r = op_failed(r, err_class, err, err_size);
		goto fail;
	}
	const char *location = json_string_value(json_object_get(args, "location"));
	if (location) {
		r = select_location(drives, location, err_class, err, err_size);
		if (r < 0)
			goto fail;
	}
	*ret = drives;
	return 0;
fail:
	json_decref(drives);
	return r;
}

/* The commands that only ask the VMM to do something and return {}. */
static int run_action(int (*op)(void *, char *, size_t), const char *what, void *opaque,
		      json_t **ret, const char **err_class, char *err, size_t err_size)
{
	if (!op)
		return unsupported(what, err_class, err, err_size);
	int r = op(opaque, err, err_size);
	if (r < 0)
		return op_failed(r, err_class, err, err_size);
	*ret = json_object();
	return *ret ? 0 : -ENOMEM;
}

static int run_query_stats(const struct control_ops *ops, void *opaque, json_t *args, json_t **ret,
			   const char **err_class, char *err, size_t err_size)
{
	(void)args;
	if (!ops->query_stats)
		return unsupported("count its exits", err_class, err, err_size);
	int r = ops->query_stats(opaque, ret, err, err_size);
	return r < 0 ? op_failed(r, err_class, err, err_size) : 0;
}

static int run_pause(const struct control_ops *ops, void *opaque, json_t *args, json_t **ret,
		     const char **err_class, char *err, size_t err_size)
{
	(void)args;
	return run_action(ops->pause, "pause", opaque, ret, err_class, err, err_size);
}

static int run_resume(const struct control_ops *ops, void *opaque, json_t *args, json_t **ret,
		      const char **err_class, char *err, size_t err_size)
{
	(void)args;
	return run_action(ops->resume, "resume", opaque, ret, err_class, err, err_size);
}

static int run_powerdown(const struct control_ops *ops, void *opaque, json_t *args, json_t **ret,
			 const char **err_class, char *err, size_t err_size)
{
	(void)args;
	return run_action(ops->powerdown, "press the power button", opaque, ret, err_class, err,
			  err_size);
}

static int run_quit(const struct control_ops *ops, void *opaque, json_t *args, json_t **ret,
		    const char **err_class, char *err, size_t err_size)
{
	(void)args;
	return run_action(ops->quit, "quit", opaque, ret, err_class, err, err_size);
}

/* ---- SCSI drives ---- */

/* An integer argument in [min, max], or -EINVAL with an InvalidArgument error. */
static int integer_in(json_t *args, const char *name, json_int_t min, json_int_t max,
		      json_int_t *out, const char **err_class, char *err, size_t err_size)
{
	json_int_t v = json_integer_value(json_object_get(args, name));
	if (v < min || v > max) {
		snprintf(err, err_size, "'%s' must be %lld to %lld", name, (long long)min,
			 (long long)max);
		return failed(err_class, CONTROL_ERR_INVALID_ARGUMENT, -EINVAL);
	}
	*out = v;
	return 0;
}

/* The controller and lun arguments, in range. */
static int scsi_location(json_t *args, unsigned *controller, unsigned *lun, const char **err_class,
			 char *err, size_t err_size)
{
	json_int_t c, l;
	int r = integer_in(args, "controller", 0, VMM_SCSI_CONTROLLERS - 1, &c, err_class, err,
			   err_size);
	if (!r)
		r = integer_in(args, "lun", 0, VMM_SCSI_LOCATIONS - 1, &l, err_class, err,
			       err_size);
	if (r)
		return r;
	*controller = (unsigned)c;
	*lun = (unsigned)l;
	return 0;
}

/* The end of a SCSI command: {} or the op's error, DeviceNotFound for -ENODEV. */
static int scsi_done(int r, json_t **ret, const char **err_class, char *err, size_t err_size)
{
	if (r < 0) {
		r = op_failed(r, err_class, err, err_size);
		return r == -ENODEV ? failed(err_class, CONTROL_ERR_DEVICE_NOT_FOUND, r) : r;
	}
	*ret = json_object();
	return *ret ? 0 : -ENOMEM;
}

static int run_scsi_add(const struct control_ops *ops, void *opaque, json_t *args, json_t **ret,
			const char **err_class, char *err, size_t err_size)
{
	if (!ops->scsi_add)
		return unsupported("attach SCSI disks", err_class, err, err_size);
	unsigned controller, lun;
	int r = scsi_location(args, &controller, &lun, err_class, err, err_size);
	if (r)
		return r;
	/* (a string with \u0000 never gets here: requests are parsed without JSON_ALLOW_NUL) */
	const char *path = json_string_value(json_object_get(args, "file"));
	if (!path[0]) {
		snprintf(err, err_size, "'file' must be a path, not empty");
		return failed(err_class, CONTROL_ERR_INVALID_ARGUMENT, -EINVAL);
	}
	bool read_only = json_is_true(json_object_get(args, "read-only"));
	r = ops->scsi_add(opaque, controller, lun, path, read_only, err, err_size);
	return scsi_done(r, ret, err_class, err, err_size);
}

static int run_scsi_remove(const struct control_ops *ops, void *opaque, json_t *args, json_t **ret,
			   const char **err_class, char *err, size_t err_size)
{
	if (!ops->scsi_remove)
		return unsupported("remove SCSI disks", err_class, err, err_size);
	unsigned controller, lun;
	int r = scsi_location(args, &controller, &lun, err_class, err, err_size);
	if (r)
		return r;
	r = ops->scsi_remove(opaque, controller, lun, err, err_size);
	return scsi_done(r, ret, err_class, err, err_size);
}

static int run_block_resize(const struct control_ops *ops, void *opaque, json_t *args, json_t **ret,
			    const char **err_class, char *err, size_t err_size)
{
	if (!ops->block_resize)
		return unsupported("resize disks", err_class, err, err_size);
	unsigned controller, lun;
	json_int_t size;
	int r = scsi_location(args, &controller, &lun, err_class, err, err_size);
	if (!r)
		r = integer_in(args, "size", 1, INT64_MAX, &size, err_class, err, err_size);
	if (r)
		return r;
	r = ops->block_resize(opaque, controller, lun, (uint64_t)size, err, err_size);
	return scsi_done(r, ret, err_class, err, err_size);
}

static const struct control_command commands[] = {
	{ "query-status",
	  "whether the VM runs: status (running, paused, shutting-down)",
	  {},
	  run_query_status },
	{ "query-block",
	  "the drives: location, kind, format, file, size, read_only, inserted, I/O counters",
	  { { "location", CONTROL_ARG_STRING, false,
	      "only the drive at this location (ide:0:0)" } },
	  run_query_block },
	{ "query-stats",
	  "the VM's counters: exits (io_exits, mmio_exits), resets, and each drive's I/O, as "
	  "--stats prints them at the end",
	  {},
	  run_query_stats },
	{ "pause", "stop the virtual processors (the VM keeps its state)", {}, run_pause },
	{ "resume", "let paused virtual processors run again", {}, run_resume },
	{ "powerdown", "press the ACPI power button: the guest shuts down", {}, run_powerdown },
	{ "quit", "stop the VM at once, without the guest shutting down", {}, run_quit },
	{ "scsi-add",
	  "attach a disk image to a SCSI controller while the VM runs; the guest rescans",
	  { { "controller", CONTROL_ARG_INTEGER, true,
	      "the SCSI controller (0 to 3), which the VM must have" },
	    { "lun", CONTROL_ARG_INTEGER, true, "a free LUN on it (0 to 63)" },
	    { "file", CONTROL_ARG_STRING, true,
	      "a raw, VHD or VHDX image, opened as --disk opens one (locked, cache=direct)" },
	    { "read-only", CONTROL_ARG_BOOLEAN, false, "attach it read-only" } },
	  run_scsi_add },
	{ "scsi-remove",
	  "detach a SCSI disk once its requests in flight completed; flush and close it",
	  { { "controller", CONTROL_ARG_INTEGER, true, "the SCSI controller (0 to 3)" },
	    { "lun", CONTROL_ARG_INTEGER, true, "the disk's LUN (0 to 63)" } },
	  run_scsi_remove },
	{ "block-resize",
	  "grow a SCSI disk while the VM runs; the guest sees the new capacity",
	  { { "controller", CONTROL_ARG_INTEGER, true, "the SCSI controller (0 to 3)" },
	    { "lun", CONTROL_ARG_INTEGER, true, "the disk's LUN (0 to 63)" },
	    { "size", CONTROL_ARG_INTEGER, true,
	      "the new size in bytes, a multiple of the sector size; smaller is refused" } },
	  run_block_resize },
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

const struct control_command *control_command_at(unsigned index)
{
	return index < NCOMMANDS ? &commands[index] : NULL;
}

const struct control_command *control_command_find(const char *name)
{
	for (unsigned i = 0; i < NCOMMANDS; i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

static const char *arg_type_name(enum control_arg_type type)
{
	switch (type) {
	case CONTROL_ARG_STRING:
		return "a string";
	case CONTROL_ARG_INTEGER:
		return "an integer";
	case CONTROL_ARG_BOOLEAN:
		return "true or false";
	}
	return "?";
}

static bool has_type(json_t *value, enum control_arg_type type)
{
	switch (type) {
	case CONTROL_ARG_STRING:
		return json_is_string(value);
	case CONTROL_ARG_INTEGER:
		return json_is_integer(value);
	case CONTROL_ARG_BOOLEAN:
		return json_is_boolean(value);
	}
	return false;
}

const struct control_arg *control_command_arg(const struct control_command *cmd, const char *name)
{
	for (unsigned i = 0; i < CONTROL_MAX_ARGS && cmd->args[i].name; i++)
		if (!strcmp(cmd->args[i].name, name))
			return &cmd->args[i];
	return NULL;
}

int control_check_arguments(const struct control_command *cmd, json_t *args, char *err,
			    size_t err_size)
{
	const char *key;
	json_t *value;
	json_object_foreach (args, key, value) {
		const struct control_arg *arg = control_command_arg(cmd, key);
		if (!arg) {
			snprintf(err, err_size, "%s takes no argument '%s'", cmd->name, key);
			return -EINVAL;
		}
		if (!has_type(value, arg->type)) {
			snprintf(err, err_size, "%s: argument '%s' must be %s", cmd->name, key,
				 arg_type_name(arg->type));
			return -EINVAL;
		}
	}
	for (unsigned i = 0; i < CONTROL_MAX_ARGS && cmd->args[i].name; i++) {
		if (cmd->args[i].required && !json_object_get(args, cmd->args[i].name)) {
			snprintf(err, err_size, "%s needs the argument '%s'", cmd->name,
				 cmd->args[i].name);
			return -EINVAL;
		}
	}
	return 0;
}

/* ---- requests and replies ---- */

/* A JSON string of text; bytes that are not printable ASCII become '?' when text is not
 * valid UTF-8 (a parser's message may quote the hostile bytes it met). */
static json_t *safe_string(const char *text)
{
	json_t *s = json_string(text);
	if (s)
		return s;
	char clean[512];
	size_t i;
	for (i = 0; text[i] && i < sizeof(clean) - 1; i++)
		clean[i] = text[i] >= 0x20 && text[i] < 0x7f ? text[i] : '?';
	clean[i] = 0;
	return json_string(clean);
}

/* {"id": id, key: value}, taking value; id may be NULL. */
static json_t *reply_with(json_t *id, const char *key, json_t *value)
{
	json_t *reply = json_object();
	int ret = 0;
	if (!reply || !value) {
		json_decref(reply);
		json_decref(value);
		return NULL;
	}
	if (id)
		vdisk_json_set(reply, "id", json_incref(id), &ret);
	vdisk_json_set(reply, key, value, &ret);
	if (ret < 0) {
		json_decref(reply);
		return NULL;
	}
	return reply;
}

/* {"id": id, "error": {"class": class, "desc": desc}}; id may be NULL. */
static json_t *error_reply(json_t *id, const char *class, const char *desc)
{
	return reply_with(id, "error",
			  json_pack("{s:s, s:o}", "class", class, "desc", safe_string(desc)));
}

/* Checks the request's shape; returns the command or NULL with class and desc set. */
static const struct control_command *parse_request(json_t *req, json_t **args, const char **class,
						   char *desc, size_t desc_size)
{
	const char *key;
	json_t *value;
	*class = CONTROL_ERR_BAD_REQUEST;
	json_object_foreach (req, key, value) {
		if (strcmp(key, "execute") && strcmp(key, "id") && strcmp(key, "arguments")) {
			snprintf(desc, desc_size,
				 "unknown member '%s' (a request has execute, id, arguments)", key);
			return NULL;
		}
	}
	const char *name = json_string_value(json_object_get(req, "execute"));
	if (!name) {
		snprintf(desc, desc_size, "a request needs \"execute\": \"COMMAND\"");
		return NULL;
	}
	*args = json_object_get(req, "arguments");
	if (*args && !json_is_object(*args)) {
		snprintf(desc, desc_size, "\"arguments\" must be an object");
		return NULL;
	}
	const struct control_command *cmd = control_command_find(name);
	if (!cmd) {
		*class = CONTROL_ERR_COMMAND_NOT_FOUND;
		snprintf(desc, desc_size, "unknown command '%s' ('vmm ctl --help' lists them)",
			 name);
		return NULL;
	}
	*class = CONTROL_ERR_INVALID_ARGUMENT;
	if (control_check_arguments(cmd, *args, desc, desc_size) < 0)
		return NULL;
	return cmd;
}

static json_t *execute(const struct control_ops *ops, void *opaque, json_t *req)
{
	char desc[512] = "";
	const char *class;
	json_t *args = NULL, *value = NULL, *id = json_object_get(req, "id");
	const struct control_command *cmd = parse_request(req, &args, &class, desc, sizeof(desc));
	if (!cmd)
		return error_reply(id, class, desc);
	class = CONTROL_ERR_FAILED;
	int ret = cmd->run(ops, opaque, args, &value, &class, desc, sizeof(desc));
	if (ret < 0) {
		if (!desc[0])
			snprintf(desc, sizeof(desc), "%s", strerror(-ret));
		return error_reply(id, class, desc);
	}
	return reply_with(id, "return", value);
}

json_t *control_handle_line(const struct control_ops *ops, void *opaque, const char *line,
			    size_t len)
{
	json_error_t jerr;
	json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	char desc[256];
	if (!req) {
		snprintf(desc, sizeof(desc), "not JSON: %s (column %d)", jerr.text, jerr.column);
		return error_reply(NULL, CONTROL_ERR_BAD_REQUEST, desc);
	}
	json_t *reply;
	if (json_is_object(req))
		reply = execute(ops, opaque, req);
	else
		reply = error_reply(NULL, CONTROL_ERR_BAD_REQUEST,
				    "a request is a JSON object: {\"execute\": \"COMMAND\"}");
	json_decref(req);
	return reply;
}

/* ---- the server ---- */

#define IN_SIZE (CONTROL_MAX_LINE + 1) /* a longest line and its newline */
/* A client that does not read its replies is not read from while more than this waits. */
#define OUT_PAUSE (256 * 1024)

struct client {
	int fd; /* -1: a free slot */
	char *in;
	size_t in_start, in_len; /* unhandled input is in[in_start, in_len) */
	bool skipping;		 /* dropping the rest of a line that was too long */
	bool eof;		 /* the client sent all it will; close once replies are out */
	char *out;
	size_t out_len, out_cap;
};

struct control_server {
	int listen_fd, wake_fd;
	pthread_t thread;
	const struct control_ops *ops;
	void *opaque;
	struct client clients[CONTROL_MAX_CLIENTS];
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dev_t dev; /* the socket file this server made, removed only if still there */
	ino_t ino;
};

static void client_close(struct client *c)
{
	close(c->fd);
	free(c->in);
	free(c->out);
	*c = (struct client){ .fd = -1 };
}

/* Sends what the socket takes now; false when the client is gone. */
static bool client_flush(struct client *c)
{
	while (c->out_len) {
		ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR;
		memmove(c->out, c->out + n, c->out_len - (size_t)n);
		c->out_len -= (size_t)n;
	}
	return true;
}

/* Appends the reply (released) and a newline to the client's output; false when out of
 * memory. */
static bool client_queue(struct client *c, json_t *reply)
{
	char *text = reply ? json_dumps(reply, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(reply);
	if (!text)
		return false;
	size_t len = strlen(text);
	if (c->out_len + len + 1 > c->out_cap) {
		size_t cap = (c->out_len + len + 1) * 2;
		char *out = realloc(c->out, cap);
		if (!out) {
			free(text);
			return false;
		}
		c->out = out;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, text, len);
	c->out[c->out_len + len] = '\n';
	c->out_len += len + 1;
	free(text);
	return true;
}

/* Handles one line (its newline excluded): blank lines are ignored, a CR before the
 * newline is dropped. */
static bool handle_line(struct control_server *srv, struct client *c, char *line, size_t len)
{
	if (len && line[len - 1] == '\r')
		len--;
	size_t blank = 0;
	while (blank < len && (line[blank] == ' ' || line[blank] == '\t'))
		blank++;
	if (blank == len)
		return true;
	return client_queue(c, control_handle_line(srv->ops, srv->opaque, line, len)) &&
	       client_flush(c);
}

static bool queue_too_long(struct client *c)
{
	char desc[128];
	snprintf(desc, sizeof(desc), "request line longer than %d bytes; it was dropped",
		 CONTROL_MAX_LINE);
	return client_queue(c, error_reply(NULL, CONTROL_ERR_BAD_REQUEST, desc)) && client_flush(c);
}

/* Handles the complete lines received while the client keeps up with its replies; false
 * when the client must be dropped. */
static bool client_process(struct control_server *srv, struct client *c)
{
	while (c->out_len <= OUT_PAUSE) {
		char *start = c->in + c->in_start;
		size_t avail = c->in_len - c->in_start;
		char *nl = memchr(start, '\n', avail);
		if (!nl)
			break;
		size_t len = (size_t)(nl - start);
		c->in_start += len + 1;
		if (c->skipping)
			c->skipping = false; /* the end of a line that was too long */
		else if (!handle_line(srv, c, start, len))
			return false;
	}
	memmove(c->in, c->in + c->in_start, c->in_len - c->in_start);
	c->in_len -= c->in_start;
	c->in_start = 0;
	if (c->in_len == IN_SIZE && !memchr(c->in, '\n', c->in_len)) {
		if (!c->skipping && !queue_too_long(c))
			return false;
		c->skipping = true;
		c->in_len = 0;
	}
	return true;
}

static bool client_read(struct control_server *srv, struct client *c)
{
	if (c->in_len == IN_SIZE)
		return true; /* lines wait for their replies to drain */
	ssize_t n = recv(c->fd, c->in + c->in_len, IN_SIZE - c->in_len, MSG_DONTWAIT);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR;
	if (n == 0) {
		c->eof = true; /* an unfinished last line is dropped */
		return true;
	}
	c->in_len += (size_t)n;
	return client_process(srv, c);
}

static void accept_client(struct control_server *srv)
{
	int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		struct client *c = &srv->clients[i];
		if (c->fd >= 0)
			continue;
		c->in = malloc(IN_SIZE);
		if (!c->in)
			break;
		c->fd = fd;
		return;
	}
	char desc[96];
	snprintf(desc, sizeof(desc), "the VMM serves at most %d clients at once",
		 CONTROL_MAX_CLIENTS);
	struct client refused = { .fd = fd };
	if (client_queue(&refused, error_reply(NULL, CONTROL_ERR_TOO_MANY_CLIENTS, desc)))
		client_flush(&refused);
	client_close(&refused);
}

static short client_events(const struct client *c)
{
	short events = 0;
	if (c->out_len)
		events |= POLLOUT;
	if (!c->eof && c->out_len <= OUT_PAUSE && c->in_len < IN_SIZE)
		events |= POLLIN;
	return events;
}

/* Serves one client's poll result; false when it is to be closed. */
static bool client_serve(struct control_server *srv, struct client *c, short revents)
{
	if ((revents & POLLOUT) && !client_flush(c))
		return false;
	/* replies drained: lines held back may go on */
	if (!client_process(srv, c))
		return false;
	if (revents & POLLIN) {
		if (!client_read(srv, c))
			return false;
	} else if (revents & (POLLHUP | POLLERR)) {
		return false;
	}
	return !(c->eof && c->out_len == 0);
}

static void *server_loop(void *arg)
{
	struct control_server *srv = arg;
	struct pollfd fds[2 + CONTROL_MAX_CLIENTS];
	struct client *owner[2 + CONTROL_MAX_CLIENTS];
	for (;;) {
		nfds_t n = 0;
		fds[n++] = (struct pollfd){ .fd = srv->wake_fd, .events = POLLIN };
		fds[n++] = (struct pollfd){ .fd = srv->listen_fd, .events = POLLIN };
		for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++) {
			struct client *c = &srv->clients[i];
			if (c->fd < 0)
				continue;
			owner[n] = c;
			fds[n++] = (struct pollfd){ .fd = c->fd, .events = client_events(c) };
		}
		if (poll(fds, n, -1) < 0)
			continue; /* EINTR */
		if (fds[0].revents)
			break;
		for (nfds_t i = 2; i < n; i++)
			if (fds[i].revents && !client_serve(srv, owner[i], fds[i].revents))
				client_close(owner[i]);
		if (fds[1].revents & POLLIN)
			accept_client(srv);
	}
	return NULL;
}

/* Whether a server accepts connections on addr (a connect that is not refused). */
static bool someone_listens(const struct sockaddr_un *addr)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return true; /* cannot tell: do not replace */
	int ret = connect(fd, (const struct sockaddr *)addr, sizeof(*addr));
	bool live = ret == 0 || errno == EAGAIN;
	close(fd);
	return live;
}

/* Binds fd to addr, replacing a stale socket file of a server that is gone. */
static int bind_socket(int fd, const struct sockaddr_un *addr, char *err, size_t err_size)
{
	const char *path = addr->sun_path;
	if (bind(fd, (const struct sockaddr *)addr, sizeof(*addr)) == 0)
		return 0;
	if (errno != EADDRINUSE)
		return vdisk_errorf(err, err_size, -errno, "cannot create the socket '%s': %s",
				    path, strerror(errno));
	struct stat st;
	if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
		return vdisk_errorf(err, err_size, -EEXIST,
				    "'%s' exists and is not a socket; choose another path", path);
	if (someone_listens(addr))
		return vdisk_errorf(err, err_size, -EADDRINUSE,
				    "another VMM is listening on '%s'; choose another path", path);
	if (unlink(path) < 0 && errno != ENOENT)
		return vdisk_errorf(err, err_size, -errno,
				    "cannot remove the stale socket '%s': %s", path,
				    strerror(errno));
	if (bind(fd, (const struct sockaddr *)addr, sizeof(*addr)) < 0)
		return vdisk_errorf(err, err_size, -errno, "cannot create the socket '%s': %s",
				    path, strerror(errno));
	return 0;
}

int control_socket_address(const char *path, struct sockaddr_un *addr, char *err, size_t err_size)
{
	*addr = (struct sockaddr_un){ .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(addr->sun_path))
		return vdisk_errorf(err, err_size, -ENAMETOOLONG,
				    "the socket path '%s' is longer than %zu bytes", path,
				    sizeof(addr->sun_path) - 1);
	strcpy(addr->sun_path, path);
	return 0;
}

static int listen_on(struct control_server *srv, const char *path, char *err, size_t err_size)
{
	struct sockaddr_un addr;
	int ret = control_socket_address(path, &addr, err, err_size);
	if (ret < 0)
		return ret;
	srv->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (srv->listen_fd < 0)
		return vdisk_errorf(err, err_size, -errno, "socket: %s", strerror(errno));
	ret = bind_socket(srv->listen_fd, &addr, err, err_size);
	if (ret < 0)
		return ret;
	strcpy(srv->path, path);
	struct stat st;
	/* before listen(): nobody can connect yet, so nobody but the owner ever can */
	if (chmod(path, 0600) < 0 || stat(path, &st) < 0 || listen(srv->listen_fd, 16) < 0) {
		ret = -errno;
		unlink(path);
		srv->path[0] = 0;
		return vdisk_errorf(err, err_size, ret, "cannot listen on '%s': %s", path,
				    strerror(-ret));
	}
	srv->dev = st.st_dev;
	srv->ino = st.st_ino;
	return 0;
}

static void remove_socket(struct control_server *srv)
{
	struct stat st;
	if (srv->path[0] && stat(srv->path, &st) == 0 && st.st_dev == srv->dev &&
	    st.st_ino == srv->ino)
		unlink(srv->path);
}

static void server_free(struct control_server *srv)
{
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		struct client *c = &srv->clients[i];
		if (c->fd < 0)
			continue;
		client_flush(c);
		client_close(c);
	}
	remove_socket(srv);
	if (srv->listen_fd >= 0)
		close(srv->listen_fd);
	if (srv->wake_fd >= 0)
		close(srv->wake_fd);
	free(srv);
}

int control_server_start(const char *path, const struct control_ops *ops, void *opaque,
			 struct control_server **out, char *err, size_t err_size)
{
	struct control_server *srv = calloc(1, sizeof(*srv));
	if (!srv)
		return vdisk_errorf(err, err_size, -ENOMEM, "out of memory");
	srv->ops = ops;
	srv->opaque = opaque;
	srv->listen_fd = srv->wake_fd = -1;
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
		srv->clients[i].fd = -1;
	int ret = listen_on(srv, path, err, err_size);
	if (ret < 0)
		goto fail;
	srv->wake_fd = eventfd(0, EFD_CLOEXEC);
	if (srv->wake_fd < 0) {
		ret = vdisk_errorf(err, err_size, -errno, "eventfd: %s", strerror(errno));
		goto fail;
	}
	ret = -pthread_create(&srv->thread, NULL, server_loop, srv);
	if (ret < 0) {
		vdisk_errorf(err, err_size, ret, "cannot start the server thread: %s",
			     strerror(-ret));
		goto fail;
	}
	*out = srv;
	return 0;
fail:
	server_free(srv);
	return ret;
}

void control_server_stop(struct control_server *srv)
{
	if (!srv)
		return;
	uint64_t one = 1;
	while (write(srv->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
	pthread_join(srv->thread, NULL);
	server_free(srv);
}
