/*
 * The link to the controller: mutual TLS, HELLO, heartbeats, and reconnect
 * with exponential backoff and jitter, trying each configured controller
 * address in turn.
 */
#include <sys/statvfs.h>

#include <stdlib.h>
#include <string.h>

#include "opsn/conn.h"
#include "opsn/frame.h"
#include "opsn/log.h"
#include "opsn/util.h"
#include "agent.h"

static struct agent	*la;
static SSL_CTX		*link_ctx;
static struct conn	*link_conn;
static uv_timer_t	 link_retry;
static uv_timer_t	 link_beat;
static size_t		 link_next;	/* next address to try */
static unsigned		 link_failures;
static int		 link_hello_ok;
static int		 link_stopping;
static uint32_t		 link_version;
static uint32_t		 link_reqid;
static const struct role_ops	*link_role;	/* NULL: no role messages */

static void	link_connect(void);

static void
link_retry_cb(uv_timer_t *t)
{
	link_connect();
}

/* Exponential backoff with full jitter between min and the current cap. */
static void
link_schedule(void)
{
	uint64_t	 cap, delay;
	uint32_t	 r;
	unsigned	 shift = link_failures < 16 ? link_failures : 16;

	if (link_stopping)
		return;
	cap = (uint64_t)la->conf.reconnect_min_ms << shift;
	if (cap > (uint64_t)la->conf.reconnect_max_ms)
		cap = (uint64_t)la->conf.reconnect_max_ms;
	util_random(&r, sizeof(r));
	delay = cap / 2 + r % (cap / 2 + 1);
	link_failures++;
	log_debug("link: next attempt in %llu ms",
	    (unsigned long long)delay);
	uv_timer_start(&link_retry, link_retry_cb, delay, 0);
}

static void
link_beat_cb(uv_timer_t *t)
{
	Opsn__Heartbeat	 hb = OPSN__HEARTBEAT__INIT;
	struct statvfs	 vf;

	if (link_conn == NULL || !link_hello_ok)
		return;
	hb.sent_ms = util_mono_ms();
	if (statvfs(la->conf.data_dir, &vf) == 0) {
		hb.data_avail_bytes = (uint64_t)vf.f_bavail * vf.f_frsize;
		hb.data_size_bytes = (uint64_t)vf.f_blocks * vf.f_frsize;
	}
	conn_send_msg(link_conn, link_version, MSG_HEARTBEAT, ++link_reqid,
	    ST_OK, &hb.base);
}

static void
link_ready_cb(struct conn *c, void *arg)
{
	Opsn__Hello	 h = OPSN__HELLO__INIT;
	char		*roles[1];

	roles[0] = la->conf.role;
	h.name = la->conf.name;
	h.roles = roles;
	h.n_roles = 1;
	h.proto_min = la->proto_min;
	h.proto_max = la->proto_max;
	h.agent_version = OPSN_VERSION;
	h.inventory = &la->inv;
	conn_set_max_frame(c, FRAME_MAX);
	conn_send_msg(c, la->proto_min, MSG_HELLO, ++link_reqid, ST_OK,
	    &h.base);
}

static void
link_hello_ok_msg(struct conn *c, const struct frame_hdr *h, const uint8_t *p)
{
	Opsn__HelloOk	*ok;
	uint64_t	 beat;

	if ((ok = opsn__hello_ok__unpack(NULL, h->fh_len, p)) == NULL) {
		conn_close(c, "HELLO_OK does not decode");
		return;
	}
	link_version = ok->proto_version;
	beat = ok->heartbeat_interval_ms ? ok->heartbeat_interval_ms : 10000;
	log_notice("link: connected to %s (controller %s, protocol %u)",
	    conn_peer_addr(c), ok->controller_version, link_version);
	opsn__hello_ok__free_unpacked(ok, NULL);
	link_hello_ok = 1;
	link_failures = 0;
	/* The controller is silent between acks: allow three missed beats. */
	conn_set_idle_timeout(c, (uint32_t)(3 * beat + 1000));
	uv_timer_start(&link_beat, link_beat_cb, beat, beat);
	if (link_role != NULL && link_role->on_connected != NULL)
		link_role->on_connected();
	if (&meter_ops != NULL && meter_ops.on_connected != NULL)
		meter_ops.on_connected();
}

static void
link_frame_cb(struct conn *c, const struct frame_hdr *h, const uint8_t *p,
    void *arg)
{
	Opsn__Error	*e;

	switch (h->fh_type) {
	case MSG_HELLO_OK:
		link_hello_ok_msg(c, h, p);
		return;
	case MSG_HEARTBEAT_ACK:
		return;
	case MSG_ERROR:
		e = opsn__error__unpack(NULL, h->fh_len, p);
		log_warnx("link: the controller says: %s (%s)",
		    e ? e->message : "?", e ? e->code : "?");
		if (e != NULL)
			opsn__error__free_unpacked(e, NULL);
		if (h->fh_status == ST_DENIED || h->fh_status == ST_VERSION)
			conn_close(c, "refused by the controller");
		return;
	default: {
		Opsn__Error err = OPSN__ERROR__INIT;

		if (h->fh_type >= MSG_RANGE_METER_MIN &&
		    h->fh_type <= MSG_RANGE_METER_MAX && &meter_ops != NULL &&
		    meter_ops.on_frame != NULL && link_hello_ok) {
			meter_ops.on_frame(h->fh_type, p, h->fh_len);
			return;
		}
		if (h->fh_type >= 128 && link_role != NULL &&
		    link_role->on_frame != NULL && link_hello_ok) {
			link_role->on_frame(h->fh_type, p, h->fh_len);
			return;
		}
		char *msg;

		xasprintf(&msg, "unknown message type %u", h->fh_type);
		err.code = "unknown_type";
		err.message = msg;
		conn_send_msg(c, link_version ? link_version : la->proto_min,
		    MSG_ERROR, h->fh_reqid, ST_UNKNOWN_TYPE, &err.base);
		free(msg);
	}
	}
}

static void
link_close_cb(struct conn *c, const char *reason, void *arg)
{
	if (link_hello_ok)
		log_warnx("link: lost the controller: %s", reason);
	else
		log_warnx("link: could not connect: %s", reason);
	link_conn = NULL;
	link_hello_ok = 0;
	uv_timer_stop(&link_beat);
	link_schedule();
}

static const struct conn_cbs link_cbs = {
	link_ready_cb, link_frame_cb, NULL, link_close_cb
};

static void
link_connect(void)
{
	struct conn_opts	 o = { 0 };
	struct agent_addr	*ad = &la->addrs[link_next];
	char			*cause = NULL;

	link_next = (link_next + 1) % la->naddrs;
	o.co_max_frame = FRAME_MAX_PREAUTH;
	o.co_idle_timeout_ms = 30000;
	log_debug("link: connecting to %s:%d", ad->host, ad->port);
	link_conn = conn_connect(la->loop, ad->host, ad->port, link_ctx, NULL,
	    &o, &link_cbs, NULL, &cause);
	if (link_conn == NULL) {
		log_warnx("link: %s:%d: %s", ad->host, ad->port, cause);
		free(cause);
		link_schedule();
		return;
	}
	enrol_set_host(conn_ssl(link_conn), ad->host);
}

/* Send a frame to the controller if the link is up. */
int
link_send(uint16_t type, const ProtobufCMessage *m)
{
	if (link_conn == NULL || !link_hello_ok)
		return (-1);
	return (conn_send_msg(link_conn, link_version, type, ++link_reqid,
	    ST_OK, m));
}

/* The protocol version the link speaks; 0 when it is down. */
uint32_t
link_proto(void)
{
	return (link_conn != NULL && link_hello_ok ? link_version : 0);
}

/* Is the link established (HELLO answered)? */
int
link_is_up(void)
{
	return (link_conn != NULL && link_hello_ok);
}

/* Connect to the controller with our certificate and stay connected. */
void
link_start(struct agent *a)
{
	char	*ca, *cert, *key, *cause = NULL;

	la = a;
	if (strcmp(a->conf.role, "hypervisor") == 0)
		link_role = &hv_role;
	else if (strcmp(a->conf.role, "mail") == 0 && &mail_role != NULL)
		link_role = &mail_role;
	else if (strcmp(a->conf.role, "web") == 0 && &web_role != NULL)
		link_role = &web_role;
	ca = enrol_path(a, "ca.pem");
	cert = enrol_path(a, "cert.pem");
	key = enrol_path(a, "key.pem");
	if ((link_ctx = enrol_ssl_ctx(ca, cert, key, &cause)) == NULL)
		fatalx("link: %s", cause);
	free(ca);
	free(cert);
	free(key);
	uv_timer_init(a->loop, &link_retry);
	uv_timer_init(a->loop, &link_beat);
	link_connect();
}

/* Close the link and stop reconnecting. */
void
link_stop(void)
{
	link_stopping = 1;
	uv_timer_stop(&link_retry);
	uv_timer_stop(&link_beat);
	uv_close((uv_handle_t *)&link_retry, NULL);
	uv_close((uv_handle_t *)&link_beat, NULL);
	if (link_conn != NULL)
		conn_close(link_conn, "agent shutting down");
	if (link_role != NULL && link_role->stop != NULL)
		link_role->stop();
	if (&meter_ops != NULL && meter_ops.stop != NULL)
		meter_ops.stop();
}
