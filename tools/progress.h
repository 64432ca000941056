/* A progress bar on stderr for long commands (convert, compact, merge, ...).
 *
 * Shown when stderr is a terminal, or always with -p (force); never with --json output
 * going to a terminal-less pipe unless forced. Redraws at most ten times a second, so
 * calling progress_update for every request costs nothing.
 */
#ifndef HV_TOOLS_PROGRESS_H
#define HV_TOOLS_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

struct progress {
	const char *label;
	bool enabled;
	uint64_t last_draw_ns;
	int last_permille;
	bool drawn;
};

/* force: -p was given. label is shown before the bar ("converting"). */
void progress_init(struct progress *p, const char *label, bool force);
/* done out of total (any unit, usually bytes). */
void progress_update(struct progress *p, uint64_t done, uint64_t total);
/* Draws 100% (when something was drawn) and ends the line. */
void progress_finish(struct progress *p);

/* Adapter for vdisk_progress_fn (vdisk.h): opaque is a struct progress. */
void progress_cb(void *opaque, uint64_t done, uint64_t total);

#endif
