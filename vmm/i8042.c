#include "i8042.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "gen1_layout.h"

#define QUEUE_LEN 16

/* status register */
#define STAT_OBF      0x01
#define STAT_SYS      0x04
#define STAT_CMD      0x08 /* the last write went to the command port */
#define STAT_UNLOCKED 0x10 /* keyboard not inhibited */
#define STAT_AUX_OBF  0x20
/* command byte */
#define CTR_KBD_INT 0x01
#define CTR_AUX_INT 0x02
#define CTR_SYS	    0x04
#define CTR_KBD_DIS 0x10
#define CTR_AUX_DIS 0x20
#define CTR_DEFAULT (CTR_KBD_INT | CTR_AUX_INT)
/* output port */
#define OUT_RESET   0x01 /* active low */
#define OUT_A20	    0x02
#define OUT_DEFAULT (OUT_RESET | OUT_A20)
/* port 0x92 */
#define P92_RESET 0x01
#define P92_A20	  0x02
/* controller commands */
#define CMD_READ_CTR	   0x20
#define CMD_READ_RAM_END   0x3F
#define CMD_WRITE_CTR	   0x60
#define CMD_WRITE_RAM_END  0x7F
#define CMD_AUX_DISABLE	   0xA7
#define CMD_AUX_ENABLE	   0xA8
#define CMD_AUX_TEST	   0xA9
#define CMD_SELF_TEST	   0xAA
#define CMD_KBD_TEST	   0xAB
#define CMD_KBD_DISABLE	   0xAD
#define CMD_KBD_ENABLE	   0xAE
#define CMD_READ_INPUT	   0xC0
#define CMD_READ_OUTPUT	   0xD0
#define CMD_WRITE_OUTPUT   0xD1
#define CMD_WRITE_KBD_OBUF 0xD2
#define CMD_WRITE_AUX_OBUF 0xD3
#define CMD_WRITE_AUX	   0xD4
#define CMD_PULSE_FIRST	   0xF0
#define SELF_TEST_OK	   0x55
/* keyboard */
#define KBD_ACK		0xFA
#define KBD_BAT_OK	0xAA
#define KBD_CMD_LEDS	0xED
#define KBD_CMD_ECHO	0xEE
#define KBD_CMD_SCANSET 0xF0
#define KBD_CMD_GET_ID	0xF2
#define KBD_CMD_RATE	0xF3
#define KBD_CMD_RESET	0xFF
#define KBD_ID_1	0xAB
#define KBD_ID_2	0x83
#define KBD_SCANSET	2

struct out_byte {
	uint8_t data;
	bool aux;
};

struct i8042 {
	struct i8042_config cfg;
	pthread_mutex_t lock;
	struct out_byte queue[QUEUE_LEN];
	unsigned head, count;
	uint8_t last_read;
	uint8_t status; /* SYS and CMD; OBF bits come from the queue */
	uint8_t ctr, outport, port92;
	uint8_t pending_cmd;	 /* controller command waiting for its data byte, or 0 */
	uint8_t pending_kbd_cmd; /* keyboard command waiting for its parameter, or 0 */
	bool irq[2];		 /* IRQ 1, IRQ 12 as last set */
};

/* ---- output queue and interrupts ---- */

static const unsigned irq_lines[2] = { GEN1_KBD_IRQ, GEN1_AUX_IRQ };

static void update_irqs(struct i8042 *k)
{
	const struct out_byte *front = k->count ? &k->queue[k->head] : NULL;
	bool level[2] = { front && !front->aux && (k->ctr & CTR_KBD_INT),
			  front && front->aux && (k->ctr & CTR_AUX_INT) };
	for (unsigned i = 0; i < 2; i++)
		if (level[i] != k->irq[i]) {
			k->irq[i] = level[i];
			platform_set_irq(&k->cfg.hooks, irq_lines[i], level[i]);
		}
}

static void queue_byte(struct i8042 *k, uint8_t data, bool aux)
{
	if (k->count == QUEUE_LEN)
		return;
	k->queue[(k->head + k->count++) % QUEUE_LEN] = (struct out_byte){ data, aux };
	update_irqs(k);
}

/* Taking a byte lowers its interrupt; if another byte follows, its interrupt rises again,
 * a fresh edge for the edge-triggered ISA line. */
static uint8_t read_data(struct i8042 *k)
{
	if (k->count) {
		k->last_read = k->queue[k->head].data;
		k->head = (k->head + 1) % QUEUE_LEN;
		k->count--;
		for (unsigned i = 0; i < 2; i++)
			if (k->irq[i]) {
				k->irq[i] = false;
				platform_set_irq(&k->cfg.hooks, irq_lines[i], false);
			}
		update_irqs(k);
	}
	return k->last_read;
}

static uint8_t read_status(const struct i8042 *k)
{
	uint8_t s = k->status | STAT_UNLOCKED;
	if (k->count)
		s |= STAT_OBF | (k->queue[k->head].aux ? STAT_AUX_OBF : 0);
	return s;
}

/* ---- the keyboard ---- */

static void keyboard_parameter(struct i8042 *k, uint8_t v)
{
	uint8_t cmd = k->pending_kbd_cmd;
	k->pending_kbd_cmd = 0;
	queue_byte(k, KBD_ACK, false);
	if (cmd == KBD_CMD_SCANSET && v == 0)
		queue_byte(k, KBD_SCANSET, false);
}

static void keyboard_write(struct i8042 *k, uint8_t v)
{
	if (k->pending_kbd_cmd) {
		keyboard_parameter(k, v);
		return;
	}
	switch (v) {
	case KBD_CMD_ECHO:
		queue_byte(k, KBD_CMD_ECHO, false);
		return;
	case KBD_CMD_LEDS:
	case KBD_CMD_SCANSET:
	case KBD_CMD_RATE:
		k->pending_kbd_cmd = v;
		break;
	default:
		break;
	}
	queue_byte(k, KBD_ACK, false);
	if (v == KBD_CMD_RESET)
		queue_byte(k, KBD_BAT_OK, false);
	if (v == KBD_CMD_GET_ID) {
		queue_byte(k, KBD_ID_1, false);
		queue_byte(k, KBD_ID_2, false);
	}
}

/* ---- the controller ---- */

static void write_ctr(struct i8042 *k, uint8_t v)
{
	k->ctr = v;
	k->status = (uint8_t)((k->status & ~STAT_SYS) | (v & CTR_SYS ? STAT_SYS : 0));
	update_irqs(k);
}

/* Returns true when the output port write asks for a reset. */
static bool write_output_port(struct i8042 *k, uint8_t v)
{
	k->outport = v;
	return !(v & OUT_RESET);
}

/* The data byte of a two-byte controller command. Returns true to reset. */
static bool command_data(struct i8042 *k, uint8_t cmd, uint8_t v)
{
	switch (cmd) {
	case CMD_WRITE_CTR:
		write_ctr(k, v);
		break;
	case CMD_WRITE_OUTPUT:
		return write_output_port(k, v);
	case CMD_WRITE_KBD_OBUF:
		queue_byte(k, v, false);
		break;
	case CMD_WRITE_AUX_OBUF:
		queue_byte(k, v, true);
		break;
	default: /* CMD_WRITE_AUX (nothing attached), controller RAM */
		break;
	}
	return false;
}

static bool takes_data(uint8_t cmd)
{
	return (cmd >= CMD_WRITE_CTR && cmd <= CMD_WRITE_RAM_END) || cmd == CMD_WRITE_OUTPUT ||
	       cmd == CMD_WRITE_KBD_OBUF || cmd == CMD_WRITE_AUX_OBUF || cmd == CMD_WRITE_AUX;
}

/* Returns true to reset. */
static bool controller_command(struct i8042 *k, uint8_t cmd)
{
	if (takes_data(cmd)) {
		k->pending_cmd = cmd;
		return false;
	}
	if (cmd > CMD_READ_CTR && cmd <= CMD_READ_RAM_END) {
		queue_byte(k, 0, false);
		return false;
	}
	if (cmd >= CMD_PULSE_FIRST)
		return !(cmd & OUT_RESET);
	switch (cmd) {
	case CMD_READ_CTR:
		queue_byte(k, k->ctr, false);
		break;
	case CMD_AUX_DISABLE:
		write_ctr(k, k->ctr | CTR_AUX_DIS);
		break;
	case CMD_AUX_ENABLE:
		write_ctr(k, (uint8_t)(k->ctr & ~CTR_AUX_DIS));
		break;
	case CMD_KBD_DISABLE:
		write_ctr(k, k->ctr | CTR_KBD_DIS);
		break;
	case CMD_KBD_ENABLE:
		write_ctr(k, (uint8_t)(k->ctr & ~CTR_KBD_DIS));
		break;
	case CMD_SELF_TEST:
		k->status |= STAT_SYS;
		queue_byte(k, SELF_TEST_OK, false);
		break;
	case CMD_AUX_TEST:
	case CMD_KBD_TEST:
	case CMD_READ_INPUT:
		queue_byte(k, 0, false);
		break;
	case CMD_READ_OUTPUT:
		queue_byte(k, k->outport, false);
		break;
	default:
		break;
	}
	return false;
}

/* ---- ports ---- */

static uint64_t i8042_read(void *opaque, uint64_t offset, unsigned size)
{
	(void)size;
	struct i8042 *k = opaque;
	pthread_mutex_lock(&k->lock);
	uint8_t v = offset == 0 ? read_data(k) : read_status(k);
	pthread_mutex_unlock(&k->lock);
	return v;
}

static void write_data_port(struct i8042 *k, uint8_t v, bool *reset)
{
	k->status &= (uint8_t)~STAT_CMD;
	uint8_t cmd = k->pending_cmd;
	k->pending_cmd = 0;
	if (cmd)
		*reset = command_data(k, cmd, v);
	else
		keyboard_write(k, v);
}

static void i8042_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	(void)size;
	struct i8042 *k = opaque;
	bool reset = false;
	pthread_mutex_lock(&k->lock);
	if (offset == 0) {
		write_data_port(k, (uint8_t)value, &reset);
	} else {
		k->status |= STAT_CMD;
		k->pending_cmd = 0;
		reset = controller_command(k, (uint8_t)value);
	}
	pthread_mutex_unlock(&k->lock);
	if (reset)
		platform_request_reset(&k->cfg.hooks, "keyboard controller reset line");
}

/* Ports 0x60 and 0x64 share the handler: the offset tells them apart. */
static const struct dev_ops data_ops = { i8042_read, i8042_write };

static uint64_t command_port_read(void *opaque, uint64_t offset, unsigned size)
{
	(void)offset;
	return i8042_read(opaque, 1, size);
}

static void command_port_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	(void)offset;
	i8042_write(opaque, 1, size, value);
}

static const struct dev_ops command_ops = { command_port_read, command_port_write };

static uint64_t port92_read(void *opaque, uint64_t offset, unsigned size)
{
	(void)offset;
	(void)size;
	struct i8042 *k = opaque;
	pthread_mutex_lock(&k->lock);
	uint8_t v = k->port92;
	pthread_mutex_unlock(&k->lock);
	return v;
}

static void port92_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	(void)offset;
	(void)size;
	struct i8042 *k = opaque;
	pthread_mutex_lock(&k->lock);
	bool reset = (value & P92_RESET) && !(k->port92 & P92_RESET);
	k->port92 = (uint8_t)(value & P92_A20);
	pthread_mutex_unlock(&k->lock);
	if (reset)
		platform_request_reset(&k->cfg.hooks, "port 92h fast reset");
}

static const struct dev_ops port92_ops = { port92_read, port92_write };

void i8042_reset(struct i8042 *k)
{
	pthread_mutex_lock(&k->lock);
	k->head = k->count = 0;
	k->last_read = 0;
	k->status = 0;
	k->ctr = CTR_DEFAULT;
	k->outport = OUT_DEFAULT;
	k->port92 = 0;
	k->pending_cmd = k->pending_kbd_cmd = 0;
	update_irqs(k);
	pthread_mutex_unlock(&k->lock);
}

int i8042_create(const struct i8042_config *cfg, struct i8042 **out)
{
	if (!cfg->bus)
		return -EINVAL;
	struct i8042 *k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	k->cfg = *cfg;
	pthread_mutex_init(&k->lock, NULL);
	i8042_reset(k);
	int ret =
		dev_bus_register(cfg->bus, DEV_PIO, GEN1_I8042_DATA, 1, &data_ops, k, "i8042-data");
	if (ret == 0)
		ret = dev_bus_register(cfg->bus, DEV_PIO, GEN1_I8042_CMD, 1, &command_ops, k,
				       "i8042-command");
	if (ret == 0)
		ret = dev_bus_register(cfg->bus, DEV_PIO, GEN1_PORT92, 1, &port92_ops, k, "port92");
	if (ret < 0) {
		i8042_destroy(k);
		return ret;
	}
	*out = k;
	return 0;
}

void i8042_destroy(struct i8042 *k)
{
	if (!k)
		return;
	pthread_mutex_destroy(&k->lock);
	free(k);
}
