#include "cmos.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "arith.h"
#include "gen1_layout.h"

#define CMOS_SIZE  128
#define INDEX_MASK 0x7F /* bit 7 of the index port is the NMI mask */

/* RTC registers */
#define RTC_SECONDS   0x00
#define RTC_MINUTES   0x02
#define RTC_HOURS     0x04
#define RTC_WEEKDAY   0x06
#define RTC_DAY	      0x07
#define RTC_MONTH     0x08
#define RTC_YEAR      0x09
#define RTC_REG_A     0x0A
#define RTC_REG_B     0x0B
#define RTC_REG_C     0x0C
#define RTC_REG_D     0x0D
#define RTC_CENTURY   0x32
#define REG_A_UIP     0x80
#define REG_A_DIVIDER 0x70
#define REG_A_RUNNING 0x20 /* divider 010: 32.768 kHz time base, counting */
#define REG_A_DEFAULT 0x26
#define REG_B_SET     0x80
#define REG_B_BINARY  0x04
#define REG_B_24H     0x02
#define REG_B_DEFAULT REG_B_24H
#define REG_D_VRT     0x80
#define HOUR_PM	      0x80
#define UIP_WINDOW_NS 244000 /* UIP is high this long before each update */
/* Configuration bytes */
#define CMOS_EQUIPMENT	 0x14
#define CMOS_BASE_MEM	 0x15 /* KiB below 1 MiB, 2 bytes */
#define CMOS_EXT_MEM	 0x17 /* KiB above 1 MiB, 2 bytes, capped; copied at 0x30 */
#define CMOS_EXT_MEM2	 0x30
#define CMOS_CHECKSUM	 0x2E /* high byte; low at 0x2F: sum of 0x10-0x2D */
#define CMOS_CHECKED	 0x10
#define CMOS_CHECKED_END 0x2E
#define CMOS_MEM_16M	 0x34 /* 64 KiB units above 16 MiB, below 4 GiB, 2 bytes */
#define CMOS_MEM_4G	 0x5B /* 64 KiB units above 4 GiB, 3 bytes */
#define CMOS_CPUS	 0x5F /* CPUs - 1 */
#define CMOS_BOOT_12	 0x3D /* first (low nibble) and second boot device */
#define CMOS_BOOT_3	 0x38 /* third boot device in the high nibble */
#define EQUIPMENT_FPU	 0x02
#define BASE_MEM_KIB	 640
#define MIB		 (UINT64_C(1) << 20)
#define UNIT_64K	 (UINT64_C(1) << 16)

struct cmos {
	struct cmos_config cfg;
	pthread_mutex_t lock;
	uint8_t index;
	uint8_t ram[CMOS_SIZE]; /* everything but the clock fields, which are computed */
	int64_t offset;		/* guest time - host time, seconds */
	struct tm frozen;	/* the clock while SET is on */
};

static void now(const struct cmos *c, int64_t *sec, long *nsec)
{
	if (c->cfg.clock) {
		c->cfg.clock(c->cfg.clock_opaque, sec, nsec);
		return;
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	*sec = ts.tv_sec;
	*nsec = ts.tv_nsec;
}

static struct tm guest_time(const struct cmos *c)
{
	if (c->ram[RTC_REG_B] & REG_B_SET)
		return c->frozen;
	int64_t sec;
	long nsec;
	now(c, &sec, &nsec);
	time_t t = (time_t)(sec + c->offset);
	struct tm tm;
	if (!gmtime_r(&t, &tm))
		memset(&tm, 0, sizeof(tm));
	return tm;
}

static void set_guest_time(struct cmos *c, struct tm *tm)
{
	time_t t = timegm(tm); /* also normalises tm: out-of-range fields carry over */
	if (c->ram[RTC_REG_B] & REG_B_SET) {
		c->frozen = *tm;
		return;
	}
	int64_t sec;
	long nsec;
	now(c, &sec, &nsec);
	c->offset = (int64_t)t - sec;
}

/* ---- encoding ---- */

/* Fields are 0-99 (a year before 0, reachable only through hostile writes, reads as 0). */
static uint8_t encode(const struct cmos *c, int v)
{
	unsigned u = v < 0 ? 0 : (unsigned)v % 100;
	if (c->ram[RTC_REG_B] & REG_B_BINARY)
		return (uint8_t)u;
	return (uint8_t)((u / 10) << 4 | u % 10);
}

static int decode(const struct cmos *c, uint8_t v)
{
	if (c->ram[RTC_REG_B] & REG_B_BINARY)
		return v;
	return (v >> 4) * 10 + (v & 15);
}

static uint8_t encode_hour(const struct cmos *c, int hour)
{
	if (c->ram[RTC_REG_B] & REG_B_24H)
		return encode(c, hour);
	int h12 = hour % 12 ? hour % 12 : 12;
	return (uint8_t)(encode(c, h12) | (hour >= 12 ? HOUR_PM : 0));
}

static int decode_hour(const struct cmos *c, uint8_t v)
{
	if (c->ram[RTC_REG_B] & REG_B_24H)
		return decode(c, v);
	int h = decode(c, v & (uint8_t)~HOUR_PM) % 12;
	return h + (v & HOUR_PM ? 12 : 0);
}

static bool is_clock_field(unsigned index)
{
	switch (index) {
	case RTC_SECONDS:
	case RTC_MINUTES:
	case RTC_HOURS:
	case RTC_WEEKDAY:
	case RTC_DAY:
	case RTC_MONTH:
	case RTC_YEAR:
	case RTC_CENTURY:
		return true;
	default:
		return false;
	}
}

static uint8_t read_clock_field(const struct cmos *c, unsigned index)
{
	struct tm tm = guest_time(c);
	int year = tm.tm_year + 1900;
	switch (index) {
	case RTC_SECONDS:
		return encode(c, tm.tm_sec);
	case RTC_MINUTES:
		return encode(c, tm.tm_min);
	case RTC_HOURS:
		return encode_hour(c, tm.tm_hour);
	case RTC_WEEKDAY:
		return encode(c, tm.tm_wday + 1); /* Sunday = 1 */
	case RTC_DAY:
		return encode(c, tm.tm_mday);
	case RTC_MONTH:
		return encode(c, tm.tm_mon + 1);
	case RTC_YEAR:
		return encode(c, year % 100);
	default:
		return encode(c, year / 100 % 100);
	}
}

/* The written field replaces the current one; the weekday is derived, so writes to it are
 * ignored. */
static void write_clock_field(struct cmos *c, unsigned index, uint8_t v)
{
	struct tm tm = guest_time(c);
	int year = tm.tm_year + 1900;
	switch (index) {
	case RTC_SECONDS:
		tm.tm_sec = decode(c, v);
		break;
	case RTC_MINUTES:
		tm.tm_min = decode(c, v);
		break;
	case RTC_HOURS:
		tm.tm_hour = decode_hour(c, v);
		break;
	case RTC_DAY:
		tm.tm_mday = decode(c, v);
		break;
	case RTC_MONTH:
		tm.tm_mon = decode(c, v) - 1;
		break;
	case RTC_YEAR:
		tm.tm_year = year - year % 100 + decode(c, v) - 1900;
		break;
	case RTC_CENTURY:
		tm.tm_year = decode(c, v) * 100 + year % 100 - 1900;
		break;
	default:
		return;
	}
	set_guest_time(c, &tm);
}

/* ---- control registers ---- */

static uint8_t read_reg_a(const struct cmos *c)
{
	uint8_t a = c->ram[RTC_REG_A];
	if ((a & REG_A_DIVIDER) != REG_A_RUNNING || (c->ram[RTC_REG_B] & REG_B_SET))
		return a;
	int64_t sec;
	long nsec;
	now(c, &sec, &nsec);
	return nsec >= 1000000000L - UIP_WINDOW_NS ? (uint8_t)(a | REG_A_UIP) : a;
}

/* Entering SET freezes the clock at its current value; leaving it runs on from there. */
static void write_reg_b(struct cmos *c, uint8_t v)
{
	uint8_t old = c->ram[RTC_REG_B];
	if (!(old & REG_B_SET) && (v & REG_B_SET))
		c->frozen = guest_time(c);
	c->ram[RTC_REG_B] = v;
	if ((old & REG_B_SET) && !(v & REG_B_SET))
		set_guest_time(c, &c->frozen);
}

static uint8_t read_register(struct cmos *c, unsigned index)
{
	if (is_clock_field(index))
		return read_clock_field(c, index);
	switch (index) {
	case RTC_REG_A:
		return read_reg_a(c);
	case RTC_REG_C: {
		uint8_t v = c->ram[RTC_REG_C];
		c->ram[RTC_REG_C] = 0;
		return v;
	}
	case RTC_REG_D:
		return REG_D_VRT;
	default:
		return c->ram[index];
	}
}

static void write_register(struct cmos *c, unsigned index, uint8_t v)
{
	if (is_clock_field(index)) {
		write_clock_field(c, index, v);
		return;
	}
	switch (index) {
	case RTC_REG_A:
		c->ram[RTC_REG_A] = (uint8_t)(v & ~REG_A_UIP);
		break;
	case RTC_REG_B:
		write_reg_b(c, v);
		break;
	case RTC_REG_C:
	case RTC_REG_D:
		break; /* read-only */
	default:
		c->ram[index] = v;
	}
}

/* ---- ports ---- */

/* Port 0x70 (offset 0) is the write-only index, 0x71 the data; a wider access touches
 * both in turn. */
static uint64_t cmos_read(void *opaque, uint64_t offset, unsigned size)
{
	struct cmos *c = opaque;
	uint64_t v = 0;
	pthread_mutex_lock(&c->lock);
	for (unsigned i = 0; i < size && offset + i < 2; i++) {
		uint8_t b = offset + i == 1 ? read_register(c, c->index) : 0xFF;
		v |= (uint64_t)b << (8 * i);
	}
	pthread_mutex_unlock(&c->lock);
	return v;
}

static void cmos_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	struct cmos *c = opaque;
	pthread_mutex_lock(&c->lock);
	for (unsigned i = 0; i < size && offset + i < 2; i++) {
		uint8_t b = (uint8_t)(value >> (8 * i));
		if (offset + i == 0)
			c->index = b & INDEX_MASK;
		else
			write_register(c, c->index, b);
	}
	pthread_mutex_unlock(&c->lock);
}

static const struct dev_ops cmos_ops = { cmos_read, cmos_write };

/* ---- configuration bytes ---- */

static void put_le(uint8_t *p, unsigned len, uint64_t v)
{
	for (unsigned i = 0; i < len; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void fill_memory(uint8_t *ram, uint64_t ram_bytes)
{
	uint64_t below_4g = min_u64(ram_bytes, GEN1_PCI_HOLE_START);
	uint64_t above_4g = ram_bytes - below_4g;
	uint64_t ext_kib = below_4g > MIB ? (below_4g - MIB) / 1024 : 0;
	uint64_t above_16m = below_4g > 16 * MIB ? (below_4g - 16 * MIB) / UNIT_64K : 0;
	put_le(ram + CMOS_BASE_MEM, 2, BASE_MEM_KIB);
	put_le(ram + CMOS_EXT_MEM, 2, min_u64(ext_kib, 0xFFFF));
	put_le(ram + CMOS_EXT_MEM2, 2, min_u64(ext_kib, 0xFFFF));
	put_le(ram + CMOS_MEM_16M, 2, min_u64(above_16m, 0xFFFF));
	put_le(ram + CMOS_MEM_4G, 3, min_u64(above_4g / UNIT_64K, 0xFFFFFF));
}

static void fill_config(struct cmos *c)
{
	const struct cmos_config *cfg = &c->cfg;
	uint8_t *ram = c->ram;
	fill_memory(ram, cfg->ram_bytes);
	ram[CMOS_EQUIPMENT] = EQUIPMENT_FPU;
	ram[CMOS_CPUS] = (uint8_t)(cfg->cpus - 1);
	ram[CMOS_BOOT_12] = (uint8_t)(cfg->boot_order[0] | cfg->boot_order[1] << 4);
	ram[CMOS_BOOT_3] = (uint8_t)(cfg->boot_order[2] << 4);
	unsigned sum = 0;
	for (unsigned i = CMOS_CHECKED; i < CMOS_CHECKED_END; i++)
		sum += ram[i];
	ram[CMOS_CHECKSUM] = (uint8_t)(sum >> 8);
	ram[CMOS_CHECKSUM + 1] = (uint8_t)sum;
}

void cmos_reset(struct cmos *c)
{
	pthread_mutex_lock(&c->lock);
	memset(c->ram, 0, sizeof(c->ram));
	c->index = 0;
	c->ram[RTC_REG_A] = REG_A_DEFAULT;
	c->ram[RTC_REG_B] = REG_B_DEFAULT;
	fill_config(c);
	pthread_mutex_unlock(&c->lock);
}

static bool valid_config(const struct cmos_config *cfg)
{
	if (!cfg->bus || cfg->cpus < 1 || cfg->cpus > 256)
		return false;
	bool ended = false;
	for (unsigned i = 0; i < CMOS_BOOT_SLOTS; i++) {
		if (cfg->boot_order[i] > CMOS_BOOT_NETWORK || (ended && cfg->boot_order[i]))
			return false;
		ended = ended || cfg->boot_order[i] == CMOS_BOOT_NONE;
	}
	return true;
}

int cmos_create(const struct cmos_config *cfg, struct cmos **out)
{
	if (!valid_config(cfg))
		return -EINVAL;
	struct cmos *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->cfg = *cfg;
	pthread_mutex_init(&c->lock, NULL);
	cmos_reset(c);
	int ret = dev_bus_register(cfg->bus, DEV_PIO, GEN1_CMOS_PORT, 2, &cmos_ops, c, "cmos");
	if (ret < 0) {
		cmos_destroy(c);
		return ret;
	}
	*out = c;
	return 0;
}

void cmos_destroy(struct cmos *c)
{
	if (!c)
		return;
	pthread_mutex_destroy(&c->lock);
	free(c);
}
