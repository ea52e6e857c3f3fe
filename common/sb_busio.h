/*
 * sb_busio: the NATS socket read and written by a loop of ours instead of libnats'
 * reader and flusher threads (libnats' external event loop API).
 *
 * Why: libnats' flusher waits 1 ms after a publish before it writes (so that more
 * publishes share the write), on every hop, and each message crossed three threads
 * (reader, flusher, ours); on this project's 2-core VM a thread switch costs more than
 * the message. Here the socket sits in an epoll set of its own; libnats asks for
 * read/write interest through callbacks that only call epoll_ctl (safe from any
 * thread: libnats calls them from the publisher, its ping timer or its reconnect
 * thread), and whoever polls the set runs the I/O:
 *   - the gateway polls it from its lws loop (the set is one raw file to lws), so a
 *     publish made on the loop is written on the loop's next turn, batched with every
 *     other publish of that turn;
 *   - a service without a loop starts sb_busio_start_thread: one thread does both
 *     directions.
 * Publishes are "send as soon as possible" (natsOptions_SetSendAsap): they append to
 * libnats' buffer and ask for write interest; nothing waits for a timer.
 * Messages for async subscriptions are still handed to libnats' delivery threads.
 * libnats' detach (its close) waits for a dispatch in progress, so
 * natsConnection_Destroy may run while another thread dispatches: the connection is
 * never used after its detach. A reconnect does not detach: libnats closes the old
 * socket itself and attaches the new one.
 */
#ifndef SB_BUSIO_H
#define SB_BUSIO_H

#include <nats/nats.h>

struct sb_busio;

/* The epoll set. 0 and *out set, or -1 (errno). */
int sb_busio_create(struct sb_busio **out);

/* Stop the thread (if started) and close the set. Call after the connection is
 * destroyed. NULL is a no-op. */
void sb_busio_destroy(struct sb_busio *io);

/* Make a connection's options use io (event loop callbacks, send-asap). */
natsStatus sb_busio_configure(struct sb_busio *io, natsOptions *opts);

/* The epoll descriptor, readable when the bus socket has work: for a foreign loop to
 * watch (it must not close it; give it a dup() when the loop closes what it watches). */
int sb_busio_fd(const struct sb_busio *io);

/*
 * 1 while libnats has a connected socket attached; 0 before the first connect and
 * from a disconnect until the reconnect attaches the new socket. In between, libnats'
 * reconnect thread holds the connection's lock through each attempt (TCP connect,
 * INFO, CONNECT and PONG: up to the connect timeout, 2 s, against a server that
 * accepts and does not answer), so every call into the connection -- a publish, a
 * subscribe, its status or statistics -- waits that long. A loop that must not block
 * asks this first. Any thread.
 */
int sb_busio_up(struct sb_busio *io);

/* Run the bus socket's ready reads and writes, waiting at most timeout_ms (0: do not
 * wait) for the first. One thread at a time: the loop that polls sb_busio_fd, or the
 * thread of sb_busio_start_thread. Returns how many rounds found work. */
int sb_busio_dispatch(struct sb_busio *io, int timeout_ms);

/*
 * The calling thread owns io from now on: publishes it makes no longer ask the epoll
 * set for write interest (two epoll_ctl and a wake-up per turn); they wait in libnats'
 * buffer until the thread calls sb_busio_flush, which it must do before it sleeps and
 * whenever what it published should leave. Publishes of other threads (libnats' ping
 * timer, its reconnect thread) still ask the set. One owned set per thread.
 */
void sb_busio_own(struct sb_busio *io);

/* Owner thread: write what its publishes left in libnats' buffer (one send); what the
 * kernel does not take waits for EPOLLOUT as usual. */
void sb_busio_flush(struct sb_busio *io);

/*
 * The dispatching thread, now and then (the gateway: once a second): if libnats holds
 * bytes to write on a connected socket while the set does not ask for EPOLLOUT, write
 * them now (libnats sends nothing else until a write event). 1 when it had to, else 0.
 * A safety net with a count: it should not fire, bar the instant of a reconnect between
 * libnats queueing the resent subscriptions and asking for write interest.
 */
int sb_busio_unstall(struct sb_busio *io);

/* Dispatch on a thread of io's own from now on (services without a loop, and the
 * gateway after its loop has stopped, to flush and close). 0, or -1. */
int sb_busio_start_thread(struct sb_busio *io);

#endif
