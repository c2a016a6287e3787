/*
 * simagents: many simulated agents on one libuv loop, for measuring what
 * the controller costs per connected agent.
 *
 * Each agent makes its own P-256 key and CSR, enrols with one join token
 * (one line of the tokens file each) over server-authenticated TLS, keeps
 * its certificate in memory, then connects with mutual TLS, sends HELLO
 * and a HEARTBEAT at the interval the controller gives in HELLO_OK, from a
 * random offset so that beats spread evenly. Enrolments and connections
 * are started a window at a time so no handshake waits past its timeout.
 *
 * Runs until SIGTERM or SIGINT, then prints one line of key=value counts.
 * Agents are not reconnected: a lost connection is counted, so the run
 * shows it.
 *
 * The scale simulation (-S, tests/bench/scale.sh) goes further: agents
 * "hv0000"... are hypervisors and the last -m of them ("mx0"...) mail
 * backends. A hypervisor answers each desired state with an observed
 * state that shows every VM running at that generation; a mail backend
 * speaks protocol 2 (says the generation it holds, assembles parts,
 * merges nothing but answers each state or delta with a status). With
 * -s they send metering samples of their VMs and mailboxes at that
 * interval. Identities are kept in -i DIR (key and certificate per
 * agent): enrolled once (-E enrols and exits), reused by later runs. A
 * lost connection is dialled again after a second or two, as agents do.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "opsn/conn.h"
#include "opsn/frame.h"
#include "opsn/log.h"
#include "opsn/pki.h"
#include "opsn/util.h"
#include "opsn.pb-c.h"
#include "metering.pb-c.h"
#include "services.pb-c.h"
#include "vmsample.h"
#include "simlink.h"

#define SIM_AGENTS_MAX		100000
#define SIM_WINDOW		32
#define SIM_HANDSHAKE_MS	30000
#define SIM_TOKEN_MAX		256
/* Reasons are logged for the first few failures of each kind only. */
#define SIM_LOG_MAX		5

enum sim_phase {
	SIM_NEW,
	SIM_ENROLLING,
	SIM_ENROLLED,
	SIM_CONNECTING,		/* link up to HELLO_OK */
	SIM_READY,
	SIM_FAILED,		/* enrolment or connection failed */
	SIM_LOST,		/* was ready, then the connection closed */
};

enum sim_stage {
	SIM_STAGE_ENROL,
	SIM_STAGE_LINK,
	SIM_STAGE_STEADY,	/* every agent connected or failed */
};

struct sim_agent {
	char		 a_name[32];
	char		*a_token;
	EVP_PKEY	*a_key;
	char		*a_csr;
	X509		*a_cert;
	struct conn	*a_conn;
	uv_timer_t	 a_beat;
	enum sim_phase	 a_phase;
	uint32_t	 a_version;
	uint32_t	 a_reqid;
	/* Scale mode. */
	int		 a_mail;	/* a mail backend, else a hypervisor */
	uint64_t	 a_gen;		/* the generation it holds */
	char		**a_res;	/* its VMs' or mailboxes' ids */
	size_t		 a_nres;
	uint64_t	 a_seq;		/* metering sequence */
	uv_timer_t	 a_sample;
	int		 a_parts;	/* parts of a whole state so far */
	int		 a_synced;	/* in step since it last connected */
};

static uv_loop_t	*sim_loop;
static SSL_CTX		*sim_ctx;
static struct sim_agent	*sim_agents;
static size_t		 sim_n;
static size_t		 sim_next;	/* next agent to start in this phase */
static size_t		 sim_inflight;
static size_t		 sim_finished;	/* agents done with this phase */
static enum sim_stage	 sim_stage;
static int		 sim_stopping;
static size_t		 sim_timers_open;
static char		*sim_host;
static int		 sim_port;
static uv_signal_t	 sim_sigint, sim_sigterm;
static uint64_t		 sim_t0;

static struct {
	size_t		 enrolled, enrol_failed;
	size_t		 ready, connect_failed, lost, reconnects;
	uint64_t	 beats_sent, acks, pushes, errors, samples;
	unsigned	 logged_enrol, logged_link, logged_lost;
} sim_stats;

/* Scale mode (-S): roles, identities, samples, reconnection. */
static int		 sim_scale;
static size_t		 sim_mail_n;
static const char	*sim_ids;	/* -i: identities folder */
static int		 sim_enrol_only;
static uint64_t		 sim_sample_ms;	/* 0: no samples */
static size_t		 sim_synced;	/* agents in step */

static void	sim_enrol_start(struct sim_agent *);
static void	sim_link_start(struct sim_agent *);
static void	sim_id_save(struct sim_agent *);
static void	sim_scale_ready(struct sim_agent *);
static void	sim_scale_frame(struct sim_agent *, const struct frame_hdr *,
		    const uint8_t *);
static void	sim_redial_cb(uv_timer_t *);
static void	sim_set_synced(struct sim_agent *, int);
static void	sim_stop(void);
static void	sim_phase_check(void);

static void __attribute__((noreturn))
sim_usage(void)
{
	fprintf(stderr, "usage: simagents -n count -t tokens-file -a ca-file "
	    "host:port\n       simagents -S [-E] -i ids-dir [-t tokens-file] "
	    "[-m mail-backends] [-s sample-seconds] -n count -a ca-file "
	    "host:port\n");
	exit(2);
}

/* Start agents of the current phase until the window is full. */
static void
sim_fill_window(void)
{
	while (!sim_stopping && sim_inflight < SIM_WINDOW && sim_next < sim_n) {
		struct sim_agent *a = &sim_agents[sim_next++];

		if (sim_stage == SIM_STAGE_LINK && a->a_phase != SIM_ENROLLED) {
			/* Its enrolment failed: nothing to connect. */
			sim_finished++;
			continue;
		}
		if (sim_stage == SIM_STAGE_ENROL && a->a_phase == SIM_ENROLLED) {
			/* Its identity was kept from an earlier run. */
			sim_finished++;
			continue;
		}
		sim_inflight++;
		if (sim_stage == SIM_STAGE_LINK)
			sim_link_start(a);
		else
			sim_enrol_start(a);
	}
	sim_phase_check();
}

/* An agent finished its phase: start the next one. */
static void
sim_phase_done(void)
{
	sim_inflight--;
	sim_finished++;
	if (!sim_stopping)
		sim_fill_window();
}

/* When every agent has finished this phase, go to the next one. */
static void
sim_phase_check(void)
{
	if (sim_stopping || sim_stage == SIM_STAGE_STEADY ||
	    sim_finished < sim_n || sim_inflight > 0)
		return;
	if (sim_stage == SIM_STAGE_ENROL) {
		printf("simagents: enrolled %zu of %zu in %.1f s\n",
		    sim_stats.enrolled, sim_n,
		    (util_mono_ms() - sim_t0) / 1000.0);
		if (sim_enrol_only) {
			sim_stop();
			return;
		}
		sim_t0 = util_mono_ms();
		sim_stage = SIM_STAGE_LINK;
		sim_next = sim_finished = 0;
		sim_fill_window();
		return;
	}
	printf("simagents: connected %zu of %zu in %.1f s\n", sim_stats.ready,
	    sim_n, (util_mono_ms() - sim_t0) / 1000.0);
	sim_stage = SIM_STAGE_STEADY;
	if (sim_stats.ready == 0)
		sim_stop();
}

/* Check the controller's address in its certificate (we dial an IP). */
static void
sim_set_host(SSL *ssl)
{
	X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), sim_host);
}

static void
sim_log_error(const char *name, const struct frame_hdr *h, const uint8_t *p,
    unsigned *logged)
{
	Opsn__Error	*e;

	if ((*logged)++ >= SIM_LOG_MAX)
		return;
	e = opsn__error__unpack(NULL, h->fh_len, p);
	log_warnx("%s: the controller says: %s (%s, type %u, status %u)",
	    name, e ? e->message : "?", e ? e->code : "?", h->fh_type,
	    h->fh_status);
	if (e != NULL)
		opsn__error__free_unpacked(e, NULL);
}

static void
sim_enrol_ready_cb(struct conn *c, void *arg)
{
	struct sim_agent	*a = arg;
	Opsn__Enrol		 m = OPSN__ENROL__INIT;

	m.token = a->a_token;
	m.name = a->a_name;
	m.csr_pem = a->a_csr;
	if (conn_send_msg(c, OPSN_PROTO_MIN, MSG_ENROL, 1, ST_OK,
	    &m.base) == -1)
		conn_close(c, "cannot queue ENROL");
}

static void
sim_enrol_frame_cb(struct conn *c, const struct frame_hdr *h,
    const uint8_t *p, void *arg)
{
	struct sim_agent	*a = arg;
	Opsn__EnrolOk		*ok;
	char			*cause = NULL;

	if (h->fh_type != MSG_ENROL_OK || h->fh_status != ST_OK) {
		sim_log_error(a->a_name, h, p, &sim_stats.logged_enrol);
		conn_close(c, "enrolment refused");
		return;
	}
	if ((ok = opsn__enrol_ok__unpack(NULL, h->fh_len, p)) == NULL) {
		conn_close(c, "ENROL_OK does not decode");
		return;
	}
	a->a_cert = pki_cert_from_pem(ok->cert_pem, strlen(ok->cert_pem),
	    &cause);
	opsn__enrol_ok__free_unpacked(ok, NULL);
	if (a->a_cert == NULL || X509_check_private_key(a->a_cert,
	    a->a_key) != 1) {
		log_warnx("%s: bad certificate: %s", a->a_name,
		    cause ? cause : "not for our key");
		free(cause);
		X509_free(a->a_cert);
		a->a_cert = NULL;
		conn_close(c, "bad certificate");
		return;
	}
	conn_close(c, "enrolled");
}

static void
sim_enrol_close_cb(struct conn *c, const char *reason, void *arg)
{
	struct sim_agent	*a = arg;

	a->a_conn = NULL;
	if (a->a_cert != NULL) {
		a->a_phase = SIM_ENROLLED;
		sim_stats.enrolled++;
		sim_id_save(a);
	} else {
		a->a_phase = SIM_FAILED;
		sim_stats.enrol_failed++;
		if (sim_stats.logged_enrol++ < SIM_LOG_MAX)
			log_warnx("%s: enrolment failed: %s", a->a_name,
			    reason);
	}
	sim_phase_done();
}

static const struct conn_cbs sim_enrol_cbs = {
	sim_enrol_ready_cb, sim_enrol_frame_cb, NULL, sim_enrol_close_cb
};

static void
sim_enrol_start(struct sim_agent *a)
{
	struct conn_opts	 o = { 0 };
	char			*cause = NULL;

	o.co_max_frame = FRAME_MAX_PREAUTH;
	o.co_handshake_timeout_ms = SIM_HANDSHAKE_MS;
	o.co_idle_timeout_ms = SIM_HANDSHAKE_MS;
	a->a_phase = SIM_ENROLLING;
	a->a_conn = conn_connect(sim_loop, sim_host, sim_port, sim_ctx, NULL,
	    &o, &sim_enrol_cbs, a, &cause);
	if (a->a_conn == NULL) {
		log_warnx("%s: %s", a->a_name, cause);
		free(cause);
		a->a_phase = SIM_FAILED;
		sim_stats.enrol_failed++;
		sim_phase_done();
		return;
	}
	sim_set_host(conn_ssl(a->a_conn));
}

static void
sim_beat_cb(uv_timer_t *t)
{
	struct sim_agent	*a = t->data;
	Opsn__Heartbeat		 hb = OPSN__HEARTBEAT__INIT;

	if (a->a_phase != SIM_READY)
		return;
	hb.sent_ms = util_mono_ms();
	if (conn_send_msg(a->a_conn, a->a_version, MSG_HEARTBEAT,
	    ++a->a_reqid, ST_OK, &hb.base) == 0)
		sim_stats.beats_sent++;
}

static void
sim_link_ready_cb(struct conn *c, void *arg)
{
	struct sim_agent	*a = arg;
	int			 rv;

	if (!sim_scale)
		rv = simlink_hello(c, a->a_name, "web", ++a->a_reqid);
	else
		rv = simlink_hello_inv(c, a->a_name, a->a_mail ? "mail" :
		    "hypervisor", ++a->a_reqid, 64, 512ULL << 30, 10ULL << 40);
	if (rv == -1)
		conn_close(c, "cannot queue HELLO");
}

static void
sim_link_hello_ok(struct sim_agent *a, struct conn *c,
    const struct frame_hdr *h, const uint8_t *p)
{
	Opsn__HelloOk	*ok;
	uint64_t	 beat;
	uint32_t	 r;

	if ((ok = opsn__hello_ok__unpack(NULL, h->fh_len, p)) == NULL) {
		conn_close(c, "HELLO_OK does not decode");
		return;
	}
	a->a_version = ok->proto_version;
	beat = ok->heartbeat_interval_ms ? ok->heartbeat_interval_ms : 10000;
	opsn__hello_ok__free_unpacked(ok, NULL);
	a->a_phase = SIM_READY;
	sim_stats.ready++;
	conn_set_idle_timeout(c, (uint32_t)(3 * beat + 1000));
	/* A random first beat spreads the load over the whole interval. */
	util_random(&r, sizeof(r));
	uv_timer_start(&a->a_beat, sim_beat_cb, r % beat, beat);
	if (sim_scale)
		sim_scale_ready(a);
	if (sim_stage != SIM_STAGE_STEADY)
		sim_phase_done();
}

static void
sim_link_frame_cb(struct conn *c, const struct frame_hdr *h,
    const uint8_t *p, void *arg)
{
	struct sim_agent	*a = arg;

	switch (h->fh_type) {
	case MSG_HELLO_OK:
		if (a->a_phase == SIM_CONNECTING)
			sim_link_hello_ok(a, c, h, p);
		break;
	case MSG_HEARTBEAT_ACK:
		sim_stats.acks++;
		break;
	/* State the controller pushes: answered in scale mode only. */
	case MSG_DESIRED_STATE:
	case MSG_SERVICES_DESIRED:
	case MSG_SERVICES_PART:
	case MSG_SERVICES_DELTA:
		sim_stats.pushes++;
		if (sim_scale)
			sim_scale_frame(a, h, p);
		break;
	case MSG_SAMPLES_ACK:
		sim_stats.pushes++;
		break;
	default:
		sim_stats.errors++;
		sim_log_error(a->a_name, h, p, &sim_stats.logged_link);
		break;
	}
}

static void
sim_link_close_cb(struct conn *c, const char *reason, void *arg)
{
	struct sim_agent	*a = arg;

	a->a_conn = NULL;
	uv_timer_stop(&a->a_beat);
	if (sim_scale) {
		uv_timer_stop(&a->a_sample);
		sim_set_synced(a, 0);
	}
	if (sim_scale && !sim_stopping && sim_stage == SIM_STAGE_STEADY) {
		/* As an agent does: dial again after a second or two. */
		uint32_t r;

		if (a->a_phase == SIM_READY)
			sim_stats.lost++;
		a->a_phase = SIM_ENROLLED;
		util_random(&r, sizeof(r));
		uv_timer_start(&a->a_beat, sim_redial_cb, 1000 + r % 1000, 0);
		return;
	}
	if (a->a_phase == SIM_READY) {
		a->a_phase = SIM_LOST;
		if (!sim_stopping) {
			sim_stats.lost++;
			if (sim_stats.logged_lost++ < SIM_LOG_MAX)
				log_warnx("%s: lost the controller: %s",
				    a->a_name, reason);
		}
		return;
	}
	a->a_phase = SIM_FAILED;
	sim_stats.connect_failed++;
	if (sim_stats.logged_link++ < SIM_LOG_MAX)
		log_warnx("%s: could not connect: %s", a->a_name, reason);
	if (sim_stage != SIM_STAGE_STEADY)
		sim_phase_done();
}

static const struct conn_cbs sim_link_cbs = {
	sim_link_ready_cb, sim_link_frame_cb, NULL, sim_link_close_cb
};

static void
sim_link_start(struct sim_agent *a)
{
	struct conn_opts	 o = { 0 };
	char			*cause = NULL;
	SSL			*ssl;

	if (a->a_phase != SIM_ENROLLED) {
		if (sim_stage != SIM_STAGE_STEADY)
			sim_phase_done();
		return;
	}
	o.co_max_frame = FRAME_MAX_PREAUTH;
	o.co_handshake_timeout_ms = SIM_HANDSHAKE_MS;
	o.co_idle_timeout_ms = SIM_HANDSHAKE_MS;
	a->a_phase = SIM_CONNECTING;
	a->a_conn = conn_connect(sim_loop, sim_host, sim_port, sim_ctx, NULL,
	    &o, &sim_link_cbs, a, &cause);
	if (a->a_conn == NULL) {
		log_warnx("%s: %s", a->a_name, cause);
		free(cause);
		a->a_phase = SIM_FAILED;
		sim_stats.connect_failed++;
		if (sim_stage != SIM_STAGE_STEADY)
			sim_phase_done();
		return;
	}
	/* The ClientHello leaves from the connect callback: still in time. */
	ssl = conn_ssl(a->a_conn);
	sim_set_host(ssl);
	ERR_clear_error();
	if (SSL_use_certificate(ssl, a->a_cert) != 1 ||
	    SSL_use_PrivateKey(ssl, a->a_key) != 1) {
		ERR_clear_error();
		conn_close(a->a_conn, "cannot use the agent's certificate");
	}
}

/* ---- scale mode ----------------------------------------------------------- */

static void
sim_redial_cb(uv_timer_t *t)
{
	struct sim_agent	*a = t->data;

	if (sim_stopping || a->a_conn != NULL)
		return;
	sim_stats.reconnects++;
	sim_link_start(a);
}

/*
 * An agent is in step once it answered its state on this connection (a
 * mail backend holding the controller's generation gets none: once it
 * said what it holds). The line tells the bench when all of them are.
 */
static void
sim_set_synced(struct sim_agent *a, int yes)
{
	if (a->a_synced == yes)
		return;
	a->a_synced = yes;
	if (yes && ++sim_synced == sim_n)
		printf("simagents: all %zu in step at %.1f s\n", sim_n,
		    util_mono_ms() / 1000.0);
	else if (!yes)
		sim_synced--;
}

static void
sim_send(struct sim_agent *a, uint16_t type, const ProtobufCMessage *m)
{
	if (a->a_conn == NULL || conn_send_msg(a->a_conn, a->a_version, type,
	    ++a->a_reqid, ST_OK, m) == -1)
		sim_stats.errors++;
}

static void
sim_have(struct sim_agent *a)
{
	Opsn__ServicesHave	 m = OPSN__SERVICES_HAVE__INIT;

	m.generation = a->a_gen;
	sim_send(a, MSG_SERVICES_HAVE, &m.base);
}

/* The ids of its VMs or mailboxes, for samples. */
static void
sim_res_clear(struct sim_agent *a)
{
	size_t	 i;

	for (i = 0; i < a->a_nres; i++)
		free(a->a_res[i]);
	free(a->a_res);
	a->a_res = NULL;
	a->a_nres = 0;
}

static void
sim_res_add(struct sim_agent *a, const char *id)
{
	a->a_res = xrealloc(a->a_res, (a->a_nres + 1) * sizeof(*a->a_res));
	a->a_res[a->a_nres++] = xstrdup(id);
}

/* One metering batch of every resource it has, 1,000 a frame. */
static void
sim_sample_cb(uv_timer_t *t)
{
	struct sim_agent	*a = t->data;
	Opsn__Samples		 m = OPSN__SAMPLES__INIT;
	Opsn__Sample		*v, **pv;
	size_t			 i, k, n;
	int64_t			 now = (int64_t)util_now() * 1000;

	if (a->a_phase != SIM_READY)
		return;
	for (k = 0; k < a->a_nres; k += n) {
		n = a->a_nres - k < 1000 ? a->a_nres - k : 1000;
		v = xcalloc(n, sizeof(*v));
		pv = xcalloc(n, sizeof(*pv));
		for (i = 0; i < n; i++) {
			opsn__sample__init(&v[i]);
			v[i].seq = ++a->a_seq;
			v[i].ts_ms = now;
			v[i].kind = a->a_mail ? "mailbox" : "vm";
			v[i].resource = a->a_res[k + i];
			v[i].tenant = "";
			v[i].interval_ms = sim_sample_ms;
			if (a->a_mail) {
				v[i].used_bytes = 100ULL << 20;
			} else
				bench_vm_sample(&v[i], a->a_seq);
			pv[i] = &v[i];
		}
		m.samples = pv;
		m.n_samples = n;
		/* It holds nothing older: what it sent was all acknowledged. */
		m.spool_low_seq = v[0].seq;
		m.spool_samples = n;
		sim_send(a, MSG_SAMPLES, &m.base);
		sim_stats.samples += n;
		free(v);
		free(pv);
	}
}

static void
sim_scale_ready(struct sim_agent *a)
{
	uint32_t	 r;

	if (a->a_mail && a->a_version >= 2) {
		sim_have(a);
		sim_set_synced(a, 1);
	}
	if (sim_sample_ms > 0) {
		util_random(&r, sizeof(r));
		uv_timer_start(&a->a_sample, sim_sample_cb, r % sim_sample_ms,
		    sim_sample_ms);
	}
}

/* A hypervisor shows every VM of a desired state running at once. */
static void
sim_hv_desired(struct sim_agent *a, const uint8_t *p, size_t len)
{
	Opsn__DesiredState	*d;
	Opsn__ObservedState	 o = OPSN__OBSERVED_STATE__INIT;
	Opsn__VmStatus		*v, **pv;
	size_t			 i;

	if ((d = opsn__desired_state__unpack(NULL, len, p)) == NULL) {
		sim_stats.errors++;
		return;
	}
	sim_res_clear(a);
	v = xcalloc(d->n_vms + 1, sizeof(*v));
	pv = xcalloc(d->n_vms + 1, sizeof(*pv));
	for (i = 0; i < d->n_vms; i++) {
		opsn__vm_status__init(&v[i]);
		v[i].id = d->vms[i]->id;
		v[i].state = "running";
		v[i].reason = "booted";
		v[i].since = util_now();
		v[i].generation = d->generation;
		v[i].vcpus = d->vms[i]->vcpus;
		v[i].memory_mib = d->vms[i]->memory_mib;
		v[i].pid = 1;
		pv[i] = &v[i];
		sim_res_add(a, d->vms[i]->id);
	}
	o.generation = d->generation;
	o.full = 1;
	o.vms = pv;
	o.n_vms = d->n_vms;
	sim_send(a, MSG_OBSERVED_STATE, &o.base);
	sim_set_synced(a, 1);
	a->a_gen = d->generation;
	free(v);
	free(pv);
	opsn__desired_state__free_unpacked(d, NULL);
}

/* A mail backend reports a generation applied. */
static void
sim_mail_status(struct sim_agent *a, uint64_t gen)
{
	Opsn__ServicesStatus	 st = OPSN__SERVICES_STATUS__INIT;

	a->a_gen = gen;
	st.generation = gen;
	st.ok = 1;
	st.error = "";
	sim_send(a, MSG_SERVICES_STATUS, &st.base);
}

static void
sim_mail_ids(struct sim_agent *a, const Opsn__ServicesDesired *d)
{
	size_t	 i;

	for (i = 0; i < d->n_mailboxes; i++)
		sim_res_add(a, d->mailboxes[i]->id);
}

static void
sim_scale_frame(struct sim_agent *a, const struct frame_hdr *h,
    const uint8_t *p)
{
	Opsn__ServicesDesired	*d;
	Opsn__ServicesPart	*part;
	Opsn__ServicesDelta	*delta;

	switch (h->fh_type) {
	case MSG_DESIRED_STATE:
		sim_hv_desired(a, p, h->fh_len);
		break;
	case MSG_SERVICES_DESIRED:
		if ((d = opsn__services_desired__unpack(NULL, h->fh_len,
		    p)) == NULL)
			break;
		sim_res_clear(a);
		sim_mail_ids(a, d);
		sim_mail_status(a, d->generation);
		opsn__services_desired__free_unpacked(d, NULL);
		break;
	case MSG_SERVICES_PART:
		if ((part = opsn__services_part__unpack(NULL, h->fh_len,
		    p)) == NULL || part->state == NULL)
			break;
		if (part->index == 0) {
			sim_res_clear(a);
			a->a_parts = 0;
		}
		a->a_parts++;
		sim_mail_ids(a, part->state);
		if (part->last)
			sim_mail_status(a, part->state->generation);
		opsn__services_part__free_unpacked(part, NULL);
		break;
	case MSG_SERVICES_DELTA:
		if ((delta = opsn__services_delta__unpack(NULL, h->fh_len,
		    p)) == NULL || delta->changes == NULL)
			break;
		if (delta->base_generation != a->a_gen)
			sim_have(a);
		else {
			sim_mail_ids(a, delta->changes);
			sim_mail_status(a, delta->changes->generation);
		}
		opsn__services_delta__free_unpacked(delta, NULL);
		break;
	}
}

/* Keep an enrolled agent's key and certificate for the next runs. */
static void
sim_id_save(struct sim_agent *a)
{
	char	*path, *pem, *cause = NULL;

	if (sim_ids == NULL)
		return;
	xasprintf(&path, "%s/%s.key", sim_ids, a->a_name);
	if ((pem = pki_key_pem(a->a_key, &cause)) == NULL ||
	    util_write_file(path, pem, strlen(pem), 0600, &cause) == -1)
		fatalx("%s: %s", path, cause);
	free(pem);
	free(path);
	xasprintf(&path, "%s/%s.crt", sim_ids, a->a_name);
	if ((pem = pki_cert_pem(a->a_cert, &cause)) == NULL ||
	    util_write_file(path, pem, strlen(pem), 0600, &cause) == -1)
		fatalx("%s: %s", path, cause);
	free(pem);
	free(path);
}

/* An identity kept by an earlier run: 1 loaded, 0 none. */
static int
sim_id_load(struct sim_agent *a)
{
	char	*key, *crt, *cause = NULL;
	int	 rv = 0;

	if (sim_ids == NULL)
		return (0);
	xasprintf(&key, "%s/%s.key", sim_ids, a->a_name);
	xasprintf(&crt, "%s/%s.crt", sim_ids, a->a_name);
	if (access(key, R_OK) == 0 && access(crt, R_OK) == 0) {
		if ((a->a_key = pki_key_load(key, &cause)) == NULL ||
		    (a->a_cert = pki_cert_load(crt, &cause)) == NULL)
			fatalx("%s: %s", a->a_name, cause);
		a->a_phase = SIM_ENROLLED;
		rv = 1;
	}
	free(key);
	free(crt);
	return (rv);
}

static void
sim_timer_close_cb(uv_handle_t *h)
{
	sim_timers_open--;
}

static void
sim_stop(void)
{
	size_t	 i;

	if (sim_stopping)
		return;
	sim_stopping = 1;
	for (i = 0; i < sim_n; i++) {
		struct sim_agent *a = &sim_agents[i];

		uv_timer_stop(&a->a_beat);
		uv_close((uv_handle_t *)&a->a_beat, sim_timer_close_cb);
		if (sim_scale) {
			uv_timer_stop(&a->a_sample);
			uv_close((uv_handle_t *)&a->a_sample,
			    sim_timer_close_cb);
		}
		if (a->a_conn != NULL)
			conn_close(a->a_conn, "simulation over");
	}
	uv_close((uv_handle_t *)&sim_sigint, NULL);
	uv_close((uv_handle_t *)&sim_sigterm, NULL);
}

static void
sim_signal_cb(uv_signal_t *h, int signum)
{
	sim_stop();
}

/* Read one join token per line; -1 if there are fewer than sim_n. */
static int
sim_load_tokens(const char *path)
{
	FILE	*f;
	char	 line[SIM_TOKEN_MAX];
	size_t	 i = 0;

	if ((f = fopen(path, "r")) == NULL) {
		log_warn("%s", path);
		return (-1);
	}
	while (i < sim_n && fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\r\n")] = '\0';
		if (*line == '\0')
			continue;
		sim_agents[i++].a_token = xstrdup(line);
	}
	fclose(f);
	if (i < sim_n) {
		log_warnx("%s: %zu tokens for %zu agents", path, i, sim_n);
		return (-1);
	}
	return (0);
}

/* Keys and CSRs first, so that key generation does not slow enrolment. */
static int
sim_make_keys(void)
{
	size_t	 i;
	char	*cause = NULL;

	for (i = 0; i < sim_n; i++) {
		struct sim_agent *a = &sim_agents[i];

		if (sim_id_load(a))
			continue;
		if ((a->a_key = pki_key_new(&cause)) == NULL ||
		    (a->a_csr = pki_csr_new(a->a_key, a->a_name,
		    &cause)) == NULL) {
			log_warnx("%s: %s", a->a_name, cause);
			free(cause);
			return (-1);
		}
	}
	return (0);
}

static void
sim_free(void)
{
	size_t	 i;

	for (i = 0; i < sim_n; i++) {
		sim_res_clear(&sim_agents[i]);
		free(sim_agents[i].a_token);
		free(sim_agents[i].a_csr);
		EVP_PKEY_free(sim_agents[i].a_key);
		X509_free(sim_agents[i].a_cert);
	}
	free(sim_agents);
	SSL_CTX_free(sim_ctx);
	free(sim_host);
}

int
main(int argc, char **argv)
{
	const char	*tokens = NULL, *ca = NULL;
	char		*cause = NULL;
	long		 n = 0;
	size_t		 i;
	int		 ch, rc = 1;

	while ((ch = getopt(argc, argv, "a:n:t:Si:Em:s:")) != -1) {
		switch (ch) {
		case 'S':
			sim_scale = 1;
			break;
		case 'i':
			sim_ids = optarg;
			break;
		case 'E':
			sim_enrol_only = 1;
			break;
		case 'm':
			sim_mail_n = (size_t)strtol(optarg, NULL, 10);
			break;
		case 's':
			sim_sample_ms = (uint64_t)strtol(optarg, NULL, 10) *
			    1000;
			break;
		case 'a':
			ca = optarg;
			break;
		case 'n':
			n = strtol(optarg, NULL, 10);
			break;
		case 't':
			tokens = optarg;
			break;
		default:
			sim_usage();
		}
	}
	if (optind != argc - 1 || ca == NULL || (tokens == NULL &&
	    sim_ids == NULL) || n < 1 || n > SIM_AGENTS_MAX ||
	    sim_mail_n > (size_t)n)
		sim_usage();
	log_init("simagents", LOG_LEVEL_WARN, NULL);
	if (util_parse_hostport(argv[optind], &sim_host, &sim_port,
	    &cause) == -1)
		fatalx("%s", cause);
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);

	sim_n = (size_t)n;
	sim_agents = xcalloc(sim_n, sizeof(*sim_agents));
	for (i = 0; i < sim_n; i++) {
		struct sim_agent *a = &sim_agents[i];

		if (!sim_scale)
			snprintf(a->a_name, sizeof(a->a_name), "sim%04zu", i);
		else if (i >= sim_n - sim_mail_n) {
			a->a_mail = 1;
			snprintf(a->a_name, sizeof(a->a_name), "mx%zu",
			    i - (sim_n - sim_mail_n));
		} else
			snprintf(a->a_name, sizeof(a->a_name), "hv%04zu", i);
		/* A metering sequence no earlier run used. */
		a->a_seq = (uint64_t)util_now() * 1000000;
	}
	if ((tokens != NULL && sim_load_tokens(tokens) == -1) ||
	    sim_make_keys() == -1 || (sim_ctx = simlink_ctx(ca)) == NULL)
		goto out;

	sim_loop = uv_default_loop();
	for (i = 0; i < sim_n; i++) {
		uv_timer_init(sim_loop, &sim_agents[i].a_beat);
		sim_agents[i].a_beat.data = &sim_agents[i];
		sim_timers_open++;
		if (sim_scale) {
			uv_timer_init(sim_loop, &sim_agents[i].a_sample);
			sim_agents[i].a_sample.data = &sim_agents[i];
			sim_timers_open++;
		}
	}
	uv_signal_init(sim_loop, &sim_sigint);
	uv_signal_init(sim_loop, &sim_sigterm);
	uv_signal_start(&sim_sigint, sim_signal_cb, SIGINT);
	uv_signal_start(&sim_sigterm, sim_signal_cb, SIGTERM);

	sim_t0 = util_mono_ms();
	sim_fill_window();
	uv_run(sim_loop, UV_RUN_DEFAULT);

	printf("agents=%zu enrolled=%zu enrol_failed=%zu ready=%zu "
	    "connect_failed=%zu lost=%zu heartbeats=%llu acks=%llu "
	    "pushes=%llu errors=%llu reconnects=%zu samples=%llu\n", sim_n,
	    sim_stats.enrolled, sim_stats.enrol_failed, sim_stats.ready,
	    sim_stats.connect_failed, sim_stats.lost,
	    (unsigned long long)sim_stats.beats_sent,
	    (unsigned long long)sim_stats.acks,
	    (unsigned long long)sim_stats.pushes,
	    (unsigned long long)sim_stats.errors, sim_stats.reconnects,
	    (unsigned long long)sim_stats.samples);
	if (sim_timers_open != 0 || uv_loop_close(sim_loop) != 0)
		log_warnx("the loop still has handles open");
	rc = sim_stats.ready > 0 || (sim_enrol_only && sim_stats.enrol_failed ==
	    0) ? 0 : 1;
out:
	sim_free();
	return (rc);
}
