/*
 * Unit tests for lib/tlscert.c: what the controller and the agent refuse
 * before a certificate is served (a member's, or what an ACME client
 * wrote), and what they say about one they take.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "opsn/pki.h"
#include "opsn/tlscert.h"
#include "opsn/util.h"

static const char *const names[] = { "www.mairie-agassac.fr",
    "mairie-agassac.fr" };

struct fixture {
	EVP_PKEY	*cakey;
	X509		*ca;
	char		*ca_pem;
	EVP_PKEY	*key;
	char		*key_pem;
	char		*leaf_pem;	/* for names, signed by ca */
};

static char *
pem_of(X509 *x)
{
	char	*cause = NULL, *p = pki_cert_pem(x, &cause);

	assert_non_null(p);
	return (p);
}

static char *
cat(const char *a, const char *b)
{
	char	*s;

	xasprintf(&s, "%s%s", a, b);
	return (s);
}

static int
setup(void **state)
{
	struct fixture	*f = xcalloc(1, sizeof(*f));
	char		*cause = NULL;
	X509		*leaf;

	f->cakey = pki_key_new(&cause);
	f->ca = pki_ca_new(f->cakey, "Syndicat test CA", 30, &cause);
	f->key = pki_key_new(&cause);
	leaf = pki_server_cert_new(f->key, names, 2, f->ca, f->cakey, 30,
	    &cause);
	assert_non_null(leaf);
	f->ca_pem = pem_of(f->ca);
	f->leaf_pem = pem_of(leaf);
	f->key_pem = pki_key_pem(f->key, &cause);
	X509_free(leaf);
	*state = f;
	return (0);
}

static int
teardown(void **state)
{
	struct fixture	*f = *state;

	X509_free(f->ca);
	EVP_PKEY_free(f->cakey);
	EVP_PKEY_free(f->key);
	free(f->ca_pem);
	free(f->leaf_pem);
	free(f->key_pem);
	free(f);
	return (0);
}

/* Check and expect a refusal whose reason holds want. */
static void
refused(const char *cert, const char *key, const char *const *n,
    size_t nn, int64_t now, const char *want)
{
	char	*cause = NULL;

	assert_int_equal(tlscert_check(cert, strlen(cert), key,
	    key ? strlen(key) : 0, n, nn, now, NULL, &cause), -1);
	assert_non_null(cause);
	if (strstr(cause, want) == NULL)
		fail_msg("'%s' does not say '%s'", cause, want);
	free(cause);
}

static void
tlscert_takes_a_chain_with_its_key_and_names(void **state)
{
	struct fixture		*f = *state;
	struct tlscert_info	 info;
	char			*chain = cat(f->leaf_pem, f->ca_pem), *cause = NULL;

	assert_int_equal(tlscert_check(chain, strlen(chain), f->key_pem,
	    strlen(f->key_pem), names, 2, util_now(), &info, &cause), 0);
	assert_string_equal(info.ti_issuer, "Syndicat test CA");
	assert_true(info.ti_not_before <= util_now());
	assert_true(info.ti_not_after > util_now() + 29 * 86400);
	assert_int_equal(strlen(info.ti_sha256), 64);
	tlscert_info_clear(&info);
	/* Without the key (what a report reads), and the leaf alone. */
	assert_int_equal(tlscert_check(f->leaf_pem, strlen(f->leaf_pem), NULL,
	    0, names, 1, util_now(), NULL, &cause), 0);
	free(chain);
}

static void
tlscert_refuses_names_the_certificate_does_not_cover(void **state)
{
	struct fixture		*f = *state;
	static const char *const other[] = { "www.aignes.fr" };

	refused(f->leaf_pem, f->key_pem, other, 1, util_now(),
	    "does not cover www.aignes.fr (it names www.mairie-agassac.fr, "
	    "mairie-agassac.fr)");
}

static void
tlscert_refuses_a_key_that_is_not_the_certificates(void **state)
{
	struct fixture	*f = *state;
	EVP_PKEY	*other;
	char		*cause = NULL, *pem;

	other = pki_key_new(&cause);
	pem = pki_key_pem(other, &cause);
	refused(f->leaf_pem, pem, names, 2, util_now(),
	    "the private key is not the certificate's");
	EVP_PKEY_free(other);
	free(pem);
}

static void
tlscert_refuses_expired_and_future_certificates(void **state)
{
	struct fixture	*f = *state;

	refused(f->leaf_pem, f->key_pem, names, 2, util_now() + 40 * 86400,
	    "the certificate expired on ");
	refused(f->leaf_pem, f->key_pem, names, 2, util_now() - 86400,
	    "not valid before");
}

static void
tlscert_refuses_a_chain_out_of_order(void **state)
{
	struct fixture	*f = *state;
	char		*chain = cat(f->ca_pem, f->leaf_pem);

	/* The CA first: its "issuer" is the leaf, which did not sign it. */
	refused(chain, NULL, names, 0, util_now(), "not signed by the next");
	free(chain);
}

static void
tlscert_refuses_garbage_encrypted_and_weak_keys(void **state)
{
	struct fixture	*f = *state;
	EVP_PKEY	*rsa;
	BIO		*bio;
	char		*enc, *weak, *trunc;
	long		 n;

	refused("hello", f->key_pem, names, 2, util_now(), "no certificate");
	trunc = xstrdup(f->leaf_pem);
	trunc[strlen(trunc) / 2] = '\0';
	xasprintf(&weak, "%s-----END CERTIFICATE-----\n", trunc);
	refused(weak, NULL, names, 1, util_now(), "does not parse");
	free(weak);
	free(trunc);
	/* An encrypted key is refused, not prompted for. */
	bio = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_PrivateKey(bio, f->key,
	    EVP_aes_128_cbc(), (unsigned char *)"secret", 6, NULL, NULL), 1);
	n = BIO_get_mem_data(bio, &enc);
	enc = xstrndup(enc, (size_t)n);
	BIO_free(bio);
	refused(f->leaf_pem, enc, names, 2, util_now(), "does not parse");
	free(enc);
	/* RSA under 2048 bits. */
	rsa = EVP_RSA_gen(1024);
	bio = BIO_new(BIO_s_mem());
	PEM_write_bio_PrivateKey(bio, rsa, NULL, NULL, 0, NULL, NULL);
	n = BIO_get_mem_data(bio, &weak);
	weak = xstrndup(weak, (size_t)n);
	BIO_free(bio);
	refused(f->leaf_pem, weak, names, 2, util_now(),
	    "an RSA key of 1024 bits");
	EVP_PKEY_free(rsa);
	free(weak);
	/* Over the bound: refused before anything is parsed. */
	weak = xcalloc(1, TLSCERT_PEM_MAX + 2);
	memset(weak, 'A', TLSCERT_PEM_MAX + 1);
	refused(weak, NULL, names, 0, util_now(), "over");
	free(weak);
}

static void
tlscert_self_signed_placeholder_names_the_host(void **state)
{
	char	*cert = NULL, *key = NULL, *cause = NULL;
	static const char *const mx[] = { "mx1.opsn.example" };

	assert_int_equal(tlscert_self_signed("mx1.opsn.example", 10, &cert,
	    &key, &cause), 0);
	assert_int_equal(tlscert_check(cert, strlen(cert), key, strlen(key),
	    mx, 1, util_now(), NULL, &cause), 0);
	free(cert);
	tlscert_free_secret(key, strlen(key));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(tlscert_takes_a_chain_with_its_key_and_names),
		cmocka_unit_test(
		    tlscert_refuses_names_the_certificate_does_not_cover),
		cmocka_unit_test(
		    tlscert_refuses_a_key_that_is_not_the_certificates),
		cmocka_unit_test(tlscert_refuses_expired_and_future_certificates),
		cmocka_unit_test(tlscert_refuses_a_chain_out_of_order),
		cmocka_unit_test(tlscert_refuses_garbage_encrypted_and_weak_keys),
		cmocka_unit_test(tlscert_self_signed_placeholder_names_the_host),
	};

	return (cmocka_run_group_tests(tests, setup, teardown));
}
