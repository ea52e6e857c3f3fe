/*
 * preauth: the handshake, read before libwebsockets sees it.
 *
 * libwebsockets 4.1 cannot suspend a handshake while a callback waits, and a token can
 * only be judged by auth-svc, over the bus. So in plain-text mode the gateway listens
 * and accepts itself (also because Debian's lws 4.1.6 does not share a port between
 * processes with one service thread: --reuse-port sets SO_REUSEPORT here), reads each
 * request head through one epoll set that lws polls as a raw file (the listening
 * socket is in the same set), and hands the socket to lws with
 * lws_adopt_socket_vhost_readbuf once
 * decided: an HTTP request (/healthz, /metrics) at once; a WebSocket upgrade after
 * auth.verify answered, asynchronously and correlated like every other request, its
 * verdict waiting in a table by fd for HTTP_CONFIRM_UPGRADE. Refusals are answered
 * here with a complete HTTP/1.1 response and never reach lws. A head that does not
 * complete within 10 s (slowloris) gets 408.
 */
#include "preauth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <unistd.h>

#include "auth.h"
#include "quota.h"
#include "requests.h"
#include "rawfile.h"
#include "sb_log.h"
#include "sb_subjects.h"
#include "sb_util.h"
#include "users.h"
#include "timer.h"

#define HEAD_TIMEOUT_MS    10000
#define ADOPTED_TTL_MS     10000
#define ACCEPTS_PER_WAKEUP 128
#define ACCEPT_PAUSE_MS    100  /* out of descriptors: retry accepting after this */
#define LISTEN_BACKLOG     4096 /* the kernel caps it at net.core.somaxconn */

enum pre_state { PRE_READING = 1, PRE_VERIFYING, PRE_ADOPTED };

struct gw_pre {
	int fd;
	enum pre_state state;
	int64_t since_ms;
	char ip[48];
	char path[128];
	enum gw_kind kind;
	struct lws *wsi;        /* after adoption */
	struct gw_conn verdict; /* the user, once auth-svc said yes */
	size_t len;
	char buf[GW_PRE_MAX];
};

static void pre_free(struct gw *gw, struct gw_pre *p, int close_fd)
{
	if (!p)
		return;
	if (gw->pres[p->fd] == p)
		gw->pres[p->fd] = NULL;
	if (close_fd)
		close(p->fd);
	free(p->verdict.user_name);
	free(p);
}

/* Answer with a complete response and close. */
static void respond(struct gw *gw, struct gw_pre *p, int status)
{
	const char *text = status == 403   ? "Forbidden"
	                   : status == 404 ? "Not Found"
	                   : status == 408 ? "Request Timeout"
	                   : status == 429 ? "Too Many Requests"
	                   : status == 431 ? "Request Header Fields Too Large"
	                   : status == 400 ? "Bad Request"
	                                   : "Service Unavailable";
	char out[256];
	int n = snprintf(out, sizeof out,
	                 "HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: %zu\r\n"
	                 "connection: close\r\n\r\n%d %s\n",
	                 status, text, strlen(text) + 5, status, text);
	ssize_t w = write(p->fd, out, (size_t)n); /* a small head into an empty socket buffer */
	(void)w;
	epoll_ctl(gw->pre_epfd, EPOLL_CTL_DEL, p->fd, NULL);
	pre_free(gw, p, 1);
}

/* Give the connection (and its head) to lws. */
static void handover(struct gw *gw, struct gw_pre *p)
{
	int fd = p->fd;
	int plain = !p->verdict.user_id;
	epoll_ctl(gw->pre_epfd, EPOLL_CTL_DEL, fd, NULL);
	if (plain) {
		gw->pres[fd] = NULL; /* plain HTTP: nothing to claim */
	} else {
		/* lws parses the head inside the adopt call, so HTTP_CONFIRM_UPGRADE may
		 * claim the verdict before it returns. */
		p->state = PRE_ADOPTED;
		p->since_ms = sb_mono_ms();
	}
	struct lws *wsi = lws_adopt_socket_vhost_readbuf(gw->vhost, fd, p->buf, p->len);
	if (plain) {
		pre_free(gw, p, 0); /* lws owns the socket now */
		return;
	}
	if (gw->pres[fd] != p)
		return; /* claimed (and freed) during the adopt call: p is gone */
	if (!wsi)
		pre_free(gw, p, 0); /* lws closed the socket */
	else
		p->wsi = wsi; /* the head was incomplete for lws: claimed later */
}

size_t gw_preauth_header(const char *head, size_t len, const char *name, char *out, size_t size)
{
	size_t nl = strlen(name);
	const char *p = memchr(head, '\n', len);
	const char *end = head + len;
	while (p && p + 1 < end) {
		p++;
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			break;
		if ((size_t)(eol - p) > nl + 1 && !strncasecmp(p, name, nl) && p[nl] == ':') {
			const char *v = p + nl + 1;
			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			const char *ve = eol;
			while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
				ve--;
			size_t vl = (size_t)(ve - v);
			if (vl >= size)
				vl = size - 1;
			memcpy(out, v, vl);
			out[vl] = 0;
			return vl ? vl : 0;
		}
		p = eol;
	}
	return 0;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9'   ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
	                              : -1;
}

size_t gw_preauth_query_token(const char *q, size_t qlen, char *out, size_t size)
{
	const char *end = q + qlen;
	while (q < end) {
		const char *amp = memchr(q, '&', (size_t)(end - q));
		const char *pe = amp ? amp : end;
		if (pe - q > 6 && !strncmp(q, "token=", 6)) {
			size_t o = 0;
			for (const char *s = q + 6; s < pe; s++) {
				char c = *s;
				if (c == '%' && pe - s > 2 && hexval(s[1]) >= 0 &&
				    hexval(s[2]) >= 0) {
					c = (char)(hexval(s[1]) * 16 + hexval(s[2]));
					s += 2;
				} else if (c == '+') {
					c = ' ';
				}
				if (o + 1 >= size)
					return 0;
				out[o++] = c;
			}
			out[o] = 0;
			return o;
		}
		q = pe + 1;
	}
	return 0;
}

static void decide(struct gw *gw, struct gw_pre *p, size_t head_len)
{
	/* Request line: METHOD SP TARGET SP VERSION */
	const char *line_end = memchr(p->buf, '\r', head_len);
	const char *sp1 = memchr(p->buf, ' ', head_len);
	const char *sp2 =
	    sp1 && line_end ? memchr(sp1 + 1, ' ', (size_t)(line_end - sp1 - 1)) : NULL;
	if (!sp1 || !sp2) {
		handover(gw, p); /* not HTTP we understand: let lws answer it */
		return;
	}
	const char *target = sp1 + 1;
	size_t tlen = (size_t)(sp2 - target);
	const char *qmark = memchr(target, '?', tlen);
	size_t plen = qmark ? (size_t)(qmark - target) : tlen;
	if (plen >= sizeof p->path) {
		handover(gw, p);
		return;
	}
	memcpy(p->path, target, plen);
	p->path[plen] = 0;
	char upgrade[64];
	int is_upgrade = gw_preauth_header(p->buf, head_len, "upgrade", upgrade, sizeof upgrade) &&
	                 strcasestr(upgrade, "websocket") != NULL;
	p->kind = (enum gw_kind)gw_auth_endpoint(p->path);
	if (!is_upgrade || !p->kind || sp1 - p->buf != 3 || strncmp(p->buf, "GET", 3)) {
		handover(gw, p); /* plain HTTP: /healthz, /readyz, /metrics, 404s, 426 */
		return;
	}
	if (gw_quota_ip_blocked(gw, p->ip)) {
		gw->m.conns_refused_ip++;
		respond(gw, p, 429);
		return;
	}
	char origin[256];
	int has_origin = gw_preauth_header(p->buf, head_len, "origin", origin, sizeof origin) > 0;
	char token[GW_MAX_TOKEN + 1];
	size_t toklen =
	    qmark ? gw_preauth_query_token(qmark + 1, tlen - plen - 1, token, sizeof token) : 0;
	int status = gw_auth_precheck(gw, p->path, has_origin ? origin : NULL, token, toklen);
	if (status) {
		if (status == 403)
			gw_quota_ip_failed(gw, p->ip);
		respond(gw, p, status);
		return;
	}
	Sb__VerifyRequest vr = SB__VERIFY_REQUEST__INIT;
	vr.token = token;
	Sb__Envelope env = SB__ENVELOPE__INIT;
	env.body_case = SB__ENVELOPE__BODY_VERIFY_REQUEST;
	env.verify_request = &vr;
	p->state = PRE_VERIFYING;
	SB_DEBUG("preauth_verify", "fd=%d endpoint=%s", p->fd, p->path);
	int rc = gw_request_start_verify(gw, p, &env);
	memset(token, 0, sizeof token);
	if (rc < 0)
		respond(gw, p, 503);
}

void gw_preauth_on_verdict(struct gw *gw, struct gw_pre *p, const Sb__Envelope *reply)
{
	int status = gw_auth_verdict(gw, reply, p->kind, p->path, &p->verdict);
	SB_DEBUG("preauth_verdict", "fd=%d status=%d", p->fd, status);
	if (status == 0) {
		struct gw_user *u = gw_users_find(gw, p->verdict.user_id);
		if (u && gw->cfg.max_conns_per_user > 0 &&
		    u->nconns >= gw->cfg.max_conns_per_user) {
			gw->m.conns_refused_user_cap++;
			SB_INFO("refused", "reason=user_connection_cap user=%llu sockets=%d",
			        (unsigned long long)p->verdict.user_id, u->nconns);
			status = 429;
		} else if (gw->draining) {
			status = 503;
		}
	} else if (status == 403) {
		gw_quota_ip_failed(gw, p->ip);
	}
	if (status == 0)
		handover(gw, p);
	else
		respond(gw, p, status);
}

static void on_readable(struct gw *gw, int fd)
{
	struct gw_pre *p = fd >= 0 && (size_t)fd < gw->pres_cap ? gw->pres[fd] : NULL;
	if (!p || p->state != PRE_READING) {
		epoll_ctl(gw->pre_epfd, EPOLL_CTL_DEL, fd, NULL);
		return;
	}
	ssize_t n = read(fd, p->buf + p->len, sizeof p->buf - p->len);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		epoll_ctl(gw->pre_epfd, EPOLL_CTL_DEL, fd, NULL);
		pre_free(gw, p, 1);
		return;
	}
	if (n < 0)
		return;
	p->len += (size_t)n;
	const char *end = memmem(p->buf, p->len, "\r\n\r\n", 4);
	if (end) {
		decide(gw, p, (size_t)(end - p->buf) + 4);
		return;
	}
	if (p->len == sizeof p->buf)
		respond(gw, p, 431);
}

/* A new connection: read its head through the epoll set. Takes fd. */
static void pre_add(struct gw *gw, int fd, const struct sockaddr_storage *addr)
{
	if ((size_t)fd >= gw->pres_cap) {
		close(fd);
		return;
	}
	pre_free(gw, gw->pres[fd], 0); /* a stale verdict for a reused number */
	struct gw_pre *p = calloc(1, sizeof *p);
	if (!p) {
		close(fd);
		return;
	}
	p->fd = fd;
	p->state = PRE_READING;
	p->since_ms = sb_mono_ms();
	if (addr->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)addr)->sin_addr, p->ip,
		          sizeof p->ip);
	else if (addr->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)addr)->sin6_addr, p->ip,
		          sizeof p->ip);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
	if (epoll_ctl(gw->pre_epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		close(fd);
		free(p);
		return;
	}
	gw->pres[fd] = p;
}

static void resume_accepting(lws_sorted_usec_list_t *sul)
{
	struct gw *gw = lws_container_of(sul, struct gw, accept_sul);
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = gw->pre_lfd};
	if (gw->pre_lfd >= 0 && epoll_ctl(gw->pre_epfd, EPOLL_CTL_ADD, gw->pre_lfd, &ev) < 0)
		SB_ERROR("accept_resume", "error=\"%s\"", strerror(errno));
}

/* Out of descriptors: the pending connection stays in the backlog and the listening
 * socket stays readable, so leave it out of the epoll set for a moment instead of
 * waking up for it again and again. */
static void pause_accepting(struct gw *gw)
{
	epoll_ctl(gw->pre_epfd, EPOLL_CTL_DEL, gw->pre_lfd, NULL);
	gw_timer_schedule(gw, &gw->accept_sul, resume_accepting, ACCEPT_PAUSE_MS * LWS_US_PER_MS);
}

/* The listening socket is readable: accept a bounded batch, then let the loop serve
 * the sockets it already has (the rest stay in the kernel's backlog). */
static void on_accept(struct gw *gw)
{
	for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
		struct sockaddr_storage addr;
		socklen_t alen = sizeof addr;
		int fd = accept4(gw->pre_lfd, (struct sockaddr *)&addr, &alen,
		                 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE) {
				int64_t now = sb_mono_ms();
				if (now - gw->accept_warned_ms >= 1000) {
					gw->accept_warned_ms = now;
					SB_WARN("accept_failed",
					        "error=\"%s\" msg=\"out of descriptors\"",
					        strerror(errno));
				}
				pause_accepting(gw);
			} else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			           errno != ECONNABORTED) {
				SB_WARN("accept_failed", "error=\"%s\"", strerror(errno));
			}
			return;
		}
		memset((char *)&addr + alen, 0, sizeof addr - alen);
		pre_add(gw, fd, &addr);
	}
}

int gw_preauth_listen(struct gw *gw, const char *host, int port, int reuse_port)
{
	char service[16];
	snprintf(service, sizeof service, "%d", port);
	struct addrinfo hints = {.ai_family = AF_INET,
	                         .ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	const char *node = *host && strcmp(host, "0.0.0.0") ? host : NULL;
	int rc = getaddrinfo(node, service, &hints, &ai);
	if (rc != 0) {
		SB_ERROR("listen_failed", "host=%s error=\"%s\"", host, gai_strerror(rc));
		return -1;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
		SB_ERROR("listen_failed", "port=%d reuse_port=%d error=\"%s\"", port, reuse_port,
		         strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
	if (epoll_ctl(gw->pre_epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		close(fd);
		return -1;
	}
	gw->pre_lfd = fd;
	return 0;
}

int gw_preauth_claim(struct gw *gw, struct lws *wsi, struct gw_conn *out)
{
	int fd = (int)lws_get_socket_fd(wsi);
	struct gw_pre *p = fd >= 0 && (size_t)fd < gw->pres_cap ? gw->pres[fd] : NULL;
	if (!p || p->state != PRE_ADOPTED || (p->wsi && p->wsi != wsi))
		return 0;
	*out = p->verdict;
	p->verdict.user_name = NULL; /* moved */
	pre_free(gw, p, 0);
	return 1;
}

static void sweep(lws_sorted_usec_list_t *sul)
{
	struct gw *gw = lws_container_of(sul, struct gw, pre_sul);
	int64_t now = sb_mono_ms();
	for (size_t fd = 0; fd < gw->pres_cap; fd++) {
		struct gw_pre *p = gw->pres[fd];
		if (!p)
			continue;
		if (p->state == PRE_READING && now - p->since_ms > HEAD_TIMEOUT_MS)
			respond(gw, p, 408);
		else if (p->state == PRE_ADOPTED && now - p->since_ms > ADOPTED_TTL_MS)
			pre_free(gw, p, 0); /* lws owns the socket; the verdict went unclaimed */
	}
	gw_timer_schedule(gw, &gw->pre_sul, sweep, LWS_US_PER_SEC);
}

int gw_preauth_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len)
{
	(void)user;
	(void)in;
	(void)len;
	struct gw *gw = lws_context_user(lws_get_context(wsi));
	switch (reason) {
	case LWS_CALLBACK_RAW_RX_FILE: {
		struct epoll_event evs[64];
		int n;
		do {
			n = epoll_wait(gw->pre_epfd, evs, 64, 0);
			for (int i = 0; i < n; i++) {
				if (evs[i].data.fd == gw->pre_lfd)
					on_accept(gw);
				else
					on_readable(gw, evs[i].data.fd);
			}
		} while (n == 64);
		return 0;
	}
	default:
		return gw_rawfile_other(reason);
	}
}

int gw_preauth_init(struct gw *gw)
{
	gw->pre_epfd = -1;
	gw->pre_lfd = -1;
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -1;
	gw->pres_cap =
	    rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1048576 ? 1048576 : (size_t)rl.rlim_cur;
	gw->pres = calloc(gw->pres_cap, sizeof *gw->pres);
	int epfd = epoll_create1(EPOLL_CLOEXEC);
	if (!gw->pres || epfd < 0) {
		free(gw->pres);
		gw->pres = NULL;
		gw->pres_cap = 0;
		if (epfd >= 0)
			close(epfd);
		return -1;
	}
	gw->pre_epfd = epfd;
	gw->pre_wsi = gw_rawfile_adopt(gw, epfd, "sb-preauth");
	if (!gw->pre_wsi) {
		gw->pre_epfd = -1; /* lws closed it */
		free(gw->pres);
		gw->pres = NULL;
		gw->pres_cap = 0;
		return -1;
	}
	gw_timer_schedule(gw, &gw->pre_sul, sweep, LWS_US_PER_SEC);
	return 0;
}

void gw_preauth_destroy(struct gw *gw)
{
	lws_sul_cancel(&gw->pre_sul);
	lws_sul_cancel(&gw->accept_sul);
	if (gw->pre_lfd >= 0)
		close(gw->pre_lfd);
	gw->pre_lfd = -1;
	for (size_t fd = 0; fd < gw->pres_cap; fd++) {
		struct gw_pre *p = gw->pres[fd];
		if (p)
			pre_free(gw, p, p->state != PRE_ADOPTED);
	}
	free(gw->pres);
	gw->pres = NULL;
	gw->pres_cap = 0;
}
