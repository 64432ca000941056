/* The format driver interface and the registry that probes images by content.
 *
 * A driver receives requests the block layer has already range-checked, maps them onto its
 * file and issues the file I/O through the request's queue (vdisk_req_file_io), then ends
 * the request with vdisk_req_end. Drivers never touch file descriptors.
 */
#ifndef HV_STORAGE_FORMAT_H
#define HV_STORAGE_FORMAT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "errmsg.h"
#include "file.h"
#include "iov.h"
#include "vdisk.h"

enum vdisk_op {
	VDISK_OP_READ,
	VDISK_OP_WRITE,
	VDISK_OP_FLUSH,
	VDISK_OP_DISCARD,
	VDISK_OP_WRITE_ZEROES,
};

struct vdisk_req {
	struct vdisk *disk;
	struct vdisk_queue *queue;
	enum vdisk_op op;
	const struct iovec *iov;
	int iovcnt;
	uint64_t offset;
	uint64_t length;
	vdisk_cb cb;
	void *opaque;

	unsigned pending; /* file operations in flight for this request, plus one while issuing */
	int result;	  /* first error seen */
	bool submitting;  /* inside the driver's submit call: completion must be deferred */
	struct engine_io io; /* the first file operation needs no allocation */
	bool io_busy;
	struct vdisk_req *next;
};

/* What probing sees of a file: its first bytes and its last 512 bytes. */
struct vdisk_probe {
	const uint8_t *head;
	size_t head_len;
	const uint8_t *tail; /* last 512 bytes (fewer when the file is shorter) */
	size_t tail_len;
	uint64_t file_size;
};

#define VDISK_PROBE_HEAD 65536

struct vdisk_format {
	const char *name;
	/* 0: not this format; 1..100: confidence. Raw answers 1 to anything. */
	int (*probe)(const struct vdisk_probe *probe);
	/* Parses the image on disk->file, sets disk->size and disk->priv. */
	int (*open)(struct vdisk *disk, char *err, size_t err_size);
	void (*close)(struct vdisk *disk);
	void (*readv)(struct vdisk_req *req);
	void (*writev)(struct vdisk_req *req);
	void (*flush)(struct vdisk_req *req);
	void (*discard)(struct vdisk_req *req);
	void (*write_zeroes)(struct vdisk_req *req);
	int (*block_status)(struct vdisk *disk, uint64_t offset, uint64_t length,
			    struct vdisk_extent *ext);
	int (*get_info)(struct vdisk *disk, struct vdisk_info *info);
	int (*check)(struct vdisk *disk, unsigned flags, struct vdisk_check_result *result);
	int (*create)(const char *path, const struct vdisk_create_options *opts, char *err,
		      size_t err_size);
	/* Maintenance (see vdisk.h); NULL when the format cannot. The block layer has checked
	 * that the disk is writable and, for a shrinking resize, that no data is lost (or
	 * VDISK_RESIZE_FORCE). The disk stays usable at its new size afterwards. */
	int (*resize)(struct vdisk *disk, uint64_t new_size, char *err, size_t err_size);
	int (*compact)(struct vdisk *disk, vdisk_progress_fn progress, void *opaque,
		       struct vdisk_compact_result *result, char *err, size_t err_size);
	int (*set_parent)(struct vdisk *disk, const char *parent_path, unsigned flags, char *err,
			  size_t err_size);
};

/* The block layer's view of an open disk, shared with the drivers. */
struct vdisk {
	const struct vdisk_format *format;
	struct vdisk_file *file;
	uint64_t size;
	uint32_t logical_sector_size;
	uint32_t physical_sector_size;
	bool read_only;
	struct vdisk_options opts;
	void *priv;		     /* the driver's */
	struct vdisk_queue **queues; /* of the top of the chain; owned only by the top */
	unsigned nqueues;
	struct vdisk *top;     /* the image the consumer opened; itself for the top */
	struct vdisk *child;   /* for a backing image: the image it backs */
	struct vdisk *backing; /* the image below (set by vdisk_open_backing), or NULL */
	unsigned depth;	       /* 0 for the top, 1 for its backing image, ... */
	/* Writes must cover whole units of this many bytes (1: any). The block layer turns
	 * other writes into read-modify-write before the driver sees them. */
	uint32_t write_granularity;
	pthread_mutex_t rmw_lock;
	struct rmw *rmw_active; /* read-modify-writes in progress */
	char engine_fallback[200];
};

/* The image types VHD and VHDX share, from create options: the type asked for (default:
 * differencing with a parent, dynamic without), checked against the parent option.
 * format names the format in the reason. 0 or -EINVAL. */
enum vdisk_image_type { VDISK_TYPE_FIXED, VDISK_TYPE_DYNAMIC, VDISK_TYPE_DIFFERENCING };
int vdisk_create_type(const struct vdisk_create_options *o, const char *format,
		      enum vdisk_image_type *type, char *err, size_t err_size);

/* Registry. Raw is built in; other drivers register before the first vdisk_open. */
int vdisk_format_register(const struct vdisk_format *format);
const struct vdisk_format *vdisk_format_find(const char *name);
/* The registered formats in registration order; NULL after the last. */
const struct vdisk_format *vdisk_format_at(unsigned index);

/* Driver request functions issue file I/O for the request and return. The request ends
 * (its callback runs) when every file operation issued for it has completed and every
 * reference taken with vdisk_req_hold has been dropped with vdisk_req_end. An error is
 * recorded with vdisk_req_hold + vdisk_req_end(req, -errno); the first one wins. */

/* Issues one file operation for req on its queue. */
void vdisk_req_file_io(struct vdisk_req *req, enum engine_op op, struct vdisk_file *file,
		       const struct iovec *iov, int iovcnt, uint64_t offset, uint64_t length,
		       int fallocate_mode);
/* Takes a reference that keeps the request open (for work that finishes later). */
void vdisk_req_hold(struct vdisk_req *req);
/* Drops a reference; result (0 or -errno) is recorded if it is the first error. */
void vdisk_req_end(struct vdisk_req *req, int result);

/* Records an error for the request (the first one wins) without ending it. */
void vdisk_req_set_error(struct vdisk_req *req, int error);
/* Ends the request's part that failed before issuing anything: hold + end(error). */
void vdisk_req_fail(struct vdisk_req *req, int error);

/* File I/O on a window of the request's buffer: bytes [skip, skip + len) of req->iov move
 * to or from file_offset. */
void vdisk_req_file_io_part(struct vdisk_req *req, enum engine_op op, struct vdisk_file *file,
			    uint64_t skip, uint64_t len, uint64_t file_offset);
/* Reads bytes [skip, skip + len) of the request's buffer from a backing image at offset
 * (which must lie inside it). */
void vdisk_req_backing_read(struct vdisk_req *req, struct vdisk *backing, uint64_t skip,
			    uint64_t len, uint64_t offset);
/* Makes [offset, offset + len) of a file read as zeros: FALLOC_FL_ZERO_RANGE where the
 * file system has it, written zeros otherwise. */
void vdisk_req_zero_file(struct vdisk_req *req, struct vdisk_file *file, uint64_t offset,
			 uint64_t len);
/* Writes zeros to [offset, offset + len) of the request's own disk through its write path
 * (so a format allocates or masks its backing image as it must). */
void vdisk_req_write_zeroes_via(struct vdisk_req *req, uint64_t offset, uint64_t len);
/* An iovec of len zero bytes (len <= VDISK_ZERO_MAX) that stays valid forever, or NULL
 * when memory is short. */
#define VDISK_ZERO_MAX (1u << 20)
const struct iovec *vdisk_zero_iov(uint64_t len);

/* The engine of a queue, for drivers that run operations of their own (metadata). */
struct engine *vdisk_queue_engine(struct vdisk_queue *q);

/* Opens a backing image (the parent of a differencing image) read-only for disk (read-write
 * at the top's writable_depth). It shares the queues of the top of the chain, so requests
 * on it complete on the same threads. Refuses loops and chains deeper than
 * VDISK_MAX_CHAIN. Drivers do not call it when disk->opts.no_backing is set (and then
 * tolerate a parent path that does not resolve); their parent stays NULL, and
 * vdisk_req_backing_read and friends fail reads from a NULL backing with -ENODATA. */
#define VDISK_MAX_CHAIN 64
int vdisk_open_backing(struct vdisk *disk, const char *path, struct vdisk **out, char *err,
		       size_t err_size);

/* For formats that map the disk in blocks of block_size bytes: */
/* calls fn for each piece of the request that lies inside one block; */
void vdisk_req_for_each_block(struct vdisk_req *req, uint64_t block_size,
			      void (*fn)(struct vdisk_req *req, uint64_t skip, uint64_t len,
					 uint64_t offset));
/* reads a piece from a backing image that may be smaller than this one (zeros past it); */
void vdisk_req_read_backing_clipped(struct vdisk_req *req, struct vdisk *backing, uint64_t skip,
				    uint64_t len, uint64_t offset);
/* block status from a function giving the status of a run inside one block. */
int vdisk_block_status_by_runs(struct vdisk *disk, uint64_t offset, uint64_t length,
			       uint64_t block_size,
			       int (*run_fn)(struct vdisk *disk, uint64_t pos, uint64_t n,
					     unsigned *flags, uint64_t *run),
			       struct vdisk_extent *ext);

/* Metadata jobs: a driver's own file operations, run on one queue, outside any request.
 * stage_done runs (from that queue's poll) when every operation issued so far has
 * completed; it may issue the next stage. */
struct vdisk_job {
	struct vdisk *disk;
	struct vdisk_queue *queue;
	unsigned pending;
	int result; /* first error */
	void (*stage_done)(struct vdisk_job *job);
};
void vdisk_job_io(struct vdisk_job *job, enum engine_op kind, const struct iovec *iov, int iovcnt,
		  uint64_t offset);
void vdisk_job_write(struct vdisk_job *job, void *buf, size_t len, uint64_t offset);
void vdisk_job_fail(struct vdisk_job *job, int error);
/* Call after issuing a stage: moves on at once when nothing could be issued. */
void vdisk_job_issued(struct vdisk_job *job);

/* Held requests waiting for a driver's job (flushes waiting for a write-back), linked
 * through vdisk_req.next, which is free while a request is inside its driver. */
struct vdisk_req_list {
	struct vdisk_req *head, *tail;
};
/* Holds req and appends it (under the driver's lock). */
void vdisk_req_list_push(struct vdisk_req_list *list, struct vdisk_req *req);
/* Takes every request of the list (under the driver's lock). */
struct vdisk_req *vdisk_req_list_take(struct vdisk_req_list *list);
/* Ends each request taken, with result, on its own queue. */
void vdisk_req_list_end(struct vdisk_req *first, struct vdisk_queue *current, int result);

/* Ends a held request with result on its own queue's thread: directly when current is its
 * queue, otherwise through vdisk_queue_post. */
void vdisk_req_end_on_queue(struct vdisk_req *req, struct vdisk_queue *current, int result);

/* For multi-step operations: a driver takes an engine_io, fills op, file, iov, offset and
 * its own done(), and submits it; each done() ends by releasing the io with
 * vdisk_req_io_put(), which drops the reference the io held on the request. */
struct engine_io *vdisk_req_io_get(struct vdisk_req *req);
void vdisk_req_io_submit(struct vdisk_req *req, struct engine_io *io);
void vdisk_req_io_put(struct vdisk_req *req, struct engine_io *io, int result);

extern const struct vdisk_format vdisk_format_raw;
/* Raw compaction (format_raw_compact.c). */
int vdisk_raw_compact(struct vdisk *disk, vdisk_progress_fn progress, void *opaque,
		      struct vdisk_compact_result *result, char *err, size_t err_size);
/* What every compaction keeps as it goes (format_raw_compact.c): progress in units of
 * work, and why it failed. */
struct vdisk_compact_ctx {
	vdisk_progress_fn progress;
	void *opaque;
	uint64_t done, total;
	char *err;
	size_t err_size;
};
/* Writes "what: reason" into err and returns ret (-errno). */
int vdisk_compact_fail(struct vdisk_compact_ctx *c, int ret, const char *what);
/* Counts units of work done and reports the progress. */
void vdisk_compact_advance(struct vdisk_compact_ctx *c, uint64_t units);
/* Compaction of sparse formats (format_raw_compact.c): one block of disk, its data at
 * file_offset in disk's file, covering [offset, offset + length) of the virtual disk in
 * sectors of sector_size bytes; present(ctx, i) says whether sector i of the block is
 * stored in it (NULL: every sector is). below is the image it lies over (NULL: zeros). */
struct vdisk_block {
	struct vdisk *disk;
	uint64_t file_offset, offset, length;
	uint32_t sector_size;
	bool (*present)(const void *ctx, uint64_t sector);
	const void *ctx;
	struct vdisk *below;
};
struct vdisk_block_view {
	bool masks_nothing; /* every stored sector equals what below shows: the block can go */
	bool reads_zero;    /* the block reads as zeros */
};
int vdisk_block_compare(const struct vdisk_block *block, struct vdisk_block_view *view);
/* Moving blocks down a file so that it can be cut shorter (format_raw_compact.c). used[]
 * lists what lies in the file, in any order: metadata (index VDISK_SPAN_FIXED) and blocks
 * (index: the caller's, e.g. the table entry). From the block that ends last down, each
 * moves to the lowest free space below it that holds it, until one cannot; a block is
 * placed where start + skew is a multiple of align, or else (when that does not fit) of
 * min_align. The plan lists the moves in that order (a destination is never space a
 * block moved away from) and the end of the last used byte after them. used[] is sorted
 * and changed. Returns 0 or -ENOMEM. */
#define VDISK_SPAN_FIXED UINT64_MAX
struct vdisk_span {
	uint64_t start, end, index;
};
struct vdisk_move {
	uint64_t index, from, to, len;
};
struct vdisk_move_plan {
	struct vdisk_move *moves; /* free() */
	size_t nmoves;
	uint64_t end;
};
/* Sorts spans by start (check and compaction both walk a file's spans in order). */
void vdisk_spans_sort(struct vdisk_span *spans, size_t n);
int vdisk_plan_moves(struct vdisk_span *used, size_t nused, uint64_t align, uint64_t skew,
		     uint64_t min_align, struct vdisk_move_plan *plan);
/* Copies len bytes of a file from one offset to another (synchronously, not flushed). */
int vdisk_file_copy(struct vdisk_file *file, uint64_t from, uint64_t to, uint64_t len);

#endif
