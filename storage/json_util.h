/* Building the JSON objects drivers describe themselves with (vdisk_get_info details,
 * check findings): errors are collected in one int instead of checked at every call. */
#ifndef HV_STORAGE_JSON_UTIL_H
#define HV_STORAGE_JSON_UTIL_H

#include <errno.h>
#include <jansson.h>
#include <stdint.h>

/* Sets key to value (stolen; a NULL value fails), remembering a failure in *ret. */
static inline void vdisk_json_set(json_t *obj, const char *key, json_t *value, int *ret)
{
	if (json_object_set_new(obj, key, value) != 0)
		*ret = -ENOMEM;
}

/* Appends value (stolen), remembering a failure in *ret. */
static inline void vdisk_json_append(json_t *array, json_t *value, int *ret)
{
	if (json_array_append_new(array, value) != 0)
		*ret = -ENOMEM;
}

/* Sizes and offsets (below 2^63 everywhere in this tree). */
static inline json_t *vdisk_json_u64(uint64_t v)
{
	return json_integer((json_int_t)v);
}

#endif
