/* The power-cut recorder: an I/O engine that wraps the synchronous engine and journals
 * every change an image file goes through, and the construction of the file a power cut
 * at any point of that journal could leave behind.
 *
 * Recording. crash_journal_start() installs two test-only hooks of storage/: an engine
 * override (engine_set_override), so every queue opened from then on runs on the crash
 * engine, and a file observer (vdisk_file_set_observer), which sees the synchronous
 * metadata I/O drivers do outside the engines (vdisk_file_pwrite, vdisk_file_set_size,
 * vdisk_file_sync). The crash engine performs every operation for real, through the
 * synchronous engine, so the image under test behaves normally; it journals WRITE (with a
 * copy of the bytes), FALLOCATE and FDATASYNC, and the observer journals pwrite, truncate
 * and fdatasync. Each operation gets two numbers from one sequence: when it was submitted
 * and when it completed (the sequence also numbers the caller's own markers, so a
 * workload can say where its requests started and ended in the same time line).
 *
 * The durability model (see crash_journal_build). A power cut at sequence c keeps
 * everything that happened before c and nothing after it, and of what happened:
 * - An fdatasync F of file f that completed before c makes durable every operation on f
 *   that completed before F was submitted (D = the latest such submission). Operations
 *   that completed after F was submitted, even before F completed, are not covered.
 * - Every other write or fallocate submitted before c (in flight or completed, not
 *   covered) is independently dropped, kept, or torn: kept for some 4 KiB pieces (aligned
 *   to the file, as the page cache and the device write them) and dropped for the others.
 *   Dropped bytes show what was there before: the older content, or zeros past the old
 *   end of the file. A write or fallocate that failed is taken as never done.
 * - A buffered write (vdisk_file_pwrite, or an engine write that went to the buffered
 *   descriptor) is journaled as the whole pages it dirtied, with their content right
 *   after it: writeback writes pages, not the bytes of one write. Direct writes are
 *   journaled as they are.
 * - The file size. Truncates and writes or fallocates that extend the file change its
 *   size; like metadata in a journaling file system, size changes persist in order: the
 *   durable ones (covered by a flush as above) always, and of the others a random
 *   prefix (possibly empty, possibly all). Data past the size the cut leaves is lost,
 *   and size that no kept write filled reads as zeros. This is conservative for ext4
 *   (data=ordered never exposes a size whose data was not written, but a volatile device
 *   cache can) and keeps drivers honest about extending the file before using the space.
 * Operations are applied in submission order. Two writes to the same place in flight at
 * once may land in either order; the model picks submission order, which is what the
 * synchronous engine executes. The synchronous engine does not hide ordering bugs: a
 * write queued together with an fdatasync runs before it, but is not covered by it,
 * because it had not completed when the fdatasync was submitted.
 *
 * One journal records at a time (the hooks are process-wide).
 */
#ifndef HV_TESTS_CRASH_ENGINE_H
#define HV_TESTS_CRASH_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"

#define CRASH_NEVER UINT64_MAX /* complete: not (yet) completed */
#define CRASH_PIECE 4096u      /* tearing granularity */

enum crash_op_kind {
	CRASH_WRITE,
	CRASH_FALLOCATE,
	CRASH_TRUNCATE,
	CRASH_SYNC,
};

struct crash_op {
	enum crash_op_kind kind;
	unsigned file;	   /* index from crash_journal_track */
	bool via_engine;   /* false: vdisk_file_* outside the engines */
	uint64_t submit;   /* sequence numbers */
	uint64_t complete; /* CRASH_NEVER until completed */
	int result;	   /* 0 or -errno once completed */
	uint64_t offset;   /* WRITE, FALLOCATE; TRUNCATE: the new size */
	uint64_t len;	   /* WRITE, FALLOCATE */
	int mode;	   /* FALLOCATE: FALLOC_FL_* */
	bool sizes;	   /* changed the file size when it ran (truncate, extension) */
	uint8_t *data;	   /* WRITE: copy of the bytes */
};

struct crash_journal;

/* The engine that records: engine_sync_ops plus journaling. Installed by
 * crash_journal_start; exposed for tests of the recorder itself. */
extern const struct engine_ops crash_engine_ops;

int crash_journal_create(struct crash_journal **out);
void crash_journal_free(struct crash_journal *j);

/* Tracks path: its content now is its initial state. Only tracked files may be written
 * while recording (others are counted in crash_journal_untracked). Returns the index
 * (>= 0) or -errno. */
int crash_journal_track(struct crash_journal *j, const char *path);
unsigned crash_journal_files(const struct crash_journal *j);
const char *crash_journal_path(const struct crash_journal *j, unsigned file);

/* Installs the hooks (engine override, file observer) / removes them. */
void crash_journal_start(struct crash_journal *j);
void crash_journal_stop(struct crash_journal *j);

/* Takes the next sequence number for an event of the caller's. Thread-safe. */
uint64_t crash_journal_mark(struct crash_journal *j);
/* The sequence number the next event will get: cuts lie in [0, crash_journal_end]. */
uint64_t crash_journal_end(const struct crash_journal *j);

/* The journal, in submission order. Stable once recording has stopped. */
size_t crash_journal_count(const struct crash_journal *j);
const struct crash_op *crash_journal_op(const struct crash_journal *j, size_t index);
/* Changes to files nobody tracked, and operations the model does not know (fallocate
 * modes other than allocate, punch hole, zero range): both must stay 0. */
unsigned crash_journal_untracked(const struct crash_journal *j);
unsigned crash_journal_unsupported(const struct crash_journal *j);
/* Largest size a tracked file reached (buffer size for crash_journal_build). */
uint64_t crash_journal_max_size(const struct crash_journal *j, unsigned file);

/* How to treat the operations a cut leaves undecided. */
enum crash_policy {
	CRASH_MIXED,	/* each one dropped, kept or torn at random */
	CRASH_KEEP_ALL, /* everything issued landed */
	CRASH_DROP_ALL, /* nothing after the last covering flush landed */
};

struct crash_stats {
	unsigned durable; /* operations covered by a flush */
	unsigned pending; /* issued, not covered: decided at random */
	unsigned kept, dropped, torn;
	unsigned size_ops;   /* size changes not covered */
	unsigned size_kept;  /* of which the cut keeps (a prefix) */
	uint64_t last_flush; /* D: submission of the latest covering flush (0: none) */
};

/* Builds the content of tracked file `file` after a power cut at sequence cut, deciding
 * what is undecided with a generator seeded by seed. buf must hold
 * crash_journal_max_size() bytes; *size receives the file size. */
void crash_journal_build(const struct crash_journal *j, unsigned file, uint64_t cut, uint64_t seed,
			 enum crash_policy policy, uint8_t *buf, uint64_t *size,
			 struct crash_stats *stats);

/* Writes len bytes of buf to path (created or replaced). Returns 0 or -errno. */
int crash_write_file(const char *path, const uint8_t *buf, uint64_t len);

#endif
