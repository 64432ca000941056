/* The event loop: epoll over the watched fds plus an eventfd that wakes the thread to stop.
 * Each watch carries a generation in its epoll data, so an event already returned for an fd
 * that was removed (or whose slot was reused) in the meantime is recognised and skipped.
 */
#include "loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define WAKE_TOKEN UINT64_MAX
#define NO_SLOT	   (-1)

struct watch {
	int fd;
	void (*cb)(void *opaque);
	void *opaque;
	uint32_t gen;
	bool used;
};

struct event_loop {
	int epfd, wake_fd;
	pthread_mutex_t lock;
	pthread_cond_t idle; /* signalled when a callback returns */
	struct watch watches[EVENT_LOOP_MAX_FDS];
	int running_slot; /* whose callback runs now, or NO_SLOT */
	pthread_t thread;
	bool started, stop;
};

int event_loop_create(struct event_loop **out)
{
	struct event_loop *loop = calloc(1, sizeof(*loop));
	if (!loop)
		return -ENOMEM;
	loop->running_slot = NO_SLOT;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	loop->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = WAKE_TOKEN };
	if (loop->epfd < 0 || loop->wake_fd < 0 ||
	    epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->wake_fd, &ev) < 0) {
		int ret = -errno;
		if (loop->epfd >= 0)
			close(loop->epfd);
		if (loop->wake_fd >= 0)
			close(loop->wake_fd);
		free(loop);
		return ret;
	}
	pthread_mutex_init(&loop->lock, NULL);
	pthread_cond_init(&loop->idle, NULL);
	*out = loop;
	return 0;
}

void event_loop_destroy(struct event_loop *loop)
{
	if (!loop)
		return;
	event_loop_stop(loop);
	close(loop->epfd);
	close(loop->wake_fd);
	pthread_cond_destroy(&loop->idle);
	pthread_mutex_destroy(&loop->lock);
	free(loop);
}

static int find_watch(const struct event_loop *loop, int fd)
{
	for (int i = 0; i < EVENT_LOOP_MAX_FDS; i++)
		if (loop->watches[i].used && loop->watches[i].fd == fd)
			return i;
	return NO_SLOT;
}

int event_loop_add_fd(struct event_loop *loop, int fd, void (*cb)(void *opaque), void *opaque)
{
	if (fd < 0 || !cb)
		return -EINVAL;
	pthread_mutex_lock(&loop->lock);
	int ret = -ENOSPC;
	if (find_watch(loop, fd) != NO_SLOT) {
		ret = -EEXIST;
		goto out;
	}
	for (int i = 0; i < EVENT_LOOP_MAX_FDS; i++) {
		struct watch *w = &loop->watches[i];
		if (w->used)
			continue;
		struct epoll_event ev = { .events = EPOLLIN,
					  .data.u64 = (uint64_t)w->gen << 32 | (uint32_t)i };
		if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			ret = -errno;
			goto out;
		}
		*w = (struct watch){
			.fd = fd, .cb = cb, .opaque = opaque, .gen = w->gen, .used = true
		};
		ret = 0;
		break;
	}
out:
	pthread_mutex_unlock(&loop->lock);
	return ret;
}

static bool on_loop_thread(const struct event_loop *loop)
{
	return loop->started && pthread_equal(pthread_self(), loop->thread);
}

int event_loop_remove_fd(struct event_loop *loop, int fd)
{
	pthread_mutex_lock(&loop->lock);
	int slot = find_watch(loop, fd);
	if (slot == NO_SLOT) {
		pthread_mutex_unlock(&loop->lock);
		return -ENOENT;
	}
	epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
	loop->watches[slot].used = false;
	loop->watches[slot].gen++;
	if (!on_loop_thread(loop))
		while (loop->running_slot == slot)
			pthread_cond_wait(&loop->idle, &loop->lock);
	pthread_mutex_unlock(&loop->lock);
	return 0;
}

static void dispatch(struct event_loop *loop, uint64_t token)
{
	int slot = (int)(uint32_t)token;
	uint32_t gen = (uint32_t)(token >> 32);
	pthread_mutex_lock(&loop->lock);
	struct watch *w = slot < EVENT_LOOP_MAX_FDS ? &loop->watches[slot] : NULL;
	if (!w || !w->used || w->gen != gen) {
		pthread_mutex_unlock(&loop->lock);
		return;
	}
	void (*cb)(void *) = w->cb;
	void *opaque = w->opaque;
	loop->running_slot = slot;
	pthread_mutex_unlock(&loop->lock);
	cb(opaque);
	pthread_mutex_lock(&loop->lock);
	loop->running_slot = NO_SLOT;
	pthread_cond_broadcast(&loop->idle);
	pthread_mutex_unlock(&loop->lock);
}

static void *loop_thread(void *arg)
{
	struct event_loop *loop = arg;
	pthread_setname_np(pthread_self(), "io-loop");
	for (;;) {
		struct epoll_event events[16];
		int n = epoll_wait(loop->epfd, events, 16, -1);
		if (n < 0 && errno != EINTR)
			break;
		for (int i = 0; i < n; i++) {
			if (events[i].data.u64 != WAKE_TOKEN) {
				dispatch(loop, events[i].data.u64);
				continue;
			}
			uint64_t v;
			if (read(loop->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				return NULL;
			pthread_mutex_lock(&loop->lock);
			bool stop = loop->stop;
			pthread_mutex_unlock(&loop->lock);
			if (stop)
				return NULL;
		}
	}
	return NULL;
}

int event_loop_start(struct event_loop *loop)
{
	pthread_mutex_lock(&loop->lock);
	int ret = -EBUSY;
	if (!loop->started) {
		loop->stop = false;
		ret = -pthread_create(&loop->thread, NULL, loop_thread, loop);
		loop->started = ret == 0;
	}
	pthread_mutex_unlock(&loop->lock);
	return ret;
}

void event_loop_stop(struct event_loop *loop)
{
	pthread_mutex_lock(&loop->lock);
	bool started = loop->started;
	loop->stop = true;
	pthread_mutex_unlock(&loop->lock);
	if (!started)
		return;
	uint64_t one = 1;
	if (write(loop->wake_fd, &one, sizeof(one)) < 0) {
		/* the counter is already non-zero: the thread will wake anyway */
	}
	pthread_join(loop->thread, NULL);
	pthread_mutex_lock(&loop->lock);
	loop->started = false;
	pthread_mutex_unlock(&loop->lock);
}
