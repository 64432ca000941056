/* The control socket of a running VM and its client (`vmm run --control SOCK`, `vmm ctl`).
 *
 * Protocol: a Unix stream socket carrying one JSON object per line in each direction.
 *   request  {"execute": "query-status", "id": 7, "arguments": {...}}
 *   reply    {"id": 7, "return": ...}  or  {"id": 7, "error": {"class": "...", "desc": "..."}}
 * "id" (any JSON value) is echoed when the request has one; "arguments" is optional. A
 * request line holds at most CONTROL_MAX_LINE bytes before its newline. Replies come in
 * request order.
 *
 * The server is one thread running one poll loop over the listening socket and up to
 * CONTROL_MAX_CLIENTS clients. It never touches the VM itself: every command calls one of
 * the struct control_ops callbacks, on the server thread, one at a time.
 */
#ifndef HV_VMM_CONTROL_H
#define HV_VMM_CONTROL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONTROL_MAX_LINE    65536
#define CONTROL_MAX_CLIENTS 16

/* Error classes of an "error" reply. */
#define CONTROL_ERR_BAD_REQUEST	      "BadRequest"	/* not JSON, not a request, line too long */
#define CONTROL_ERR_COMMAND_NOT_FOUND "CommandNotFound" /* no such command */
#define CONTROL_ERR_INVALID_ARGUMENT  "InvalidArgument" /* unknown, missing or mistyped argument */
#define CONTROL_ERR_DEVICE_NOT_FOUND  "DeviceNotFound"	/* no drive at that location */
#define CONTROL_ERR_FAILED	      "CommandFailed"	/* the VM could not do it (desc says why) */
#define CONTROL_ERR_TOO_MANY_CLIENTS  "TooManyClients"	/* sent before the server hangs up */

enum control_run_state {
	CONTROL_RUNNING,
	CONTROL_PAUSED,
	CONTROL_SHUTTING_DOWN, /* powerdown or quit requested, or the guest is stopping */
};

/* One drive as query-block reports it. */
struct control_block_info {
	const char *location; /* "ide:0:1" (vmm_location_format) */
	bool dvd;	      /* kind "dvd", else "disk" */
	const char *format;   /* "vhdx", "vhd", "raw"; NULL with no medium */
	const char *file;     /* NULL with no medium */
	uint64_t size;	      /* bytes the guest sees */
	bool read_only;
	bool inserted; /* a medium is present (always true for a disk) */
	uint64_t rd_bytes, wr_bytes, rd_operations, wr_operations, flush_operations;
};

/* Appends the query-block object for one drive to drives. Returns 0 or -ENOMEM. */
int control_block_append(json_t *drives, const struct control_block_info *info);

/* What the VMM does for the commands. Each returns 0 or -errno and may explain a failure
 * in err (otherwise the reply says strerror). A NULL member makes its command fail with
 * CONTROL_ERR_FAILED. Called on the server thread; may block briefly.
 *
 * The SCSI commands get arguments already checked: controller below VMM_SCSI_CONTROLLERS,
 * lun below VMM_SCSI_LOCATIONS, file a non-empty string, size above 0. Their -ENODEV (no
 * such controller, no disk at that LUN) is answered CONTROL_ERR_DEVICE_NOT_FOUND, other
 * failures CONTROL_ERR_FAILED. */
struct control_ops {
	int (*query_status)(void *opaque, enum control_run_state *state, char *err,
			    size_t err_size);
	/* Appends one object per drive, with control_block_append. */
	int (*query_block)(void *opaque, json_t *drives, char *err, size_t err_size);
	/* The VM's counters as one object (exits, io_exits, mmio_exits, resets, drives). */
	int (*query_stats)(void *opaque, json_t **stats, char *err, size_t err_size);
	int (*pause)(void *opaque, char *err, size_t err_size);
	int (*resume)(void *opaque, char *err, size_t err_size);
	int (*powerdown)(void *opaque, char *err, size_t err_size); /* ACPI power button */
	int (*quit)(void *opaque, char *err, size_t err_size);	    /* stop the VM now */
	/* scsi-add: opens file as `vmm run --disk` does and attaches it at controller:lun. */
	int (*scsi_add)(void *opaque, unsigned controller, unsigned lun, const char *file,
			bool read_only, char *err, size_t err_size);
	/* scsi-remove: detaches the disk at controller:lun, then flushes and closes it. */
	int (*scsi_remove)(void *opaque, unsigned controller, unsigned lun, char *err,
			   size_t err_size);
	/* block-resize: grows the SCSI disk at controller:lun to size bytes. */
	int (*block_resize)(void *opaque, unsigned controller, unsigned lun, uint64_t size,
			    char *err, size_t err_size);
};

/* ---- the command registry ---- */

enum control_arg_type { CONTROL_ARG_STRING, CONTROL_ARG_INTEGER, CONTROL_ARG_BOOLEAN };

struct control_arg {
	const char *name;
	enum control_arg_type type;
	bool required;
	const char *help;
};

#define CONTROL_MAX_ARGS 8

/* A command: its name, what it does, its arguments (checked before run is called), and
 * the handler that calls the ops and builds the "return" value (*ret, a new reference).
 * A handler returns 0, or -errno with the error class in *err_class and text in err. */
struct control_command {
	const char *name;
	const char *summary;
	struct control_arg args[CONTROL_MAX_ARGS]; /* ends at the first entry without a name */
	int (*run)(const struct control_ops *ops, void *opaque, json_t *args, json_t **ret,
		   const char **err_class, char *err, size_t err_size);
};

/* The commands, in the order `vmm ctl --help` lists them; NULL past the last. */
const struct control_command *control_command_at(unsigned index);
const struct control_command *control_command_find(const char *name);
/* The argument of cmd called name, or NULL. */
const struct control_arg *control_command_arg(const struct control_command *cmd, const char *name);

/* Checks args (an object, or NULL for none) against cmd's arguments: no unknown names,
 * every required one present, each of its type. Returns 0 or -EINVAL with the reason in
 * err. */
int control_check_arguments(const struct control_command *cmd, json_t *args, char *err,
			    size_t err_size);

/* Handles one request line (without its newline) and returns the reply object (never
 * NULL unless out of memory). What the server does for every line it reads. */
json_t *control_handle_line(const struct control_ops *ops, void *opaque, const char *line,
			    size_t len);

/* ---- the server ---- */

struct control_server;
struct sockaddr_un;

/* The address of the socket at path; -ENAMETOOLONG with a message in err when path does
 * not fit. */
int control_socket_address(const char *path, struct sockaddr_un *addr, char *err, size_t err_size);

/* Listens on path and starts the server thread. A live server already on path is refused
 * (-EADDRINUSE); a socket nobody listens on any more is replaced; any other file there is
 * left alone (-EEXIST). The socket is made accessible to its owner only. Returns 0 or
 * -errno with a message in err. */
int control_server_start(const char *path, const struct control_ops *ops, void *opaque,
			 struct control_server **out, char *err, size_t err_size);
/* Stops the thread, disconnects every client, removes the socket file, frees the server.
 * Replies already produced are sent first when the clients can take them at once. Not to
 * be called from a control_ops callback (it waits for the thread that runs them): a quit
 * op only asks the VMM to stop, and the VMM stops the server afterwards. */
void control_server_stop(struct control_server *srv);

/* ---- the client ---- */

/* Builds {"execute": command, "arguments": {...}} from KEY=VALUE texts, converting each
 * VALUE to the type the command declares. Returns 0, or -EINVAL (unknown command, unknown
 * key, bad value) with the reason in err, or -ENOMEM. */
int control_request_build(const char *command, int nargs, char *const *args, json_t **out,
			  char *err, size_t err_size);

/* Connects to path, sends request (an "id" is added) and waits up to timeout_ms for the
 * reply with that id. Returns 0 with the reply in *reply, or -errno with a message in err
 * saying what happened: -ENOENT no socket there, -ECONNREFUSED nobody listening, -ETIMEDOUT
 * no reply in time, -EPROTO a reply that is not one. */
int control_client_call(const char *path, json_t *request, int timeout_ms, json_t **reply,
			char *err, size_t err_size);

/* A "return" value as indented "key: value" lines for people (malloc'd), or NULL when out
 * of memory. */
char *control_format_text(json_t *value);

#endif
