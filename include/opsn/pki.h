/* PKI: the controller's CA, node certificates, keys and CSRs (OpenSSL 3). */
#ifndef OPSN_PKI_H
#define OPSN_PKI_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

/* A new ECDSA P-256 key. */
EVP_PKEY	*pki_key_new(char **cause);

/*
 * A self-signed CA certificate (CN = cn, basicConstraints CA:TRUE,
 * keyUsage keyCertSign+cRLSign) valid for days.
 */
X509	*pki_ca_new(EVP_PKEY *key, const char *cn, int days, char **cause);

/*
 * A server certificate for key signed by the CA, CN = names[0], with every
 * name as a subjectAltName (IP addresses as IP entries, others as DNS),
 * extendedKeyUsage serverAuth, valid for days.
 */
X509	*pki_server_cert_new(EVP_PKEY *key, const char *const *names,
	    size_t nnames, X509 *ca, EVP_PKEY *cakey, int days, char **cause);

/*
 * A record signer's certificate (the audit trail's checkpoints) for key,
 * CN = cn, issued by the CA: keyUsage digitalSignature+nonRepudiation,
 * extendedKeyUsage timeStamping (critical), so that no TLS peer takes it
 * for a server or a client.
 */
X509	*pki_signer_cert_new(EVP_PKEY *key, const char *cn, X509 *ca,
	    EVP_PKEY *cakey, int days, char **cause);
/* Is cert a record signer's certificate issued by ca? 0, or -1 and why. */
int	 pki_check_signer(X509 *cert, X509 *ca, char **cause);
/* A SHA-256 signature of data by key, in base64 (caller frees). */
char	*pki_sign_b64(EVP_PKEY *key, const void *data, size_t len,
	    char **cause);
/* Does sig_b64 sign data with key (a public key will do)? 0 yes, -1 no. */
int	 pki_verify_b64(EVP_PKEY *key, const void *data, size_t len,
	    const char *sig_b64);

/* A CSR for key with CN = cn, as PEM text (caller frees). */
char	*pki_csr_new(EVP_PKEY *key, const char *cn, char **cause);

/*
 * Sign a CSR given as PEM: checks its self-signature and that its CN equals
 * expect_cn, then issues a client certificate (extendedKeyUsage clientAuth,
 * CN = expect_cn, and expect_cn as a DNS subjectAltName) with a random
 * 128-bit serial, valid for days.
 */
X509	*pki_sign_csr(const char *csr_pem, size_t len, const char *expect_cn,
	    X509 *ca, EVP_PKEY *cakey, int days, char **cause);

/* PEM text (caller frees) of a certificate or of a private key. */
char	*pki_cert_pem(X509 *, char **cause);
char	*pki_key_pem(EVP_PKEY *, char **cause);
/* Parse PEM text. */
X509	*pki_cert_from_pem(const char *, size_t, char **cause);
/* Load from files. */
X509	*pki_cert_load(const char *path, char **cause);
EVP_PKEY	*pki_key_load(const char *path, char **cause);
/* Write PEM to a file atomically with mode (0600 for keys). */
int	 pki_cert_save(const char *path, X509 *, int mode, char **cause);
int	 pki_key_save(const char *path, EVP_PKEY *, int mode, char **cause);

/* SHA-256 of the DER certificate as 64 lowercase hex characters + NUL. */
void	 pki_fingerprint(X509 *, char out[65]);
/* Serial number as lowercase hex (caller frees). */
char	*pki_serial_hex(X509 *);
/* The subject CN (caller frees), NULL if none. */
char	*pki_cert_cn(X509 *);
/* When it expires, unix seconds (-1 if unreadable). */
int64_t	 pki_not_after(const X509 *);
/*
 * Every name a certificate answers to (its CN, its subjectAltName's DNS
 * names and IP addresses as text); the array and each name are the
 * caller's. Returns how many.
 */
size_t	 pki_cert_names(X509 *, char ***names);

#endif
