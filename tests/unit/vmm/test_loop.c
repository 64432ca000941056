/* The event loop: callbacks run on the loop thread when their fd becomes readable, a
 * removal waits for a callback in progress (and never for itself), and the table refuses
 * duplicates and overflow. Uses eventfds; no VM. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "loop.h"

#define WAIT_STEP_US 1000
#define WAIT_STEPS   5000 /* 5 s */

struct watched {
	struct event_loop *loop;
	int fd;
	pthread_t thread; /* where the callback last ran */
	unsigned calls;	  /* atomics: read by the test thread */
	unsigned slow_us; /* the callback sleeps this long before returning */
	bool finished;	  /* set as the callback's last act */
	bool remove_self;
	int remove_ret;
};

static void on_readable(void *opaque)
{
	struct watched *w = opaque;
	uint64_t v;
	if (read(w->fd, &v, sizeof(v)) < 0)
		return;
	w->thread = pthread_self();
	__atomic_store_n(&w->finished, false, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&w->calls, 1, __ATOMIC_SEQ_CST);
	if (w->remove_self)
		w->remove_ret = event_loop_remove_fd(w->loop, w->fd);
	usleep(w->slow_us);
	__atomic_store_n(&w->finished, true, __ATOMIC_SEQ_CST);
}

static void poke(int fd)
{
	uint64_t one = 1;
	assert_int_equal(write(fd, &one, sizeof(one)), sizeof(one));
}

static bool wait_calls(struct watched *w, unsigned n)
{
	for (unsigned i = 0; i < WAIT_STEPS; i++) {
		if (__atomic_load_n(&w->calls, __ATOMIC_SEQ_CST) >= n)
			return true;
		usleep(WAIT_STEP_US);
	}
	return false;
}

static struct event_loop *started_loop(void)
{
	struct event_loop *loop;
	assert_int_equal(event_loop_create(&loop), 0);
	assert_int_equal(event_loop_start(loop), 0);
	return loop;
}

static void watch(struct event_loop *loop, struct watched *w)
{
	w->loop = loop;
	w->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_true(w->fd >= 0);
	assert_int_equal(event_loop_add_fd(loop, w->fd, on_readable, w), 0);
}

static void test_callback_runs_on_loop_thread(void **state)
{
	(void)state;
	struct event_loop *loop = started_loop();
	struct watched a = { 0 }, b = { 0 };
	watch(loop, &a);
	watch(loop, &b);
	poke(a.fd);
	assert_true(wait_calls(&a, 1));
	assert_false(pthread_equal(a.thread, pthread_self()));
	poke(b.fd);
	poke(a.fd);
	assert_true(wait_calls(&b, 1));
	assert_true(wait_calls(&a, 2));
	assert_true(pthread_equal(a.thread, b.thread));
	assert_int_equal(event_loop_start(loop), -EBUSY);
	event_loop_destroy(loop);
	close(a.fd);
	close(b.fd);
}

static void test_table_errors(void **state)
{
	(void)state;
	struct event_loop *loop;
	assert_int_equal(event_loop_create(&loop), 0);
	struct watched a = { 0 };
	watch(loop, &a);
	assert_int_equal(event_loop_add_fd(loop, a.fd, on_readable, &a), -EEXIST);
	assert_int_equal(event_loop_add_fd(loop, -1, on_readable, &a), -EINVAL);
	assert_int_equal(event_loop_add_fd(loop, a.fd + 1000, on_readable, &a), -EBADF);
	assert_int_equal(event_loop_add_fd(loop, a.fd, NULL, &a), -EINVAL);
	assert_int_equal(event_loop_remove_fd(loop, a.fd + 1000), -ENOENT);
	int fds[EVENT_LOOP_MAX_FDS];
	for (int i = 0; i < EVENT_LOOP_MAX_FDS - 1; i++) {
		fds[i] = eventfd(0, EFD_CLOEXEC);
		assert_int_equal(event_loop_add_fd(loop, fds[i], on_readable, &a), 0);
	}
	int extra = eventfd(0, EFD_CLOEXEC);
	assert_int_equal(event_loop_add_fd(loop, extra, on_readable, &a), -ENOSPC);
	/* a freed slot is usable again */
	assert_int_equal(event_loop_remove_fd(loop, fds[0]), 0);
	assert_int_equal(event_loop_add_fd(loop, extra, on_readable, &a), 0);
	event_loop_destroy(loop); /* never started: nothing to stop */
	for (int i = 0; i < EVENT_LOOP_MAX_FDS - 1; i++)
		close(fds[i]);
	close(extra);
	close(a.fd);
}

static void test_remove_waits_for_running_callback(void **state)
{
	(void)state;
	struct event_loop *loop = started_loop();
	struct watched a = { .slow_us = 200000 };
	watch(loop, &a);
	poke(a.fd);
	assert_true(wait_calls(&a, 1));
	assert_int_equal(event_loop_remove_fd(loop, a.fd), 0);
	assert_true(__atomic_load_n(&a.finished, __ATOMIC_SEQ_CST));
	/* removed: no more calls */
	poke(a.fd);
	usleep(50000);
	assert_int_equal(__atomic_load_n(&a.calls, __ATOMIC_SEQ_CST), 1);
	event_loop_destroy(loop);
	close(a.fd);
}

static void test_remove_from_own_callback(void **state)
{
	(void)state;
	struct event_loop *loop = started_loop();
	struct watched a = { .remove_self = true, .remove_ret = 1 };
	watch(loop, &a);
	poke(a.fd);
	assert_true(wait_calls(&a, 1));
	for (unsigned i = 0; i < WAIT_STEPS && !__atomic_load_n(&a.finished, __ATOMIC_SEQ_CST); i++)
		usleep(WAIT_STEP_US);
	assert_int_equal(a.remove_ret, 0);
	poke(a.fd);
	usleep(50000);
	assert_int_equal(__atomic_load_n(&a.calls, __ATOMIC_SEQ_CST), 1);
	assert_int_equal(event_loop_remove_fd(loop, a.fd), -ENOENT);
	event_loop_destroy(loop);
	close(a.fd);
}

static void test_stop_and_restart(void **state)
{
	(void)state;
	struct event_loop *loop = started_loop();
	struct watched a = { 0 };
	watch(loop, &a);
	event_loop_stop(loop);
	poke(a.fd);
	usleep(50000);
	assert_int_equal(__atomic_load_n(&a.calls, __ATOMIC_SEQ_CST), 0);
	assert_int_equal(event_loop_start(loop), 0);
	assert_true(wait_calls(&a, 1)); /* the pending event is seen after the restart */
	event_loop_destroy(loop);
	close(a.fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_callback_runs_on_loop_thread),
		cmocka_unit_test(test_table_errors),
		cmocka_unit_test(test_remove_waits_for_running_callback),
		cmocka_unit_test(test_remove_from_own_callback),
		cmocka_unit_test(test_stop_and_restart),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
