/* Power cuts during an offline operation (resize, compact, merge, rebase).
 *
 * The operation runs once, for real, under the recorder (crash_engine.h) with the files it
 * may change tracked. Then, for cut points spread over the recording (three in four
 * anywhere, one in four right around an fdatasync, a size change or a write outside the
 * engines, where ordering matters most), the files the cut leaves are built with a random
 * policy (keep all, drop all, or each pending write kept, dropped or torn at 4 KiB) and
 * written into a directory of their own under the same file names, next to links to the
 * files the operation only reads, so that relative parent locators still resolve. The
 * caller's check() judges them: it opens the images, reads them, checks them.
 * The cut after the last event (the operation finished) is always among the cuts.
 *
 * Environment: HVSTACK_CRASH_SEED (default: from the clock; printed with every failure),
 * HVSTACK_CRASH_OFFLINE_POINTS (cuts per case; default the caller's number).
 */
#ifndef HV_TESTS_CRASH_OFFLINE_H
#define HV_TESTS_CRASH_OFFLINE_H

#include <stddef.h>
#include <stdint.h>

struct crash_offline {
	const char *name;	  /* of the case, for messages */
	const char *const *paths; /* files the operation may change (tracked) */
	unsigned npaths;
	const char *const *read_paths; /* files it only reads (linked into each cut's dir) */
	unsigned nread_paths;
	/* The operation; recorded. Returns 0 or -errno (a failure fails the case). */
	int (*run)(void *opaque);
	/* Judges the files one cut leaves: cut_paths[i] stands for paths[i]. cut is the
	 * sequence number of the cut and end the last one (cut == end: the operation
	 * completed). Returns 0 when the state is acceptable, otherwise -1 with a reason. */
	int (*check)(void *opaque, const char *const *cut_paths, uint64_t cut, uint64_t end,
		     char *why, size_t why_size);
	void *opaque;
};

/* Records c->run, checks `cuts` cut points in scratch_dir (which must exist), prints each
 * of the first failures with what reproduces it. Returns the number of failed cuts, or
 * UINT32_MAX when the recording itself failed (the operation failed, a change escaped the
 * journal, or the files as recorded differ from the real ones). */
unsigned crash_offline_run(const struct crash_offline *c, unsigned cuts, const char *scratch_dir);

#endif
