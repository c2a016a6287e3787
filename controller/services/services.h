/*
 * Hosted services (mail domains, mailboxes, aliases, sites): what the
 * services*.c files share. services.c holds the route table, backends,
 * placement, the desired state and the journal; services_mail.c the mail
 * routes, services_sites.c the site routes, services_util.c the checks
 * and formats that need no database (unit tested on their own).
 */
#ifndef OPSN_SERVICES_H
#define OPSN_SERVICES_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

struct api_req;

#define SERVICES_HOST_MAX	253	/* a host name, without the final dot */
#define SERVICES_LABEL_MAX	63
#define SERVICES_LOCAL_MAX	64	/* local part of an address */
#define SERVICES_ADDR_MAX	254	/* local@domain */
#define SERVICES_HASH_MAX	512
#define SERVICES_PASSWORD_MIN	8
#define SERVICES_PASSWORD_MAX	1024
#define SERVICES_NAME_MAX	200	/* display names */
#define SERVICES_QUOTA_MAX	((int64_t)1 << 50)	/* 1 PiB */
#define SERVICES_DNS_TTL	3600

/* services_util.c: no database, no global state. */

/*
 * A host name as given (ASCII in any case, or Unicode) into its stored
 * form: lower-case punycode without a final dot, LDH labels of 1 to 63
 * characters, at most 253 in all, at least two labels, a top-level label
 * that is not all digits. -1 with *cause (caller frees).
 */
int	 services_util_host(const char *in, char out[SERVICES_HOST_MAX + 1],
	    char **cause);
/* The Unicode form of a punycode host name, for people (caller frees). */
char	*services_util_unicode(const char *);
/*
 * An address into its stored form (local part lower case, domain as
 * services_util_host). Our own addresses take [a-z0-9._-] local parts;
 * with external set, any dot-atom local part (kept as given) is fine.
 * An empty local part ("@domain", a catch-all) only with catchall set.
 */
#define SERVICES_ADDR_EXTERNAL	0x1
#define SERVICES_ADDR_CATCHALL	0x2
int	 services_util_address(const char *in, int flags,
	    char out[SERVICES_ADDR_MAX + 1], char **cause);
/* A password a user may type: 8 to 1024 bytes, no control character. */
int	 services_util_password_ok(const char *, size_t len, char **cause);
/*
 * A stored hash Dovecot verifies and we accept: {SHA512-CRYPT}$6$...,
 * {CRYPT}$y$... (yescrypt) or {ARGON2ID}$argon2id$...; weaker schemes
 * (MD5, SHA-256 crypt, plain, SSHA...) are refused.
 */
int	 services_util_hash_ok(const char *, char **cause);
/* Hash a password as {SHA512-CRYPT}$6$... (caller frees); NULL + cause. */
char	*services_util_hash_password(const char *, char **cause);
/* A new RSA 2048 DKIM key: PKCS#8 PEM and base64 DER public key. */
int	 services_util_dkim(char **private_pem, char **public_b64,
	    char **cause);
/*
 * The DNS records a mail domain publishes: {"records": [{"name", "type",
 * "ttl", "value"}...], "zone": "lines\n"}; TXT values longer than 255
 * characters are split into several strings in the zone lines.
 */
json_t	*services_util_dns(const char *domain, const char *mx,
	    const char *selector, const char *dkim_b64);
/* Append a record to a document of services_util_dns (and its zone). */
void	 services_util_dns_add(json_t *doc, const char *name,
	    const char *type, const char *value, const char *purpose);
/* One zone-file line for a record (caller frees). */
char	*services_util_zone_line(const char *name, int ttl, const char *type,
	    const char *value);
/* A random (version 4) UUID. */
void	 services_util_uuid(char out[37]);
/* A display name: 0 to 200 bytes, no control characters. */
int	 services_util_name_ok(const char *);

/* services.c: shared by the route files, on the loop thread. */

/* The tenant a scoped token is limited to, or 0. */
int64_t	 services_scope(struct api_req *);
/* Start a write transaction; -1 after replying 503. */
int	 services_begin(struct api_req *);
/*
 * The backend a new domain (role "mail") or site (role "web") goes to:
 * pinned by name, or the ready one with the fewest objects and the least
 * storage. -1 after replying.
 */
int64_t	 services_place(struct api_req *, const char *role,
	    const char *pinned);
/*
 * Inside the caller's transaction: bump the backend's generation and
 * return it (-1 on a database error).
 */
int64_t	 services_bump(int64_t node_id);
/* Inside the transaction: one journal row, pending. -1 on error. */
int	 services_journal(int64_t node_id, int64_t generation,
	    const char *kind, const char *object_id, const char *object,
	    const char *action);
/* After the commit: send the backend its whole desired state. */
void	 services_push(int64_t node_id);
/* services/sync.c: a backend's desired state on the wire. */
void	 services_sync_init(uv_loop_t *);
void	 services_sync_stop(void);
void	 services_sync_hello(int64_t node_id);
void	 services_sync_have(int64_t node_id, const uint8_t *, size_t);
void	 services_sync_gone(int64_t node_id);
/* "31001": how logs and the desired state name a tenant. */
void	 services_tenant_ref(int64_t tenant, char *, size_t);
/* The tenant's status ("active", "suspended", "withdrawn", "" if none). */
void	 services_tenant_status(int64_t tenant, char *, size_t);
/* {"state", "message", "generation", "applied_generation"} of a row. */
json_t	*services_live_json(const char *state, const char *message,
	    int64_t generation, int64_t applied);
/* The MX host of a backend: its public name, hostname or node name. */
char	*services_mx(int64_t node_id);
/*
 * The tenant a create names in its "tenant" field (or the scoped token's
 * own), checked to be one that may get new services; -1 after replying.
 */
int64_t	 services_tenant_arg(struct api_req *, json_t *);
/* Host name, tenant, quota and backend of a new domain or site. */
int	 services_new_args(struct api_req *, json_t *body, const char *field,
	    const char *example, char host[SERVICES_HOST_MAX + 1],
	    int64_t *tenant, int64_t *quota, const char **backend);
/* Retention of a deleted mailbox, in seconds. */
int64_t	 services_retention(void);
/* A quota field: absent (*out untouched, 0), a size, or null (-1 = none). */
int	 services_quota_field(struct api_req *, json_t *body, const char *,
	    int required, int64_t *out);

/* services_mail.c */
/* A mail domain as the routes need it. */
struct mail_domain {
	int64_t	 md_id;
	int64_t	 md_tenant;
	int64_t	 md_node;
	int64_t	 md_quota;		/* -1: no limit */
	char	 md_name[SERVICES_HOST_MAX + 1];
};
/* The domain a name (any case, Unicode) names in r's scope; -1 after 404. */
int	 services_mail_domain_find(struct api_req *, const char *ref,
	    struct mail_domain *);
void	 services_mail_domain_create(struct api_req *);
void	 services_mail_domain_list(struct api_req *);
void	 services_mail_domain_get(struct api_req *);
void	 services_mail_domain_dns(struct api_req *);
void	 services_mail_domain_check(struct api_req *);
void	 services_mail_domain_dkim_rotate(struct api_req *);
void	 services_mail_domain_delete(struct api_req *);
void	 services_mail_box_create(struct api_req *);
void	 services_mail_box_list(struct api_req *);
void	 services_mail_box_get(struct api_req *);
void	 services_mail_box_update(struct api_req *);
void	 services_mail_box_password(struct api_req *);
void	 services_mail_box_suspend(struct api_req *);
void	 services_mail_box_activate(struct api_req *);
void	 services_mail_box_delete(struct api_req *);
void	 services_mail_box_restore(struct api_req *);
void	 services_mail_box_import(struct api_req *);
void	 services_mail_alias_create(struct api_req *);
void	 services_mail_alias_list(struct api_req *);
void	 services_mail_alias_get(struct api_req *);
void	 services_mail_alias_delete(struct api_req *);
/* Drop deleted mailboxes whose retention is over; 1 if any went. */
int	 services_mail_purge(int64_t now);

/* services_sites.c */
/* The site a {hostname} names (host name or id); -1 after a 404. */
int	 services_sites_find(struct api_req *, char id[37], char *host,
	    size_t hlen, char *status, size_t slen, int64_t *node);
/* A site as the API shows it (caller owns), or NULL. */
json_t	*services_sites_json(const char *id);
void	 services_sites_create(struct api_req *);
void	 services_sites_list(struct api_req *);
void	 services_sites_get(struct api_req *);
void	 services_sites_suspend(struct api_req *);
void	 services_sites_activate(struct api_req *);
void	 services_sites_delete(struct api_req *);

/* certs.c: certificates as the agents report them; members' own. */
struct sqlite3_stmt;
/*
 * The certificate object of the API from 7 columns at col (state,
 * source, not_before, not_after, issuer, message, next_attempt; NULLs
 * when nothing was reported); tls is a site's mode, NULL for a backend.
 */
json_t	*services_certs_json(struct sqlite3_stmt *, int col, const char *tls);
/* Those columns of services_certs c (LEFT JOINed). */
#define SERVICES_CERT_COLS "c.state, c.source, c.not_before, c.not_after, " \
	"c.issuer, c.message, c.next_attempt"
void	 services_certs_report(int64_t node_id, const uint8_t *, size_t);
void	 services_certs_result(int64_t node_id, const uint8_t *, size_t);
void	 services_certs_tick(void);
void	 services_certs_gone(int64_t node_id);
void	 services_certs_stop(void);
void	 services_sites_cert_set(struct api_req *);
void	 services_sites_cert_acme(struct api_req *);

/* dkim.c: a mail domain's signing keys and their rotation. */
struct services_dkim {
	const char	*dk_role;	/* "current", "next", "previous" */
	char		 dk_selector[64];
	char		*dk_public_b64;
};
/* The keys whose records a domain publishes (current first); frees. */
size_t	 services_dkim_keys(int64_t domain_id, struct services_dkim **);
void	 services_dkim_keys_free(struct services_dkim *, size_t);
/*
 * Sign with the next key from now on (the current one becomes the
 * previous): generation, journal, audit by r, push. -1 on a database
 * error (rolled back).
 */
int	 services_dkim_promote(struct api_req *r, int64_t domain_id);

/* check.c: what the DNS publishes, compared with what opsn expects. */
void	 services_sites_check(struct api_req *);

/* services/services.c: the module, and what the unit tests drive. */
struct ctl;
extern const struct ctl_module services_module;
int	services_init(struct ctl *, char **cause);
void	services_agent_msg(int64_t node_id, uint16_t type, const uint8_t *,
	    size_t);
void	services_agent_hello(int64_t node_id, const char *roles);
void	services_agent_gone(int64_t node_id);

#endif
