/* Compaction: raw images dig holes where their data is all zero (as `fallocate
 * --dig-holes` does), and the test VHD and VHDX share to decide whether a block of a sparse
 * image can go. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arith.h"
#include "format.h"

#define PIECE	  (1u << 20) /* bytes read at a time */
#define HOLE_UNIT 4096u	     /* the granularity of punched holes */

static bool is_zero(const uint8_t *p, size_t len)
{
	struct iovec iov = { (void *)p, len };
	return iov_is_zero(&iov, 1, 0, len);
}

int vdisk_compact_fail(struct vdisk_compact_ctx *c, int ret, const char *what)
{
	return vdisk_error_errno(c->err, c->err_size, ret, what);
}

void vdisk_compact_advance(struct vdisk_compact_ctx *c, uint64_t units)
{
	c->done += units;
	if (c->progress)
		c->progress(c->opaque, c->done, c->total);
}

/* ---- raw images ---- */

struct dig {
	struct vdisk *disk;
	uint64_t run_start, run_len; /* zero pages not yet punched */
	uint64_t punched;
};

static int dig_flush_run(struct dig *d)
{
	if (!d->run_len)
		return 0;
	int ret = vdisk_discard_sync(d->disk, d->run_start, d->run_len);
	if (ret == 0)
		d->punched += d->run_len;
	d->run_len = 0;
	return ret;
}

/* Adds a page to the run of zero pages, or ends the run at a page with data. */
static int dig_page(struct dig *d, uint64_t offset, bool zero)
{
	if (zero && d->run_len && d->run_start + d->run_len == offset) {
		d->run_len += HOLE_UNIT;
		return 0;
	}
	int ret = dig_flush_run(d);
	if (zero) {
		d->run_start = offset;
		d->run_len = HOLE_UNIT;
	}
	return ret;
}

/* The whole pages of an allocated extent, a piece at a time. */
static int dig_extent(struct dig *d, uint8_t *buf, uint64_t start, uint64_t end)
{
	start = (start + HOLE_UNIT - 1) / HOLE_UNIT * HOLE_UNIT;
	end = end / HOLE_UNIT * HOLE_UNIT;
	for (uint64_t pos = start; pos < end;) {
		uint64_t n = min_u64(PIECE, end - pos);
		int ret = vdisk_pread(d->disk, buf, n, pos);
		for (uint64_t i = 0; ret == 0 && i < n; i += HOLE_UNIT)
			ret = dig_page(d, pos + i, is_zero(buf + i, HOLE_UNIT));
		if (ret < 0)
			return ret;
		pos += n;
	}
	return dig_flush_run(d);
}

int vdisk_raw_compact(struct vdisk *disk, vdisk_progress_fn progress, void *opaque,
		      struct vdisk_compact_result *result, char *err, size_t err_size)
{
	struct vdisk_compact_ctx c = { progress, opaque, 0, disk->size, err, err_size };
	result->file_size_before = result->file_size_after = disk->file->size;
	if (disk->file->is_block_device) {
		snprintf(err, err_size,
			 "a block device has no holes to punch (discard from the guest, or "
			 "blkdiscard, frees its space)");
		return -ENOTSUP;
	}
	uint8_t *buf = vdisk_alloc_aligned(PIECE);
	if (!buf)
		return vdisk_compact_fail(&c, -ENOMEM, "cannot scan the image");
	struct dig d = { .disk = disk };
	int ret = 0;
	/* Holes are skipped: block status finds the allocated extents (SEEK_DATA). */
	for (uint64_t pos = 0; pos < disk->size && ret == 0;) {
		struct vdisk_extent ext;
		ret = vdisk_block_status(disk, pos, disk->size - pos, &ext);
		if (ret == 0 && !(ext.flags & VDISK_EXTENT_ZERO))
			ret = dig_extent(&d, buf, pos, pos + ext.length);
		pos += ext.length;
		vdisk_compact_advance(&c, ext.length);
	}
	free(buf);
	if (ret == 0)
		ret = vdisk_flush_sync(disk);
	result->blocks_released = d.punched / HOLE_UNIT;
	return ret < 0 ? vdisk_compact_fail(&c, ret, "cannot punch holes in the zero ranges") : 0;
}

/* ---- a block of a sparse image ---- */

struct block_probe {
	const struct vdisk_block *b;
	uint8_t *own, *below;
	struct vdisk_block_view *view;
};

/* The backing image's bytes for [voff, voff + n): zeros past its end or without one. */
static int read_below(const struct vdisk_block *b, uint8_t *buf, uint64_t n, uint64_t voff)
{
	uint64_t have = 0;
	if (b->below && voff < vdisk_size(b->below))
		have = min_u64(n, vdisk_size(b->below) - voff);
	memset(buf + have, 0, n - have);
	return have ? vdisk_pread(b->below, buf, have, voff) : 0;
}

/* Compares one piece (whole sectors) sector by sector. */
static void compare_piece(struct block_probe *p, uint64_t first_sector, uint64_t n)
{
	const struct vdisk_block *b = p->b;
	for (uint64_t i = 0; i < n; i += b->sector_size) {
		uint64_t sector = first_sector + i / b->sector_size;
		size_t len = (size_t)min_u64(b->sector_size, n - i);
		bool present = !b->present || b->present(b->ctx, sector);
		const uint8_t *shown = present ? p->own + i : p->below + i;
		if (present && memcmp(p->own + i, p->below + i, len))
			p->view->masks_nothing = false;
		if (!is_zero(shown, len))
			p->view->reads_zero = false;
	}
}

int vdisk_block_compare(const struct vdisk_block *b, struct vdisk_block_view *view)
{
	struct block_probe p = { .b = b, .view = view };
	*view = (struct vdisk_block_view){ .masks_nothing = true, .reads_zero = true };
	uint64_t piece = PIECE - PIECE % b->sector_size;
	p.own = vdisk_alloc_aligned(piece);
	p.below = vdisk_alloc_aligned(piece);
	int ret = p.own && p.below ? 0 : -ENOMEM;
	for (uint64_t done = 0; ret == 0 && done < b->length;) {
		uint64_t n = min_u64(piece, b->length - done);
		ret = vdisk_file_pread(b->disk->file, p.own, n, b->file_offset + done);
		if (ret == 0)
			ret = read_below(b, p.below, n, b->offset + done);
		if (ret == 0)
			compare_piece(&p, done / b->sector_size, n);
		if (!view->masks_nothing && !view->reads_zero)
			break; /* the block stays whatever the rest holds */
		done += n;
	}
	free(p.own);
	free(p.below);
	return ret;
}

/* ---- moving blocks down ---- */

static int compare_span(const void *a, const void *b)
{
	const struct vdisk_span *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

void vdisk_spans_sort(struct vdisk_span *spans, size_t n)
{
	qsort(spans, n, sizeof(*spans), compare_span);
}

/* Blocks of len bytes that fit in [start, end) one after the other, each starting at a
 * multiple of step from the first. */
static uint64_t blocks_fitting(uint64_t start, uint64_t end, uint64_t len, uint64_t step)
{
	return start + len <= end ? (end - start - len) / step + 1 : 0;
}

/* Where a block of len bytes goes in hole h without passing limit, or UINT64_MAX. The
 * aligned place is taken unless its padding would cost the hole a block. */
static uint64_t place(const struct vdisk_span *h, uint64_t len, uint64_t limit, uint64_t align,
		      uint64_t skew, uint64_t min_align)
{
	uint64_t end = min_u64(h->end, limit);
	uint64_t aligned = round_up(h->start + skew, align) - skew;
	uint64_t packed = round_up(h->start, min_align);
	uint64_t n_aligned = blocks_fitting(aligned, end, len, round_up(len, align));
	uint64_t n_packed = blocks_fitting(packed, end, len, round_up(len, min_align));
	if (n_aligned && n_aligned >= n_packed)
		return aligned;
	return n_packed ? packed : UINT64_MAX;
}

/* The free space between the used spans (sorted). */
static struct vdisk_span *find_holes(const struct vdisk_span *used, size_t nused, size_t *count)
{
	struct vdisk_span *holes = malloc((nused + 1) * sizeof(*holes));
	uint64_t pos = 0;
	*count = 0;
	for (size_t i = 0; holes && i < nused; i++) {
		if (used[i].start > pos)
			holes[(*count)++] =
				(struct vdisk_span){ pos, used[i].start, VDISK_SPAN_FIXED };
		if (used[i].end > pos)
			pos = used[i].end;
	}
	return holes;
}

int vdisk_plan_moves(struct vdisk_span *used, size_t nused, uint64_t align, uint64_t skew,
		     uint64_t min_align, struct vdisk_move_plan *plan)
{
	*plan = (struct vdisk_move_plan){ 0 };
	vdisk_spans_sort(used, nused);
	size_t nholes;
	struct vdisk_span *holes = find_holes(used, nused, &nholes);
	plan->moves = malloc((nused + 1) * sizeof(*plan->moves));
	if (!holes || !plan->moves) {
		free(holes);
		free(plan->moves);
		plan->moves = NULL;
		return -ENOMEM;
	}
	/* Blocks do not overlap: the one that starts last also ends last. */
	for (size_t k = nused; k > 0 && used[k - 1].index != VDISK_SPAN_FIXED; k--) {
		struct vdisk_span *b = &used[k - 1];
		uint64_t len = b->end - b->start, to = UINT64_MAX;
		size_t h = 0;
		for (; h < nholes && holes[h].start + len <= b->start && to == UINT64_MAX; h++)
			to = place(&holes[h], len, b->start, align, skew, min_align);
		if (to == UINT64_MAX)
			break;
		holes[h - 1].start = to + len;
		plan->moves[plan->nmoves++] = (struct vdisk_move){ b->index, b->start, to, len };
		b->start = to;
		b->end = to + len;
	}
	for (size_t i = 0; i < nused; i++)
		plan->end = used[i].end > plan->end ? used[i].end : plan->end;
	free(holes);
	return 0;
}

int vdisk_file_copy(struct vdisk_file *file, uint64_t from, uint64_t to, uint64_t len)
{
	uint8_t *buf = vdisk_alloc_aligned(PIECE);
	if (!buf)
		return -ENOMEM;
	int ret = 0;
	for (uint64_t done = 0; done < len && ret == 0; done += PIECE) {
		size_t n = (size_t)min_u64(PIECE, len - done);
		ret = vdisk_file_pread(file, buf, n, from + done);
		if (ret == 0)
			ret = vdisk_file_pwrite(file, buf, n, to + done);
	}
	free(buf);
	return ret;
}
