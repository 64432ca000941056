#include "parent_search.h"

#include <errno.h>
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
