#include "parent_search.h"

#include "format.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *vdisk_path_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

char *vdisk_path_with_slashes(const char *path)
{
	char *s = strdup(path);
	for (char *p = s; p && *p; p++)
		if (*p == '\\')
			*p = '/';
	return s;
}

int vdisk_parent_search_init(struct vdisk_parent_search *s, const char *child_path)
{
	*s = (struct vdisk_parent_search){0};
	s->dir = vdisk_path_dir(child_path);
	if (!s->dir)
		return -ENOMEM;
	s->have_child = stat(child_path, &s->child) == 0;
	return 0;
}

void vdisk_parent_search_fini(struct vdisk_parent_search *s)
{
	for (unsigned i = 0; i < s->ntried; i++)
		free(s->tried[i]);
	free(s->dir);
	free(s->found);
	*s = (struct vdisk_parent_search){0};
}

int vdisk_parent_try(struct vdisk_parent_search *s, const char *path)
{
	struct stat st;
	for (unsigned i = 0; i < s->ntried; i++)
		if (!strcmp(s->tried[i], path))
			return 0;
	if (s->ntried < VDISK_PARENT_MAX_TRIED) {
		if (!(s->tried[s->ntried] = strdup(path)))
			return -ENOMEM;
		s->ntried++;
	}
	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
		return 0;
	if (s->have_child && st.st_dev == s->child.st_dev && st.st_ino == s->child.st_ino)
		return 0; /* an image is never its own parent */
	s->found = strdup(path);
	return s->found ? 1 : -ENOMEM;
}

int vdisk_parent_try_relative(struct vdisk_parent_search *s, const char *path)
{
	while (path[0] == '.' && path[1] == '/') {
		path += 2;
		while (*path == '/')
			path++;
	}
	if (!*path)
		return 0;
	if (path[0] == '/')
		return vdisk_parent_try(s, path);
	char *full;
	if (asprintf(&full, "%s/%s", s->dir, path) < 0)
		return -ENOMEM;
	int ret = vdisk_parent_try(s, full);
	free(full);
	return ret;
}

int vdisk_parent_try_name(struct vdisk_parent_search *s, const char *path)
{
	const char *name = path;
	for (const char *p = path; *p; p++)
		if (*p == '/' || *p == '\\')
			name = p + 1;
	return *name ? vdisk_parent_try_relative(s, name) : 0;
}

void vdisk_parent_search_tried(const struct vdisk_parent_search *s, char *out, size_t size)
{
	size_t used = 0;
	out[0] = 0;
	for (unsigned i = 0; i < s->ntried && used + 1 < size; i++) {
		int n = snprintf(out + used, size - used, "%s%s", i ? ", " : "", s->tried[i]);
		if (n < 0)
			break;
		used += (size_t)n;
	}
}

/* How to reach to (absolute, canonical) from the directory from_dir (same), written the
 * way Hyper-V writes relative locators: ".\\name" or "..\\dir\\name". */
static char *relative_windows_path(const char *from_dir, const char *to)
{
	size_t i = 0, cut, ups = 0;

	while (from_dir[i] && from_dir[i] == to[i])
		i++;
	if (from_dir[i] == 0 && to[i] == '/')
		cut = i;
	else if (from_dir[i] == 0 && i == 1) /* from "/" */
		cut = 0;
	else
		for (cut = i; cut > 0 && to[cut] != '/'; cut--)
			;
	/* components of from_dir below the shared directory */
	for (const char *p = from_dir + cut; *p; p++)
		if (*p != '/' && (p == from_dir || p[-1] == '/'))
			ups++;
	const char *rest = to + cut + 1;
	char *out = malloc(ups * 3 + strlen(rest) + 3);
	if (!out)
		return NULL;
	char *w = out;
	if (!ups) {
		memcpy(w, ".\\", 2);
		w += 2;
	}
	for (size_t k = 0; k < ups; k++, w += 3)
		memcpy(w, "..\\", 3);
	for (const char *p = rest; *p; p++)
		*w++ = *p == '/' ? '\\' : *p;
	*w = 0;
	return out;
}

int vdisk_parent_paths(const char *child, const char *parent, char **absolute, char **relative,
		       char *err, size_t err_size)
{
	*absolute = realpath(parent, NULL);
	if (!*absolute) {
		int e = errno;
		snprintf(err, err_size, "cannot resolve the parent's path %s: %s", parent,
			 strerror(e));
		return -e;
	}
	char *dir = vdisk_path_dir(child);
	char *absdir = dir ? realpath(dir, NULL) : NULL;
	int e = dir ? errno : ENOMEM;
	free(dir);
	if (!absdir) {
		snprintf(err, err_size, "cannot resolve the directory of %s: %s", child,
			 strerror(e));
		return -e;
	}
	*relative = relative_windows_path(absdir, *absolute);
	free(absdir);
	if (!*relative) {
		snprintf(err, err_size, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

int vdisk_parent_open_for_rebase(struct vdisk *child, const char *path, struct vdisk **out,
				 char *err, size_t err_size)
{
	struct vdisk_options vo = {.read_only = true, .cache = VDISK_CACHE_WRITEBACK,
				   .engine = VDISK_ENGINE_SYNC, .no_backing = true};
	struct stat st;
	char why[256];

	if (stat(path, &st) != 0) {
		int e = errno;
		snprintf(err, err_size, "cannot find the new parent %s: %s", path, strerror(e));
		return -e;
	}
	if (st.st_dev == child->file->dev && st.st_ino == child->file->ino) {
		snprintf(err, err_size, "an image cannot be its own parent");
		return -EINVAL;
	}
	int ret = vdisk_open(path, &vo, out, why, sizeof(why));
	if (ret < 0) {
		snprintf(err, err_size, "cannot open the new parent %s: %s", path, why);
		return ret;
	}
	if (strcmp(vdisk_format_name(*out), vdisk_format_name(child)) != 0) {
		snprintf(err, err_size,
			 "the new parent %s is a %s image; a differencing %s image needs a %s "
			 "parent",
			 path, vdisk_format_name(*out), vdisk_format_name(child),
			 vdisk_format_name(child));
		vdisk_close(*out);
		*out = NULL;
		return -EINVAL;
	}
	return 0;
}
