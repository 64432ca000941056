/* Metadata jobs: sets of file operations a format driver runs on one queue outside any
 * request, with a callback when the set completes. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"

struct job_op {
	struct engine_io io;
	struct vdisk_job *job;
	struct iovec iov[IOV_INLINE];
	struct iovec *heap;
};

void vdisk_job_fail(struct vdisk_job *job, int error)
{
	if (error < 0 && !job->result)
		job->result = error;
}

static void job_op_done(struct engine_io *io, int result)
{
	struct job_op *op = (struct job_op *)io;
	struct vdisk_job *job = op->job;
	free(op->heap);
	free(op);
	vdisk_job_fail(job, result);
	if (--job->pending == 0)
		job->stage_done(job);
}

void vdisk_job_io(struct vdisk_job *job, enum engine_op kind, const struct iovec *iov, int iovcnt,
		  uint64_t offset)
{
	struct job_op *op = calloc(1, sizeof(*op));
	if (op && iovcnt > IOV_INLINE && !(op->heap = malloc(sizeof(*iov) * (size_t)iovcnt))) {
		free(op);
		op = NULL;
	}
	if (!op) {
		vdisk_job_fail(job, -ENOMEM);
		return;
	}
	op->job = job;
	struct iovec *dst = op->heap ? op->heap : op->iov;
	if (iovcnt)
		memcpy(dst, iov, sizeof(*iov) * (size_t)iovcnt);
	op->io = (struct engine_io){.op = kind, .file = job->disk->file, .iov = dst,
				    .iovcnt = iovcnt, .offset = offset, .done = job_op_done};
	job->pending++;
	engine_submit(vdisk_queue_engine(job->queue), &op->io);
}

void vdisk_job_write(struct vdisk_job *job, void *buf, size_t len, uint64_t offset)
{
	struct iovec iov = {buf, len};
	vdisk_job_io(job, ENGINE_WRITE, &iov, 1, offset);
}

void vdisk_job_issued(struct vdisk_job *job)
{
	if (job->pending == 0)
		job->stage_done(job);
}

static void req_end_posted(void *arg)
{
	vdisk_req_end(arg, 0);
}

void vdisk_req_end_on_queue(struct vdisk_req *req, struct vdisk_queue *current, int result)
{
	vdisk_req_set_error(req, result);
	if (req->queue == current || vdisk_queue_post(req->queue, req_end_posted, req) < 0)
		vdisk_req_end(req, 0);
}

void vdisk_req_list_push(struct vdisk_req_list *list, struct vdisk_req *req)
{
	vdisk_req_hold(req);
	req->next = NULL;
	if (list->tail)
		list->tail->next = req;
	else
		list->head = req;
	list->tail = req;
}

struct vdisk_req *vdisk_req_list_take(struct vdisk_req_list *list)
{
	struct vdisk_req *first = list->head;
	list->head = list->tail = NULL;
	return first;
}

void vdisk_req_list_end(struct vdisk_req *first, struct vdisk_queue *current, int result)
{
	while (first) {
		struct vdisk_req *next = first->next; /* ending may reuse the link */
		vdisk_req_end_on_queue(first, current, result);
		first = next;
	}
}
