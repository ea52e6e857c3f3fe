/*
 * sb_bus: NATS connection with reconnect-forever and the protobuf envelope codec.
 */
#include "sb_bus.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sb_busio.h"
#include "sb_log.h"
#include "sb_msg.h"

/* The URL list for a log line, with any "user:password@" replaced by "***@": the
 * credentials of a NATS account must not reach the logs. */
static const char *redact(const char *url, char *out, size_t size)
{
	size_t o = 0;
	const char *p = url;
	while (*p && o + 1 < size) {
		const char *scheme = strstr(p, "://");
		const char *at = scheme ? strchr(scheme + 3, '@') : NULL;
		const char *comma = strchr(p, ',');
		if (!scheme || !at || (comma && at > comma)) {
			size_t n = comma ? (size_t)(comma - p + 1) : strlen(p);
			if (n > size - 1 - o)
				n = size - 1 - o;
			memcpy(out + o, p, n);
			o += n;
			p += n;
			continue;
		}
		size_t n = (size_t)(scheme + 3 - p);
		if (n + 4 > size - 1 - o)
			break;
		memcpy(out + o, p, n);
		o += n;
		memcpy(out + o, "***@", 4);
		o += 4;
		p = at + 1;
	}
	out[o] = 0;
	return out;
}

static void on_disconnected(natsConnection *nc, void *closure)
{
	(void)nc;
	struct sb_bus *bus = closure;
	atomic_store(&bus->connected, 0);
	pthread_mutex_lock(&bus->lock);
	int ours = bus->closing;
	void (*cb)(void *, int) = bus->state_cb;
	void *arg = bus->state_arg;
	pthread_mutex_unlock(&bus->lock);
	if (!ours)
		SB_WARN("bus_disconnected", "client=%s", bus->name);
	if (!ours && cb)
		cb(arg, 0);
}

static void on_closed(natsConnection *nc, void *closure)
{
	(void)nc;
	struct sb_bus *bus = closure;
	pthread_mutex_lock(&bus->lock);
	bus->closed = 1;
	pthread_cond_signal(&bus->closed_cond);
	pthread_mutex_unlock(&bus->lock);
}

static struct sb_bus *bus_alloc(const char *name)
{
	struct sb_bus *bus = calloc(1, sizeof *bus);
	if (!bus)
		return NULL;
	snprintf(bus->name, sizeof bus->name, "%s", name);
	pthread_mutex_init(&bus->lock, NULL);
	pthread_cond_init(&bus->closed_cond, NULL);
	return bus;
}

static void bus_free(struct sb_bus *bus)
{
	sb_busio_destroy(bus->own_io);
	pthread_mutex_destroy(&bus->lock);
	pthread_cond_destroy(&bus->closed_cond);
	free(bus);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
	(void)nc;
	struct sb_bus *bus = closure;
	atomic_store(&bus->connected, 1);
	atomic_fetch_add(&bus->reconnects, 1);
	SB_INFO("bus_reconnected", "client=%s", bus->name);
	pthread_mutex_lock(&bus->lock);
	void (*cb)(void *, int) = bus->state_cb;
	void *arg = bus->state_arg;
	pthread_mutex_unlock(&bus->lock);
	if (cb)
		cb(arg, 1);
}

void sb_bus_watch(struct sb_bus *bus, void (*cb)(void *arg, int connected), void *arg)
{
	pthread_mutex_lock(&bus->lock);
	bus->state_cb = cb;
	bus->state_arg = arg;
	pthread_mutex_unlock(&bus->lock);
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static void on_connected(natsConnection *nc, void *closure)
{
	(void)nc;
	struct sb_bus *bus = closure;
	atomic_store(&bus->connected, 1);
	SB_INFO("bus_connected", "client=%s", bus->name);
}

/* Options shared by both connect styles; NULL on failure (logged). */
static natsOptions *make_options(struct sb_bus *bus, const char *url, const char *name,
                                 struct sb_busio *io)
{
	natsOptions *opts = NULL;
	natsStatus s = natsOptions_Create(&opts);
	if (s == NATS_OK)
		s = natsOptions_SetURL(opts, url);
	if (s == NATS_OK)
		s = natsOptions_SetName(opts, name);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(opts, -1);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(opts, 250);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectBufSize(opts, 32 * 1024 * 1024);
	/* A server that keeps the TCP connection but stops answering (frozen, cut off
	 * without a reset) is declared stale after 3 unanswered pings: 30 s, not libnats'
	 * default 2 min x 2. */
	if (s == NATS_OK)
		s = natsOptions_SetPingInterval(opts, 10000);
	if (s == NATS_OK)
		s = natsOptions_SetMaxPingsOut(opts, 3);
	if (s == NATS_OK)
		s = natsOptions_UseGlobalMessageDelivery(opts, true);
	if (s == NATS_OK)
		s = natsOptions_SetDisconnectedCB(opts, on_disconnected, bus);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectedCB(opts, on_reconnected, bus);
	if (s == NATS_OK)
		s = natsOptions_SetClosedCB(opts, on_closed, bus);
	if (s == NATS_OK)
		s = natsOptions_SetMaxPendingMsgs(opts, 1000000);
	if (s == NATS_OK && io)
		s = sb_busio_configure(io, opts);
	if (s != NATS_OK) {
		SB_ERROR("bus_options", "error=\"%s\"", natsStatus_GetText(s));
		natsOptions_Destroy(opts);
		return NULL;
	}
	return opts;
}

natsStatus sb_bus_connect_once(struct sb_bus **out, const char *url, const char *name,
                               int timeout_ms)
{
	struct sb_bus *bus = bus_alloc(name);
	if (!bus)
		return NATS_NO_MEMORY;
	natsOptions *opts = NULL;
	natsStatus s = natsOptions_Create(&opts);
	if (s == NATS_OK)
		s = natsOptions_SetURL(opts, url);
	if (s == NATS_OK)
		s = natsOptions_SetName(opts, name);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(opts, timeout_ms);
	if (s == NATS_OK)
		s = natsOptions_SetAllowReconnect(opts, false);
	if (s == NATS_OK)
		s = natsOptions_SetClosedCB(opts, on_closed, bus);
	if (s == NATS_OK)
		s = natsConnection_Connect(&bus->nc, opts);
	natsOptions_Destroy(opts);
	if (s != NATS_OK) {
		bus_free(bus);
		return s;
	}
	atomic_store(&bus->connected, 1);
	*out = bus;
	return NATS_OK;
}

void sb_bus_close(struct sb_bus *bus)
{
	if (!bus || !bus->nc)
		return;
	pthread_mutex_lock(&bus->lock);
	bus->closing = 1;
	pthread_mutex_unlock(&bus->lock);
	natsConnection_Close(bus->nc);
}

int sb_bus_open(struct sb_bus **out, const char *url, const char *name, struct sb_busio *io)
{
	char safe[512];
	struct sb_bus *bus = bus_alloc(name);
	if (!bus)
		return -1;
	natsOptions *opts = make_options(bus, url, name, io);
	natsStatus s =
	    opts ? natsOptions_SetRetryOnFailedConnect(opts, true, on_connected, bus) : NATS_ERR;
	if (s == NATS_OK) {
		s = natsConnection_Connect(&bus->nc, opts);
		if (s == NATS_OK) {
			atomic_store(&bus->connected, 1);
			SB_INFO("bus_connected", "url=%s client=%s", redact(url, safe, sizeof safe),
			        name);
		} else if (s == NATS_NOT_YET_CONNECTED) {
			SB_WARN("bus_connect_pending", "url=%s client=%s",
			        redact(url, safe, sizeof safe), name);
			s = NATS_OK;
		}
	}
	natsOptions_Destroy(opts);
	if (s != NATS_OK) {
		SB_ERROR("bus_connect", "url=%s error=\"%s\"", redact(url, safe, sizeof safe),
		         natsStatus_GetText(s));
		bus_free(bus);
		return -1;
	}
	*out = bus;
	return 0;
}

int sb_bus_connect(struct sb_bus **out, const char *url, const char *name, _Atomic int *stop)
{
	char safe[512];
	struct sb_bus *bus = bus_alloc(name);
	if (!bus)
		return -1;
	if (sb_busio_create(&bus->own_io) < 0 || sb_busio_start_thread(bus->own_io) < 0) {
		SB_ERROR("bus_io_thread", "client=%s", name);
		bus_free(bus);
		return -1;
	}
	natsOptions *opts = make_options(bus, url, name, bus->own_io);
	if (!opts) {
		bus_free(bus);
		return -1;
	}
	natsStatus s;
	int wait = 100;
	for (;;) {
		s = natsConnection_Connect(&bus->nc, opts);
		if (s == NATS_OK)
			break;
		SB_WARN("bus_connect_retry", "url=%s error=\"%s\" retry_ms=%d",
		        redact(url, safe, sizeof safe), natsStatus_GetText(s), wait);
		for (int slept = 0; slept < wait; slept += 50) {
			if (stop && atomic_load(stop)) {
				natsOptions_Destroy(opts);
				bus_free(bus);
				return -1;
			}
			sleep_ms(50);
		}
		wait = wait * 2 > 2000 ? 2000 : wait * 2;
	}
	natsOptions_Destroy(opts);
	atomic_store(&bus->connected, 1);
	SB_INFO("bus_connected", "url=%s client=%s", redact(url, safe, sizeof safe), name);
	*out = bus;
	return 0;
}

void sb_bus_destroy(struct sb_bus *bus, int timeout_ms)
{
	if (!bus)
		return;
	if (bus->nc) {
		pthread_mutex_lock(&bus->lock);
		bus->closing = 1;
		pthread_mutex_unlock(&bus->lock);
		natsConnection_FlushTimeout(bus->nc, timeout_ms);
		natsConnection_Close(bus->nc);
		/* Wait (bounded) for libnats' closed callback: after it no callback of this
		 * connection can touch bus. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 5;
		pthread_mutex_lock(&bus->lock);
		while (!bus->closed)
			if (pthread_cond_timedwait(&bus->closed_cond, &bus->lock, &ts) != 0)
				break;
		int closed = bus->closed;
		pthread_mutex_unlock(&bus->lock);
		natsConnection_Destroy(bus->nc);
		if (!closed) {
			SB_WARN("bus_close_timeout", "client=%s", bus->name);
			return; /* leak rather than free under a late callback */
		}
	}
	bus_free(bus);
}

int sb_envelope_pack(const Sb__Envelope *env, uint8_t **buf, size_t *len)
{
	size_t n = sb__envelope__get_packed_size(env);
	uint8_t *b = malloc(n ? n : 1);
	if (!b)
		return -1;
	sb__envelope__pack(env, b);
	*buf = b;
	*len = n;
	return 0;
}

Sb__Envelope *sb_envelope_unpack(const void *data, size_t len)
{
	return sb__envelope__unpack(NULL, len, data);
}

void sb_envelope_free(Sb__Envelope *env)
{
	if (env)
		sb__envelope__free_unpacked(env, NULL);
}

Sb__Delivered *const *sb_envelope_receipts(const Sb__Envelope *env, size_t *n)
{
	*n = 0;
	if (env && env->body_case == SB__ENVELOPE__BODY_DELIVERED && env->delivered) {
		*n = 1;
		return &env->delivered;
	}
	if (env && env->body_case == SB__ENVELOPE__BODY_DELIVERED_BATCH && env->delivered_batch) {
		*n = env->delivered_batch->n_receipts;
		return env->delivered_batch->receipts;
	}
	return NULL;
}

natsStatus sb_bus_publish(struct sb_bus *bus, const char *subject, const char *reply,
                          const Sb__Envelope *env)
{
	uint8_t *buf;
	size_t len;
	if (sb_envelope_pack(env, &buf, &len) < 0)
		return NATS_NO_MEMORY;
	natsStatus s;
	if (reply)
		s = natsConnection_PublishRequest(bus->nc, subject, reply, buf, (int)len);
	else
		s = natsConnection_Publish(bus->nc, subject, buf, (int)len);
	free(buf);
	return s;
}

natsStatus sb_bus_request(struct sb_bus *bus, const char *subject, const Sb__Envelope *env,
                          int timeout_ms, Sb__Envelope **reply)
{
	uint8_t *buf;
	size_t len;
	if (sb_envelope_pack(env, &buf, &len) < 0)
		return NATS_NO_MEMORY;
	natsMsg *msg = NULL;
	natsStatus s = natsConnection_Request(&msg, bus->nc, subject, buf, (int)len, timeout_ms);
	free(buf);
	if (s != NATS_OK)
		return s;
	*reply = sb_envelope_unpack(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
	sb_msg_free(msg);
	return *reply ? NATS_OK : NATS_PROTOCOL_ERROR;
}

natsStatus sb_bus_reply(struct sb_bus *bus, natsMsg *msg, const Sb__Envelope *env)
{
	const char *reply = natsMsg_GetReply(msg);
	if (!reply || !*reply)
		return NATS_OK;
	return sb_bus_publish(bus, reply, NULL, env);
}
