/* Compaction of a VHDX image, as Hyper-V's Optimize-VHD does it:
 *
 * 1. Release. Each present payload block is compared with what would show without it
 *    (vdisk_block_compare). A block that masks nothing becomes Not Present; its sector
 *    bitmap bits are cleared in the same log entry, because a later partial write
 *    allocates the block again and only sets the bits it writes. A block of a differencing
 *    image that reads as zeros but masks its parent becomes Zero. Absent entries that
 *    still carry a file offset drop it. A chunk's sector bitmap block goes when no block
 *    of the chunk is partially present any more.
 * 2. Move. The block that ends last in the file moves into the lowest hole that ends
 *    before it starts, until none does: its data is copied, then the BAT entry switches
 *    through the log (vhdx_log_commit flushes the copies before it writes the entry). A
 *    block only ever moves into space no durable BAT entry names: a hole left by a release
 *    that was committed, or space that was never used (the blocks moved away from lie
 *    above every hole still to be filled).
 * 3. Truncate after the last used byte, once every switch is durable.
 *
 * A power cut anywhere leaves an image that opens (the log replays), checks clean but for
 * leaked space, and reads the same. The open disk stays usable afterwards.
 *
 * Fixed images are refused: their blocks stay allocated by definition (Windows refuses to
 * attach a sparse fixed VHDX), as Optimize-VHD refuses them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "endian.h"
#include "vhdx_internal.h"

#define PAGE 4096u

/* The changes of one log entry: 4 KiB pages of the BAT (built from vhdx->bat when it is
 * committed) and of sector bitmaps (edited here), and the BAT entries they change, to
 * restore in memory when the commit fails. */
struct txn {
	struct vhdx_log_update *updates;
	uint8_t *pages;
	uint64_t *bat_page; /* per update: the BAT page number, or UINT64_MAX (a bitmap page) */
	unsigned n, max;
	struct undo {
		uint64_t index, entry;
	} * undo;
	size_t nundo, undo_cap;
};

struct compactor {
	struct vdisk *disk;
	struct vhdx *v;
	struct txn txn;
	struct vdisk_compact_ctx ctx;
	uint64_t released;
	bool changed;
};

/* ---- log transactions ---- */

static int txn_init(struct txn *t, uint32_t log_length)
{
	t->max = vhdx_log_max_data_updates(log_length);
	t->updates = calloc(t->max ? t->max : 1, sizeof(*t->updates));
	t->bat_page = calloc(t->max ? t->max : 1, sizeof(*t->bat_page));
	t->pages = vdisk_alloc_aligned((size_t)(t->max ? t->max : 1) * PAGE);
	return t->updates && t->bat_page && t->pages && t->max >= 2 ? 0 : -ENOMEM;
}

static void txn_free(struct txn *t)
{
	free(t->updates);
	free(t->bat_page);
	free(t->pages);
	free(t->undo);
}

static bool txn_has_room(const struct txn *t, unsigned pages)
{
	return t->n + pages <= t->max;
}

/* The page at file_offset in the entry; a new one when it is not there yet. */
static uint8_t *txn_page(struct txn *t, uint64_t file_offset, bool *is_new)
{
	for (unsigned i = 0; i < t->n; i++)
		if (t->updates[i].file_offset == file_offset) {
			*is_new = false;
			return t->pages + (size_t)i * PAGE;
		}
	*is_new = true;
	uint8_t *p = t->pages + (size_t)t->n * PAGE;
	t->updates[t->n] = (struct vhdx_log_update){ .file_offset = file_offset, .data = p };
	t->bat_page[t->n++] = UINT64_MAX;
	return p;
}

/* Changes BAT entry index in memory; the entry carries its page. */
static int txn_set_entry(struct compactor *c, uint64_t index, uint64_t entry)
{
	struct txn *t = &c->txn;
	if (t->nundo == t->undo_cap) {
		size_t cap = t->undo_cap ? 2 * t->undo_cap : 256;
		struct undo *u = realloc(t->undo, cap * sizeof(*u));
		if (!u)
			return -ENOMEM;
		t->undo = u;
		t->undo_cap = cap;
	}
	t->undo[t->nundo++] = (struct undo){ index, c->v->bat[index] };
	uint64_t page = index * VHDX_BAT_ENTRY_SIZE / PAGE;
	bool is_new;
	txn_page(t, c->v->bat_offset + page * PAGE, &is_new);
	if (is_new)
		t->bat_page[t->n - 1] = page;
	__atomic_store_n(&c->v->bat[index], entry, __ATOMIC_RELEASE);
	c->changed = true;
	return 0;
}

static void build_bat_page(const struct vhdx *v, uint64_t page, uint8_t *out)
{
	for (unsigned e = 0; e < PAGE / VHDX_BAT_ENTRY_SIZE; e++) {
		uint64_t idx = page * (PAGE / VHDX_BAT_ENTRY_SIZE) + e;
		store_le64(out + e * VHDX_BAT_ENTRY_SIZE, idx < v->bat_entries ? v->bat[idx] : 0);
	}
}

/* One log entry with everything the transaction changed; on failure the BAT in memory
 * goes back to what the file holds. */
static int txn_commit(struct compactor *c)
{
	struct txn *t = &c->txn;
	if (!t->n)
		return 0;
	for (unsigned i = 0; i < t->n; i++)
		if (t->bat_page[i] != UINT64_MAX)
			build_bat_page(c->v, t->bat_page[i], t->pages + (size_t)i * PAGE);
	int ret = vhdx_log_commit(c->disk, t->updates, t->n);
	if (ret < 0)
		while (t->nundo) {
			t->nundo--;
			__atomic_store_n(&c->v->bat[t->undo[t->nundo].index],
					 t->undo[t->nundo].entry, __ATOMIC_RELEASE);
		}
	t->n = 0;
	t->nundo = 0;
	return ret < 0 ? vdisk_compact_fail(&c->ctx, ret,
					    "cannot commit the new BAT entries through the log")
		       : 0;
}

/* Makes room for pages more pages in the entry, committing what is there first. */
static int txn_reserve(struct compactor *c, unsigned pages)
{
	return txn_has_room(&c->txn, pages) ? 0 : txn_commit(c);
}

/* ---- sector bitmaps ---- */

/* Where the bits of payload block n lie inside its chunk's sector bitmap block. */
static uint64_t bits_offset(const struct vhdx *v, uint64_t n)
{
	return (n % v->chunk_ratio) * vhdx_sectors_per_block(v) / 8;
}

static uint64_t bits_length(const struct vhdx *v)
{
	return vhdx_sectors_per_block(v) / 8;
}

static uint64_t bitmap_entry(const struct vhdx *v, uint64_t n)
{
	return v->bat[vhdx_bitmap_index(v, n / v->chunk_ratio)];
}

static bool bit_is_set(const void *ctx, uint64_t sector)
{
	const uint8_t *bits = ctx;
	return bits[sector / 8] & (1u << (sector % 8));
}

/* Pages the bits of one block span. */
static unsigned bits_pages(const struct vhdx *v, uint64_t n)
{
	uint64_t off = bits_offset(v, n);
	return (unsigned)((off + bits_length(v) - 1) / PAGE - off / PAGE + 1);
}

/* Clears the bits of payload block n in the entry's copies of its bitmap pages. */
static int clear_bits(struct compactor *c, uint64_t n)
{
	const struct vhdx *v = c->v;
	uint64_t base = vhdx_bat_offset(bitmap_entry(v, n));
	uint64_t start = bits_offset(v, n), end = start + bits_length(v);
	for (uint64_t page = start / PAGE * PAGE; page < end; page += PAGE) {
		bool is_new;
		uint8_t *p = txn_page(&c->txn, base + page, &is_new);
		if (is_new) {
			int ret = vdisk_file_pread(c->disk->file, p, PAGE, base + page);
			if (ret < 0)
				return vdisk_compact_fail(&c->ctx, ret,
							  "cannot read a sector bitmap");
		}
		uint64_t from = start > page ? start - page : 0;
		uint64_t to = end - page < PAGE ? end - page : PAGE;
		memset(p + from, 0, to - from);
	}
	return 0;
}

/* ---- step 1: release ---- */

/* The bits of block n, when its chunk has a sector bitmap (NULL otherwise: all clear). */
static int read_bits(struct compactor *c, uint64_t n, uint8_t *bits, bool *any)
{
	const struct vhdx *v = c->v;
	uint64_t e = bitmap_entry(v, n);
	*any = false;
	if (vhdx_bat_state(e) != VHDX_BITMAP_PRESENT) {
		memset(bits, 0, bits_length(v));
		return 0;
	}
	int ret = vdisk_file_pread(c->disk->file, bits, bits_length(v),
				   vhdx_bat_offset(e) + bits_offset(v, n));
	if (ret < 0)
		return vdisk_compact_fail(&c->ctx, ret, "cannot read a sector bitmap");
	for (uint64_t i = 0; i < bits_length(v) && !*any; i++)
		*any = bits[i] != 0;
	return 0;
}

/* What payload block n becomes: its entry unchanged, Not Present or Zero. */
static int block_fate(struct compactor *c, uint64_t n, const uint8_t *bits, unsigned *state)
{
	const struct vhdx *v = c->v;
	uint64_t e = v->bat[vhdx_payload_index(v, n)], start = n * v->block_size;
	bool partial = vhdx_bat_state(e) == VHDX_BLOCK_PARTIALLY_PRESENT;
	struct vdisk_block b = {
		.disk = c->disk,
		.file_offset = vhdx_bat_offset(e),
		.offset = start,
		.length = v->virtual_size - start < v->block_size ? v->virtual_size - start
								  : v->block_size,
		.sector_size = v->logical_sector_size,
		.present = partial ? bit_is_set : NULL,
		.ctx = bits,
		.below = v->parent,
	};
	struct vdisk_block_view view;
	int ret = vdisk_block_compare(&b, &view);
	if (ret < 0)
		return vdisk_compact_fail(&c->ctx, ret, "cannot read a block to compare it");
	*state = vhdx_bat_state(e);
	if (view.masks_nothing)
		*state = VHDX_BLOCK_NOT_PRESENT;
	else if (view.reads_zero && v->has_parent)
		*state = VHDX_BLOCK_ZERO;
	return 0;
}

/* Changes an entry in the next log entry (extra: pages the caller adds to it first). */
static int change_entry(struct compactor *c, uint64_t index, uint64_t entry, unsigned extra,
			int (*add_pages)(struct compactor *c, uint64_t n), uint64_t n)
{
	int ret = txn_reserve(c, 1 + extra);
	if (ret == 0 && add_pages)
		ret = add_pages(c, n);
	if (ret == 0)
		ret = txn_set_entry(c, index, entry);
	return ret == -ENOMEM ? vdisk_compact_fail(&c->ctx, ret, "cannot change the BAT") : ret;
}

static int release_block(struct compactor *c, uint64_t n, uint8_t *bits)
{
	const struct vhdx *v = c->v;
	uint64_t idx = vhdx_payload_index(v, n);
	unsigned old = vhdx_bat_state(v->bat[idx]), state = old;
	bool any_bits = false;
	int ret = v->has_parent ? read_bits(c, n, bits, &any_bits) : 0;
	if (ret == 0)
		ret = block_fate(c, n, bits, &state);
	if (ret < 0 || state == old)
		return ret;
	/* Not Present needs clear bits: a later partial write sets only its own. */
	bool clear = state == VHDX_BLOCK_NOT_PRESENT && any_bits;
	ret = change_entry(c, idx, vhdx_bat_entry(state, 0), clear ? bits_pages(v, n) : 0,
			   clear ? clear_bits : NULL, n);
	c->released += ret == 0;
	return ret;
}

static bool payload_present(unsigned state)
{
	return state == VHDX_BLOCK_FULLY_PRESENT || state == VHDX_BLOCK_PARTIALLY_PRESENT;
}

/* An absent entry keeps no file offset (Hyper-V fails to read such entries). */
static int drop_stale_offset(struct compactor *c, uint64_t index)
{
	uint64_t e = c->v->bat[index];
	return change_entry(c, index, vhdx_bat_entry(vhdx_bat_state(e), 0), 0, NULL, 0);
}

/* The chunk's sector bitmap goes when no block of the chunk is partially present. */
static int release_bitmap(struct compactor *c, uint64_t chunk)
{
	const struct vhdx *v = c->v;
	uint64_t idx = vhdx_bitmap_index(v, chunk);
	if (vhdx_bat_state(v->bat[idx]) != VHDX_BITMAP_PRESENT)
		return vhdx_bat_offset(v->bat[idx]) ? drop_stale_offset(c, idx) : 0;
	for (uint64_t i = chunk * (v->chunk_ratio + 1); i < idx; i++)
		if (vhdx_bat_state(v->bat[i]) == VHDX_BLOCK_PARTIALLY_PRESENT)
			return 0;
	int ret = change_entry(c, idx, vhdx_bat_entry(VHDX_BITMAP_NOT_PRESENT, 0), 0, NULL, 0);
	c->released += ret == 0;
	return ret;
}

static int release_all(struct compactor *c)
{
	const struct vhdx *v = c->v;
	uint8_t *bits = malloc(bits_length(v));
	if (!bits)
		return vdisk_compact_fail(&c->ctx, -ENOMEM, "cannot scan the blocks");
	int ret = 0;
	for (uint64_t n = 0; n < v->data_blocks && ret == 0; n++) {
		uint64_t idx = vhdx_payload_index(v, n), e = v->bat[idx];
		if (payload_present(vhdx_bat_state(e))) {
			ret = release_block(c, n, bits);
			vdisk_compact_advance(&c->ctx, 1);
		} else if (vhdx_bat_offset(e)) {
			ret = drop_stale_offset(c, idx);
		}
		bool chunk_end = (n + 1) % v->chunk_ratio == 0 || n + 1 == v->data_blocks;
		if (ret == 0 && v->has_parent && chunk_end)
			ret = release_bitmap(c, n / v->chunk_ratio);
	}
	free(bits);
	return ret == 0 ? txn_commit(c) : ret;
}

/* ---- step 2: move ---- */

static bool entry_present(const struct vhdx *v, uint64_t index)
{
	unsigned st = vhdx_bat_state(v->bat[index]);
	if (index % (v->chunk_ratio + 1) == v->chunk_ratio)
		return st == VHDX_BITMAP_PRESENT;
	return payload_present(st);
}

static uint64_t entry_span(const struct vhdx *v, uint64_t index)
{
	return index % (v->chunk_ratio + 1) == v->chunk_ratio ? VHDX_BITMAP_BLOCK_SIZE
							      : v->block_size;
}

/* The header section, the log, the regions and every present block. */
static struct vdisk_span *used_spans(const struct vhdx *v, size_t *count)
{
	uint64_t blocks = 0;
	for (uint64_t i = 0; i < v->bat_entries; i++)
		blocks += entry_present(v, i);
	struct vdisk_span *used = malloc((blocks + v->nregions + 2) * sizeof(*used));
	size_t n = 0;
	if (!used)
		return NULL;
	used[n++] = (struct vdisk_span){ 0, VHDX_HEADER_SECTION_SIZE, VDISK_SPAN_FIXED };
	used[n++] = (struct vdisk_span){ v->header.log_offset,
					 v->header.log_offset + v->header.log_length,
					 VDISK_SPAN_FIXED };
	for (unsigned i = 0; i < v->nregions; i++)
		used[n++] = (struct vdisk_span){ v->regions[i].file_offset,
						 v->regions[i].file_offset + v->regions[i].length,
						 VDISK_SPAN_FIXED };
	for (uint64_t i = 0; i < v->bat_entries; i++)
		if (entry_present(v, i)) {
			uint64_t off = vhdx_bat_offset(v->bat[i]);
			used[n++] = (struct vdisk_span){ off, off + entry_span(v, i), i };
		}
	*count = n;
	return used;
}

/* Each move: the copy, then the entry (the commit flushes the copies before the log). */
static int move_blocks(struct compactor *c, const struct vdisk_move_plan *p)
{
	int ret = 0;
	for (size_t i = 0; i < p->nmoves && ret == 0; i++) {
		const struct vdisk_move *m = &p->moves[i];
		ret = vdisk_file_copy(c->disk->file, m->from, m->to, m->len);
		if (ret < 0)
			return vdisk_compact_fail(&c->ctx, ret, "cannot copy a block");
		uint64_t e = c->v->bat[m->index];
		ret = change_entry(c, m->index, vhdx_bat_entry(vhdx_bat_state(e), m->to), 0, NULL,
				   0);
		vdisk_compact_advance(&c->ctx, 1);
	}
	return ret == 0 ? txn_commit(c) : ret;
}

/* Moves blocks down and cuts the file after the last used byte. */
static int move_and_truncate(struct compactor *c)
{
	size_t n;
	struct vdisk_span *used = used_spans(c->v, &n);
	struct vdisk_move_plan p;
	int ret = used ? vdisk_plan_moves(used, n, VHDX_ALIGN, 0, VHDX_ALIGN, &p) : -ENOMEM;
	free(used);
	if (ret < 0)
		return vdisk_compact_fail(&c->ctx, ret, "cannot plan the moves");
	c->ctx.total = c->ctx.done + p.nmoves;
	vdisk_compact_advance(&c->ctx, 0);
	ret = move_blocks(c, &p);
	struct vdisk_file *file = c->disk->file;
	if (ret == 0 && !file->is_block_device && p.end < file->size) {
		ret = vhdx_truncate_file(c->disk, p.end);
		if (ret < 0)
			vdisk_compact_fail(&c->ctx, ret, "cannot truncate the file");
		c->changed = true;
	}
	free(p.moves);
	return ret;
}

/* ---- the operation ---- */

static int refuse(const struct vdisk *disk, const struct vhdx *v, char *err, size_t err_size)
{
	if (v->leave_blocks_allocated && !v->has_parent) {
		snprintf(err, err_size,
			 "a fixed VHDX keeps every block allocated (Windows refuses sparse fixed "
			 "VHDX files); convert it to a dynamic image to make it smaller");
		return -ENOTSUP;
	}
	if (v->has_parent && !v->parent) {
		snprintf(err, err_size,
			 "a differencing image is compacted with its parent open (opened without "
			 "it, which blocks mask the parent is unknown)");
		return -EINVAL;
	}
	if (disk->opts.for_repair && v->bad_bat_entries) {
		snprintf(err, err_size,
			 "the BAT has bad entries: run 'vdisk check --repair' first");
		return -EINVAL;
	}
	return 0;
}

static uint64_t present_blocks(const struct vhdx *v)
{
	uint64_t n = 0;
	for (uint64_t b = 0; b < v->data_blocks; b++)
		n += payload_present(vhdx_bat_state(v->bat[vhdx_payload_index(v, b)]));
	return n;
}

int vhdx_compact(struct vdisk *disk, vdisk_progress_fn progress, void *opaque,
		 struct vdisk_compact_result *result, char *err, size_t err_size)
{
	struct vhdx *v = disk->priv;
	struct compactor c = {
		.disk = disk,
		.v = v,
		.ctx = { .progress = progress, .opaque = opaque, .err = err, .err_size = err_size }
	};
	result->file_size_before = result->file_size_after = disk->file->size;
	int ret = refuse(disk, v, err, err_size);
	if (ret < 0)
		return ret;
	ret = vhdx_writeback(disk); /* the bitmaps and BAT on disk are the ones in memory */
	if (ret < 0)
		return vdisk_compact_fail(&c.ctx, ret, "cannot write back the metadata");
	if (txn_init(&c.txn, v->header.log_length) < 0) {
		txn_free(&c.txn);
		return vdisk_compact_fail(&c.ctx, -ENOMEM, "cannot prepare the log entries");
	}
	uint64_t blocks = present_blocks(v);
	c.ctx.total = 2 * blocks; /* a scan and at most one move each, until the moves are known */
	ret = release_all(&c);
	if (ret == 0)
		ret = move_and_truncate(&c);
	txn_free(&c.txn);
	if (c.changed) {
		int r = vhdx_io_reinit(disk); /* cached bitmaps, where allocation goes on */
		if (ret == 0 && r < 0)
			ret = vdisk_compact_fail(&c.ctx, r, "cannot reopen the image for I/O");
	}
	result->blocks_released = c.released;
	result->file_size_after = disk->file->size;
	return ret;
}
