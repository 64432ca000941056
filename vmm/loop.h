/* A small epoll event loop on its own thread for the VMM's work that is not a vCPU's: disk
 * queue completions (vdisk_queue_event_fd + vdisk_queue_poll), serial input, timers (a
 * timerfd). Callbacks run on the loop thread, one at a time; an fd is watched for input
 * (level-triggered), so a callback must consume what made it readable.
 */
#ifndef HV_VMM_LOOP_H
#define HV_VMM_LOOP_H

#define EVENT_LOOP_MAX_FDS 64

struct event_loop;

int event_loop_create(struct event_loop **out);
/* Stops the thread if it runs; the watched fds are not closed (they belong to the callers). */
void event_loop_destroy(struct event_loop *loop);

/* Watches fd; -EEXIST when it is already watched, -ENOSPC past EVENT_LOOP_MAX_FDS. May be
 * called from any thread, also from a callback. */
int event_loop_add_fd(struct event_loop *loop, int fd, void (*cb)(void *opaque), void *opaque);
/* Stops watching fd. When it returns, fd's callback is not running and will not run again
 * (from inside that callback itself, it returns at once). -ENOENT when fd is not watched. */
int event_loop_remove_fd(struct event_loop *loop, int fd);

/* Starts the loop thread (-EBUSY when it runs); event_loop_stop returns after it ended. */
int event_loop_start(struct event_loop *loop);
void event_loop_stop(struct event_loop *loop);

#endif
