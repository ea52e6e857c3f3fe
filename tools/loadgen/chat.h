/*
 * chat: what chat-rate and chat-max share: sender/receiver pairs, the message text,
 * and the accounting of every message from send to acknowledgement and receipt.
 *
 * Pair i is token-file users 2i (sender) and 2i+1 (receiver), each on its own chat
 * socket, both in the same worker, so one monotonic clock times the whole trip. The
 * message text is "lg RUN PAIR SEQ T_DUE T_WRITE [x...]": the run id tells this run's
 * messages from a backlog of an earlier run, PAIR and SEQ give loss, duplicates and
 * order, T_DUE (when it was due) and T_WRITE (when it was written, in nanoseconds of
 * CLOCK_MONOTONIC) the end-to-end latency, all from the received frame alone.
 * message_sent carries none of these, so acknowledgements are matched to sends in
 * order per socket (a FIFO), which is exact while the server answers one socket's
 * messages in the order it received them (Switchboard does, for one partition).
 */
#ifndef LG_CHAT_H
#define LG_CHAT_H

#include <stdint.h>

#include "lg.h"

/* One message in flight, waiting for its message_sent. */
struct lg_flight {
	uint32_t seq;
	int64_t t_ns;       /* when it was due (open loop) or written (closed loop) */
	int64_t t_write_ns; /* when it was written */
};

struct lg_pair {
	struct lg_conn *tx, *rx;
	uint64_t receiver_uid;
	uint32_t next_seq;     /* sequence number of the next message to send */
	uint32_t received_top; /* 1 + highest sequence number received */
	double phase;          /* open loop: offset of this pair's schedule, in periods */
	uint8_t *marks;        /* per sequence number: LG_M_* */
	uint32_t marks_cap;
	struct lg_flight *fifo; /* ring, fifo_cap a power of two */
	uint32_t fifo_cap, head, tail;
};

/* Parent: check pair options against the token file and size the run. */
int lg_chat_plan(struct lg_run *run);

/* Worker: pairs for connections [first, first + count) of the run. */
int lg_chat_worker_init(struct lg_worker *w, uint64_t first, uint64_t count);

/* Worker: write one message of pair p stamped t_ns (call from on_writeable). 0, or -1
 * when it could not be sent (ring full, write failed). */
int lg_chat_send(struct lg_worker *w, struct lg_pair *p, int64_t t_ns);

/* Up to max messages of pair p in one write (each its own masked frame), as a client
 * with several messages ready sends them. The number sent, or -1. */
#define LG_SEND_BATCH_BYTES (16 * 1024)
int lg_chat_send_many(struct lg_worker *w, struct lg_pair *p, int64_t t_ns, int max);

/* Worker: a frame arrived on one of the pairs' sockets. Returns the pair whose sender
 * got an answer (so closed-loop senders can send again), or NULL. */
struct lg_pair *lg_chat_on_frame(struct lg_worker *w, struct lg_conn *c, const char *data,
                                 size_t len);

/* Worker: mark the worker done once nothing is in flight after LG_PHASE_STOP. */
void lg_chat_check_done(struct lg_worker *w);

/* Worker: count lost (acknowledged, never received) and unanswered messages. */
void lg_chat_finish(struct lg_worker *w);

/* Parent: settle, run for --duration, stop, drain (bounded by --drain). */
void lg_chat_drive(struct lg_run *run);

/* Parent: the chat results (counts, rates, latencies) into out. */
void lg_chat_report(struct lg_run *run, json_t *out);

#endif
