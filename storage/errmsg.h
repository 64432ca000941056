/* The one-line reasons that go with -errno returns (the err/err_size pairs of vdisk.h and
 * the driver interface). */
#ifndef HV_STORAGE_ERRMSG_H
#define HV_STORAGE_ERRMSG_H

#include <stddef.h>

/* Formats the reason into err and returns ret, so that
 * `return vdisk_errorf(err, err_size, -EINVAL, "...")` reports and fails in one step. */
int vdisk_errorf(char *err, size_t err_size, int ret, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* "what: strerror(-ret)" into err; returns ret. */
int vdisk_error_errno(char *err, size_t err_size, int ret, const char *what);

#endif
