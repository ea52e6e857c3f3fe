/*
 * sb_msgbin: see sb_msgbin.h.
 */
#include "sb_msgbin.h"

void sb_msgbin_empty(struct sb_msgbin *bin)
{
	for (int i = 0; i < bin->n; i++)
		natsMsg_Destroy(bin->msgs[i]);
	bin->n = 0;
	bin->bytes = 0;
}

void sb_msgbin_put(struct sb_msgbin *bin, natsMsg *msg)
{
	if (!msg)
		return;
	bin->msgs[bin->n++] = msg;
	bin->bytes += (size_t)natsMsg_GetDataLength(msg);
	if (bin->n == SB_MSGBIN_COUNT || bin->bytes >= SB_MSGBIN_BYTES)
		sb_msgbin_empty(bin);
}
