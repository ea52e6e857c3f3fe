/*
 * busloop: the NATS socket on the lws loop, see busloop.h.
 */
#include "busloop.h"

#include <unistd.h>

#include "sb_busio.h"
#include "sb_log.h"

int gw_busloop_create(struct gw *gw)
{
	return sb_busio_create(&gw->busio);
}

int gw_busloop_attach(struct gw *gw)
{
	/* lws closes what it adopts: it gets a duplicate of the set's descriptor. */
	lws_sock_file_fd_type u;
	u.filefd = dup(sb_busio_fd(gw->busio));
	if (u.filefd < 0)
		return -1;
	gw->busio_wsi =
	    lws_adopt_descriptor_vhost(gw->vhost, LWS_ADOPT_RAW_FILE_DESC, u, "sb-busio", NULL);
	if (!gw->busio_wsi) {
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
		return 0;
	case LWS_CALLBACK_RAW_CLOSE_FILE:
		gw->busio_wsi = NULL;
		return 0;
	/* This protocol only watches the epoll set: a client naming it as its
	 * subprotocol must not get anything from it. */
	case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
	case LWS_CALLBACK_FILTER_HTTP_CONNECTION:
	case LWS_CALLBACK_HTTP:
	case LWS_CALLBACK_ESTABLISHED:
	case LWS_CALLBACK_RECEIVE:
		return -1;
	default:
		return 0;
	}
}
