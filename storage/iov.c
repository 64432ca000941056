#include "iov.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

uint64_t iov_size(const struct iovec *iov, int iovcnt)
{
	uint64_t total = 0;
	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	return total;
}

/* Calls fn on each piece of bytes [skip, skip + len); fn returns false to stop. */
static void for_each_piece(const struct iovec *iov, int iovcnt, uint64_t skip, uint64_t len,
			   bool (*fn)(void *base, size_t n, uint64_t done, void *arg), void *arg)
{
	uint64_t done = 0;
	for (int i = 0; i < iovcnt && done < len; i++) {
		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		size_t n = iov[i].iov_len - (size_t)skip;
		if (n > len - done)
			n = (size_t)(len - done);
		if (!fn((uint8_t *)iov[i].iov_base + skip, n, done, arg))
			return;
		done += n;
		skip = 0;
	}
}

struct slice_state {
	struct iovec *out;
	int max;
	int count;
};

static bool slice_piece(void *base, size_t n, uint64_t done, void *arg)
{
	(void)done;
	struct slice_state *s = arg;
	if (s->count < s->max && s->out)
		s->out[s->count] = (struct iovec){base, n};
	s->count++;
	return true;
}

int iov_slice(const struct iovec *iov, int iovcnt, uint64_t skip, uint64_t len, struct iovec *out,
	      int max)
{
	struct slice_state s = {out, max, 0};
	for_each_piece(iov, iovcnt, skip, len, slice_piece, &s);
	return s.count > max ? -E2BIG : s.count;
}

int iov_slice_alloc(const struct iovec *iov, int iovcnt, uint64_t skip, uint64_t len,
		    struct iovec **out)
{
	struct slice_state s = {NULL, 0, 0};
	for_each_piece(iov, iovcnt, skip, len, slice_piece, &s);
	*out = malloc(sizeof(**out) * (size_t)(s.count ? s.count : 1));
	if (!*out)
		return -ENOMEM;
	return iov_slice(iov, iovcnt, skip, len, *out, s.count);
}

static bool set_piece(void *base, size_t n, uint64_t done, void *arg)
{
	(void)done;
	memset(base, *(int *)arg, n);
	return true;
}

void iov_memset(const struct iovec *iov, int iovcnt, uint64_t skip, int c, uint64_t len)
{
	for_each_piece(iov, iovcnt, skip, len, set_piece, &c);
}

static bool to_buf_piece(void *base, size_t n, uint64_t done, void *arg)
{
	memcpy((uint8_t *)arg + done, base, n);
	return true;
}

void iov_to_buf(const struct iovec *iov, int iovcnt, uint64_t skip, void *buf, uint64_t len)
{
	for_each_piece(iov, iovcnt, skip, len, to_buf_piece, buf);
}

static bool from_buf_piece(void *base, size_t n, uint64_t done, void *arg)
{
	memcpy(base, (const uint8_t *)arg + done, n);
	return true;
}

void iov_from_buf(const struct iovec *iov, int iovcnt, uint64_t skip, const void *buf,
		  uint64_t len)
{
	for_each_piece(iov, iovcnt, skip, len, from_buf_piece, (void *)buf);
}

static bool buffer_is_zero(const uint8_t *p, size_t n)
{
	if (n && p[0])
		return false;
	/* compare with itself shifted: zero iff every byte equals the first (zero) byte */
	return n == 0 || memcmp(p, p + 1, n - 1) == 0;
}

static bool zero_piece(void *base, size_t n, uint64_t done, void *arg)
{
	(void)done;
	if (!buffer_is_zero(base, n)) {
		*(bool *)arg = false;
		return false;
	}
	return true;
}

bool iov_is_zero(const struct iovec *iov, int iovcnt, uint64_t skip, uint64_t len)
{
	bool zero = true;
	for_each_piece(iov, iovcnt, skip, len, zero_piece, &zero);
	return zero;
}
