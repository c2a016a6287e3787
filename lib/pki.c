/* PKI: the controller's CA, node certificates, keys and CSRs (OpenSSL 3). */
#include <sys/types.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "opsn/log.h"
#include "opsn/pki.h"
#include "opsn/util.h"

/* A CSR arrives from a node that is not yet trusted: bound it before parsing. */
#define PKI_CSR_MAX		(64 * 1024)
/* Certificate and key files are small; refuse anything absurd. */
#define PKI_FILE_MAX		(1024 * 1024)
#define PKI_DAYS_MAX		(100 * 366)
#define PKI_SERIAL_BITS		128
#define PKI_RSA_MIN_BITS	2048
/* Bigger RSA keys only make signature checks slow (a cheap DoS). */
#define PKI_RSA_MAX_BITS	8192

struct pki_ext {
	int		 nid;
	const char	*value;
};

static const struct pki_ext pki_ca_exts[] = {
	{ NID_basic_constraints,	"critical,CA:TRUE" },
	{ NID_key_usage,		"critical,keyCertSign,cRLSign" },
	{ NID_subject_key_identifier,	"hash" },
};

static const struct pki_ext pki_server_exts[] = {
	{ NID_basic_constraints,	"critical,CA:FALSE" },
	{ NID_key_usage,		"critical,digitalSignature" },
	{ NID_ext_key_usage,		"serverAuth" },
	{ NID_subject_key_identifier,	"hash" },
	{ NID_authority_key_identifier,	"keyid" },
};

static const struct pki_ext pki_client_exts[] = {
	{ NID_basic_constraints,	"critical,CA:FALSE" },
	{ NID_key_usage,		"critical,digitalSignature" },
	{ NID_ext_key_usage,		"clientAuth" },
	{ NID_subject_key_identifier,	"hash" },
	{ NID_authority_key_identifier,	"keyid" },
};

/*
 * A signer of records (the audit trail's checkpoints): time-stamping only,
 * so that no TLS peer takes it for a server or a client.
 */
static const struct pki_ext pki_signer_exts[] = {
	{ NID_basic_constraints,	"critical,CA:FALSE" },
	{ NID_key_usage,		"critical,digitalSignature,"
					"nonRepudiation" },
	{ NID_ext_key_usage,		"critical,timeStamping" },
	{ NID_subject_key_identifier,	"hash" },
	{ NID_authority_key_identifier,	"keyid" },
};

static void	 pki_cause(char **, const char *, ...)
		    __attribute__((format(printf, 2, 3)));
static char	*pki_printable(const char *);
static int	 pki_name_add_cn(X509_NAME *, const char *, int, char **);
static int	 pki_serial(X509 *, char **);
static GENERAL_NAMES *pki_san(const char *const *, size_t, char **);
static X509	*pki_cert_build(EVP_PKEY *, const char *, int, X509 *,
		    EVP_PKEY *, int, const struct pki_ext *, size_t,
		    GENERAL_NAMES *, char **);
static int	 pki_check_ca(X509 *, EVP_PKEY *, char **);
static int	 pki_check_key(EVP_PKEY *, char **);
static char	*pki_name_cn(X509_NAME *, int *);
static char	*pki_bio_text(BIO *);
static int	 pki_no_passphrase_cb(char *, int, int, void *);

/* Set *cause to the message followed by OpenSSL's reason, then drain the queue. */
static void
pki_cause(char **cause, const char *fmt, ...)
{
	va_list		 ap;
	char		*msg, err[256];
	unsigned long	 e;

	va_start(ap, fmt);
	xvasprintf(&msg, fmt, ap);
	va_end(ap);
	if ((e = ERR_get_error()) != 0)
		ERR_error_string_n(e, err, sizeof err);
	else
		snprintf(err, sizeof err, "unknown OpenSSL error");
	ERR_clear_error();
	xasprintf(cause, "%s: %s", msg, err);
	free(msg);
}

/* A copy of peer-supplied text that is safe to log. */
static char *
pki_printable(const char *s)
{
	char	*p, *out;

	out = xstrdup(s);
	for (p = out; *p != '\0'; p++) {
		if (!isprint((unsigned char)*p) || *p == '\'')
			*p = '?';
	}
	return (out);
}

static int
pki_name_add_cn(X509_NAME *name, const char *cn, int with_org, char **cause)
{
	if (cn == NULL || *cn == '\0') {
		xasprintf(cause, "empty common name");
		return (-1);
	}
	if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
	    (const unsigned char *)cn, -1, -1, 0)) {
		pki_cause(cause, "common name '%s'", cn);
		return (-1);
	}
	if (with_org && !X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
	    (const unsigned char *)"opsn", -1, -1, 0)) {
		pki_cause(cause, "organization name");
		return (-1);
	}
	return (0);
}

/* A random positive 128-bit serial: unique without keeping a counter. */
static int
pki_serial(X509 *x, char **cause)
{
	BIGNUM		*bn;
	ASN1_INTEGER	*ai = NULL;
	int		 rv = -1;

	if ((bn = BN_new()) == NULL) {
		pki_cause(cause, "serial");
		return (-1);
	}
	do {
		if (!BN_rand(bn, PKI_SERIAL_BITS, BN_RAND_TOP_ANY,
		    BN_RAND_BOTTOM_ANY)) {
			pki_cause(cause, "serial");
			goto out;
		}
	} while (BN_is_zero(bn));
	if ((ai = BN_to_ASN1_INTEGER(bn, NULL)) == NULL ||
	    !X509_set_serialNumber(x, ai)) {
		pki_cause(cause, "serial");
		goto out;
	}
	rv = 0;
out:
	ASN1_INTEGER_free(ai);
	BN_free(bn);
	return (rv);
}

/*
 * Built as GENERAL_NAMEs rather than an "IP:a,DNS:b" string so that a name
 * holding a comma cannot smuggle in a second entry.
 */
static GENERAL_NAMES *
pki_san(const char *const *names, size_t nnames, char **cause)
{
	GENERAL_NAMES		*gens;
	GENERAL_NAME		*gen = NULL;
	ASN1_OCTET_STRING	*ip = NULL;
	ASN1_IA5STRING		*dns = NULL;
	unsigned char		 addr[sizeof(struct in6_addr)];
	const char		*p;
	size_t			 i, alen;

	if ((gens = GENERAL_NAMES_new()) == NULL) {
		pki_cause(cause, "subjectAltName");
		return (NULL);
	}
	for (i = 0; i < nnames; i++) {
		if (names[i] == NULL || *names[i] == '\0') {
			xasprintf(cause, "empty server name");
			goto fail;
		}
		alen = 0;
		if (inet_pton(AF_INET, names[i], addr) == 1)
			alen = 4;
		else if (inet_pton(AF_INET6, names[i], addr) == 1)
			alen = 16;
		if ((gen = GENERAL_NAME_new()) == NULL)
			goto ossl;
		if (alen != 0) {
			if ((ip = ASN1_OCTET_STRING_new()) == NULL ||
			    !ASN1_OCTET_STRING_set(ip, addr, (int)alen))
				goto ossl;
			GENERAL_NAME_set0_value(gen, GEN_IPADD, ip);
			ip = NULL;
		} else {
			for (p = names[i]; *p != '\0'; p++) {
				if (!isalnum((unsigned char)*p) &&
				    strchr("-._*", *p) == NULL) {
					char *safe = pki_printable(names[i]);

					xasprintf(cause, "server name '%s' is "
					    "neither an address nor a DNS "
					    "name", safe);
					free(safe);
					goto fail;
				}
			}
			if ((dns = ASN1_IA5STRING_new()) == NULL ||
			    !ASN1_STRING_set(dns, names[i], -1))
				goto ossl;
			GENERAL_NAME_set0_value(gen, GEN_DNS, dns);
			dns = NULL;
		}
		if (!sk_GENERAL_NAME_push(gens, gen))
			goto ossl;
		gen = NULL;
	}
	return (gens);
ossl:
	pki_cause(cause, "subjectAltName '%s'", names[i]);
fail:
	ASN1_OCTET_STRING_free(ip);
	ASN1_IA5STRING_free(dns);
	GENERAL_NAME_free(gen);
	GENERAL_NAMES_free(gens);
	return (NULL);
}

/*
 * A certificate for pubkey named cn, signed by signkey; issuer NULL means
 * self-signed. Does not consume san.
 */
static X509 *
pki_cert_build(EVP_PKEY *pubkey, const char *cn, int with_org, X509 *issuer,
    EVP_PKEY *signkey, int days, const struct pki_ext *exts, size_t nexts,
    GENERAL_NAMES *san, char **cause)
{
	X509		*x;
	X509_NAME	*name;
	X509_EXTENSION	*ext;
	X509V3_CTX	 v3;
	size_t		 i;

	if (pubkey == NULL || signkey == NULL) {
		xasprintf(cause, "no key given");
		return (NULL);
	}
	if (days < 1 || days > PKI_DAYS_MAX) {
		xasprintf(cause, "validity of %d days is out of range (1 to "
		    "%d)", days, PKI_DAYS_MAX);
		return (NULL);
	}
	if ((x = X509_new()) == NULL) {
		pki_cause(cause, "certificate");
		return (NULL);
	}
	if (!X509_set_version(x, X509_VERSION_3)) {
		pki_cause(cause, "certificate version");
		goto fail;
	}
	if (pki_serial(x, cause) == -1)
		goto fail;
	name = X509_get_subject_name(x);
	if (pki_name_add_cn(name, cn, with_org, cause) == -1)
		goto fail;
	if (!X509_set_issuer_name(x, issuer != NULL ?
	    X509_get_subject_name(issuer) : name)) {
		pki_cause(cause, "issuer name");
		goto fail;
	}
	/* An hour back so that a peer whose clock is behind accepts it. */
	if (X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL) == NULL) {
		pki_cause(cause, "validity");
		goto fail;
	}
	if (!X509_set_pubkey(x, pubkey)) {
		pki_cause(cause, "public key");
		goto fail;
	}

	X509V3_set_ctx(&v3, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
	X509V3_set_ctx_nodb(&v3);
	for (i = 0; i < nexts; i++) {
		ext = X509V3_EXT_conf_nid(NULL, &v3, exts[i].nid,
		    exts[i].value);
		if (ext == NULL) {
			pki_cause(cause, "extension %s", OBJ_nid2sn(exts[i].nid));
			goto fail;
		}
		if (!X509_add_ext(x, ext, -1)) {
			X509_EXTENSION_free(ext);
			pki_cause(cause, "extension %s", OBJ_nid2sn(exts[i].nid));
			goto fail;
		}
		X509_EXTENSION_free(ext);
	}
	if (san != NULL && X509_add1_ext_i2d(x, NID_subject_alt_name, san, 0,
	    X509V3_ADD_DEFAULT) != 1) {
		pki_cause(cause, "subjectAltName");
		goto fail;
	}

	if (X509_sign(x, signkey, util_sha256()) <= 0) {
		pki_cause(cause, "signing the certificate");
		goto fail;
	}
	return (x);
fail:
	X509_free(x);
	return (NULL);
}

static int
pki_check_ca(X509 *ca, EVP_PKEY *cakey, char **cause)
{
	if (ca == NULL || cakey == NULL) {
		xasprintf(cause, "no CA given");
		return (-1);
	}
	if (X509_check_private_key(ca, cakey) != 1) {
		ERR_clear_error();
		xasprintf(cause, "the CA key does not match the CA "
		    "certificate");
		return (-1);
	}
	return (0);
}

/* Only keys we trust to be strong: EC P-256 or RSA of 2048 bits or more. */
static int
pki_check_key(EVP_PKEY *key, char **cause)
{
	char	 group[64];
	size_t	 glen;
	int	 bits;

	if (EVP_PKEY_is_a(key, "EC")) {
		if (!EVP_PKEY_get_group_name(key, group, sizeof group, &glen)) {
			ERR_clear_error();
			xasprintf(cause, "EC key has no named curve");
			return (-1);
		}
		if (strcmp(group, "prime256v1") != 0 &&
		    strcmp(group, "P-256") != 0) {
			xasprintf(cause, "EC curve %s is not allowed (use "
			    "P-256)", group);
			return (-1);
		}
		return (0);
	}
	if (EVP_PKEY_is_a(key, "RSA")) {
		bits = EVP_PKEY_get_bits(key);
		if (bits < PKI_RSA_MIN_BITS || bits > PKI_RSA_MAX_BITS) {
			xasprintf(cause, "RSA key of %d bits is not allowed "
			    "(use %d to %d)", bits, PKI_RSA_MIN_BITS,
			    PKI_RSA_MAX_BITS);
			return (-1);
		}
		return (0);
	}
	xasprintf(cause, "key type %s is not allowed (use EC P-256 or RSA)",
	    EVP_PKEY_get0_type_name(key) != NULL ?
	    EVP_PKEY_get0_type_name(key) : "unknown");
	return (-1);
}

/*
 * The name's only CN as UTF-8 (caller frees); *count is how many CNs it
 * has. NULL if none, several, or one holding a NUL.
 */
static char *
pki_name_cn(X509_NAME *name, int *count)
{
	X509_NAME_ENTRY	*e;
	unsigned char	*utf8;
	char		*cn;
	int		 i, n;

	*count = 0;
	if (name == NULL)
		return (NULL);
	i = -1;
	while ((i = X509_NAME_get_index_by_NID(name, NID_commonName, i)) >= 0)
		(*count)++;
	if (*count != 1)
		return (NULL);
	i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	if ((e = X509_NAME_get_entry(name, i)) == NULL)
		return (NULL);
	if ((n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(e))) < 0) {
		ERR_clear_error();
		return (NULL);
	}
	if (memchr(utf8, '\0', (size_t)n) != NULL) {
		OPENSSL_free(utf8);
		return (NULL);
	}
	cn = xstrndup((char *)utf8, (size_t)n);
	OPENSSL_free(utf8);
	return (cn);
}

/* The contents of a memory BIO as a NUL-terminated string. */
static char *
pki_bio_text(BIO *bio)
{
	char	*data;
	long	 n;

	if ((n = BIO_get_mem_data(bio, &data)) < 0)
		n = 0;
	return (xstrndup(data, (size_t)n));
}

/* Never prompt on a terminal for a passphrase: our keys have none. */
static int
pki_no_passphrase_cb(char *buf, int size, int rwflag, void *u)
{
	return (-1);
}

/* A new ECDSA P-256 key. */
EVP_PKEY *
pki_key_new(char **cause)
{
	EVP_PKEY	*key;

	ERR_clear_error();
	if ((key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")) == NULL)
		pki_cause(cause, "generating a P-256 key");
	return (key);
}

/* A self-signed CA certificate for key, named cn, valid for days. */
X509 *
pki_ca_new(EVP_PKEY *key, const char *cn, int days, char **cause)
{
	ERR_clear_error();
	return (pki_cert_build(key, cn, 1, NULL, key, days, pki_ca_exts,
	    nitems(pki_ca_exts), NULL, cause));
}

/* A TLS server certificate for key, naming every entry of names. */
X509 *
pki_server_cert_new(EVP_PKEY *key, const char *const *names, size_t nnames,
    X509 *ca, EVP_PKEY *cakey, int days, char **cause)
{
	GENERAL_NAMES	*san;
	X509		*x;

	ERR_clear_error();
	if (names == NULL || nnames == 0) {
		xasprintf(cause, "a server certificate needs a name");
		return (NULL);
	}
	if (pki_check_ca(ca, cakey, cause) == -1)
		return (NULL);
	if ((san = pki_san(names, nnames, cause)) == NULL)
		return (NULL);
	x = pki_cert_build(key, names[0], 0, ca, cakey, days, pki_server_exts,
	    nitems(pki_server_exts), san, cause);
	GENERAL_NAMES_free(san);
	return (x);
}

/* A record signer's certificate for key, named cn, issued by the CA. */
X509 *
pki_signer_cert_new(EVP_PKEY *key, const char *cn, X509 *ca, EVP_PKEY *cakey,
    int days, char **cause)
{
	ERR_clear_error();
	if (pki_check_ca(ca, cakey, cause) == -1)
		return (NULL);
	return (pki_cert_build(key, cn, 1, ca, cakey, days, pki_signer_exts,
	    nitems(pki_signer_exts), NULL, cause));
}

/* Is cert a record signer's certificate issued by ca? */
int
pki_check_signer(X509 *cert, X509 *ca, char **cause)
{
	X509_STORE	*store;
	X509_STORE_CTX	*vctx;
	int		 ok;

	ERR_clear_error();
	if (cert == NULL || ca == NULL) {
		xasprintf(cause, "no certificate given");
		return (-1);
	}
	store = X509_STORE_new();
	vctx = X509_STORE_CTX_new();
	if (store == NULL || vctx == NULL || !X509_STORE_add_cert(store, ca) ||
	    !X509_STORE_CTX_init(vctx, store, cert, NULL)) {
		pki_cause(cause, "checking the signer's certificate");
		X509_STORE_CTX_free(vctx);
		X509_STORE_free(store);
		return (-1);
	}
	X509_STORE_CTX_set_purpose(vctx, X509_PURPOSE_TIMESTAMP_SIGN);
	if ((ok = X509_verify_cert(vctx)) != 1)
		xasprintf(cause, "the signer's certificate does not verify "
		    "against the CA: %s", X509_verify_cert_error_string(
		    X509_STORE_CTX_get_error(vctx)));
	X509_STORE_CTX_free(vctx);
	X509_STORE_free(store);
	ERR_clear_error();
	return (ok == 1 ? 0 : -1);
}

/* An ECDSA (or RSA) SHA-256 signature of data, in base64 (caller frees). */
char *
pki_sign_b64(EVP_PKEY *key, const void *data, size_t len, char **cause)
{
	EVP_MD_CTX	*md;
	unsigned char	*sig = NULL;
	char		*b64 = NULL;
	size_t		 slen = 0;

	ERR_clear_error();
	if ((md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestSignInit(md, NULL, util_sha256(), NULL, key) != 1 ||
	    EVP_DigestSign(md, NULL, &slen, data, len) != 1) {
		pki_cause(cause, "signing");
		goto out;
	}
	sig = xmalloc(slen);
	if (EVP_DigestSign(md, sig, &slen, data, len) != 1) {
		pki_cause(cause, "signing");
		goto out;
	}
	b64 = xmalloc(4 * ((slen + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)b64, sig, (int)slen);
out:
	free(sig);
	EVP_MD_CTX_free(md);
	return (b64);
}

/* Does sig_b64 (from pki_sign_b64) sign data with key? 0 yes, -1 no. */
int
pki_verify_b64(EVP_PKEY *key, const void *data, size_t len,
    const char *sig_b64)
{
	EVP_MD_CTX	*md = NULL;
	unsigned char	*sig;
	size_t		 blen = strlen(sig_b64), pad = 0;
	int		 n, ok = 0;

	if (key == NULL || blen == 0 || blen % 4 != 0 || blen > 4096)
		return (-1);
	if (sig_b64[blen - 1] == '=')
		pad = sig_b64[blen - 2] == '=' ? 2 : 1;
	sig = xmalloc(blen / 4 * 3);
	if ((n = EVP_DecodeBlock(sig, (const unsigned char *)sig_b64,
	    (int)blen)) < 0 || (size_t)n < pad)
		goto out;
	if ((md = EVP_MD_CTX_new()) != NULL &&
	    EVP_DigestVerifyInit(md, NULL, util_sha256(), NULL, key) == 1)
		ok = EVP_DigestVerify(md, sig, (size_t)n - pad, data,
		    len) == 1;
out:
	ERR_clear_error();
	EVP_MD_CTX_free(md);
	free(sig);
	return (ok ? 0 : -1);
}

/* A CSR for key named cn, as PEM text the caller frees. */
char *
pki_csr_new(EVP_PKEY *key, const char *cn, char **cause)
{
	X509_REQ	*req;
	BIO		*bio = NULL;
	char		*pem = NULL;

	ERR_clear_error();
	if (key == NULL) {
		xasprintf(cause, "no key given");
		return (NULL);
	}
	if ((req = X509_REQ_new()) == NULL) {
		pki_cause(cause, "CSR");
		return (NULL);
	}
	if (!X509_REQ_set_version(req, X509_REQ_VERSION_1)) {
		pki_cause(cause, "CSR version");
		goto out;
	}
	if (pki_name_add_cn(X509_REQ_get_subject_name(req), cn, 0,
	    cause) == -1)
		goto out;
	if (!X509_REQ_set_pubkey(req, key)) {
		pki_cause(cause, "CSR public key");
		goto out;
	}
	if (X509_REQ_sign(req, key, util_sha256()) <= 0) {
		pki_cause(cause, "signing the CSR");
		goto out;
	}
	if ((bio = BIO_new(BIO_s_mem())) == NULL ||
	    !PEM_write_bio_X509_REQ(bio, req)) {
		pki_cause(cause, "writing the CSR");
		goto out;
	}
	pem = pki_bio_text(bio);
out:
	BIO_free(bio);
	X509_REQ_free(req);
	return (pem);
}

/* Check a node's CSR and issue it a client certificate named expect_cn. */
X509 *
pki_sign_csr(const char *csr_pem, size_t len, const char *expect_cn,
    X509 *ca, EVP_PKEY *cakey, int days, char **cause)
{
	BIO		*bio = NULL;
	X509_REQ	*req = NULL;
	EVP_PKEY	*pub;
	X509		*x = NULL;
	GENERAL_NAMES	*san = NULL;
	char		*cn = NULL, *safe;
	int		 count;

	ERR_clear_error();
	if (expect_cn == NULL || *expect_cn == '\0') {
		xasprintf(cause, "no node name to check the CSR against");
		return (NULL);
	}
	if (pki_check_ca(ca, cakey, cause) == -1)
		return (NULL);
	if (csr_pem == NULL || len == 0 || len > PKI_CSR_MAX) {
		xasprintf(cause, "CSR does not parse: size %zu is not from 1 "
		    "to %d bytes", csr_pem == NULL ? 0 : len, PKI_CSR_MAX);
		return (NULL);
	}
	if ((bio = BIO_new_mem_buf(csr_pem, (int)len)) == NULL) {
		pki_cause(cause, "CSR buffer");
		return (NULL);
	}
	if ((req = PEM_read_bio_X509_REQ(bio, NULL, pki_no_passphrase_cb,
	    NULL)) == NULL) {
		pki_cause(cause, "CSR does not parse");
		goto out;
	}
	if ((pub = X509_REQ_get0_pubkey(req)) == NULL) {
		pki_cause(cause, "CSR does not parse: no usable public key");
		goto out;
	}
	/* Refuse weak or odd keys before spending time on the signature. */
	if (pki_check_key(pub, cause) == -1)
		goto out;
	if (X509_REQ_verify(req, pub) != 1) {
		ERR_clear_error();
		xasprintf(cause, "CSR signature does not verify");
		goto out;
	}
	if ((cn = pki_name_cn(X509_REQ_get_subject_name(req), &count)) ==
	    NULL) {
		if (count == 1)
			xasprintf(cause, "CSR common name is not valid text");
		else
			xasprintf(cause, "CSR has %d common names, not one",
			    count);
		goto out;
	}
	if (strcmp(cn, expect_cn) != 0) {
		safe = pki_printable(cn);
		xasprintf(cause, "CSR names '%s' but the node is '%s'", safe,
		    expect_cn);
		free(safe);
		goto out;
	}
	/*
	 * The node's name as a DNS subjectAltName too: peers that follow
	 * RFC 6125 match names against the SAN only, never the CN.
	 */
	if ((san = pki_san(&expect_cn, 1, cause)) == NULL)
		goto out;
	x = pki_cert_build(pub, expect_cn, 0, ca, cakey, days, pki_client_exts,
	    nitems(pki_client_exts), san, cause);
out:
	GENERAL_NAMES_free(san);
	free(cn);
	X509_REQ_free(req);
	BIO_free(bio);
	return (x);
}

/* PEM text of a certificate (caller frees). */
char *
pki_cert_pem(X509 *x, char **cause)
{
	BIO	*bio;
	char	*pem;

	ERR_clear_error();
	if (x == NULL) {
		xasprintf(cause, "no certificate given");
		return (NULL);
	}
	if ((bio = BIO_new(BIO_s_mem())) == NULL ||
	    !PEM_write_bio_X509(bio, x)) {
		pki_cause(cause, "writing the certificate");
		BIO_free(bio);
		return (NULL);
	}
	pem = pki_bio_text(bio);
	BIO_free(bio);
	return (pem);
}

/* Unencrypted PKCS#8 PEM text of a private key (caller cleanses and frees). */
char *
pki_key_pem(EVP_PKEY *key, char **cause)
{
	BIO	*bio;
	char	*pem;

	ERR_clear_error();
	if (key == NULL) {
		xasprintf(cause, "no key given");
		return (NULL);
	}
	/* A memory BIO's buffer is cleansed when it is freed. */
	if ((bio = BIO_new(BIO_s_mem())) == NULL ||
	    !PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)) {
		pki_cause(cause, "writing the key");
		BIO_free(bio);
		return (NULL);
	}
	pem = pki_bio_text(bio);
	BIO_free(bio);
	return (pem);
}

/* Parse the first certificate in len bytes of PEM text. */
X509 *
pki_cert_from_pem(const char *pem, size_t len, char **cause)
{
	BIO	*bio;
	X509	*x;

	ERR_clear_error();
	if (pem == NULL || len == 0 || len > INT_MAX) {
		xasprintf(cause, "certificate does not parse: empty or too "
		    "large");
		return (NULL);
	}
	if ((bio = BIO_new_mem_buf(pem, (int)len)) == NULL) {
		pki_cause(cause, "certificate buffer");
		return (NULL);
	}
	if ((x = PEM_read_bio_X509(bio, NULL, pki_no_passphrase_cb,
	    NULL)) == NULL)
		pki_cause(cause, "certificate does not parse");
	BIO_free(bio);
	return (x);
}

/* Load a PEM certificate from path. */
X509 *
pki_cert_load(const char *path, char **cause)
{
	char	*buf, *why;
	size_t	 len;
	X509	*x;

	if (util_read_file(path, PKI_FILE_MAX, &buf, &len, cause) == -1)
		return (NULL);
	if ((x = pki_cert_from_pem(buf, len, &why)) == NULL) {
		xasprintf(cause, "%s: %s", path, why);
		free(why);
	}
	free(buf);
	return (x);
}

/* Load an unencrypted PEM private key from path. */
EVP_PKEY *
pki_key_load(const char *path, char **cause)
{
	char		*buf;
	size_t		 len;
	BIO		*bio;
	EVP_PKEY	*key = NULL;

	ERR_clear_error();
	if (util_read_file(path, PKI_FILE_MAX, &buf, &len, cause) == -1)
		return (NULL);
	if (len == 0) {
		xasprintf(cause, "%s: key does not parse: empty file", path);
		goto out;
	}
	if ((bio = BIO_new_mem_buf(buf, (int)len)) == NULL) {
		pki_cause(cause, "%s: key buffer", path);
		goto out;
	}
	if ((key = PEM_read_bio_PrivateKey(bio, NULL, pki_no_passphrase_cb,
	    NULL)) == NULL)
		pki_cause(cause, "%s: key does not parse", path);
	BIO_free(bio);
out:
	OPENSSL_cleanse(buf, len);
	free(buf);
	return (key);
}

/* Write a certificate as PEM to path atomically with mode. */
int
pki_cert_save(const char *path, X509 *x, int mode, char **cause)
{
	char	*pem;
	int	 rv;

	if ((pem = pki_cert_pem(x, cause)) == NULL)
		return (-1);
	rv = util_write_file(path, pem, strlen(pem), mode, cause);
	free(pem);
	return (rv);
}

/* Write a private key as PEM to path atomically with mode (0600). */
int
pki_key_save(const char *path, EVP_PKEY *key, int mode, char **cause)
{
	char	*pem;
	size_t	 len;
	int	 rv;

	if ((pem = pki_key_pem(key, cause)) == NULL)
		return (-1);
	len = strlen(pem);
	rv = util_write_file(path, pem, len, mode, cause);
	OPENSSL_cleanse(pem, len);
	free(pem);
	return (rv);
}

/* SHA-256 of the DER certificate as 64 lowercase hex characters. */
void
pki_fingerprint(X509 *x, char out[65])
{
	unsigned char	 md[EVP_MAX_MD_SIZE];
	unsigned int	 n = 0;

	if (x == NULL || !X509_digest(x, util_sha256(), md, &n) || n != 32) {
		ERR_clear_error();
		out[0] = '\0';
		return;
	}
	util_hex(md, n, out);
}

/* The serial number as lowercase hex (caller frees). */
char *
pki_serial_hex(X509 *x)
{
	BIGNUM	*bn;
	char	*hex, *s, *p;

	if ((bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL)) == NULL)
		fatalx("pki_serial_hex: ASN1_INTEGER_to_BN failed");
	if ((hex = BN_bn2hex(bn)) == NULL)
		fatalx("pki_serial_hex: BN_bn2hex failed");
	BN_free(bn);
	s = xstrdup(hex);
	OPENSSL_free(hex);
	for (p = s; *p != '\0'; p++)
		*p = tolower((unsigned char)*p);
	return (s);
}

/*
 * Every name a certificate answers to: its CN, and its subjectAltName's
 * DNS names and IP addresses (as text). *names and each are the
 * caller's; returns how many.
 */
size_t
pki_cert_names(X509 *x, char ***names)
{
	GENERAL_NAMES		*gens;
	const GENERAL_NAME	*g;
	const unsigned char	*d;
	char			 addr[INET6_ADDRSTRLEN], *cn;
	size_t			 n = 0;
	int			 i, len;

	*names = NULL;
	if (x == NULL)
		return (0);
	if ((cn = pki_cert_cn(x)) != NULL) {
		*names = xrealloc(*names, (n + 1) * sizeof(**names));
		(*names)[n++] = cn;
	}
	gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	for (i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
		g = sk_GENERAL_NAME_value(gens, i);
		d = NULL;
		if (g->type == GEN_DNS) {
			d = ASN1_STRING_get0_data(g->d.dNSName);
			len = ASN1_STRING_length(g->d.dNSName);
			if (len <= 0 || memchr(d, '\0', (size_t)len) != NULL)
				continue;
			*names = xrealloc(*names, (n + 1) * sizeof(**names));
			(*names)[n++] = xstrndup((const char *)d, (size_t)len);
			continue;
		}
		if (g->type != GEN_IPADD)
			continue;
		d = ASN1_STRING_get0_data(g->d.iPAddress);
		len = ASN1_STRING_length(g->d.iPAddress);
		if ((len != 4 || inet_ntop(AF_INET, d, addr, sizeof(addr)) ==
		    NULL) && (len != 16 || inet_ntop(AF_INET6, d, addr,
		    sizeof(addr)) == NULL))
			continue;
		*names = xrealloc(*names, (n + 1) * sizeof(**names));
		(*names)[n++] = xstrdup(addr);
	}
	GENERAL_NAMES_free(gens);
	return (n);
}

/* The subject CN (caller frees), NULL if none or several. */
char *
pki_cert_cn(X509 *x)
{
	int	 count;

	if (x == NULL)
		return (NULL);
	return (pki_name_cn(X509_get_subject_name(x), &count));
}

/* When the certificate expires (unix seconds), -1 if unreadable. */
int64_t
pki_not_after(const X509 *x)
{
	struct tm	 tm;

	if (x == NULL || ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1)
		return (-1);
	return ((int64_t)timegm(&tm));
}
