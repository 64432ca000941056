/* The i8042 keyboard controller (ports 0x60 data, 0x64 command/status) and port 0x92 (fast
 * A20 and reset): what SeaBIOS's and Linux's probes need, and the guest's reset paths.
 *
 * - Controller commands: 0x20/0x60 read/write the command byte (0x21-0x3F read 0, 0x61-0x7F
 *   writes ignored), 0xA7/0xA8 and 0xAD/0xAE disable/enable the ports, 0xAA self-test
 *   (0x55, sets the system flag), 0xA9/0xAB interface tests (0x00), 0xC0 input port, 0xD0/
 *   0xD1 read/write the output port (bit1 A20 stored, bit0 = 0 resets), 0xD2/0xD3 echo a
 *   byte as if from the keyboard/auxiliary port, 0xD4 sends a byte to the auxiliary device,
 *   0xF0-0xFF pulse the output lines (bit0 clear = reset, so 0xFE resets). Others are
 *   ignored.
 * - A keyboard is attached that answers commands but never has a key to send: reset 0xFF
 *   answers 0xFA 0xAA, identify 0xF2 answers 0xFA 0xAB 0x83, echo 0xEE answers 0xEE, 0xED/
 *   0xF0/0xF3 take a parameter (each byte acknowledged; 0xF0 0x00 reports set 2), every
 *   other byte answers 0xFA.
 * - No device is attached to the auxiliary port: bytes sent with 0xD4 get no answer, which
 *   a guest's mouse probe handles as a timeout.
 * - Bytes wait in a 16-entry output queue (more are dropped); IRQ 1 / IRQ 12 follow the
 *   byte at its head when the command byte enables them, and drop when it is read.
 * - Port 0x92: bit1 A20 stored (guest memory never wraps at 1 MiB), bit0 0 -> 1 resets.
 */
#ifndef HV_I8042_H
#define HV_I8042_H

#include "dev.h"
#include "platform_hooks.h"

struct i8042;

struct i8042_config {
	struct dev_bus *bus;
	struct platform_hooks hooks; /* request_reset, set_irq */
};

/* Registers 0x60, 0x64 and 0x92. Returns 0, -EINVAL, -ENOMEM or the dev_bus error (after
 * which the bus may hold ranges of the discarded device: discard the bus too). */
int i8042_create(const struct i8042_config *cfg, struct i8042 **out);
/* After the VM stopped dispatching to the bus. */
void i8042_destroy(struct i8042 *k);
/* Power-on state (queue empty, interrupts lowered). */
void i8042_reset(struct i8042 *k);

#endif
