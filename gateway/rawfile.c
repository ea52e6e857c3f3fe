/*
 * rawfile: descriptors adopted into the lws loop as raw files, see rawfile.h.
 */
#include "rawfile.h"

struct lws *gw_rawfile_adopt(struct gw *gw, int fd, const char *protocol)
{
	lws_sock_file_fd_type u;
	u.filefd = fd;
	return lws_adopt_descriptor_vhost(gw->vhost, LWS_ADOPT_RAW_FILE_DESC, u, protocol, NULL);
}

int gw_rawfile_other(enum lws_callback_reasons reason)
{
	switch (reason) {
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
