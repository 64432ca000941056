#include "serial.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "arith.h"

/* ================= backends ================= */

#define RING_SIZE     (64u << 10)
#define INPUT_CHUNK   64
#define FLUSH_WAIT_MS 100 /* how long close waits for a reader to take more output */

struct serial_backend {
	pthread_mutex_t lock; /* ring, fds, stats */
	pthread_t thread;
	bool thread_started;
	int wake_fd;
	bool stop;
	int in_fd, out_fd; /* -1: none */
	bool own_out_fd;
	int listen_fd, client_fd; /* unix: the client carries both directions */
	char *socket_path;
	uint8_t *ring;
	size_t ring_head, ring_len;
	struct serial_backend_stats stats;
	/* input: a chunk read from the host waiting for the receiver */
	pthread_mutex_t receive_lock; /* held while calling the receiver */
	size_t (*receive)(void *opaque, const uint8_t *buf, size_t len);
	void *receive_opaque;
	uint8_t pending[INPUT_CHUNK];
	size_t pending_off, pending_len;
	bool receiver_full; /* wait for input_ready before offering again */
};

static void wake(struct serial_backend *b)
{
	uint64_t one = 1;
	ssize_t n = write(b->wake_fd, &one, sizeof(one));
	(void)n; /* a full counter already means "wake up" */
}

size_t serial_backend_write(struct serial_backend *b, const void *buf, size_t len)
{
	pthread_mutex_lock(&b->lock);
	bool was_empty = b->ring_len == 0;
	size_t n = (size_t)min_u64(len, RING_SIZE - b->ring_len);
	for (size_t i = 0; i < n; i++)
		b->ring[(b->ring_head + b->ring_len + i) % RING_SIZE] = ((const uint8_t *)buf)[i];
	b->ring_len += n;
	b->stats.output_dropped += len - n;
	pthread_mutex_unlock(&b->lock);
	if (was_empty && n)
		wake(b);
	return n;
}

void serial_backend_set_receiver(struct serial_backend *b,
				 size_t (*receive)(void *opaque, const uint8_t *buf, size_t len),
				 void *opaque)
{
	pthread_mutex_lock(&b->receive_lock);
	b->receive = receive;
	b->receive_opaque = opaque;
	pthread_mutex_unlock(&b->receive_lock);
	serial_backend_input_ready(b); /* held bytes go to the new receiver */
}

void serial_backend_input_ready(struct serial_backend *b)
{
	pthread_mutex_lock(&b->lock);
	b->receiver_full = false;
	pthread_mutex_unlock(&b->lock);
	wake(b);
}

void serial_backend_get_stats(struct serial_backend *b, struct serial_backend_stats *out)
{
	pthread_mutex_lock(&b->lock);
	*out = b->stats;
	pthread_mutex_unlock(&b->lock);
}

/* ---- the backend thread ---- */

static int input_fd(const struct serial_backend *b)
{
	return b->listen_fd >= 0 ? b->client_fd : b->in_fd;
}

static int output_fd(const struct serial_backend *b)
{
	return b->listen_fd >= 0 ? b->client_fd : b->out_fd;
}

/* The client went away: listen for the next one. Its unsent output stays in the ring. */
static void drop_client(struct serial_backend *b)
{
	pthread_mutex_lock(&b->lock);
	close(b->client_fd);
	b->client_fd = -1;
	b->pending_len = b->pending_off = 0;
	pthread_mutex_unlock(&b->lock);
}

static void accept_client(struct serial_backend *b)
{
	int fd = accept4(b->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	pthread_mutex_lock(&b->lock);
	bool busy = b->client_fd >= 0;
	if (!busy)
		b->client_fd = fd;
	pthread_mutex_unlock(&b->lock);
	if (busy)
		close(fd);
}

/* End of input (or an error): a socket client is dropped, a plain input is no longer read. */
static void input_ended(struct serial_backend *b)
{
	if (b->listen_fd >= 0) {
		drop_client(b);
		return;
	}
	pthread_mutex_lock(&b->lock);
	b->in_fd = -1;
	pthread_mutex_unlock(&b->lock);
}

static void read_input(struct serial_backend *b, int fd)
{
	ssize_t n = read(fd, b->pending, sizeof(b->pending));
	if (n > 0) {
		b->pending_off = 0;
		b->pending_len = (size_t)n;
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
		input_ended(b);
	}
}

static void deliver_input(struct serial_backend *b)
{
	pthread_mutex_lock(&b->receive_lock);
	size_t took = 0;
	if (b->receive)
		took = b->receive(b->receive_opaque, b->pending + b->pending_off, b->pending_len);
	pthread_mutex_unlock(&b->receive_lock);
	took = (size_t)min_u64(took, b->pending_len);
	pthread_mutex_lock(&b->lock);
	b->pending_off += took;
	b->pending_len -= took;
	b->stats.input_bytes += took;
	if (b->pending_len)
		b->receiver_full = true;
	pthread_mutex_unlock(&b->lock);
}

static void write_output(struct serial_backend *b, int fd)
{
	uint8_t chunk[4096];
	pthread_mutex_lock(&b->lock);
	size_t n = (size_t)min_u64(b->ring_len, sizeof(chunk));
	for (size_t i = 0; i < n; i++)
		chunk[i] = b->ring[(b->ring_head + i) % RING_SIZE];
	pthread_mutex_unlock(&b->lock);
	ssize_t done = write(fd, chunk, n);
	if (done < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (done <= 0) {
		if (b->listen_fd >= 0) {
			drop_client(b);
			return;
		}
		done = 0; /* the output is gone: what it cannot take is dropped */
		pthread_mutex_lock(&b->lock);
		b->out_fd = -1;
		b->stats.output_dropped += b->ring_len;
		b->ring_len = 0;
		pthread_mutex_unlock(&b->lock);
		return;
	}
	pthread_mutex_lock(&b->lock);
	b->ring_head = (b->ring_head + (size_t)done) % RING_SIZE;
	b->ring_len -= (size_t)done;
	b->stats.output_bytes += (uint64_t)done;
	pthread_mutex_unlock(&b->lock);
}

enum { WAIT_WAKE, WAIT_LISTEN, WAIT_INPUT, WAIT_OUTPUT, WAIT_COUNT };

/* What to wait for now; fds left at -1 are ignored by poll. */
static void poll_set(struct serial_backend *b, struct pollfd *p)
{
	pthread_mutex_lock(&b->lock);
	int in = input_fd(b), out = output_fd(b);
	bool want_input = in >= 0 && !b->pending_len && !b->receiver_full;
	bool want_output = out >= 0 && b->ring_len;
	pthread_mutex_unlock(&b->lock);
	p[WAIT_WAKE] = (struct pollfd){ b->wake_fd, POLLIN, 0 };
	p[WAIT_LISTEN] = (struct pollfd){ b->listen_fd, POLLIN, 0 };
	p[WAIT_INPUT] = (struct pollfd){ want_input ? in : -1, POLLIN, 0 };
	p[WAIT_OUTPUT] = (struct pollfd){ want_output ? out : -1, POLLOUT, 0 };
}

static bool should_stop(struct serial_backend *b)
{
	pthread_mutex_lock(&b->lock);
	bool stop = b->stop;
	pthread_mutex_unlock(&b->lock);
	return stop;
}

static void *backend_thread(void *opaque)
{
	struct serial_backend *b = opaque;
	sigset_t pipe_signal;
	sigemptyset(&pipe_signal);
	sigaddset(&pipe_signal, SIGPIPE); /* a vanished reader is EPIPE, not the end of the VMM */
	pthread_sigmask(SIG_BLOCK, &pipe_signal, NULL);
	while (!should_stop(b)) {
		struct pollfd p[WAIT_COUNT];
		poll_set(b, p);
		if (poll(p, WAIT_COUNT, -1) < 0)
			continue;
		if (p[WAIT_WAKE].revents) {
			uint64_t count;
			ssize_t n = read(b->wake_fd, &count, sizeof(count));
			(void)n;
		}
		if (p[WAIT_LISTEN].revents & POLLIN)
			accept_client(b);
		if (p[WAIT_INPUT].revents)
			read_input(b, p[WAIT_INPUT].fd);
		if (p[WAIT_OUTPUT].revents & (POLLOUT | POLLERR | POLLHUP))
			write_output(b, p[WAIT_OUTPUT].fd);
		bool offer = false;
		pthread_mutex_lock(&b->lock);
		offer = b->pending_len && !b->receiver_full;
		pthread_mutex_unlock(&b->lock);
		if (offer)
			deliver_input(b);
	}
	return NULL;
}

/* ---- opening ---- */

static int backend_new(int in_fd, int out_fd, struct serial_backend **out)
{
	struct serial_backend *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->in_fd = in_fd;
	b->out_fd = out_fd;
	b->listen_fd = b->client_fd = -1;
	pthread_mutex_init(&b->lock, NULL);
	pthread_mutex_init(&b->receive_lock, NULL);
	b->ring = malloc(RING_SIZE);
	b->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!b->ring || b->wake_fd < 0) {
		int ret = b->ring ? -errno : -ENOMEM;
		serial_backend_close(b);
		return ret;
	}
	*out = b;
	return 0;
}

static int backend_start(struct serial_backend *b)
{
	int ret = -pthread_create(&b->thread, NULL, backend_thread, b);
	b->thread_started = ret == 0;
	return ret;
}

int serial_backend_open_fds(int in_fd, int out_fd, struct serial_backend **out)
{
	struct serial_backend *b;
	int ret = backend_new(in_fd, out_fd, &b);
	if (ret < 0)
		return ret;
	ret = backend_start(b);
	if (ret < 0) {
		serial_backend_close(b);
		return ret;
	}
	*out = b;
	return 0;
}

static int open_file(const char *path, struct serial_backend **out)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int ret = serial_backend_open_fds(-1, fd, out);
	if (ret < 0) {
		close(fd);
		return ret;
	}
	(*out)->own_out_fd = true;
	return 0;
}

/* A socket file left by a VMM that is gone refuses connections: it may be replaced. */
static bool stale_socket(const struct sockaddr_un *addr)
{
	struct stat st;
	if (lstat(addr->sun_path, &st) < 0 || !S_ISSOCK(st.st_mode))
		return false;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	bool stale = connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) < 0 &&
		     errno == ECONNREFUSED;
	close(fd);
	return stale;
}

static int listen_unix(const char *path, int *out)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	strcpy(addr.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int ret = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
	if (ret < 0 && errno == EADDRINUSE && stale_socket(&addr) && unlink(path) == 0)
		ret = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
	if (ret == 0)
		ret = listen(fd, 1);
	if (ret < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	*out = fd;
	return 0;
}

static int open_unix(const char *path, struct serial_backend **out)
{
	struct serial_backend *b;
	int ret = backend_new(-1, -1, &b);
	if (ret < 0)
		return ret;
	ret = listen_unix(path, &b->listen_fd);
	if (ret < 0)
		goto fail;
	b->socket_path = strdup(path);
	if (!b->socket_path) {
		ret = -ENOMEM;
		goto fail;
	}
	ret = backend_start(b);
	if (ret < 0)
		goto fail;
	*out = b;
	return 0;
fail:
	serial_backend_close(b);
	return ret;
}

int serial_backend_open(const char *spec, struct serial_backend **out)
{
	if (strcmp(spec, "none") == 0) {
		*out = NULL;
		return 0;
	}
	if (strcmp(spec, "stdio") == 0)
		return serial_backend_open_fds(STDIN_FILENO, STDOUT_FILENO, out);
	if (strncmp(spec, "file:", 5) == 0 && spec[5])
		return open_file(spec + 5, out);
	if (strncmp(spec, "unix:", 5) == 0 && spec[5])
		return open_unix(spec + 5, out);
	return -EINVAL;
}

/* After the thread: what is still in the ring goes out while the output takes it (the
 * guest's last words before the VM stopped), in chunks it is ready for; a reader that
 * takes nothing for FLUSH_WAIT_MS loses the rest. */
static void flush_output(struct serial_backend *b)
{
	for (;;) {
		struct pollfd p = { output_fd(b), POLLOUT, 0 };
		size_t before = b->ring_len;
		if (p.fd < 0 || !before || poll(&p, 1, FLUSH_WAIT_MS) <= 0)
			return;
		write_output(b, p.fd);
		if (b->ring_len == before)
			return;
	}
}

void serial_backend_close(struct serial_backend *b)
{
	if (!b)
		return;
	if (b->thread_started) {
		pthread_mutex_lock(&b->lock);
		b->stop = true;
		pthread_mutex_unlock(&b->lock);
		wake(b);
		pthread_join(b->thread, NULL);
		flush_output(b);
	}
	if (b->own_out_fd)
		close(b->out_fd);
	if (b->client_fd >= 0)
		close(b->client_fd);
	if (b->listen_fd >= 0) {
		close(b->listen_fd);
		if (b->socket_path)
			unlink(b->socket_path);
	}
	if (b->wake_fd >= 0)
		close(b->wake_fd);
	free(b->socket_path);
	free(b->ring);
	pthread_mutex_destroy(&b->receive_lock);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

/* ================= the UART ================= */

#define RX_FIFO_SIZE 16

/* register offsets */
#define REG_DATA 0 /* RBR / THR; DLL with DLAB */
#define REG_IER	 1 /* DLM with DLAB */
#define REG_IIR	 2 /* FCR on write */
#define REG_LCR	 3
#define REG_MCR	 4
#define REG_LSR	 5
#define REG_MSR	 6
#define REG_SCR	 7
#define NUM_REGS 8

#define IER_RDA		0x01
#define IER_THRE	0x02
#define IER_RLS		0x04
#define IER_MSI		0x08
#define IER_WRITABLE	0x0F
#define IIR_NONE	0x01
#define IIR_MSI		0x00
#define IIR_THRE	0x02
#define IIR_RDA		0x04
#define IIR_RLS		0x06
#define IIR_TIMEOUT	0x0C
#define IIR_FIFO_ON	0xC0
#define FCR_ENABLE	0x01
#define FCR_CLEAR_RX	0x02
#define FCR_TRIGGER(v)	((v) >> 6)
#define LCR_DLAB	0x80
#define MCR_DTR		0x01
#define MCR_RTS		0x02
#define MCR_OUT1	0x04
#define MCR_OUT2	0x08
#define MCR_LOOP	0x10
#define MCR_WRITABLE	0x1F
#define LSR_DR		0x01
#define LSR_OE		0x02
#define LSR_ERRORS	0x1E /* OE, PE, FE, BI: cleared by reading LSR */
#define LSR_THRE	0x20
#define LSR_TEMT	0x40
#define MSR_DCTS	0x01
#define MSR_DDSR	0x02
#define MSR_TERI	0x04
#define MSR_DDCD	0x08
#define MSR_DELTAS	0x0F
#define MSR_CTS		0x10
#define MSR_DSR		0x20
#define MSR_RI		0x40
#define MSR_DCD		0x80
#define MSR_CONNECTED	(MSR_CTS | MSR_DSR | MSR_DCD)
#define DIVISOR_DEFAULT 0x0C /* 9600 baud */

struct serial {
	struct serial_config cfg;
	pthread_mutex_t lock;
	uint8_t rx[RX_FIFO_SIZE];
	unsigned rx_head, rx_count;
	uint8_t rbr; /* the last byte taken from the FIFO: what an empty RBR reads */
	uint8_t ier, fcr, lcr, mcr, lsr_errors, msr, scr, dll, dlm;
	bool thr_ipending; /* THR emptied and the interrupt not yet acknowledged */
	bool rx_refused;   /* the backend holds bytes that did not fit */
	bool irq_level;
};

static unsigned rx_capacity(const struct serial *s)
{
	return s->fcr & FCR_ENABLE ? RX_FIFO_SIZE : 1;
}

static unsigned rx_trigger(const struct serial *s)
{
	static const unsigned levels[4] = { 1, 4, 8, 14 };
	return s->fcr & FCR_ENABLE ? levels[FCR_TRIGGER(s->fcr)] : 1;
}

/* The highest-priority pending interrupt, as IIR reports it. */
static uint8_t pending_interrupt(const struct serial *s)
{
	if ((s->ier & IER_RLS) && s->lsr_errors)
		return IIR_RLS;
	if ((s->ier & IER_RDA) && s->rx_count)
		return s->rx_count >= rx_trigger(s) ? IIR_RDA : IIR_TIMEOUT;
	if ((s->ier & IER_THRE) && s->thr_ipending)
		return IIR_THRE;
	if ((s->ier & IER_MSI) && (s->msr & MSR_DELTAS))
		return IIR_MSI;
	return IIR_NONE;
}

static void update_irq(struct serial *s)
{
	bool level = pending_interrupt(s) != IIR_NONE && (s->mcr & MCR_OUT2);
	if (level != s->irq_level) {
		s->irq_level = level;
		irq_line_set(&s->cfg.irq, level);
	}
}

static void rx_push(struct serial *s, uint8_t v)
{
	if (s->rx_count == rx_capacity(s)) {
		s->lsr_errors |= LSR_OE;
		return;
	}
	s->rx[(s->rx_head + s->rx_count++) % RX_FIFO_SIZE] = v;
}

static void rx_clear(struct serial *s)
{
	s->rx_head = s->rx_count = 0;
}

/* Modem inputs: wired to MCR outputs in loopback, else a connected line. Changes set the
 * delta bits (TERI only when RI falls). */
static void set_modem_inputs(struct serial *s)
{
	uint8_t in = MSR_CONNECTED;
	if (s->mcr & MCR_LOOP)
		in = (uint8_t)((s->mcr & MCR_RTS ? MSR_CTS : 0) | (s->mcr & MCR_DTR ? MSR_DSR : 0) |
			       (s->mcr & MCR_OUT1 ? MSR_RI : 0) |
			       (s->mcr & MCR_OUT2 ? MSR_DCD : 0));
	uint8_t changed = (uint8_t)((s->msr ^ in) & ~MSR_DELTAS);
	uint8_t deltas =
		(uint8_t)((changed & MSR_CTS ? MSR_DCTS : 0) | (changed & MSR_DSR ? MSR_DDSR : 0) |
			  (changed & s->msr & MSR_RI ? MSR_TERI : 0) |
			  (changed & MSR_DCD ? MSR_DDCD : 0));
	s->msr = (uint8_t)(in | (s->msr & MSR_DELTAS) | deltas);
}

/* Returns true when the backend should offer its held bytes again. */
static bool read_rbr(struct serial *s, uint8_t *v)
{
	if (s->rx_count) {
		s->rbr = s->rx[s->rx_head];
		s->rx_head = (s->rx_head + 1) % RX_FIFO_SIZE;
		s->rx_count--;
	}
	*v = s->rbr;
	bool ready = s->rx_refused;
	s->rx_refused = false;
	return ready;
}

static uint8_t read_register(struct serial *s, unsigned reg, bool *input_ready)
{
	uint8_t v = 0;
	switch (reg) {
	case REG_DATA:
		if (s->lcr & LCR_DLAB)
			return s->dll;
		*input_ready = read_rbr(s, &v);
		return v;
	case REG_IER:
		return s->lcr & LCR_DLAB ? s->dlm : s->ier;
	case REG_IIR:
		v = pending_interrupt(s);
		if (v == IIR_THRE)
			s->thr_ipending = false;
		return (uint8_t)(v | (s->fcr & FCR_ENABLE ? IIR_FIFO_ON : 0));
	case REG_LCR:
		return s->lcr;
	case REG_MCR:
		return s->mcr;
	case REG_LSR:
		v = (uint8_t)(s->lsr_errors | LSR_THRE | LSR_TEMT | (s->rx_count ? LSR_DR : 0));
		s->lsr_errors = 0;
		return v;
	case REG_MSR:
		v = s->msr;
		s->msr &= (uint8_t)~MSR_DELTAS;
		return v;
	default:
		return s->scr;
	}
}

static void transmit(struct serial *s, uint8_t v)
{
	if (s->mcr & MCR_LOOP)
		rx_push(s, v);
	else if (s->cfg.backend)
		serial_backend_write(s->cfg.backend, &v, 1);
	s->thr_ipending = true; /* sent at once: THR is empty again */
}

static void write_fcr(struct serial *s, uint8_t v)
{
	if ((v ^ s->fcr) & FCR_ENABLE)
		rx_clear(s); /* switching the FIFOs on or off empties them */
	if (v & FCR_CLEAR_RX)
		rx_clear(s);
	s->fcr = v & (uint8_t)~0x06; /* the clear bits do not stick */
}

static void write_register(struct serial *s, unsigned reg, uint8_t v)
{
	switch (reg) {
	case REG_DATA:
		if (s->lcr & LCR_DLAB)
			s->dll = v;
		else
			transmit(s, v);
		break;
	case REG_IER:
		if (s->lcr & LCR_DLAB) {
			s->dlm = v;
			break;
		}
		if ((v & IER_THRE) && !(s->ier & IER_THRE))
			s->thr_ipending = true; /* THR is empty: enabling THRE interrupts at once */
		s->ier = v & IER_WRITABLE;
		break;
	case REG_IIR:
		write_fcr(s, v);
		break;
	case REG_LCR:
		s->lcr = v;
		break;
	case REG_MCR:
		s->mcr = v & MCR_WRITABLE;
		set_modem_inputs(s);
		break;
	case REG_SCR:
		s->scr = v;
		break;
	default:
		break; /* LSR and MSR are read-only */
	}
}

/* The UART is byte-wide: a wider access reaches consecutive registers. */
static uint64_t serial_read(void *opaque, uint64_t offset, unsigned size)
{
	struct serial *s = opaque;
	uint64_t v = 0;
	bool input_ready = false;
	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < size && offset + i < NUM_REGS; i++)
		v |= (uint64_t)read_register(s, (unsigned)offset + i, &input_ready) << (8 * i);
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	if (input_ready && s->cfg.backend)
		serial_backend_input_ready(s->cfg.backend);
	return v;
}

static void serial_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	struct serial *s = opaque;
	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < size && offset + i < NUM_REGS; i++)
		write_register(s, (unsigned)offset + i, (uint8_t)(value >> (8 * i)));
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

static const struct dev_ops serial_ops = { serial_read, serial_write };

size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len)
{
	pthread_mutex_lock(&s->lock);
	size_t n = (size_t)min_u64(len, rx_capacity(s) - s->rx_count);
	for (size_t i = 0; i < n; i++)
		rx_push(s, buf[i]);
	if (n < len)
		s->rx_refused = true;
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return n;
}

static size_t backend_receive(void *opaque, const uint8_t *buf, size_t len)
{
	return serial_receive(opaque, buf, len);
}

void serial_reset(struct serial *s)
{
	pthread_mutex_lock(&s->lock);
	rx_clear(s);
	s->rbr = 0;
	s->ier = s->fcr = s->lcr = s->mcr = s->lsr_errors = s->scr = 0;
	s->dll = DIVISOR_DEFAULT;
	s->dlm = 0;
	s->msr = MSR_CONNECTED;
	s->thr_ipending = false;
	bool refused = s->rx_refused;
	s->rx_refused = false;
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	if (refused && s->cfg.backend)
		serial_backend_input_ready(s->cfg.backend);
}

int serial_create(const struct serial_config *cfg, struct serial **out)
{
	if (!cfg->bus)
		return -EINVAL;
	struct serial *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->cfg = *cfg;
	pthread_mutex_init(&s->lock, NULL);
	serial_reset(s);
	int ret = dev_bus_register(cfg->bus, DEV_PIO, cfg->base, NUM_REGS, &serial_ops, s, "uart");
	if (ret < 0) {
		pthread_mutex_destroy(&s->lock);
		free(s);
		return ret;
	}
	if (cfg->backend)
		serial_backend_set_receiver(cfg->backend, backend_receive, s);
	*out = s;
	return 0;
}

void serial_destroy(struct serial *s)
{
	if (!s)
		return;
	if (s->cfg.backend)
		serial_backend_set_receiver(s->cfg.backend, NULL, NULL);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
