/*
 * libFuzzer target for the certificate checker (lib/tlscert.c): a member
 * sends a chain and a key through the API, and the agent reads what the
 * ACME client wrote. The input is split at its first NUL byte into the
 * chain and the key; whatever they hold, no crash, no leak, no read out
 * of bounds.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "opsn/tlscert.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static const char *const names[] = { "www.mairie-agassac.fr",
	    "*.agassac.fr" };
	struct tlscert_info	 info;
	const uint8_t		*nul = memchr(data, 0, len);
	char			*cert, *key = NULL, *cause = NULL;
	size_t			 clen = nul != NULL ? (size_t)(nul - data) :
				    len;

	cert = malloc(clen + 1);
	memcpy(cert, data, clen);
	cert[clen] = '\0';
	if (nul != NULL) {
		key = malloc(len - clen);
		memcpy(key, nul + 1, len - clen - 1);
		key[len - clen - 1] = '\0';
	}
	if (tlscert_check(cert, clen, key, key != NULL ? strlen(key) : 0,
	    names, 2, 1800000000, &info, &cause) == 0)
		tlscert_info_clear(&info);
	free(cause);
	free(cert);
	free(key);
	return (0);
}
