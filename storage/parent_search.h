/* Finding a differencing image's parent from the paths its locators record: the search
 * state and the steps VHD and VHDX share (each format decides the order). */
#ifndef HV_STORAGE_PARENT_SEARCH_H
#define HV_STORAGE_PARENT_SEARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

struct vdisk;

#define VDISK_PARENT_MAX_TRIED 32

struct vdisk_parent_search {
	char *dir; /* the child's directory */
	struct stat child;
	bool have_child;
	char *tried[VDISK_PARENT_MAX_TRIED];
	unsigned ntried;
	char *found; /* the parent's path once a step returned 1 (the caller takes it) */
};

/* Returns 0 or -ENOMEM. */
int vdisk_parent_search_init(struct vdisk_parent_search *s, const char *child_path);
void vdisk_parent_search_fini(struct vdisk_parent_search *s);

/* Each step returns 1 when it found the parent, 0 when not, or -ENOMEM. A file is never
 * its own child's parent, and a path is tried once. */
int vdisk_parent_try(struct vdisk_parent_search *s, const char *path);
/* A host path: absolute as it is, relative ("./x", "../d/x", "x") next to the child. */
int vdisk_parent_try_relative(struct vdisk_parent_search *s, const char *path);
/* Only the file name of path (either separator), next to the child. */
int vdisk_parent_try_name(struct vdisk_parent_search *s, const char *path);

/* A copy with Windows separators turned into '/'; NULL when out of memory. */
char *vdisk_path_with_slashes(const char *path);
/* The directory part of path ("." when it has none); NULL when out of memory. */
char *vdisk_path_dir(const char *path);
/* For creating a child: the parent's canonical absolute path and its path relative to the
 * child's directory written the Windows way (".\\name", "..\\dir\\name"), both malloc'd.
 * Returns 0 or -errno with a reason in err. */
int vdisk_parent_paths(const char *child, const char *parent, char **absolute, char **relative,
		       char *err, size_t err_size);
/* For rebase: opens path, the image to become child's parent, read-only and without a
 * parent of its own (only its identity is needed), refusing child itself and an image of
 * another format than child's. Returns 0 or -errno with a reason in err. */
int vdisk_parent_open_for_rebase(struct vdisk *child, const char *path, struct vdisk **out,
				 char *err, size_t err_size);
/* "a, b, c": the paths tried, for an error message. */
void vdisk_parent_search_tried(const struct vdisk_parent_search *s, char *out, size_t size);

#endif
