/*
 * DKIM signing of a mail backend's outgoing mail (node-agent/dkim.c):
 * OpenDKIM's KeyTable, SigningTable and keys, from the desired state.
 */
#ifndef OPSN_DKIM_H
#define OPSN_DKIM_H

#include <stddef.h>

struct agent;

/* A domain's signing key (strings borrowed from the desired state). */
struct dkim_key {
	const char	*k_domain;
	const char	*k_selector;
	const char	*k_pem;		/* PKCS#8 or traditional PEM */
};

/*
 * Where the tables go, and who reads them (loop thread, at start). Empty
 * tables are made when there are none, so that OpenDKIM can start.
 */
int	dkim_init(struct agent *, char **cause);
/*
 * Write the tables for these keys when they differ from the live ones
 * (pool thread): a new folder, then one rename makes it current, then
 * OpenDKIM reloads (SIGUSR1). A key that cannot be used is left out and
 * errors[i] says why (errors has n entries, NULL or set, caller frees).
 * -1 with *cause when the tables could not be written (the live ones
 * stay).
 */
int	dkim_apply(const struct dkim_key *, size_t n, char **errors,
	    char **cause);
/* Free what dkim_init kept (after the last apply). */
void	dkim_free(void);

#endif
