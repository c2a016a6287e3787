/*
 * Enrolment without --ca: the agent trusts the controller's certificate
 * only as a TLS server's, issued by the CA the join token pins, for the
 * name or address it dialled, in the subjectAltName (never the CN). A
 * node's certificate from the same CA never passes for the controller.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "opsn/log.h"
#include "opsn/pki.h"
#include "opsn/util.h"
#include "agent.h"

static EVP_PKEY	*ca_key, *other_key;
static X509	*ca, *other_ca, *server, *node, *cn_only;
static char	 pin[65], other_pin[65];

/* A server certificate named by its CN alone (no subjectAltName). */
static X509 *
cn_only_server(EVP_PKEY *key, const char *cn)
{
	X509		*x = X509_new();
	X509_EXTENSION	*ext;
	X509V3_CTX	 v3;

	X509_set_version(x, X509_VERSION_3);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN",
	    MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(ca));
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, key);
	X509V3_set_ctx(&v3, ca, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_ext_key_usage, "serverAuth");
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	X509_sign(x, ca_key, EVP_sha256());
	return (x);
}

static int
setup(void **state)
{
	const char	*names[] = { "ctl.example", "127.0.0.1" };
	EVP_PKEY	*k;
	char		*csr, *cause = NULL;

	ca_key = pki_key_new(&cause);
	ca = pki_ca_new(ca_key, "opsn controller CA", 30, &cause);
	other_key = pki_key_new(&cause);
	other_ca = pki_ca_new(other_key, "opsn controller CA", 30, &cause);
	pki_fingerprint(ca, pin);
	pki_fingerprint(other_ca, other_pin);
	k = pki_key_new(&cause);
	server = pki_server_cert_new(k, names, 2, ca, ca_key, 30, &cause);
	cn_only = cn_only_server(k, "ctl.example");
	EVP_PKEY_free(k);
	k = pki_key_new(&cause);
	csr = pki_csr_new(k, "hv1", &cause);
	node = pki_sign_csr(csr, strlen(csr), "hv1", ca, ca_key, 30, &cause);
	free(csr);
	EVP_PKEY_free(k);
	return (server && node && cn_only ? 0 : -1);
}

static int
teardown(void **state)
{
	X509_free(ca);
	X509_free(other_ca);
	X509_free(server);
	X509_free(node);
	X509_free(cn_only);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(other_key);
	return (0);
}

/* Verify leaf as the agent does after dialling host, with the pin. */
static int
verify(X509 *leaf, const char *host, const char *with_pin)
{
	SSL_CTX		*ctx = SSL_CTX_new(TLS_client_method());
	SSL		*ssl = SSL_new(ctx);
	STACK_OF(X509)	*chain = sk_X509_new_null();
	char		*cause = NULL;
	int		 rv;

	enrol_set_host(ssl, host);
	sk_X509_push(chain, leaf);
	sk_X509_push(chain, ca);
	rv = enrol_verify_pinned(leaf, chain, with_pin, SSL_get0_param(ssl),
	    &cause);
	if (rv == -1) {
		assert_non_null(cause);
		free(cause);
	}
	sk_X509_free(chain);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	return (rv);
}

static void
the_controller_verifies_against_the_pinned_ca(void **state)
{
	assert_int_equal(verify(server, "ctl.example", pin), 0);
	assert_int_equal(verify(server, "127.0.0.1", pin), 0);
	assert_int_equal(verify(server, "other.example", pin), -1);
	assert_int_equal(verify(server, "ctl.example", other_pin), -1);
}

static void
a_node_certificate_never_passes_for_the_controller(void **state)
{
	char	**names;
	size_t	 n, i;
	int	 san = 0;

	/* The node's certificate names it in its SAN too... */
	n = pki_cert_names(node, &names);
	for (i = 0; i < n; i++) {
		san += strcmp(names[i], "hv1") == 0;
		free(names[i]);
	}
	free(names);
	assert_int_equal(san, 2);	/* CN and SAN */
	/* ...but it is a client's: dialling "hv1" finds no controller. */
	assert_int_equal(verify(node, "hv1", pin), -1);
}

static void
a_cn_is_never_taken_for_a_server_name(void **state)
{
	assert_int_equal(verify(cn_only, "ctl.example", pin), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(the_controller_verifies_against_the_pinned_ca),
		cmocka_unit_test(
		    a_node_certificate_never_passes_for_the_controller),
		cmocka_unit_test(a_cn_is_never_taken_for_a_server_name),
	};

	log_init("test_agt_enrol", LOG_LEVEL_ERR, NULL);
	return (cmocka_run_group_tests(tests, setup, teardown));
}
