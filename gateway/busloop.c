/*
 * busloop: the NATS socket on the lws loop, see busloop.h.
 */
#include "busloop.h"

#include <unistd.h>

#include "handoff.h"
#include "rawfile.h"
#include "sb_busio.h"
#include "sb_log.h"

int gw_busloop_create(struct gw *gw)
{
	return sb_busio_create(&gw->busio);
}

int gw_busloop_attach(struct gw *gw)
{
	/* lws closes what it adopts: it gets a duplicate of the set's descriptor. */
	int fd = dup(sb_busio_fd(gw->busio));
	if (fd < 0)
		return -1;
	if (!gw_rawfile_adopt(gw, fd, "sb-busio")) {
		SB_ERROR("busio_adopt", NULL);
		return -1;
	}
	return 0;
}

void gw_busloop_detach(struct gw *gw)
{
	if (gw->busio && sb_busio_start_thread(gw->busio) < 0)
		SB_ERROR("busio_thread", NULL);
}

void gw_busloop_destroy(struct gw *gw)
{
	sb_busio_destroy(gw->busio);
	gw->busio = NULL;
}

int gw_busloop_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len)
{
	(void)user;
	(void)in;
	(void)len;
	struct gw *gw = lws_context_user(lws_get_context(wsi));
	switch (reason) {
	case LWS_CALLBACK_RAW_RX_FILE:
		sb_busio_dispatch(gw->busio, 0);
		gw_handoff_poll_replies(gw);
		return 0;
	default:
		return gw_rawfile_other(reason);
	}
}
