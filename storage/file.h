/* An image file (or block device) below a format driver. Drivers never use the
 * descriptors: they issue I/O on the file through a queue's engine (engine.h), or, while
 * opening and creating, through the synchronous helpers here. */
#ifndef HV_STORAGE_FILE_H
#define HV_STORAGE_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vdisk.h"

struct vdisk_file {
	char *path;
	int fd;		 /* O_DIRECT when direct is set */
	int fd_buffered; /* same file without O_DIRECT, for ranges O_DIRECT cannot express */
	bool direct;
	bool read_only;
	bool is_block_device;
	uint32_t mem_align;    /* buffer alignment O_DIRECT needs (1 when not direct) */
	uint32_t offset_align; /* offset and length alignment O_DIRECT needs */
	uint32_t logical_sector_size;
	uint64_t size;		   /* at open, and as grown through vdisk_file_set_size() */
	uint64_t dev, ino;	   /* identity, to find loops in backing chains */
	char fallback_reason[160]; /* why O_DIRECT was not used although asked for */
};

/* Opens path for an image. Refuses directories and other non-regular, non-block files.
 * Takes the advisory image lock (shared for read-only, exclusive for read-write) unless
 * no_lock. Returns 0 or -errno with a reason in err. */
int vdisk_file_open(const char *path, bool read_only, enum vdisk_cache_mode cache, bool no_lock,
		    struct vdisk_file **out, char *err, size_t err_size);
void vdisk_file_close(struct vdisk_file *file);

/* Synchronous I/O for metadata while opening or creating; any alignment. A read past the
 * end of the file returns zeros there. Returns 0 or -errno. */
int vdisk_file_pread(struct vdisk_file *file, void *buf, size_t len, uint64_t offset);
/* pwrite of all of buf to a plain descriptor, resuming short writes. 0 or -errno. */
int vdisk_fd_pwrite_all(int fd, const void *buf, size_t len, uint64_t offset);

/* Creating an image file (the formats' create op). vdisk_create_begin opens path for
 * writing: a new file, or with overwrite an existing one, which is first locked
 * exclusively (an image in use by a VM or a tool is never replaced under it: -EBUSY) and
 * then emptied. *created says whether the file is new. vdisk_create_end makes the result
 * durable and closes it; on failure (ret < 0 on entry, or the fsync) it removes the file
 * if it created it, never one that was there before. Both return 0 or -errno, begin with a
 * reason in err. */
int vdisk_create_begin(const char *path, bool overwrite, int *fd, bool *created, char *err,
		       size_t err_size);
int vdisk_create_end(const char *path, int fd, bool created, int ret);
int vdisk_file_pwrite(struct vdisk_file *file, const void *buf, size_t len, uint64_t offset);
int vdisk_file_sync(struct vdisk_file *file);
/* vdisk_file_pwrite, then vdisk_file_sync: a metadata write that must be durable before
 * the next one. */
int vdisk_file_pwrite_sync(struct vdisk_file *file, const void *buf, size_t len, uint64_t offset);
/* Grows or shrinks a regular file. */
int vdisk_file_set_size(struct vdisk_file *file, uint64_t size);
/* Reserves host space for [offset, offset + len) without changing the file's size or
 * content (fallocate KEEP_SIZE), so that a later write there cannot fail for lack of space:
 * fixed images must not be sparse. 0 also where the file system cannot (nothing reserved);
 * -ENOSPC when the space is not there. */
int vdisk_file_reserve(struct vdisk_file *file, uint64_t offset, uint64_t len);
/* Bytes the host has allocated for the file. */
uint64_t vdisk_file_allocated(struct vdisk_file *file);

/* Whether a buffer/offset/length triple can go to the O_DIRECT descriptor as it is. */
bool vdisk_file_mem_aligned(const struct vdisk_file *file, const void *p, size_t len);
bool vdisk_file_range_aligned(const struct vdisk_file *file, uint64_t offset, uint64_t len);

/* Allocation helpers for buffers suited to O_DIRECT on any file (4 KiB aligned). */
void *vdisk_alloc_aligned(size_t len);

/* For fault-injection tests only (tests/crash/): an observer of the changes made to image
 * files outside the engines. While one is set, every vdisk_file_pwrite, every
 * vdisk_file_set_size that truncates a regular file and every vdisk_file_sync calls
 * event() twice on the calling thread: before the system call (done false) and after it
 * (done true, result 0 or -errno). The observer must stay valid while set; NULL removes
 * it. Set it while no other thread uses files. */
enum vdisk_file_op {
	VDISK_FILE_PWRITE,
	VDISK_FILE_SET_SIZE,
	VDISK_FILE_SYNC, /* fdatasync */
};
struct vdisk_file_event {
	enum vdisk_file_op op;
	bool done;
	const struct vdisk_file *file;
	const void *buf; /* PWRITE: the bytes */
	uint64_t len;	 /* PWRITE */
	uint64_t offset; /* PWRITE: file offset; SET_SIZE: the new size */
	int result;	 /* when done */
};
struct vdisk_file_observer {
	void (*event)(void *opaque, const struct vdisk_file_event *ev);
	void *opaque;
};
void vdisk_file_set_observer(const struct vdisk_file_observer *observer);

#endif
