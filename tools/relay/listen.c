/*
 * listen: the shared (SO_REUSEPORT) listening socket, accepted by hand and adopted
 * into lws (see listen.h for why lws cannot do it itself).
 */
#include "listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sb_log.h"

#define ACCEPTS_PER_WAKEUP 64 /* then yield to the other sockets */
#define BACKLOG            4096

int relay_listen_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                          size_t len)
{
	(void)user;
	(void)in;
	(void)len;
	if (reason != LWS_CALLBACK_RAW_RX_FILE)
		return 0;
	int lfd = (int)(intptr_t)lws_get_socket_fd(wsi);
	struct lws_vhost *vh = lws_get_vhost(wsi);
	for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED)
				SB_WARN("accept_failed", "errno=%d error=\"%s\"", errno,
				        strerror(errno));
			break;
		}
		/* on failure lws closes fd itself */
		lws_adopt_socket_vhost(vh, fd);
	}
	return 0;
}

int relay_listen_shared(struct lws_context *ctx, const char *host, int port)
{
	struct sockaddr_in sa;
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, *host ? host : "0.0.0.0", &sa.sin_addr) != 1) {
		SB_ERROR("listen_failed", "msg=\"not an IPv4 address\" host=%s", host);
		return -1;
	}
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, BACKLOG) < 0) {
		SB_ERROR("listen_failed", "port=%d errno=%d error=\"%s\"", port, errno,
		         strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	struct lws_vhost *vh = lws_get_vhost_by_name(ctx, "default");
	lws_sock_file_fd_type u;
	u.filefd = fd;
	if (!vh || !lws_adopt_descriptor_vhost(vh, LWS_ADOPT_RAW_FILE_DESC, u,
	                                       RELAY_LISTEN_PROTOCOL, NULL)) {
		SB_ERROR("listen_failed", "msg=\"lws did not adopt the listening socket\"");
		return -1;
	}
	return 0;
}
