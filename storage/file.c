/* Image files and block devices: opening with the right flags and lock, O_DIRECT
 * alignment facts, and synchronous metadata I/O for drivers while opening. */
#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_MEM_ALIGN    4096
#define DEFAULT_OFFSET_ALIGN 512

void *vdisk_alloc_aligned(size_t len)
{
	void *p = NULL;
	if (posix_memalign(&p, 4096, len ? len : 1) != 0)
		return NULL;
	return p;
}

/* O_DIRECT alignment from statx(STATX_DIOALIGN) (Linux 6.1+); older kernels leave the mask
 * bit clear and the conservative defaults stand. */
static void direct_alignment(struct vdisk_file *file)
{
	file->mem_align = DEFAULT_MEM_ALIGN;
	file->offset_align =
		file->is_block_device ? file->logical_sector_size : DEFAULT_OFFSET_ALIGN;
	struct statx stx;
	if (statx(file->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) != 0 ||
	    !(stx.stx_mask & STATX_DIOALIGN))
		return;
	uint32_t mem = stx.stx_dio_mem_align, offset = stx.stx_dio_offset_align;
	if (mem && offset && !(mem & (mem - 1)) && !(offset & (offset - 1))) {
		file->mem_align = mem;
		file->offset_align = offset;
	}
}

static int describe_type(const char *path, struct stat *st, char *err, size_t err_size)
{
	if (stat(path, st) != 0) {
		int e = errno;
		if (e == ENOENT)
			snprintf(err, err_size, "no such file");
		else if (e == EACCES)
			snprintf(err, err_size, "permission denied");
		else
			snprintf(err, err_size, "cannot access: %s", strerror(e));
		return -e;
	}
	if (S_ISDIR(st->st_mode)) {
		snprintf(err, err_size, "is a directory, not a disk image");
		return -EISDIR;
	}
	if (!S_ISREG(st->st_mode) && !S_ISBLK(st->st_mode)) {
		snprintf(err, err_size, "is neither a regular file nor a block device");
		return -EINVAL;
	}
	return 0;
}

static int take_lock(struct vdisk_file *file, char *err, size_t err_size)
{
	if (flock(file->fd, (file->read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) == 0)
		return 0;
	int e = errno;
	if (e == EWOULDBLOCK) {
		snprintf(err, err_size,
			 file->read_only ? "is in use: another process has it open for writing"
					 : "is in use by another process (locked)");
		return -EBUSY;
	}
	snprintf(err, err_size, "cannot lock: %s", strerror(e));
	return -e;
}

static int read_geometry(struct vdisk_file *file, const struct stat *st, char *err, size_t err_size)
{
	file->logical_sector_size = 512;
	if (!file->is_block_device) {
		file->size = (uint64_t)st->st_size;
		return 0;
	}
	uint64_t size;
	int ssz;
	if (ioctl(file->fd, BLKGETSIZE64, &size) != 0 || ioctl(file->fd, BLKSSZGET, &ssz) != 0) {
		int e = errno;
		snprintf(err, err_size, "cannot read block device size: %s", strerror(e));
		return -e;
	}
	file->size = size;
	file->logical_sector_size = (uint32_t)ssz;
	return 0;
}

static int open_descriptors(struct vdisk_file *file, enum vdisk_cache_mode cache, char *err,
			    size_t err_size)
{
	int flags = (file->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	file->fd_buffered = open(file->path, flags);
	if (file->fd_buffered < 0) {
		int e = errno;
		snprintf(err, err_size, "cannot open: %s", strerror(e));
		return -e;
	}
	file->fd = file->fd_buffered;
	if (cache != VDISK_CACHE_DIRECT)
		return 0;
	int fd = open(file->path, flags | O_DIRECT);
	if (fd < 0) {
		/* tmpfs and some network file systems refuse O_DIRECT */
		snprintf(file->fallback_reason, sizeof(file->fallback_reason),
			 "O_DIRECT refused (%s); using the page cache", strerror(errno));
		return 0;
	}
	file->fd = fd;
	file->direct = true;
	return 0;
}

int vdisk_file_open(const char *path, bool read_only, enum vdisk_cache_mode cache, bool no_lock,
		    struct vdisk_file **out, char *err, size_t err_size)
{
	struct stat st;
	int ret = describe_type(path, &st, err, err_size);
	if (ret < 0)
		return ret;
	struct vdisk_file *file = calloc(1, sizeof(*file));
	if (!file || !(file->path = strdup(path))) {
		free(file);
		snprintf(err, err_size, "out of memory");
		return -ENOMEM;
	}
	file->fd = file->fd_buffered = -1;
	file->read_only = read_only;
	file->is_block_device = S_ISBLK(st.st_mode);
	file->dev = st.st_dev;
	file->ino = st.st_ino;
	file->mem_align = file->offset_align = 1;

	ret = open_descriptors(file, cache, err, err_size);
	if (ret == 0 && !no_lock)
		ret = take_lock(file, err, err_size);
	if (ret == 0)
		ret = read_geometry(file, &st, err, err_size);
	if (ret < 0) {
		vdisk_file_close(file);
		return ret;
	}
	if (file->direct)
		direct_alignment(file);
	*out = file;
	return 0;
}

void vdisk_file_close(struct vdisk_file *file)
{
	if (!file)
		return;
	if (file->fd >= 0 && file->fd != file->fd_buffered)
		close(file->fd);
	if (file->fd_buffered >= 0)
		close(file->fd_buffered);
	free(file->path);
	free(file);
}

bool vdisk_file_mem_aligned(const struct vdisk_file *file, const void *p, size_t len)
{
	uintptr_t mask = file->mem_align - 1;
	return !((uintptr_t)p & mask) && !(len & mask);
}

bool vdisk_file_range_aligned(const struct vdisk_file *file, uint64_t offset, uint64_t len)
{
	uint64_t mask = file->offset_align - 1;
	return !(offset & mask) && !(len & mask);
}

int vdisk_file_pread(struct vdisk_file *file, void *buf, size_t len, uint64_t offset)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t n = pread(file->fd_buffered, p, len, (off_t)offset);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0) {
			memset(p, 0, len);
			return 0;
		}
		p += n;
		len -= (size_t)n;
		offset += (uint64_t)n;
	}
	return 0;
}

static const struct vdisk_file_observer *observer;

void vdisk_file_set_observer(const struct vdisk_file_observer *obs)
{
	__atomic_store_n(&observer, obs, __ATOMIC_RELEASE);
}

/* Tells the observer, if any, about an operation (before it when done is false). */
static void observe(struct vdisk_file_event ev)
{
	const struct vdisk_file_observer *obs = __atomic_load_n(&observer, __ATOMIC_ACQUIRE);
	if (obs)
		obs->event(obs->opaque, &ev);
}

static int file_pwrite(struct vdisk_file *file, const void *buf, size_t len, uint64_t offset);

int vdisk_file_pwrite(struct vdisk_file *file, const void *buf, size_t len, uint64_t offset)
{
	struct vdisk_file_event ev = {
		.op = VDISK_FILE_PWRITE, .file = file, .buf = buf, .len = len, .offset = offset
	};
	observe(ev);
	ev.result = file_pwrite(file, buf, len, offset);
	ev.done = true;
	observe(ev);
	return ev.result;
}

static int file_pwrite(struct vdisk_file *file, const void *buf, size_t len, uint64_t offset)
{
	int ret = vdisk_fd_pwrite_all(file->fd_buffered, buf, len, offset);
	if (ret == 0 && offset + len > file->size)
		file->size = offset + len;
	return ret;
}

int vdisk_fd_pwrite_all(int fd, const void *buf, size_t len, uint64_t offset)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)offset);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		offset += (uint64_t)n;
	}
	return 0;
}

int vdisk_file_pwrite_sync(struct vdisk_file *file, const void *buf, size_t len, uint64_t offset)
{
	int ret = vdisk_file_pwrite(file, buf, len, offset);
	return ret ? ret : vdisk_file_sync(file);
}

int vdisk_file_sync(struct vdisk_file *file)
{
	struct vdisk_file_event ev = { .op = VDISK_FILE_SYNC, .file = file };
	observe(ev);
	ev.result = fdatasync(file->fd_buffered) == 0 ? 0 : -errno;
	ev.done = true;
	observe(ev);
	return ev.result;
}

int vdisk_file_set_size(struct vdisk_file *file, uint64_t size)
{
	if (file->is_block_device)
		return size <= file->size ? 0 : -ENOSPC;
	struct vdisk_file_event ev = { .op = VDISK_FILE_SET_SIZE, .file = file, .offset = size };
	observe(ev);
	ev.result = ftruncate(file->fd_buffered, (off_t)size) == 0 ? 0 : -errno;
	ev.done = true;
	observe(ev);
	if (ev.result < 0)
		return ev.result;
	file->size = size;
	return 0;
}

int vdisk_file_reserve(struct vdisk_file *file, uint64_t offset, uint64_t len)
{
	if (file->is_block_device || len == 0)
		return 0;
	if (fallocate(file->fd_buffered, FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)len) == 0)
		return 0;
	return errno == EOPNOTSUPP || errno == ENOSYS ? 0 : -errno;
}

uint64_t vdisk_file_allocated(struct vdisk_file *file)
{
	struct stat st;
	if (fstat(file->fd_buffered, &st) != 0)
		return 0;
	if (S_ISBLK(st.st_mode))
		return file->size;
	return (uint64_t)st.st_blocks * 512;
}

int vdisk_create_begin(const char *path, bool overwrite, int *fd, bool *created, char *err,
		       size_t err_size)
{
	*fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	*created = *fd >= 0;
	if (*fd < 0 && errno == EEXIST && overwrite)
		*fd = open(path, O_RDWR | O_CLOEXEC);
	if (*fd < 0) {
		int e = errno;
		snprintf(err, err_size,
			 e == EEXIST ? "file exists (use --force to replace it)"
				     : "cannot create: %s",
			 strerror(e));
		return -e;
	}
	int ret = 0;
	if (flock(*fd, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;
		snprintf(err, err_size,
			 e == EWOULDBLOCK ? "is in use by another process (locked)"
					  : "cannot lock: %s",
			 strerror(e));
		ret = e == EWOULDBLOCK ? -EBUSY : -e;
	} else if (!*created && ftruncate(*fd, 0) != 0) {
		ret = -errno;
		snprintf(err, err_size, "cannot empty the file to replace it: %s", strerror(-ret));
	}
	if (ret < 0) {
		close(*fd);
		*fd = -1;
		if (*created)
			unlink(path);
	}
	return ret;
}

int vdisk_create_end(const char *path, int fd, bool created, int ret)
{
	if (ret == 0 && fsync(fd) != 0)
		ret = -errno;
	if (close(fd) != 0 && ret == 0)
		ret = -errno;
	if (ret < 0 && created) /* never remove what was there before */
		unlink(path);
	return ret;
}
