/* A 16550A UART (COM1: GEN1_COM1_BASE, IRQ GEN1_COM1_IRQ) and the backends that carry its
 * bytes to and from the host.
 *
 * The UART: every register (RBR/THR, IER, IIR with the FIFO bits, FCR, LCR with DLAB and the
 * divisor latch, MCR with loopback, LSR, MSR, SCR), a 16-byte receive FIFO (one byte with
 * FIFOs off) with trigger levels, interrupts by priority (line status, received data or
 * timeout, transmitter empty, modem status), the IRQ gated by MCR OUT2 as on a PC board.
 * Transmission is immediate: THR is empty again at once (LSR THRE and TEMT always set), so
 * each write re-arms the THRE interrupt. In loopback mode the byte goes to the receive FIFO
 * (a full FIFO sets OE) and the modem inputs follow MCR. Outside loopback the modem inputs
 * read CTS, DSR and DCD set. Baud rate and line format are stored and have no effect.
 *
 * A backend runs one thread that moves bytes between the host and the UART: output goes
 * through a 64 KiB ring, so a vCPU never waits on a slow reader (bytes that do not fit are
 * dropped and counted); input is read only while the UART has room (nothing is dropped on
 * the way in, the reader is just not read). Backends:
 *   "stdio"      input from fd 0, output to fd 1
 *   "file:PATH"  output to PATH (created or truncated), no input
 *   "unix:PATH"  listens on a Unix socket at PATH; one client at a time (later ones are
 *                closed at once while one is connected); input from and output to it;
 *                output waits in the ring while nobody is connected
 *   "none"       no backend (output discarded, no input)
 * Terminal settings (raw mode for an interactive stdin) are the caller's business.
 */
#ifndef HV_SERIAL_H
#define HV_SERIAL_H

#include <stddef.h>
#include <stdint.h>

#include "dev.h"

/* ---- backends ---- */

struct serial_backend;

/* Opens a backend by its description (above). "none" gives *out = NULL. Returns 0,
 * -EINVAL (unknown description), or the error of open/socket/bind/listen/thread creation. */
int serial_backend_open(const char *spec, struct serial_backend **out);
/* A backend on file descriptors the caller keeps (either may be -1). */
int serial_backend_open_fds(int in_fd, int out_fd, struct serial_backend **out);
/* Stops the thread, writes out what is still in the ring while the output takes it (a
 * reader that takes nothing for 100 ms loses the rest), closes what the backend opened and
 * removes its socket. */
void serial_backend_close(struct serial_backend *b);

/* Queues bytes for output without blocking. Returns how many were queued; the rest are
 * dropped and counted. Thread-safe. */
size_t serial_backend_write(struct serial_backend *b, const void *buf, size_t len);

/* Where input goes: receive returns how many bytes it took; when it takes fewer than
 * offered, the backend keeps the rest and offers them again after input_ready. NULL
 * detaches (and waits for a delivery in progress to finish). */
void serial_backend_set_receiver(struct serial_backend *b,
				 size_t (*receive)(void *opaque, const uint8_t *buf, size_t len),
				 void *opaque);
void serial_backend_input_ready(struct serial_backend *b);

struct serial_backend_stats {
	uint64_t output_bytes;	 /* written to the host */
	uint64_t output_dropped; /* did not fit in the ring */
	uint64_t input_bytes;	 /* delivered to the receiver */
};
void serial_backend_get_stats(struct serial_backend *b, struct serial_backend_stats *out);

/* ---- the UART ---- */

struct serial;

struct serial_config {
	struct dev_bus *bus;
	uint16_t base;			/* 8 ports, e.g. GEN1_COM1_BASE */
	struct irq_line irq;		/* e.g. GEN1_COM1_IRQ */
	struct serial_backend *backend; /* may be NULL; stays the caller's */
};

/* Registers the ports and becomes the backend's receiver. Returns 0, -EINVAL, -ENOMEM or
 * the dev_bus error. */
int serial_create(const struct serial_config *cfg, struct serial **out);
/* Detaches from the backend; after the VM stopped dispatching to the bus. */
void serial_destroy(struct serial *s);
/* Power-on register values; the receive FIFO emptied. */
void serial_reset(struct serial *s);

/* Bytes arriving on the line (thread-safe). Returns how many fit in the receive FIFO. */
size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len);

#endif
