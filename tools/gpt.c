#include "gpt.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "endian.h"
#include "utf16.h"

#define MBR_ENTRY_OFFSET    446
#define MBR_BOOT_CODE_BYTES 446 /* boot code, disk signature and the two bytes after it */
#define MBR_TYPE_PROTECTIVE 0xEE
#define ALIGN_BYTES	    (1u << 20)

/* ---- findings ---- */

void finding_add(struct findings *f, const char *severity, const char *hint, const char *fmt, ...)
{
	char message[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	json_t *item = json_pack("{s:s, s:s}", "severity", severity, "message", message);
	if (item && hint)
		json_object_set_new(item, "hint", json_string(hint));
	json_array_append_new(f->list, item);
	if (!strcmp(severity, "error"))
		f->errors++;
}

/* ---- types ---- */

static const struct {
	const char *guid;
	const char *name;
} gpt_types[] = {
	{ "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", "Basic data partition" },
	{ "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "EFI system partition" },
	{ "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC", "Windows RE" },
	{ "E3C9E316-0B5C-4DB8-817D-F92DF00215AE", "Microsoft reserved" },
	{ "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "Linux filesystem" },
	{ "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", "Linux swap" },
	{ "E6D6D379-F507-44C2-A23C-238F2A3DF928", "Linux LVM" },
	{ "A19D880F-05FC-4D3B-A006-743F0F84911E", "Linux RAID" },
	{ "BC13C2FF-59E6-4262-A352-B275FD6F7172", "XBOOTLDR partition" },
	{ "C91818F9-8025-47AF-89D2-F030D7000C2C", "Plan 9" },
	{ "9E1A2D38-C612-4316-AA26-8B49521E5A8B", "PowerPC PReP boot" },
	{ "D3BFE2DE-3DAF-11DF-BA40-E3A556D89593", "Intel Rapid Start" },
	{ "516E7CB4-6ECF-11D6-8FF8-00022D09712B", "FreeBSD disklabel" },
	{ "824CC7A0-36A8-11E3-890A-952519AD3F61", "OpenBSD disklabel" },
	{ "55465300-0000-11AA-AA11-00306543ECAC", "Apple UFS" },
	{ "426F6F74-0000-11AA-AA11-00306543ECAC", "Recovery HD" },
	{ "48465300-0000-11AA-AA11-00306543ECAC", "Apple HFS/HFS+" },
	{ "6A82CB45-1DD2-11B2-99A6-080020736631", "Solaris boot" },
	{ "6A85CF4D-1DD2-11B2-99A6-080020736631", "Solaris root" },
	{ "42465331-3BA3-10F1-802A-4861696B7521", "Haiku BFS" },
	{ "AA31E02A-400F-11DB-9590-000C2911D1B8", "VMWare VMFS" },
};

/* gdisk's conversion (MBR type X becomes its GPT type code X00): an index into gpt_types. */
static const struct {
	uint8_t mbr;
	uint8_t gpt;
} mbr_types[] = {
	{ 0x01, 0 },  { 0x04, 0 },  { 0x06, 0 },  { 0x07, 0 },	{ 0x0B, 0 },  { 0x0C, 0 },
	{ 0x0E, 0 },  { 0x11, 0 },  { 0x14, 0 },  { 0x16, 0 },	{ 0x17, 0 },  { 0x1B, 0 },
	{ 0x1C, 0 },  { 0x1E, 0 },  { 0xEF, 1 },  { 0x27, 2 },	{ 0x83, 4 },  { 0x82, 5 },
	{ 0x8E, 6 },  { 0xFD, 7 },  { 0xEA, 8 },  { 0x39, 9 },	{ 0x41, 10 }, { 0x84, 11 },
	{ 0xA5, 12 }, { 0xA6, 13 }, { 0xA8, 14 }, { 0xAB, 15 }, { 0xAF, 16 }, { 0xBE, 17 },
	{ 0xBF, 18 }, { 0xEB, 19 }, { 0xFB, 20 },
};

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static bool is_extended(uint8_t type)
{
	return type == 0x05 || type == 0x0F || type == 0x85;
}

int type_map_add(struct type_map *map, const char *text)
{
	const char *eq = strchr(text, '=');
	if (!eq || eq == text)
		return -EINVAL;
	char *end;
	unsigned long mbr = strtoul(text, &end, 16);
	if (end != eq || mbr == 0 || mbr > 0xFF || text[0] == '-')
		return -EINVAL;
	struct guid g;
	if (guid_parse(eq + 1, &g) || guid_is_zero(&g))
		return -EINVAL;
	map->set[mbr] = true;
	map->type[mbr] = g;
	return 0;
}

bool type_map_lookup(const struct type_map *map, uint8_t mbr_type, struct guid *out)
{
	if (map && map->set[mbr_type]) {
		*out = map->type[mbr_type];
		return true;
	}
	for (size_t i = 0; i < ARRAY_LEN(mbr_types); i++) {
		if (mbr_types[i].mbr == mbr_type)
			return guid_parse(gpt_types[mbr_types[i].gpt].guid, out) == 0;
	}
	return false;
}

const char *gpt_type_name(const struct guid *type)
{
	for (size_t i = 0; i < ARRAY_LEN(gpt_types); i++) {
		struct guid g;
		if (guid_parse(gpt_types[i].guid, &g) == 0 && guid_equal(&g, type))
			return gpt_types[i].name;
	}
	return "";
}

/* ---- geometry ---- */

static uint64_t array_sectors(uint32_t sector_size)
{
	return GPT_ARRAY_BYTES / sector_size;
}

uint64_t gpt_first_usable(uint32_t sector_size)
{
	return 2 + array_sectors(sector_size);
}

uint64_t gpt_last_usable(uint32_t sector_size, uint64_t sectors)
{
	return sectors - 2 - array_sectors(sector_size);
}

static uint64_t align_up(uint64_t lba, uint64_t align)
{
	return (lba + align - 1) / align * align;
}

/* ---- reading the MBR ---- */

struct mbr_entry {
	uint8_t status;
	uint8_t type;
	uint32_t start;
	uint32_t sectors;
};

static struct mbr_entry mbr_entry_at(const uint8_t *sector, unsigned index)
{
	const uint8_t *e = sector + MBR_ENTRY_OFFSET + 16 * index;
	return (struct mbr_entry){ .status = e[0],
				   .type = e[4],
				   .start = load_le32(e + 8),
				   .sectors = load_le32(e + 12) };
}

static bool has_boot_signature(const uint8_t *sector)
{
	return sector[510] == 0x55 && sector[511] == 0xAA;
}

static int read_sector(struct vdisk *disk, uint32_t sector_size, uint64_t lba, uint8_t *buf)
{
	return vdisk_pread(disk, buf, sector_size, lba * sector_size);
}

static void add_part(struct mbr_disk *m, unsigned number, const struct mbr_entry *e, uint64_t first)
{
	m->parts[m->count++] = (struct mbr_part){ .number = number,
						  .type = e->type,
						  .bootable = e->status == 0x80,
						  .first = first,
						  .last = first + e->sectors - 1 };
	if (e->type == 0xEF)
		m->has_esp = true;
}

static const char *const resize_hint =
	"the image is smaller than its partition table says (was it truncated?); restore it, "
	"or grow it with 'vdisk resize'";

/* Checks one primary entry; true when it describes a usable range. */
static bool primary_ok(const struct mbr_disk *m, unsigned number, const struct mbr_entry *e,
		       struct findings *f)
{
	bool ok = true;
	if (e->status != 0x00 && e->status != 0x80) {
		finding_add(f, "error",
			    "sector 0 may be a file system's boot sector rather than a partition "
			    "table; convert only whole disks",
			    "partition %u has an invalid boot flag 0x%02x", number, e->status);
		ok = false;
	}
	if (e->sectors == 0) {
		finding_add(f, "error", "delete the entry or give it a size with fdisk",
			    "partition %u (type 0x%02x) has zero length", number, e->type);
		return false;
	}
	if (e->start == 0) {
		finding_add(f, "error", "fix the partition table with fdisk",
			    "partition %u starts at LBA 0, over the MBR itself", number);
		return false;
	}
	uint64_t last = (uint64_t)e->start + e->sectors - 1;
	if (last >= m->sectors) {
		finding_add(f, "error", resize_hint,
			    "partition %u (LBA %u-%llu) ends past the end of the disk (%llu "
			    "sectors)",
			    number, e->start, (unsigned long long)last,
			    (unsigned long long)m->sectors);
		return false;
	}
	return ok;
}

/* Follows the chain of extended boot records inside [ext_first, ext_last]. Every link
 * must point further into the container, so the walk ends even on hostile input. */
static int walk_extended(struct vdisk *disk, struct mbr_disk *m, uint64_t ext_first,
			 uint64_t ext_last, uint8_t *buf, struct findings *f)
{
	unsigned number = 5;
	uint64_t ebr = ext_first;
	for (;;) {
		if (m->ebr_count == GPT_ENTRIES || number > GPT_ENTRIES) {
			finding_add(f, "error", "a GPT holds at most 128 partitions",
				    "the extended partition holds more than %u logical partitions",
				    GPT_ENTRIES - 4);
			return 0;
		}
		m->ebr[m->ebr_count++] = ebr;
		int ret = read_sector(disk, m->sector_size, ebr, buf);
		if (ret < 0)
			return ret;
		if (!has_boot_signature(buf)) {
			finding_add(f, "error",
				    "repair the extended partition with fdisk or testdisk",
				    "the boot record at LBA %llu (logical partition %u) has no "
				    "0x55AA signature",
				    (unsigned long long)ebr, number);
			return 0;
		}
		struct mbr_entry data = mbr_entry_at(buf, 0), link = mbr_entry_at(buf, 1);
		if (data.type != 0) {
			uint64_t first = ebr + data.start;
			uint64_t last = first + data.sectors - 1;
			if (data.sectors == 0 || data.start == 0)
				finding_add(f, "error", "delete or fix it with fdisk",
					    "logical partition %u (boot record at LBA %llu) has %s",
					    number, (unsigned long long)ebr,
					    data.sectors ? "no room for its boot record"
							 : "zero length");
			else if (last > ext_last)
				finding_add(f, "error", resize_hint,
					    "logical partition %u (LBA %llu-%llu) ends past its "
					    "extended partition (LBA %llu-%llu)",
					    number, (unsigned long long)first,
					    (unsigned long long)last, (unsigned long long)ext_first,
					    (unsigned long long)ext_last);
			else
				add_part(m, number, &data, first);
			number++;
		}
		if (link.type == 0 && link.start == 0 && link.sectors == 0)
			return 0;
		uint64_t next = ext_first + link.start;
		const char *why = !is_extended(link.type) ? "is not an extended partition type"
				  : next <= ebr		  ? "points back (a loop)"
				  : next > ext_last	  ? "points past the extended partition"
							  : NULL;
		if (why) {
			finding_add(f, "error", "repair the chain of logical partitions with fdisk",
				    "the boot record at LBA %llu links to LBA %llu (type 0x%02x), "
				    "which %s",
				    (unsigned long long)ebr, (unsigned long long)next, link.type,
				    why);
			return 0;
		}
		ebr = next;
	}
}

static int cmp_part_first(const void *a, const void *b)
{
	const struct mbr_part *x = a, *y = b;
	return x->first < y->first ? -1 : x->first > y->first;
}

static void check_overlaps(const struct mbr_disk *m, struct findings *f)
{
	struct mbr_part sorted[GPT_ENTRIES];
	memcpy(sorted, m->parts, m->count * sizeof(sorted[0]));
	qsort(sorted, m->count, sizeof(sorted[0]), cmp_part_first);
	for (unsigned i = 1; i < m->count; i++) {
		if (sorted[i].first <= sorted[i - 1].last)
			finding_add(f, "error",
				    "fix the partition table with fdisk; overlapping partitions "
				    "cannot be converted safely",
				    "partitions %u (LBA %llu-%llu) and %u (LBA %llu-%llu) overlap",
				    sorted[i - 1].number, (unsigned long long)sorted[i - 1].first,
				    (unsigned long long)sorted[i - 1].last, sorted[i].number,
				    (unsigned long long)sorted[i].first,
				    (unsigned long long)sorted[i].last);
	}
}

static void check_gpt_room(const struct mbr_disk *m, struct findings *f)
{
	uint64_t first_usable = gpt_first_usable(m->sector_size);
	uint64_t last_usable = gpt_last_usable(m->sector_size, m->sectors);
	uint64_t tail = m->sectors - 1 - last_usable;
	char hint[256];
	for (unsigned i = 0; i < m->count; i++) {
		const struct mbr_part *p = &m->parts[i];
		if (p->first < first_usable)
			finding_add(f, "error",
				    "move the partition (or its file system) to start at LBA "
				    ">= the first usable LBA; most tools align partitions at 1 MiB",
				    "partition %u starts at LBA %llu, inside the primary GPT (the "
				    "first usable LBA is %llu)",
				    p->number, (unsigned long long)p->first,
				    (unsigned long long)first_usable);
		if (p->last > last_usable) {
			uint64_t grow = (p->last - last_usable) * m->sector_size;
			snprintf(hint, sizeof(hint),
				 "grow the disk by at least %llu bytes with 'vdisk resize', so the "
				 "backup GPT fits after the partition",
				 (unsigned long long)grow);
			finding_add(f, "error", hint,
				    "partition %u ends at LBA %llu, inside the last %llu sectors "
				    "the backup GPT needs (the last usable LBA is %llu)",
				    p->number, (unsigned long long)p->last,
				    (unsigned long long)tail, (unsigned long long)last_usable);
		}
	}
	for (unsigned i = 0; i < m->ebr_count; i++) {
		if (m->ebr[i] < first_usable || m->ebr[i] > last_usable)
			finding_add(
				f, "error",
				"move the logical partitions away from the start and end of the "
				"disk",
				"the logical partitions' boot record at LBA %llu lies where the "
				"GPT goes",
				(unsigned long long)m->ebr[i]);
	}
}

static void check_types(const struct mbr_disk *m, const struct type_map *map, struct findings *f)
{
	for (unsigned i = 0; i < m->count; i++) {
		const struct mbr_part *p = &m->parts[i];
		struct guid g;
		if (type_map_lookup(map, p->type, &g))
			continue;
		char hint[160];
		snprintf(hint, sizeof(hint),
			 "name its GPT type with --map 0x%02x=GUID (for example "
			 "--map 0x%02x=0FC63DAF-8483-4772-8E79-3D69D8477DE4 for Linux data)",
			 p->type, p->type);
		finding_add(f, "error", hint,
			    "partition %u has MBR type 0x%02x, which has no known "
			    "GPT type",
			    p->number, p->type);
	}
}

/* The primary table: partitions, at most one extended container. */
static int read_primaries(struct vdisk *disk, struct mbr_disk *m, uint8_t *buf, struct findings *f)
{
	int ext = -1;
	struct mbr_entry entries[4];
	for (unsigned i = 0; i < 4; i++) {
		entries[i] = mbr_entry_at(m->mbr, i);
		if (entries[i].type == MBR_TYPE_PROTECTIVE) {
			finding_add(f, "error", "nothing to convert; inspect it with 'sgdisk -p'",
				    "the disk already has a GPT: partition %u is of type 0xEE "
				    "(protective or hybrid MBR)",
				    i + 1);
			return 0;
		}
	}
	for (unsigned i = 0; i < 4; i++) {
		const struct mbr_entry *e = &entries[i];
		if (e->type == 0 || !primary_ok(m, i + 1, e, f))
			continue;
		if (!is_extended(e->type)) {
			add_part(m, i + 1, e, e->start);
		} else if (ext >= 0) {
			finding_add(f, "error", "fix the partition table with fdisk",
				    "partitions %d and %u are both extended partitions", ext + 1,
				    i + 1);
		} else {
			ext = (int)i;
		}
	}
	if (ext < 0)
		return 0;
	const struct mbr_entry *e = &entries[ext];
	return walk_extended(disk, m, e->start, (uint64_t)e->start + e->sectors - 1, buf, f);
}

/* Sectors [first, first + count) hold something other than zeros. */
static int has_data(struct vdisk *disk, uint32_t sector_size, uint64_t first, uint64_t count,
		    bool *found)
{
	uint64_t length = count * sector_size;
	uint8_t *buf = malloc(length);
	if (!buf)
		return -ENOMEM;
	int ret = vdisk_pread(disk, buf, length, first * sector_size);
	*found = false;
	for (uint64_t i = 0; ret == 0 && i < length && !*found; i++)
		*found = buf[i] != 0;
	free(buf);
	return ret;
}

/* The GPT replaces what lies outside the partitions at both ends: say so when that is not
 * empty (GRUB keeps its BIOS core image after the MBR; old GPTs leave their tables). */
static int check_gpt_areas(struct vdisk *disk, const struct mbr_disk *m, struct findings *f)
{
	uint64_t front = gpt_first_usable(m->sector_size) - 1;
	uint64_t back = m->sectors - 1 - gpt_last_usable(m->sector_size, m->sectors);
	bool found;
	int ret = has_data(disk, m->sector_size, 1, front, &found);
	if (ret == 0 && found)
		finding_add(
			f, "warning",
			"boot the disk through UEFI after the conversion (create an ESP with "
			"--create-esp and install a UEFI boot loader), or reinstall the BIOS "
			"boot loader for GPT",
			"LBA 1-%llu are not empty (a BIOS boot loader such as GRUB's core image, "
			"or an old GPT); the primary GPT replaces them",
			(unsigned long long)front);
	if (ret == 0)
		ret = has_data(disk, m->sector_size, m->sectors - back, back, &found);
	if (ret == 0 && found)
		finding_add(f, "warning", NULL,
			    "the last %llu sectors, outside every partition, are not empty; the "
			    "backup GPT replaces them",
			    (unsigned long long)back);
	return ret;
}

int mbr_inspect(struct vdisk *disk, uint32_t sector_size, const struct type_map *map,
		struct mbr_disk *m, struct findings *f)
{
	*m = (struct mbr_disk){ .sector_size = sector_size,
				.sectors = vdisk_size(disk) / sector_size };
	if (m->sectors < 2 * gpt_first_usable(sector_size) + 1) {
		finding_add(f, "error", "a GPT needs room at both ends of the disk",
			    "the disk has only %llu sectors", (unsigned long long)m->sectors);
		return 0;
	}
	uint8_t *buf = malloc(sector_size);
	if (!buf)
		return -ENOMEM;
	int ret = read_sector(disk, sector_size, 0, buf);
	if (ret < 0)
		goto out;
	memcpy(m->mbr, buf, sizeof(m->mbr));
	if (!has_boot_signature(m->mbr)) {
		finding_add(f, "error",
			    "partition the disk first (fdisk, sfdisk), or check that the file "
			    "is a whole disk and not one partition",
			    "sector 0 has no MBR signature (0x55AA): the disk has no MBR "
			    "partition table");
		goto out;
	}
	ret = read_primaries(disk, m, buf, f);
	if (ret < 0 || f->errors)
		goto out;
	check_overlaps(m, f);
	check_gpt_room(m, f);
	check_types(m, map, f);
	ret = check_gpt_areas(disk, m, f);
	if (m->count == 0)
		finding_add(f, "note", NULL, "the MBR has no partitions; the GPT will be empty");
out:
	free(buf);
	return ret;
}

/* ---- free space ---- */

struct range {
	uint64_t first, last;
};

static int cmp_range(const void *a, const void *b)
{
	const struct range *x = a, *y = b;
	return x->first < y->first ? -1 : x->first > y->first;
}

bool gpt_find_free(const struct mbr_disk *m, uint64_t sectors, uint64_t *first,
		   uint64_t *missing_bytes)
{
	struct range used[2 * GPT_ENTRIES];
	unsigned n = 0;
	for (unsigned i = 0; i < m->count; i++)
		used[n++] = (struct range){ m->parts[i].first, m->parts[i].last };
	for (unsigned i = 0; i < m->ebr_count; i++)
		used[n++] = (struct range){ m->ebr[i], m->ebr[i] };
	qsort(used, n, sizeof(used[0]), cmp_range);
	uint64_t align = ALIGN_BYTES / m->sector_size;
	uint64_t last_usable = gpt_last_usable(m->sector_size, m->sectors);
	uint64_t next = gpt_first_usable(m->sector_size); /* first LBA not known to be used */
	for (unsigned i = 0; i <= n; i++) {
		uint64_t gap_last =
			i < n && used[i].first <= last_usable ? used[i].first - 1 : last_usable;
		uint64_t start = align_up(next, align);
		if (gap_last >= start && gap_last - start + 1 >= sectors) {
			*first = start;
			return true;
		}
		if (i == n) {
			uint64_t room = gap_last >= start ? gap_last - start + 1 : 0;
			*missing_bytes = (sectors - room) * m->sector_size;
		} else if (used[i].last + 1 > next) {
			next = used[i].last + 1;
		}
	}
	return false;
}

/* ---- building and writing the GPT ---- */

int gpt_from_mbr(const struct mbr_disk *m, const struct type_map *map, struct gpt_table *t)
{
	memset(t, 0, sizeof(*t));
	int ret = guid_generate(&t->disk_guid);
	for (unsigned i = 0; i < m->count && ret == 0; i++) {
		const struct mbr_part *p = &m->parts[i];
		struct gpt_entry *e = &t->entries[p->number - 1];
		if (!type_map_lookup(map, p->type, &e->type))
			return -EINVAL;
		e->first = p->first;
		e->last = p->last;
		e->attributes = p->bootable ? GPT_ATTR_LEGACY_BIOS_BOOTABLE : 0;
		snprintf(e->name, sizeof(e->name), "%s", gpt_type_name(&e->type));
		ret = guid_generate(&e->unique);
	}
	return ret;
}

unsigned gpt_free_number(const struct gpt_table *t)
{
	for (unsigned i = 0; i < GPT_ENTRIES; i++)
		if (guid_is_zero(&t->entries[i].type))
			return i + 1;
	return 0;
}

static void encode_entry(const struct gpt_entry *e, uint8_t *out)
{
	if (guid_is_zero(&e->type))
		return;
	memcpy(out, e->type.bytes, 16);
	memcpy(out + 16, e->unique.bytes, 16);
	store_le64(out + 32, e->first);
	store_le64(out + 40, e->last);
	store_le64(out + 48, e->attributes);
	/* Names come from our own table or from short ASCII: they always fit. */
	utf8_to_utf16le(e->name, out + 56, GPT_NAME_CHARS * 2);
}

/* One header sector: primary (at LBA 1) or backup (at the last LBA). */
static void encode_header(const struct mbr_disk *m, const struct gpt_table *t, bool backup,
			  uint32_t array_crc, uint8_t *sector)
{
	uint64_t last_lba = m->sectors - 1;
	memset(sector, 0, m->sector_size);
	memcpy(sector, "EFI PART", 8);
	store_le32(sector + 8, 0x00010000);
	store_le32(sector + 12, 92);
	store_le64(sector + 24, backup ? last_lba : 1);
	store_le64(sector + 32, backup ? 1 : last_lba);
	store_le64(sector + 40, gpt_first_usable(m->sector_size));
	store_le64(sector + 48, gpt_last_usable(m->sector_size, m->sectors));
	memcpy(sector + 56, t->disk_guid.bytes, 16);
	store_le64(sector + 72, backup ? last_lba - array_sectors(m->sector_size) : 2);
	store_le32(sector + 80, GPT_ENTRIES);
	store_le32(sector + 84, GPT_ENTRY_SIZE);
	store_le32(sector + 88, array_crc);
	store_le32(sector + 16, (uint32_t)crc32(0, sector, 92));
}

/* Sector 0 with its boot code kept and one 0xEE entry covering the disk. */
static void encode_protective_mbr(const struct mbr_disk *m, uint8_t *sector)
{
	memset(sector, 0, m->sector_size);
	memcpy(sector, m->mbr, MBR_BOOT_CODE_BYTES);
	uint8_t *e = sector + MBR_ENTRY_OFFSET;
	uint64_t covered = m->sectors - 1;
	e[1] = 0x00; /* CHS of LBA 1: head 0, sector 2, cylinder 0 */
	e[2] = 0x02;
	e[3] = 0x00;
	e[4] = MBR_TYPE_PROTECTIVE;
	e[5] = e[6] = e[7] = 0xFF; /* CHS end: beyond what CHS can express */
	store_le32(e + 8, 1);
	store_le32(e + 12, covered > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)covered);
	sector[510] = 0x55;
	sector[511] = 0xAA;
}

static int write_flushed(struct vdisk *disk, const void *buf, uint64_t length, uint64_t offset)
{
	int ret = vdisk_pwrite(disk, buf, length, offset);
	return ret < 0 ? ret : vdisk_flush_sync(disk);
}

int gpt_write(struct vdisk *disk, const struct mbr_disk *m, const struct gpt_table *t,
	      const char **step)
{
	uint32_t ss = m->sector_size;
	uint64_t last_lba = m->sectors - 1;
	uint64_t array_len = array_sectors(ss) * ss;
	/* The backup array and header are contiguous: one buffer, one write. */
	uint8_t *buf = calloc(1, array_len + ss);
	uint8_t *header = buf + array_len;
	if (!buf)
		return -ENOMEM;
	for (unsigned i = 0; i < GPT_ENTRIES; i++)
		encode_entry(&t->entries[i], buf + i * GPT_ENTRY_SIZE);
	uint32_t array_crc = (uint32_t)crc32(0, buf, GPT_ARRAY_BYTES);

	*step = "writing the backup GPT";
	encode_header(m, t, true, array_crc, header);
	int ret = write_flushed(disk, buf, array_len + ss, (last_lba - array_sectors(ss)) * ss);
	if (ret == 0) {
		*step = "writing the primary GPT";
		/* The primary header sits before its array: two writes, one flush. */
		encode_header(m, t, false, array_crc, header);
		ret = vdisk_pwrite(disk, buf, array_len, 2ull * ss);
		if (ret == 0)
			ret = write_flushed(disk, header, ss, ss);
	}
	if (ret == 0) {
		*step = "writing the protective MBR";
		encode_protective_mbr(m, header);
		ret = write_flushed(disk, header, ss, 0);
	}
	free(buf);
	return ret;
}
