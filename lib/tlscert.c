/*
 * Server certificates of the hosted services: checked before anything
 * serves them (a member's own, or what an ACME client wrote), and the
 * facts an operator sees (validity, issuer, fingerprint).
 *
 * Input may come from a member through the API: lengths are bounded,
 * encrypted keys are refused instead of prompting, and no message says
 * anything about the key but its type and size.
 */
#include <sys/types.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "opsn/log.h"
#include "opsn/pki.h"
#include "opsn/tlscert.h"
#include "opsn/util.h"

#define TLSCERT_CHAIN_MAX	10
#define TLSCERT_RSA_MIN		2048
#define TLSCERT_RSA_MAX		8192
#define TLSCERT_NAMES_SHOWN	4

static int
tlscert_no_passphrase_cb(char *buf, int size, int rwflag, void *u)
{
	return (0);
}

static void
tlscert_date(int64_t t, char *buf, size_t len)
{
	time_t		 tt = (time_t)t;
	struct tm	 tm;

	gmtime_r(&tt, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

static int64_t
tlscert_time(const ASN1_TIME *a)
{
	struct tm	 tm;

	memset(&tm, 0, sizeof(tm));
	if (a == NULL || ASN1_TIME_to_tm(a, &tm) != 1)
		return (0);
	return ((int64_t)timegm(&tm));
}

/* The certificates of a PEM text, leaf first; -1 if one does not parse. */
static int
tlscert_chain(const char *pem, size_t len, X509 **v, size_t *n, char **cause)
{
	BIO		*bio;
	X509		*x;
	const char	*p;
	size_t		 blocks = 0;

	*n = 0;
	for (p = pem; (p = memmem(p, len - (size_t)(p - pem),
	    "-----BEGIN CERTIFICATE-----", 27)) != NULL; p += 27)
		blocks++;
	if (blocks == 0) {
		xasprintf(cause, "no certificate in the file (PEM "
		    "\"BEGIN CERTIFICATE\" expected)");
		return (-1);
	}
	if (blocks > TLSCERT_CHAIN_MAX) {
		xasprintf(cause, "more than %d certificates in the chain",
		    TLSCERT_CHAIN_MAX);
		return (-1);
	}
	if ((bio = BIO_new_mem_buf(pem, (int)len)) == NULL)
		fatalx("tlscert: BIO_new_mem_buf");
	while (*n < blocks && (x = PEM_read_bio_X509(bio, NULL,
	    tlscert_no_passphrase_cb, NULL)) != NULL)
		v[(*n)++] = x;
	BIO_free(bio);
	ERR_clear_error();
	if (*n != blocks) {
		xasprintf(cause, "certificate %zu of the chain does not parse",
		    *n + 1);
		return (-1);
	}
	return (0);
}

static EVP_PKEY *
tlscert_key(const char *pem, size_t len, char **cause)
{
	BIO		*bio;
	EVP_PKEY	*key;
	int		 bits;

	if ((bio = BIO_new_mem_buf(pem, (int)len)) == NULL)
		fatalx("tlscert: BIO_new_mem_buf");
	key = PEM_read_bio_PrivateKey(bio, NULL, tlscert_no_passphrase_cb,
	    NULL);
	BIO_free(bio);
	ERR_clear_error();
	if (key == NULL) {
		xasprintf(cause, "the private key does not parse (PEM, not "
		    "encrypted, expected)");
		return (NULL);
	}
	bits = EVP_PKEY_get_bits(key);
	if (EVP_PKEY_is_a(key, "RSA")) {
		if (bits < TLSCERT_RSA_MIN || bits > TLSCERT_RSA_MAX) {
			xasprintf(cause, "an RSA key of %d bits: %d to %d "
			    "expected", bits, TLSCERT_RSA_MIN, TLSCERT_RSA_MAX);
			EVP_PKEY_free(key);
			return (NULL);
		}
	} else if (!EVP_PKEY_is_a(key, "EC")) {
		xasprintf(cause, "a %s key: RSA or EC expected",
		    EVP_PKEY_get0_type_name(key) != NULL ?
		    EVP_PKEY_get0_type_name(key) : "unknown");
		EVP_PKEY_free(key);
		return (NULL);
	}
	return (key);
}

/* "a, b, c" of the DNS names the certificate carries. */
static char *
tlscert_dns_names(X509 *x)
{
	GENERAL_NAMES	*sans;
	GENERAL_NAME	*g;
	char		*out = NULL, *s;
	const char	*sep = "";
	int		 i, n, shown = 0;

	out = xstrdup("");
	sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	n = sans != NULL ? sk_GENERAL_NAME_num(sans) : 0;
	for (i = 0; i < n; i++) {
		g = sk_GENERAL_NAME_value(sans, i);
		if (g->type != GEN_DNS)
			continue;
		if (shown++ == TLSCERT_NAMES_SHOWN) {
			xasprintf(&s, "%s, ...", out);
			free(out);
			out = s;
			break;
		}
		xasprintf(&s, "%s%s%.*s", out, sep,
		    ASN1_STRING_length(g->d.dNSName),
		    (const char *)ASN1_STRING_get0_data(g->d.dNSName));
		free(out);
		out = s;
		sep = ", ";
	}
	GENERAL_NAMES_free(sans);
	if (*out == '\0') {
		free(out);
		out = pki_cert_cn(x);
		if (out == NULL)
			out = xstrdup("no name");
	}
	return (out);
}

static char *
tlscert_issuer(X509 *x)
{
	X509_NAME	*n = X509_get_issuer_name(x);
	char		 buf[256];

	if (X509_NAME_get_text_by_NID(n, NID_commonName, buf,
	    sizeof(buf)) > 0 || X509_NAME_get_text_by_NID(n,
	    NID_organizationName, buf, sizeof(buf)) > 0)
		return (xstrdup(buf));
	return (xstrdup("unknown issuer"));
}

/* The leaf's dates, its names and its use. */
static int
tlscert_leaf(X509 *x, const char *const *names, size_t nnames, int64_t now,
    char **cause)
{
	int64_t	 nb, na;
	char	 date[64], *have;
	size_t	 i;

	nb = tlscert_time(X509_get0_notBefore(x));
	na = tlscert_time(X509_get0_notAfter(x));
	if (now >= na) {
		tlscert_date(na, date, sizeof(date));
		xasprintf(cause, "the certificate expired on %s", date);
		return (-1);
	}
	if (now < nb) {
		tlscert_date(nb, date, sizeof(date));
		xasprintf(cause, "the certificate is not valid before %s",
		    date);
		return (-1);
	}
	if ((X509_get_extension_flags(x) & EXFLAG_XKUSAGE) &&
	    !(X509_get_extended_key_usage(x) & XKU_SSL_SERVER)) {
		xasprintf(cause, "the certificate is not for TLS servers "
		    "(extendedKeyUsage without serverAuth)");
		return (-1);
	}
	for (i = 0; i < nnames; i++) {
		if (X509_check_host(x, names[i], strlen(names[i]), 0,
		    NULL) == 1)
			continue;
		have = tlscert_dns_names(x);
		xasprintf(cause, "the certificate does not cover %s (it "
		    "names %s)", names[i], have);
		free(have);
		return (-1);
	}
	return (0);
}

/* Check a chain and its key (see tlscert.h). */
int
tlscert_check(const char *cert_pem, size_t cert_len, const char *key_pem,
    size_t key_len, const char *const *names, size_t nnames, int64_t now,
    struct tlscert_info *info, char **cause)
{
	X509		*chain[TLSCERT_CHAIN_MAX];
	EVP_PKEY	*key = NULL;
	size_t		 n = 0, i;
	int		 rc = -1;

	if (info != NULL)
		memset(info, 0, sizeof(*info));
	if (cert_len > TLSCERT_PEM_MAX || key_len > TLSCERT_PEM_MAX) {
		xasprintf(cause, "certificate or key over %d bytes",
		    TLSCERT_PEM_MAX);
		return (-1);
	}
	if (tlscert_chain(cert_pem, cert_len, chain, &n, cause) == -1)
		goto out;
	if (key_pem != NULL) {
		if ((key = tlscert_key(key_pem, key_len, cause)) == NULL)
			goto out;
		if (X509_check_private_key(chain[0], key) != 1) {
			ERR_clear_error();
			xasprintf(cause, "the private key is not the "
			    "certificate's");
			goto out;
		}
	}
	for (i = 0; i + 1 < n; i++)
		if (X509_verify(chain[i], X509_get0_pubkey(chain[i + 1])) !=
		    1) {
			ERR_clear_error();
			xasprintf(cause, "certificate %zu of the chain is not "
			    "signed by the next one (the leaf first, then its "
			    "issuers)", i + 1);
			goto out;
		}
	if (tlscert_leaf(chain[0], names, nnames, now, cause) == -1)
		goto out;
	if (info != NULL) {
		info->ti_not_before = tlscert_time(X509_get0_notBefore(
		    chain[0]));
		info->ti_not_after = tlscert_time(X509_get0_notAfter(
		    chain[0]));
		info->ti_issuer = tlscert_issuer(chain[0]);
		pki_fingerprint(chain[0], info->ti_sha256);
	}
	rc = 0;
out:
	for (i = 0; i < n; i++)
		X509_free(chain[i]);
	EVP_PKEY_free(key);
	return (rc);
}

/* Free what an info holds. */
void
tlscert_info_clear(struct tlscert_info *info)
{
	free(info->ti_issuer);
	memset(info, 0, sizeof(*info));
}

/* A placeholder certificate for name (see tlscert.h). */
int
tlscert_self_signed(const char *name, int days, char **cert_pem,
    char **key_pem, char **cause)
{
	EVP_PKEY	*cakey = NULL, *key = NULL;
	X509		*ca = NULL, *x = NULL;
	const char	*names[1] = { name };
	int		 rc = -1;

	*cert_pem = *key_pem = NULL;
	if ((cakey = pki_key_new(cause)) == NULL ||
	    (key = pki_key_new(cause)) == NULL ||
	    (ca = pki_ca_new(cakey, "opsn placeholder (not trusted)", days,
	    cause)) == NULL ||
	    (x = pki_server_cert_new(key, names, 1, ca, cakey, days,
	    cause)) == NULL ||
	    (*cert_pem = pki_cert_pem(x, cause)) == NULL ||
	    (*key_pem = pki_key_pem(key, cause)) == NULL) {
		free(*cert_pem);
		*cert_pem = NULL;
		goto out;
	}
	rc = 0;
out:
	X509_free(x);
	X509_free(ca);
	EVP_PKEY_free(key);
	EVP_PKEY_free(cakey);
	return (rc);
}

/* Wipe and free a buffer that held a private key. */
void
tlscert_free_secret(char *s, size_t len)
{
	if (s == NULL)
		return;
	OPENSSL_cleanse(s, len);
	free(s);
}
