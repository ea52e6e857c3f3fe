/*
 * sb_msg: free a received NATS message now, on the calling thread.
 *
 * libnats 3.4's natsMsg_Destroy does not free: it queues the message for the library's
 * garbage-collector thread and signals it whenever that thread is waiting. The thread
 * frees one short list and waits again, so a loop that destroys a message per request
 * wakes it about once per message, and the two contend for its mutex and malloc's
 * arena lock (batching the destroys did not change that: the thread wakes on the
 * first of a batch). natsMsg_Destroy ends in natsMsg_free, which libnats 3.4 exports
 * without declaring it; sb_msg_free calls it directly when the build found it
 * (SB_HAVE_NATSMSG_FREE), else natsMsg_Destroy.
 *
 * Only for messages of core subscriptions and request replies, which the application
 * owns outright: JetStream may mark a message "no destroy" while its callback runs, and
 * only natsMsg_Destroy honours that flag.
 */
#ifndef SB_MSG_H
#define SB_MSG_H

#include <nats/nats.h>

/* Free msg (NULL is a no-op). */
void sb_msg_free(natsMsg *msg);

/* 1 when sb_msg_free frees on the calling thread, 0 when it falls back to the collector. */
int sb_msg_free_is_direct(void);

#endif
