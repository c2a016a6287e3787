/*
 * Certificates of a mail or web backend (node-agent/acme.c): obtained by
 * ACME with uacme, brought by a member (manual), or given by the operator
 * (file); their state reported to the controller; the checked pair
 * installed where the daemons read it. Private keys stay on the backend.
 */
#ifndef OPSN_ACME_H
#define OPSN_ACME_H

#include <stddef.h>
#include <stdint.h>

#include "opsn/tlscert.h"

struct agent;

enum acme_mode {
	ACME_MODE_ACME,		/* issued and renewed by the ACME CA */
	ACME_MODE_MANUAL,	/* a member's, delivered with MSG_SITE_CERT */
	ACME_MODE_FILE,		/* the operator's files ([mail] tls_cert) */
	ACME_MODE_OFF,		/* none */
};

/* One certificate a role wants (strings borrowed for the call). */
struct acme_want {
	const char		*w_kind;	/* "site", "mail" */
	const char		*w_id;		/* site id; mail: host name */
	const char *const	*w_names;	/* first: the main name */
	size_t			 w_nnames;
	enum acme_mode		 w_mode;
	const char		*w_sha256;	/* manual */
	const char		*w_cert_file;	/* file */
	const char		*w_key_file;
};

/*
 * Start for a role (loop thread). webroot is the folder nginx serves at
 * /.well-known/acme-challenge/ (made here); changed runs on the loop
 * thread when a certificate to serve appeared or was renewed.
 */
int	acme_init(struct agent *, const char *webroot, void (*changed)(void),
	    char **cause);
/*
 * The whole set of certificates wanted (after each generation); others
 * are forgotten. New or changed ones are looked at at once.
 */
void	acme_set(const struct acme_want *, size_t);
/* The link is up: report every certificate again. */
void	acme_connected(void);
/* Stop: no new work; what runs finishes and is dropped. */
void	acme_stop(void);
/* Nothing running or due now (unit tests). */
int	acme_idle(void);

/* ---- for the roles' pool threads ----------------------------------------- */

/*
 * Install in dir (cert.pem 0644, key.pem 0600) the checked pair w should
 * be served with, when it differs from what is there (*changed set).
 * Returns 1 when dir holds a pair to serve (the new one, or the last good
 * one while it is valid for the main name), 0 when there is none. *warn
 * says why a new pair could not be written (the caller logs it).
 */
int	acme_live(const struct acme_want *w, const char *dir, int *changed,
	    char **warn);
/* TLS_DIR/sub (caller frees). */
char	*acme_tls_path(const char *sub);
/* TLS_DIR/manual/SITE_ID: members' certificates, one folder a SHA-256. */
char	*acme_manual_dir(const char *site_id);
/*
 * Keep a member's certificate for a site (pool thread): checked against
 * names, written under acme_manual_dir(site_id)/SHA256/. sha256 gets the
 * leaf's fingerprint.
 */
int	acme_manual_store(const char *site_id, const char *const *names,
	    size_t nnames, const char *cert_pem, const char *key_pem,
	    char sha256[65], char **cause);

#endif
