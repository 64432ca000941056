/* VHD driver: open/close glue, the read and write paths, block allocation and block
 * status. Parsing, creation, info and check live in vhd_meta.c.
 *
 * Writes that need no metadata change (fixed images, allocated blocks of dynamic images,
 * sectors already present in a differencing image) go straight to the file, in parallel,
 * without a lock. Writes that need one (a new block, or new sector bitmap bits) join a
 * per-disk metadata batch. Batches run one at a time, and each one commits many writes
 * with one flush (group commit):
 *
 *   1. data of every member, the sector bitmaps of new blocks, and the footer at the new
 *      end of the file (new blocks are appended, each with its data 4 KiB aligned);
 *   2. flush;
 *   3. BAT sectors naming the new blocks, and bitmaps of existing blocks that gained bits;
 *   4. the in-memory BAT and bitmaps are updated and the members complete.
 *
 * So the BAT never points at a block whose data is not on disk, and a bitmap bit is never
 * set for a sector whose data is not on disk. A crash leaves at worst unreferenced space
 * at the end of the file (reclaimed by `vdisk check --repair`) and, if the end footer
 * was torn, the footer copy at offset 0 to open from.
 *
 * Dynamic images are read as QEMU reads them: an allocated block's data is authoritative
 * (new blocks are zero-filled and their bitmaps all ones). Differencing images follow
 * their sector bitmaps: clear bits read from the parent.
 */
#include "vhd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "endian.h"
#include "iov.h"
#include "vhd_internal.h"

#define BATCH_MAX_MEMBERS 512
#define DATA_ALIGN 4096u

/* A write segment (inside one block) that needs a metadata change. */
struct member {
	struct vdisk_req *req;
	uint32_t block;
	uint64_t voff; /* virtual offset */
	uint64_t skip; /* offset of the segment in the request's buffer */
	uint64_t len;
	struct member *next;
};

/* A block touched by a batch: new, or existing with new bitmap bits. */
struct batch_block {
	uint32_t block;
	uint32_t sector;  /* file sector of its bitmap */
	bool is_new;
	uint8_t *bitmap;  /* the bitmap as the batch writes it (aligned buffer) */
};

struct batch_op {
	struct engine_io io;
	struct batch *batch;
	struct iovec iov[IOV_INLINE];
	struct iovec *heap;
};

struct batch {
	struct vdisk *disk;
	struct vdisk_queue *queue;
	struct member *members;
	struct batch_block *blocks;
	unsigned nblocks;
	unsigned pending;
	int result;
	int stage;
	uint64_t new_footer_offset;
	uint8_t *footer;  /* aligned copy */
	uint8_t *bat_buf; /* BAT sectors written in stage 3 */
};

struct vhd_io {
	pthread_mutex_t lock;
	struct member *waiting_head, *waiting_tail;
	bool running;
	uint64_t alloc_end; /* where the next block may start: the footer offset after all
			     * reservations */
	uint8_t **bitmaps;  /* differencing: committed bitmaps by block, NULL until loaded */
};

static struct vhd *vhd_of(struct vdisk *disk)
{
	return disk->priv;
}

static struct vhd_io *io_of(struct vdisk *disk)
{
	return vhd_of(disk)->io;
}

static bool is_sparse(const struct vhd *vhd)
{
	return vhd->footer.disk_type != VHD_TYPE_FIXED;
}

static bool is_diff(const struct vhd *vhd)
{
	return vhd->footer.disk_type == VHD_TYPE_DIFFERENCING;
}

static uint32_t bat_get(const struct vhd *vhd, uint32_t block)
{
	return __atomic_load_n(&vhd->bat[block], __ATOMIC_ACQUIRE);
}

static uint64_t block_data_offset(const struct vhd *vhd, uint32_t sector)
{
	return (uint64_t)sector * VHD_SECTOR + vhd->bitmap_size;
}

static bool bit_is_set(const uint8_t *bitmap, uint64_t sector)
{
	return bitmap[sector / 8] & (0x80 >> (sector % 8)); /* MSB first */
}

static void bit_set(uint8_t *bitmap, uint64_t sector)
{
	bitmap[sector / 8] |= (uint8_t)(0x80 >> (sector % 8));
}

/* ---- differencing bitmaps ---- */

/* The committed bitmap of an allocated block, loaded on first use. Loading reads one
 * bitmap synchronously, once per block for the life of the open image. */
static const uint8_t *bitmap_get(struct vdisk *disk, uint32_t block, uint32_t sector)
{
	struct vhd_io *io = io_of(disk);
	uint8_t *bm = __atomic_load_n(&io->bitmaps[block], __ATOMIC_ACQUIRE);
	if (bm)
		return bm;
	struct vhd *vhd = vhd_of(disk);
	bm = vdisk_alloc_aligned(vhd->bitmap_size);
	if (!bm)
		return NULL;
	if (vdisk_file_pread(disk->file, bm, vhd->bitmap_size, (uint64_t)sector * VHD_SECTOR) < 0) {
		free(bm);
		return NULL;
	}
	pthread_mutex_lock(&io->lock);
	if (io->bitmaps[block]) {
		free(bm);
		bm = io->bitmaps[block];
	} else {
		__atomic_store_n(&io->bitmaps[block], bm, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&io->lock);
	return bm;
}

/* Length of the run of sectors from first (within a block) whose bits equal the first
 * one's, at most count sectors. */
static uint64_t bitmap_run(const uint8_t *bitmap, uint64_t first, uint64_t count, bool *set)
{
	*set = bit_is_set(bitmap, first);
	uint64_t n = 1;
	while (n < count && bit_is_set(bitmap, first + n) == *set)
		n++;
	return n;
}

/* ---- reads ---- */

static void read_from_parent(struct vdisk_req *req, uint64_t skip, uint64_t len, uint64_t voff)
{
	struct vdisk *parent = vhd_of(req->disk)->parent;
	uint64_t psize = vdisk_size(parent);
	uint64_t inside = voff >= psize ? 0 : psize - voff < len ? psize - voff : len;
	if (inside)
		vdisk_req_backing_read(req, parent, skip, inside, voff);
	if (inside < len) /* a parent smaller than the child reads as zeros past its end */
		iov_memset(req->iov, req->iovcnt, skip + inside, 0, len - inside);
}

/* Reads part of a differencing block, sector run by sector run. Unaligned edges belong
 * to the sector that holds them. */
static void read_diff_segment(struct vdisk_req *req, uint32_t sector, uint64_t skip,
			      uint64_t len, uint64_t voff)
{
	struct vhd *vhd = vhd_of(req->disk);
	uint32_t block = (uint32_t)(voff / vhd->block_size);
	const uint8_t *bm = bitmap_get(req->disk, block, sector);
	if (!bm) {
		vdisk_req_fail(req, -EIO);
		return;
	}
	uint64_t in_block = voff % vhd->block_size;
	while (len) {
		uint64_t first = in_block / VHD_SECTOR;
		uint64_t last = (in_block + len - 1) / VHD_SECTOR;
		bool set;
		uint64_t run = bitmap_run(bm, first, last - first + 1, &set);
		uint64_t run_end = (first + run) * VHD_SECTOR;
		uint64_t n = run_end - in_block < len ? run_end - in_block : len;
		if (set)
			vdisk_req_file_io_part(req, ENGINE_READ, req->disk->file, skip, n,
					       block_data_offset(vhd, sector) + in_block);
		else
			read_from_parent(req, skip, n, voff);
		skip += n;
		len -= n;
		voff += n;
		in_block += n;
	}
}

static void read_segment(struct vdisk_req *req, uint64_t skip, uint64_t len, uint64_t voff)
{
	struct vhd *vhd = vhd_of(req->disk);
	uint32_t block = (uint32_t)(voff / vhd->block_size);
	uint32_t sector = bat_get(vhd, block);
	if (sector == VHD_BAT_UNUSED) {
		if (is_diff(vhd))
			read_from_parent(req, skip, len, voff);
		else
			iov_memset(req->iov, req->iovcnt, skip, 0, len);
		return;
	}
	if (is_diff(vhd)) {
		read_diff_segment(req, sector, skip, len, voff);
		return;
	}
	uint64_t off = block_data_offset(vhd, sector) + voff % vhd->block_size;
	if (skip == 0 && len == req->length) /* the whole request: no slicing */
		vdisk_req_file_io(req, ENGINE_READ, req->disk->file, req->iov, req->iovcnt, off, 0,
				  0);
	else
		vdisk_req_file_io_part(req, ENGINE_READ, req->disk->file, skip, len, off);
}

/* Calls fn for each piece of the request that lies inside one block. */
static void for_each_segment(struct vdisk_req *req,
			     void (*fn)(struct vdisk_req *, uint64_t, uint64_t, uint64_t))
{
	struct vhd *vhd = vhd_of(req->disk);
	uint64_t skip = 0;
	while (skip < req->length) {
		uint64_t voff = req->offset + skip;
		uint64_t room = vhd->block_size - voff % vhd->block_size;
		uint64_t len = req->length - skip < room ? req->length - skip : room;
		fn(req, skip, len, voff);
		skip += len;
	}
}

static void vhd_readv(struct vdisk_req *req)
{
	if (!is_sparse(vhd_of(req->disk))) {
		vdisk_req_file_io(req, ENGINE_READ, req->disk->file, req->iov, req->iovcnt,
				  req->offset, 0, 0);
		return;
	}
	for_each_segment(req, read_segment);
}

/* ---- writes ---- */

static void batch_start(struct vdisk *disk, struct vdisk_queue *q);

/* Whether every sector the segment touches is already present in the block. */
static bool segment_present(struct vdisk *disk, uint32_t block, uint32_t sector, uint64_t voff,
			    uint64_t len)
{
	struct vhd *vhd = vhd_of(disk);
	if (!is_diff(vhd))
		return true;
	const uint8_t *bm = bitmap_get(disk, block, sector);
	if (!bm)
		return false;
	uint64_t in_block = voff % vhd->block_size;
	for (uint64_t s = in_block / VHD_SECTOR; s <= (in_block + len - 1) / VHD_SECTOR; s++)
		if (!bit_is_set(bm, s))
			return false;
	return true;
}

static void queue_member(struct vdisk_req *req, uint32_t block, uint64_t skip, uint64_t len,
			 uint64_t voff)
{
	struct member *m = malloc(sizeof(*m));
	if (!m) {
		vdisk_req_fail(req, -ENOMEM);
		return;
	}
	*m = (struct member){.req = req, .block = block, .voff = voff, .skip = skip, .len = len};
	vdisk_req_hold(req);
	struct vhd_io *io = io_of(req->disk);
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
	struct vhd *vhd = vhd_of(req->disk);
	uint32_t block = (uint32_t)(voff / vhd->block_size);
	uint32_t sector = bat_get(vhd, block);
	if (sector != VHD_BAT_UNUSED && segment_present(req->disk, block, sector, voff, len)) {
		uint64_t off = block_data_offset(vhd, sector) + voff % vhd->block_size;
		if (skip == 0 && len == req->length)
			vdisk_req_file_io(req, ENGINE_WRITE, req->disk->file, req->iov,
					  req->iovcnt, off, 0, 0);
		else
			vdisk_req_file_io_part(req, ENGINE_WRITE, req->disk->file, skip, len, off);
		return;
	}
	queue_member(req, block, skip, len, voff);
}

static void vhd_writev(struct vdisk_req *req)
{
	if (!is_sparse(vhd_of(req->disk))) {
		vdisk_req_file_io(req, ENGINE_WRITE, req->disk->file, req->iov, req->iovcnt,
				  req->offset, 0, 0);
		return;
	}
	for_each_segment(req, write_segment);
	batch_start(req->disk, req->queue);
}

/* ---- the metadata batch ---- */

enum { STAGE_DATA, STAGE_FLUSH, STAGE_METADATA };

static void batch_stage_done(struct batch *b);

static void op_done(struct engine_io *io, int result)
{
	struct batch_op *op = (struct batch_op *)io;
	struct batch *b = op->batch;
	free(op->heap);
	free(op);
	if (result < 0 && !b->result)
		b->result = result;
	if (--b->pending == 0)
		batch_stage_done(b);
}

static void batch_io(struct batch *b, enum engine_op op_kind, const struct iovec *iov,
		     int iovcnt, uint64_t offset)
{
	struct batch_op *op = calloc(1, sizeof(*op));
	if (!op) {
		if (!b->result)
			b->result = -ENOMEM;
		return;
	}
	op->batch = b;
	if (iovcnt > IOV_INLINE) {
		op->heap = malloc(sizeof(*iov) * (size_t)iovcnt);
		if (!op->heap) {
			free(op);
			if (!b->result)
				b->result = -ENOMEM;
			return;
		}
	}
	struct iovec *dst = op->heap ? op->heap : op->iov;
	if (iovcnt)
		memcpy(dst, iov, sizeof(*iov) * (size_t)iovcnt);
	op->io = (struct engine_io){.op = op_kind, .file = b->disk->file, .iov = dst,
				    .iovcnt = iovcnt, .offset = offset, .done = op_done};
	b->pending++;
	engine_submit(vdisk_queue_engine(b->queue), &op->io);
}

static void batch_write_buf(struct batch *b, void *buf, size_t len, uint64_t offset)
{
	struct iovec iov = {buf, len};
	batch_io(b, ENGINE_WRITE, &iov, 1, offset);
}

static struct batch_block *batch_find_block(struct batch *b, uint32_t block)
{
	for (unsigned i = 0; i < b->nblocks; i++)
		if (b->blocks[i].block == block)
			return &b->blocks[i];
	return NULL;
}

/* Reserves file space for a new block: data 4 KiB aligned, bitmap right before it. */
static uint32_t reserve_block(struct vhd *vhd, struct vhd_io *io)
{
	uint64_t data = (io->alloc_end + vhd->bitmap_size + DATA_ALIGN - 1) & ~(uint64_t)(DATA_ALIGN - 1);
	io->alloc_end = data + vhd->block_size;
	return (uint32_t)((data - vhd->bitmap_size) / VHD_SECTOR);
}

/* Adds a member's block to the batch (under the lock) and sets its sectors' bits. */
static int batch_add_member(struct batch *b, struct member *m)
{
	struct vhd *vhd = vhd_of(b->disk);
	struct vhd_io *io = io_of(b->disk);
	struct batch_block *bb = batch_find_block(b, m->block);
	if (!bb) {
		bb = &b->blocks[b->nblocks];
		*bb = (struct batch_block){.block = m->block, .sector = vhd->bat[m->block]};
		bool is_new = bb->sector == VHD_BAT_UNUSED;
		/* An existing block of a dynamic image (allocated by the batch before this
		 * one) needs only the data write; other blocks need a bitmap. */
		if (is_new || is_diff(vhd)) {
			bb->bitmap = vdisk_alloc_aligned(vhd->bitmap_size);
			if (!bb->bitmap)
				return -ENOMEM;
		}
		if (is_new) {
			if (io->alloc_end + vhd->block_size + vhd->bitmap_size + DATA_ALIGN >
			    (uint64_t)UINT32_MAX * VHD_SECTOR) {
				free(bb->bitmap);
				return -EFBIG; /* BAT entries are 32-bit sector numbers */
			}
			bb->is_new = true;
			bb->sector = reserve_block(vhd, io);
			memset(bb->bitmap, is_diff(vhd) ? 0x00 : 0xFF, vhd->bitmap_size);
		} else if (is_diff(vhd)) {
			const uint8_t *committed = io->bitmaps[m->block];
			if (!committed) {
				free(bb->bitmap);
				return -EIO;
			}
			memcpy(bb->bitmap, committed, vhd->bitmap_size);
		}
		b->nblocks++;
	}
	if (is_diff(vhd)) {
		uint64_t in_block = m->voff % vhd->block_size;
		for (uint64_t s = in_block / VHD_SECTOR; s <= (in_block + m->len - 1) / VHD_SECTOR;
		     s++)
			bit_set(bb->bitmap, s);
	}
	return 0;
}

static void member_finish(void *arg);

/* Completes every member with the batch's result, on each member's own queue. */
static void batch_complete_members(struct batch *b)
{
	struct member *m = b->members;
	while (m) {
		struct member *next = m->next;
		if (b->result < 0)
			vdisk_req_set_error(m->req, b->result);
		if (m->req->queue == b->queue)
			member_finish(m);
		else
			vdisk_queue_post(m->req->queue, member_finish, m);
		m = next;
	}
}

static void member_finish(void *arg)
{
	struct member *m = arg;
	struct vdisk_req *req = m->req;
	free(m);
	vdisk_req_end(req, 0);
}

static void batch_free(struct batch *b)
{
	for (unsigned i = 0; i < b->nblocks; i++)
		free(b->blocks[i].bitmap);
	free(b->blocks);
	free(b->footer);
	free(b->bat_buf);
	free(b);
}

/* Stage 1: member data, new blocks' bitmaps, and the footer at the new end. */
static void batch_issue_data(struct batch *b)
{
	struct vhd *vhd = vhd_of(b->disk);
	bool grows = false;
	for (unsigned i = 0; i < b->nblocks; i++) {
		struct batch_block *bb = &b->blocks[i];
		if (!bb->is_new)
			continue;
		grows = true;
		batch_write_buf(b, bb->bitmap, vhd->bitmap_size, (uint64_t)bb->sector * VHD_SECTOR);
	}
	for (struct member *m = b->members; m; m = m->next) {
		struct batch_block *bb = batch_find_block(b, m->block);
		struct iovec iov[IOV_INLINE];
		struct iovec *slice = iov;
		int n = iov_slice(m->req->iov, m->req->iovcnt, m->skip, m->len, iov, IOV_INLINE);
		if (n < 0) {
			n = iov_slice_alloc(m->req->iov, m->req->iovcnt, m->skip, m->len, &slice);
			if (n < 0) {
				b->result = n;
				continue;
			}
		}
		batch_io(b, ENGINE_WRITE, slice, n,
			 block_data_offset(vhd, bb->sector) + m->voff % vhd->block_size);
		if (slice != iov)
			free(slice);
	}
	if (grows) {
		struct vhd_footer f = vhd->footer;
		vhd_footer_build(&f, b->footer);
		batch_write_buf(b, b->footer, VHD_FOOTER_SIZE, b->new_footer_offset);
	}
}

/* Stage 3: BAT sectors for new blocks, bitmaps of existing blocks. */
static void batch_issue_metadata(struct batch *b)
{
	struct vhd *vhd = vhd_of(b->disk);
	uint32_t bat_sectors = (uint32_t)(((uint64_t)vhd->bat_entries * 4 + VHD_SECTOR - 1) / VHD_SECTOR);
	for (unsigned i = 0; i < b->nblocks; i++) {
		struct batch_block *bb = &b->blocks[i];
		if (!bb->is_new) {
			if (bb->bitmap)
				batch_write_buf(b, bb->bitmap, vhd->bitmap_size,
						(uint64_t)bb->sector * VHD_SECTOR);
			continue;
		}
		uint32_t s = bb->block * 4 / VHD_SECTOR;
		if (s >= bat_sectors)
			continue;
		uint8_t *sec = b->bat_buf + (size_t)i * VHD_SECTOR;
		/* One write per BAT sector: the first new block in it writes it whole. */
		bool first = true;
		for (unsigned j = 0; j < i; j++)
			if (b->blocks[j].is_new && b->blocks[j].block * 4 / VHD_SECTOR == s)
				first = false;
		if (!first)
			continue;
		for (uint32_t e = 0; e < VHD_SECTOR / 4; e++) {
			uint32_t idx = s * (VHD_SECTOR / 4) + e;
			uint32_t v = idx < vhd->bat_entries ? vhd->bat[idx] : VHD_BAT_UNUSED;
			for (unsigned j = 0; j < b->nblocks; j++)
				if (b->blocks[j].is_new && b->blocks[j].block == idx)
					v = b->blocks[j].sector;
			store_be32(sec + e * 4, v);
		}
		batch_write_buf(b, sec, VHD_SECTOR, vhd->header.table_offset + (uint64_t)s * VHD_SECTOR);
	}
}

/* Makes the batch visible: BAT entries and bitmaps in memory, the new footer offset. */
static void batch_commit(struct batch *b)
{
	struct vhd *vhd = vhd_of(b->disk);
	struct vhd_io *io = io_of(b->disk);
	pthread_mutex_lock(&io->lock);
	for (unsigned i = 0; i < b->nblocks; i++) {
		struct batch_block *bb = &b->blocks[i];
		if (is_diff(vhd) && bb->bitmap) {
			/* Bits only ever go from 0 to 1, so readers may see the bytes change
			 * one by one: each bit they see set is already durable. */
			uint8_t *committed = io->bitmaps[bb->block];
			if (!committed) {
				__atomic_store_n(&io->bitmaps[bb->block], bb->bitmap, __ATOMIC_RELEASE);
				bb->bitmap = NULL;
			} else {
				for (uint32_t k = 0; k < vhd->bitmap_size; k++)
					__atomic_fetch_or(&committed[k], bb->bitmap[k], __ATOMIC_RELEASE);
			}
		}
		if (bb->is_new)
			__atomic_store_n(&vhd->bat[bb->block], bb->sector, __ATOMIC_RELEASE);
	}
	if (b->new_footer_offset > vhd->footer_offset)
		vhd->footer_offset = b->new_footer_offset;
	pthread_mutex_unlock(&io->lock);
}

static void batch_finish(struct batch *b)
{
	struct vdisk *disk = b->disk;
	struct vdisk_queue *q = b->queue;
	struct vhd_io *io = io_of(disk);
	if (b->result == 0)
		batch_commit(b);
	batch_complete_members(b);
	batch_free(b);
	pthread_mutex_lock(&io->lock);
	io->running = false;
	pthread_mutex_unlock(&io->lock);
	batch_start(disk, q); /* writes that arrived meanwhile */
}

static void batch_stage_done(struct batch *b)
{
	if (b->result < 0) {
		batch_finish(b);
		return;
	}
	switch (b->stage) {
	case STAGE_DATA:
		b->stage = STAGE_FLUSH;
		batch_io(b, ENGINE_FDATASYNC, NULL, 0, 0);
		break;
	case STAGE_FLUSH:
		b->stage = STAGE_METADATA;
		batch_issue_metadata(b);
		if (b->pending == 0)
			batch_finish(b);
		break;
	default:
		batch_finish(b);
		break;
	}
}

/* Takes the waiting members into a new batch, unless one is running. Runs on q's thread;
 * the batch's I/O goes through q. */
static void batch_start(struct vdisk *disk, struct vdisk_queue *q)
{
	struct vhd *vhd = vhd_of(disk);
	struct vhd_io *io = io_of(disk);
	pthread_mutex_lock(&io->lock);
	if (io->running || !io->waiting_head) {
		pthread_mutex_unlock(&io->lock);
		return;
	}
	struct batch *b = calloc(1, sizeof(*b));
	if (b) {
		b->blocks = calloc(BATCH_MAX_MEMBERS, sizeof(*b->blocks));
		b->footer = vdisk_alloc_aligned(VHD_FOOTER_SIZE);
		b->bat_buf = vdisk_alloc_aligned((size_t)BATCH_MAX_MEMBERS * VHD_SECTOR);
	}
	if (!b || !b->blocks || !b->footer || !b->bat_buf) {
		pthread_mutex_unlock(&io->lock);
		if (b)
			batch_free(b);
		return; /* the members stay waiting; the next write or batch retries */
	}
	*b = (struct batch){.disk = disk, .queue = q, .blocks = b->blocks, .footer = b->footer,
			    .bat_buf = b->bat_buf, .stage = STAGE_DATA};
	io->running = true;
	struct member **tail = &b->members;
	unsigned taken = 0;
	while (io->waiting_head && taken < BATCH_MAX_MEMBERS) {
		struct member *m = io->waiting_head;
		int ret = batch_add_member(b, m);
		io->waiting_head = m->next;
		m->next = NULL;
		*tail = m;
		tail = &m->next;
		taken++;
		if (ret < 0 && !b->result)
			b->result = ret;
	}
	if (!io->waiting_head)
		io->waiting_tail = NULL;
	b->new_footer_offset = io->alloc_end > vhd->footer_offset ? io->alloc_end : vhd->footer_offset;
	pthread_mutex_unlock(&io->lock);

	if (b->result == 0)
		batch_issue_data(b);
	if (b->pending == 0)
		batch_stage_done(b);
}

/* ---- flush, discard, write zeroes ---- */

static void vhd_flush(struct vdisk_req *req)
{
	vdisk_req_file_io(req, ENGINE_FDATASYNC, req->disk->file, NULL, 0, 0, 0, 0);
}

/* VHD has no way to give space back in place: discard keeps the data (compaction
 * reclaims blocks later). */
static void vhd_discard(struct vdisk_req *req)
{
	(void)req;
}

static void zero_segment(struct vdisk_req *req, uint64_t skip, uint64_t len, uint64_t voff)
{
	(void)skip;
	struct vhd *vhd = vhd_of(req->disk);
	uint32_t block = (uint32_t)(voff / vhd->block_size);
	if (bat_get(vhd, block) == VHD_BAT_UNUSED && !is_diff(vhd))
		return; /* reads as zeros already */
	vdisk_req_write_zeroes_via(req, voff, len);
}

static void vhd_write_zeroes(struct vdisk_req *req)
{
	if (!is_sparse(vhd_of(req->disk))) {
		vdisk_req_zero_file(req, req->disk->file, req->offset, req->length);
		return;
	}
	for_each_segment(req, zero_segment);
}

/* ---- block status ---- */

/* Status of the run starting at pos inside one block: flags and length (<= n). */
static int block_run(struct vdisk *disk, uint64_t pos, uint64_t n, unsigned *flags,
		     uint64_t *run)
{
	struct vhd *vhd = vhd_of(disk);
	uint32_t block = (uint32_t)(pos / vhd->block_size);
	uint32_t sector = bat_get(vhd, block);
	*run = n;
	if (sector == VHD_BAT_UNUSED) {
		*flags = is_diff(vhd) ? 0 : VDISK_EXTENT_ZERO;
		return 0;
	}
	*flags = VDISK_EXTENT_DATA;
	if (!is_diff(vhd))
		return 0;
	const uint8_t *bm = bitmap_get(disk, block, sector);
	if (!bm)
		return -EIO;
	uint64_t in_block = pos % vhd->block_size;
	uint64_t first = in_block / VHD_SECTOR;
	bool set;
	uint64_t sectors = bitmap_run(bm, first, (in_block + n - 1) / VHD_SECTOR - first + 1, &set);
	uint64_t bytes = (first + sectors) * VHD_SECTOR - in_block;
	*run = bytes < n ? bytes : n;
	*flags = set ? VDISK_EXTENT_DATA : 0;
	return 0;
}

static int vhd_block_status(struct vdisk *disk, uint64_t offset, uint64_t length,
			    struct vdisk_extent *ext)
{
	struct vhd *vhd = vhd_of(disk);
	ext->offset = offset;
	ext->length = length;
	ext->flags = VDISK_EXTENT_DATA;
	if (!is_sparse(vhd))
		return 0;
	uint64_t pos = offset, end = offset + length;
	while (pos < end) {
		uint64_t room = vhd->block_size - pos % vhd->block_size;
		uint64_t n = end - pos < room ? end - pos : room;
		unsigned flags;
		uint64_t run;
		int ret = block_run(disk, pos, n, &flags, &run);
		if (ret < 0)
			return ret;
		if (pos == offset)
			ext->flags = flags;
		else if (flags != ext->flags)
			break;
		pos += run;
	}
	ext->length = pos - offset;
	return 0;
}

/* ---- open, close ---- */

static int open_parent(struct vdisk *disk, struct vhd *vhd, char *err, size_t err_size)
{
	char why[256];
	int ret = vdisk_open_backing(disk, vhd->parent_path, &vhd->parent, why, sizeof(why));
	if (ret < 0) {
		snprintf(err, err_size, "cannot open parent '%s': %s", vhd->parent_path, why);
		return ret;
	}
	if (strcmp(vdisk_format_name(vhd->parent), "vhd") != 0) {
		snprintf(err, err_size, "parent '%s' is a %s image; a differencing VHD needs a VHD parent",
			 vhd->parent_path, vdisk_format_name(vhd->parent));
		return -EINVAL;
	}
	const struct vhd *pv = vhd->parent->priv;
	if (memcmp(pv->footer.unique_id, vhd->header.parent_id, 16) != 0 &&
	    !disk->opts.allow_parent_mismatch) {
		char ws[GUID_STR_LEN + 1], hs[GUID_STR_LEN + 1];
		vhd_uuid_format(vhd->header.parent_id, ws);
		vhd_uuid_format(pv->footer.unique_id, hs);
		snprintf(err, err_size,
			 "parent '%s' has identity %s but this image expects %s (the parent was "
			 "replaced or modified; force with --allow-parent-mismatch)",
			 vhd->parent_path, hs, ws);
		return -EINVAL;
	}
	return 0;
}

static int io_state_init(struct vhd *vhd)
{
	struct vhd_io *io = calloc(1, sizeof(*io));
	if (!io)
		return -ENOMEM;
	pthread_mutex_init(&io->lock, NULL);
	io->alloc_end = vhd->footer_offset;
	if (is_diff(vhd)) {
		io->bitmaps = calloc(vhd->bat_entries ? vhd->bat_entries : 1, sizeof(*io->bitmaps));
		if (!io->bitmaps) {
			free(io);
			return -ENOMEM;
		}
	}
	vhd->io = io;
	return 0;
}

static void io_state_free(struct vhd *vhd)
{
	struct vhd_io *io = vhd->io;
	if (!io)
		return;
	if (io->bitmaps)
		for (uint32_t i = 0; i < vhd->bat_entries; i++)
			free(io->bitmaps[i]);
	free(io->bitmaps);
	pthread_mutex_destroy(&io->lock);
	free(io);
	vhd->io = NULL;
}

static void vhd_close(struct vdisk *disk)
{
	struct vhd *vhd = disk->priv;
	if (!vhd)
		return;
	vdisk_close(vhd->parent);
	io_state_free(vhd);
	vhd_unload(vhd);
	free(vhd);
	disk->priv = NULL;
}

static int vhd_open(struct vdisk *disk, char *err, size_t err_size)
{
	struct vhd *vhd = calloc(1, sizeof(*vhd));
	if (!vhd)
		return -ENOMEM;
	disk->priv = vhd;
	vhd->load_for_repair = disk->opts.for_repair;
	int ret = vhd_load(disk, vhd, err, err_size);
	if (ret == 0 && is_sparse(vhd))
		ret = io_state_init(vhd);
	if (ret == 0 && is_diff(vhd))
		ret = open_parent(disk, vhd, err, err_size);
	if (ret < 0) {
		vhd_close(disk);
		return ret;
	}
	disk->size = vhd->virtual_size;
	/* Bitmaps mark whole sectors: a partial sector must first be read from the parent. */
	if (is_diff(vhd))
		disk->write_granularity = VHD_SECTOR;
	return 0;
}

/* Check may move the footer and blocks: the allocator and cached bitmaps start over. */
static int vhd_check_disk(struct vdisk *disk, unsigned flags, struct vdisk_check_result *result)
{
	struct vhd *vhd = vhd_of(disk);
	int ret = vhd_check(disk, flags, result);
	if ((flags & VDISK_CHECK_REPAIR) && is_sparse(vhd)) {
		io_state_free(vhd);
		int r = io_state_init(vhd);
		if (ret == 0)
			ret = r;
	}
	return ret;
}

static const struct vdisk_format vhd_format = {
	.name = "vhd",
	.probe = vhd_probe,
	.open = vhd_open,
	.close = vhd_close,
	.readv = vhd_readv,
	.writev = vhd_writev,
	.flush = vhd_flush,
	.discard = vhd_discard,
	.write_zeroes = vhd_write_zeroes,
	.block_status = vhd_block_status,
	.get_info = vhd_get_info,
	.check = vhd_check_disk,
	.create = vhd_create,
};

int vhd_register(void)
{
	return vdisk_format_register(&vhd_format);
}
