/*
 * conn: per-socket send queue, exactly-once chat delivery per socket, and close.
 *
 * "Once" (SPEC §2): chat ids increase per receiver, so a socket remembers the highest
 * id it was given (last_id) and drops anything not above it. While the backlog is
 * being replayed, live deliveries are held and released after it, so a replay racing
 * a live delivery cannot reorder or repeat a message.
 */
#include "conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "backlog.h"
#include "http.h"
#include "keepalive.h"
#include "receipts.h"
#include "render.h"
#include "requests.h"
#include "sb_log.h"

static struct gw_qnode *node_new(struct gw_buf *buf)
{
	struct gw_qnode *n = malloc(sizeof *n);
	if (!n)
		return NULL;
	gw_buf_ref(buf);
	n->buf = buf;
	n->next = NULL;
	return n;
}

static void queue_free(struct gw_qnode *n)
{
	while (n) {
		struct gw_qnode *next = n->next;
		gw_buf_unref(n->buf);
		free(n);
		n = next;
	}
}

void gw_conn_close(struct gw_conn *c, int code, const char *reason)
{
	if (c->close_code)
		return;
	c->close_code = code;
	c->close_reason = reason;
	if (c->wsi)
		lws_callback_on_writable(c->wsi);
}

void gw_conn_cut(struct gw_conn *c, int code, const char *reason)
{
	gw_conn_close(c, code, reason);
	c->close_now = 1;
	/* The close frame still waits behind what the kernel has not taken yet, which for
	 * a peer that stopped reading is forever (a slow consumer: lws holds the rest of
	 * its last write): the socket goes after a grace period either way. */
	if (c->wsi)
		lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, GW_CLOSE_GRACE_S);
}

/* A socket the loop may write to itself, outside SERVER_WRITEABLE: plain text (the
 * frames below are the bytes on the wire), open, and nothing of lws' own half-written
 * (a partial frame of lws' must finish first). */
static int direct_ok(const struct gw *gw, const struct gw_conn *c)
{
	return c->wsi && c->established && !c->close_code && !c->ping_due && !*gw->cfg.tls_cert &&
	       !lws_partial_buffered(c->wsi);
}

static int collect(struct gw *gw, struct gw_conn *c)
{
	if (gw->flush_len == gw->flush_cap) {
		size_t cap = gw->flush_cap ? gw->flush_cap * 2 : 256;
		struct gw_conn **f = realloc(gw->flush, cap * sizeof *f);
		if (!f)
			return -1;
		gw->flush = f;
		gw->flush_cap = cap;
	}
	gw->flush[gw->flush_len++] = c;
	c->flush_queued = 1;
	return 0;
}

void gw_conn_send(struct gw *gw, struct gw_conn *c, struct gw_buf *buf)
{
	if (!buf || c->close_code)
		return;
	if ((int64_t)c->q_len >= gw->cfg.max_queue) {
		gw->m.slow_consumer_closes++;
		SB_WARN("slow_consumer", "user=%llu conn=%llu queued=%zu",
		        (unsigned long long)c->user_id, (unsigned long long)c->conn_id, c->q_len);
		gw_conn_cut(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "slow consumer");
		return;
	}
	struct gw_qnode *n = node_new(buf);
	if (!n)
		return;
	if (c->q_tail)
		c->q_tail->next = n;
	else
		c->q_head = n;
	c->q_tail = n;
	c->q_len++;
	if (gw->flush_batching && direct_ok(gw, c) && (c->flush_queued || collect(gw, c) == 0))
		return; /* written at the end of the drain */
	lws_callback_on_writable(c->wsi);
}

void gw_conn_send_error(struct gw *gw, struct gw_conn *c, const char *sentence)
{
	struct gw_buf *b = gw_render_error(sentence);
	gw->m.errors_sent++;
	gw_http_count_error(gw, sentence);
	gw_conn_send(gw, c, b);
	gw_buf_unref(b);
}

void gw_conn_deliver(struct gw *gw, struct gw_conn *c, struct gw_buf *buf)
{
	if (c->syncing) {
		if ((int64_t)c->held_len >= gw->cfg.max_queue) {
			/* The backlog will carry it (it is not marked delivered yet), if one more
			 * page is fetched before the held ones go out: the last page may have been
			 * read before it was stored. */
			c->sync_again = 1;
			return;
		}
		struct gw_qnode *n = node_new(buf);
		if (!n)
			return;
		if (c->held_tail)
			c->held_tail->next = n;
		else
			c->held_head = n;
		c->held_tail = n;
		c->held_len++;
		return;
	}
	if (buf->id <= c->last_id)
		return;
	c->last_id = buf->id;
	gw_conn_send(gw, c, buf);
}

void gw_conn_end_sync(struct gw *gw, struct gw_conn *c)
{
	c->syncing = 0;
	struct gw_qnode *n = c->held_head;
	c->held_head = c->held_tail = NULL;
	c->held_len = 0;
	for (struct gw_qnode *i = n; i; i = i->next)
		gw_conn_deliver(gw, c, i->buf);
	queue_free(n);
}

/* A frame left the queue for the socket: count it and owe its receipt. */
static void account(struct gw *gw, struct gw_conn *c, const struct gw_buf *b)
{
	gw->m.frames_out++;
	if (b->kind) {
		if (b->kind == GW_CHAT)
			gw->m.chat_delivered++;
		else
			gw->m.notify_delivered++;
		uint64_t user = b->user_id ? b->user_id : c->user_id;
		if (b->kind == c->kind && user == c->user_id)
			gw_receipts_written(gw, c, b->id);
		else
			gw_receipts_add(gw, b->kind, user,
			                b->id); /* not expected; kept as it was */
	}
}

/* The header of an unmasked (server-to-client) final text frame of len bytes. */
static size_t ws_text_header(unsigned char *h, size_t len)
{
	h[0] = 0x81;
	if (len < 126) {
		h[1] = (unsigned char)len;
		return 2;
	}
	if (len < 65536) {
		h[1] = 126;
		h[2] = (unsigned char)(len >> 8);
		h[3] = (unsigned char)len;
		return 4;
	}
	h[1] = 127;
	for (int i = 0; i < 8; i++)
		h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
	return 10;
}

/* Take queued frames into out[LWS_PRE..): each keeps its own WebSocket header, so a
 * socket with a backlog (a sender's acknowledgements, a receiver's burst) costs one
 * send() per batch instead of one per frame; on this VM a send() is most of a frame's
 * cost. Returns the bytes taken; the frames go to sent[0..*n) (their references move
 * to the caller). */
static size_t fill_batch(struct gw_conn *c, unsigned char *out, struct gw_buf **sent, size_t *n)
{
	size_t used = 0;
	*n = 0;
	while (c->q_head && *n < GW_WRITE_BATCH_FRAMES &&
	       used + 10 + c->q_head->buf->len <= GW_WRITE_BATCH_BYTES) {
		struct gw_qnode *q = c->q_head;
		c->q_head = q->next;
		c->q_len--;
		struct gw_buf *b = q->buf;
		free(q);
		used += ws_text_header(out + LWS_PRE + used, b->len);
		memcpy(out + LWS_PRE + used, b->data + LWS_PRE, b->len);
		used += b->len;
		sent[(*n)++] = b;
	}
	if (!c->q_head)
		c->q_tail = NULL;
	return used;
}

static void settle(struct gw *gw, struct gw_conn *c, struct gw_buf **sent, size_t n, int ok)
{
	for (size_t i = 0; i < n; i++) {
		if (ok)
			account(gw, c, sent[i]);
		gw_buf_unref(sent[i]);
	}
}

/* loop thread only: a batch of frames and the probe behind it */
static unsigned char batch_out[LWS_PRE + GW_WRITE_BATCH_BYTES + GW_PROBE_FRAME_BYTES];

/* fill_batch, then the delivery probe behind the frames when one is owed. */
static size_t fill_batch_probed(struct gw *gw, struct gw_conn *c, struct gw_buf **sent, size_t *n,
                                int *probed)
{
	size_t used = fill_batch(c, batch_out, sent, n);
	size_t p = gw_receipts_probe_append(gw, c, batch_out + LWS_PRE + used);
	*probed = p > 0;
	return used + p;
}

static void settle_probed(struct gw *gw, struct gw_conn *c, struct gw_buf **sent, size_t n, int ok,
                          int probed)
{
	settle(gw, c, sent, n, ok);
	if (probed)
		gw_receipts_probe_sent(gw, c);
}

static int write_batch(struct gw *gw, struct gw_conn *c)
{
	struct gw_buf *sent[GW_WRITE_BATCH_FRAMES];
	size_t n;
	int probed;
	size_t used = fill_batch_probed(gw, c, sent, &n, &probed);
	int w = lws_write(c->wsi, batch_out + LWS_PRE, used, LWS_WRITE_RAW);
	settle_probed(gw, c, sent, n, w >= (int)used, probed);
	return w < (int)used ? -1 : 0;
}

/* Write c's queue with send() from the loop, without waiting for POLLOUT: for a
 * broadcast to 20,000 sockets, lws' way (ask for POLLOUT, wait for it, write, stop
 * asking) costs two epoll_ctl() per socket and a loop turn, more than the send(). A
 * write the kernel takes only in part is handed to lws (lws_write buffers the rest
 * and finishes it before anything else goes out on the socket), and from then on the
 * socket goes lws' way until that is done. */
static void flush_direct(struct gw *gw, struct gw_conn *c)
{
	int fd = (int)lws_get_socket_fd(c->wsi);
	while (c->q_head && fd >= 0) {
		struct gw_buf *sent[GW_WRITE_BATCH_FRAMES];
		size_t n;
		int probed;
		size_t used = fill_batch_probed(gw, c, sent, &n, &probed);
		if (!n)
			break; /* a frame bigger than a batch: SERVER_WRITEABLE writes it alone */
		ssize_t w = send(fd, batch_out + LWS_PRE, used, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			/* The peer is gone: lws sees it on the socket and closes it. */
			settle_probed(gw, c, sent, n, 0, probed);
			break;
		}
		if (w < 0)
			w = 0;
		if ((size_t)w < used) {
			int r = lws_write(c->wsi, batch_out + LWS_PRE + w, used - (size_t)w,
			                  LWS_WRITE_RAW);
			settle_probed(gw, c, sent, n, r >= (int)(used - (size_t)w), probed);
			break;
		}
		settle_probed(gw, c, sent, n, 1, probed);
	}
	gw_backlog_resume(gw, c);
	if (c->q_head || c->close_code || c->probe_due)
		lws_callback_on_writable(c->wsi);
}

void gw_conn_send_probe(struct gw *gw, struct gw_conn *c)
{
	if (!c->wsi || !c->probe_due)
		return;
	if (c->q_head || !direct_ok(gw, c)) {
		/* behind the queue, when the socket is writeable */
		lws_callback_on_writable(c->wsi);
		return;
	}
	unsigned char f[LWS_PRE + GW_PROBE_FRAME_BYTES];
	size_t n = gw_receipts_probe_append(gw, c, f + LWS_PRE);
	if (!n)
		return;
	gw_receipts_probe_sent(gw, c);
	ssize_t w =
	    send((int)lws_get_socket_fd(c->wsi), f + LWS_PRE, n, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
		return; /* the peer is gone: lws sees it on the socket and closes it */
	if (w < 0)
		w = 0;
	if ((size_t)w < n)
		lws_write(c->wsi, f + LWS_PRE + w, n - (size_t)w, LWS_WRITE_RAW);
}

void gw_conn_flush_collected(struct gw *gw)
{
	for (size_t i = 0; i < gw->flush_len; i++) {
		struct gw_conn *c = gw->flush[i];
		if (!c)
			continue; /* closed meanwhile */
		c->flush_queued = 0;
		if (direct_ok(gw, c))
			flush_direct(gw, c);
		else if (c->wsi)
			lws_callback_on_writable(c->wsi);
	}
	gw->flush_len = 0;
}

int gw_conn_writeable(struct gw *gw, struct gw_conn *c)
{
	if (c->close_code && (c->close_now || !c->q_head)) {
		lws_close_reason(c->wsi, (enum lws_close_status)c->close_code,
		                 (unsigned char *)c->close_reason, strlen(c->close_reason));
		return -1;
	}
	int pinged = gw_keepalive_write_ping(c);
	if (pinged != 0) {
		if (pinged > 0 && (c->q_head || c->close_code || c->probe_due))
			lws_callback_on_writable(c->wsi);
		return pinged < 0 ? -1 : 0;
	}
	struct gw_qnode *n = c->q_head;
	if (!n) {
		int probed = gw_receipts_write_probe(gw, c);
		if (probed > 0 && c->close_code)
			lws_callback_on_writable(c->wsi);
		return probed < 0 ? -1 : 0;
	}
	if (n->next && n->buf->len + n->next->buf->len + 20 <= GW_WRITE_BATCH_BYTES) {
		if (write_batch(gw, c) < 0)
			return -1;
	} else {
		c->q_head = n->next;
		if (!c->q_head)
			c->q_tail = NULL;
		c->q_len--;
		struct gw_buf *b = n->buf;
		int w = lws_write(c->wsi, b->data + LWS_PRE, b->len, LWS_WRITE_TEXT);
		free(n);
		if (w < (int)b->len) {
			gw_buf_unref(b);
			return -1;
		}
		account(gw, c, b);
		gw_buf_unref(b);
	}
	gw_backlog_resume(gw, c);
	if (c->q_head || c->close_code || c->probe_due)
		lws_callback_on_writable(c->wsi);
	return 0;
}

void gw_conn_release(struct gw *gw, struct gw_conn *c)
{
	if (c->flush_queued) {
		for (size_t i = 0; i < gw->flush_len; i++)
			if (gw->flush[i] == c)
				gw->flush[i] = NULL;
		c->flush_queued = 0;
	}
	gw_receipts_conn_closed(gw, c);
	queue_free(c->q_head);
	queue_free(c->held_head);
	c->q_head = c->q_tail = c->held_head = c->held_tail = NULL;
	c->q_len = c->held_len = 0;
	gw_requests_detach_conn(c);
	free(c->rx);
	c->rx = NULL;
	free(c->user_name);
	c->user_name = NULL;
	c->wsi = NULL;
}
