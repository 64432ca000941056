/* I/O engines: one instance per queue, owned by the queue's thread.
 *
 * The common part (engine.c) prepares each struct engine_io (choice of descriptor, bounce
 * buffer when O_DIRECT cannot take the caller's memory), and finishes it (resubmission
 * after a short transfer or -EAGAIN, zero fill at end of file, copy-out of a bounce
 * buffer) before the submitter's done() runs. A backend only moves prepared operations to
 * the kernel and hands raw results back through engine_complete().
 */
#ifndef HV_STORAGE_ENGINE_H
#define HV_STORAGE_ENGINE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "file.h"
#include "vdisk.h"

enum engine_op {
	ENGINE_READ,
	ENGINE_WRITE,
	ENGINE_FDATASYNC,
	ENGINE_FALLOCATE,
};

struct engine;

struct engine_io {
	/* Filled by the submitter. */
	enum engine_op op;
	struct vdisk_file *file;
	const struct iovec *iov; /* READ/WRITE; must stay valid until done() */
	int iovcnt;
	uint64_t offset;
	uint64_t length;    /* FALLOCATE */
	int fallocate_mode; /* FALLOCATE: FALLOC_FL_* */
	void (*done)(struct engine_io *io, int result);
	void *owner; /* free for the submitter */

	/* Engine state; the submitter leaves it alone. */
	int fd;                /* descriptor this attempt goes to */
	bool buffered;         /* going through file->fd_buffered */
	uint64_t total;        /* bytes the READ/WRITE moves */
	uint64_t transferred;  /* bytes already moved (short transfers) */
	struct iovec one;      /* single-segment view: bounce or a resumed transfer */
	struct iovec *rest;    /* multi-segment remainder after a short transfer */
	int rest_cnt;
	void *bounce;
	int prepare_error;      /* preparation failed: delivered from the next poll */
	int64_t local_result;   /* result of an operation a backend ran itself */
	struct engine_io *next; /* engine lists */
	union {
		uint64_t aio_iocb[8]; /* struct iocb storage for the libaio backend */
	} backend;
};

struct engine_ops {
	const char *name;
	/* Returns 0, or -errno with a reason in why (the engine is unavailable). */
	int (*init)(struct engine *e, unsigned depth, char *why, size_t why_size);
	void (*fini)(struct engine *e);
	/* Hands a prepared operation to the backend; never fails (it may keep it pending). */
	void (*queue)(struct engine *e, struct engine_io *io);
	/* Sends what is pending to the kernel. */
	int (*kick)(struct engine *e);
	/* Sends what is pending, waits for at least min raw completions (0: none) and passes
	 * each to engine_complete(). Returns how many of them finished (true from engine_complete)
	 * or -errno. */
	int (*reap)(struct engine *e, unsigned min);
	/* An eventfd signalled on completions; created on first use. */
	int (*event_fd)(struct engine *e);
	/* Optional: a blocking reap must also return when fd becomes readable; the
	 * backend then sets e->woken. */
	void (*watch)(struct engine *e, int fd);
};

struct engine {
	const struct engine_ops *ops;
	void *priv;
	unsigned inflight; /* operations queued and not yet done */
	int wake_fd;       /* watched fd (-1: none) */
	bool woken;        /* wake_fd became readable during a reap */
	struct engine_io *retry_head, *retry_tail; /* to requeue after a partial result */
};

extern const struct engine_ops engine_uring_ops;
extern const struct engine_ops engine_aio_ops;
extern const struct engine_ops engine_sync_ops;

/* Creates an engine of the requested kind. With VDISK_ENGINE_AUTO it tries io_uring, then
 * libaio, then sync, and explains a fallback in why (left empty when none happened).
 * Returns 0 or -errno. */
int engine_create(enum vdisk_engine_kind kind, unsigned depth, struct engine **out, char *why,
		  size_t why_size);
void engine_destroy(struct engine *e);

/* For fault-injection tests only (tests/crash/): while ops is not NULL, engine_create()
 * builds every new engine from ops, whatever kind was asked for, and reports no fallback.
 * NULL restores normal behaviour. Engines created before the call keep their backend. Set
 * it while no other thread creates engines (before opening the images concerned). */
void engine_set_override(const struct engine_ops *ops);

/* Starts an operation. done() runs later, from engine_poll(). */
void engine_submit(struct engine *e, struct engine_io *io);
int engine_kick(struct engine *e);
/* Waits for at least min operations to finish (0: none) and runs their done()
 * callbacks. Returns the number of callbacks run or -errno. */
int engine_poll(struct engine *e, unsigned min);
int engine_event_fd(struct engine *e);
/* Makes engine_poll return early when fd (an eventfd the caller drains) becomes readable. */
void engine_set_wake_fd(struct engine *e, int fd);

/* Reads a fired wake eventfd back to zero, so it does not fire again for the same post. */
void engine_drain_wake(int fd);

/* Marks a completion entry that is a wake-up, not an operation. */
extern char engine_wake_marker;

/* Backends report each raw result (bytes moved or -errno) here. Returns true when the
 * operation finished and done() ran, false when it was requeued. */
bool engine_complete(struct engine *e, struct engine_io *io, int64_t result);

/* The part of a prepared READ/WRITE still to move, as the backend should issue it. */
const struct iovec *engine_io_iov(const struct engine_io *io, int *iovcnt);
uint64_t engine_io_offset(const struct engine_io *io);

#endif
