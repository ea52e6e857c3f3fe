/*
 * sb_msg: see sb_msg.h.
 */
#include "sb_msg.h"

#ifdef SB_HAVE_NATSMSG_FREE
/* Exported by libnats 3.4 (src/msg.c), not declared in nats.h. */
void natsMsg_free(void *object);
#endif

void sb_msg_free(natsMsg *msg)
{
	if (!msg)
		return;
#ifdef SB_HAVE_NATSMSG_FREE
	natsMsg_free(msg);
#else
	natsMsg_Destroy(msg);
#endif
}

int sb_msg_free_is_direct(void)
{
#ifdef SB_HAVE_NATSMSG_FREE
	return 1;
#else
	return 0;
#endif
}
