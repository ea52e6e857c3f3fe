/*
 * sb_msgbin: received NATS messages destroyed a batch at a time.
 *
 * libnats 3.4 does not free a message in natsMsg_Destroy: it queues it for its garbage
 * collector thread and wakes that thread whenever the queue was empty. A thread that
 * destroys one message per request therefore wakes another thread per request: in
 * chat-svc at 1,000 msg/s that thread made 1.7 context switches per message, 7,200
 * instead of 17,300 in 10 s with a bin. A bin belongs to one thread; it keeps at most
 * SB_MSGBIN_COUNT messages or SB_MSGBIN_BYTES of payload, then destroys them all (one
 * wake-up). The owner empties it when it stops.
 */
#ifndef SB_MSGBIN_H
#define SB_MSGBIN_H

#include <nats/nats.h>
#include <stddef.h>

#define SB_MSGBIN_COUNT 64
#define SB_MSGBIN_BYTES (256 * 1024)

struct sb_msgbin {
	natsMsg *msgs[SB_MSGBIN_COUNT];
	int n;
	size_t bytes;
};

/* Destroy everything in the bin. */
void sb_msgbin_empty(struct sb_msgbin *bin);

/* Take msg (NULL is a no-op); the bin destroys it later. */
void sb_msgbin_put(struct sb_msgbin *bin, natsMsg *msg);

#endif
