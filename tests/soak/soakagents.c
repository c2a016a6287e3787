/*
 * soakagents: simulated hypervisor agents for `make soak`, durable across
 * kill -9 like the real agent, so that a checker can read the whole
 * history afterwards (tests/soak/soak.py).
 *
 * One process runs N agents on one libuv loop; everything it must not
 * forget is in STATE_DIR/state.db (SQLite, WAL, synchronous=FULL):
 *
 *	agents	each agent's key and certificate (enrolled once, with a
 *		join token from the tokens file);
 *	spool	every sample it ever took, committed before it is sent:
 *		seq, time, resource, and whether the controller acknowledged
 *		it. Never deleted: it is the ledger the checker compares
 *		with the controller's samples;
 *	vms	the "domains" it runs: what the controller's desired state
 *		asked for, kept across restarts as libvirt keeps domains.
 *
 * Every tick (1 s) each agent samples each VM it runs (one transaction
 * for all agents), sends what the controller has not
 * acknowledged (from its lowest unacknowledged sample after a
 * reconnect), applies desired states (never an older generation of the
 * same epoch) and reports its whole observed state. Links are redialled
 * with a random backoff. SIGTERM ends it cleanly; -s sends what the
 * spool holds without taking new samples (the soak's last minutes).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sqlite3.h>

#include "opsn/conn.h"
#include "opsn/frame.h"
#include "opsn/log.h"
#include "opsn/pki.h"
#include "opsn/util.h"
#include "opsn.pb-c.h"
#include "metering.pb-c.h"
#include "simlink.h"

#define SOAK_TICK_MS		1000
#define SOAK_BATCH		500
#define SOAK_WINDOW		4	/* batches in flight */
#define SOAK_RESEND_MS		10000	/* no ack for this long: resend */
#define SOAK_HANDSHAKE_MS	30000
#define SOAK_VMS_MAX		64

struct soak_vm {
	char		 v_id[40];
	char		 v_name[64];
	int		 v_running;
	uint32_t	 v_vcpus;
	uint64_t	 v_mem;
};

struct soak_agent {
	char		 a_name[64];
	char		*a_token;
	EVP_PKEY	*a_key;
	X509		*a_cert;
	struct conn	*a_conn;
	int		 a_ready;	/* HELLO_OK received */
	uint32_t	 a_version;
	uint32_t	 a_reqid;
	uv_timer_t	 a_beat;
	uv_timer_t	 a_redial;
	unsigned	 a_failures;
	uint64_t	 a_next;	/* next seq to take */
	uint64_t	 a_acked;	/* highest acknowledged */
	uint64_t	 a_sent;	/* highest sent on this link */
	uint64_t	 a_sent_ms;	/* when the oldest unacked batch went */
	unsigned	 a_inflight;
	uint64_t	 a_epoch, a_gen;	/* desired state applied */
	struct soak_vm	 a_vms[SOAK_VMS_MAX];
	size_t		 a_nvms;
};

static uv_loop_t		*soak_loop;
static SSL_CTX			*soak_ctx;
static struct soak_agent	*soak_agents;
static size_t			 soak_n;
static sqlite3			*soak_db;
static char			*soak_host;
static int			 soak_port;
static uv_timer_t		 soak_tick;
static uv_signal_t		 soak_sigterm, soak_sigint;
static int			 soak_stopping;
static int			 soak_send_only;	/* -s: take no sample */

static void	soak_dial(struct soak_agent *);
static void	soak_send(struct soak_agent *);

static void __attribute__((noreturn))
soak_usage(void)
{
	fprintf(stderr, "usage: soakagents [-s] -d state-dir -a ca-file -p "
	    "prefix -n count [-t tokens-file] host:port\n");
	exit(2);
}

static void
soak_exec(const char *sql)
{
	char	*err = NULL;

	if (sqlite3_exec(soak_db, sql, NULL, NULL, &err) != SQLITE_OK)
		fatalx("state: %s: %s", sql, err);
}

static sqlite3_stmt *
soak_prepare(const char *sql)
{
	sqlite3_stmt	*st;

	if (sqlite3_prepare_v2(soak_db, sql, -1, &st, NULL) != SQLITE_OK)
		fatalx("state: %s: %s", sql, sqlite3_errmsg(soak_db));
	return (st);
}

static void
soak_step(sqlite3_stmt *st)
{
	int	 rc;

	if ((rc = sqlite3_step(st)) != SQLITE_DONE && rc != SQLITE_ROW)
		fatalx("state: %s", sqlite3_errmsg(soak_db));
}

/* ---- state -------------------------------------------------------------- */

static void
soak_state_open(const char *dir)
{
	char	*path;

	xasprintf(&path, "%s/state.db", dir);
	if (sqlite3_open(path, &soak_db) != SQLITE_OK)
		fatalx("%s: %s", path, sqlite3_errmsg(soak_db));
	free(path);
	sqlite3_busy_timeout(soak_db, 10000);
	soak_exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
	    "CREATE TABLE IF NOT EXISTS agents (name TEXT PRIMARY KEY, "
	    "key_pem TEXT NOT NULL, cert_pem TEXT NOT NULL);"
	    "CREATE TABLE IF NOT EXISTS spool (agent TEXT NOT NULL, seq "
	    "INTEGER NOT NULL, ts_ms INTEGER NOT NULL, resource TEXT NOT NULL, "
	    "state INTEGER NOT NULL, acked INTEGER NOT NULL DEFAULT 0, "
	    "PRIMARY KEY (agent, seq));"
	    "CREATE TABLE IF NOT EXISTS vms (agent TEXT NOT NULL, uuid TEXT "
	    "NOT NULL, name TEXT NOT NULL, running INTEGER NOT NULL, vcpus "
	    "INTEGER NOT NULL, memory_mib INTEGER NOT NULL, PRIMARY KEY "
	    "(agent, uuid));"
	    "CREATE TABLE IF NOT EXISTS applied (agent TEXT PRIMARY KEY, "
	    "epoch INTEGER NOT NULL, generation INTEGER NOT NULL);");
}

/* What a restarted process remembers of each agent. */
static void
soak_state_load(struct soak_agent *a)
{
	sqlite3_stmt	*st;
	struct soak_vm	*v;
	char		*cause = NULL;
	BIO		*b;

	st = soak_prepare("SELECT key_pem, cert_pem FROM agents WHERE name = ?");
	sqlite3_bind_text(st, 1, a->a_name, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		b = BIO_new_mem_buf(sqlite3_column_text(st, 0), -1);
		a->a_key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
		BIO_free(b);
		a->a_cert = pki_cert_from_pem((const char *)sqlite3_column_text(
		    st, 1), (size_t)sqlite3_column_bytes(st, 1), &cause);
		if (a->a_key == NULL || a->a_cert == NULL)
			fatalx("%s: stored identity unreadable", a->a_name);
	}
	sqlite3_finalize(st);
	st = soak_prepare("SELECT coalesce(max(seq), 0), coalesce(max(CASE WHEN "
	    "acked THEN seq END), 0) FROM spool WHERE agent = ?");
	sqlite3_bind_text(st, 1, a->a_name, -1, SQLITE_STATIC);
	soak_step(st);
	a->a_next = (uint64_t)sqlite3_column_int64(st, 0) + 1;
	a->a_acked = (uint64_t)sqlite3_column_int64(st, 1);
	sqlite3_finalize(st);
	st = soak_prepare("SELECT uuid, name, running, vcpus, memory_mib FROM "
	    "vms WHERE agent = ?");
	sqlite3_bind_text(st, 1, a->a_name, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW && a->a_nvms < SOAK_VMS_MAX) {
		v = &a->a_vms[a->a_nvms++];
		strlcpy(v->v_id, (const char *)sqlite3_column_text(st, 0),
		    sizeof(v->v_id));
		strlcpy(v->v_name, (const char *)sqlite3_column_text(st, 1),
		    sizeof(v->v_name));
		v->v_running = sqlite3_column_int(st, 2);
		v->v_vcpus = (uint32_t)sqlite3_column_int(st, 3);
		v->v_mem = (uint64_t)sqlite3_column_int64(st, 4);
	}
	sqlite3_finalize(st);
	st = soak_prepare("SELECT epoch, generation FROM applied WHERE agent = ?");
	sqlite3_bind_text(st, 1, a->a_name, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		a->a_epoch = (uint64_t)sqlite3_column_int64(st, 0);
		a->a_gen = (uint64_t)sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
}

/* ---- samples ------------------------------------------------------------ */

static void
soak_spool_add(sqlite3_stmt *ins, struct soak_agent *a, int64_t now,
    const char *res, int state)
{
	sqlite3_reset(ins);
	sqlite3_bind_text(ins, 1, a->a_name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(ins, 2, (int64_t)a->a_next++);
	sqlite3_bind_int64(ins, 3, now);
	sqlite3_bind_text(ins, 4, res, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(ins, 5, state);
	soak_step(ins);
}

/*
 * One sample of each VM each agent runs, in one commit. Only VMs placed
 * on the agent's node: the controller refuses (and counts) samples of
 * anything else, as it would from a lying agent.
 */
static void
soak_sample_all(void)
{
	sqlite3_stmt	*ins;
	int64_t		 now = util_now_ms();
	size_t		 i, j;

	soak_exec("BEGIN IMMEDIATE");
	ins = soak_prepare("INSERT INTO spool (agent, seq, ts_ms, resource, "
	    "state) VALUES (?, ?, ?, ?, ?)");
	for (i = 0; i < soak_n; i++) {
		struct soak_agent *a = &soak_agents[i];

		if (a->a_cert == NULL)
			continue;
		for (j = 0; j < a->a_nvms; j++)
			soak_spool_add(ins, a, now, a->a_vms[j].v_id,
			    a->a_vms[j].v_running ? 1 : 5);
	}
	sqlite3_finalize(ins);
	soak_exec("COMMIT");
}

/* Send unacknowledged samples, in order, up to the window. */
static void
soak_send(struct soak_agent *a)
{
	Opsn__Samples	 m = OPSN__SAMPLES__INIT;
	Opsn__Sample	*v[SOAK_BATCH], s[SOAK_BATCH];
	sqlite3_stmt	*st;
	size_t		 n, i;

	if (!a->a_ready)
		return;
	/* No ack for too long: start again from what is acknowledged. */
	if (a->a_inflight > 0 && util_mono_ms() - a->a_sent_ms >
	    SOAK_RESEND_MS) {
		a->a_sent = a->a_acked;
		a->a_inflight = 0;
	}
	while (a->a_inflight < SOAK_WINDOW && a->a_sent + 1 < a->a_next) {
		st = soak_prepare("SELECT seq, ts_ms, resource, state FROM spool "
		    "WHERE agent = ? AND seq > ? ORDER BY seq LIMIT ?");
		sqlite3_bind_text(st, 1, a->a_name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, (int64_t)a->a_sent);
		sqlite3_bind_int(st, 3, SOAK_BATCH);
		for (n = 0; n < SOAK_BATCH && sqlite3_step(st) == SQLITE_ROW;
		    n++) {
			opsn__sample__init(&s[n]);
			s[n].seq = (uint64_t)sqlite3_column_int64(st, 0);
			s[n].ts_ms = sqlite3_column_int64(st, 1);
			s[n].kind = "vm";
			s[n].resource = xstrdup((const char *)
			    sqlite3_column_text(st, 2));
			s[n].state = (uint32_t)sqlite3_column_int(st, 3);
			s[n].vcpus = 1;
			s[n].memory_mib = 128;
			s[n].disk_bytes = 1ULL << 30;
			s[n].interval_ms = SOAK_TICK_MS;
			v[n] = &s[n];
		}
		sqlite3_finalize(st);
		if (n == 0)
			break;
		m.samples = v;
		m.n_samples = n;
		m.spool_low_seq = a->a_acked + 1;
		m.spool_samples = a->a_next - 1 - a->a_acked;
		m.spool_max_samples = 1000000;
		if (conn_send_msg(a->a_conn, a->a_version, MSG_SAMPLES,
		    ++a->a_reqid, ST_OK, &m.base) == 0) {
			if (a->a_inflight++ == 0)
				a->a_sent_ms = util_mono_ms();
			a->a_sent = s[n - 1].seq;
		}
		for (i = 0; i < n; i++)
			free(s[i].resource);
		if (a->a_inflight == 0)
			break;	/* the queue is full: later */
	}
}

static void
soak_ack(struct soak_agent *a, const struct frame_hdr *h, const uint8_t *p)
{
	Opsn__SamplesAck	*m;
	sqlite3_stmt		*st;

	if ((m = opsn__samples_ack__unpack(NULL, h->fh_len, p)) == NULL)
		return;
	if (m->seq > a->a_acked) {
		st = soak_prepare("UPDATE spool SET acked = 1 WHERE agent = ? "
		    "AND seq > ? AND seq <= ?");
		sqlite3_bind_text(st, 1, a->a_name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, (int64_t)a->a_acked);
		sqlite3_bind_int64(st, 3, (int64_t)m->seq);
		soak_step(st);
		sqlite3_finalize(st);
		a->a_acked = m->seq;
	}
	if (a->a_inflight > 0)
		a->a_inflight--;
	a->a_sent_ms = util_mono_ms();
	opsn__samples_ack__free_unpacked(m, NULL);
	soak_send(a);
}

/* ---- desired and observed state ----------------------------------------- */

static void
soak_report(struct soak_agent *a)
{
	Opsn__ObservedState	 os = OPSN__OBSERVED_STATE__INIT;
	Opsn__VmStatus		 st[SOAK_VMS_MAX], *v[SOAK_VMS_MAX];
	size_t			 i;

	for (i = 0; i < a->a_nvms; i++) {
		opsn__vm_status__init(&st[i]);
		st[i].id = a->a_vms[i].v_id;
		st[i].state = a->a_vms[i].v_running ? "running" : "shutoff";
		st[i].generation = a->a_gen;
		st[i].vcpus = a->a_vms[i].v_vcpus;
		st[i].memory_mib = a->a_vms[i].v_mem;
		st[i].pid = a->a_vms[i].v_running ? 4242 : 0;
		v[i] = &st[i];
	}
	os.generation = a->a_gen;
	os.epoch = a->a_epoch;
	os.full = 1;
	os.vms = v;
	os.n_vms = a->a_nvms;
	conn_send_msg(a->a_conn, a->a_version, MSG_OBSERVED_STATE,
	    ++a->a_reqid, ST_OK, &os.base);
}

/* Apply a desired state: the VMs it lists, as it asks; others go. */
static void
soak_desired(struct soak_agent *a, const struct frame_hdr *h,
    const uint8_t *p)
{
	Opsn__DesiredState	*ds;
	sqlite3_stmt		*st;
	struct soak_vm		*v;
	size_t			 i;

	if ((ds = opsn__desired_state__unpack(NULL, h->fh_len, p)) == NULL)
		return;
	if (ds->epoch < a->a_epoch || (ds->epoch == a->a_epoch &&
	    ds->generation < a->a_gen)) {
		opsn__desired_state__free_unpacked(ds, NULL);
		return;
	}
	a->a_nvms = 0;
	for (i = 0; i < ds->n_vms && a->a_nvms < SOAK_VMS_MAX; i++) {
		v = &a->a_vms[a->a_nvms++];
		strlcpy(v->v_id, ds->vms[i]->id, sizeof(v->v_id));
		strlcpy(v->v_name, ds->vms[i]->name, sizeof(v->v_name));
		v->v_running = strcmp(ds->vms[i]->power, "running") == 0;
		v->v_vcpus = ds->vms[i]->vcpus;
		v->v_mem = ds->vms[i]->memory_mib;
	}
	a->a_epoch = ds->epoch;
	a->a_gen = ds->generation;
	opsn__desired_state__free_unpacked(ds, NULL);
	/* As libvirt would: what runs here is on disk before it is said. */
	soak_exec("BEGIN IMMEDIATE");
	st = soak_prepare("DELETE FROM vms WHERE agent = ?");
	sqlite3_bind_text(st, 1, a->a_name, -1, SQLITE_STATIC);
	soak_step(st);
	sqlite3_finalize(st);
	st = soak_prepare("INSERT INTO vms VALUES (?, ?, ?, ?, ?, ?)");
	for (i = 0; i < a->a_nvms; i++) {
		v = &a->a_vms[i];
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, a->a_name, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, v->v_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, v->v_name, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 4, v->v_running);
		sqlite3_bind_int(st, 5, (int)v->v_vcpus);
		sqlite3_bind_int64(st, 6, (int64_t)v->v_mem);
		soak_step(st);
	}
	sqlite3_finalize(st);
	st = soak_prepare("INSERT OR REPLACE INTO applied VALUES (?, ?, ?)");
	sqlite3_bind_text(st, 1, a->a_name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (int64_t)a->a_epoch);
	sqlite3_bind_int64(st, 3, (int64_t)a->a_gen);
	soak_step(st);
	sqlite3_finalize(st);
	soak_exec("COMMIT");
	soak_report(a);
}

/* ---- the link ----------------------------------------------------------- */

static void
soak_set_host(SSL *ssl)
{
	X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), soak_host);
}

static void
soak_redial_cb(uv_timer_t *t)
{
	soak_dial(t->data);
}

static void
soak_redial_later(struct soak_agent *a)
{
	uint32_t	 r;
	uint64_t	 cap = 500ULL << (a->a_failures < 3 ? a->a_failures : 3);

	if (soak_stopping)
		return;
	a->a_failures++;
	util_random(&r, sizeof(r));
	uv_timer_start(&a->a_redial, soak_redial_cb, cap / 2 + r % cap, 0);
}

static void
soak_beat_cb(uv_timer_t *t)
{
	struct soak_agent	*a = t->data;
	Opsn__Heartbeat		 hb = OPSN__HEARTBEAT__INIT;

	if (!a->a_ready)
		return;
	hb.sent_ms = util_mono_ms();
	conn_send_msg(a->a_conn, a->a_version, MSG_HEARTBEAT, ++a->a_reqid,
	    ST_OK, &hb.base);
}

static void
soak_enrolled(struct soak_agent *a, const struct frame_hdr *h,
    const uint8_t *p)
{
	Opsn__EnrolOk	*ok;
	sqlite3_stmt	*st;
	char		*cause = NULL, *key, *cert;

	if (h->fh_status != ST_OK ||
	    (ok = opsn__enrol_ok__unpack(NULL, h->fh_len, p)) == NULL)
		fatalx("%s: enrolment refused", a->a_name);
	if ((a->a_cert = pki_cert_from_pem(ok->cert_pem, strlen(ok->cert_pem),
	    &cause)) == NULL)
		fatalx("%s: %s", a->a_name, cause);
	key = pki_key_pem(a->a_key, &cause);
	cert = xstrdup(ok->cert_pem);
	opsn__enrol_ok__free_unpacked(ok, NULL);
	st = soak_prepare("INSERT INTO agents VALUES (?, ?, ?)");
	sqlite3_bind_text(st, 1, a->a_name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, cert, -1, SQLITE_STATIC);
	soak_step(st);
	sqlite3_finalize(st);
	free(key);
	free(cert);
	conn_close(a->a_conn, "enrolled");
}

static void
soak_ready_cb(struct conn *c, void *arg)
{
	struct soak_agent	*a = arg;
	Opsn__Enrol		 e = OPSN__ENROL__INIT;
	char			*cause = NULL;

	if (a->a_cert == NULL) {
		e.token = a->a_token;
		e.name = a->a_name;
		if ((e.csr_pem = pki_csr_new(a->a_key, a->a_name,
		    &cause)) == NULL)
			fatalx("%s: %s", a->a_name, cause);
		conn_send_msg(c, OPSN_PROTO_MIN, MSG_ENROL, 1, ST_OK, &e.base);
		free(e.csr_pem);
		return;
	}
	simlink_hello(c, a->a_name, "hypervisor", ++a->a_reqid);
}

static void
soak_frame_cb(struct conn *c, const struct frame_hdr *h, const uint8_t *p,
    void *arg)
{
	struct soak_agent	*a = arg;
	Opsn__HelloOk		*ok;
	uint64_t		 beat;

	switch (h->fh_type) {
	case MSG_ENROL_OK:
		soak_enrolled(a, h, p);
		break;
	case MSG_HELLO_OK:
		if ((ok = opsn__hello_ok__unpack(NULL, h->fh_len, p)) == NULL) {
			conn_close(c, "bad HELLO_OK");
			return;
		}
		a->a_version = ok->proto_version;
		beat = ok->heartbeat_interval_ms ? ok->heartbeat_interval_ms :
		    10000;
		opsn__hello_ok__free_unpacked(ok, NULL);
		a->a_ready = 1;
		a->a_failures = 0;
		a->a_sent = a->a_acked;
		a->a_inflight = 0;
		conn_set_idle_timeout(c, (uint32_t)(3 * beat + 1000));
		uv_timer_start(&a->a_beat, soak_beat_cb, beat, beat);
		soak_report(a);
		soak_send(a);
		break;
	case MSG_SAMPLES_ACK:
		soak_ack(a, h, p);
		break;
	case MSG_DESIRED_STATE:
		soak_desired(a, h, p);
		break;
	case MSG_HEARTBEAT_ACK:
		break;
	case MSG_ERROR:
		if (!a->a_ready)
			log_warnx("%s: refused by the controller", a->a_name);
		break;
	}
}

static void
soak_close_cb(struct conn *c, const char *reason, void *arg)
{
	struct soak_agent	*a = arg;

	a->a_conn = NULL;
	a->a_ready = 0;
	uv_timer_stop(&a->a_beat);
	soak_redial_later(a);
}

static const struct conn_cbs soak_cbs = {
	soak_ready_cb, soak_frame_cb, NULL, soak_close_cb
};

static void
soak_dial(struct soak_agent *a)
{
	struct conn_opts	 o = { 0 };
	char			*cause = NULL;
	SSL			*ssl;

	if (soak_stopping || a->a_conn != NULL)
		return;
	o.co_max_frame = FRAME_MAX_PREAUTH;
	o.co_handshake_timeout_ms = SOAK_HANDSHAKE_MS;
	o.co_idle_timeout_ms = SOAK_HANDSHAKE_MS;
	a->a_conn = conn_connect(soak_loop, soak_host, soak_port, soak_ctx,
	    NULL, &o, &soak_cbs, a, &cause);
	if (a->a_conn == NULL) {
		free(cause);
		soak_redial_later(a);
		return;
	}
	ssl = conn_ssl(a->a_conn);
	soak_set_host(ssl);
	if (a->a_cert != NULL && (SSL_use_certificate(ssl, a->a_cert) != 1 ||
	    SSL_use_PrivateKey(ssl, a->a_key) != 1)) {
		ERR_clear_error();
		conn_close(a->a_conn, "cannot use the certificate");
	}
}

/* ---- the process -------------------------------------------------------- */

static void
soak_tick_cb(uv_timer_t *t)
{
	size_t	 i;

	if (!soak_send_only)
		soak_sample_all();
	for (i = 0; i < soak_n; i++)
		soak_send(&soak_agents[i]);
}

static void
soak_signal_cb(uv_signal_t *h, int signum)
{
	size_t	 i;

	soak_stopping = 1;
	uv_timer_stop(&soak_tick);
	uv_close((uv_handle_t *)&soak_tick, NULL);
	for (i = 0; i < soak_n; i++) {
		struct soak_agent *a = &soak_agents[i];

		uv_timer_stop(&a->a_beat);
		uv_timer_stop(&a->a_redial);
		uv_close((uv_handle_t *)&a->a_beat, NULL);
		uv_close((uv_handle_t *)&a->a_redial, NULL);
		if (a->a_conn != NULL)
			conn_close(a->a_conn, "stopping");
	}
	uv_close((uv_handle_t *)&soak_sigterm, NULL);
	uv_close((uv_handle_t *)&soak_sigint, NULL);
}

int
main(int argc, char **argv)
{
	const char	*dir = NULL, *ca = NULL, *prefix = NULL, *tokens = NULL;
	char		 line[256], *cause = NULL;
	FILE		*f = NULL;
	long		 n = 0;
	size_t		 i;
	int		 ch;

	while ((ch = getopt(argc, argv, "a:d:n:p:st:")) != -1) {
		switch (ch) {
		case 'a':
			ca = optarg;
			break;
		case 'd':
			dir = optarg;
			break;
		case 'n':
			n = strtol(optarg, NULL, 10);
			break;
		case 'p':
			prefix = optarg;
			break;
		case 's':
			soak_send_only = 1;
			break;
		case 't':
			tokens = optarg;
			break;
		default:
			soak_usage();
		}
	}
	if (optind != argc - 1 || dir == NULL || ca == NULL ||
	    prefix == NULL || n < 1 || n > 10000)
		soak_usage();
	log_init("soakagents", LOG_LEVEL_WARN, NULL);
	if (util_parse_hostport(argv[optind], &soak_host, &soak_port,
	    &cause) == -1)
		fatalx("%s", cause);
	signal(SIGPIPE, SIG_IGN);
	soak_state_open(dir);
	if ((soak_ctx = simlink_ctx(ca)) == NULL)
		exit(1);
	soak_loop = uv_default_loop();
	soak_n = (size_t)n;
	soak_agents = xcalloc(soak_n, sizeof(*soak_agents));
	if (tokens != NULL && (f = fopen(tokens, "r")) == NULL)
		fatal("%s", tokens);
	for (i = 0; i < soak_n; i++) {
		struct soak_agent *a = &soak_agents[i];

		snprintf(a->a_name, sizeof(a->a_name), "%s%03zu", prefix, i);
		soak_state_load(a);
		if (a->a_cert == NULL) {
			if (f == NULL || fgets(line, sizeof(line), f) == NULL)
				fatalx("%s: not enrolled and no join token",
				    a->a_name);
			line[strcspn(line, "\r\n")] = '\0';
			a->a_token = xstrdup(line);
			if ((a->a_key = pki_key_new(&cause)) == NULL)
				fatalx("%s", cause);
		}
		uv_timer_init(soak_loop, &a->a_beat);
		uv_timer_init(soak_loop, &a->a_redial);
		a->a_beat.data = a->a_redial.data = a;
	}
	if (f != NULL)
		fclose(f);
	for (i = 0; i < soak_n; i++)
		soak_redial_later(&soak_agents[i]);
	uv_timer_init(soak_loop, &soak_tick);
	uv_timer_start(&soak_tick, soak_tick_cb, SOAK_TICK_MS, SOAK_TICK_MS);
	uv_signal_init(soak_loop, &soak_sigterm);
	uv_signal_init(soak_loop, &soak_sigint);
	uv_signal_start(&soak_sigterm, soak_signal_cb, SIGTERM);
	uv_signal_start(&soak_sigint, soak_signal_cb, SIGINT);
	uv_run(soak_loop, UV_RUN_DEFAULT);
	sqlite3_close(soak_db);
	return (0);
}
