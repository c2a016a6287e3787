/* Unit tests for lib/pki.c: CA, server and client certificates, CSRs, PEM. */
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "opsn/pki.h"
#include "opsn/util.h"

struct fixture {
	EVP_PKEY	*cakey;
	X509		*ca;
};

static int
group_setup(void **state)
{
	struct fixture	*f;
	char		*cause = NULL;

	f = xcalloc(1, sizeof *f);
	if ((f->cakey = pki_key_new(&cause)) == NULL ||
	    (f->ca = pki_ca_new(f->cakey, "opsn test CA", 30, &cause)) ==
	    NULL) {
		fprintf(stderr, "setup: %s\n", cause);
		free(cause);
		return (-1);
	}
	*state = f;
	return (0);
}

static int
group_teardown(void **state)
{
	struct fixture	*f = *state;

	X509_free(f->ca);
	EVP_PKEY_free(f->cakey);
	free(f);
	return (0);
}

/* 1 if cert chains to ca for purpose (0 for any), with strict X.509 checks. */
static int
verify_chain(X509 *ca, X509 *cert, int purpose)
{
	X509_STORE	*store;
	X509_STORE_CTX	*ctx;
	int		 rv;

	store = X509_STORE_new();
	ctx = X509_STORE_CTX_new();
	assert_non_null(store);
	assert_non_null(ctx);
	assert_int_equal(X509_STORE_add_cert(store, ca), 1);
	assert_int_equal(X509_STORE_CTX_init(ctx, store, cert, NULL), 1);
	X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(ctx),
	    X509_V_FLAG_X509_STRICT);
	if (purpose != 0)
		assert_int_equal(X509_STORE_CTX_set_purpose(ctx, purpose), 1);
	rv = X509_verify_cert(ctx);
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	ERR_clear_error();
	return (rv == 1);
}

static int
has_eku(X509 *x, int nid)
{
	EXTENDED_KEY_USAGE	*eku;
	int			 i, found = 0;

	eku = X509_get_ext_d2i(x, NID_ext_key_usage, NULL, NULL);
	if (eku == NULL)
		return (0);
	for (i = 0; i < sk_ASN1_OBJECT_num(eku); i++) {
		if (OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, i)) == nid)
			found = 1;
	}
	EXTENDED_KEY_USAGE_free(eku);
	return (found);
}

/* A client certificate for node cn from a fresh key and CSR. */
static X509 *
issue_client(struct fixture *f, const char *cn)
{
	EVP_PKEY	*key;
	char		*csr, *cause = NULL;
	X509		*x;

	key = pki_key_new(&cause);
	assert_non_null(key);
	csr = pki_csr_new(key, cn, &cause);
	assert_non_null(csr);
	x = pki_sign_csr(csr, strlen(csr), cn, f->ca, f->cakey, 7, &cause);
	if (x == NULL)
		fail_msg("sign_csr: %s", cause);
	free(csr);
	EVP_PKEY_free(key);
	return (x);
}

/* A CSR as PEM text built by hand, so tests can shape its contents. */
static char *
csr_pem_of(X509_REQ *req)
{
	BIO	*bio;
	char	*data, *pem;
	long	 n;

	bio = BIO_new(BIO_s_mem());
	assert_non_null(bio);
	assert_int_equal(PEM_write_bio_X509_REQ(bio, req), 1);
	n = BIO_get_mem_data(bio, &data);
	pem = xstrndup(data, (size_t)n);
	BIO_free(bio);
	return (pem);
}

static void
ca_new_is_a_self_signed_ca_with_cn(void **state)
{
	struct fixture	*f = *state;
	char		*cn, *serial;
	uint32_t	 ku;

	cn = pki_cert_cn(f->ca);
	assert_string_equal(cn, "opsn test CA");
	free(cn);
	assert_int_equal(X509_NAME_cmp(X509_get_subject_name(f->ca),
	    X509_get_issuer_name(f->ca)), 0);
	assert_int_equal(X509_verify(f->ca, f->cakey), 1);
	assert_true(X509_check_ca(f->ca) >= 1);
	ku = X509_get_key_usage(f->ca);
	assert_true(ku & KU_KEY_CERT_SIGN);
	assert_true(ku & KU_CRL_SIGN);
	assert_false(ku & KU_DIGITAL_SIGNATURE);
	/* The CA verifies as its own trust anchor. */
	assert_true(verify_chain(f->ca, f->ca, 0));
	/* notBefore allows for clock skew; notAfter is in the future. */
	assert_true(X509_cmp_current_time(X509_get0_notBefore(f->ca)) < 0);
	assert_true(X509_cmp_current_time(X509_get0_notAfter(f->ca)) > 0);
	serial = pki_serial_hex(f->ca);
	assert_true(strlen(serial) >= 16);
	assert_null(strchr(serial, '-'));
	free(serial);
}

static void
ca_new_refuses_empty_cn_and_bad_days(void **state)
{
	struct fixture	*f = *state;
	char		*cause = NULL;

	assert_null(pki_ca_new(f->cakey, "", 30, &cause));
	assert_non_null(cause);
	free(cause);
	cause = NULL;
	assert_null(pki_ca_new(f->cakey, "ca", 0, &cause));
	assert_non_null(strstr(cause, "days"));
	free(cause);
}

static void
server_cert_verifies_and_has_ip_and_dns_sans(void **state)
{
	struct fixture		*f = *state;
	const char *const	 names[] = { "ctl.example.net", "127.0.0.1",
				    "::1" };
	EVP_PKEY		*key;
	X509			*x;
	GENERAL_NAMES		*gens;
	GENERAL_NAME		*g;
	char			*cause = NULL, *cn;
	int			 i, ndns = 0, nip = 0;

	key = pki_key_new(&cause);
	assert_non_null(key);
	x = pki_server_cert_new(key, names, nitems(names), f->ca, f->cakey,
	    30, &cause);
	if (x == NULL)
		fail_msg("server_cert_new: %s", cause);

	assert_true(verify_chain(f->ca, x, X509_PURPOSE_SSL_SERVER));
	assert_true(has_eku(x, NID_server_auth));
	assert_false(has_eku(x, NID_client_auth));
	assert_int_equal(X509_check_ca(x), 0);
	cn = pki_cert_cn(x);
	assert_string_equal(cn, "ctl.example.net");
	free(cn);

	gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	assert_non_null(gens);
	for (i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		g = sk_GENERAL_NAME_value(gens, i);
		if (g->type == GEN_DNS)
			ndns++;
		else if (g->type == GEN_IPADD)
			nip++;
	}
	GENERAL_NAMES_free(gens);
	assert_int_equal(ndns, 1);
	assert_int_equal(nip, 2);
	assert_int_equal(X509_check_host(x, "ctl.example.net", 0, 0, NULL), 1);
	assert_int_equal(X509_check_ip_asc(x, "127.0.0.1", 0), 1);
	assert_int_equal(X509_check_ip_asc(x, "::1", 0), 1);
	assert_int_not_equal(X509_check_ip_asc(x, "127.0.0.2", 0), 1);
	assert_int_not_equal(X509_check_host(x, "other.example.net", 0, 0,
	    NULL), 1);

	X509_free(x);
	EVP_PKEY_free(key);
}

static void
server_cert_is_not_accepted_as_client_cert(void **state)
{
	struct fixture		*f = *state;
	const char *const	 names[] = { "ctl.example.net" };
	EVP_PKEY		*key;
	X509			*x;
	char			*cause = NULL;

	key = pki_key_new(&cause);
	assert_non_null(key);
	x = pki_server_cert_new(key, names, 1, f->ca, f->cakey, 30, &cause);
	assert_non_null(x);
	assert_false(verify_chain(f->ca, x, X509_PURPOSE_SSL_CLIENT));
	X509_free(x);
	EVP_PKEY_free(key);
}

static void
server_cert_refuses_ca_key_that_does_not_match(void **state)
{
	struct fixture		*f = *state;
	const char *const	 names[] = { "ctl.example.net" };
	EVP_PKEY		*key;
	char			*cause = NULL;

	key = pki_key_new(&cause);
	assert_non_null(key);
	assert_null(pki_server_cert_new(key, names, 1, f->ca, key, 30,
	    &cause));
	assert_non_null(strstr(cause, "does not match"));
	free(cause);
	EVP_PKEY_free(key);
}

static void
server_cert_refuses_name_with_comma_injection(void **state)
{
	struct fixture		*f = *state;
	const char *const	 names[] = { "a.example,DNS:evil.example" };
	EVP_PKEY		*key;
	char			*cause = NULL;

	key = pki_key_new(&cause);
	assert_non_null(key);
	assert_null(pki_server_cert_new(key, names, 1, f->ca, f->cakey, 30,
	    &cause));
	assert_non_null(strstr(cause, "neither an address nor a DNS name"));
	free(cause);
	EVP_PKEY_free(key);
}

static void
csr_round_trip_issues_client_cert_with_cn_and_client_auth(void **state)
{
	struct fixture	*f = *state;
	X509		*x;
	char		*cn;

	x = issue_client(f, "node-17");
	assert_true(verify_chain(f->ca, x, X509_PURPOSE_SSL_CLIENT));
	assert_false(verify_chain(f->ca, x, X509_PURPOSE_SSL_SERVER));
	assert_true(has_eku(x, NID_client_auth));
	assert_false(has_eku(x, NID_server_auth));
	assert_int_equal(X509_check_ca(x), 0);
	cn = pki_cert_cn(x);
	assert_string_equal(cn, "node-17");
	free(cn);
	assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(x),
	    X509_get_subject_name(f->ca)), 0);
	X509_free(x);
}

static void
client_serials_are_random_and_distinct(void **state)
{
	struct fixture	*f = *state;
	X509		*a, *b;
	char		*sa, *sb, *p;

	a = issue_client(f, "node-1");
	b = issue_client(f, "node-1");
	sa = pki_serial_hex(a);
	sb = pki_serial_hex(b);
	assert_string_not_equal(sa, sb);
	for (p = sa; *p != '\0'; p++)
		assert_non_null(strchr("0123456789abcdef", *p));
	free(sa);
	free(sb);
	X509_free(a);
	X509_free(b);
}

static void
sign_csr_refuses_cn_other_than_expected(void **state)
{
	struct fixture	*f = *state;
	EVP_PKEY	*key;
	char		*csr, *cause = NULL;

	key = pki_key_new(&cause);
	assert_non_null(key);
	csr = pki_csr_new(key, "node-b", &cause);
	assert_non_null(csr);
	assert_null(pki_sign_csr(csr, strlen(csr), "node-a", f->ca, f->cakey,
	    7, &cause));
	assert_string_equal(cause, "CSR names 'node-b' but the node is "
	    "'node-a'");
	free(cause);
	cause = NULL;
	/* A prefix is not a match. */
	assert_null(pki_sign_csr(csr, strlen(csr), "node-bb", f->ca,
	    f->cakey, 7, &cause));
	assert_non_null(cause);
	free(cause);
	free(csr);
	EVP_PKEY_free(key);
}

static void
sign_csr_refuses_garbage(void **state)
{
	struct fixture	*f = *state;
	const char	*junk = "-----BEGIN CERTIFICATE REQUEST-----\n"
			    "bm90IGEgY3Ny\n-----END CERTIFICATE REQUEST-----\n";
	char		*cause = NULL;

	assert_null(pki_sign_csr(junk, strlen(junk), "node-a", f->ca,
	    f->cakey, 7, &cause));
	assert_non_null(strstr(cause, "CSR does not parse"));
	free(cause);
	cause = NULL;
	assert_null(pki_sign_csr("hello", 5, "node-a", f->ca, f->cakey, 7,
	    &cause));
	assert_non_null(strstr(cause, "CSR does not parse"));
	free(cause);
	cause = NULL;
	assert_null(pki_sign_csr("", 0, "node-a", f->ca, f->cakey, 7,
	    &cause));
	assert_non_null(strstr(cause, "CSR does not parse"));
	free(cause);
}

static void
sign_csr_refuses_tampered_signature(void **state)
{
	struct fixture	*f = *state;
	EVP_PKEY	*key, *other;
	BIO		*bio;
	X509_REQ	*req;
	char		*csr, *forged, *cause = NULL;

	key = pki_key_new(&cause);
	other = pki_key_new(&cause);
	assert_non_null(key);
	assert_non_null(other);
	csr = pki_csr_new(key, "node-a", &cause);
	assert_non_null(csr);

	/* Swap in another public key but keep the old signature. */
	bio = BIO_new_mem_buf(csr, -1);
	req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
	assert_non_null(req);
	assert_int_equal(X509_REQ_set_pubkey(req, other), 1);
	forged = csr_pem_of(req);
	assert_null(pki_sign_csr(forged, strlen(forged), "node-a", f->ca,
	    f->cakey, 7, &cause));
	assert_string_equal(cause, "CSR signature does not verify");
	free(cause);
	cause = NULL;

	/* Flip one character inside the base64 body. */
	csr[strlen(csr) / 2] = csr[strlen(csr) / 2] == 'A' ? 'B' : 'A';
	assert_null(pki_sign_csr(csr, strlen(csr), "node-a", f->ca, f->cakey,
	    7, &cause));
	assert_non_null(cause);
	free(cause);

	free(forged);
	free(csr);
	X509_REQ_free(req);
	BIO_free(bio);
	EVP_PKEY_free(other);
	EVP_PKEY_free(key);
}

static void
sign_csr_reads_no_further_than_len(void **state)
{
	struct fixture	*f = *state;
	EVP_PKEY	*key;
	char		*csr, *exact, *cause = NULL;
	size_t		 len;
	X509		*x;

	key = pki_key_new(&cause);
	assert_non_null(key);
	csr = pki_csr_new(key, "node-a", &cause);
	assert_non_null(csr);
	len = strlen(csr);

	/* No NUL after the text: ASan would catch a read past len. */
	exact = xmalloc(len);
	memcpy(exact, csr, len);
	x = pki_sign_csr(exact, len, "node-a", f->ca, f->cakey, 7, &cause);
	assert_non_null(x);
	X509_free(x);

	/* Cut short, the same bytes no longer parse. */
	assert_null(pki_sign_csr(exact, len / 2, "node-a", f->ca, f->cakey, 7,
	    &cause));
	assert_non_null(strstr(cause, "CSR does not parse"));
	free(cause);

	free(exact);
	free(csr);
	EVP_PKEY_free(key);
}

static void
sign_csr_refuses_two_common_names(void **state)
{
	struct fixture	*f = *state;
	EVP_PKEY	*key;
	X509_REQ	*req;
	X509_NAME	*name;
	char		*csr, *cause = NULL;

	key = pki_key_new(&cause);
	assert_non_null(key);
	req = X509_REQ_new();
	name = X509_REQ_get_subject_name(req);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
	    (const unsigned char *)"node-a", -1, -1, 0);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
	    (const unsigned char *)"node-b", -1, -1, 0);
	assert_int_equal(X509_REQ_set_pubkey(req, key), 1);
	assert_true(X509_REQ_sign(req, key, EVP_sha256()) > 0);
	csr = csr_pem_of(req);
	assert_null(pki_sign_csr(csr, strlen(csr), "node-a", f->ca, f->cakey,
	    7, &cause));
	assert_non_null(strstr(cause, "2 common names"));
	free(cause);
	free(csr);
	X509_REQ_free(req);
	EVP_PKEY_free(key);
}

static void
sign_csr_refuses_weak_or_unusual_keys(void **state)
{
	struct fixture	*f = *state;
	EVP_PKEY	*rsa1024, *p384;
	char		*csr, *cause = NULL;

	rsa1024 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	assert_non_null(rsa1024);
	csr = pki_csr_new(rsa1024, "node-a", &cause);
	assert_non_null(csr);
	assert_null(pki_sign_csr(csr, strlen(csr), "node-a", f->ca, f->cakey,
	    7, &cause));
	assert_non_null(strstr(cause, "RSA key of 1024 bits"));
	free(cause);
	cause = NULL;
	free(csr);

	p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	assert_non_null(p384);
	csr = pki_csr_new(p384, "node-a", &cause);
	assert_non_null(csr);
	assert_null(pki_sign_csr(csr, strlen(csr), "node-a", f->ca, f->cakey,
	    7, &cause));
	assert_non_null(strstr(cause, "curve"));
	free(cause);
	free(csr);

	EVP_PKEY_free(p384);
	EVP_PKEY_free(rsa1024);
}

static void
sign_csr_accepts_rsa_2048(void **state)
{
	struct fixture	*f = *state;
	EVP_PKEY	*rsa;
	X509		*x;
	char		*csr, *cause = NULL;

	rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	assert_non_null(rsa);
	csr = pki_csr_new(rsa, "node-r", &cause);
	assert_non_null(csr);
	x = pki_sign_csr(csr, strlen(csr), "node-r", f->ca, f->cakey, 7,
	    &cause);
	if (x == NULL)
		fail_msg("sign_csr: %s", cause);
	assert_true(verify_chain(f->ca, x, X509_PURPOSE_SSL_CLIENT));
	X509_free(x);
	free(csr);
	EVP_PKEY_free(rsa);
}

static void
cert_from_other_ca_does_not_verify(void **state)
{
	struct fixture	*f = *state;
	struct fixture	 other;
	X509		*x;
	char		*cause = NULL;

	other.cakey = pki_key_new(&cause);
	assert_non_null(other.cakey);
	/* Same name as the real CA: only the signature tells them apart. */
	other.ca = pki_ca_new(other.cakey, "opsn test CA", 30, &cause);
	assert_non_null(other.ca);
	x = issue_client(&other, "node-a");
	assert_true(verify_chain(other.ca, x, X509_PURPOSE_SSL_CLIENT));
	assert_false(verify_chain(f->ca, x, X509_PURPOSE_SSL_CLIENT));
	assert_false(verify_chain(f->ca, x, 0));
	X509_free(x);
	X509_free(other.ca);
	EVP_PKEY_free(other.cakey);
}

static void
pem_save_load_round_trip_keeps_mode_0600(void **state)
{
	struct fixture	*f = *state;
	char		 dir[] = "/tmp/opsn-test-pki.XXXXXX";
	char		*kpath, *cpath, *cause = NULL, *pem;
	struct stat	 st;
	EVP_PKEY	*key;
	X509		*x;
	DIR		*d;
	struct dirent	*de;
	int		 n = 0;

	assert_non_null(mkdtemp(dir));
	xasprintf(&kpath, "%s/ca.key", dir);
	xasprintf(&cpath, "%s/ca.crt", dir);

	assert_int_equal(pki_key_save(kpath, f->cakey, 0600, &cause), 0);
	assert_int_equal(pki_cert_save(cpath, f->ca, 0644, &cause), 0);
	assert_int_equal(stat(kpath, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(stat(cpath, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);

	/* Saving again replaces the file and leaves no temporary behind. */
	assert_int_equal(pki_key_save(kpath, f->cakey, 0600, &cause), 0);
	assert_non_null(d = opendir(dir));
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			n++;
	}
	closedir(d);
	assert_int_equal(n, 2);

	key = pki_key_load(kpath, &cause);
	assert_non_null(key);
	assert_int_equal(EVP_PKEY_eq(key, f->cakey), 1);
	x = pki_cert_load(cpath, &cause);
	assert_non_null(x);
	assert_int_equal(X509_cmp(x, f->ca), 0);

	/* Text round trip too. */
	pem = pki_cert_pem(f->ca, &cause);
	assert_non_null(strstr(pem, "BEGIN CERTIFICATE"));
	free(pem);
	pem = pki_key_pem(f->cakey, &cause);
	assert_non_null(strstr(pem, "BEGIN PRIVATE KEY"));
	free(pem);

	EVP_PKEY_free(key);
	X509_free(x);

	/* A key file is not a certificate and a missing file says so. */
	assert_null(pki_cert_load(kpath, &cause));
	assert_non_null(strstr(cause, kpath));
	free(cause);
	cause = NULL;

	assert_int_equal(unlink(kpath), 0);
	assert_int_equal(unlink(cpath), 0);
	assert_null(pki_key_load(kpath, &cause));
	assert_non_null(strstr(cause, kpath));
	free(cause);
	assert_int_equal(rmdir(dir), 0);
	free(kpath);
	free(cpath);
}

static void
cert_from_pem_refuses_garbage(void **state)
{
	char	*cause = NULL;

	assert_null(pki_cert_from_pem("garbage", 7, &cause));
	assert_non_null(strstr(cause, "certificate does not parse"));
	free(cause);
}

static void
fingerprint_is_64_hex_and_stable(void **state)
{
	struct fixture	*f = *state;
	char		 a[65], b[65], c[65], *pem, *cause = NULL;
	X509		*copy, *other;
	size_t		 i;

	pki_fingerprint(f->ca, a);
	assert_int_equal(strlen(a), 64);
	for (i = 0; i < 64; i++)
		assert_non_null(strchr("0123456789abcdef", a[i]));

	/* The same certificate read back from PEM has the same fingerprint. */
	pem = pki_cert_pem(f->ca, &cause);
	assert_non_null(pem);
	copy = pki_cert_from_pem(pem, strlen(pem), &cause);
	assert_non_null(copy);
	pki_fingerprint(copy, b);
	assert_string_equal(a, b);

	other = issue_client(f, "node-a");
	pki_fingerprint(other, c);
	assert_string_not_equal(a, c);

	X509_free(other);
	X509_free(copy);
	free(pem);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ca_new_is_a_self_signed_ca_with_cn),
		cmocka_unit_test(ca_new_refuses_empty_cn_and_bad_days),
		cmocka_unit_test(server_cert_verifies_and_has_ip_and_dns_sans),
		cmocka_unit_test(server_cert_is_not_accepted_as_client_cert),
		cmocka_unit_test(server_cert_refuses_ca_key_that_does_not_match),
		cmocka_unit_test(server_cert_refuses_name_with_comma_injection),
		cmocka_unit_test(
		    csr_round_trip_issues_client_cert_with_cn_and_client_auth),
		cmocka_unit_test(client_serials_are_random_and_distinct),
		cmocka_unit_test(sign_csr_refuses_cn_other_than_expected),
		cmocka_unit_test(sign_csr_refuses_garbage),
		cmocka_unit_test(sign_csr_refuses_tampered_signature),
		cmocka_unit_test(sign_csr_reads_no_further_than_len),
		cmocka_unit_test(sign_csr_refuses_two_common_names),
		cmocka_unit_test(sign_csr_refuses_weak_or_unusual_keys),
		cmocka_unit_test(sign_csr_accepts_rsa_2048),
		cmocka_unit_test(cert_from_other_ca_does_not_verify),
		cmocka_unit_test(pem_save_load_round_trip_keeps_mode_0600),
		cmocka_unit_test(cert_from_pem_refuses_garbage),
		cmocka_unit_test(fingerprint_is_64_hex_and_stable),
	};

	return (cmocka_run_group_tests(tests, group_setup, group_teardown));
}
