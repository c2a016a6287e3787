/*
 * The controller's CA and TLS contexts. On first start the CA (ECDSA P-256)
 * and the server certificate are created in the data folder; later starts
 * load them.
 */
#include <sys/stat.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "opsn/log.h"
#include "opsn/pki.h"
#include "opsn/util.h"
#include "core.h"

#define CA_DAYS		3650
#define SERVER_DAYS	825

/*
 * TLS 1.2 on the API: only the ECDHE suites with AEAD from the ANSSI TLS
 * guide's recommended list (annex A.1, v1.2), strongest first; the ECDSA
 * ones are what our P-256 certificate can use. TLS 1.3 is preferred (the
 * highest common version always wins) and keeps OpenSSL's AEAD suites.
 * Key exchange only on the guide's elliptic curves.
 */
#define CA_TLS12_SUITES	"ECDHE-ECDSA-AES256-GCM-SHA384:" \
			"ECDHE-ECDSA-AES128-GCM-SHA256:" \
			"ECDHE-ECDSA-CHACHA20-POLY1305:" \
			"ECDHE-ECDSA-AES256-CCM:ECDHE-ECDSA-AES128-CCM:" \
			"ECDHE-RSA-AES256-GCM-SHA384:" \
			"ECDHE-RSA-AES128-GCM-SHA256:" \
			"ECDHE-RSA-CHACHA20-POLY1305"
#define CA_TLS13_SUITES	"TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:" \
			"TLS_CHACHA20_POLY1305_SHA256"
#define CA_GROUPS	"X25519:P-256:P-384:X448:P-521"

/* A file in the data folder (caller frees). */
char *
ca_path(const struct ctl *c, const char *name)
{
	char	*p;

	xasprintf(&p, "%s/%s", c->conf.data_dir, name);
	return (p);
}

/* Split the configured names, or use the host name, localhost and 127.0.0.1. */
static size_t
ca_server_names(const struct ctl *c, char ***out)
{
	char	**names = NULL, host[256], *copy, *tok, *save = NULL;
	size_t	 n = 0;

	if (c->conf.server_names != NULL && *c->conf.server_names != '\0') {
		copy = xstrdup(c->conf.server_names);
		for (tok = strtok_r(copy, ", ", &save); tok != NULL;
		    tok = strtok_r(NULL, ", ", &save)) {
			names = xrealloc(names, (n + 1) * sizeof(*names));
			names[n++] = xstrdup(tok);
		}
		free(copy);
	}
	if (n == 0) {
		names = xcalloc(4, sizeof(*names));
		if (gethostname(host, sizeof(host)) == 0 && *host != '\0')
			names[n++] = xstrdup(host);
		names[n++] = xstrdup("localhost");
		names[n++] = xstrdup("127.0.0.1");
		names[n++] = xstrdup("::1");
	}
	*out = names;
	return (n);
}

static int
ca_create(struct ctl *c, char **cause)
{
	char		*cert = ca_path(c, "ca.pem"), *key = ca_path(c, "ca-key.pem");
	int		 rv = -1;

	if ((c->ca_key = pki_key_new(cause)) == NULL)
		goto out;
	if ((c->ca = pki_ca_new(c->ca_key, "opsn controller CA", CA_DAYS,
	    cause)) == NULL)
		goto out;
	/* The key first: a CA certificate without its key is useless. */
	if (pki_key_save(key, c->ca_key, 0600, cause) == -1)
		goto out;
	if (pki_cert_save(cert, c->ca, 0644, cause) == -1)
		goto out;
	log_notice("ca: created a new CA in %s", cert);
	rv = 0;
out:
	free(cert);
	free(key);
	return (rv);
}

static int
ca_server_cert(struct ctl *c, X509 **certp, EVP_PKEY **keyp, char **cause)
{
	char		*cert = ca_path(c, "server.pem");
	char		*key = ca_path(c, "server-key.pem");
	char		**names = NULL;
	size_t		 n = 0, i;
	int		 rv = -1;

	if (access(cert, F_OK) == 0) {
		if ((*certp = pki_cert_load(cert, cause)) == NULL)
			goto out;
		if ((*keyp = pki_key_load(key, cause)) == NULL)
			goto out;
		rv = 0;
		goto out;
	}
	n = ca_server_names(c, &names);
	if ((*keyp = pki_key_new(cause)) == NULL)
		goto out;
	if ((*certp = pki_server_cert_new(*keyp, (const char *const *)names,
	    n, c->ca, c->ca_key, SERVER_DAYS, cause)) == NULL)
		goto out;
	if (pki_key_save(key, *keyp, 0600, cause) == -1 ||
	    pki_cert_save(cert, *certp, 0644, cause) == -1)
		goto out;
	log_notice("ca: created the server certificate for %s%s", names[0],
	    n > 1 ? " and other names" : "");
	rv = 0;
out:
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(cert);
	free(key);
	return (rv);
}

static SSL_CTX *
ca_ssl_ctx(struct ctl *c, X509 *cert, EVP_PKEY *key, int min_version,
    char **cause)
{
	SSL_CTX		*ctx;
	X509_STORE	*store;
	char		 err[256];

	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL)
		goto fail;
	if (SSL_CTX_set_min_proto_version(ctx, min_version) != 1 ||
	    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set_cipher_list(ctx, CA_TLS12_SUITES) != 1 ||
	    SSL_CTX_set_ciphersuites(ctx, CA_TLS13_SUITES) != 1 ||
	    SSL_CTX_set1_groups_list(ctx, CA_GROUPS) != 1)
		goto fail;
	/* Our order, no renegotiation, no compression. */
	SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE |
	    SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	if (SSL_CTX_use_certificate(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey(ctx, key) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1)
		goto fail;
	/* Send the CA too: an enrolling agent may pin it by fingerprint. */
	if (SSL_CTX_add1_chain_cert(ctx, c->ca) != 1)
		goto fail;
	store = SSL_CTX_get_cert_store(ctx);
	if (X509_STORE_add_cert(store, c->ca) != 1)
		goto fail;
	/*
	 * Ask for a client certificate but do not require one: enrolment and
	 * API clients come without. A certificate from another CA fails the
	 * handshake.
	 */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_verify_depth(ctx, 2);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"opsn", 4);
	return (ctx);
fail:
	ERR_error_string_n(ERR_get_error(), err, sizeof(err));
	xasprintf(cause, "TLS context: %s", err);
	SSL_CTX_free(ctx);
	return (NULL);
}

/* Load or create the CA and server certificate; build the TLS contexts. */
int
ca_init(struct ctl *c, char **cause)
{
	char		*cert = ca_path(c, "ca.pem"), *key = ca_path(c, "ca-key.pem");
	X509		*scert = NULL;
	EVP_PKEY	*skey = NULL;
	int		 rv = -1;

	if (access(cert, F_OK) == 0) {
		if ((c->ca = pki_cert_load(cert, cause)) == NULL ||
		    (c->ca_key = pki_key_load(key, cause)) == NULL)
			goto out;
	} else if (ca_create(c, cause) == -1)
		goto out;
	pki_fingerprint(c->ca, c->ca_fpr);
	if (ca_server_cert(c, &scert, &skey, cause) == -1)
		goto out;
	/* A node may not be named as the controller (nodes.c refuses it). */
	c->nserver_names = pki_cert_names(scert, &c->server_names);
	if ((c->agent_ctx = ca_ssl_ctx(c, scert, skey, TLS1_3_VERSION,
	    cause)) == NULL)
		goto out;
	/*
	 * An agent's connection idles between messages: OpenSSL takes its
	 * read and write buffers (17 KiB each) for a record and gives them
	 * back after, rather than holding them for the connection's life
	 * (6.4 MiB of heap for 200 agents, 85 MiB for 2,500, placed anew
	 * wherever the heap has room at each reconnection).
	 */
	SSL_CTX_set_mode(c->agent_ctx, SSL_MODE_RELEASE_BUFFERS);
	if ((c->api_ctx = ca_ssl_ctx(c, scert, skey, TLS1_2_VERSION,
	    cause)) == NULL)
		goto out;
	rv = 0;
out:
	X509_free(scert);
	EVP_PKEY_free(skey);
	free(cert);
	free(key);
	return (rv);
}

/* Release the CA and the TLS contexts. */
void
ca_free(struct ctl *c)
{
	size_t	 i;

	for (i = 0; i < c->nserver_names; i++)
		free(c->server_names[i]);
	free(c->server_names);
	c->server_names = NULL;
	c->nserver_names = 0;
	SSL_CTX_free(c->agent_ctx);
	SSL_CTX_free(c->api_ctx);
	X509_free(c->ca);
	EVP_PKEY_free(c->ca_key);
	c->agent_ctx = c->api_ctx = NULL;
	c->ca = NULL;
	c->ca_key = NULL;
}
