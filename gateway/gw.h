/*
 * gw: the gateway's shared types. The gateway is one libwebsockets service loop
 * (the "loop thread") plus libnats delivery threads. Everything below is owned by
 * and touched only on the loop thread, except struct gw_handoff (locked) and the
 * _Atomic flags. NATS callbacks never touch a socket: they queue the message on the
 * hand-off and wake the loop with lws_cancel_service().
 */
#ifndef GW_H
#define GW_H

#include <libwebsockets.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "sb_bus.h"
#include "sb_metrics.h"
#include "sb_msg.h"

struct gw_config {
	const char *nats_url;
	const char *listen;
	const char *allowed_origins; /* comma list; empty = any origin */
	const char *log_level;
	const char *tls_cert;
	const char *tls_key;
	const char *event_lib;
	int64_t max_frame_bytes;
	int64_t max_message_chars;
	int64_t request_timeout_ms;
	int64_t request_retries;
	int64_t auth_timeout_ms;
	int64_t partitions;
	int64_t max_queue;
	int64_t ping_interval_s;
	int64_t idle_timeout_s;
	int64_t drain_timeout_ms;
	int reuse_port;
	int64_t rate_per_sec; /* chat frames per second per socket (0 = no limit) */
	int64_t rate_burst;   /* bucket size */
	int64_t max_conns_per_user;
	int64_t max_failed_per_ip; /* failed handshakes per IP per minute before 429 */
};

enum gw_kind { GW_CHAT = 1, GW_NOTIFY = 2 };

#define GW_ERROR_KINDS 20

/* One outgoing frame, shared by every socket it goes to (refcounted; loop thread). */
struct gw_buf {
	int refs;
	enum gw_kind kind; /* GW_CHAT / GW_NOTIFY: a delivery to report once written; 0 = reply */
	uint64_t id;       /* message / notification id (for dedup and receipts) */
	uint64_t user_id;  /* receiver, for receipts (0 = broadcast: each socket's user) */
	size_t len;
	unsigned char data[]; /* LWS_PRE bytes of headroom, then len bytes of JSON */
};

struct gw_qnode {
	struct gw_buf *buf;
	struct gw_qnode *next;
};

struct gw_req;
struct gw_user;

/* Per-connection state (lws per-session data; HTTP requests use only `http`). */
struct gw_conn {
	struct lws *wsi;
	enum gw_kind kind;
	uint64_t conn_id;
	uint64_t user_id;
	char *user_name;
	uint8_t token_hash[32];
	struct gw_user *user;
	struct gw_conn *next_of_user; /* list of this user's sockets of the same kind */
	struct gw_conn *prev_of_user;

	struct gw_qnode *q_head, *q_tail; /* frames waiting for SERVER_WRITEABLE */
	size_t q_len;
	struct gw_req *reqs; /* in-flight bus requests for this socket */
	int inflight_sends;
	int unpublished_sends; /* of those, not on the bus yet (requests.c) */

	char *rx; /* reassembly of a fragmented frame */
	size_t rx_len;
	int rx_binary;

	int syncing;    /* backlog replay in progress: live deliveries wait in `held` */
	int sync_again; /* the bus came back meanwhile: fetch again after it */
	int after_gap;  /* replay everything after the gap (SyncRequest.resync) */
	struct gw_qnode *held_head, *held_tail;
	size_t held_len;
	uint64_t last_id;     /* highest message/notification id queued to this socket */
	int backlog_deferred; /* next backlog page waits for the queue to drain (backlog.c) */
	double tokens;        /* rate limit bucket (frames) */
	int64_t tokens_at_ms; /* last refill */
	int strikes;          /* frames refused by the rate limit in a row */

	int close_code; /* non-zero: close with this code at the next writeable */
	const char *close_reason;
	int close_now;     /* close without flushing the queue (slow consumer) */
	int authorized;    /* the pre-upgrade check passed */
	int64_t heard_ms;  /* the peer last sent a frame or PONG (sb_mono_ms) */
	int64_t pinged_ms; /* our last PING */
	int ping_due;      /* a PING waits for SERVER_WRITEABLE */
	int established;
	int flush_queued; /* in gw->flush: written straight after the hand-off drain */
	/* receipts.c: ids written to this socket whose receipts wait for the client to
	 * answer a PING written after them (a probe): then it has read them */
	uint64_t *unconf;
	size_t unconf_len, unconf_cap;
	size_t probe_covers; /* the probe on the wire confirms unconf[0..probe_covers) */
	uint32_t probe_seq;  /* its payload */
	uint32_t prev_seq;   /* a probe re-sent after GW_PROBE_RETRY_MS: the one before */
	size_t prev_covers;  /* and what that one confirms, should its PONG still come */
	int probe_waiting;   /* in gw->probes[probe_list] */
	int probe_list;      /* GW_PROBES_CHAT, _NOTIFY: the delay; _RETRY: a probe is out */
	int probe_due;       /* a probe is owed now: written after the queue */
	int probe_out;       /* a probe is on the wire and its PONG has not come back */
	struct gw_conn *probe_next, *probe_prev; /* that list */
	lws_usec_t probe_at;                     /* when its wait ends */

	/* HTTP (healthz/readyz/metrics) */
	char *http_body;
	size_t http_len;
};

/* Delivery subscriptions of one user while they have sockets here. */
struct gw_user {
	uint64_t id;
	struct gw_conn *chat;   /* list head */
	struct gw_conn *notify; /* list head */
	natsSubscription *chat_sub;
	natsSubscription *notify_sub;
	int nconns;
};

enum gw_req_kind { GW_REQ_SEND = 1, GW_REQ_SYNC, GW_REQ_NOTIFY_SYNC, GW_REQ_VERIFY };

struct gw_pre;

/* An in-flight request on the bus, correlated by the reply subject's last token. */
struct gw_req {
	uint64_t corr;
	enum gw_req_kind kind;
	struct gw_conn *conn; /* NULL once the socket is gone */
	struct gw_pre *pre;   /* GW_REQ_VERIFY: the handshake waiting for it (preauth.c) */
	struct gw_req *next_of_conn;
	struct gw_req *prev_of_conn;
	char subject[64];
	uint8_t *payload;
	size_t payload_len;
	int tries;
	int unpublished;     /* waiting for the bus to publish it (requests.c) */
	int64_t started_us;  /* first publish, for the latency histogram */
	int64_t deadline_us; /* this try times out then */
	lws_dll2_t timeouts; /* in gw->req_timeouts[], deadline order (requests.c) */
};

enum gw_event_kind {
	GW_EV_REPLY = 1,
	GW_EV_DELIVER_CHAT,
	GW_EV_DELIVER_NOTIFY,
	GW_EV_REVOKED,
	GW_EV_BUS_DOWN, /* msg NULL */
	GW_EV_BUS_UP,   /* msg NULL */
};

struct gw_event {
	enum gw_event_kind kind;
	natsMsg *msg;
	struct gw_event *next;
};

/* The one hand-off from libnats threads to the loop. */
struct gw_handoff {
	pthread_mutex_t lock;
	struct gw_event *head, *tail;
	_Atomic int tracked; /* async subscriptions whose delivery thread may still push */
};

struct gw_metrics {
	uint64_t conns_opened[3];
	uint64_t conns_refused_auth;
	uint64_t conns_refused_origin;
	uint64_t conns_refused_unavailable;
	uint64_t frames_in;
	uint64_t frames_out;
	uint64_t errors_sent;
	uint64_t messages_acked;
	uint64_t chat_delivered;
	uint64_t notify_delivered;
	uint64_t backlog_replayed;
	uint64_t request_timeouts;
	uint64_t slow_consumer_closes;
	uint64_t rate_limited;
	uint64_t conns_refused_user_cap;
	uint64_t conns_refused_ip;
	int64_t conns_current[3];
	uint64_t receipts_sent;
	uint64_t idle_closes;
	uint64_t bus_stalls; /* busloop.c's once-a-second check found work left behind */
	uint64_t receipts_dropped;
	uint64_t no_responders; /* replies that said nobody was subscribed (handoff.c) */
	uint64_t unsubs_deferred;
	uint64_t loop_stalls;      /* the lag probe ran over GW_LOOP_STALL_MS late (timer.c) */
	uint64_t probes_sent;      /* delivery probes (PINGs) written (receipts.c) */
	uint64_t unconfirmed_lost; /* receipts of sockets closed before their PONG */
};

struct gw_receipt {
	enum gw_kind kind;
	uint32_t partition; /* chat: the receiver's partition (its subject); notify: 0 */
	uint64_t user_id;
	uint64_t id;
};

/* Sockets waiting for their delivery probe (receipts.c), in deadline order. */
struct gw_probe_list {
	struct gw *gw;
	struct gw_conn *head, *tail;
	lws_usec_t delay;
	lws_sorted_usec_list_t sul;
};

enum gw_probe_list_id { GW_PROBES_CHAT, GW_PROBES_NOTIFY, GW_PROBES_RETRY };

#define GW_TIMER_SULS 12 /* the suls of struct gw below (11) and one to spare */

struct gw {
	struct gw_config cfg;
	struct lws_context *ctx;
	struct lws_vhost *vhost;
	struct sb_bus *bus;
	natsSubscription *inbox_sub;
	int inbox_polled; /* inbox_sub is synchronous, emptied by gw_handoff_poll_replies */
	natsSubscription *revoked_sub;
	natsSubscription *notify_all_sub;
	char instance[24];     /* random id of this gateway process */
	char inbox_prefix[48]; /* "_INBOX.<instance>." */
	struct gw_handoff handoff;
	void *users; /* tsearch tree of struct gw_user*, by id */
	/* Per-user subscriptions whose users left while the bus was down (users.c). */
	natsSubscription **unsub_later;
	size_t unsub_later_len, unsub_later_cap;
	void *reqs; /* tsearch tree of struct gw_req*, by corr */
	/* Requests by deadline: one FIFO per timeout length ([0] bus requests, [1] token
	 * verification) is in deadline order by construction; one timer serves both. */
	lws_dll2_owner_t req_timeouts[2];
	lws_sorted_usec_list_t req_sul;
	int64_t req_sul_at_us; /* when req_sul fires; 0 = not scheduled */
	int req_sweeping;
	uint64_t next_corr;
	size_t reqs_inflight;
	size_t reqs_unpublished;
	int bus_backlogged; /* busloop.c: NATS stopped reading, see GW_BUS_BACKLOG_MAX */
	/* backlog.c, by chat partition: the highest id received, and its value when the
	 * bus last went down (cfg.partitions entries each, one allocation). */
	uint64_t *chat_seen;
	uint64_t *chat_gap_floor;
	uint64_t notify_seen, notify_gap_floor; /* the same for notify-svc */
	uint64_t next_conn_id;
	uint64_t send_seq; /* counter for idempotency keys (chat.c) */
	_Atomic int stop_requested;
	int ctx_gone; /* under handoff.lock: the lws context is being destroyed */
	int draining;
	int64_t drain_deadline_ms;
	lws_sorted_usec_list_t drain_sul;
	int done;
	int evlib;      /* lws runs on libev: lws_service() returns only once the loop stops */
	int64_t now_ms; /* sb_mono_ms() as of the last keepalive sweep (keepalive.c) */
	lws_sorted_usec_list_t keepalive_sul;
	lws_sorted_usec_list_t busloop_sul; /* busloop.c's once-a-second check */
	int64_t auth_down_until_ms;         /* fail fast while auth-svc does not answer */
	struct gw_receipt *receipts;        /* pending delivery receipts (receipts.c) */
	size_t receipts_len, receipts_cap;
	int receipts_scheduled;
	struct gw_probe_list probes[3]; /* receipts.c: by enum gw_probe_list_id */
	lws_sorted_usec_list_t receipts_sul;
	void *ip_failures; /* tsearch tree of struct gw_ip_failures (quota.c) */
	int64_t ip_window;
	struct gw_conn pending; /* verdict between CONFIRM_UPGRADE and FILTER (ws.c) */
	struct gw_metrics m;
	/* Labelled series rendered by sb_metrics (http.c): errors by sentence and bus
	 * request latency by kind. */
	struct sb_metrics reg;
	struct sb_metric errors_by_reason[GW_ERROR_KINDS];
	struct sb_metric request_seconds[5]; /* indexed by enum gw_req_kind */
	/* preauth.c: handshakes read before lws sees them */
	int pre_epfd;
	int pre_lfd; /* our listening socket, in the epoll set (-1 with TLS: lws listens) */
	int64_t accept_warned_ms;
	lws_sorted_usec_list_t accept_sul; /* accepting paused: out of descriptors */
	struct gw_pre **pres;              /* by fd */
	size_t pres_cap;
	struct lws *pre_wsi;
	lws_sorted_usec_list_t pre_sul;
	/* conn.c: sockets that got frames during a hand-off drain, written at its end */
	struct gw_conn **flush;
	size_t flush_len, flush_cap;
	int flush_batching; /* a drain is running: gw_conn_send collects instead */
	/* timer.c: wakes lws' libev loop for our suls */
	int timer_fd;
	lws_usec_t timer_at; /* when timer_fd fires; 0 = disarmed */
	lws_sorted_usec_list_t *timer_suls[GW_TIMER_SULS];
	int timer_nsuls;
	lws_sorted_usec_list_t lag_sul; /* the loop-lag probe */
	lws_usec_t lag_due;
	struct sb_metric loop_lag_seconds;
	/* busloop.c: the NATS socket on the loop */
	struct sb_busio *busio;
};

#endif
