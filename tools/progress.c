#include "progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define BAR_WIDTH 40
#define REDRAW_NS 100000000ull

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void progress_init(struct progress *p, const char *label, bool force)
{
	*p = (struct progress){ .label = label,
				.enabled = force || isatty(STDERR_FILENO),
				.last_permille = -1 };
}

static void draw(struct progress *p, int permille)
{
	int fill = permille * BAR_WIDTH / 1000;
	char bar[BAR_WIDTH + 1];
	for (int i = 0; i < BAR_WIDTH; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[BAR_WIDTH] = 0;
	fprintf(stderr, "\r%s [%s] %3d.%d%%", p->label, bar, permille / 10, permille % 10);
	fflush(stderr);
	p->drawn = true;
	p->last_permille = permille;
}

void progress_update(struct progress *p, uint64_t done, uint64_t total)
{
	if (!p->enabled)
		return;
	int permille = total ? (int)(done >= total ? 1000 : done * 1000 / total) : 1000;
	if (permille == p->last_permille)
		return;
	uint64_t now = now_ns();
	if (p->drawn && now - p->last_draw_ns < REDRAW_NS && permille < 1000)
		return;
	p->last_draw_ns = now;
	draw(p, permille);
}

void progress_finish(struct progress *p)
{
	if (!p->enabled || !p->drawn)
		return;
	if (p->last_permille != 1000)
		draw(p, 1000);
	fputc('\n', stderr);
	fflush(stderr);
}

void progress_cb(void *opaque, uint64_t done, uint64_t total)
{
	progress_update(opaque, done, total);
}
