/* Merging a differencing chain into an ancestor, and flattening it (see merge.h). */
#include "merge.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errmsg.h"
#include "parent_search.h"

/* The child read-only; the image writable_depth below it read-write (0: none). */
static int open_chain(const char *child, bool allow_mismatch, unsigned writable_depth,
		      struct vdisk **out, char *err, size_t err_size)
{
	struct vdisk_options o = { .read_only = true,
				   .cache = VDISK_CACHE_WRITEBACK,
				   .allow_parent_mismatch = allow_mismatch,
				   .writable_depth = writable_depth };
	return vdisk_open(child, &o, out, err, err_size);
}

static bool same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
	       sa.st_ino == sb.st_ino;
}

/* The chain opens when identities are not checked: it was refused for a mismatch, which
 * an interrupted merge leaves behind. */
static int explain_open_failure(const char *child, const struct vdisk_merge_options *o, int ret,
				const char *why, char *err, size_t err_size)
{
	struct vdisk *disk;
	char ignored[256];
	if (!o->allow_parent_mismatch &&
	    open_chain(child, true, 0, &disk, ignored, sizeof(ignored)) == 0) {
		vdisk_close(disk);
		return vdisk_errorf(
			err, err_size, ret,
			"%s. If an earlier merge of this chain was interrupted, run the same "
			"merge again with --allow-parent-mismatch: it finishes the merge (only "
			"then: never merge into an image that was replaced)",
			why);
	}
	return vdisk_errorf(err, err_size, ret, "%s", why);
}

static int find_ancestor(struct vdisk *top, const char *ancestor, unsigned *depth, char *err,
			 size_t err_size)
{
	struct stat st;
	if (!vdisk_backing(top))
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"the image is not a differencing image: it has no parent to merge into");
	if (!ancestor) {
		*depth = 1;
		return 0;
	}
	if (stat(ancestor, &st) != 0)
		return vdisk_errorf(err, err_size, -errno, "cannot find %s: %s", ancestor,
				    strerror(errno));
	unsigned d = 0;
	for (struct vdisk *img = top; img; img = vdisk_backing(img), d++) {
		if (!same_file(vdisk_path(img), ancestor))
			continue;
		if (d == 0)
			return vdisk_errorf(err, err_size, -EINVAL,
					    "%s is the child itself, not one of its ancestors",
					    ancestor);
		*depth = d;
		return 0;
	}
	return vdisk_errorf(err, err_size, -EINVAL,
			    "%s is not in the chain of this image (see 'vdisk chain')", ancestor);
}

/* The image depth below top. */
static struct vdisk *layer(struct vdisk *top, unsigned depth)
{
	for (unsigned i = 0; i < depth && top; i++)
		top = vdisk_backing(top);
	return top;
}

static int plan_chain(struct vdisk *top, const struct vdisk_merge_options *o,
		      struct vdisk_merge_plan *plan, char *err, size_t err_size)
{
	int ret = find_ancestor(top, o->ancestor, &plan->depth, err, err_size);
	if (ret < 0)
		return ret;
	struct vdisk *anc = layer(top, plan->depth);
	plan->child_size = vdisk_size(top);
	plan->ancestor_size = vdisk_size(anc);
	if (plan->ancestor_size < plan->child_size)
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"the ancestor %s (%llu bytes) is smaller than the child (%llu bytes): "
			"enlarge it first with 'vdisk resize'",
			vdisk_path(anc), (unsigned long long)plan->ancestor_size,
			(unsigned long long)plan->child_size);
	plan->paths = calloc(plan->depth + 1, sizeof(*plan->paths));
	if (!plan->paths)
		return vdisk_errorf(err, err_size, -ENOMEM, "out of memory");
	for (unsigned i = 0; i <= plan->depth; i++)
		if (!(plan->paths[i] = strdup(vdisk_path(layer(top, i)))))
			return vdisk_errorf(err, err_size, -ENOMEM, "out of memory");
	return 0;
}

int vdisk_merge_prepare(const char *child, const struct vdisk_merge_options *o,
			struct vdisk_merge_plan *plan, char *err, size_t err_size)
{
	struct vdisk *top;
	char why[768];
	*plan = (struct vdisk_merge_plan){ 0 };
	int ret = open_chain(child, o->allow_parent_mismatch, 0, &top, why, sizeof(why));
	if (ret < 0)
		return explain_open_failure(child, o, ret, why, err, err_size);
	ret = plan_chain(top, o, plan, err, err_size);
	vdisk_close(top);
	if (ret < 0)
		vdisk_merge_plan_free(plan);
	return ret;
}

int vdisk_merge_copy(const struct vdisk_merge_plan *plan, const struct vdisk_merge_options *o,
		     char *err, size_t err_size)
{
	struct vdisk *top;
	char why[768];
	int ret = open_chain(plan->paths[0], o->allow_parent_mismatch, plan->depth, &top, why,
			     sizeof(why));
	if (ret < 0)
		return explain_open_failure(plan->paths[0], o, ret, why, err, err_size);
	struct vdisk *anc = layer(top, plan->depth);
	if (!anc || !same_file(vdisk_path(anc), plan->paths[plan->depth])) {
		vdisk_close(top);
		return vdisk_errorf(err, err_size, -ESTALE,
				    "the chain changed while the merge started");
	}
	struct vdisk_copy_options co = { .layers = plan->depth,
					 .progress = o->progress,
					 .opaque = o->opaque,
					 .stats = o->stats };
	ret = vdisk_copy(top, anc, &co, why, sizeof(why));
	vdisk_close(top); /* the copy flushed the ancestor */
	if (ret < 0)
		return vdisk_errorf(err, err_size, ret, "merging into %s failed: %s",
				    plan->paths[plan->depth], why);
	return 0;
}

static int sync_dir_of(const char *path)
{
	char *dir = vdisk_path_dir(path);
	if (!dir)
		return -ENOMEM;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	if (fd < 0)
		return -errno;
	int ret = fsync(fd) == 0 ? 0 : -errno;
	close(fd);
	return ret;
}

/* Opens each merged image and takes its exclusive lock, as a writer would. */
static int lock_merged(const struct vdisk_merge_plan *plan, int *fds, char *err, size_t err_size)
{
	for (unsigned i = 0; i < plan->depth; i++) {
		fds[i] = open(plan->paths[i], O_RDONLY | O_CLOEXEC);
		if (fds[i] < 0)
			return vdisk_errorf(err, err_size, -errno,
					    "cannot open %s to remove it: %s", plan->paths[i],
					    strerror(errno));
		if (flock(fds[i], LOCK_EX | LOCK_NB) != 0)
			return vdisk_errorf(
				err, err_size, errno == EWOULDBLOCK ? -EBUSY : -errno,
				"%s is in use: it was merged but not removed (run the merge "
				"again with --allow-parent-mismatch once it is free)",
				plan->paths[i]);
	}
	return 0;
}

int vdisk_merge_remove(const struct vdisk_merge_plan *plan, char *err, size_t err_size)
{
	int *fds = malloc(plan->depth * sizeof(*fds));
	if (!fds)
		return vdisk_errorf(err, err_size, -ENOMEM, "out of memory");
	for (unsigned i = 0; i < plan->depth; i++)
		fds[i] = -1;
	int ret = lock_merged(plan, fds, err, err_size);
	for (unsigned i = 0; ret == 0 && i < plan->depth; i++)
		if (unlink(plan->paths[i]) != 0)
			ret = vdisk_errorf(err, err_size, -errno, "cannot remove %s: %s",
					   plan->paths[i], strerror(errno));
	for (unsigned i = 0; ret == 0 && i < plan->depth; i++)
		if ((ret = sync_dir_of(plan->paths[i])) < 0)
			vdisk_errorf(err, err_size, ret, "cannot sync the directory of %s: %s",
				     plan->paths[i], strerror(-ret));
	for (unsigned i = 0; i < plan->depth; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(fds);
	return ret;
}

void vdisk_merge_plan_free(struct vdisk_merge_plan *plan)
{
	if (plan->paths)
		for (unsigned i = 0; i <= plan->depth; i++)
			free(plan->paths[i]);
	free(plan->paths);
	plan->paths = NULL;
}

int vdisk_merge(const char *child, const struct vdisk_merge_options *o,
		struct vdisk_merge_plan *plan, char *err, size_t err_size)
{
	int ret = vdisk_merge_prepare(child, o, plan, err, err_size);
	if (ret == 0)
		ret = vdisk_merge_copy(plan, o, err, err_size);
	if (ret == 0)
		ret = vdisk_merge_remove(plan, err, err_size);
	return ret;
}

static int flatten_into(struct vdisk *src, const char *target, const char *format,
			const struct vdisk_merge_options *o, char *err, size_t err_size)
{
	struct vdisk_create_options co = { .format = format ? format : vdisk_format_name(src),
					   .size = vdisk_size(src),
					   .sparse = true };
	struct vdisk_options to = { .cache = VDISK_CACHE_WRITEBACK };
	struct vdisk *dst;
	char why[512];
	int ret = vdisk_create(target, &co, why, sizeof(why));
	if (ret < 0)
		return vdisk_errorf(err, err_size, ret, "cannot create %s: %s", target, why);
	ret = vdisk_open(target, &to, &dst, why, sizeof(why));
	if (ret < 0) {
		vdisk_errorf(err, err_size, ret, "cannot open the new image %s: %s", target, why);
	} else {
		struct vdisk_copy_options copy = { .target_is_zero = true,
						   .progress = o->progress,
						   .opaque = o->opaque,
						   .stats = o->stats };
		ret = vdisk_copy(src, dst, &copy, why, sizeof(why));
		vdisk_close(dst);
		if (ret < 0)
			vdisk_errorf(err, err_size, ret, "copying into %s failed: %s", target, why);
	}
	if (ret < 0)
		unlink(target);
	return ret;
}

int vdisk_flatten(const char *child, const char *target, const char *format,
		  const struct vdisk_merge_options *o, char *err, size_t err_size)
{
	struct vdisk *src;
	char why[768];
	int ret = open_chain(child, o->allow_parent_mismatch, 0, &src, why, sizeof(why));
	if (ret < 0)
		return vdisk_errorf(err, err_size, ret, "%s", why);
	ret = flatten_into(src, target, format, o, err, err_size);
	vdisk_close(src);
	return ret;
}
