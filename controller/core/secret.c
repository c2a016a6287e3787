/*
 * Secrets handed out once (API tokens, join tokens): random hex, and the
 * SHA-256 that the database keeps instead.
 */
#include <string.h>

#include <openssl/evp.h>

#include "opsn/util.h"
#include "core.h"

/* SHA-256 of a token as hex: what the database keeps. */
void
secret_hash(const char *token, char out[65])
{
	unsigned char	 md[32];
	unsigned int	 len = sizeof(md);

	EVP_Digest(token, strlen(token), md, &len, util_sha256(), NULL);
	util_hex(md, sizeof(md), out);
}

/* A new random secret of SECRET_BYTES bytes as hex (caller frees). */
char *
secret_new(void)
{
	unsigned char	 raw[SECRET_BYTES];
	char		*hex = xmalloc(2 * sizeof(raw) + 1);

	util_random(raw, sizeof(raw));
	util_hex(raw, sizeof(raw), hex);
	return (hex);
}
