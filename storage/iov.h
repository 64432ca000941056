/* iovec helpers for drivers that split a request's buffer. */
#ifndef HV_STORAGE_IOV_H
#define HV_STORAGE_IOV_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

/* iovec entries that slices keep inline before they need the heap. */
#define IOV_INLINE 8

uint64_t iov_size(const struct iovec *iov, int iovcnt);
/* Describes bytes [skip, skip + len) of iov in out (at most max entries). Returns the
 * number of entries, or -E2BIG when more than max are needed. */
int iov_slice(const struct iovec *iov, int iovcnt, uint64_t skip, uint64_t len, struct iovec *out,
	      int max);
/* The same into a malloc'd array (*out, freed by the caller). Returns the count or -errno. */
int iov_slice_alloc(const struct iovec *iov, int iovcnt, uint64_t skip, uint64_t len,
		    struct iovec **out);
/* Sets bytes [skip, skip + len) of iov to c. */
void iov_memset(const struct iovec *iov, int iovcnt, uint64_t skip, int c, uint64_t len);
/* Copies between a flat buffer and bytes [skip, skip + len) of iov. */
void iov_to_buf(const struct iovec *iov, int iovcnt, uint64_t skip, void *buf, uint64_t len);
void iov_from_buf(const struct iovec *iov, int iovcnt, uint64_t skip, const void *buf,
		  uint64_t len);
/* Whether bytes [skip, skip + len) of iov are all zero. */
bool iov_is_zero(const struct iovec *iov, int iovcnt, uint64_t skip, uint64_t len);

#endif
