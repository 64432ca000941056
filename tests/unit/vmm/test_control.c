/* The control socket: a real server on a temporary socket with fake VM operations that
 * record their calls, driven by raw socket clients (every command, ids, errors, hostile
 * input, many clients), the client library, and the `vmm ctl` binary end to end. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "test_util.h"

/* ---- fake VM operations ---- */

enum {
	OP_STATUS,
	OP_BLOCK,
	OP_PAUSE,
	OP_RESUME,
	OP_POWERDOWN,
	OP_QUIT,
	OP_SCSI_ADD,
	OP_SCSI_REMOVE,
	OP_RESIZE,
	NOPS
};

/* The arguments the last SCSI op got. */
struct scsi_call {
	unsigned controller, lun;
	char file[256];
	bool read_only;
	uint64_t size;
};

static struct fake {
	pthread_mutex_t lock;
	enum control_run_state state;
	unsigned calls[NOPS];
	int fail_ret;	   /* the next op fails with this */
	char fail_msg[64]; /* and this text */
	struct scsi_call scsi;
} fake = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void fake_reset(void)
{
	pthread_mutex_lock(&fake.lock);
	fake.state = CONTROL_RUNNING;
	memset(fake.calls, 0, sizeof(fake.calls));
	fake.fail_ret = 0;
	fake.fail_msg[0] = 0;
	pthread_mutex_unlock(&fake.lock);
}

static unsigned calls(int op)
{
	pthread_mutex_lock(&fake.lock);
	unsigned n = fake.calls[op];
	pthread_mutex_unlock(&fake.lock);
	return n;
}

static unsigned all_calls(void)
{
	unsigned n = 0;
	for (int op = 0; op < NOPS; op++)
		n += calls(op);
	return n;
}

static void fake_fail_next(int ret, const char *msg)
{
	pthread_mutex_lock(&fake.lock);
	fake.fail_ret = ret;
	snprintf(fake.fail_msg, sizeof(fake.fail_msg), "%s", msg);
	pthread_mutex_unlock(&fake.lock);
}

/* Records the call; returns the planned failure, or 0 after moving to state (when >= 0). */
static int fake_op(int op, int state, char *err, size_t err_size)
{
	pthread_mutex_lock(&fake.lock);
	fake.calls[op]++;
	int ret = fake.fail_ret;
	if (ret) {
		snprintf(err, err_size, "%s", fake.fail_msg);
		fake.fail_ret = 0;
	} else if (state >= 0) {
		fake.state = (enum control_run_state)state;
	}
	pthread_mutex_unlock(&fake.lock);
	return ret;
}

static int fake_query_status(void *opaque, enum control_run_state *state, char *err,
			     size_t err_size)
{
	(void)opaque;
	int ret = fake_op(OP_STATUS, -1, err, err_size);
	pthread_mutex_lock(&fake.lock);
	*state = fake.state;
	pthread_mutex_unlock(&fake.lock);
	return ret;
}

static const struct control_block_info fake_drives[] = {
	{ .location = "ide:0:0",
	  .format = "vhdx",
	  .file = "/images/system.vhdx",
	  .size = 10ull << 30,
	  .inserted = true,
	  .rd_bytes = 123456,
	  .wr_bytes = 4096,
	  .rd_operations = 30,
	  .wr_operations = 1,
	  .flush_operations = 2 },
	{ .location = "ide:1:0", .dvd = true, .read_only = true },
};

static int fake_query_block(void *opaque, json_t *drives, char *err, size_t err_size)
{
	(void)opaque;
	int ret = fake_op(OP_BLOCK, -1, err, err_size);
	for (unsigned i = 0; ret == 0 && i < 2; i++)
		ret = control_block_append(drives, &fake_drives[i]);
	return ret;
}

static int fake_pause(void *opaque, char *err, size_t err_size)
{
	(void)opaque;
	return fake_op(OP_PAUSE, CONTROL_PAUSED, err, err_size);
}

static int fake_resume(void *opaque, char *err, size_t err_size)
{
	(void)opaque;
	return fake_op(OP_RESUME, CONTROL_RUNNING, err, err_size);
}

static int fake_powerdown(void *opaque, char *err, size_t err_size)
{
	(void)opaque;
	return fake_op(OP_POWERDOWN, CONTROL_SHUTTING_DOWN, err, err_size);
}

static int fake_quit(void *opaque, char *err, size_t err_size)
{
	(void)opaque;
	return fake_op(OP_QUIT, CONTROL_SHUTTING_DOWN, err, err_size);
}

static int fake_scsi_op(int op, const struct scsi_call *call, char *err, size_t err_size)
{
	pthread_mutex_lock(&fake.lock);
	fake.scsi = *call;
	pthread_mutex_unlock(&fake.lock);
	return fake_op(op, -1, err, err_size);
}

static int fake_scsi_add(void *opaque, unsigned controller, unsigned lun, const char *file,
			 bool read_only, char *err, size_t err_size)
{
	(void)opaque;
	struct scsi_call call = { .controller = controller, .lun = lun, .read_only = read_only };
	snprintf(call.file, sizeof(call.file), "%s", file);
	return fake_scsi_op(OP_SCSI_ADD, &call, err, err_size);
}

static int fake_scsi_remove(void *opaque, unsigned controller, unsigned lun, char *err,
			    size_t err_size)
{
	(void)opaque;
	struct scsi_call call = { .controller = controller, .lun = lun };
	return fake_scsi_op(OP_SCSI_REMOVE, &call, err, err_size);
}

static int fake_block_resize(void *opaque, unsigned controller, unsigned lun, uint64_t size,
			     char *err, size_t err_size)
{
	(void)opaque;
	struct scsi_call call = { .controller = controller, .lun = lun, .size = size };
	return fake_scsi_op(OP_RESIZE, &call, err, err_size);
}

static struct scsi_call last_scsi_call(void)
{
	pthread_mutex_lock(&fake.lock);
	struct scsi_call call = fake.scsi;
	pthread_mutex_unlock(&fake.lock);
	return call;
}

static const struct control_ops fake_ops = {
	.query_status = fake_query_status,
	.query_block = fake_query_block,
	.pause = fake_pause,
	.resume = fake_resume,
	.powerdown = fake_powerdown,
	.quit = fake_quit,
	.scsi_add = fake_scsi_add,
	.scsi_remove = fake_scsi_remove,
	.block_resize = fake_block_resize,
};

/* ---- raw clients ---- */

static struct control_server *server;
static const char *sock_path;
static char err[512];

struct conn {
	int fd;
	char buf[1 << 17];
	size_t len;
};

static struct conn *conn_open(void)
{
	struct conn *c = test_xmalloc(sizeof(*c));
	c->len = 0;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(c->fd >= 0);
	struct sockaddr_un addr;
	assert_int_equal(control_socket_address(sock_path, &addr, err, sizeof(err)), 0);
	if (connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		fail_msg("connect %s: %s", sock_path, strerror(errno));
	struct timeval tv = { .tv_sec = 5 };
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return c;
}

static void conn_close(struct conn *c)
{
	close(c->fd);
	free(c);
}

static void conn_send(struct conn *c, const void *data, size_t len)
{
	const char *p = data;
	while (len) {
		ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
		if (n <= 0)
			fail_msg("send: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
}

/* The next line from the server as JSON, or NULL at end of stream. */
static json_t *conn_recv(struct conn *c)
{
	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);
		if (nl) {
			json_error_t jerr;
			json_t *v = json_loadb(c->buf, (size_t)(nl - c->buf), 0, &jerr);
			if (!v)
				fail_msg("reply is not JSON (%s): %.*s", jerr.text,
					 (int)(nl - c->buf), c->buf);
			c->len -= (size_t)(nl + 1 - c->buf);
			memmove(c->buf, nl + 1, c->len);
			return v;
		}
		if (c->len == sizeof(c->buf))
			fail_msg("reply line too long");
		ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
		if (n == 0)
			return NULL;
		if (n < 0)
			fail_msg("recv: %s", strerror(errno));
		c->len += (size_t)n;
	}
}

static json_t *ask(struct conn *c, const char *line)
{
	conn_send(c, line, strlen(line));
	conn_send(c, "\n", 1);
	json_t *reply = conn_recv(c);
	if (!reply)
		fail_msg("no reply to %s", line);
	return reply;
}

/* One request on a fresh connection. */
static json_t *ask1(const char *line)
{
	struct conn *c = conn_open();
	json_t *reply = ask(c, line);
	conn_close(c);
	return reply;
}

static void expect_error(json_t *reply, const char *class, const char *desc)
{
	json_t *e = json_object_get(reply, "error");
	char *text = json_dumps(reply, JSON_COMPACT);
	if (!e || json_object_get(reply, "return") ||
	    strcmp(json_string_value(json_object_get(e, "class")), class) ||
	    !strstr(json_string_value(json_object_get(e, "desc")), desc))
		fail_msg("expected error %s '%s', got %s", class, desc, text);
	free(text);
	json_decref(reply);
}

/* The "return" of reply (which it keeps), failing on an error. */
static json_t *expect_return(json_t *reply)
{
	json_t *r = json_object_get(reply, "return");
	if (!r) {
		char *text = json_dumps(reply, JSON_COMPACT);
		fail_msg("expected a return, got %s", text);
	}
	return r;
}

static void expect_status(const char *status, bool running)
{
	json_t *reply = ask1("{\"execute\": \"query-status\"}");
	json_t *r = expect_return(reply);
	assert_string_equal(json_string_value(json_object_get(r, "status")), status);
	assert_int_equal(json_is_true(json_object_get(r, "running")), running);
	json_decref(reply);
}

static int setup(void **state)
{
	(void)state;
	fake_reset();
	return 0;
}

/* ---- commands ---- */

static void test_commands(void **state)
{
	(void)state;
	expect_status("running", true);
	assert_int_equal(calls(OP_STATUS), 1);

	static const struct {
		const char *command, *status;
		int op;
		bool running;
	} steps[] = {
		{ "pause", "paused", OP_PAUSE, false },
		{ "resume", "running", OP_RESUME, true },
		{ "powerdown", "shutting-down", OP_POWERDOWN, false },
		{ "resume", "running", OP_RESUME, true },
		{ "quit", "shutting-down", OP_QUIT, false },
	};
	for (unsigned i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		char line[128];
		snprintf(line, sizeof(line), "{\"execute\": \"%s\"}", steps[i].command);
		unsigned before = calls(steps[i].op);
		json_t *reply = ask1(line);
		json_t *r = expect_return(reply);
		assert_true(json_is_object(r) && json_object_size(r) == 0);
		json_decref(reply);
		assert_int_equal(calls(steps[i].op), before + 1);
		expect_status(steps[i].status, steps[i].running);
	}
}

static void expect_drive(json_t *d, const struct control_block_info *info)
{
	assert_string_equal(json_string_value(json_object_get(d, "location")), info->location);
	assert_string_equal(json_string_value(json_object_get(d, "kind")),
			    info->dvd ? "dvd" : "disk");
	json_t *format = json_object_get(d, "format"), *file = json_object_get(d, "file");
	if (info->format) {
		assert_string_equal(json_string_value(format), info->format);
		assert_string_equal(json_string_value(file), info->file);
	} else {
		assert_true(json_is_null(format) && json_is_null(file));
	}
	assert_int_equal(json_integer_value(json_object_get(d, "size")), info->size);
	assert_int_equal(json_is_true(json_object_get(d, "read_only")), info->read_only);
	assert_int_equal(json_is_true(json_object_get(d, "inserted")), info->inserted);
	json_t *st = json_object_get(d, "stats");
	assert_int_equal(json_integer_value(json_object_get(st, "rd_bytes")), info->rd_bytes);
	assert_int_equal(json_integer_value(json_object_get(st, "wr_bytes")), info->wr_bytes);
	assert_int_equal(json_integer_value(json_object_get(st, "rd_operations")),
			 info->rd_operations);
	assert_int_equal(json_integer_value(json_object_get(st, "wr_operations")),
			 info->wr_operations);
	assert_int_equal(json_integer_value(json_object_get(st, "flush_operations")),
			 info->flush_operations);
}

static void test_query_block(void **state)
{
	(void)state;
	json_t *reply = ask1("{\"execute\": \"query-block\"}");
	json_t *r = expect_return(reply);
	assert_int_equal(json_array_size(r), 2);
	expect_drive(json_array_get(r, 0), &fake_drives[0]);
	expect_drive(json_array_get(r, 1), &fake_drives[1]);
	json_decref(reply);

	reply = ask1("{\"execute\": \"query-block\", \"arguments\": {\"location\": \"ide:1:0\"}}");
	r = expect_return(reply);
	assert_int_equal(json_array_size(r), 1);
	expect_drive(json_array_get(r, 0), &fake_drives[1]);
	json_decref(reply);

	expect_error(
		ask1("{\"execute\": \"query-block\", \"arguments\": {\"location\": \"ide:0:1\"}}"),
		CONTROL_ERR_DEVICE_NOT_FOUND, "no drive at location 'ide:0:1'");
	assert_int_equal(calls(OP_BLOCK), 3);
}

static void test_ids_are_echoed(void **state)
{
	(void)state;
	static const char *const ids[] = { "7", "-3", "\"abc\"", "{\"a\": [1, 2]}", "null", "1.5" };
	struct conn *c = conn_open();
	for (unsigned i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		char line[256];
		json_t *want = json_loads(ids[i], JSON_DECODE_ANY, NULL);
		snprintf(line, sizeof(line), "{\"id\": %s, \"execute\": \"query-status\"}", ids[i]);
		json_t *reply = ask(c, line);
		assert_true(json_equal(json_object_get(reply, "id"), want));
		json_decref(reply);
		/* errors echo it too */
		snprintf(line, sizeof(line), "{\"execute\": \"nope\", \"id\": %s}", ids[i]);
		reply = ask(c, line);
		assert_true(json_equal(json_object_get(reply, "id"), want));
		expect_error(reply, CONTROL_ERR_COMMAND_NOT_FOUND, "unknown command 'nope'");
		json_decref(want);
	}
	json_t *reply = ask(c, "{\"execute\": \"query-status\"}");
	assert_null(json_object_get(reply, "id"));
	assert_int_equal(json_object_size(reply), 1);
	json_decref(reply);
	conn_close(c);
}

static void test_bad_requests(void **state)
{
	(void)state;
	static const struct {
		const char *line, *class, *desc;
	} bad[] = {
		{ "not json", CONTROL_ERR_BAD_REQUEST, "not JSON" },
		{ "[1, 2]", CONTROL_ERR_BAD_REQUEST, "a request is a JSON object" },
		{ "\"pause\"", CONTROL_ERR_BAD_REQUEST, "a request is a JSON object" },
		{ "{}", CONTROL_ERR_BAD_REQUEST, "a request needs \"execute\"" },
		{ "{\"execute\": 5}", CONTROL_ERR_BAD_REQUEST, "a request needs \"execute\"" },
		{ "{\"execute\": \"pause\", \"extra\": 1}", CONTROL_ERR_BAD_REQUEST,
		  "unknown member 'extra'" },
		{ "{\"execute\": \"pause\", \"execute\": \"quit\"}", CONTROL_ERR_BAD_REQUEST,
		  "duplicate" },
		{ "{\"execute\": \"pause\"} {\"execute\": \"quit\"}", CONTROL_ERR_BAD_REQUEST,
		  "not JSON" },
		{ "{\"execute\": \"pause\"", CONTROL_ERR_BAD_REQUEST, "not JSON" },
		{ "{\"execute\": \"pause\", \"arguments\": []}", CONTROL_ERR_BAD_REQUEST,
		  "\"arguments\" must be an object" },
		{ "{\"execute\": \"Pause\"}", CONTROL_ERR_COMMAND_NOT_FOUND,
		  "unknown command 'Pause' ('vmm ctl --help' lists them)" },
		{ "{\"execute\": \"pause\", \"arguments\": {\"now\": true}}",
		  CONTROL_ERR_INVALID_ARGUMENT, "pause takes no argument 'now'" },
		{ "{\"execute\": \"query-block\", \"arguments\": {\"location\": 5}}",
		  CONTROL_ERR_INVALID_ARGUMENT,
		  "query-block: argument 'location' must be a string" },
		{ "{\"execute\": \"query-block\", \"arguments\": {\"location\": null}}",
		  CONTROL_ERR_INVALID_ARGUMENT, "must be a string" },
	};
	struct conn *c = conn_open();
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_error(ask(c, bad[i].line), bad[i].class, bad[i].desc);
	/* nesting deep enough to exhaust a recursive parser */
	static char deep[20001];
	memset(deep, '[', 20000);
	expect_error(ask(c, deep), CONTROL_ERR_BAD_REQUEST, "not JSON");
	conn_close(c);
	assert_int_equal(all_calls(), 0);
}

static void test_op_failures(void **state)
{
	(void)state;
	fake_fail_next(-EBUSY, "the guest is being reset");
	expect_error(ask1("{\"execute\": \"pause\"}"), CONTROL_ERR_FAILED,
		     "the guest is being reset");
	expect_status("running", true);
	fake_fail_next(-EBUSY, "");
	expect_error(ask1("{\"execute\": \"resume\"}"), CONTROL_ERR_FAILED, strerror(EBUSY));
	fake_fail_next(-EIO, "");
	expect_error(ask1("{\"execute\": \"query-block\"}"), CONTROL_ERR_FAILED, strerror(EIO));

	/* a VMM that lacks an operation refuses the command */
	static const struct control_ops none;
	static const char *const lines[] = {
		"{\"execute\": \"query-status\"}",
		"{\"execute\": \"query-block\"}",
		"{\"execute\": \"pause\"}",
		"{\"execute\": \"resume\"}",
		"{\"execute\": \"powerdown\"}",
		"{\"execute\": \"quit\"}",
		"{\"execute\": \"scsi-add\", \"arguments\": {\"controller\": 0, \"lun\": 1, "
		"\"file\": \"a.vhdx\"}}",
		"{\"execute\": \"scsi-remove\", \"arguments\": {\"controller\": 0, \"lun\": 1}}",
		"{\"execute\": \"block-resize\", \"arguments\": {\"controller\": 0, \"lun\": 1, "
		"\"size\": 4096}}",
	};
	for (unsigned i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		expect_error(control_handle_line(&none, NULL, lines[i], strlen(lines[i])),
			     CONTROL_ERR_FAILED, "this VMM cannot");
}

/* ---- the SCSI commands ---- */

static void test_scsi_commands(void **state)
{
	(void)state;
	json_t *reply = ask1("{\"execute\": \"scsi-add\", \"arguments\": {\"controller\": 2, "
			     "\"lun\": 63, \"file\": \"/images/data disk.vhdx\", "
			     "\"read-only\": true}}");
	json_t *r = expect_return(reply);
	assert_true(json_is_object(r) && json_object_size(r) == 0);
	json_decref(reply);
	struct scsi_call call = last_scsi_call();
	assert_int_equal(calls(OP_SCSI_ADD), 1);
	assert_int_equal(call.controller, 2);
	assert_int_equal(call.lun, 63);
	assert_string_equal(call.file, "/images/data disk.vhdx");
	assert_true(call.read_only);
	reply = ask1("{\"execute\": \"scsi-add\", \"arguments\": {\"controller\": 0, \"lun\": 0, "
		     "\"file\": \"x\"}}");
	expect_return(reply);
	json_decref(reply);
	assert_false(last_scsi_call().read_only);

	reply = ask1("{\"execute\": \"block-resize\", \"arguments\": {\"controller\": 1, "
		     "\"lun\": 7, \"size\": 9223372036854775807}}");
	expect_return(reply);
	json_decref(reply);
	call = last_scsi_call();
	assert_int_equal(call.controller, 1);
	assert_int_equal(call.lun, 7);
	assert_true(call.size == INT64_MAX);

	reply = ask1("{\"execute\": \"scsi-remove\", \"arguments\": {\"controller\": 3, "
		     "\"lun\": 5}}");
	expect_return(reply);
	json_decref(reply);
	assert_int_equal(calls(OP_SCSI_REMOVE), 1);
	assert_int_equal(last_scsi_call().controller, 3);
	assert_int_equal(last_scsi_call().lun, 5);

	/* the VMM's refusals: no such controller or disk is DeviceNotFound, the rest failed */
	static const struct {
		int ret;
		const char *msg, *line, *class, *desc;
	} refusals[] = {
		{ -ENODEV, "the VM has no SCSI controller 1",
		  "{\"execute\": \"scsi-add\", \"arguments\": {\"controller\": 1, \"lun\": 0, "
		  "\"file\": \"x\"}}",
		  CONTROL_ERR_DEVICE_NOT_FOUND, "the VM has no SCSI controller 1" },
		{ -ENODEV, "",
		  "{\"execute\": \"scsi-remove\", \"arguments\": {\"controller\": 0, \"lun\": 4}}",
		  CONTROL_ERR_DEVICE_NOT_FOUND, "No such device" },
		{ -EEXIST, "scsi:0:1 already holds a disk",
		  "{\"execute\": \"scsi-add\", \"arguments\": {\"controller\": 0, \"lun\": 1, "
		  "\"file\": \"x\"}}",
		  CONTROL_ERR_FAILED, "scsi:0:1 already holds a disk" },
		{ -EINVAL, "shrinking a disk in use is refused",
		  "{\"execute\": \"block-resize\", \"arguments\": {\"controller\": 0, \"lun\": 1, "
		  "\"size\": 512}}",
		  CONTROL_ERR_FAILED, "shrinking a disk in use is refused" },
	};
	for (unsigned i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
		fake_fail_next(refusals[i].ret, refusals[i].msg);
		expect_error(ask1(refusals[i].line), refusals[i].class, refusals[i].desc);
	}
}

/* Hostile arguments end in InvalidArgument before the VMM is asked anything. */
static void test_scsi_hostile_arguments(void **state)
{
	(void)state;
	static const struct {
		const char *line, *desc;
	} bad[] = {
		{ "{\"execute\": \"scsi-add\", \"arguments\": {\"lun\": 0, \"file\": \"x\"}}",
		  "scsi-add needs the argument 'controller'" },
		{ "{\"execute\": \"scsi-add\", \"arguments\": {\"controller\": 0, \"file\": "
		  "\"x\"}}",
		  "needs the argument 'lun'" },
		{ "{\"execute\": \"scsi-add\", \"arguments\": {\"controller\": 0, \"lun\": 0}}",
		  "needs the argument 'file'" },
		{ "{\"execute\": \"scsi-add\"}", "needs the argument 'controller'" },
		{ "{\"execute\": \"scsi-add\", \"arguments\": {\"controller\": -1, \"lun\": 0, "
		  "\"file\": \"x\"}}",
		  "'controller' must be 0 to 3" },
		{ "{\"execute\": \"scsi-add\", \"arguments\": {\"controller\": 4, \"lun\": 0, "
		  "\"file\": \"x\"}}",
		  "'controller' must be 0 to 3" },
		{ "{\"execute\": \"scsi-add\", \"arguments\": {\"controller\": 4294967296, "
		  "\"lun\": "
		  "0, \"file\": \"x\"}}",
		  "'controller' must be 0 to 3" },
		{ "{\"execute\": \"scsi-add\", \"arguments\": {\"controller\": 0, \"lun\": 64, "
		  "\"file\": \"x\"}}",
		  "'lun' must be 0 to 63" },
		{ "{\"execute\": \"scsi-add\", \"arguments\": {\"controller\": 0, \"lun\": "
		  "-9223372036854775808, \"file\": \"x\"}}",
		  "'lun' must be 0 to 63" },
		{ "{\"execute\": \"scsi-add\", \"arguments\": {\"controller\": 0, \"lun\": 1e3, "
		  "\"file\": \"x\"}}",
		  "argument 'lun' must be an integer" },
		{ "{\"execute\": \"scsi-add\", \"arguments\": {\"controller\": \"0\", \"lun\": 0, "
		  "\"file\": \"x\"}}",
		  "argument 'controller' must be an integer" },
		{ "{\"execute\": \"scsi-add\", \"arguments\": {\"controller\": 0, \"lun\": 0, "
		  "\"file\": \"\"}}",
		  "'file' must be a path" },
		{ "{\"execute\": \"scsi-add\", \"arguments\": {\"controller\": 0, \"lun\": 0, "
		  "\"file\": \"a.raw\\u0000.vhdx\"}}",
		  "not JSON: \\u0000 is not allowed" }, /* a C path would end at the NUL */
		{ "{\"execute\": \"scsi-add\", \"arguments\": {\"controller\": 0, \"lun\": 0, "
		  "\"file\": [\"x\"]}}",
		  "argument 'file' must be a string" },
		{ "{\"execute\": \"scsi-add\", \"arguments\": {\"controller\": 0, \"lun\": 0, "
		  "\"file\": \"x\", \"read-only\": \"yes\"}}",
		  "argument 'read-only' must be true or false" },
		{ "{\"execute\": \"scsi-add\", \"arguments\": {\"controller\": 0, \"lun\": 0, "
		  "\"file\": \"x\", \"cache\": \"writeback\"}}",
		  "scsi-add takes no argument 'cache'" },
		{ "{\"execute\": \"scsi-remove\", \"arguments\": {\"controller\": 0}}",
		  "scsi-remove needs the argument 'lun'" },
		{ "{\"execute\": \"scsi-remove\", \"arguments\": {\"controller\": 0, \"lun\": 99}}",
		  "'lun' must be 0 to 63" },
		{ "{\"execute\": \"scsi-remove\", \"arguments\": {\"controller\": 0, \"lun\": "
		  "null}}",
		  "must be an integer" },
		{ "{\"execute\": \"block-resize\", \"arguments\": {\"controller\": 0, \"lun\": 0}}",
		  "block-resize needs the argument 'size'" },
		{ "{\"execute\": \"block-resize\", \"arguments\": {\"controller\": 0, \"lun\": 0, "
		  "\"size\": 0}}",
		  "'size' must be 1 to" },
		{ "{\"execute\": \"block-resize\", \"arguments\": {\"controller\": 0, \"lun\": 0, "
		  "\"size\": -4096}}",
		  "'size' must be 1 to" },
		{ "{\"execute\": \"block-resize\", \"arguments\": {\"controller\": 0, \"lun\": 0, "
		  "\"size\": 18446744073709551616}}",
		  "not JSON" },
		{ "{\"execute\": \"block-resize\", \"arguments\": {\"controller\": 0, \"lun\": 0, "
		  "\"size\": \"2G\"}}",
		  "argument 'size' must be an integer" },
	};
	struct conn *c = conn_open();
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		/* jansson refuses integers past 64 bits and NUL characters outright */
		bool parse_error = !strncmp(bad[i].desc, "not JSON", 8);
		expect_error(ask(c, bad[i].line),
			     parse_error ? CONTROL_ERR_BAD_REQUEST : CONTROL_ERR_INVALID_ARGUMENT,
			     bad[i].desc);
	}
	conn_close(c);
	assert_int_equal(all_calls(), 0);
}

/* ---- framing and hostile input ---- */

static json_int_t reply_id(json_t *reply)
{
	json_int_t id = json_integer_value(json_object_get(reply, "id"));
	json_decref(reply);
	return id;
}

static void test_framing(void **state)
{
	(void)state;
	struct conn *c = conn_open();
	/* several requests in one write: replies in order */
	const char *three = "{\"id\": 1, \"execute\": \"query-status\"}\n"
			    "{\"id\": 2, \"execute\": \"nope\"}\n"
			    "{\"id\": 3, \"execute\": \"query-status\"}\n";
	conn_send(c, three, strlen(three));
	for (json_int_t id = 1; id <= 3; id++)
		assert_int_equal(reply_id(conn_recv(c)), id);
	/* one request a byte at a time */
	const char *one = "{\"id\": 4, \"execute\": \"query-status\"}\n";
	for (const char *p = one; *p; p++)
		conn_send(c, p, 1);
	assert_int_equal(reply_id(conn_recv(c)), 4);
	/* CR LF, blank and white lines (no reply for those) */
	const char *crlf = "\r\n\n   \n\t\n{\"id\": 5, \"execute\": \"query-status\"}\r\n";
	conn_send(c, crlf, strlen(crlf));
	assert_int_equal(reply_id(conn_recv(c)), 5);
	conn_close(c);
	assert_int_equal(calls(OP_STATUS), 4);
}

/* A request padded with spaces inside the object to exactly len bytes. */
static char *padded_request(size_t len, int id)
{
	char head[64];
	int n = snprintf(head, sizeof(head), "{\"id\": %d, \"execute\": \"query-status\"", id);
	char *line = test_xmalloc(len + 1);
	memcpy(line, head, (size_t)n);
	memset(line + n, ' ', len - (size_t)n - 1);
	line[len - 1] = '}';
	line[len] = 0;
	return line;
}

static void test_long_lines(void **state)
{
	(void)state;
	struct conn *c = conn_open();
	char *longest = padded_request(CONTROL_MAX_LINE, 1);
	assert_int_equal(reply_id(ask(c, longest)), 1);
	free(longest);

	char *too_long = padded_request(CONTROL_MAX_LINE + 1, 2);
	expect_error(ask(c, too_long), CONTROL_ERR_BAD_REQUEST, "longer than 65536 bytes");
	free(too_long);
	assert_int_equal(reply_id(ask(c, "{\"id\": 3, \"execute\": \"query-status\"}")), 3);

	/* 4 MiB without a newline: one error, then the connection works again */
	size_t junk_len = 4u << 20;
	char *junk = test_xmalloc(junk_len);
	memset(junk, 'x', junk_len);
	conn_send(c, junk, junk_len);
	free(junk);
	expect_error(ask(c, "{\"id\": 4, \"execute\": \"query-status\"}"), CONTROL_ERR_BAD_REQUEST,
		     "longer than");
	assert_int_equal(reply_id(ask(c, "{\"id\": 5, \"execute\": \"query-status\"}")), 5);
	conn_close(c);
	assert_int_equal(calls(OP_STATUS), 3);
}

static void test_binary_junk(void **state)
{
	(void)state;
	uint64_t seed = test_env_seed("TEST_SEED"), rnd = seed;
	struct conn *c = conn_open();
	for (unsigned i = 0; i < 200; i++) {
		char line[300];
		size_t len = 1 + test_rnd_below(&rnd, sizeof(line) - 1);
		for (size_t j = 0; j < len; j++) {
			line[j] = (char)test_rnd(&rnd);
			if (line[j] == '\n')
				line[j] = 0; /* NUL bytes too */
		}
		line[0] = (char)0xff; /* never a blank line */
		conn_send(c, line, len);
		conn_send(c, "\n", 1);
		json_t *reply = conn_recv(c);
		if (!reply)
			fail_msg("no reply to junk line %u (TEST_SEED=%llu)", i,
				 (unsigned long long)seed);
		expect_error(reply, CONTROL_ERR_BAD_REQUEST, "");
	}
	/* a valid request with a NUL and more after it */
	static const char nul[] = "{\"execute\": \"quit\"}\0{}\n";
	conn_send(c, nul, sizeof(nul) - 1);
	expect_error(conn_recv(c), CONTROL_ERR_BAD_REQUEST, "not JSON");
	/* invalid UTF-8 inside a string */
	expect_error(ask(c, "{\"execute\": \"pa\xc3\x28use\"}"), CONTROL_ERR_BAD_REQUEST,
		     "not JSON");
	conn_close(c);
	assert_int_equal(all_calls(), 0);
}

static void test_disconnects(void **state)
{
	(void)state;
	/* gone in the middle of a line: nothing runs */
	struct conn *c = conn_open();
	conn_send(c, "{\"execute\": \"qu", 15);
	conn_close(c);
	/* gone before reading the reply */
	c = conn_open();
	conn_send(c, "{\"execute\": \"pause\"}\n", 21);
	conn_close(c);
	/* done sending, still reading: the reply arrives, then the end */
	c = conn_open();
	conn_send(c, "{\"id\": 9, \"execute\": \"resume\"}\n", 31);
	shutdown(c->fd, SHUT_WR);
	assert_int_equal(reply_id(conn_recv(c)), 9);
	assert_null(conn_recv(c));
	conn_close(c);
	expect_status("running", true);
	assert_int_equal(calls(OP_QUIT), 0);
	assert_int_equal(calls(OP_PAUSE), 1);
	assert_int_equal(calls(OP_RESUME), 1);
}

/* A client that sends without ever reading must not hold up the others. */
static void test_client_that_never_reads(void **state)
{
	(void)state;
	struct conn *flood = conn_open();
	int flags = fcntl(flood->fd, F_GETFL);
	fcntl(flood->fd, F_SETFL, flags | O_NONBLOCK);
	static const char req[] = "{\"execute\": \"query-status\"}\n";
	static char burst[64 * (sizeof(req) - 1)];
	for (unsigned i = 0; i < 64; i++)
		memcpy(burst + i * (sizeof(req) - 1), req, sizeof(req) - 1);
	size_t sent = 0;
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		ssize_t n = send(flood->fd, burst, sizeof(burst), MSG_NOSIGNAL);
		if (n > 0) {
			sent += (size_t)n;
			continue;
		}
		assert_true(n < 0 && errno == EAGAIN);
		/* the server may still be draining into its own buffers: wait until it stops */
		usleep(20000);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (send(flood->fd, burst, sizeof(burst), MSG_NOSIGNAL) < 0 ||
		    now.tv_sec > start.tv_sec + 3)
			break;
	}
	assert_true(sent > 64 * 1024);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	expect_status("running", true);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_true(t1.tv_sec - t0.tv_sec < 2);
	/* the flood was served only as far as its replies were read: a bounded number */
	assert_true(calls(OP_STATUS) < sent / (sizeof(req) - 1));
	conn_close(flood);
}

struct worker {
	pthread_t thread;
	unsigned index;
	unsigned failures;
};

#define WORKERS		    8
#define REQUESTS_PER_WORKER 100

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un addr;
	control_socket_address(sock_path, &addr, NULL, 0);
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		w->failures++;
		close(fd);
		return NULL;
	}
	FILE *in = fdopen(dup(fd), "r");
	char line[512];
	for (unsigned i = 0; i < REQUESTS_PER_WORKER; i++) {
		unsigned id = w->index * 1000 + i;
		int n = snprintf(line, sizeof(line),
				 "{\"id\": %u, \"execute\": \"query-status\"}\n", id);
		if (send(fd, line, (size_t)n, MSG_NOSIGNAL) != n ||
		    !fgets(line, sizeof(line), in)) {
			w->failures++;
			break;
		}
		json_t *reply = json_loads(line, 0, NULL);
		if (json_integer_value(json_object_get(reply, "id")) != id ||
		    !json_object_get(reply, "return"))
			w->failures++;
		json_decref(reply);
	}
	fclose(in);
	close(fd);
	return NULL;
}

static void test_concurrent_clients(void **state)
{
	(void)state;
	struct worker w[WORKERS];
	for (unsigned i = 0; i < WORKERS; i++) {
		w[i] = (struct worker){ .index = i + 1 };
		assert_int_equal(pthread_create(&w[i].thread, NULL, worker_run, &w[i]), 0);
	}
	unsigned failures = 0;
	for (unsigned i = 0; i < WORKERS; i++) {
		pthread_join(w[i].thread, NULL);
		failures += w[i].failures;
	}
	assert_int_equal(failures, 0);
	assert_int_equal(calls(OP_STATUS), WORKERS * REQUESTS_PER_WORKER);
}

/* A connection the server serves; retried while it still counts clients that hung up
 * (it notices a hang-up on its own time). */
static struct conn *conn_served(void)
{
	static const char req[] = "{\"execute\": \"query-status\"}\n";
	for (unsigned tries = 0;; tries++) {
		struct conn *c = conn_open();
		/* a refused connection may be closed before this arrives */
		ssize_t n = send(c->fd, req, sizeof(req) - 1, MSG_NOSIGNAL);
		json_t *reply = conn_recv(c);
		bool served = n > 0 && reply && json_object_get(reply, "return");
		json_decref(reply);
		if (served)
			return c;
		conn_close(c);
		assert_true(tries < 200);
		usleep(10000);
	}
}

static void test_too_many_clients(void **state)
{
	(void)state;
	struct conn *c[CONTROL_MAX_CLIENTS];
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
		c[i] = conn_served();
	struct conn *extra = conn_open();
	expect_error(conn_recv(extra), CONTROL_ERR_TOO_MANY_CLIENTS, "at most 16 clients");
	assert_null(conn_recv(extra));
	conn_close(extra);
	conn_close(c[0]);
	conn_close(conn_served());
	for (unsigned i = 1; i < CONTROL_MAX_CLIENTS; i++)
		conn_close(c[i]);
}

/* ---- the socket file ---- */

/* A socket file nobody listens on, as a VMM that was killed leaves behind. */
static void make_stale_socket(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un addr;
	assert_int_equal(control_socket_address(path, &addr, err, sizeof(err)), 0);
	unlink(path);
	assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	close(fd);
}

static void test_socket_file(void **state)
{
	(void)state;
	struct stat st;
	assert_int_equal(stat(sock_path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);

	struct control_server *other;
	assert_int_equal(control_server_start(sock_path, &fake_ops, NULL, &other, err, sizeof(err)),
			 -EADDRINUSE);
	assert_contains(err, "another VMM is listening on");
	expect_status("running", true);

	const char *file = test_path("not-a-socket");
	test_write_file(file, 100, 5);
	assert_int_equal(control_server_start(file, &fake_ops, NULL, &other, err, sizeof(err)),
			 -EEXIST);
	assert_contains(err, "exists and is not a socket");
	char data[100];
	test_file_read(file, data, sizeof(data), 0);
	test_expect_pattern(data, sizeof(data), 0, 5, "the file at the socket path");

	char long_path[200];
	memset(long_path, 'a', sizeof(long_path) - 1);
	long_path[sizeof(long_path) - 1] = 0;
	assert_int_equal(control_server_start(long_path, &fake_ops, NULL, &other, err, sizeof(err)),
			 -ENAMETOOLONG);
	assert_contains(err, "longer than 107 bytes");
}

static void test_stale_socket_replaced(void **state)
{
	(void)state;
	const char *path = test_path("stale.sock");
	make_stale_socket(path);
	struct control_server *a, *b;
	assert_int_equal(control_server_start(path, &fake_ops, NULL, &a, err, sizeof(err)), 0);
	const char *saved = sock_path;
	sock_path = path;
	expect_status("running", true);

	/* a server removes its socket file only if it is still its own */
	assert_int_equal(unlink(path), 0);
	assert_int_equal(control_server_start(path, &fake_ops, NULL, &b, err, sizeof(err)), 0);
	control_server_stop(a);
	expect_status("running", true);
	control_server_stop(b);
	assert_int_equal(access(path, F_OK), -1);
	sock_path = saved;
}

/* ---- the client library ---- */

static void expect_request(const char *command, int nargs, char *const *args, const char *want)
{
	json_t *req = NULL;
	if (control_request_build(command, nargs, args, &req, err, sizeof(err)) != 0)
		fail_msg("%s: %s", command, err);
	json_t *expected = json_loads(want, 0, NULL);
	assert_non_null(expected);
	if (!json_equal(req, expected)) {
		char *text = json_dumps(req, JSON_COMPACT);
		fail_msg("got %s, expected %s", text, want);
	}
	json_decref(req);
	json_decref(expected);
}

static void expect_build_error(const char *command, int nargs, char *const *args,
			       const char *message)
{
	json_t *req = NULL;
	assert_int_equal(control_request_build(command, nargs, args, &req, err, sizeof(err)),
			 -EINVAL);
	assert_null(req);
	assert_contains(err, message);
}

static void test_request_build(void **state)
{
	(void)state;
	char *loc[] = { "location=ide:0:0" };
	expect_request("query-block", 1, loc,
		       "{\"execute\": \"query-block\", "
		       "\"arguments\": {\"location\": \"ide:0:0\"}}");
	expect_request("pause", 0, NULL, "{\"execute\": \"pause\"}");
	char *odd[] = { "location==x=" };
	expect_request("query-block", 1, odd,
		       "{\"execute\": \"query-block\", "
		       "\"arguments\": {\"location\": \"=x=\"}}");

	expect_build_error("frob", 0, NULL, "unknown command 'frob'");
	char *no_eq[] = { "location" }, *no_key[] = { "=ide:0:0" }, *unknown[] = { "speed=5" };
	char *twice[] = { "location=ide:0:0", "location=ide:0:1" };
	char *bad_utf8[] = { "location=\xff" };
	expect_build_error("query-block", 1, no_eq, "'location' is not KEY=VALUE");
	expect_build_error("query-block", 1, no_key, "'=ide:0:0' is not KEY=VALUE");
	expect_build_error("query-block", 1, unknown, "query-block takes no argument 'speed'");
	expect_build_error("query-block", 2, twice, "location is given twice");
	expect_build_error("query-block", 1, bad_utf8, "is not text (valid UTF-8)");
	expect_build_error("pause", 1, loc, "pause takes no argument 'location'");
}

/* Argument checks for the kinds of arguments later commands declare. */
static void test_check_arguments(void **state)
{
	(void)state;
	static const struct control_command cmd = {
		.name = "move",
		.args = { { "target", CONTROL_ARG_STRING, true, "" },
			  { "speed", CONTROL_ARG_INTEGER, false, "" },
			  { "sync", CONTROL_ARG_BOOLEAN, false, "" } },
	};
	static const struct {
		const char *args;
		int ret;
		const char *message;
	} cases[] = {
		{ "{\"target\": \"a\"}", 0, "" },
		{ "{\"target\": \"a\", \"speed\": 5, \"sync\": false}", 0, "" },
		{ "{}", -EINVAL, "move needs the argument 'target'" },
		{ "{\"target\": 1}", -EINVAL, "move: argument 'target' must be a string" },
		{ "{\"target\": \"a\", \"speed\": \"5\"}", -EINVAL,
		  "argument 'speed' must be an integer" },
		{ "{\"target\": \"a\", \"speed\": 5.0}", -EINVAL, "must be an integer" },
		{ "{\"target\": \"a\", \"sync\": 1}", -EINVAL,
		  "argument 'sync' must be true or false" },
		{ "{\"target\": \"a\", \"x\": 1}", -EINVAL, "move takes no argument 'x'" },
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *args = json_loads(cases[i].args, 0, NULL);
		err[0] = 0;
		assert_int_equal(control_check_arguments(&cmd, args, err, sizeof(err)),
				 cases[i].ret);
		assert_contains(err, cases[i].message);
		json_decref(args);
	}
	assert_int_equal(
		control_check_arguments(control_command_find("pause"), NULL, err, sizeof(err)), 0);
}

/* A peer on path that answers the first request line with reply (raw), or hangs up when
 * reply is NULL. */
struct peer {
	int fd;
	const char *reply;
	pthread_t thread;
};

static void *peer_run(void *arg)
{
	struct peer *p = arg;
	int fd = accept(p->fd, NULL, NULL);
	char c;
	while (fd >= 0 && recv(fd, &c, 1, 0) == 1 && c != '\n')
		;
	if (fd >= 0 && p->reply && send(fd, p->reply, strlen(p->reply), MSG_NOSIGNAL) < 0)
		perror("peer send");
	if (fd >= 0)
		close(fd);
	return NULL;
}

static int peer_listen(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un addr;
	assert_int_equal(control_socket_address(path, &addr, err, sizeof(err)), 0);
	unlink(path);
	assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	assert_int_equal(listen(fd, 4), 0);
	return fd;
}

static int call_peer(const char *reply, int timeout_ms)
{
	const char *path = test_path("peer.sock");
	struct peer p = { .fd = peer_listen(path), .reply = reply };
	assert_int_equal(pthread_create(&p.thread, NULL, peer_run, &p), 0);
	json_t *req = json_pack("{s:s}", "execute", "query-status"), *reply_json = NULL;
	int ret = control_client_call(path, req, timeout_ms, &reply_json, err, sizeof(err));
	pthread_join(p.thread, NULL);
	close(p.fd);
	unlink(path);
	json_decref(req);
	json_decref(reply_json);
	return ret;
}

static void test_client_call(void **state)
{
	(void)state;
	json_t *req = json_pack("{s:s}", "execute", "query-status"), *reply = NULL;
	assert_int_equal(control_client_call(sock_path, req, 5000, &reply, err, sizeof(err)), 0);
	assert_true(json_equal(json_object_get(reply, "id"), json_object_get(req, "id")));
	assert_string_equal(json_string_value(json_object_get(expect_return(reply), "status")),
			    "running");
	json_decref(reply);

	const char *missing = test_path("missing.sock"), *file = test_path("plain-file");
	const char *stale = test_path("stale-client.sock");
	test_write_file(file, 10, 1);
	make_stale_socket(stale);
	assert_int_equal(control_client_call(missing, req, 1000, &reply, err, sizeof(err)),
			 -ENOENT);
	assert_contains(err, "no socket at");
	assert_int_equal(control_client_call(file, req, 1000, &reply, err, sizeof(err)), -ENOTSOCK);
	assert_contains(err, "is not a socket");
	assert_int_equal(control_client_call(stale, req, 1000, &reply, err, sizeof(err)),
			 -ECONNREFUSED);
	assert_contains(err, "refuses connections");

	/* a server that listens but never answers */
	const char *silent = test_path("silent.sock");
	int fd = peer_listen(silent);
	assert_int_equal(control_client_call(silent, req, 200, &reply, err, sizeof(err)),
			 -ETIMEDOUT);
	assert_contains(err, "did not reply in time");
	close(fd);
	json_decref(req);

	assert_int_equal(call_peer(NULL, 5000), -ECONNRESET);
	assert_contains(err, "hung up without replying");
	assert_int_equal(call_peer("hello\n", 5000), -EPROTO);
	assert_contains(err, "sent something that is not a reply");
	assert_int_equal(call_peer("{\"id\": -1, \"return\": {}}\n", 5000), -EPROTO);
	assert_int_equal(call_peer("{\"return\": {}, \"error\": {}}\n", 5000), -EPROTO);
	/* the refusal a full server sends before it has read anything */
	assert_int_equal(
		call_peer("{\"error\": {\"class\": \"TooManyClients\", \"desc\": \"x\"}}\n", 5000),
		0);
}

static void expect_text(const char *json, const char *want)
{
	json_t *v = json_loads(json, JSON_DECODE_ANY, NULL);
	assert_non_null(v);
	char *text = control_format_text(v);
	assert_string_equal(text, want);
	free(text);
	json_decref(v);
}

static void test_format_text(void **state)
{
	(void)state;
	expect_text("{\"status\": \"running\", \"running\": true}",
		    "status: running\nrunning: true\n");
	expect_text("{}", "ok\n");
	expect_text("[]", "(none)\n");
	expect_text("[{\"location\": \"ide:1:0\", \"file\": null, \"size\": 0, \"stats\": "
		    "{\"rd_bytes\": 5}, \"tags\": []}, {}]",
		    "- location: ide:1:0\n"
		    "  file: -\n"
		    "  size: 0\n"
		    "  stats:\n"
		    "    rd_bytes: 5\n"
		    "  tags: (none)\n"
		    "- {}\n");
	expect_text("{\"list\": [1, \"two\", [3]], \"ratio\": 0.5}",
		    "list:\n  - 1\n  - two\n  -\n    - 3\nratio: 0.5\n");
}

/* ---- `vmm ctl` end to end ---- */

static char out[65536];

#define vmm_ctl(...) test_run(out, sizeof(out), __VA_ARGS__)

static void test_vmm_ctl(void **state)
{
	(void)state;
	const char *vmm = getenv("VMM");
	if (!vmm || access(vmm, X_OK) != 0)
		fail_msg("VMM must name the vmm binary (run through ctest)");
	assert_int_equal(vmm_ctl("'%s' ctl %s query-status", vmm, sock_path), 0);
	assert_contains(out, "status: running\nrunning: true\n");

	assert_int_equal(vmm_ctl("'%s' ctl --json %s query-status", vmm, sock_path), 0);
	json_t *reply = json_loads(out, 0, NULL);
	assert_non_null(reply);
	assert_string_equal(json_string_value(json_object_get(expect_return(reply), "status")),
			    "running");
	assert_true(json_is_integer(json_object_get(reply, "id")));
	json_decref(reply);

	assert_int_equal(vmm_ctl("'%s' ctl %s pause", vmm, sock_path), 0);
	assert_string_equal(out, "ok\n");
	assert_int_equal(calls(OP_PAUSE), 1);
	assert_int_equal(vmm_ctl("'%s' ctl --timeout 5 %s query-status", vmm, sock_path), 0);
	assert_contains(out, "status: paused");

	assert_int_equal(vmm_ctl("'%s' ctl %s query-block location=ide:1:0", vmm, sock_path), 0);
	assert_contains(out, "- location: ide:1:0\n  kind: dvd\n");
	assert_int_equal(vmm_ctl("'%s' ctl %s query-block location=ide:0:1", vmm, sock_path), 1);
	assert_contains(out, "vmm: ctl: query-block: no drive at location 'ide:0:1' "
			     "(DeviceNotFound)");
	assert_int_equal(vmm_ctl("'%s' ctl --json %s query-block location=ide:0:1", vmm, sock_path),
			 1);
	assert_contains(out, "\"class\":\"DeviceNotFound\"");
	fake_fail_next(-EBUSY, "the vCPUs are busy");
	assert_int_equal(vmm_ctl("'%s' ctl %s resume", vmm, sock_path), 1);
	assert_contains(out, "resume: the vCPUs are busy (CommandFailed)");

	/* the SCSI commands' KEY=VALUE arguments arrive typed */
	assert_int_equal(vmm_ctl("'%s' ctl %s scsi-add controller=1 lun=0x10 file='/a b.vhdx' "
				 "read-only=true",
				 vmm, sock_path),
			 0);
	assert_string_equal(out, "ok\n");
	struct scsi_call call = last_scsi_call();
	assert_int_equal(call.controller, 1);
	assert_int_equal(call.lun, 16);
	assert_string_equal(call.file, "/a b.vhdx");
	assert_true(call.read_only);
	assert_int_equal(vmm_ctl("'%s' ctl %s block-resize controller=1 lun=16 size=68719476736",
				 vmm, sock_path),
			 0);
	assert_true(last_scsi_call().size == 64ull << 30);
	assert_int_equal(vmm_ctl("'%s' ctl %s scsi-remove controller=1 lun=64", vmm, sock_path), 1);
	assert_contains(out, "'lun' must be 0 to 63 (InvalidArgument)");

	/* usage mistakes never reach the server */
	unsigned before = all_calls();
	assert_int_equal(vmm_ctl("'%s' ctl %s query-block bogus=1", vmm, sock_path), 3);
	assert_contains(out, "query-block takes no argument 'bogus'");
	assert_int_equal(vmm_ctl("'%s' ctl %s frob", vmm, sock_path), 3);
	assert_contains(out, "unknown command 'frob'");
	assert_contains(out, "Try 'vmm ctl --help'.");
	assert_int_equal(vmm_ctl("'%s' ctl %s", vmm, sock_path), 3);
	assert_contains(out, "missing COMMAND after SOCK");
	assert_int_equal(
		vmm_ctl("'%s' ctl %s block-resize controller=0 lun=0 size=2G", vmm, sock_path), 3);
	assert_contains(out, "size: '2G' is not an integer");
	assert_int_equal(all_calls(), before);

	/* no answer */
	assert_int_equal(vmm_ctl("'%s' ctl %s query-status", vmm, test_path("none.sock")), 2);
	assert_contains(out, "no socket at");
	const char *stale = test_path("stale-ctl.sock");
	make_stale_socket(stale);
	assert_int_equal(vmm_ctl("'%s' ctl %s query-status", vmm, stale), 2);
	assert_contains(out, "refuses connections");
	const char *silent = test_path("silent-ctl.sock");
	int fd = peer_listen(silent);
	assert_int_equal(vmm_ctl("'%s' ctl --timeout 1 %s query-status", vmm, silent), 2);
	assert_contains(out, "did not reply in time");
	close(fd);

	assert_int_equal(vmm_ctl("'%s' ctl %s quit", vmm, sock_path), 0);
	assert_int_equal(calls(OP_QUIT), 1);
}

static int group_setup(void **state)
{
	(void)state;
	sock_path = strdup(test_path("control.sock"));
	int ret = control_server_start(sock_path, &fake_ops, NULL, &server, err, sizeof(err));
	if (ret < 0)
		fprintf(stderr, "cannot start the server: %s\n", err);
	return ret;
}

static int group_teardown(void **state)
{
	control_server_stop(server);
	if (access(sock_path, F_OK) == 0)
		fprintf(stderr, "the server left %s behind\n", sock_path);
	free((void *)sock_path);
	return test_teardown_tmpdir(state);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_commands, setup),
		cmocka_unit_test_setup(test_query_block, setup),
		cmocka_unit_test_setup(test_ids_are_echoed, setup),
		cmocka_unit_test_setup(test_bad_requests, setup),
		cmocka_unit_test_setup(test_op_failures, setup),
		cmocka_unit_test_setup(test_scsi_commands, setup),
		cmocka_unit_test_setup(test_scsi_hostile_arguments, setup),
		cmocka_unit_test_setup(test_framing, setup),
		cmocka_unit_test_setup(test_long_lines, setup),
		cmocka_unit_test_setup(test_binary_junk, setup),
		cmocka_unit_test_setup(test_disconnects, setup),
		cmocka_unit_test_setup(test_client_that_never_reads, setup),
		cmocka_unit_test_setup(test_concurrent_clients, setup),
		cmocka_unit_test_setup(test_too_many_clients, setup),
		cmocka_unit_test_setup(test_socket_file, setup),
		cmocka_unit_test_setup(test_stale_socket_replaced, setup),
		cmocka_unit_test_setup(test_request_build, setup),
		cmocka_unit_test_setup(test_check_arguments, setup),
		cmocka_unit_test_setup(test_client_call, setup),
		cmocka_unit_test_setup(test_format_text, setup),
		cmocka_unit_test_setup(test_vmm_ctl, setup),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
