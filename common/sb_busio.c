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
	_Atomic int fd;     /* the attached socket, -1 while none */
	_Atomic int reads;  /* libnats wants read events */
	_Atomic int writes; /* libnats has buffered data to write */
	pthread_t thread;
	int thread_started;
	_Atomic int stop;
};

/* Tell the epoll set what libnats wants now. Callers hold libnats' connection lock, so
 * calls for one connection never overlap. */
static natsStatus update(struct sb_busio *io)
{
	int fd = atomic_load(&io->fd);
	if (fd < 0)
		return NATS_OK;
	struct epoll_event ev = {0};
	ev.events =
	    (atomic_load(&io->reads) ? EPOLLIN : 0u) | (atomic_load(&io->writes) ? EPOLLOUT : 0u);
	ev.data.fd = fd;
	if (epoll_ctl(io->epfd, EPOLL_CTL_MOD, fd, &ev) == 0)
		return NATS_OK;
	if (errno == ENOENT && epoll_ctl(io->epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
		return NATS_OK;
	/* The socket is gone (closed for a reconnect): the next attach brings a new one. */
	return errno == EBADF || errno == ENOENT ? NATS_OK : NATS_ERR;
}

static natsStatus on_attach(void **user, void *loop, natsConnection *nc, natsSock sock)
{
	struct sb_busio *io = loop;
	*user = io;
	atomic_store(&io->nc, nc);
	int old = atomic_exchange(&io->fd, (int)sock);
	if (old >= 0 && old != (int)sock)
		epoll_ctl(io->epfd, EPOLL_CTL_DEL, old, NULL); /* fails if already closed: fine */
	atomic_store(&io->reads, 1);
	atomic_store(&io->writes, 0);
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = (int)sock};
	if (epoll_ctl(io->epfd, EPOLL_CTL_ADD, (int)sock, &ev) < 0 &&
	    (errno != EEXIST || epoll_ctl(io->epfd, EPOLL_CTL_MOD, (int)sock, &ev) < 0)) {
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
	return update(io);
}

static natsStatus on_detach(void *user)
{
	struct sb_busio *io = user;
	int fd = atomic_exchange(&io->fd, -1);
	if (fd >= 0)
		epoll_ctl(io->epfd, EPOLL_CTL_DEL, fd, NULL);
	atomic_store(&io->reads, 0);
	atomic_store(&io->writes, 0);
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

int sb_busio_dispatch(struct sb_busio *io, int timeout_ms)
{
	int worked = 0;
	for (int round = 0; round < BUSIO_ROUNDS; round++) {
		struct epoll_event ev[2];
		int n = epoll_wait(io->epfd, ev, 2, round ? 0 : timeout_ms);
		if (n <= 0)
			break;
		natsConnection *nc = atomic_load(&io->nc);
		for (int i = 0; i < n && nc; i++) {
			if (ev[i].data.fd != atomic_load(&io->fd))
				continue; /* a socket libnats has already replaced */
			/* Write first: a reply queued by the last read goes out in this turn. */
			if (ev[i].events & EPOLLOUT)
				natsConnection_ProcessWriteEvent(nc);
			if (ev[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
				natsConnection_ProcessReadEvent(nc);
		}
		worked++;
	}
	return worked;
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
	close(io->epfd);
	free(io);
}
