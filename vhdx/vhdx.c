/* VHDX driver: open/close glue, the read and write paths, block allocation, metadata
 * write-back through the log, and block status. Parsing, creation, info and check live
 * in vhdx_meta.c; building and replaying log entries in vhdx_log.c.
 *
 * Reads and writes of present data go straight to the file, in parallel, without a lock.
 * Writes that need a metadata change (a new payload block, a new sector bitmap block, new
 * bitmap bits of a differencing image) join a batch: it reserves whole blocks at the end
 * of the file (1 MiB aligned), writes its members' data, then makes the new BAT entries
 * and bitmap bits visible in memory, marks the 4 KiB metadata pages they live in dirty,
 * and completes the members. Batches run side by side; a block (or a chunk's sector
 * bitmap) that one batch allocates waits for it before another batch may touch it.
 *
 * Dirty pages reach the file in a write-back, at the next flush, at close, or when too
 * many are dirty:
 *   1. flush: the data of every dirty page's blocks is durable (and so are the in-place
 *      writes of the previous write-back, whose log entries are then no longer needed);
 *   2. one log entry with the dirty pages, written into the circular log, then flushed:
 *      from here a crash replays them, so the flushes waiting for this write-back
 *      complete once the pages are also written in place;
 *   3. the pages written in place.
 * The log GUID is set in the header before the first entry and cleared at a clean close.
 * Before the first change the FileWriteGuid is renewed, and the DataWriteGuid before the
 * first write of data (children record it as their parent's identity).
 */
#include "vhdx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "arith.h"
#include "endian.h"
#include "iov.h"
#include "vhdx_internal.h"

#define BATCH_MAX_MEMBERS 512
#define DIRTY_PAGES_MAX	  1024 /* a batch leaving more dirty starts a write-back */
#define PAGE		  4096u

/* ---- state ---- */

struct member {
	struct vdisk_req *req;
	uint64_t block; /* payload block */
	uint64_t voff;
	uint64_t skip;
	uint64_t len;
	struct member *next;
};

/* A 4 KiB page of metadata changed in memory: a BAT page or a sector bitmap page. */
struct dirty_page {
	uint64_t file_offset;
	bool is_bat;
	uint64_t index; /* BAT page number, or bitmap page number (chunk * 256 + page) */
};

struct vhdx_io {
	pthread_mutex_t lock;
	struct member *waiting_head, *waiting_tail;
	unsigned batches_running;
	uint8_t *block_busy;  /* per payload block: a running batch allocates it */
	uint8_t *chunk_busy;  /* per chunk: a running batch allocates its sector bitmap */
	uint64_t alloc_end;   /* where the next block goes: 1 MiB aligned end of used space */
	uint64_t extended_to; /* the file's length as allocation grew it (ahead of alloc_end) */
	bool data_guid_renewed;
	uint8_t **bitmap_pages; /* differencing: sector bitmap pages, NULL until loaded */
	uint64_t nbitmap_pages;

	/* dirty metadata (see the header comment) */
	struct dirty_page *dirty;
	uint64_t ndirty, dirty_cap;
	uint8_t *bat_page_dirty;    /* per BAT page */
	uint8_t *bitmap_page_dirty; /* per bitmap page */
	bool writeback_running;
	struct vdisk_req_list flushes; /* waiting for the next write-back */

	struct vhdx_log_writer log;
	bool log_active;       /* the header carries the log GUID */
	uint32_t applied_head; /* log head after the last entry whose pages are written in place */
	uint64_t durable_size; /* file size covered by the last flush */
};

static struct vhdx *vhdx_of(struct vdisk *disk)
{
	return disk->priv;
}

static struct vhdx_io *io_of(struct vdisk *disk)
{
	return vhdx_of(disk)->io;
}

static uint64_t bat_get(const struct vhdx *v, uint64_t index)
{
	return __atomic_load_n(&v->bat[index], __ATOMIC_ACQUIRE);
}

/* ---- sector bitmaps (differencing) ---- */

/* Bits of one 4 KiB bitmap page: sectors of one chunk, LSB first. */
#define BITS_PER_PAGE (PAGE * 8)

static uint64_t bitmap_page_of(const struct vhdx *v, uint64_t sector)
{
	uint64_t sectors_per_chunk = v->chunk_ratio * vhdx_sectors_per_block(v);
	uint64_t chunk = sector / sectors_per_chunk;
	return chunk * (VHDX_BITMAP_BLOCK_SIZE / PAGE) +
	       (sector % sectors_per_chunk) / BITS_PER_PAGE;
}

static unsigned bitmap_bit_of(const struct vhdx *v, uint64_t sector)
{
	uint64_t sectors_per_chunk = v->chunk_ratio * vhdx_sectors_per_block(v);
	return (unsigned)((sector % sectors_per_chunk) % BITS_PER_PAGE);
}

static bool page_bit(const uint8_t *page, unsigned bit)
{
	return page[bit / 8] & (1u << (bit % 8));
}

/* The sector bitmap page, loaded on first use (one synchronous read per page for the life
 * of the open image). A chunk without a bitmap block reads as all clear. */
static uint8_t *bitmap_page_get(struct vdisk *disk, uint64_t page)
{
	struct vhdx *v = vhdx_of(disk);
	struct vhdx_io *io = io_of(disk);
	uint8_t *p = __atomic_load_n(&io->bitmap_pages[page], __ATOMIC_ACQUIRE);
	if (p)
		return p;
	p = vdisk_alloc_aligned(PAGE);
	if (!p)
		return NULL;
	uint64_t chunk = page / (VHDX_BITMAP_BLOCK_SIZE / PAGE);
	uint64_t entry = bat_get(v, vhdx_bitmap_index(v, chunk));
	if (vhdx_bat_state(entry) == VHDX_BITMAP_PRESENT) {
		uint64_t off =
			vhdx_bat_offset(entry) + (page % (VHDX_BITMAP_BLOCK_SIZE / PAGE)) * PAGE;
		if (vdisk_file_pread(disk->file, p, PAGE, off) < 0) {
			free(p);
			return NULL;
		}
	} else {
		memset(p, 0, PAGE);
	}
	pthread_mutex_lock(&io->lock);
	if (io->bitmap_pages[page]) {
		free(p);
		p = io->bitmap_pages[page];
	} else {
		__atomic_store_n(&io->bitmap_pages[page], p, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&io->lock);
	return p;
}

/* Length in sectors of the run from sector (at most count) whose bits equal its own. */
static int bitmap_run(struct vdisk *disk, uint64_t sector, uint64_t count, bool *set, uint64_t *run)
{
	struct vhdx *v = vhdx_of(disk);
	uint64_t n = 0;
	while (n < count) {
		uint8_t *page = bitmap_page_get(disk, bitmap_page_of(v, sector + n));
		if (!page)
			return -EIO;
		unsigned bit = bitmap_bit_of(v, sector + n);
		bool b = page_bit(page, bit);
		if (n == 0)
			*set = b;
		else if (b != *set)
			break;
		n++;
	}
	*run = n;
	return 0;
}

/* ---- reads ---- */

static void read_file(struct vdisk_req *req, uint64_t skip, uint64_t len, uint64_t file_off)
{
	if (skip == 0 && len == req->length)
		vdisk_req_file_io(req, ENGINE_READ, req->disk->file, req->iov, req->iovcnt,
				  file_off, 0, 0);
	else
		vdisk_req_file_io_part(req, ENGINE_READ, req->disk->file, skip, len, file_off);
}

/* A partially present block: runs of present sectors from the file, the rest from the
 * parent. Unaligned edges belong to the sector that holds them. */
static void read_partial(struct vdisk_req *req, uint64_t entry, uint64_t skip, uint64_t len,
			 uint64_t voff)
{
	struct vhdx *v = vhdx_of(req->disk);
	uint32_t lss = v->logical_sector_size;
	while (len) {
		uint64_t first = voff / lss, last = (voff + len - 1) / lss;
		bool set;
		uint64_t run;
		if (bitmap_run(req->disk, first, last - first + 1, &set, &run) < 0) {
			vdisk_req_fail(req, -EIO);
			return;
		}
		uint64_t run_end = (first + run) * lss;
		uint64_t n = run_end - voff < len ? run_end - voff : len;
		if (set)
			read_file(req, skip, n, vhdx_bat_offset(entry) + voff % v->block_size);
		else
			vdisk_req_read_backing_clipped(req, v->parent, skip, n, voff);
		skip += n;
		len -= n;
		voff += n;
	}
}

static void read_segment(struct vdisk_req *req, uint64_t skip, uint64_t len, uint64_t voff)
{
	struct vhdx *v = vhdx_of(req->disk);
	uint64_t block = voff / v->block_size;
	uint64_t entry = bat_get(v, vhdx_payload_index(v, block));
	switch (vhdx_bat_state(entry)) {
	case VHDX_BLOCK_FULLY_PRESENT:
		read_file(req, skip, len, vhdx_bat_offset(entry) + voff % v->block_size);
		break;
	case VHDX_BLOCK_PARTIALLY_PRESENT:
		read_partial(req, entry, skip, len, voff);
		break;
	case VHDX_BLOCK_NOT_PRESENT:
		if (v->has_parent) {
			vdisk_req_read_backing_clipped(req, v->parent, skip, len, voff);
			break;
		}
		/* fall through */
	default: /* Zero, Unmapped, Undefined */
		iov_memset(req->iov, req->iovcnt, skip, 0, len);
		break;
	}
}

static void vhdx_readv(struct vdisk_req *req)
{
	vdisk_req_for_each_block(req, vhdx_of(req->disk)->block_size, read_segment);
}

/* ---- writes ---- */

static void batch_kick(struct vdisk *disk, struct vdisk_queue *q);

/* Whether a write to a partially present block covers only sectors already present. */
static bool partial_present(struct vdisk *disk, uint64_t voff, uint64_t len)
{
	struct vhdx *v = vhdx_of(disk);
	uint32_t lss = v->logical_sector_size;
	uint64_t first = voff / lss, count = (voff + len - 1) / lss - first + 1;
	bool set;
	uint64_t run;
	return bitmap_run(disk, first, count, &set, &run) == 0 && set && run == count;
}

static void queue_member(struct vdisk_req *req, uint64_t block, uint64_t skip, uint64_t len,
			 uint64_t voff)
{
	struct member *m = malloc(sizeof(*m));
	if (!m) {
		vdisk_req_fail(req, -ENOMEM);
		return;
	}
	*m = (struct member){ .req = req, .block = block, .voff = voff, .skip = skip, .len = len };
	vdisk_req_hold(req);
	struct vhdx_io *io = io_of(req->disk);
	pthread_mutex_lock(&io->lock);
	if (io->waiting_tail)
		io->waiting_tail->next = m;
	else
		io->waiting_head = m;
	io->waiting_tail = m;
	pthread_mutex_unlock(&io->lock);
}

static void write_segment(struct vdisk_req *req, uint64_t skip, uint64_t len, uint64_t voff)
{
	struct vhdx *v = vhdx_of(req->disk);
	uint64_t block = voff / v->block_size;
	uint64_t entry = bat_get(v, vhdx_payload_index(v, block));
	unsigned state = vhdx_bat_state(entry);
	if (state == VHDX_BLOCK_FULLY_PRESENT ||
	    (state == VHDX_BLOCK_PARTIALLY_PRESENT && partial_present(req->disk, voff, len))) {
		uint64_t off = vhdx_bat_offset(entry) + voff % v->block_size;
		if (skip == 0 && len == req->length)
			vdisk_req_file_io(req, ENGINE_WRITE, req->disk->file, req->iov, req->iovcnt,
					  off, 0, 0);
		else
			vdisk_req_file_io_part(req, ENGINE_WRITE, req->disk->file, skip, len, off);
		return;
	}
	queue_member(req, block, skip, len, voff);
}

/* The DataWriteGuid changes before the first write of data after open. */
static int renew_data_guid(struct vdisk *disk)
{
	struct vhdx_io *io = io_of(disk);
	if (__atomic_load_n(&io->data_guid_renewed, __ATOMIC_ACQUIRE))
		return 0;
	pthread_mutex_lock(&io->lock);
	int ret = 0;
	if (!io->data_guid_renewed) {
		struct guid g;
		ret = guid_generate(&g);
		if (ret == 0)
			ret = vhdx_header_update(disk, vhdx_of(disk), NULL, &g, NULL);
		if (ret == 0)
			__atomic_store_n(&io->data_guid_renewed, true, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&io->lock);
	return ret;
}

static void vhdx_writev(struct vdisk_req *req)
{
	int ret = renew_data_guid(req->disk);
	if (ret < 0) {
		vdisk_req_fail(req, ret);
		return;
	}
	vdisk_req_for_each_block(req, vhdx_of(req->disk)->block_size, write_segment);
	batch_kick(req->disk, req->queue);
}

/* ---- dirty metadata ---- */

static void mark_dirty_page(struct vhdx *v, struct vhdx_io *io, bool is_bat, uint64_t index)
{
	uint8_t *mark = is_bat ? &io->bat_page_dirty[index] : &io->bitmap_page_dirty[index];
	if (*mark)
		return;
	uint64_t off;
	if (is_bat) {
		off = v->bat_offset + index * PAGE;
	} else {
		uint64_t chunk = index / (VHDX_BITMAP_BLOCK_SIZE / PAGE);
		off = vhdx_bat_offset(bat_get(v, vhdx_bitmap_index(v, chunk))) +
		      (index % (VHDX_BITMAP_BLOCK_SIZE / PAGE)) * PAGE;
	}
	*mark = 1;
	io->dirty[io->ndirty++] = (struct dirty_page){ off, is_bat, index };
}

static void mark_bat_entry_dirty(struct vhdx *v, struct vhdx_io *io, uint64_t index)
{
	mark_dirty_page(v, io, true, index * 8 / PAGE);
}

/* ---- write-back through the log ---- */

struct writeback {
	struct vdisk_job job;
	struct dirty_page *pages;  /* taken from the dirty list */
	uint8_t *copies;	   /* their contents, PAGE each */
	uint64_t npages, done;	   /* pages, and pages already logged and applied */
	uint64_t in_entry;	   /* pages in the entry being written */
	uint8_t *entry;		   /* the log entry */
	uint32_t entry_head;	   /* log head after it */
	uint64_t size_at_sync;	   /* file size when the data flush was issued */
	struct vdisk_req *waiters; /* flushes this write-back completes */
	int stage;
};

enum { WB_SYNC_DATA, WB_LOG, WB_SYNC_LOG, WB_APPLY };

/* The flush that starts each round. It covers the file size as it is now, not as a batch
 * may grow it while the flush runs: that is what the next entry may call durable. */
static void writeback_issue_data_sync(struct writeback *wb)
{
	wb->size_at_sync = wb->job.disk->file->size;
	vdisk_job_io(&wb->job, ENGINE_FDATASYNC, NULL, 0, 0);
}

static void writeback_start(struct vdisk *disk, struct vdisk_queue *q);

/* The current contents of a dirty page (under the lock). */
static void copy_page(struct vdisk *disk, const struct dirty_page *d, uint8_t *out)
{
	struct vhdx *v = vhdx_of(disk);
	struct vhdx_io *io = io_of(disk);
	if (d->is_bat) {
		for (unsigned e = 0; e < PAGE / 8; e++) {
			uint64_t idx = d->index * (PAGE / 8) + e;
			store_le64(out + e * 8, idx < v->bat_entries ? v->bat[idx] : 0);
		}
	} else if (io->bitmap_pages[d->index]) {
		memcpy(out, io->bitmap_pages[d->index], PAGE);
	} else {
		memset(out, 0, PAGE);
	}
}

/* Under the lock: takes the dirty pages and copies them. Everything copied was made
 * visible after its data was written, so the flush that follows makes that data durable
 * before the copies reach the log. */
static int writeback_take(struct writeback *wb, struct vdisk *disk)
{
	struct vhdx_io *io = io_of(disk);
	uint64_t n = io->ndirty;
	if (!n)
		return 0;
	wb->pages = malloc(sizeof(*wb->pages) * n);
	wb->copies = vdisk_alloc_aligned(n * PAGE);
	if (!wb->pages || !wb->copies)
		return -ENOMEM;
	for (uint64_t i = 0; i < n; i++) {
		wb->pages[i] = io->dirty[i];
		copy_page(disk, &io->dirty[i], wb->copies + i * PAGE);
		uint8_t *mark = io->dirty[i].is_bat ? &io->bat_page_dirty[io->dirty[i].index]
						    : &io->bitmap_page_dirty[io->dirty[i].index];
		*mark = 0;
	}
	io->ndirty = 0;
	wb->npages = n;
	return 0;
}

static void writeback_restore(struct writeback *wb, struct vdisk *disk)
{
	struct vhdx *v = vhdx_of(disk);
	struct vhdx_io *io = io_of(disk);
	pthread_mutex_lock(&io->lock);
	for (uint64_t i = wb->done; i < wb->npages; i++)
		mark_dirty_page(v, io, wb->pages[i].is_bat, wb->pages[i].index);
	pthread_mutex_unlock(&io->lock);
}

static void writeback_free(struct writeback *wb)
{
	free(wb->pages);
	free(wb->copies);
	free(wb->entry);
	free(wb);
}

static void writeback_finish(struct writeback *wb)
{
	struct vdisk *disk = wb->job.disk;
	struct vdisk_queue *q = wb->job.queue;
	struct vhdx_io *io = io_of(disk);
	if (wb->job.result < 0)
		writeback_restore(wb, disk);
	vdisk_req_list_end(wb->waiters, q, wb->job.result);
	writeback_free(wb);
	pthread_mutex_lock(&io->lock);
	io->writeback_running = false;
	pthread_mutex_unlock(&io->lock);
	writeback_start(disk, q);
}

/* Pages that fit in one entry of an empty log. */
static uint64_t pages_per_entry(const struct vhdx_io *io)
{
	return vhdx_log_max_data_updates(io->log.log_length);
}

/* Makes sure the header names the log before the first entry is written. */
static int activate_log(struct vdisk *disk)
{
	struct vhdx_io *io = io_of(disk);
	if (io->log_active)
		return 0;
	/* under the lock: the DataWriteGuid renewal updates the header too */
	pthread_mutex_lock(&io->lock);
	int ret = vhdx_header_update(disk, vhdx_of(disk), NULL, NULL, &io->log.log_guid);
	pthread_mutex_unlock(&io->lock);
	if (ret == 0)
		io->log_active = true;
	return ret;
}

static int writeback_build_entry(struct writeback *wb, struct vhdx_log_piece pieces[2],
				 unsigned *npieces, uint32_t *len)
{
	struct vdisk *disk = wb->job.disk;
	struct vhdx_io *io = io_of(disk);
	uint64_t n = wb->npages - wb->done, max = pages_per_entry(io);
	if (n > max)
		n = max;
	struct vhdx_log_update *u = calloc(n, sizeof(*u));
	if (!u)
		return -ENOMEM;
	for (uint64_t i = 0; i < n; i++)
		u[i] = (struct vhdx_log_update){ .file_offset = wb->pages[wb->done + i].file_offset,
						 .data = wb->copies + (wb->done + i) * PAGE };
	free(wb->entry);
	wb->entry = NULL;
	uint64_t last = disk->file->size > io->alloc_end ? disk->file->size : io->alloc_end;
	int ret = vhdx_log_entry_build(&io->log, u, (unsigned)n, io->durable_size, last, &wb->entry,
				       len, pieces, npieces);
	free(u);
	wb->in_entry = n;
	return ret;
}

static void writeback_issue_log(struct writeback *wb)
{
	struct vdisk *disk = wb->job.disk;
	int ret = activate_log(disk);
	struct vhdx_log_piece pieces[2];
	unsigned npieces = 0;
	uint32_t len;
	if (ret == 0)
		ret = writeback_build_entry(wb, pieces, &npieces, &len);
	if (ret < 0) {
		vdisk_job_fail(&wb->job, ret);
		return;
	}
	wb->entry_head = io_of(disk)->log.head;
	for (unsigned i = 0; i < npieces; i++)
		vdisk_job_write(&wb->job, wb->entry + pieces[i].buf_offset, pieces[i].length,
				pieces[i].file_offset);
}

static void writeback_issue_apply(struct writeback *wb)
{
	for (uint64_t i = wb->done; i < wb->done + wb->in_entry; i++)
		vdisk_job_write(&wb->job, wb->copies + i * PAGE, PAGE, wb->pages[i].file_offset);
}

static void writeback_stage_done(struct vdisk_job *job)
{
	struct writeback *wb = (struct writeback *)job;
	struct vhdx_io *io = io_of(job->disk);
	if (job->result < 0) {
		writeback_finish(wb);
		return;
	}
	switch (wb->stage) {
	case WB_SYNC_DATA:
		/* The previous entries' in-place writes are durable: the log restarts. */
		io->durable_size = wb->size_at_sync;
		vhdx_log_set_tail(&io->log, io->applied_head);
		if (wb->done == wb->npages) {
			writeback_finish(wb);
			return;
		}
		wb->stage = WB_LOG;
		writeback_issue_log(wb);
		vdisk_job_issued(job);
		break;
	case WB_LOG:
		wb->stage = WB_SYNC_LOG;
		vdisk_job_io(job, ENGINE_FDATASYNC, NULL, 0, 0);
		vdisk_job_issued(job);
		break;
	case WB_SYNC_LOG:
		wb->stage = WB_APPLY;
		writeback_issue_apply(wb);
		vdisk_job_issued(job);
		break;
	default: /* WB_APPLY */
		io->applied_head = wb->entry_head;
		wb->done += wb->in_entry;
		wb->stage = WB_SYNC_DATA;
		if (wb->done == wb->npages) {
			writeback_finish(wb);
			return;
		}
		writeback_issue_data_sync(wb);
		vdisk_job_issued(job);
		break;
	}
}

static void writeback_start(struct vdisk *disk, struct vdisk_queue *q)
{
	struct vhdx_io *io = io_of(disk);
	pthread_mutex_lock(&io->lock);
	if (io->writeback_running || (!io->flushes.head && io->ndirty <= DIRTY_PAGES_MAX)) {
		pthread_mutex_unlock(&io->lock);
		return;
	}
	struct writeback *wb = calloc(1, sizeof(*wb));
	struct vdisk_req *waiters = vdisk_req_list_take(&io->flushes);
	if (!wb) {
		pthread_mutex_unlock(&io->lock);
		vdisk_req_list_end(waiters, q, -ENOMEM);
		return;
	}
	int ret = writeback_take(wb, disk);
	io->writeback_running = true;
	pthread_mutex_unlock(&io->lock);

	wb->waiters = waiters;
	wb->job =
		(struct vdisk_job){ .disk = disk, .queue = q, .stage_done = writeback_stage_done };
	wb->stage = WB_SYNC_DATA;
	if (ret < 0) {
		vdisk_job_fail(&wb->job, ret);
		writeback_finish(wb);
		return;
	}
	writeback_issue_data_sync(wb);
	vdisk_job_issued(&wb->job);
}

static void vhdx_flush(struct vdisk_req *req)
{
	if (req->disk->read_only) {
		vdisk_req_file_io(req, ENGINE_FDATASYNC, req->disk->file, NULL, 0, 0, 0, 0);
		return;
	}
	struct vhdx_io *io = io_of(req->disk);
	pthread_mutex_lock(&io->lock);
	vdisk_req_list_push(&io->flushes, req);
	pthread_mutex_unlock(&io->lock);
	writeback_start(req->disk, req->queue);
}

/* The same, synchronously, for close: nothing may be in flight. */
static int writeback_sync(struct vdisk *disk)
{
	struct vhdx_io *io = io_of(disk);
	struct writeback wb = { 0 };
	int ret = writeback_take(&wb, disk);
	while (ret == 0) {
		uint64_t size = disk->file->size;
		ret = vdisk_file_sync(disk->file);
		if (ret < 0)
			break;
		io->durable_size = size;
		vhdx_log_set_tail(&io->log, io->applied_head);
		if (wb.done == wb.npages)
			break;
		struct vhdx_log_piece pieces[2];
		unsigned npieces = 0;
		uint32_t len;
		wb.job.disk = disk;
		ret = activate_log(disk);
		if (ret == 0)
			ret = writeback_build_entry(&wb, pieces, &npieces, &len);
		for (unsigned i = 0; ret == 0 && i < npieces; i++)
			ret = vdisk_file_pwrite(disk->file, wb.entry + pieces[i].buf_offset,
						pieces[i].length, pieces[i].file_offset);
		if (ret == 0)
			ret = vdisk_file_sync(disk->file);
		for (uint64_t i = wb.done; ret == 0 && i < wb.done + wb.in_entry; i++)
			ret = vdisk_file_pwrite(disk->file, wb.copies + i * PAGE, PAGE,
						wb.pages[i].file_offset);
		if (ret == 0) {
			io->applied_head = io->log.head;
			wb.done += wb.in_entry;
		}
	}
	if (ret < 0)
		writeback_restore(&wb, disk);
	free(wb.pages);
	free(wb.copies);
	free(wb.entry);
	return ret;
}

/* ---- allocation batches ---- */

struct batch_block {
	uint64_t block;
	uint64_t entry; /* the BAT entry it will have */
	bool changes_entry;
};

struct batch {
	struct vdisk_job job;
	struct member *members;
	struct batch_block *blocks;
	unsigned nblocks;
	uint64_t *new_bitmap_chunks; /* chunks that get a sector bitmap block */
	uint64_t *new_bitmap_offsets;
	unsigned nbitmaps;
};

static struct batch_block *find_block(struct batch *b, uint64_t block)
{
	for (unsigned i = 0; i < b->nblocks; i++)
		if (b->blocks[i].block == block)
			return &b->blocks[i];
	return NULL;
}

static uint64_t reserve(struct vhdx_io *io, uint64_t length)
{
	uint64_t off = io->alloc_end;
	io->alloc_end += length;
	return off;
}

/* Whether the member covers its whole block. */
static bool covers_block(const struct vhdx *v, const struct member *m)
{
	return m->voff % v->block_size == 0 && m->len == v->block_size;
}

/* Under the lock: the block's entry after this batch. New blocks are zero-filled, so a
 * block of a differencing image that was Zero (or is written whole) becomes fully
 * present; one that was not present becomes partially present (the rest is the
 * parent's). Returns 1 when another running batch owns the block or the chunk's bitmap:
 * the member waits for it. */
static int batch_add_member(struct batch *b, struct member *m)
{
	struct vhdx *v = vhdx_of(b->job.disk);
	struct vhdx_io *io = io_of(b->job.disk);
	struct batch_block *bb = find_block(b, m->block);
	uint64_t entry = bb ? bb->entry : v->bat[vhdx_payload_index(v, m->block)];
	unsigned state = vhdx_bat_state(entry);
	if (!bb && io->block_busy[m->block])
		return 1;
	bool allocates = state != VHDX_BLOCK_FULLY_PRESENT && state != VHDX_BLOCK_PARTIALLY_PRESENT;
	bool partial = state == VHDX_BLOCK_PARTIALLY_PRESENT ||
		       (allocates && v->has_parent && state == VHDX_BLOCK_NOT_PRESENT &&
			!covers_block(v, m));
	uint64_t chunk = m->block / v->chunk_ratio;
	bool new_bitmap = false;
	if (partial) {
		bool have =
			vhdx_bat_state(v->bat[vhdx_bitmap_index(v, chunk)]) == VHDX_BITMAP_PRESENT;
		for (unsigned i = 0; i < b->nbitmaps && !have; i++)
			have = b->new_bitmap_chunks[i] == chunk;
		if (!have && io->chunk_busy[chunk])
			return 1;
		new_bitmap = !have;
	}
	if (!bb) {
		bb = &b->blocks[b->nblocks++];
		*bb = (struct batch_block){ .block = m->block, .entry = entry };
	}
	if (allocates) {
		bb->entry = vhdx_bat_entry(partial ? VHDX_BLOCK_PARTIALLY_PRESENT
						   : VHDX_BLOCK_FULLY_PRESENT,
					   reserve(io, v->block_size));
		bb->changes_entry = true;
		io->block_busy[m->block] = 1;
	}
	if (new_bitmap) {
		b->new_bitmap_chunks[b->nbitmaps] = chunk;
		b->new_bitmap_offsets[b->nbitmaps++] = reserve(io, VHDX_BITMAP_BLOCK_SIZE);
		io->chunk_busy[chunk] = 1;
	}
	return 0;
}

/* Under the lock: what the batch allocated is no longer busy. */
static void batch_release(struct batch *b)
{
	struct vhdx_io *io = io_of(b->job.disk);
	for (unsigned i = 0; i < b->nblocks; i++)
		if (b->blocks[i].changes_entry)
			io->block_busy[b->blocks[i].block] = 0;
	for (unsigned i = 0; i < b->nbitmaps; i++)
		io->chunk_busy[b->new_bitmap_chunks[i]] = 0;
}

static void batch_free(struct batch *b)
{
	free(b->blocks);
	free(b->new_bitmap_chunks);
	free(b->new_bitmap_offsets);
	free(b);
}

/* ext4 treats direct writes past its on-disk size as extending ones, which it serialises:
 * the file is truncated past the new end first (that moves the on-disk size at once).
 * It grows in steps of several blocks, so most batches need no truncate; a clean close
 * trims what was not used. */
static int batch_extend(struct batch *b)
{
	struct vdisk *disk = b->job.disk;
	struct vdisk_file *file = disk->file;
	struct vhdx_io *io = io_of(disk);
	uint64_t step = 8 * (uint64_t)vhdx_of(disk)->block_size;
	if (step < (64u << 20))
		step = 64u << 20;
	pthread_mutex_lock(&io->lock);
	int ret = 0;
	if (!file->is_block_device && io->alloc_end > io->extended_to) {
		uint64_t to = (io->alloc_end + step - 1) / step * step;
		ret = vdisk_file_set_size(file, to);
		if (ret == 0)
			io->extended_to = to;
	}
	pthread_mutex_unlock(&io->lock);
	return ret;
}

static void batch_issue(struct batch *b)
{
	struct vhdx *v = vhdx_of(b->job.disk);
	for (struct member *m = b->members; m; m = m->next) {
		struct batch_block *bb = find_block(b, m->block);
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
			     vhdx_bat_offset(bb->entry) + m->voff % v->block_size);
		if (slice != inline_iov)
			free(slice);
	}
}

/* Under the lock: sets the bits of a member's sectors in the cached bitmap pages. */
static int set_member_bits(struct vdisk *disk, const struct member *m)
{
	struct vhdx *v = vhdx_of(disk);
	struct vhdx_io *io = io_of(disk);
	uint32_t lss = v->logical_sector_size;
	for (uint64_t s = m->voff / lss; s <= (m->voff + m->len - 1) / lss; s++) {
		uint64_t page = bitmap_page_of(v, s);
		uint8_t *p = io->bitmap_pages[page];
		if (!p) {
			pthread_mutex_unlock(&io->lock);
			p = bitmap_page_get(disk, page);
			pthread_mutex_lock(&io->lock);
			if (!p)
				return -EIO;
		}
		unsigned bit = bitmap_bit_of(v, s);
		if (!page_bit(p, bit)) {
			__atomic_fetch_or(&p[bit / 8], (uint8_t)(1u << (bit % 8)),
					  __ATOMIC_RELEASE);
			mark_dirty_page(v, io, false, page);
		}
	}
	return 0;
}

/* Makes the batch visible and marks what changed dirty. Sector bitmap blocks come first:
 * a bitmap page's file offset is taken from its BAT entry. */
static int batch_commit(struct batch *b)
{
	struct vdisk *disk = b->job.disk;
	struct vhdx *v = vhdx_of(disk);
	struct vhdx_io *io = io_of(disk);
	int ret = 0;
	pthread_mutex_lock(&io->lock);
	for (unsigned i = 0; i < b->nbitmaps; i++) {
		uint64_t idx = vhdx_bitmap_index(v, b->new_bitmap_chunks[i]);
		__atomic_store_n(&v->bat[idx],
				 vhdx_bat_entry(VHDX_BITMAP_PRESENT, b->new_bitmap_offsets[i]),
				 __ATOMIC_RELEASE);
		mark_bat_entry_dirty(v, io, idx);
	}
	for (struct member *m = b->members; m && ret == 0; m = m->next) {
		struct batch_block *bb = find_block(b, m->block);
		if (vhdx_bat_state(bb->entry) == VHDX_BLOCK_PARTIALLY_PRESENT)
			ret = set_member_bits(disk, m);
	}
	for (unsigned i = 0; i < b->nblocks; i++) {
		struct batch_block *bb = &b->blocks[i];
		if (!bb->changes_entry)
			continue;
		uint64_t idx = vhdx_payload_index(v, bb->block);
		__atomic_store_n(&v->bat[idx], bb->entry, __ATOMIC_RELEASE);
		mark_bat_entry_dirty(v, io, idx);
	}
	pthread_mutex_unlock(&io->lock);
	return ret;
}

static void batch_done(struct vdisk_job *job)
{
	struct batch *b = (struct batch *)job;
	struct vdisk *disk = job->disk;
	struct vdisk_queue *q = job->queue;
	struct vhdx_io *io = io_of(disk);
	if (job->result == 0)
		vdisk_job_fail(job, batch_commit(b));
	for (struct member *m = b->members, *next; m; m = next) {
		next = m->next;
		vdisk_req_end_on_queue(m->req, q, job->result);
		free(m);
	}
	pthread_mutex_lock(&io->lock);
	batch_release(b);
	io->batches_running--;
	pthread_mutex_unlock(&io->lock);
	batch_free(b);
	writeback_start(disk, q);
	batch_kick(disk, q);
}

static struct batch *batch_new(void)
{
	struct batch *b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->blocks = calloc(BATCH_MAX_MEMBERS, sizeof(*b->blocks));
	b->new_bitmap_chunks = calloc(BATCH_MAX_MEMBERS, sizeof(*b->new_bitmap_chunks));
	b->new_bitmap_offsets = calloc(BATCH_MAX_MEMBERS, sizeof(*b->new_bitmap_offsets));
	if (!b->blocks || !b->new_bitmap_chunks || !b->new_bitmap_offsets) {
		batch_free(b);
		return NULL;
	}
	return b;
}

/* Under the lock: moves the waiting members the batch may take into it; members whose
 * block or bitmap another batch is allocating stay waiting, in order. */
static void batch_take_members(struct batch *b, struct vhdx_io *io)
{
	struct member **tail = &b->members;
	struct member **link = &io->waiting_head;
	unsigned taken = 0;
	io->waiting_tail = NULL;
	while (*link) {
		struct member *m = *link;
		int ret = taken < BATCH_MAX_MEMBERS ? batch_add_member(b, m) : 1;
		if (ret > 0) { /* stays */
			io->waiting_tail = m;
			link = &m->next;
			continue;
		}
		*link = m->next;
		m->next = NULL;
		*tail = m;
		tail = &m->next;
		taken++;
		vdisk_job_fail(&b->job, ret);
	}
}

static void batch_kick(struct vdisk *disk, struct vdisk_queue *q)
{
	struct vhdx_io *io = io_of(disk);
	struct batch *b = batch_new();
	pthread_mutex_lock(&io->lock);
	if (!io->waiting_head) {
		pthread_mutex_unlock(&io->lock);
		if (b)
			batch_free(b);
		return;
	}
	if (!b) {
		struct member *m = io->waiting_head;
		io->waiting_head = io->waiting_tail = NULL;
		pthread_mutex_unlock(&io->lock);
		for (struct member *next; m; m = next) {
			next = m->next;
			vdisk_req_end_on_queue(m->req, q, -ENOMEM);
			free(m);
		}
		return;
	}
	b->job = (struct vdisk_job){ .disk = disk, .queue = q, .stage_done = batch_done };
	batch_take_members(b, io);
	if (!b->members) { /* all wait for running batches, which kick again when done */
		pthread_mutex_unlock(&io->lock);
		batch_free(b);
		return;
	}
	io->batches_running++;
	pthread_mutex_unlock(&io->lock);
	if (b->job.result == 0)
		vdisk_job_fail(&b->job, batch_extend(b));
	if (b->job.result == 0)
		batch_issue(b);
	vdisk_job_issued(&b->job);
}

/* ---- discard and write zeroes ---- */

/* Whole blocks change state in the BAT; partial blocks are written with zeros. */
static void set_block_state(struct vdisk *disk, uint64_t block, unsigned state)
{
	struct vhdx *v = vhdx_of(disk);
	struct vhdx_io *io = io_of(disk);
	uint64_t idx = vhdx_payload_index(v, block);
	pthread_mutex_lock(&io->lock);
	__atomic_store_n(&v->bat[idx], vhdx_bat_entry(state, 0), __ATOMIC_RELEASE);
	mark_bat_entry_dirty(v, io, idx);
	pthread_mutex_unlock(&io->lock);
}

/* Discard: whole blocks are unmapped (a differencing image's become Zero, or its parent
 * would show through), partial ones are written with zeros. */
static void discard_segment(struct vdisk_req *req, uint64_t skip, uint64_t len, uint64_t voff)
{
	(void)skip;
	struct vhdx *v = vhdx_of(req->disk);
	uint64_t block = voff / v->block_size;
	unsigned state = vhdx_bat_state(bat_get(v, vhdx_payload_index(v, block)));
	if (state == VHDX_BLOCK_ZERO || state == VHDX_BLOCK_UNMAPPED ||
	    (!v->has_parent && state == VHDX_BLOCK_NOT_PRESENT))
		return; /* reads as zeros already */
	if (voff % v->block_size || len != v->block_size)
		vdisk_req_write_zeroes_via(req, voff, len);
	else
		set_block_state(req->disk, block,
				v->has_parent ? VHDX_BLOCK_ZERO : VHDX_BLOCK_UNMAPPED);
}

static void zero_segment(struct vdisk_req *req, uint64_t skip, uint64_t len, uint64_t voff)
{
	(void)skip;
	struct vhdx *v = vhdx_of(req->disk);
	uint64_t block = voff / v->block_size;
	unsigned state = vhdx_bat_state(bat_get(v, vhdx_payload_index(v, block)));
	if (state == VHDX_BLOCK_ZERO || (!v->has_parent && state == VHDX_BLOCK_NOT_PRESENT))
		return; /* reads as zeros already */
	if (voff % v->block_size == 0 && len == v->block_size)
		set_block_state(req->disk, block, VHDX_BLOCK_ZERO);
	else
		vdisk_req_write_zeroes_via(req, voff, len);
}

static void vhdx_discard(struct vdisk_req *req)
{
	int ret = renew_data_guid(req->disk);
	if (ret < 0) {
		vdisk_req_fail(req, ret);
		return;
	}
	vdisk_req_for_each_block(req, vhdx_of(req->disk)->block_size, discard_segment);
}

static void vhdx_write_zeroes(struct vdisk_req *req)
{
	int ret = renew_data_guid(req->disk);
	if (ret < 0) {
		vdisk_req_fail(req, ret);
		return;
	}
	vdisk_req_for_each_block(req, vhdx_of(req->disk)->block_size, zero_segment);
}

/* ---- block status ---- */

static int block_run(struct vdisk *disk, uint64_t pos, uint64_t n, unsigned *flags, uint64_t *run)
{
	struct vhdx *v = vhdx_of(disk);
	uint64_t entry = bat_get(v, vhdx_payload_index(v, pos / v->block_size));
	*run = n;
	switch (vhdx_bat_state(entry)) {
	case VHDX_BLOCK_FULLY_PRESENT:
		*flags = VDISK_EXTENT_DATA;
		return 0;
	case VHDX_BLOCK_PARTIALLY_PRESENT: {
		uint32_t lss = v->logical_sector_size;
		uint64_t first = pos / lss;
		bool set;
		uint64_t sectors;
		if (bitmap_run(disk, first, (pos + n - 1) / lss - first + 1, &set, &sectors) < 0)
			return -EIO;
		uint64_t bytes = (first + sectors) * lss - pos;
		*run = bytes < n ? bytes : n;
		*flags = set ? VDISK_EXTENT_DATA : 0;
		return 0;
	}
	case VHDX_BLOCK_NOT_PRESENT:
		*flags = v->has_parent ? 0 : VDISK_EXTENT_ZERO;
		return 0;
	default:
		*flags = VDISK_EXTENT_ZERO;
		return 0;
	}
}

static int vhdx_block_status(struct vdisk *disk, uint64_t offset, uint64_t length,
			     struct vdisk_extent *ext)
{
	return vdisk_block_status_by_runs(disk, offset, length, vhdx_of(disk)->block_size,
					  block_run, ext);
}

/* ---- open, close ---- */

static int open_parent(struct vdisk *disk, struct vhdx *v, char *err, size_t err_size)
{
	char why[256];
	int ret = vdisk_open_backing(disk, v->parent_path, &v->parent, why, sizeof(why));
	if (ret < 0) {
		snprintf(err, err_size, "cannot open parent '%s': %s", v->parent_path, why);
		return ret;
	}
	if (strcmp(vdisk_format_name(v->parent), "vhdx") != 0) {
		snprintf(err, err_size,
			 "parent '%s' is a %s image; a differencing VHDX needs a VHDX parent",
			 v->parent_path, vdisk_format_name(v->parent));
		return -EINVAL;
	}
	const struct vhdx *pv = v->parent->priv;
	char have[GUID_STR_LEN + 1];
	guid_format(&pv->header.data_write_guid, have);
	const char *want = v->locator.parent_linkage ? v->locator.parent_linkage : "";
	/* parent_linkage is stored as "{GUID}" */
	const char *w = want[0] == '{' ? want + 1 : want;
	if (strncasecmp(w, have, GUID_STR_LEN) != 0 && !disk->opts.allow_parent_mismatch) {
		snprintf(err, err_size,
			 "parent '%s' has DataWriteGuid %s but this image expects %s (the parent "
			 "was modified or replaced; force with --allow-parent-mismatch)",
			 v->parent_path, have, want);
		return -EINVAL;
	}
	return 0;
}

static void io_free(struct vhdx *v)
{
	struct vhdx_io *io = v->io;
	if (!io)
		return;
	if (io->bitmap_pages)
		for (uint64_t i = 0; i < io->nbitmap_pages; i++)
			free(io->bitmap_pages[i]);
	free(io->bitmap_pages);
	free(io->dirty);
	free(io->bat_page_dirty);
	free(io->bitmap_page_dirty);
	free(io->block_busy);
	free(io->chunk_busy);
	pthread_mutex_destroy(&io->lock);
	free(io);
	v->io = NULL;
}

static int io_init(struct vdisk *disk, struct vhdx *v)
{
	struct vhdx_io *io = calloc(1, sizeof(*io));
	if (!io)
		return -ENOMEM;
	v->io = io;
	pthread_mutex_init(&io->lock, NULL);
	uint64_t bat_pages = (v->bat_entries * 8 + PAGE - 1) / PAGE;
	io->nbitmap_pages = v->has_parent ? v->bitmap_blocks * (VHDX_BITMAP_BLOCK_SIZE / PAGE) : 0;
	io->dirty_cap = bat_pages + io->nbitmap_pages;
	io->dirty = malloc(sizeof(*io->dirty) * (io->dirty_cap ? io->dirty_cap : 1));
	io->bat_page_dirty = calloc(bat_pages ? bat_pages : 1, 1);
	io->bitmap_page_dirty = calloc(io->nbitmap_pages ? io->nbitmap_pages : 1, 1);
	io->bitmap_pages = calloc(io->nbitmap_pages ? io->nbitmap_pages : 1, sizeof(uint8_t *));
	if (!io->dirty || !io->bat_page_dirty || !io->bitmap_page_dirty || !io->bitmap_pages)
		return -ENOMEM;
	io->block_busy = calloc(v->data_blocks ? v->data_blocks : 1, 1);
	io->chunk_busy = calloc(v->bitmap_blocks ? v->bitmap_blocks : 1, 1);
	if (!io->block_busy || !io->chunk_busy)
		return -ENOMEM;
	uint64_t end = disk->file->size;
	io->alloc_end =
		(end + VHDX_BITMAP_BLOCK_SIZE - 1) & ~(uint64_t)(VHDX_BITMAP_BLOCK_SIZE - 1);
	io->extended_to = end;
	io->durable_size = end;
	struct guid log_guid;
	int ret = guid_generate(&log_guid);
	if (ret < 0)
		return ret;
	/* A fresh sequence per open: replay never mixes entries of two opens. */
	uint64_t seq;
	memcpy(&seq, log_guid.bytes, sizeof(seq));
	vhdx_log_writer_init(&io->log, v->header.log_offset, v->header.log_length, &log_guid,
			     (seq >> 16) | 1);
	return 0;
}

/* A clean close: metadata written back, the log GUID cleared, then the file trimmed to
 * what is used. */
static void close_clean(struct vdisk *disk)
{
	struct vhdx_io *io = io_of(disk);
	if (writeback_sync(disk) < 0)
		return; /* the log stays set: the next open replays what was logged */
	if (io->log_active && vdisk_file_sync(disk->file) == 0) {
		static const struct guid zero;
		if (vhdx_header_update(disk, vhdx_of(disk), NULL, NULL, &zero) == 0)
			io->log_active = false;
	}
	/* Only with the log cleared: its entries name the longer file as durable. */
	if (!io->log_active && !disk->file->is_block_device && disk->file->size > io->alloc_end &&
	    vdisk_file_set_size(disk->file, io->alloc_end) == 0)
		vdisk_file_sync(disk->file);
}

static void vhdx_close(struct vdisk *disk)
{
	struct vhdx *v = disk->priv;
	if (!v)
		return;
	if (v->io && !disk->read_only)
		close_clean(disk);
	vdisk_close(v->parent);
	io_free(v);
	vhdx_unload(v);
	free(v);
	disk->priv = NULL;
}

static int vhdx_open(struct vdisk *disk, char *err, size_t err_size)
{
	struct vhdx *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	disk->priv = v;
	int ret = vhdx_load(disk, v, err, err_size);
	if (ret == 0)
		ret = io_init(disk, v);
	if (ret == 0 && v->has_parent && !disk->opts.no_backing)
		ret = open_parent(disk, v, err, err_size);
	if (ret == 0 && !disk->read_only) {
		/* A fresh FileWriteGuid before the first change of the file. */
		struct guid g;
		ret = guid_generate(&g);
		if (ret == 0)
			ret = vhdx_header_update(disk, v, &g, NULL, NULL);
		if (ret < 0)
			snprintf(err, err_size, "cannot update the header: %s", strerror(-ret));
	}
	if (ret < 0) {
		vhdx_close(disk);
		return ret;
	}
	disk->size = v->virtual_size;
	disk->logical_sector_size = v->logical_sector_size;
	disk->physical_sector_size = v->physical_sector_size;
	/* Bitmaps mark whole sectors: a partial one must first be read from the parent. */
	if (v->has_parent)
		disk->write_granularity = v->logical_sector_size;
	return 0;
}

/* Repair may move blocks to the end of the file and rewrite bitmaps: allocation goes on
 * after the file's new end, and cached bitmap pages are read again. */
static void forget_after_repair(struct vdisk *disk)
{
	struct vhdx_io *io = io_of(disk);
	uint64_t end = (disk->file->size + VHDX_BITMAP_BLOCK_SIZE - 1) &
		       ~(uint64_t)(VHDX_BITMAP_BLOCK_SIZE - 1);
	if (end > io->alloc_end)
		io->alloc_end = end;
	for (uint64_t i = 0; i < io->nbitmap_pages; i++) {
		free(io->bitmap_pages[i]);
		io->bitmap_pages[i] = NULL;
	}
}

/* Check reads the metadata on disk: write back what is in memory first. */
static int vhdx_check_disk(struct vdisk *disk, unsigned flags, struct vdisk_check_result *result)
{
	if (!disk->read_only) {
		int ret = writeback_sync(disk);
		if (ret < 0)
			return ret;
	}
	int ret = vhdx_check(disk, flags, result);
	if (flags & VDISK_CHECK_REPAIR)
		forget_after_repair(disk);
	return ret;
}

/* ---- offline maintenance: resize, compact and rebase (nothing in flight) ---- */

int vhdx_writeback(struct vdisk *disk)
{
	return writeback_sync(disk);
}

static int apply_update(struct vdisk_file *file, const struct vhdx_log_update *u)
{
	if (u->data)
		return vdisk_file_pwrite(file, u->data, PAGE, u->file_offset);
	const struct iovec *zero = vdisk_zero_iov(PAGE);
	if (!zero)
		return -ENOMEM;
	for (uint64_t done = 0; done < u->zero_length; done += PAGE) {
		int ret = vdisk_file_pwrite(file, zero->iov_base, PAGE, u->file_offset + done);
		if (ret < 0)
			return ret;
	}
	return 0;
}

int vhdx_log_commit(struct vdisk *disk, const struct vhdx_log_update *updates, unsigned count)
{
	struct vhdx_io *io = io_of(disk);
	int ret = writeback_sync(disk);
	if (ret == 0)
		ret = vdisk_file_sync(disk->file);
	if (ret < 0)
		return ret;
	io->durable_size = disk->file->size;
	vhdx_log_set_tail(&io->log, io->applied_head);
	uint64_t last = disk->file->size;
	for (unsigned i = 0; i < count; i++) {
		uint64_t end =
			updates[i].file_offset + (updates[i].data ? PAGE : updates[i].zero_length);
		if (end > last)
			last = end;
	}
	ret = activate_log(disk);
	uint8_t *entry = NULL;
	uint32_t len;
	struct vhdx_log_piece pieces[2];
	unsigned npieces = 0;
	if (ret == 0)
		ret = vhdx_log_entry_build(&io->log, updates, count, io->durable_size, last, &entry,
					   &len, pieces, &npieces);
	for (unsigned i = 0; ret == 0 && i < npieces; i++)
		ret = vdisk_file_pwrite(disk->file, entry + pieces[i].buf_offset, pieces[i].length,
					pieces[i].file_offset);
	free(entry);
	if (ret == 0)
		ret = vdisk_file_sync(disk->file);
	if (ret == 0 && last > disk->file->size)
		ret = vdisk_file_set_size(disk->file, last);
	for (unsigned i = 0; ret == 0 && i < count; i++)
		ret = apply_update(disk->file, &updates[i]);
	if (ret == 0)
		io->applied_head = io->log.head;
	return ret;
}

uint64_t vhdx_alloc_end(struct vdisk *disk)
{
	struct vhdx_io *io = io_of(disk);
	pthread_mutex_lock(&io->lock);
	uint64_t end = io->alloc_end;
	pthread_mutex_unlock(&io->lock);
	return end;
}

uint64_t vhdx_used_end(const struct vhdx *v, uint64_t *blocks_end)
{
	uint64_t end = v->header.log_offset + v->header.log_length, blocks = 0;
	for (unsigned i = 0; i < v->nregions; i++)
		end = max_u64(end, v->regions[i].file_offset + v->regions[i].length);
	for (uint64_t i = 0; i < v->bat_entries; i++) {
		if (!vhdx_entry_present(v, i))
			continue;
		uint64_t span = vhdx_is_bitmap_index(v, i) ? VHDX_BITMAP_BLOCK_SIZE : v->block_size;
		blocks = max_u64(blocks, vhdx_bat_offset(v->bat[i]) + span);
	}
	if (blocks_end)
		*blocks_end = blocks;
	end = max_u64(end, blocks);
	return (end + VHDX_ALIGN - 1) & ~(uint64_t)(VHDX_ALIGN - 1);
}

int vhdx_io_reinit(struct vdisk *disk)
{
	struct vhdx *v = vhdx_of(disk);
	struct vhdx_io *old = io_of(disk);
	struct vhdx_io keep = *old;
	v->io = NULL;
	int ret = io_init(disk, v);
	struct vhdx_io *io = v->io;
	if (io) {
		io->log = keep.log;
		io->log_active = keep.log_active;
		io->applied_head = keep.applied_head;
		io->durable_size = keep.durable_size;
		io->data_guid_renewed = keep.data_guid_renewed;
		/* Allocation goes on where it was, not at the file's end: the file may reach
		 * past what is used (extended ahead of allocation), and that space stays
		 * free for the next blocks. */
		io->alloc_end = max_u64(keep.alloc_end, vhdx_used_end(v, NULL));
	}
	if (ret < 0) {
		io_free(v);
		v->io = old;
		return ret;
	}
	v->io = old;
	io_free(v);
	v->io = io;
	return 0;
}

/* Replay refuses a file shorter than an entry's FlushedFileOffset: the log is ended (the
 * header's log GUID cleared once everything is written back and flushed) before the file
 * shrinks, and the next write-back starts a new log under a fresh GUID. */
int vhdx_truncate_file(struct vdisk *disk, uint64_t size)
{
	struct vhdx_io *io = io_of(disk);
	struct guid fresh;
	int ret = guid_generate(&fresh);
	if (ret == 0)
		ret = writeback_sync(disk);
	if (ret == 0)
		ret = vdisk_file_sync(disk->file);
	if (ret == 0 && io->log_active) {
		static const struct guid zero;
		ret = vhdx_header_update(disk, vhdx_of(disk), NULL, NULL, &zero);
		if (ret == 0)
			io->log_active = false;
	}
	if (ret == 0)
		ret = vdisk_file_set_size(disk->file, size);
	if (ret == 0)
		ret = vdisk_file_sync(disk->file);
	if (ret < 0)
		return ret;
	vhdx_log_writer_init(&io->log, io->log.log_offset, io->log.log_length, &fresh,
			     io->log.sequence);
	io->applied_head = io->log.head;
	io->durable_size = size;
	io->alloc_end = (size + VHDX_ALIGN - 1) & ~(uint64_t)(VHDX_ALIGN - 1);
	io->extended_to = size;
	return 0;
}

static const struct vdisk_format vhdx_format = {
	.name = "vhdx",
	.probe = vhdx_probe,
	.open = vhdx_open,
	.close = vhdx_close,
	.readv = vhdx_readv,
	.writev = vhdx_writev,
	.flush = vhdx_flush,
	.discard = vhdx_discard,
	.write_zeroes = vhdx_write_zeroes,
	.block_status = vhdx_block_status,
	.get_info = vhdx_get_info,
	.check = vhdx_check_disk,
	.create = vhdx_create,
	.resize = vhdx_resize,
	.compact = vhdx_compact,
	.set_parent = vhdx_set_parent,
};

int vhdx_register(void)
{
	return vdisk_format_register(&vhdx_format);
}
