/* The block layer: one request API for every consumer of a virtual disk.
 *
 * A struct vdisk is an image opened by path and probed by content through the format
 * registry. I/O goes through queues: a struct vdisk_queue belongs to one thread and owns
 * one I/O engine instance (io_uring by default, libaio or synchronous as fallbacks).
 * Requests are asynchronous: vdisk_readv() and friends queue the request and return; the
 * completion callback runs later, from vdisk_queue_poll() on the queue's thread, with 0 or
 * -errno. Submission is batched: queued requests reach the kernel at the next
 * vdisk_queue_kick() or vdisk_queue_poll().
 *
 * The caller's iovec array and buffers must stay valid until the callback has run.
 * Offsets and lengths are in bytes and are range-checked against the virtual size here,
 * before any format driver sees them.
 */
#ifndef HV_STORAGE_VDISK_H
#define HV_STORAGE_VDISK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

struct vdisk;
struct vdisk_queue;
typedef struct json_t json_t;

typedef void (*vdisk_cb)(void *opaque, int result);

enum vdisk_engine_kind {
	VDISK_ENGINE_AUTO = 0, /* io_uring, falling back to libaio, then sync */
	VDISK_ENGINE_URING,
	VDISK_ENGINE_AIO,
	VDISK_ENGINE_SYNC,
};

enum vdisk_cache_mode {
	VDISK_CACHE_DIRECT = 0, /* O_DIRECT: the host page cache is bypassed */
	VDISK_CACHE_WRITEBACK,  /* buffered I/O; flush makes writes durable */
};

struct vdisk_options {
	bool read_only;
	enum vdisk_cache_mode cache;
	enum vdisk_engine_kind engine;
	unsigned queues;      /* number of queues; 0 means 1 */
	unsigned queue_depth; /* requests in flight per queue the engine is sized for; 0: 128 */
	const char *format;   /* force a format by name instead of probing; NULL probes */
	bool no_lock;         /* skip the advisory image lock (tests that open twice) */
	bool allow_parent_mismatch; /* open a chain whose parent identity does not match */
	bool for_repair; /* open a damaged image for vdisk_check(VDISK_CHECK_REPAIR): bad
			  * metadata is masked in memory and repaired, not refused */
	bool discard_zeroes; /* discard writes zeros (a device that promises zeros after
			      * unmap); otherwise formats that cannot free space keep data */
	bool no_backing; /* a differencing image opens without its parent (rebase after the
			  * parent moved, one layer's map): reading a range it does not hold
			  * fails with -ENODATA */
	unsigned writable_depth; /* merge: the image this deep in the chain (1: the parent)
				  * is opened read-write too, see vdisk_backing(); 0: none */
};

/* Opens path. On failure returns -errno and, when err is not NULL, a one-line reason
 * (without the path) in err. */
int vdisk_open(const char *path, const struct vdisk_options *opts, struct vdisk **out,
	       char *err, size_t err_size);
/* Closes the disk; every request must have completed. */
void vdisk_close(struct vdisk *disk);

uint64_t vdisk_size(const struct vdisk *disk);
const char *vdisk_format_name(const struct vdisk *disk);
const char *vdisk_path(const struct vdisk *disk);
bool vdisk_read_only(const struct vdisk *disk);
/* Engine name actually in use ("io_uring", "libaio", "sync") and, when the requested one
 * was unavailable, why it fell back (NULL otherwise). */
const char *vdisk_engine_name(const struct vdisk *disk);
const char *vdisk_engine_fallback_reason(const struct vdisk *disk);

unsigned vdisk_queue_count(const struct vdisk *disk);
struct vdisk_queue *vdisk_queue(struct vdisk *disk, unsigned index);

/* Requests. A non-zero return means the request was refused (bad range, read-only disk,
 * out of memory) and the callback will not run. */
int vdisk_readv(struct vdisk *disk, struct vdisk_queue *q, const struct iovec *iov, int iovcnt,
		uint64_t offset, vdisk_cb cb, void *opaque);
int vdisk_writev(struct vdisk *disk, struct vdisk_queue *q, const struct iovec *iov, int iovcnt,
		 uint64_t offset, vdisk_cb cb, void *opaque);
int vdisk_flush(struct vdisk *disk, struct vdisk_queue *q, vdisk_cb cb, void *opaque);
/* Discard: the range may read back as anything afterwards (zeros where the format can). */
int vdisk_discard(struct vdisk *disk, struct vdisk_queue *q, uint64_t offset, uint64_t length,
		  vdisk_cb cb, void *opaque);
/* Write zeroes: the range reads back as zeros afterwards. */
int vdisk_write_zeroes(struct vdisk *disk, struct vdisk_queue *q, uint64_t offset,
		       uint64_t length, vdisk_cb cb, void *opaque);

/* Sends queued requests to the kernel without waiting. */
int vdisk_queue_kick(struct vdisk_queue *q);
/* Sends queued requests, then runs completion callbacks: waits until at least min_complete
 * have completed (0: only those already done). Returns the number of callbacks run or
 * -errno. */
int vdisk_queue_poll(struct vdisk_queue *q, unsigned min_complete);
/* An fd that becomes readable when completions are ready, for event loops. */
int vdisk_queue_event_fd(struct vdisk_queue *q);
/* Requests submitted and not yet completed. */
unsigned vdisk_queue_inflight(const struct vdisk_queue *q);
/* Runs fn(arg) on the queue's thread, from its next vdisk_queue_poll(), which it wakes.
 * Callable from any thread. Returns 0 or -ENOMEM. */
int vdisk_queue_post(struct vdisk_queue *q, void (*fn)(void *arg), void *arg);

/* Block status: what [offset, offset + length) looks like from the start of the range.
 * Fills *ext with one extent starting at offset (length >= 1, possibly shorter than
 * asked). Synchronous; tools and the mirror job use it. */
enum {
	VDISK_EXTENT_DATA = 1 << 0, /* stored in this image */
	VDISK_EXTENT_ZERO = 1 << 1, /* reads as zeros */
	/* neither flag: not in this image, reads from the backing image */
};
struct vdisk_extent {
	uint64_t offset;
	uint64_t length;
	unsigned flags;
};
int vdisk_block_status(struct vdisk *disk, uint64_t offset, uint64_t length,
		       struct vdisk_extent *ext);

/* Facts about an opened image. details is a JSON object owned by the caller (free with
 * json_decref) holding what only the format knows; it may be NULL. */
struct vdisk_info {
	const char *format;
	uint64_t virtual_size;
	uint64_t file_size;      /* bytes of the image file */
	uint64_t allocated_size; /* bytes the host has allocated for it */
	uint32_t logical_sector_size;
	uint32_t physical_sector_size;
	uint32_t cluster_size; /* allocation unit of the format; 0 when not applicable */
	json_t *details;
};
int vdisk_get_info(struct vdisk *disk, struct vdisk_info *info);

/* Consistency check. Each finding is appended to findings (a JSON array owned by the
 * caller) as an object with "severity" ("error", "leak", "fixed") and "message". */
enum {
	VDISK_CHECK_REPAIR = 1 << 0,
};
struct vdisk_check_result {
	unsigned errors;
	unsigned leaks;
	unsigned fixed;
	json_t *findings;
};
int vdisk_check(struct vdisk *disk, unsigned flags, struct vdisk_check_result *result);

/* Creation. Fields a format does not use are ignored; unknown combinations are -EINVAL
 * with a reason in err. */
struct vdisk_create_options {
	const char *format; /* "raw", ... */
	uint64_t size;
	const char *type;   /* format-specific ("fixed", "dynamic", "differencing"); NULL: default */
	uint32_t block_size;
	const char *parent;
	bool sparse;        /* fixed/raw images: leave the data unallocated */
	uint32_t logical_sector_size;  /* formats that record one (VHDX); 0: default */
	uint32_t physical_sector_size;
	bool overwrite;     /* replace an existing file */
};
int vdisk_create(const char *path, const struct vdisk_create_options *opts, char *err,
		 size_t err_size);

/* The image below this one in its chain (the parent of a differencing image), or NULL.
 * It shares the queues of the image the consumer opened. */
struct vdisk *vdisk_backing(struct vdisk *disk);

/* ---- maintenance, for offline tools: the disk is open read-write (unless said) and no
 * request is in flight. Each returns 0 or -errno with a one-line reason in err. ---- */

/* Progress of long work: done out of total units (bytes unless said). */
typedef void (*vdisk_progress_fn)(void *opaque, uint64_t done, uint64_t total);

/* Changes the virtual size. Shrinking refuses with -ENOTEMPTY and the first offset at or
 * past new_size that holds non-zero data in *lost_offset, unless VDISK_RESIZE_FORCE. */
enum { VDISK_RESIZE_FORCE = 1 << 0 };
int vdisk_resize(struct vdisk *disk, uint64_t new_size, unsigned flags, uint64_t *lost_offset,
		 char *err, size_t err_size);

/* Releases blocks that read as all zeros (or are discarded) and shrinks the file. */
struct vdisk_compact_result {
	uint64_t file_size_before;
	uint64_t file_size_after;
	uint64_t blocks_released; /* format blocks (raw: holes punched, in bytes / 4096) */
};
int vdisk_compact(struct vdisk *disk, vdisk_progress_fn progress, void *opaque,
		  struct vdisk_compact_result *result, char *err, size_t err_size);

/* Rebase: records parent_path as the parent of this differencing image (after the parent
 * was moved or renamed). Checks that parent_path is the image this one was made from,
 * unless VDISK_SET_PARENT_UNSAFE. The disk may be opened with no_backing. */
enum { VDISK_SET_PARENT_UNSAFE = 1 << 0 };
int vdisk_set_parent(struct vdisk *disk, const char *parent_path, unsigned flags, char *err,
		     size_t err_size);

/* The synchronous convenience layer, for tools and tests: each call runs one request on
 * queue 0 to completion. Use only from the thread that owns queue 0. */
int vdisk_pread(struct vdisk *disk, void *buf, uint64_t length, uint64_t offset);
int vdisk_pwrite(struct vdisk *disk, const void *buf, uint64_t length, uint64_t offset);
int vdisk_preadv(struct vdisk *disk, const struct iovec *iov, int iovcnt, uint64_t offset);
int vdisk_pwritev(struct vdisk *disk, const struct iovec *iov, int iovcnt, uint64_t offset);
int vdisk_flush_sync(struct vdisk *disk);
int vdisk_discard_sync(struct vdisk *disk, uint64_t offset, uint64_t length);
int vdisk_write_zeroes_sync(struct vdisk *disk, uint64_t offset, uint64_t length);

#endif
