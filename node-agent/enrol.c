/*
 * Enrolment: the agent makes its key, sends a CSR with a one-time join
 * token over server-authenticated TLS, and stores the certificate it gets
 * back. The controller's CA is pinned by --ca FILE or by the fingerprint
 * the join token carries. Nothing is stored unless enrolment succeeds.
 */
#include <arpa/inet.h>

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
#include "agent.h"

struct enrol_ctx {
	struct agent	*a;
	const char	*host;
	char		 pin[65];	/* CA fingerprint from the token, or "" */
	char		*csr;
	char		*cert_pem;
	char		*ca_pem;
	char		*cause;		/* why this attempt failed */
	int		 done;
};

/* A path in the data folder (caller frees). */
char *
enrol_path(const struct agent *a, const char *file)
{
	char	*p;

	xasprintf(&p, "%s/%s", a->conf.data_dir, file);
	return (p);
}

/* Has this agent a certificate already? */
int
enrol_have_cert(const struct agent *a)
{
	char	*p = enrol_path(a, "cert.pem");
	int	 rv = access(p, R_OK) == 0;

	free(p);
	return (rv);
}

/*
 * Ask OpenSSL to check the controller's address or name in its cert: in
 * the subjectAltName only. Node certificates are named by their CN (and a
 * SAN); a CN must never pass for a server name.
 */
void
enrol_set_host(SSL *ssl, const char *host)
{
	X509_VERIFY_PARAM	*param = SSL_get0_param(ssl);
	unsigned char		 buf[16];

	X509_VERIFY_PARAM_set_hostflags(param,
	    X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
	if (inet_pton(AF_INET, host, buf) == 1 ||
	    inet_pton(AF_INET6, host, buf) == 1)
		X509_VERIFY_PARAM_set1_ip_asc(param, host);
	else {
		X509_VERIFY_PARAM_set1_host(param, host, 0);
		SSL_set_tlsext_host_name(ssl, host);
	}
}

/* Client TLS 1.3 context verifying the controller against ca_file. */
SSL_CTX *
enrol_ssl_ctx(const char *ca_file, const char *cert, const char *key,
    char **cause)
{
	SSL_CTX	*ctx;
	char	 err[256];

	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		goto fail;
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	if (ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1)
			goto fail;
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	} else
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (cert != NULL && (SSL_CTX_use_certificate_file(ctx, cert,
	    SSL_FILETYPE_PEM) != 1 || SSL_CTX_use_PrivateKey_file(ctx, key,
	    SSL_FILETYPE_PEM) != 1))
		goto fail;
	return (ctx);
fail:
	ERR_error_string_n(ERR_get_error(), err, sizeof(err));
	xasprintf(cause, "TLS context: %s%s%s%s", err, ca_file ? " (CA " : "",
	    ca_file ? ca_file : "", ca_file ? ")" : "");
	SSL_CTX_free(ctx);
	return (NULL);
}

static void
enrol_fail(struct enrol_ctx *e, struct conn *c, const char *fmt, ...)
{
	va_list	 ap;

	if (e->cause == NULL) {
		va_start(ap, fmt);
		xvasprintf(&e->cause, fmt, ap);
		va_end(ap);
	}
	conn_close(c, e->cause);
}

/*
 * Find the CA the join token names among the certificates the controller
 * sent, and verify the controller's certificate with it: as a TLS
 * server's (a node's client certificate from the same CA must not pass
 * for the controller's) and against the name or address dialled.
 */
int
enrol_verify_pinned(X509 *leaf, STACK_OF(X509) *chain, const char *pin,
    const X509_VERIFY_PARAM *param, char **cause)
{
	X509		*ca = NULL;
	X509_STORE	*store;
	X509_STORE_CTX	*vctx;
	char		 fpr[65];
	int		 i, ok;

	for (i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
		pki_fingerprint(sk_X509_value(chain, i), fpr);
		if (strcmp(fpr, pin) == 0)
			ca = sk_X509_value(chain, i);
	}
	if (ca == NULL || leaf == NULL) {
		xasprintf(cause, "the controller's CA does not match the "
		    "fingerprint in the join token");
		return (-1);
	}
	store = X509_STORE_new();
	X509_STORE_add_cert(store, ca);
	vctx = X509_STORE_CTX_new();
	X509_STORE_CTX_init(vctx, store, leaf, NULL);
	X509_VERIFY_PARAM_set1(X509_STORE_CTX_get0_param(vctx), param);
	X509_STORE_CTX_set_purpose(vctx, X509_PURPOSE_SSL_SERVER);
	ok = X509_verify_cert(vctx);
	if (ok != 1)
		xasprintf(cause, "the controller's certificate does not verify "
		    "against the pinned CA: %s", X509_verify_cert_error_string(
		    X509_STORE_CTX_get_error(vctx)));
	X509_STORE_CTX_free(vctx);
	X509_STORE_free(store);
	ERR_clear_error();
	return (ok == 1 ? 0 : -1);
}

/* Without a CA file: check the controller against the token's pin. */
static int
enrol_check_pin(struct enrol_ctx *e, struct conn *c)
{
	/* Not verified yet: that is what enrol_verify_pinned does. */
	X509	*leaf = SSL_get0_peer_certificate(conn_ssl(c));
	char	*cause = NULL;

	if (enrol_verify_pinned(leaf, SSL_get_peer_cert_chain(conn_ssl(c)),
	    e->pin, SSL_get0_param(conn_ssl(c)), &cause) == -1) {
		enrol_fail(e, c, "%s", cause);
		free(cause);
		return (-1);
	}
	return (0);
}

static void
enrol_ready_cb(struct conn *c, void *arg)
{
	struct enrol_ctx	*e = arg;
	Opsn__Enrol		 m = OPSN__ENROL__INIT;

	if (e->pin[0] != '\0' && e->a->conf.ca_file == NULL &&
	    enrol_check_pin(e, c) == -1)
		return;
	m.token = e->a->conf.join_token;
	m.name = e->a->conf.name;
	m.csr_pem = e->csr;
	conn_send_msg(c, e->a->proto_min, MSG_ENROL, 1, ST_OK, &m.base);
}

static void
enrol_frame_cb(struct conn *c, const struct frame_hdr *h, const uint8_t *p,
    void *arg)
{
	struct enrol_ctx	*e = arg;
	Opsn__EnrolOk		*ok;
	Opsn__Error		*err;

	if (h->fh_type == MSG_ERROR || h->fh_status != ST_OK) {
		err = opsn__error__unpack(NULL, h->fh_len, p);
		enrol_fail(e, c, "the controller refused enrolment: %s",
		    err ? err->message : "(no reason given)");
		if (err != NULL)
			opsn__error__free_unpacked(err, NULL);
		e->done = -1;
		return;
	}
	if (h->fh_type != MSG_ENROL_OK ||
	    (ok = opsn__enrol_ok__unpack(NULL, h->fh_len, p)) == NULL) {
		enrol_fail(e, c, "unexpected answer %s to ENROL",
		    frame_type_name(h->fh_type));
		return;
	}
	e->cert_pem = xstrdup(ok->cert_pem);
	e->ca_pem = xstrdup(ok->ca_pem);
	opsn__enrol_ok__free_unpacked(ok, NULL);
	e->done = 1;
	conn_close(c, "enrolled");
}

static void
enrol_close_cb(struct conn *c, const char *reason, void *arg)
{
	struct enrol_ctx	*e = arg;

	if (e->done != 1 && e->cause == NULL)
		e->cause = xstrdup(reason);
	if (e->done == 0)
		e->done = -2;		/* try the next address */
}

static const struct conn_cbs enrol_cbs = {
	enrol_ready_cb, enrol_frame_cb, NULL, enrol_close_cb
};

/* Check what the controller sent, then store key, certificate and CA. */
static int
enrol_store(struct enrol_ctx *e, EVP_PKEY *key, char **cause)
{
	X509		*cert = NULL, *ca = NULL, *want = NULL;
	X509_STORE	*store = NULL;
	X509_STORE_CTX	*vctx = NULL;
	char		*p = NULL, *cn = NULL, fpr[65];
	int		 rv = -1;

	if ((cert = pki_cert_from_pem(e->cert_pem, strlen(e->cert_pem),
	    cause)) == NULL || (ca = pki_cert_from_pem(e->ca_pem,
	    strlen(e->ca_pem), cause)) == NULL)
		goto out;
	pki_fingerprint(ca, fpr);
	if (e->a->conf.ca_file != NULL) {
		if ((want = pki_cert_load(e->a->conf.ca_file, cause)) == NULL)
			goto out;
		pki_fingerprint(want, e->pin);
	}
	if (e->pin[0] != '\0' && strcmp(fpr, e->pin) != 0) {
		xasprintf(cause, "the controller sent a CA other than the "
		    "pinned one");
		goto out;
	}
	cn = pki_cert_cn(cert);
	if (cn == NULL || strcmp(cn, e->a->conf.name) != 0) {
		xasprintf(cause, "the certificate names '%s', not '%s'",
		    cn ? cn : "", e->a->conf.name);
		goto out;
	}
	if (X509_check_private_key(cert, key) != 1) {
		xasprintf(cause, "the certificate is not for our key");
		goto out;
	}
	store = X509_STORE_new();
	X509_STORE_add_cert(store, ca);
	vctx = X509_STORE_CTX_new();
	X509_STORE_CTX_init(vctx, store, cert, NULL);
	/* What the controller will ask of it: a TLS client's certificate. */
	X509_STORE_CTX_set_purpose(vctx, X509_PURPOSE_SSL_CLIENT);
	if (X509_verify_cert(vctx) != 1) {
		xasprintf(cause, "the certificate does not verify: %s",
		    X509_verify_cert_error_string(X509_STORE_CTX_get_error(
		    vctx)));
		goto out;
	}
	if (util_mkdirs(e->a->conf.data_dir, 0700, cause) == -1)
		goto out;
	/* The certificate last: its presence means "enrolled". */
	p = enrol_path(e->a, "key.pem");
	if (pki_key_save(p, key, 0600, cause) == -1)
		goto out;
	free(p);
	p = enrol_path(e->a, "ca.pem");
	if (pki_cert_save(p, ca, 0644, cause) == -1)
		goto out;
	free(p);
	p = enrol_path(e->a, "cert.pem");
	if (pki_cert_save(p, cert, 0600, cause) == -1)
		goto out;
	rv = 0;
out:
	free(p);
	free(cn);
	X509_STORE_CTX_free(vctx);
	X509_STORE_free(store);
	X509_free(cert);
	X509_free(ca);
	X509_free(want);
	return (rv);
}

/* Enrol with the join token, trying each controller address once. */
int
enrol_run(struct agent *a, char **cause)
{
	struct enrol_ctx	 e;
	struct conn_opts	 o = { 0 };
	EVP_PKEY		*key = NULL;
	SSL_CTX			*ctx = NULL;
	struct conn		*c;
	const char		*tok = a->conf.join_token, *p1, *p2;
	size_t			 i;
	int			 rv = -1;

	memset(&e, 0, sizeof(e));
	e.a = a;
	/* "opsn1-<64 hex CA fingerprint>-<secret>" */
	if (strncmp(tok, "opsn1-", 6) != 0 || (p1 = tok + 6,
	    (p2 = strchr(p1, '-')) == NULL) || p2 - p1 != 64) {
		xasprintf(cause, "the join token is malformed (expected what "
		    "'opsnctl node token' prints)");
		return (-1);
	}
	memcpy(e.pin, p1, 64);
	e.pin[64] = '\0';
	if ((key = pki_key_new(cause)) == NULL ||
	    (e.csr = pki_csr_new(key, a->conf.name, cause)) == NULL)
		goto out;
	if ((ctx = enrol_ssl_ctx(a->conf.ca_file, NULL, NULL, cause)) == NULL)
		goto out;
	o.co_max_frame = FRAME_MAX_PREAUTH;
	o.co_idle_timeout_ms = 15000;
	for (i = 0; i < a->naddrs; i++) {
		free(e.cause);
		e.cause = NULL;
		e.done = 0;
		e.host = a->addrs[i].host;
		if ((c = conn_connect(a->loop, a->addrs[i].host,
		    a->addrs[i].port, ctx, NULL, &o, &enrol_cbs, &e,
		    &e.cause)) == NULL)
			continue;
		enrol_set_host(conn_ssl(c), a->addrs[i].host);
		while (e.done == 0 || uv_loop_alive(a->loop)) {
			if (uv_run(a->loop, UV_RUN_ONCE) == 0 && e.done != 0)
				break;
		}
		if (e.done == 1 || e.done == -1)
			break;
		log_warnx("agent: enrolment with %s:%d failed: %s",
		    a->addrs[i].host, a->addrs[i].port, e.cause);
	}
	if (e.done != 1) {
		xasprintf(cause, "enrolment failed: %s", e.cause ? e.cause :
		    "no controller answered");
		goto out;
	}
	if (enrol_store(&e, key, cause) == -1)
		goto out;
	log_notice("agent: enrolled as %s", a->conf.name);
	rv = 0;
out:
	EVP_PKEY_free(key);
	SSL_CTX_free(ctx);
	free(e.csr);
	free(e.cert_pem);
	free(e.ca_pem);
	free(e.cause);
	return (rv);
}
