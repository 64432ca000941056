#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char tmpdir[512];

const char *test_tmpdir(void)
{
	if (tmpdir[0])
		return tmpdir;
	const char *base = getenv("TEST_TMPDIR");
	if (!base || !*base)
		base = "/tmp";
	mkdir(base, 0755);
	snprintf(tmpdir, sizeof(tmpdir), "%s/hvtest.XXXXXX", base);
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		abort();
	}
	return tmpdir;
}

void test_tmpdir_remove(void)
{
	if (!tmpdir[0])
		return;
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
	tmpdir[0] = 0;
}

const char *test_path(const char *name)
{
	static char slots[8][600];
	static unsigned next;
	char *p = slots[next++ % 8];
	snprintf(p, sizeof(slots[0]), "%s/%s", test_tmpdir(), name);
	return p;
}

uint64_t test_mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

uint64_t test_rnd(uint64_t *state)
{
	*state += 0x9E3779B97F4A7C15ULL;
	return test_mix64(*state);
}

uint64_t test_rnd_below(uint64_t *state, uint64_t n)
{
	return n ? test_rnd(state) % n : 0;
}

uint64_t test_env_seed(const char *name)
{
	const char *env = getenv(name);
	uint64_t seed;
	if (env && *env) {
		seed = strtoull(env, NULL, 0);
	} else {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		seed = test_mix64((uint64_t)ts.tv_sec * 1000000007ULL + (uint64_t)ts.tv_nsec);
	}
	return seed ? seed : 1;
}

void test_fill_pattern(void *buf, size_t len, uint64_t off, uint32_t seed)
{
	uint8_t *p = buf;
	for (size_t i = 0; i < len; i++) {
		uint64_t pos = off + i;
		uint64_t word = test_mix64((pos >> 3) ^ ((uint64_t)seed << 40));
		p[i] = (uint8_t)(word >> (8 * (pos & 7)));
	}
}

void test_write_file(const char *path, uint64_t size, uint32_t seed)
{
	FILE *f = fopen(path, "wb");
	if (!f) {
		perror(path);
		abort();
	}
	static uint8_t chunk[1 << 16];
	for (uint64_t off = 0; off < size; off += sizeof(chunk)) {
		size_t n = size - off < sizeof(chunk) ? (size_t)(size - off) : sizeof(chunk);
		test_fill_pattern(chunk, n, off, seed);
		if (fwrite(chunk, 1, n, f) != n) {
			perror(path);
			abort();
		}
	}
	fclose(f);
}

int test_run(char *out, size_t out_size, const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	char full[4200];
	snprintf(full, sizeof(full), "(%s) 2>&1", cmd);
	FILE *p = popen(full, "r");
	if (!p)
		return -1;
	size_t used = 0;
	char sink[4096];
	for (;;) {
		char *dst = out && used + 1 < out_size ? out + used : sink;
		size_t room = out && used + 1 < out_size ? out_size - used - 1 : sizeof(sink);
		size_t n = fread(dst, 1, room, p);
		if (n == 0)
			break;
		if (dst != sink)
			used += n;
	}
	if (out && out_size)
		out[used] = 0;
	int status = pclose(p);
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return -1;
}

int test_run_vdisk(char *out, size_t out_size, const char *fmt, ...)
{
	char args[3000];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	return test_run(out, out_size, "'%s' %s", getenv("VDISK"), args);
}

void test_findings_text(json_t *findings, char *text, size_t size)
{
	size_t i, used = 0;
	json_t *f;
	text[0] = 0;
	json_array_foreach (findings, i, f) {
		int n = snprintf(text + used, size - used, "[%s] %s\n",
				 json_string_value(json_object_get(f, "severity")),
				 json_string_value(json_object_get(f, "message")));
		if (n > 0 && used + (size_t)n < size)
			used += (size_t)n;
	}
}

const char *test_vdisk_binary(void)
{
	const char *vdisk = getenv("VDISK");
	if (vdisk && access(vdisk, X_OK) == 0)
		return vdisk;
	fprintf(stderr, "VDISK must name the vdisk binary (run through ctest)\n");
	return NULL;
}

int test_teardown_tmpdir(void **state)
{
	(void)state;
	test_tmpdir_remove();
	return 0;
}

void test_file_read(const char *path, void *buf, size_t len, uint64_t off)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fail_msg("open %s: %s", path, strerror(errno));
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));
		if (n <= 0)
			fail_msg("pread %s at %llu: %s", path, (unsigned long long)(off + done),
				 n < 0 ? strerror(errno) : "end of file");
		done += (size_t)n;
	}
	close(fd);
}

void test_file_write(const char *path, const void *buf, size_t len, uint64_t off)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		fail_msg("open %s: %s", path, strerror(errno));
	ssize_t n = pwrite(fd, buf, len, (off_t)off);
	if (n < 0 || (size_t)n != len)
		fail_msg("pwrite %s at %llu: %s", path, (unsigned long long)off,
			 n < 0 ? strerror(errno) : "short");
	close(fd);
}

void *test_xmalloc(size_t len)
{
	void *p = malloc(len ? len : 1);
	assert_non_null(p);
	return p;
}

void *test_aligned_buf(size_t len)
{
	void *p = NULL;
	assert_int_equal(posix_memalign(&p, 4096, len ? len : 1), 0);
	memset(p, 0xA5, len);
	return p;
}

void test_expect_equal(const void *got, const void *want, size_t len, const char *what,
		       uint64_t base)
{
	const uint8_t *g = got, *w = want;
	for (size_t i = 0; i < len; i++)
		if (g[i] != w[i])
			fail_msg("%s: byte at offset %llu is 0x%02x, expected 0x%02x", what,
				 (unsigned long long)(base + i), g[i], w[i]);
}

void test_expect_pattern(const void *got, size_t len, uint64_t off, uint32_t seed, const char *what)
{
	uint8_t *want = test_xmalloc(len);
	test_fill_pattern(want, len, off, seed);
	test_expect_equal(got, want, len, what, off);
	free(want);
}
