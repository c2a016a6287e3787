/*
 * Framed TLS connections: a server and a client on one loop over
 * 127.0.0.1, with a throwaway ECDSA P-256 CA made here. Every test ends
 * with the loop empty and uv_loop_close() succeeding.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <netdb.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <uv.h>

#include "opsn/conn.h"
#include "opsn/frame.h"
#include "opsn/util.h"
#include "opsn.pb-c.h"

#define WATCHDOG_MS	30000

/* The throwaway PKI, made once for all tests. */
struct pki {
	EVP_PKEY	*ca_key, *srv_key, *cli_key, *ca2_key, *rogue_key;
	X509		*ca, *srv, *cli, *ca2, *rogue;
	SSL_CTX		*sctx;		/* server cert, trusts ca */
	SSL_CTX		*cctx;		/* client cert, trusts ca */
	SSL_CTX		*rogue_cctx;	/* client cert from ca2, trusts ca */
	SSL_CTX		*wary_cctx;	/* client cert, trusts only ca2 */
};
static struct pki	 pki;

struct env;

struct side {
	struct env	*env;
	struct conn	*conn;
	int		 ready;
	int		 closed;
	int		 nframes;
	int		 ndrain;
	int		 errors;
	char		*reason;
	char		 peer_cn[64];
	char		 peer_addr[64];
	uint64_t	 ready_at;
	uint64_t	 closed_at;
	uint64_t	 last_frame_at;
	void		(*hook_ready)(struct side *);
	void		(*hook_frame)(struct side *, const struct frame_hdr *,
			    const uint8_t *);
	void		(*hook_drain)(struct side *);
};

/* A plain TCP client that is not speaking TLS. */
struct raw {
	uv_tcp_t	 tcp;
	uv_connect_t	 creq;
	uv_write_t	 wreq;
	const char	*say;
	int		 open;
	int		 eof;
	char		 buf[4096];
};

struct env {
	uv_loop_t	 loop;
	uv_tcp_t	 listener;
	uv_timer_t	 watchdog;
	uv_timer_t	 timer;		/* for a test's own timing */
	int		 timer_open;
	int		 port;
	int		 timed_out;
	struct conn_opts sopts;
	SSL_CTX		*sctx;
	struct side	 srv;
	struct side	 cli;
	struct raw	 raw;
	/* Test-specific state. */
	int		 n;
	int		 nsent;
	size_t		 sendq_at_refusal;
	size_t		 sendq_at_drain;
	int		 frames_at_resume;
	int		 sends_left;
};

/* --- throwaway PKI ------------------------------------------------------ */

static void
pki_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
	X509_EXTENSION	*ext;

	ext = X509V3_EXT_conf_nid(NULL, v3, nid, value);
	assert_non_null(ext);
	assert_int_equal(X509_add_ext(x, ext, -1), 1);
	X509_EXTENSION_free(ext);
}

/* A certificate for cn and key, signed by issuer (self-signed if NULL). */
static X509 *
pki_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey, int ca)
{
	static long	 serial = 1;
	X509		*x;
	X509_NAME	*name;
	X509V3_CTX	 v3;

	assert_non_null(x = X509_new());
	assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	assert_int_equal(X509_set_pubkey(x, key), 1);
	name = X509_get_subject_name(x);
	assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	    (const unsigned char *)cn, -1, -1, 0), 1);
	assert_int_equal(X509_set_issuer_name(x,
	    issuer != NULL ? X509_get_subject_name(issuer) : name), 1);
	X509V3_set_ctx(&v3, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
	if (ca) {
		pki_ext(x, &v3, NID_basic_constraints, "critical,CA:TRUE");
		pki_ext(x, &v3, NID_key_usage, "critical,keyCertSign,cRLSign");
	} else {
		pki_ext(x, &v3, NID_basic_constraints, "critical,CA:FALSE");
		pki_ext(x, &v3, NID_key_usage, "critical,digitalSignature");
		pki_ext(x, &v3, NID_ext_key_usage, "serverAuth,clientAuth");
	}
	assert_true(X509_sign(x, ikey != NULL ? ikey : key, EVP_sha256()) > 0);
	return (x);
}

static SSL_CTX *
pki_ctx(int server, X509 *cert, EVP_PKEY *key, X509 *trust)
{
	SSL_CTX	*ctx;
	int	 mode = SSL_VERIFY_PEER;

	ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION),
	    1);
	assert_int_equal(SSL_CTX_use_certificate(ctx, cert), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(ctx, key), 1);
	assert_int_equal(X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx),
	    trust), 1);
	if (server)
		mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
	SSL_CTX_set_verify(ctx, mode, NULL);
	return (ctx);
}

static int
group_setup(void **state)
{
	assert_non_null(pki.ca_key = EVP_EC_gen("P-256"));
	assert_non_null(pki.srv_key = EVP_EC_gen("P-256"));
	assert_non_null(pki.cli_key = EVP_EC_gen("P-256"));
	assert_non_null(pki.ca2_key = EVP_EC_gen("P-256"));
	assert_non_null(pki.rogue_key = EVP_EC_gen("P-256"));
	pki.ca = pki_cert("opsn test CA", pki.ca_key, NULL, NULL, 1);
	pki.srv = pki_cert("controller", pki.srv_key, pki.ca, pki.ca_key, 0);
	pki.cli = pki_cert("agent-1", pki.cli_key, pki.ca, pki.ca_key, 0);
	pki.ca2 = pki_cert("other CA", pki.ca2_key, NULL, NULL, 1);
	pki.rogue = pki_cert("agent-1", pki.rogue_key, pki.ca2, pki.ca2_key,
	    0);
	pki.sctx = pki_ctx(1, pki.srv, pki.srv_key, pki.ca);
	pki.cctx = pki_ctx(0, pki.cli, pki.cli_key, pki.ca);
	pki.rogue_cctx = pki_ctx(0, pki.rogue, pki.rogue_key, pki.ca);
	pki.wary_cctx = pki_ctx(0, pki.cli, pki.cli_key, pki.ca2);
	return (0);
}

static int
group_teardown(void **state)
{
	SSL_CTX_free(pki.sctx);
	SSL_CTX_free(pki.cctx);
	SSL_CTX_free(pki.rogue_cctx);
	SSL_CTX_free(pki.wary_cctx);
	X509_free(pki.ca);
	X509_free(pki.srv);
	X509_free(pki.cli);
	X509_free(pki.ca2);
	X509_free(pki.rogue);
	EVP_PKEY_free(pki.ca_key);
	EVP_PKEY_free(pki.srv_key);
	EVP_PKEY_free(pki.cli_key);
	EVP_PKEY_free(pki.ca2_key);
	EVP_PKEY_free(pki.rogue_key);
	return (0);
}

/* --- connection callbacks, recorded per side ---------------------------- */

static void
t_on_ready(struct conn *c, void *arg)
{
	struct side	*s = arg;
	X509		*x;

	assert_ptr_equal(c, s->conn);
	assert_int_equal(s->closed, 0);
	s->ready++;
	s->ready_at = uv_now(&s->env->loop);
	assert_true(conn_is_ready(c));
	if ((x = conn_peer_cert(c)) != NULL)
		X509_NAME_get_text_by_NID(X509_get_subject_name(x),
		    NID_commonName, s->peer_cn, sizeof(s->peer_cn));
	snprintf(s->peer_addr, sizeof(s->peer_addr), "%s", conn_peer_addr(c));
	if (s->hook_ready != NULL)
		s->hook_ready(s);
}

static void
t_on_frame(struct conn *c, const struct frame_hdr *h, const uint8_t *p,
    void *arg)
{
	struct side	*s = arg;

	assert_ptr_equal(c, s->conn);
	assert_int_equal(s->closed, 0);
	s->nframes++;
	s->last_frame_at = uv_now(&s->env->loop);
	if (s->hook_frame != NULL)
		s->hook_frame(s, h, p);
}

static void
t_on_drain(struct conn *c, void *arg)
{
	struct side	*s = arg;

	assert_ptr_equal(c, s->conn);
	assert_int_equal(s->closed, 0);
	s->ndrain++;
	if (s->hook_drain != NULL)
		s->hook_drain(s);
}

static void
t_on_close(struct conn *c, const char *reason, void *arg)
{
	struct side	*s = arg;

	assert_ptr_equal(c, s->conn);
	assert_non_null(reason);
	s->closed++;
	s->closed_at = uv_now(&s->env->loop);
	free(s->reason);
	s->reason = xstrdup(reason);
	/* The connection is freed right after this call. */
	s->conn = NULL;
}

static const struct conn_cbs t_cbs = {
	t_on_ready, t_on_frame, t_on_drain, t_on_close
};

/* --- the test environment ----------------------------------------------- */

static void
env_raw_close(struct raw *r)
{
	if (r->open && !uv_is_closing((uv_handle_t *)&r->tcp))
		uv_close((uv_handle_t *)&r->tcp, NULL);
}

/* Nothing finished in time: close everything so the loop ends. */
static void
env_watchdog_cb(uv_timer_t *t)
{
	struct env	*e = t->data;

	e->timed_out = 1;
	if (e->srv.conn != NULL)
		conn_close(e->srv.conn, "watchdog");
	if (e->cli.conn != NULL)
		conn_close(e->cli.conn, "watchdog");
	if (!uv_is_closing((uv_handle_t *)&e->listener))
		uv_close((uv_handle_t *)&e->listener, NULL);
	if (e->timer_open && !uv_is_closing((uv_handle_t *)&e->timer))
		uv_close((uv_handle_t *)&e->timer, NULL);
	env_raw_close(&e->raw);
}

static void
env_accept_cb(uv_stream_t *l, int status)
{
	struct env	*e = l->data;
	char		*cause = NULL;

	assert_int_equal(status, 0);
	e->srv.conn = conn_accept(l, e->sctx, &e->sopts, &t_cbs, &e->srv,
	    &cause);
	if (e->srv.conn == NULL)
		fail_msg("conn_accept: %s", cause);
	/* One connection per test. */
	uv_close((uv_handle_t *)l, NULL);
}

static void
env_init(struct env *e)
{
	memset(e, 0, sizeof(*e));
	assert_int_equal(uv_loop_init(&e->loop), 0);
	e->srv.env = e;
	e->cli.env = e;
	e->sctx = pki.sctx;
	assert_int_equal(uv_timer_init(&e->loop, &e->watchdog), 0);
	e->watchdog.data = e;
	uv_timer_start(&e->watchdog, env_watchdog_cb, WATCHDOG_MS, 0);
	/* The watchdog alone must not keep the loop running. */
	uv_unref((uv_handle_t *)&e->watchdog);
}

/* Listen on sa with port 0 (127.0.0.1 if NULL) and note the port. */
static void
env_listen_on(struct env *e, const struct sockaddr *sa)
{
	struct sockaddr_in	 sin;
	struct sockaddr_storage	 ss;
	int			 len = sizeof(ss);

	assert_int_equal(uv_tcp_init(&e->loop, &e->listener), 0);
	e->listener.data = e;
	if (sa == NULL) {
		assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sin), 0);
		sa = (struct sockaddr *)&sin;
	}
	assert_int_equal(uv_tcp_bind(&e->listener, sa, 0), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&e->listener, 8,
	    env_accept_cb), 0);
	assert_int_equal(uv_tcp_getsockname(&e->listener,
	    (struct sockaddr *)&ss, &len), 0);
	if (ss.ss_family == AF_INET6)
		e->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	else
		e->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	assert_true(e->port > 0);
}

static void
env_listen(struct env *e)
{
	env_listen_on(e, NULL);
}

static void
env_connect(struct env *e, SSL_CTX *cctx, const struct conn_opts *copts)
{
	char	*cause = NULL;

	e->cli.conn = conn_connect(&e->loop, "127.0.0.1", e->port, cctx,
	    "controller", copts, &t_cbs, &e->cli, &cause);
	if (e->cli.conn == NULL)
		fail_msg("conn_connect: %s", cause);
}

/* Run until nothing is left, then check no handle leaked. */
static void
env_run(struct env *e)
{
	uv_run(&e->loop, UV_RUN_DEFAULT);
	assert_false(e->timed_out);
	uv_close((uv_handle_t *)&e->watchdog, NULL);
	uv_run(&e->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&e->loop), 0);
	assert_null(e->srv.conn);
	assert_null(e->cli.conn);
}

static void
env_done(struct env *e)
{
	free(e->srv.reason);
	free(e->cli.reason);
}

static uint8_t
pattern(uint32_t reqid, size_t i)
{
	return ((uint8_t)(reqid * 131 + i * 7));
}

static int
check_pattern(uint32_t reqid, const uint8_t *p, size_t len)
{
	size_t	 i;

	for (i = 0; i < len; i++)
		if (p[i] != pattern(reqid, i))
			return (-1);
	return (0);
}

static int
send_pattern(struct conn *c, uint16_t type, uint32_t reqid, size_t len)
{
	uint8_t	*p;
	size_t	 i;
	int	 r;

	p = xmalloc(len);
	for (i = 0; i < len; i++)
		p[i] = pattern(reqid, i);
	r = conn_send_raw(c, 1, type, reqid, ST_OK, p, len);
	free(p);
	return (r);
}

/* --- round trip with mutual TLS ----------------------------------------- */

static void
rt_srv_frame(struct side *s, const struct frame_hdr *h, const uint8_t *p)
{
	Opsn__Error	*m;

	assert_int_equal(h->fh_type, MSG_HELLO);
	assert_int_equal(h->fh_version, 1);
	assert_int_equal(h->fh_reqid, 7);
	m = opsn__error__unpack(NULL, h->fh_len, p);
	assert_non_null(m);
	assert_string_equal(m->code, "hello");
	assert_string_equal(m->message, "from the agent");
	opsn__error__free_unpacked(m, NULL);
	assert_int_equal(conn_send_raw(s->conn, 1, MSG_HELLO_OK, 7, ST_OK,
	    "welcome", 7), 0);
}

static void
rt_cli_frame(struct side *s, const struct frame_hdr *h, const uint8_t *p)
{
	assert_int_equal(h->fh_type, MSG_HELLO_OK);
	assert_int_equal(h->fh_reqid, 7);
	assert_int_equal(h->fh_status, ST_OK);
	assert_int_equal(h->fh_len, 7);
	assert_memory_equal(p, "welcome", 7);
	conn_close(s->conn, "done");
}

static void
conn_frames_round_trip_with_mutual_tls(void **state)
{
	struct env	 e;
	Opsn__Error	 m = OPSN__ERROR__INIT;
	char		 want[64];

	env_init(&e);
	env_listen(&e);
	e.srv.hook_frame = rt_srv_frame;
	e.cli.hook_frame = rt_cli_frame;
	env_connect(&e, pki.cctx, NULL);

	/* Sent before the handshake: queued, then flushed. */
	m.code = "hello";
	m.message = "from the agent";
	assert_false(conn_is_ready(e.cli.conn));
	assert_int_equal(conn_send_msg(e.cli.conn, 1, MSG_HELLO, 7, ST_OK,
	    &m.base), 0);
	assert_true(conn_sendq_bytes(e.cli.conn) > FRAME_HDR_LEN);

	env_run(&e);
	assert_int_equal(e.srv.ready, 1);
	assert_int_equal(e.cli.ready, 1);
	assert_string_equal(e.srv.peer_cn, "agent-1");
	assert_string_equal(e.cli.peer_cn, "controller");
	assert_int_equal(e.srv.nframes, 1);
	assert_int_equal(e.cli.nframes, 1);
	assert_int_equal(e.cli.closed, 1);
	assert_string_equal(e.cli.reason, "done");
	assert_int_equal(e.srv.closed, 1);
	assert_string_equal(e.srv.reason, "peer closed the connection");
	assert_true(strncmp(e.srv.peer_addr, "127.0.0.1:", 10) == 0);
	snprintf(want, sizeof(want), "127.0.0.1:%d", e.port);
	assert_string_equal(e.cli.peer_addr, want);
	env_done(&e);
}

/* --- many frames and a large one ---------------------------------------- */

#define MANY_N		2000
#define LARGE_LEN	(1024 * 1024)

static size_t
many_len(uint32_t i)
{
	return (i == MANY_N ? LARGE_LEN : (i * 37) % 1500);
}

static void
many_send(struct conn *c, uint32_t from, uint32_t to)
{
	uint32_t	 i;

	for (i = from; i < to; i++)
		assert_int_equal(send_pattern(c, MSG_HEARTBEAT, i,
		    many_len(i)), 0);
}

static void
many_cli_ready(struct side *s)
{
	/* The second half, then the large frame, after the handshake. */
	many_send(s->conn, MANY_N / 2, MANY_N + 1);
}

static void
many_srv_frame(struct side *s, const struct frame_hdr *h, const uint8_t *p)
{
	uint32_t	 want = (uint32_t)s->nframes - 1;

	if (h->fh_reqid != want || h->fh_len != many_len(want) ||
	    check_pattern(want, p, h->fh_len) != 0)
		s->errors++;
	if (h->fh_reqid == MANY_N)
		conn_close(s->conn, "got them all");
}

static void
conn_many_frames_and_a_large_frame_arrive_in_order(void **state)
{
	struct env	 e;

	env_init(&e);
	e.sopts.co_max_frame = 2 * 1024 * 1024;
	env_listen(&e);
	e.cli.hook_ready = many_cli_ready;
	e.srv.hook_frame = many_srv_frame;
	env_connect(&e, pki.cctx, NULL);
	many_send(e.cli.conn, 0, MANY_N / 2);

	env_run(&e);
	assert_int_equal(e.srv.nframes, MANY_N + 1);
	assert_int_equal(e.srv.errors, 0);
	assert_string_equal(e.srv.reason, "got them all");
	assert_int_equal(e.cli.closed, 1);
	env_done(&e);
}

/* --- oversized frame ---------------------------------------------------- */

static void
big_cli_ready(struct side *s)
{
	assert_int_equal(send_pattern(s->conn, MSG_HELLO, 1, 100000), 0);
}

static void
conn_oversized_frame_closes_receiver_naming_the_length(void **state)
{
	struct env	 e;

	env_init(&e);
	env_listen(&e);		/* default limit: FRAME_MAX_PREAUTH */
	e.cli.hook_ready = big_cli_ready;
	env_connect(&e, pki.cctx, NULL);

	env_run(&e);
	assert_int_equal(e.srv.nframes, 0);
	assert_int_equal(e.srv.closed, 1);
	assert_non_null(strstr(e.srv.reason, "length 100000"));
	assert_int_equal(e.cli.closed, 1);
	env_done(&e);
}

static void
raise_srv_ready(struct side *s)
{
	conn_set_max_frame(s->conn, 200000);
}

static void
raise_srv_frame(struct side *s, const struct frame_hdr *h, const uint8_t *p)
{
	if (h->fh_len != 100000 || check_pattern(1, p, h->fh_len) != 0)
		s->errors++;
	conn_close(s->conn, "ok");
}

static void
conn_set_max_frame_admits_larger_frames(void **state)
{
	struct env	 e;

	env_init(&e);
	env_listen(&e);
	e.srv.hook_ready = raise_srv_ready;
	e.srv.hook_frame = raise_srv_frame;
	e.cli.hook_ready = big_cli_ready;
	env_connect(&e, pki.cctx, NULL);

	env_run(&e);
	assert_int_equal(e.srv.nframes, 1);
	assert_int_equal(e.srv.errors, 0);
	assert_string_equal(e.srv.reason, "ok");
	env_done(&e);
}

/* --- certificates from the wrong CA ------------------------------------- */

static void
conn_client_cert_from_other_ca_fails_handshake(void **state)
{
	struct env	 e;

	env_init(&e);
	env_listen(&e);
	env_connect(&e, pki.rogue_cctx, NULL);

	env_run(&e);
	assert_int_equal(e.srv.ready, 0);
	assert_int_equal(e.srv.closed, 1);
	assert_non_null(strstr(e.srv.reason, "TLS handshake failed: "));
	assert_non_null(strstr(e.srv.reason, "certificate verify failed"));
	assert_int_equal(e.cli.closed, 1);
	assert_non_null(strstr(e.cli.reason, "TLS"));
	assert_int_equal(e.srv.nframes + e.cli.nframes, 0);
	env_done(&e);
}

static void
conn_server_cert_from_other_ca_fails_client_handshake(void **state)
{
	struct env	 e;

	env_init(&e);
	env_listen(&e);
	env_connect(&e, pki.wary_cctx, NULL);

	env_run(&e);
	assert_int_equal(e.cli.ready, 0);
	assert_int_equal(e.srv.ready, 0);
	assert_non_null(strstr(e.cli.reason, "TLS handshake failed: "));
	/* The server sends its CA too, which the client does not trust. */
	assert_non_null(strstr(e.cli.reason, "certificate verify failed "
	    "(self-signed certificate in certificate chain)"));
	assert_non_null(strstr(e.srv.reason, "TLS"));
	env_done(&e);
}

/* --- peers that do not speak TLS ---------------------------------------- */

static void
raw_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct raw	*r = h->data;

	buf->base = r->buf;
	buf->len = sizeof(r->buf);
}

static void
raw_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct raw	*r = s->data;

	if (n < 0) {
		r->eof = 1;
		env_raw_close(r);
	}
}

static void
raw_write_cb(uv_write_t *req, int status)
{
}

static void
raw_connect_cb(uv_connect_t *req, int status)
{
	struct raw	*r = req->data;
	uv_buf_t	 buf;

	assert_int_equal(status, 0);
	if (r->say != NULL) {
		buf = uv_buf_init((char *)r->say, (unsigned int)strlen(r->say));
		assert_int_equal(uv_write(&r->wreq, (uv_stream_t *)&r->tcp,
		    &buf, 1, raw_write_cb), 0);
	}
	assert_int_equal(uv_read_start((uv_stream_t *)&r->tcp, raw_alloc_cb,
	    raw_read_cb), 0);
}

static void
raw_connect(struct env *e, const char *say)
{
	struct sockaddr_in	 sin;
	struct raw		*r = &e->raw;

	r->say = say;
	assert_int_equal(uv_tcp_init(&e->loop, &r->tcp), 0);
	r->open = 1;
	r->tcp.data = r;
	r->creq.data = r;
	assert_int_equal(uv_ip4_addr("127.0.0.1", e->port, &sin), 0);
	assert_int_equal(uv_tcp_connect(&r->creq, &r->tcp,
	    (struct sockaddr *)&sin, raw_connect_cb), 0);
}

static void
conn_plaintext_client_is_closed_without_crash(void **state)
{
	struct env	 e;

	env_init(&e);
	env_listen(&e);
	raw_connect(&e, "GET / HTTP/1.0\r\n\r\n");

	env_run(&e);
	assert_int_equal(e.srv.ready, 0);
	assert_int_equal(e.srv.closed, 1);
	assert_non_null(strstr(e.srv.reason, "TLS handshake failed: "));
	assert_int_equal(e.raw.eof, 1);
	env_done(&e);
}

static void
conn_handshake_timeout_closes_silent_client(void **state)
{
	struct env	 e;

	env_init(&e);
	e.sopts.co_handshake_timeout_ms = 100;
	env_listen(&e);
	raw_connect(&e, NULL);

	env_run(&e);
	assert_int_equal(e.srv.closed, 1);
	assert_non_null(strstr(e.srv.reason, "handshake timed out"));
	assert_int_equal(e.raw.eof, 1);
	env_done(&e);
}

/* --- idle timeout ------------------------------------------------------- */

#define IDLE_MS		150
#define BEAT_MS		50
#define BEATS		4

static void
idle_beat_cb(uv_timer_t *t)
{
	struct env	*e = t->data;

	if (e->cli.conn != NULL)
		assert_int_equal(conn_send_raw(e->cli.conn, 1, MSG_HEARTBEAT,
		    (uint32_t)e->n, ST_OK, NULL, 0), 0);
	if (++e->n == BEATS)
		uv_close((uv_handle_t *)t, NULL);
}

static void
idle_cli_ready(struct side *s)
{
	struct env	*e = s->env;

	assert_int_equal(uv_timer_init(&e->loop, &e->timer), 0);
	e->timer_open = 1;
	e->timer.data = e;
	uv_timer_start(&e->timer, idle_beat_cb, BEAT_MS, BEAT_MS);
}

static void
idle_srv_frame(struct side *s, const struct frame_hdr *h, const uint8_t *p)
{
	assert_int_equal(h->fh_len, 0);
	assert_non_null(p);
}

static void
conn_idle_timeout_counts_from_last_byte_received(void **state)
{
	struct env	 e;

	env_init(&e);
	e.sopts.co_idle_timeout_ms = IDLE_MS;
	env_listen(&e);
	e.cli.hook_ready = idle_cli_ready;
	e.srv.hook_frame = idle_srv_frame;
	env_connect(&e, pki.cctx, NULL);

	env_run(&e);
	assert_int_equal(e.srv.nframes, BEATS);
	assert_string_equal(e.srv.reason, "idle timeout");
	/* The heartbeats kept it open past one idle period. */
	assert_true(e.srv.closed_at - e.srv.ready_at >= BEATS * BEAT_MS);
	assert_true(e.srv.closed_at - e.srv.last_frame_at >= IDLE_MS);
	assert_string_equal(e.cli.reason, "peer closed the connection");
	env_done(&e);
}

static void
conn_set_idle_timeout_applies_after_handshake(void **state)
{
	struct env	 e;

	env_init(&e);
	env_listen(&e);
	env_connect(&e, pki.cctx, NULL);
	conn_set_idle_timeout(e.cli.conn, 100);

	env_run(&e);
	assert_int_equal(e.cli.ready, 1);
	assert_string_equal(e.cli.reason, "idle timeout");
	assert_true(e.cli.closed_at - e.cli.ready_at >= 100);
	assert_string_equal(e.srv.reason, "peer closed the connection");
	env_done(&e);
}

/* --- send queue backpressure -------------------------------------------- */

#define BP_HIGH		(256 * 1024)
#define BP_LOW		(64 * 1024)
#define BP_FRAME	(16 * 1024)

static void
bp_resume_cb(uv_timer_t *t)
{
	struct env	*e = t->data;

	e->frames_at_resume = e->srv.nframes;
	conn_resume_read(e->srv.conn);
	uv_close((uv_handle_t *)t, NULL);
}

static void
bp_srv_ready(struct side *s)
{
	struct env	*e = s->env;

	conn_pause_read(s->conn);
	assert_int_equal(uv_timer_init(&e->loop, &e->timer), 0);
	e->timer_open = 1;
	e->timer.data = e;
	uv_timer_start(&e->timer, bp_resume_cb, 200, 0);
}

static void
bp_cli_ready(struct side *s)
{
	struct env	*e = s->env;

	while (send_pattern(s->conn, MSG_HEARTBEAT, (uint32_t)e->nsent,
	    BP_FRAME) == 0) {
		e->nsent++;
		assert_true(e->nsent < 1000);
	}
	e->sendq_at_refusal = conn_sendq_bytes(s->conn);
	/* Still refused until it drains. */
	assert_int_equal(conn_send_raw(s->conn, 1, MSG_HEARTBEAT, 0, ST_OK,
	    NULL, 0), -1);
}

static void
bp_cli_drain(struct side *s)
{
	struct env	*e = s->env;

	e->sendq_at_drain = conn_sendq_bytes(s->conn);
	assert_int_equal(send_pattern(s->conn, MSG_HELLO, (uint32_t)e->nsent,
	    10), 0);
}

static void
bp_srv_frame(struct side *s, const struct frame_hdr *h, const uint8_t *p)
{
	uint32_t	 want = (uint32_t)s->nframes - 1;

	if (h->fh_reqid != want || check_pattern(want, p, h->fh_len) != 0)
		s->errors++;
	if (h->fh_type == MSG_HELLO)
		conn_close(s->conn, "done");
}

static void
conn_send_queue_refuses_above_high_and_drains(void **state)
{
	struct env		 e;
	struct conn_opts	 copts;

	env_init(&e);
	env_listen(&e);
	memset(&copts, 0, sizeof(copts));
	copts.co_sendq_high = BP_HIGH;
	copts.co_sendq_low = BP_LOW;
	e.srv.hook_ready = bp_srv_ready;
	e.srv.hook_frame = bp_srv_frame;
	e.cli.hook_ready = bp_cli_ready;
	e.cli.hook_drain = bp_cli_drain;
	env_connect(&e, pki.cctx, &copts);

	env_run(&e);
	assert_true(e.nsent >= BP_HIGH / BP_FRAME);
	assert_true(e.sendq_at_refusal > BP_HIGH);
	assert_int_equal(e.cli.ndrain, 1);
	assert_true(e.sendq_at_drain < BP_LOW);
	/* The paused server had read at most one buffer's worth. */
	assert_true(e.frames_at_resume < e.nsent);
	assert_int_equal(e.srv.nframes, e.nsent + 1);
	assert_int_equal(e.srv.errors, 0);
	assert_string_equal(e.srv.reason, "done");
	env_done(&e);
}

/* --- closing from inside callbacks -------------------------------------- */

static void
cif_cli_ready(struct side *s)
{
	int	 i;

	for (i = 0; i < 20; i++)
		assert_int_equal(send_pattern(s->conn, MSG_HEARTBEAT,
		    (uint32_t)i, 100), 0);
}

static void
cif_srv_frame(struct side *s, const struct frame_hdr *h, const uint8_t *p)
{
	conn_close(s->conn, "closing from on_frame");
	conn_close(s->conn, "a second close is ignored");
	assert_false(conn_is_ready(s->conn));
	assert_int_equal(conn_send_raw(s->conn, 1, MSG_HEARTBEAT, 1, ST_OK,
	    "x", 1), -1);
}

static void
conn_close_inside_on_frame_is_safe(void **state)
{
	struct env	 e;

	env_init(&e);
	env_listen(&e);
	e.cli.hook_ready = cif_cli_ready;
	e.srv.hook_frame = cif_srv_frame;
	env_connect(&e, pki.cctx, NULL);

	env_run(&e);
	/* No frame after the close, even those already decrypted. */
	assert_int_equal(e.srv.nframes, 1);
	assert_int_equal(e.srv.closed, 1);
	assert_string_equal(e.srv.reason, "closing from on_frame");
	assert_int_equal(e.cli.closed, 1);
	env_done(&e);
}

static void
cir_cli_ready(struct side *s)
{
	assert_int_equal(send_pattern(s->conn, MSG_HEARTBEAT, 0, 10), 0);
	conn_close(s->conn, "closing from on_ready");
}

static void
conn_close_inside_on_ready_flushes_queued_frames(void **state)
{
	struct env	 e;

	env_init(&e);
	env_listen(&e);
	e.cli.hook_ready = cir_cli_ready;
	env_connect(&e, pki.cctx, NULL);

	env_run(&e);
	assert_string_equal(e.cli.reason, "closing from on_ready");
	assert_int_equal(e.srv.nframes, 1);
	assert_string_equal(e.srv.reason, "peer closed the connection");
	env_done(&e);
}

static void
conn_close_before_connect_completes_frees_quietly(void **state)
{
	struct env	 e;

	env_init(&e);
	env_listen(&e);
	env_connect(&e, pki.cctx, NULL);
	assert_int_equal(conn_send_raw(e.cli.conn, 1, MSG_HELLO, 1, ST_OK,
	    "x", 1), 0);
	conn_close(e.cli.conn, "changed my mind");

	env_run(&e);
	assert_int_equal(e.cli.ready, 0);
	assert_int_equal(e.cli.closed, 1);
	assert_string_equal(e.cli.reason, "changed my mind");
	/* The server may or may not have seen the TCP connection. */
	assert_int_equal(e.srv.nframes, 0);
	env_done(&e);
}

/* --- connection errors -------------------------------------------------- */

static void
conn_connect_refused_reports_reason(void **state)
{
	struct env	 e;
	char		 want[64];

	env_init(&e);
	/* Take a free port, then let it go so nothing listens there. */
	env_listen(&e);
	uv_close((uv_handle_t *)&e.listener, NULL);
	uv_run(&e.loop, UV_RUN_NOWAIT);
	env_connect(&e, pki.cctx, NULL);

	env_run(&e);
	assert_int_equal(e.cli.ready, 0);
	snprintf(want, sizeof(want), "connect to 127.0.0.1:%d: ", e.port);
	assert_non_null(strstr(e.cli.reason, want));
	assert_non_null(strstr(e.cli.reason, "refused"));
	env_done(&e);
}

static void
conn_connect_resolves_host_names(void **state)
{
	struct env		 e;
	struct addrinfo		 hints, *ai;
	struct sockaddr_storage	 ss;
	uv_getaddrinfo_t	 req;
	char			 want[64], *cause = NULL;

	env_init(&e);
	/* Listen where "localhost" resolves first, as conn_connect will. */
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_ADDRCONFIG;
	assert_int_equal(uv_getaddrinfo(&e.loop, &req, NULL, "localhost", "0",
	    &hints), 0);
	ai = req.addrinfo;
	assert_non_null(ai);
	memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
	uv_freeaddrinfo(ai);
	env_listen_on(&e, (struct sockaddr *)&ss);
	e.cli.hook_ready = cir_cli_ready;

	e.cli.conn = conn_connect(&e.loop, "localhost", e.port, pki.cctx,
	    NULL, NULL, &t_cbs, &e.cli, &cause);
	if (e.cli.conn == NULL)
		fail_msg("conn_connect: %s", cause);
	snprintf(want, sizeof(want), "localhost:%d", e.port);
	assert_string_equal(conn_peer_addr(e.cli.conn), want);

	env_run(&e);
	assert_int_equal(e.cli.ready, 1);
	assert_string_equal(e.srv.peer_cn, "agent-1");
	snprintf(want, sizeof(want), ss.ss_family == AF_INET6 ? "[::1]:%d" :
	    "127.0.0.1:%d", e.port);
	assert_string_equal(e.cli.peer_addr, want);
	assert_int_equal(e.srv.nframes, 1);
	env_done(&e);
}

static void
conn_connect_rejects_bad_port_at_once(void **state)
{
	uv_loop_t	 loop;
	char		*cause = NULL;

	assert_int_equal(uv_loop_init(&loop), 0);
	assert_null(conn_connect(&loop, "127.0.0.1", 0, pki.cctx, NULL, NULL,
	    &t_cbs, NULL, &cause));
	assert_non_null(strstr(cause, "port"));
	free(cause);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(conn_frames_round_trip_with_mutual_tls),
		cmocka_unit_test(
		    conn_many_frames_and_a_large_frame_arrive_in_order),
		cmocka_unit_test(
		    conn_oversized_frame_closes_receiver_naming_the_length),
		cmocka_unit_test(conn_set_max_frame_admits_larger_frames),
		cmocka_unit_test(
		    conn_client_cert_from_other_ca_fails_handshake),
		cmocka_unit_test(
		    conn_server_cert_from_other_ca_fails_client_handshake),
		cmocka_unit_test(conn_plaintext_client_is_closed_without_crash),
		cmocka_unit_test(conn_handshake_timeout_closes_silent_client),
		cmocka_unit_test(
		    conn_idle_timeout_counts_from_last_byte_received),
		cmocka_unit_test(conn_set_idle_timeout_applies_after_handshake),
		cmocka_unit_test(conn_send_queue_refuses_above_high_and_drains),
		cmocka_unit_test(conn_close_inside_on_frame_is_safe),
		cmocka_unit_test(
		    conn_close_inside_on_ready_flushes_queued_frames),
		cmocka_unit_test(
		    conn_close_before_connect_completes_frees_quietly),
		cmocka_unit_test(conn_connect_refused_reports_reason),
		cmocka_unit_test(conn_connect_resolves_host_names),
		cmocka_unit_test(conn_connect_rejects_bad_port_at_once),
	};

	return (cmocka_run_group_tests(tests, group_setup, group_teardown));
}
