/* VHD metadata changes: block allocation batches and metadata write-back.
 *
 * Writes that need metadata (a new block, or new sector bitmap bits of a differencing
 * image) join a per-disk batch. Batches run one at a time; each writes, all in parallel,
 * the data of its members, the sector bitmaps of its new blocks and the footer at the new
 * end of the file (new blocks are appended with their data 4 KiB aligned). When that is
 * done, the new BAT entries and bitmap bits are made visible in memory, the blocks are
 * marked dirty, and the members complete.
 *
 * Dirty metadata reaches the file in a write-back: flush (the data of every dirty block is
 * durable), write the BAT sectors and bitmaps of the dirty blocks, flush again. A guest
 * flush runs a write-back before it completes; so does close, and so does a batch that
 * leaves more than WRITEBACK_DIRTY_MAX blocks dirty. A write that completed before a flush
 * completed is therefore on disk with its metadata, and at every moment the BAT on disk
 * points only at blocks whose data is on disk, and no bitmap bit on disk is set for a
 * sector whose data is not: a crash loses at most writes that were never flushed, and
 * leaves at worst unreferenced space at the end of the file (`vdisk check --repair`) and,
 * if the end footer was torn, the footer copy at offset 0 to open from.
 *
 * Writes that came in on several queues may share a batch or a write-back: the job runs
 * on the queue that started it, and completes the others through vdisk_queue_post.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "endian.h"
#include "iov.h"
#include "vhd_internal.h"

#define BATCH_MAX_MEMBERS 512
#define WRITEBACK_DIRTY_MAX 4096
#define DATA_ALIGN 4096u

/* ---- dirty metadata ---- */

/* The dirty list has room for every block (allocated at open), so marking cannot fail. */
static void mark_dirty(struct vhd_io *io, uint32_t block)
{
	if (io->dirty_mark[block])
		return;
	io->dirty_mark[block] = 1;
	io->dirty[io->ndirty++] = block;
}

/* ---- write-back ---- */


struct writeback {
	struct vdisk_job job;
	uint32_t *blocks;    /* dirty blocks taken by this write-back */
	uint32_t nblocks;    /* 0 until taken */
	uint8_t *bat_buf;    /* BAT sectors, one per dirty block (unused ones stay unused) */
	uint8_t **bitmaps;   /* differencing: bitmap copies, one per dirty block */
	uint32_t dirty_seen; /* entries of bitmaps allocated (for freeing) */
	struct vdisk_req *waiters; /* flushes this write-back completes */
	int stage;
};

enum { WB_SYNC_DATA, WB_METADATA, WB_SYNC_METADATA };

static void writeback_start(struct vdisk *disk, struct vdisk_queue *q);

/* Frees what writeback_take allocated (its bitmap copies are at most io->dirty_cap). */
static void writeback_release(struct writeback *wb)
{
	if (wb->bitmaps)
		for (uint32_t i = 0; i < wb->dirty_seen; i++)
			free(wb->bitmaps[i]);
	free(wb->bitmaps);
	free(wb->bat_buf);
	free(wb->blocks);
}

static void writeback_free(struct writeback *wb)
{
	writeback_release(wb);
	free(wb);
}

/* The BAT sector holding block's entry, from the in-memory BAT. */
static void build_bat_sector(const struct vhd *vhd, uint32_t sector, uint8_t *out)
{
	for (uint32_t e = 0; e < VHD_SECTOR / 4; e++) {
		uint32_t idx = sector * (VHD_SECTOR / 4) + e;
		store_be32(out + e * 4, idx < vhd->bat_entries ? vhd_bat_get(vhd, idx) : VHD_BAT_UNUSED);
	}
}

/* Under the lock: takes the dirty blocks and snapshots their metadata. Everything in the
 * snapshot was committed after its data write completed, so the flush that follows
 * makes that data durable before the snapshot is written. */
static int writeback_take(struct writeback *wb, struct vhd *vhd, struct vhd_io *io)
{
	uint32_t n = io->ndirty;
	if (!n)
		return 0;
	wb->blocks = malloc(sizeof(*wb->blocks) * n);
	wb->bat_buf = vdisk_alloc_aligned((size_t)n * VHD_SECTOR);
	if (vhd_is_diff(vhd)) {
		wb->bitmaps = calloc(n, sizeof(*wb->bitmaps));
		wb->dirty_seen = wb->bitmaps ? n : 0;
	}
	if (!wb->blocks || !wb->bat_buf || (vhd_is_diff(vhd) && !wb->bitmaps))
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t block = io->dirty[i];
		wb->blocks[i] = block;
		build_bat_sector(vhd, block * 4 / VHD_SECTOR, wb->bat_buf + (size_t)i * VHD_SECTOR);
		if (wb->bitmaps && io->bitmaps[block]) {
			wb->bitmaps[i] = vdisk_alloc_aligned(vhd->bitmap_size);
			if (!wb->bitmaps[i])
				return -ENOMEM; /* the blocks stay dirty: nothing was taken */
			memcpy(wb->bitmaps[i], io->bitmaps[block], vhd->bitmap_size);
		}
	}
	for (uint32_t i = 0; i < n; i++)
		io->dirty_mark[wb->blocks[i]] = 0;
	io->ndirty = 0;
	wb->nblocks = n; /* taken: from here a failure must give them back */
	return 0;
}

/* A failed write-back gives its blocks back, so the next flush tries again. */
static void writeback_restore(struct writeback *wb, struct vhd_io *io)
{
	pthread_mutex_lock(&io->lock);
	for (uint32_t i = 0; i < wb->nblocks; i++)
		mark_dirty(io, wb->blocks[i]);
	pthread_mutex_unlock(&io->lock);
}

static void writeback_issue_metadata(struct writeback *wb)
{
	struct vhd *vhd = vhd_of(wb->job.disk);
	for (uint32_t i = 0; i < wb->nblocks; i++) {
		uint32_t sector = wb->blocks[i] * 4 / VHD_SECTOR;
		bool first = true; /* one write per BAT sector */
		for (uint32_t j = 0; j < i && first; j++)
			first = wb->blocks[j] * 4 / VHD_SECTOR != sector;
		if (first)
			vdisk_job_write(&wb->job, wb->bat_buf + (size_t)i * VHD_SECTOR, VHD_SECTOR,
				  vhd->header.table_offset + (uint64_t)sector * VHD_SECTOR);
		uint32_t block_sector = vhd_bat_get(vhd, wb->blocks[i]);
		if (wb->bitmaps && wb->bitmaps[i] && block_sector != VHD_BAT_UNUSED)
			vdisk_job_write(&wb->job, wb->bitmaps[i], vhd->bitmap_size,
				  (uint64_t)block_sector * VHD_SECTOR);
	}
}

static void writeback_finish(struct writeback *wb)
{
	struct vdisk *disk = wb->job.disk;
	struct vdisk_queue *q = wb->job.queue;
	struct vhd_io *io = vhd_io_of(disk);
	if (wb->job.result < 0)
		writeback_restore(wb, io);
	vdisk_req_list_end(wb->waiters, q, wb->job.result);
	writeback_free(wb);
	pthread_mutex_lock(&io->lock);
	io->writeback_running = false;
	pthread_mutex_unlock(&io->lock);
	writeback_start(disk, q); /* flushes that came in meanwhile */
}

static void writeback_stage_done(struct vdisk_job *job)
{
	struct writeback *wb = (struct writeback *)job;
	if (job->result < 0) {
		writeback_finish(wb);
		return;
	}
	switch (wb->stage) {
	case WB_SYNC_DATA:
		wb->stage = WB_METADATA;
		writeback_issue_metadata(wb);
		vdisk_job_issued(job);
		break;
	case WB_METADATA:
		wb->stage = WB_SYNC_METADATA;
		vdisk_job_io(job, ENGINE_FDATASYNC, NULL, 0, 0);
		vdisk_job_issued(job);
		break;
	default:
		writeback_finish(wb);
		break;
	}
}

/* Starts a write-back on q unless one is running, when flushes wait or too much is dirty. */
static void writeback_start(struct vdisk *disk, struct vdisk_queue *q)
{
	struct vhd *vhd = vhd_of(disk);
	struct vhd_io *io = vhd_io_of(disk);
	pthread_mutex_lock(&io->lock);
	if (io->writeback_running || (!io->flushes.head && io->ndirty <= WRITEBACK_DIRTY_MAX)) {
		pthread_mutex_unlock(&io->lock);
		return;
	}
	struct writeback *wb = calloc(1, sizeof(*wb));
	if (!wb) {
		struct vdisk_req *waiters = vdisk_req_list_take(&io->flushes);
		pthread_mutex_unlock(&io->lock);
		vdisk_req_list_end(waiters, q, -ENOMEM);
		return;
	}
	int ret = writeback_take(wb, vhd, io);
	io->writeback_running = true;
	wb->waiters = vdisk_req_list_take(&io->flushes);
	pthread_mutex_unlock(&io->lock);

	wb->job = (struct vdisk_job){.disk = disk, .queue = q, .stage_done = writeback_stage_done};
	if (ret < 0) {
		vdisk_job_fail(&wb->job, ret);
		writeback_finish(wb);
		return;
	}
	/* Nothing dirty: the flush needs only the final fdatasync. */
	wb->stage = wb->nblocks ? WB_SYNC_DATA : WB_METADATA;
	vdisk_job_io(&wb->job, ENGINE_FDATASYNC, NULL, 0, 0);
	vdisk_job_issued(&wb->job);
}

void vhd_flush_req(struct vdisk_req *req)
{
	struct vhd_io *io = vhd_io_of(req->disk);
	pthread_mutex_lock(&io->lock);
	vdisk_req_list_push(&io->flushes, req);
	pthread_mutex_unlock(&io->lock);
	writeback_start(req->disk, req->queue);
}

int vhd_writeback_sync(struct vdisk *disk)
{
	struct vhd *vhd = vhd_of(disk);
	struct vhd_io *io = vhd_io_of(disk);
	if (!io || !io->ndirty)
		return 0;
	struct writeback wb = {0};
	int ret = writeback_take(&wb, vhd, io);
	if (ret == 0)
		ret = vdisk_file_sync(disk->file);
	for (uint32_t i = 0; ret == 0 && i < wb.nblocks; i++) {
		uint32_t sector = wb.blocks[i] * 4 / VHD_SECTOR;
		ret = vdisk_file_pwrite(disk->file, wb.bat_buf + (size_t)i * VHD_SECTOR, VHD_SECTOR,
					vhd->header.table_offset + (uint64_t)sector * VHD_SECTOR);
		uint32_t block_sector = vhd_bat_get(vhd, wb.blocks[i]);
		if (ret == 0 && wb.bitmaps && wb.bitmaps[i] && block_sector != VHD_BAT_UNUSED)
			ret = vdisk_file_pwrite(disk->file, wb.bitmaps[i], vhd->bitmap_size,
						(uint64_t)block_sector * VHD_SECTOR);
	}
	if (ret == 0)
		ret = vdisk_file_sync(disk->file);
	if (ret < 0)
		writeback_restore(&wb, io);
	writeback_release(&wb);
	return ret;
}

/* ---- allocation batches ---- */

/* A block touched by a batch: new, or existing with new bitmap bits. */
struct batch_block {
	uint32_t block;
	uint32_t sector; /* file sector of its bitmap */
	bool is_new;
	uint8_t *bitmap; /* the bitmap as the batch leaves it; NULL: data write only */
	uint8_t *bitmap_buf; /* zeroed padding, then the bitmap (see bitmap_pad) */
	uint32_t pad;        /* bytes of padding written with a new block's bitmap */
};

struct batch {
	struct vdisk_job job;
	struct vhd_member *members;
	struct batch_block *blocks;
	unsigned nblocks;
	uint64_t new_footer_offset;
	uint8_t *footer; /* aligned copy */
};

void vhd_alloc_add(struct vdisk_req *req, uint32_t block, uint64_t skip, uint64_t len,
		   uint64_t voff)
{
	struct vhd_member *m = malloc(sizeof(*m));
	if (!m) {
		vdisk_req_fail(req, -ENOMEM);
		return;
	}
	*m = (struct vhd_member){.req = req, .block = block, .voff = voff, .skip = skip,
				 .len = len};
	vdisk_req_hold(req);
	struct vhd_io *io = vhd_io_of(req->disk);
	pthread_mutex_lock(&io->lock);
	if (io->waiting_tail)
		io->waiting_tail->next = m;
	else
		io->waiting_head = m;
	io->waiting_tail = m;
	pthread_mutex_unlock(&io->lock);
}

static struct batch_block *batch_find_block(struct batch *b, uint32_t block)
{
	for (unsigned i = 0; i < b->nblocks; i++)
		if (b->blocks[i].block == block)
			return &b->blocks[i];
	return NULL;
}

/* New blocks have their data DATA_ALIGN aligned, the bitmap right before it and padding
 * before the bitmap up to the previous DATA_ALIGN boundary: the batch writes padding and
 * bitmap together, as whole file system blocks. */
static uint32_t bitmap_pad(const struct vhd *vhd)
{
	return (DATA_ALIGN - vhd->bitmap_size % DATA_ALIGN) % DATA_ALIGN;
}

/* Reserves file space for a new block: data 4 KiB aligned, bitmap right before it. The
 * padding before the bitmap is written with it when all of it is ours (it is, but for a
 * first block that follows metadata which does not end on a boundary). */
static int reserve_block(struct vhd *vhd, struct vhd_io *io, struct batch_block *bb)
{
	uint64_t data = (io->alloc_end + vhd->bitmap_size + DATA_ALIGN - 1) & ~(uint64_t)(DATA_ALIGN - 1);
	uint64_t bitmap = data - vhd->bitmap_size;
	if (bitmap / VHD_SECTOR >= VHD_BAT_UNUSED)
		return -EFBIG; /* BAT entries are 32-bit sector numbers */
	bb->pad = bitmap - bitmap_pad(vhd) >= io->alloc_end ? bitmap_pad(vhd) : 0;
	io->alloc_end = data + vhd->block_size;
	bb->sector = (uint32_t)(bitmap / VHD_SECTOR);
	return 0;
}

/* Under the lock: adds a block to the batch with the bitmap it will leave. */
static int batch_add_block(struct batch *b, uint32_t block, struct batch_block **out)
{
	struct vhd *vhd = vhd_of(b->job.disk);
	struct vhd_io *io = vhd_io_of(b->job.disk);
	struct batch_block *bb = &b->blocks[b->nblocks];
	*bb = (struct batch_block){.block = block, .sector = vhd->bat[block]};
	bb->is_new = bb->sector == VHD_BAT_UNUSED;
	/* An existing block of a dynamic image (allocated by an earlier batch) needs only
	 * the data write; every other block needs a bitmap. */
	if (bb->is_new || vhd_is_diff(vhd)) {
		bb->bitmap_buf = vdisk_alloc_aligned(bitmap_pad(vhd) + vhd->bitmap_size);
		if (!bb->bitmap_buf)
			return -ENOMEM;
		memset(bb->bitmap_buf, 0, bitmap_pad(vhd));
		bb->bitmap = bb->bitmap_buf + bitmap_pad(vhd);
	}
	if (bb->is_new) {
		int ret = reserve_block(vhd, io, bb);
		if (ret < 0) {
			free(bb->bitmap_buf);
			return ret;
		}
		memset(bb->bitmap, vhd_is_diff(vhd) ? 0x00 : 0xFF, vhd->bitmap_size);
	} else if (vhd_is_diff(vhd)) {
		const uint8_t *committed = io->bitmaps[block];
		if (!committed) {
			free(bb->bitmap_buf);
			return -EIO;
		}
		memcpy(bb->bitmap, committed, vhd->bitmap_size);
	}
	b->nblocks++;
	*out = bb;
	return 0;
}

static int batch_add_member(struct batch *b, struct vhd_member *m)
{
	struct vhd *vhd = vhd_of(b->job.disk);
	struct batch_block *bb = batch_find_block(b, m->block);
	if (!bb) {
		int ret = batch_add_block(b, m->block, &bb);
		if (ret < 0)
			return ret;
	}
	if (vhd_is_diff(vhd)) {
		uint64_t in_block = m->voff % vhd->block_size;
		for (uint64_t s = in_block / VHD_SECTOR; s <= (in_block + m->len - 1) / VHD_SECTOR;
		     s++)
			vhd_bit_set(bb->bitmap, s);
	}
	return 0;
}

static void batch_free(struct batch *b)
{
	for (unsigned i = 0; i < b->nblocks; i++)
		free(b->blocks[i].bitmap_buf);
	free(b->blocks);
	free(b->footer);
	free(b);
}

/* Data of every member, bitmaps of new blocks, and the footer at the new end. */
static void batch_issue(struct batch *b)
{
	struct vhd *vhd = vhd_of(b->job.disk);
	for (unsigned i = 0; i < b->nblocks; i++) {
		struct batch_block *bb = &b->blocks[i];
		if (bb->is_new)
			vdisk_job_write(&b->job, bb->bitmap - bb->pad, bb->pad + vhd->bitmap_size,
				  (uint64_t)bb->sector * VHD_SECTOR - bb->pad);
	}
	for (struct vhd_member *m = b->members; m; m = m->next) {
		struct batch_block *bb = batch_find_block(b, m->block);
		struct iovec inline_iov[IOV_INLINE], *slice = inline_iov;
		int n = iov_slice(m->req->iov, m->req->iovcnt, m->skip, m->len, inline_iov,
				  IOV_INLINE);
		if (n == -E2BIG)
			n = iov_slice_alloc(m->req->iov, m->req->iovcnt, m->skip, m->len, &slice);
		if (n < 0) {
			vdisk_job_fail(&b->job, n);
			continue;
		}
		vdisk_job_io(&b->job, ENGINE_WRITE, slice, n,
		       vhd_block_data_offset(vhd, bb->sector) + m->voff % vhd->block_size);
		if (slice != inline_iov)
			free(slice);
	}
}

/* Moves the footer to the new end before the batch writes its blocks. Direct writes past
 * the end of file, or of less than a file system block into unallocated space, are
 * serialised by the file system (ext4 waits for all direct I/O of the file first); so the
 * footer goes through the page cache (the next flush makes it durable, and until then
 * the copy at offset 0 stands in for it), and the blocks are then written inside the
 * file, in whole file system blocks. */
static int batch_move_footer(struct batch *b)
{
	struct vhd *vhd = vhd_of(b->job.disk);
	bool grows = false;
	for (unsigned i = 0; i < b->nblocks; i++)
		grows |= b->blocks[i].is_new;
	if (!grows)
		return 0;
	struct vdisk_file *file = b->job.disk->file;
	uint64_t end = b->new_footer_offset + VHD_FOOTER_SIZE;
	/* ext4 treats direct writes past its on-disk size as extending ones even inside
	 * the file; truncate moves that size at once, a buffered write does not. */
	if (!file->is_block_device && end > file->size) {
		int ret = vdisk_file_set_size(file, end);
		if (ret < 0)
			return ret;
	}
	vhd_footer_build(&vhd->footer, b->footer);
	return vdisk_file_pwrite(file, b->footer, VHD_FOOTER_SIZE, b->new_footer_offset);
}

/* Makes the batch visible in memory and marks its blocks dirty. */
static void batch_commit(struct batch *b)
{
	struct vhd *vhd = vhd_of(b->job.disk);
	struct vhd_io *io = vhd_io_of(b->job.disk);
	pthread_mutex_lock(&io->lock);
	for (unsigned i = 0; i < b->nblocks; i++) {
		struct batch_block *bb = &b->blocks[i];
		if (vhd_is_diff(vhd) && bb->bitmap) {
			/* Bits only go from 0 to 1: readers may see the bytes change one by
			 * one, and every bit they see set has its data written. */
			uint8_t *committed = io->bitmaps[bb->block];
			if (!committed) {
				committed = malloc(vhd->bitmap_size);
				if (!committed) { /* the block reads as its parent: not yet visible */
					vdisk_job_fail(&b->job, -ENOMEM);
					continue;
				}
				memcpy(committed, bb->bitmap, vhd->bitmap_size);
				__atomic_store_n(&io->bitmaps[bb->block], committed, __ATOMIC_RELEASE);
			} else {
				for (uint32_t k = 0; k < vhd->bitmap_size; k++)
					__atomic_fetch_or(&committed[k], bb->bitmap[k], __ATOMIC_RELEASE);
			}
		}
		if (bb->is_new)
			__atomic_store_n(&vhd->bat[bb->block], bb->sector, __ATOMIC_RELEASE);
		if (bb->is_new || vhd_is_diff(vhd))
			mark_dirty(io, bb->block);
	}
	if (b->new_footer_offset > vhd->footer_offset)
		vhd->footer_offset = b->new_footer_offset;
	pthread_mutex_unlock(&io->lock);
}

static void batch_done(struct vdisk_job *job)
{
	struct batch *b = (struct batch *)job;
	struct vdisk *disk = job->disk;
	struct vdisk_queue *q = job->queue;
	struct vhd_io *io = vhd_io_of(disk);
	if (job->result == 0)
		batch_commit(b);
	for (struct vhd_member *m = b->members, *next; m; m = next) {
		next = m->next;
		vdisk_req_end_on_queue(m->req, q, job->result);
		free(m);
	}
	batch_free(b);
	pthread_mutex_lock(&io->lock);
	io->batch_running = false;
	pthread_mutex_unlock(&io->lock);
	writeback_start(disk, q); /* when too much is dirty */
	vhd_alloc_kick(disk, q);  /* writes that arrived meanwhile */
}

static struct batch *batch_new(void)
{
	struct batch *b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->blocks = calloc(BATCH_MAX_MEMBERS, sizeof(*b->blocks));
	b->footer = vdisk_alloc_aligned(VHD_FOOTER_SIZE);
	if (!b->blocks || !b->footer) {
		batch_free(b);
		return NULL;
	}
	return b;
}

/* Under the lock: moves waiting members into the batch. */
static void batch_take_members(struct batch *b, struct vhd_io *io)
{
	struct vhd_member **tail = &b->members;
	unsigned taken = 0;
	while (io->waiting_head && taken < BATCH_MAX_MEMBERS) {
		struct vhd_member *m = io->waiting_head;
		io->waiting_head = m->next;
		m->next = NULL;
		*tail = m;
		tail = &m->next;
		taken++;
		vdisk_job_fail(&b->job, batch_add_member(b, m));
	}
	if (!io->waiting_head)
		io->waiting_tail = NULL;
}

void vhd_alloc_kick(struct vdisk *disk, struct vdisk_queue *q)
{
	struct vhd *vhd = vhd_of(disk);
	struct vhd_io *io = vhd_io_of(disk);
	struct batch *b = batch_new();
	pthread_mutex_lock(&io->lock);
	if (io->batch_running || !io->waiting_head) {
		pthread_mutex_unlock(&io->lock);
		if (b)
			batch_free(b);
		return;
	}
	if (!b) {
		/* Fail the waiting writes rather than leave them waiting for nothing. */
		struct vhd_member *m = io->waiting_head;
		io->waiting_head = io->waiting_tail = NULL;
		pthread_mutex_unlock(&io->lock);
		for (struct vhd_member *next; m; m = next) {
			next = m->next;
			vdisk_req_end_on_queue(m->req, q, -ENOMEM);
			free(m);
		}
		return;
	}
	b->job = (struct vdisk_job){.disk = disk, .queue = q, .stage_done = batch_done};
	io->batch_running = true;
	batch_take_members(b, io);
	b->new_footer_offset = io->alloc_end > vhd->footer_offset ? io->alloc_end : vhd->footer_offset;
	pthread_mutex_unlock(&io->lock);

	if (b->job.result == 0)
		vdisk_job_fail(&b->job, batch_move_footer(b));
	if (b->job.result == 0)
		batch_issue(b);
	vdisk_job_issued(&b->job);
}

/* ---- state ---- */

int vhd_io_init(struct vhd *vhd)
{
	struct vhd_io *io = calloc(1, sizeof(*io));
	if (!io)
		return -ENOMEM;
	pthread_mutex_init(&io->lock, NULL);
	io->alloc_end = vhd->footer_offset;
	uint32_t n = vhd->bat_entries ? vhd->bat_entries : 1;
	io->dirty_mark = calloc(n, 1);
	io->dirty = malloc(sizeof(*io->dirty) * n);
	io->dirty_cap = n;
	if (vhd_is_diff(vhd))
		io->bitmaps = calloc(n, sizeof(*io->bitmaps));
	vhd->io = io;
	if (!io->dirty_mark || !io->dirty || (vhd_is_diff(vhd) && !io->bitmaps)) {
		vhd_io_free(vhd);
		return -ENOMEM;
	}
	return 0;
}

void vhd_io_free(struct vhd *vhd)
{
	struct vhd_io *io = vhd->io;
	if (!io)
		return;
	if (io->bitmaps)
		for (uint32_t i = 0; i < vhd->bat_entries; i++)
			free(io->bitmaps[i]);
	free(io->bitmaps);
	free(io->dirty);
	free(io->dirty_mark);
	pthread_mutex_destroy(&io->lock);
	free(io);
	vhd->io = NULL;
}
