/* The control socket client: builds a request from the command line, exchanges it with the
 * server, and renders replies for people. */
#include "control.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "errmsg.h"

#define MAX_REPLY (16u << 20) /* bytes of one reply line the client accepts */

/* ---- building a request ---- */

static json_t *convert_value(const struct control_arg *arg, const char *text)
{
	switch (arg->type) {
	case CONTROL_ARG_STRING:
		return json_string(text);
	case CONTROL_ARG_INTEGER: {
		char *end;
		errno = 0;
		long long v = strtoll(text, &end, 0);
		return *text && !*end && !errno ? json_integer(v) : NULL;
	}
	case CONTROL_ARG_BOOLEAN:
		if (!strcmp(text, "true") || !strcmp(text, "false"))
			return json_boolean(text[0] == 't');
		return NULL;
	}
	return NULL;
}

static const char *type_example(enum control_arg_type type)
{
	return type == CONTROL_ARG_INTEGER   ? "an integer"
	       : type == CONTROL_ARG_BOOLEAN ? "true or false"
					     : "text (valid UTF-8)";
}

static int add_argument(const struct control_command *cmd, json_t *arguments, const char *text,
			char *err, size_t err_size)
{
	const char *eq = strchr(text, '=');
	if (!eq || eq == text)
		return vdisk_errorf(err, err_size, -EINVAL, "'%s' is not KEY=VALUE", text);
	char key[64];
	if ((size_t)(eq - text) >= sizeof(key))
		return vdisk_errorf(err, err_size, -EINVAL, "%s takes no argument '%.*s'",
				    cmd->name, (int)(eq - text), text);
	snprintf(key, sizeof(key), "%.*s", (int)(eq - text), text);
	const struct control_arg *arg = control_command_arg(cmd, key);
	if (!arg)
		return vdisk_errorf(err, err_size, -EINVAL, "%s takes no argument '%s'", cmd->name,
				    key);
	if (json_object_get(arguments, key))
		return vdisk_errorf(err, err_size, -EINVAL, "%s is given twice", key);
	json_t *value = convert_value(arg, eq + 1);
	if (!value)
		return vdisk_errorf(err, err_size, -EINVAL, "%s: '%s' is not %s", key, eq + 1,
				    type_example(arg->type));
	if (json_object_set_new(arguments, key, value) < 0)
		return vdisk_errorf(err, err_size, -ENOMEM, "out of memory");
	return 0;
}

int control_request_build(const char *command, int nargs, char *const *args, json_t **out,
			  char *err, size_t err_size)
{
	const struct control_command *cmd = control_command_find(command);
	if (!cmd)
		return vdisk_errorf(err, err_size, -EINVAL, "unknown command '%s'", command);
	json_t *arguments = json_object();
	json_t *req = json_pack("{s:s}", "execute", command);
	int ret = arguments && req ? 0 : vdisk_errorf(err, err_size, -ENOMEM, "out of memory");
	for (int i = 0; i < nargs && ret == 0; i++)
		ret = add_argument(cmd, arguments, args[i], err, err_size);
	if (ret == 0)
		ret = control_check_arguments(cmd, arguments, err, err_size);
	if (ret == 0 && json_object_size(arguments) &&
	    json_object_set(req, "arguments", arguments) < 0)
		ret = vdisk_errorf(err, err_size, -ENOMEM, "out of memory");
	json_decref(arguments);
	if (ret < 0) {
		json_decref(req);
		return ret;
	}
	*out = req;
	return 0;
}

/* ---- the exchange ---- */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int connect_to(const char *path, char *err, size_t err_size)
{
	struct sockaddr_un addr;
	int ret = control_socket_address(path, &addr, err, err_size);
	if (ret < 0)
		return ret;
	struct stat st;
	if (stat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
		return vdisk_errorf(err, err_size, -ENOTSOCK, "'%s' is not a socket", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return vdisk_errorf(err, err_size, -errno, "socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0)
		return fd;
	int e = errno;
	close(fd);
	switch (e) {
	case ENOENT:
		return vdisk_errorf(err, err_size, -ENOENT,
				    "no socket at '%s': is the VM running with --control %s?", path,
				    path);
	case ECONNREFUSED:
		return vdisk_errorf(err, err_size, -ECONNREFUSED,
				    "'%s' refuses connections: no VMM listens there any more",
				    path);
	case EAGAIN:
		return vdisk_errorf(err, err_size, -ETIMEDOUT,
				    "'%s' does not accept connections now: the VMM is busy", path);
	default:
		return vdisk_errorf(err, err_size, -e, "cannot connect to '%s': %s", path,
				    strerror(e));
	}
}

/* Waits for events on fd until deadline; 0, or -ETIMEDOUT. */
static int wait_for(int fd, short events, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd p = { .fd = fd, .events = events };
		int n = poll(&p, 1, (int)(left > 60000 ? 60000 : left));
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

static int send_line(int fd, const char *text, size_t len, int64_t deadline)
{
	while (len) {
		ssize_t n = send(fd, text, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EAGAIN) {
			int ret = wait_for(fd, POLLOUT, deadline);
			if (ret < 0)
				return ret;
			continue;
		}
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0) {
			text += n;
			len -= (size_t)n;
		}
	}
	return 0;
}

/* Reads up to the first newline; returns its length (the newline becomes a NUL) in a
 * malloc'd *line, or -errno. */
static int recv_line(int fd, int64_t deadline, char **line, size_t *len)
{
	size_t used = 0, cap = 4096;
	char *buf = malloc(cap);
	int ret = buf ? 0 : -ENOMEM;
	while (ret == 0) {
		if (used == cap) {
			char *bigger = cap < MAX_REPLY ? realloc(buf, cap * 2) : NULL;
			if (!bigger) {
				ret = -EMSGSIZE;
				break;
			}
			buf = bigger;
			cap *= 2;
		}
		ssize_t n = recv(fd, buf + used, cap - used, 0);
		if (n < 0 && errno == EAGAIN)
			ret = wait_for(fd, POLLIN, deadline);
		else if (n < 0 && errno != EINTR)
			ret = -errno;
		else if (n == 0)
			ret = -ECONNRESET;
		else if (n > 0) {
			char *nl = memchr(buf + used, '\n', (size_t)n);
			used += (size_t)n;
			if (nl) {
				*nl = 0;
				*len = (size_t)(nl - buf);
				*line = buf;
				return 0;
			}
		}
	}
	free(buf);
	return ret;
}

/* A reply answers id when it echoes it, or is an error the server sent without reading
 * the request (too many clients). */
static bool is_reply_to(json_t *reply, json_t *id)
{
	if (!json_is_object(reply))
		return false;
	json_t *ret = json_object_get(reply, "return"), *error = json_object_get(reply, "error");
	json_t *got = json_object_get(reply, "id");
	if (!ret == !error)
		return false;
	if (error && (!json_is_string(json_object_get(error, "class")) ||
		      !json_is_string(json_object_get(error, "desc"))))
		return false;
	return got ? json_equal(got, id) : error != NULL;
}

static int exchange(int fd, const char *path, json_t *request, int64_t deadline, json_t **reply,
		    char *err, size_t err_size)
{
	char *text = json_dumps(request, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!text)
		return vdisk_errorf(err, err_size, -ENOMEM, "out of memory");
	size_t len = strlen(text);
	text[len] = '\n'; /* replaces the NUL: sent by length */
	int ret = send_line(fd, text, len + 1, deadline);
	free(text);
	if (ret < 0)
		return vdisk_errorf(err, err_size, ret, "cannot send to '%s': %s", path,
				    strerror(-ret));
	char *line = NULL;
	ret = recv_line(fd, deadline, &line, &len);
	if (ret == -ETIMEDOUT)
		return vdisk_errorf(err, err_size, ret, "'%s' did not reply in time", path);
	if (ret == -ECONNRESET)
		return vdisk_errorf(err, err_size, ret, "'%s' hung up without replying", path);
	if (ret < 0)
		return vdisk_errorf(err, err_size, ret, "no reply from '%s': %s", path,
				    strerror(-ret));
	json_error_t jerr;
	*reply = json_loadb(line, len, 0, &jerr);
	free(line);
	if (!*reply || !is_reply_to(*reply, json_object_get(request, "id"))) {
		json_decref(*reply);
		*reply = NULL;
		return vdisk_errorf(err, err_size, -EPROTO,
				    "'%s' sent something that is not a reply", path);
	}
	return 0;
}

int control_client_call(const char *path, json_t *request, int timeout_ms, json_t **reply,
			char *err, size_t err_size)
{
	static unsigned counter;
	int64_t deadline = now_ms() + timeout_ms;
	json_int_t id = (json_int_t)getpid() * 1000 + __atomic_fetch_add(&counter, 1, 0) % 1000;
	if (json_object_set_new(request, "id", json_integer(id)) < 0)
		return vdisk_errorf(err, err_size, -ENOMEM, "out of memory");
	int fd = connect_to(path, err, err_size);
	if (fd < 0)
		return fd;
	int ret = exchange(fd, path, request, deadline, reply, err, err_size);
	close(fd);
	return ret;
}

/* ---- text for people ---- */

static void put_scalar(FILE *f, json_t *v)
{
	if (json_is_string(v))
		fputs(json_string_value(v), f);
	else if (json_is_integer(v))
		fprintf(f, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else if (json_is_real(v))
		fprintf(f, "%g", json_real_value(v));
	else if (json_is_boolean(v))
		fputs(json_is_true(v) ? "true" : "false", f);
	else
		fputs("-", f);
}

static bool is_container(json_t *v)
{
	return json_is_object(v) || json_is_array(v);
}

static void put_value(FILE *f, json_t *v, int indent);

/* The members as "key: value" lines; in a list, the first line starts with "- ". */
static void put_members(FILE *f, json_t *obj, int indent, bool list_item)
{
	const char *key;
	json_t *child;
	bool first = true;
	if (list_item && json_object_size(obj) == 0)
		fprintf(f, "%*s- {}\n", indent, "");
	json_object_foreach (obj, key, child) {
		const char *mark = !list_item ? "" : first ? "- " : "  ";
		int inner = indent + (list_item ? 2 : 0) + 2;
		fprintf(f, "%*s%s%s:", indent, "", mark, key);
		first = false;
		if (!is_container(child) || (json_is_array(child) && !json_array_size(child))) {
			fputc(' ', f);
			if (is_container(child))
				fputs("(none)", f);
			else
				put_scalar(f, child);
			fputc('\n', f);
			continue;
		}
		fputc('\n', f);
		put_value(f, child, inner);
	}
}

static void put_value(FILE *f, json_t *v, int indent)
{
	size_t i;
	json_t *item;
	if (json_is_object(v)) {
		put_members(f, v, indent, false);
		return;
	}
	json_array_foreach (v, i, item) {
		if (json_is_object(item)) {
			put_members(f, item, indent, true);
		} else if (json_is_array(item)) {
			fprintf(f, "%*s-\n", indent, "");
			put_value(f, item, indent + 2);
		} else {
			fprintf(f, "%*s- ", indent, "");
			put_scalar(f, item);
			fputc('\n', f);
		}
	}
}

char *control_format_text(json_t *value)
{
	char *text = NULL;
	size_t size;
	FILE *f = open_memstream(&text, &size);
	if (!f)
		return NULL;
	if (json_is_object(value) && json_object_size(value) == 0)
		fputs("ok\n", f);
	else if (json_is_array(value) && json_array_size(value) == 0)
		fputs("(none)\n", f);
	else if (is_container(value))
		put_value(f, value, 0);
	else {
		put_scalar(f, value);
		fputc('\n', f);
	}
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}
