/*
 * sb_busio: libnats' external event loop on an epoll set of our own, see sb_busio.h.
 */
#include "sb_busio.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "sb_log.h"

/* Reads per dispatch: libnats reads at most 32 KiB per call and the epoll set is
 * level-triggered, so a busy socket is read again on the loop's next turn; the bound
 * keeps one burst from starving the loop's other sockets. */
#define BUSIO_ROUNDS 8

struct sb_busio {
	int epfd;
	_Atomic(natsConnection *) nc;
	_Atomic int fd;       /* the attached socket, -1 while none */
	_Atomic int reads;    /* libnats wants read events: connected (sb_busio_up) */
	_Atomic int writes;   /* libnats has buffered data to write */
	_Atomic int deferred; /* the owner writes it in sb_busio_flush, no EPOLLOUT needed */
	pthread_mutex_t mu;   /* serialises epoll_ctl and `registered` */
	/* Held (recursively: libnats may close, and so detach, from inside a read) while a
	 * thread runs libnats' I/O on nc, and by on_detach: natsConnection_Destroy frees nc
	 * right after the detach, so no dispatch may still be on its way into it. */
	pthread_mutex_t io_mu;
	unsigned registered; /* the events the set holds for fd */
	pthread_t thread;
	int thread_started;
	_Atomic int stop;
};

/* The set whose owner runs on this thread (sb_busio_own). */
static _Thread_local struct sb_busio *tl_owned;

/* Tell the epoll set what libnats wants now, if that is not what it has. */
static natsStatus update(struct sb_busio *io)
{
	natsStatus s = NATS_OK;
	pthread_mutex_lock(&io->mu);
	int fd = atomic_load(&io->fd);
	unsigned want = (atomic_load(&io->reads) ? EPOLLIN : 0u) |
	                (atomic_load(&io->writes) && !atomic_load(&io->deferred) ? EPOLLOUT : 0u);
	if (fd >= 0 && want != io->registered) {
		struct epoll_event ev = {.events = want, .data.fd = fd};
		if (epoll_ctl(io->epfd, EPOLL_CTL_MOD, fd, &ev) == 0) {
			io->registered = want;
		} else if (errno != EBADF && errno != ENOENT) {
			SB_ERROR("busio_epoll", "fd=%d events=%u errno=%d", fd, want, errno);
			s = NATS_ERR;
		}
		/* else the socket is gone: libnats closes it before a reconnect without a
		 * detach, and its number may belong to any descriptor by now, so it is never
		 * added here (only attach adds, the new socket) */
	}
	pthread_mutex_unlock(&io->mu);
	return s;
}

static natsStatus on_attach(void **user, void *loop, natsConnection *nc, natsSock sock)
{
	struct sb_busio *io = loop;
	*user = io;
	atomic_store(&io->nc, nc);
	pthread_mutex_lock(&io->mu);
	int old = atomic_exchange(&io->fd, (int)sock);
	if (old >= 0 && old != (int)sock)
		epoll_ctl(io->epfd, EPOLL_CTL_DEL, old, NULL); /* fails if already closed: fine */
	atomic_store(&io->reads, 1);
	atomic_store(&io->writes, 0);
	atomic_store(&io->deferred, 0);
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = (int)sock};
	int ok = epoll_ctl(io->epfd, EPOLL_CTL_ADD, (int)sock, &ev) == 0 ||
	         (errno == EEXIST && epoll_ctl(io->epfd, EPOLL_CTL_MOD, (int)sock, &ev) == 0);
	io->registered = ok ? EPOLLIN : 0u;
	pthread_mutex_unlock(&io->mu);
	if (!ok) {
		SB_ERROR("busio_attach", "fd=%d errno=%d", (int)sock, errno);
		return NATS_ERR;
	}
	return NATS_OK;
}

static natsStatus on_read(void *user, bool add)
{
	struct sb_busio *io = user;
	atomic_store(&io->reads, add ? 1 : 0);
	return update(io);
}

static natsStatus on_write(void *user, bool add)
{
	struct sb_busio *io = user;
	atomic_store(&io->writes, add ? 1 : 0);
	if (add && tl_owned == io) {
		/* A publish on the owner's thread: the owner writes before it sleeps. */
		atomic_store(&io->deferred, 1);
		return NATS_OK;
	}
	return update(io);
}

static natsStatus on_detach(void *user)
{
	struct sb_busio *io = user;
	pthread_mutex_lock(&io->io_mu);
	atomic_store(&io->nc, NULL); /* attach sets it again on a reconnect */
	pthread_mutex_unlock(&io->io_mu);
	pthread_mutex_lock(&io->mu);
	int fd = atomic_exchange(&io->fd, -1);
	if (fd >= 0)
		epoll_ctl(io->epfd, EPOLL_CTL_DEL, fd, NULL);
	io->registered = 0;
	atomic_store(&io->reads, 0);
	atomic_store(&io->writes, 0);
	atomic_store(&io->deferred, 0);
	pthread_mutex_unlock(&io->mu);
	return NATS_OK;
}

int sb_busio_create(struct sb_busio **out)
{
	struct sb_busio *io = calloc(1, sizeof *io);
	if (!io)
		return -1;
	io->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (io->epfd < 0) {
		free(io);
		return -1;
	}
	pthread_mutexattr_t attr;
	if (pthread_mutexattr_init(&attr) != 0) {
		close(io->epfd);
		free(io);
		return -1;
	}
	int ok = pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE) == 0 &&
	         pthread_mutex_init(&io->io_mu, &attr) == 0;
	pthread_mutexattr_destroy(&attr);
	if (!ok) {
		close(io->epfd);
		free(io);
		return -1;
	}
	if (pthread_mutex_init(&io->mu, NULL) != 0) {
		pthread_mutex_destroy(&io->io_mu);
		close(io->epfd);
		free(io);
		return -1;
	}
	atomic_init(&io->fd, -1);
	*out = io;
	return 0;
}

natsStatus sb_busio_configure(struct sb_busio *io, natsOptions *opts)
{
	natsStatus s = natsOptions_SetEventLoop(opts, io, on_attach, on_read, on_write, on_detach);
	if (s == NATS_OK)
		s = natsOptions_SetSendAsap(opts, true);
	return s;
}

int sb_busio_fd(const struct sb_busio *io)
{
	return io->epfd;
}

/* An event (a hang-up: the set asks for nothing else now) on the socket libnats
 * dropped at a disconnect. libnats is reconnecting with its connection locked, so the
 * event is not handed in, where it would wait for the lock; the socket leaves the set
 * instead (a hang-up is reported until then), and the reconnect's attach adds the new
 * one. */
static void forget_dead_socket(struct sb_busio *io, int fd)
{
	pthread_mutex_lock(&io->mu);
	if (fd == atomic_load(&io->fd) && !atomic_load(&io->reads)) {
		/* Fails harmlessly if libnats closed it meanwhile (the number may be a new
		 * socket's by now, whose registration this is not). */
		epoll_ctl(io->epfd, EPOLL_CTL_DEL, fd, NULL);
		io->registered = 0;
	}
	pthread_mutex_unlock(&io->mu);
}

int sb_busio_up(struct sb_busio *io)
{
	return atomic_load(&io->reads);
}

int sb_busio_dispatch(struct sb_busio *io, int timeout_ms)
{
	int worked = 0;
	for (int round = 0; round < BUSIO_ROUNDS; round++) {
		struct epoll_event ev[2];
		int n = epoll_wait(io->epfd, ev, 2, round ? 0 : timeout_ms);
		if (n <= 0)
			break;
		pthread_mutex_lock(&io->io_mu);
		for (int i = 0; i < n; i++) {
			/* Looked up afresh: a read may have closed the connection (detach). */
			natsConnection *nc = atomic_load(&io->nc);
			if (!nc || ev[i].data.fd != atomic_load(&io->fd))
				continue; /* closed, or a socket libnats has already replaced */
			if (!atomic_load(&io->reads)) {
				forget_dead_socket(io, ev[i].data.fd);
				continue;
			}
			/* Write first: a reply queued by the last read goes out in this turn. */
			if (ev[i].events & EPOLLOUT)
				natsConnection_ProcessWriteEvent(nc);
			if (ev[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
				natsConnection_ProcessReadEvent(nc);
		}
		pthread_mutex_unlock(&io->io_mu);
		worked++;
	}
	return worked;
}

int sb_busio_unstall(struct sb_busio *io)
{
	if (atomic_load(&io->deferred) || !atomic_load(&io->reads))
		return 0; /* the owner writes it before it sleeps; or no socket to write to */
	int stalled = 0;
	pthread_mutex_lock(&io->io_mu);
	natsConnection *nc = atomic_load(&io->nc);
	/* Read after libnats' lock: a publish asks for write interest under that lock, so a
	 * set without EPOLLOUT here is not one about to get it. */
	if (nc && natsConnection_Status(nc) == NATS_CONN_STATUS_CONNECTED &&
	    natsConnection_Buffered(nc) > 0) {
		pthread_mutex_lock(&io->mu);
		stalled = !(io->registered & EPOLLOUT);
		pthread_mutex_unlock(&io->mu);
		if (stalled)
			natsConnection_ProcessWriteEvent(nc);
	}
	pthread_mutex_unlock(&io->io_mu);
	return stalled;
}

static void *pump(void *arg)
{
	struct sb_busio *io = arg;
	while (!atomic_load(&io->stop))
		sb_busio_dispatch(io, 100);
	return NULL;
}

int sb_busio_start_thread(struct sb_busio *io)
{
	if (io->thread_started)
		return 0;
	/* What an owner left unflushed is the new thread's to write. */
	atomic_store(&io->deferred, 0);
	update(io);
	if (pthread_create(&io->thread, NULL, pump, io) != 0)
		return -1;
	io->thread_started = 1;
	return 0;
}

void sb_busio_destroy(struct sb_busio *io)
{
	if (!io)
		return;
	if (io->thread_started) {
		atomic_store(&io->stop, 1);
		pthread_join(io->thread, NULL);
	}
	if (tl_owned == io)
		tl_owned = NULL;
	pthread_mutex_destroy(&io->io_mu);
	pthread_mutex_destroy(&io->mu);
	close(io->epfd);
	free(io);
}

void sb_busio_own(struct sb_busio *io)
{
	tl_owned = io;
}

void sb_busio_flush(struct sb_busio *io)
{
	if (!atomic_exchange(&io->deferred, 0))
		return;
	pthread_mutex_lock(&io->io_mu);
	natsConnection *nc = atomic_load(&io->nc);
	if (nc)
		natsConnection_ProcessWriteEvent(nc);
	pthread_mutex_unlock(&io->io_mu);
	/* A write the kernel took only in part: the rest waits for EPOLLOUT now. */
	update(io);
}
