/*
 * TLS server certificates of the hosted services (sites, mail host
 * names): checking a chain and its key before anything serves them, and
 * what an operator is told about one. Shared by the controller (a
 * certificate a member brings) and the agent (what it installs).
 */
#ifndef OPSN_TLSCERT_H
#define OPSN_TLSCERT_H

#include <stddef.h>
#include <stdint.h>

/* Largest certificate chain or key file taken (PEM). */
#define TLSCERT_PEM_MAX	(64 * 1024)

struct tlscert_info {
	int64_t	 ti_not_before;		/* unix seconds */
	int64_t	 ti_not_after;
	char	*ti_issuer;		/* the issuer's CN, else its O */
	char	 ti_sha256[65];		/* of the leaf, DER, hex */
};

/*
 * Check a chain given as PEM (the leaf first, then its issuers) and, when
 * key_pem is not NULL, its private key: both parse, the key is the
 * leaf's (RSA of 2048 bits or more, or EC), each certificate is signed by
 * the next one, the leaf is valid at now and covers every one of names
 * (wildcards as TLS clients take them). 0 and *info filled (when not
 * NULL), or -1 and *cause (no key material in it).
 */
int	tlscert_check(const char *cert_pem, size_t cert_len,
	    const char *key_pem, size_t key_len, const char *const *names,
	    size_t nnames, int64_t now, struct tlscert_info *info,
	    char **cause);
/* Free what an info holds. */
void	tlscert_info_clear(struct tlscert_info *);

/*
 * A self-signed certificate for name (and a new P-256 key), valid for
 * days, so that daemons that need one start before a real one comes.
 * PEM texts the caller frees (the key with tlscert_free_secret).
 */
int	tlscert_self_signed(const char *name, int days, char **cert_pem,
	    char **key_pem, char **cause);
/* Wipe and free a buffer that held a private key. */
void	tlscert_free_secret(char *, size_t len);

#endif
