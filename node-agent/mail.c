/*
 * The mail role: the controller's mail domains, mailboxes and aliases
 * become two SQLite files that Postfix (sqlite: lookup tables) and Dovecot
 * (passdb and userdb of driver sql) read directly, so mail flows and users
 * log in while the controller is away.
 *
 *   MAIL_DIR/.maps/postfix.sqlite  domains, mailboxes, aliases, access,
 *                                  transport (no secrets; postfix reads it)
 *   MAIL_DIR/.maps/dovecot.sqlite  users with password hashes (root only:
 *                                  Dovecot's auth worker runs as root)
 *   MAIL_DIR/DOMAIN/LOCAL          a mailbox's home, Maildir inside
 *
 * The queries are in ops/mail/. Both daemons keep the file they opened in
 * their worker processes, and writing the live file in place risks lock
 * errors, so each generation is written as a new file, fsynced, renamed
 * over the old one, and both daemons are reloaded (PLATFORM.md). Dovecot
 * goes first (file and reload): a new mailbox is a user before Postfix
 * accepts mail for it. A state whose content did not change (the digest
 * kept in the maps) is neither written nor reloaded. A delta that changed
 * mailboxes only patches copies of the live maps instead of writing them
 * whole (mail_apply_delta).
 *
 * Semantics (docs/services.md): a suspended mailbox, or any mailbox of a
 * suspended domain, cannot log in and its mail is held (451 at RCPT; what
 * reached the queue through an alias waits on the "retry" transport and
 * is flushed when the mailbox is reactivated). A deleted mailbox cannot
 * log in and its mail is refused with 550, but its maildir stays until
 * its retention ends: then the agent removes the maildir and reports the
 * mailbox "purged". A mailbox that leaves the desired state without having
 * been deleted keeps its maildir (it may have moved to another backend).
 *
 * Everything that blocks (SQLite, fsync, the daemons' tools, walking the
 * maildirs) runs on the uv thread pool, one generation at a time (svc.c).
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include "opsn/frame.h"
#include "opsn/log.h"
#include "opsn/tlscert.h"
#include "opsn/util.h"
#include "acme.h"
#include "agent.h"
#include "dkim.h"
#include "svc.h"

#define MAIL_MAPS		".maps"
#define MAIL_PF_DB		"postfix.sqlite"
#define MAIL_DV_DB		"dovecot.sqlite"
#define MAIL_CMD_TIMEOUT_MS	30000
#define MAIL_KICK_DIRECT	4	/* more: ask doveadm who first */
#define MAIL_KICK_MAX		200	/* doveadm kick per generation */
#define MAIL_HASH_MAX		512

/* What senders meet (docs/services.md, "Suspension semantics"). */
#define MAIL_HOLD	"451 4.7.1 mailbox suspended"
#define MAIL_HOLD_DOM	"451 4.7.1 domain suspended"
#define MAIL_GONE	"550 5.1.1 user unknown"
#define MAIL_RETRY	"retry:4.7.1 mailbox suspended"

static const char mail_pf_schema[] =
	"CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE domains (name TEXT PRIMARY KEY, tenant TEXT NOT NULL,"
	" suspended INTEGER NOT NULL);"
	"CREATE TABLE mailboxes (address TEXT PRIMARY KEY, id TEXT NOT NULL,"
	" tenant TEXT NOT NULL, domain TEXT NOT NULL, home TEXT NOT NULL,"
	" quota_bytes INTEGER NOT NULL, suspended INTEGER NOT NULL,"
	" deleted INTEGER NOT NULL, purge_after INTEGER NOT NULL);"
	"CREATE INDEX mailboxes_id ON mailboxes (id);"
	"CREATE TABLE aliases (address TEXT PRIMARY KEY, id TEXT NOT NULL,"
	" targets TEXT NOT NULL);"
	"CREATE TABLE access (key TEXT PRIMARY KEY, action TEXT NOT NULL);"
	"CREATE TABLE transport (address TEXT PRIMARY KEY,"
	" transport TEXT NOT NULL);";

static const char mail_dv_schema[] =
	"CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE users (address TEXT PRIMARY KEY, password TEXT NOT NULL,"
	" home TEXT NOT NULL, quota_rule TEXT, login INTEGER NOT NULL,"
	" deleted INTEGER NOT NULL);";

/* A mailbox as it is written into the maps. */
struct mail_box {
	const char	*b_addr;
	const char	*b_id;
	const char	*b_tenant;
	const char	*b_domain;
	const char	*b_hash;
	char		*b_home;
	uint64_t	 b_quota;
	int		 b_held;	/* suspended, or its domain is */
	int		 b_deleted;
	int64_t		 b_purge_after;
	size_t		 b_idx;		/* in the desired state */
};

/* What the previous maps said about a mailbox. */
struct mail_old {
	char		*o_addr;
	char		*o_id;
	char		*o_hash;
	int		 o_held;
	int		 o_deleted;
	int		 o_login;
	int		 o_gone;	/* not in the new state */
};

struct mail_olds {
	struct mail_old	*v;
	size_t		 n;
	char		 digest[65];
	int		 existed;	/* there were maps */
};

struct mail_plan {
	const Opsn__MailDomain	**doms;
	size_t			 ndoms;
	struct mail_box		*boxes;
	size_t			 nboxes;
	const Opsn__Alias	**als;
	char			**al_targets;
	size_t			 nals;
	char			 digest[65];
	uint64_t		 gen;
};

static struct agent	*ma;
static struct svc	 mail_svc;
static char		*mail_dir;
static char		*mail_maps;
static char		*mail_postfix_dir;
static char		*mail_dovecot_conf;
static char		*mail_postfix_bin;
static char		*mail_doveadm_bin;
static char		*mail_owner;
static char		*mail_tls_cert;	/* the operator's, or "" */
static char		*mail_tls_key;
static char		*mail_tls_dir;	/* MAIL_DIR/.tls: what is served */
static gid_t		 mail_postfix_gid = (gid_t)-1;
/* Only the pool thread of the running apply touches this. */
static char		 mail_reloaded[65];

/* ---- validation ---------------------------------------------------------- */

static int
mail_dom_cmp(const void *a, const void *b)
{
	const Opsn__MailDomain *const	*x = a, *const *y = b;

	return (strcmp((*x)->name, (*y)->name));
}

static const Opsn__MailDomain *
mail_dom_find(const struct mail_plan *p, const char *name)
{
	Opsn__MailDomain	 key, *kp = &key;
	const Opsn__MailDomain	**f;

	key.name = (char *)name;
	f = bsearch(&kp, p->doms, p->ndoms, sizeof(*p->doms), mail_dom_cmp);
	return (f != NULL ? *f : NULL);
}

static int
mail_box_cmp(const void *a, const void *b)
{
	const struct mail_box	*x = a, *y = b;

	return (strcmp(x->b_addr, y->b_addr));
}

/* By address, then as listed: the first of duplicates comes first. */
static int
mail_box_order(const void *a, const void *b)
{
	const struct mail_box	*x = a, *y = b;
	int			 c = strcmp(x->b_addr, y->b_addr);

	if (c != 0)
		return (c);
	return (x->b_idx < y->b_idx ? -1 : x->b_idx > y->b_idx);
}

static int
mail_alias_cmp(const void *a, const void *b)
{
	const Opsn__Alias *const	*x = a, *const *y = b;

	return (strcmp((*x)->address, (*y)->address));
}

/* A password hash Dovecot will verify: {SCHEME}value, printable. */
static int
mail_valid_hash(const char *h, char **cause)
{
	const char	*p;

	if (*h != '{' || (p = strchr(h, '}')) == NULL || p == h + 1 ||
	    p[1] == '\0') {
		xasprintf(cause, "password hash is not {SCHEME}value");
		return (-1);
	}
	if (strlen(h) > MAIL_HASH_MAX) {
		xasprintf(cause, "password hash is longer than %d bytes",
		    MAIL_HASH_MAX);
		return (-1);
	}
	for (p = h; *p != '\0'; p++)
		if (*p <= ' ' || *p > '~') {
			xasprintf(cause, "password hash has a space or a "
			    "control character");
			return (-1);
		}
	if (strncmp(h, "{PLAIN", 6) == 0 || strncmp(h, "{CLEAR", 6) == 0 ||
	    strncmp(h, "{CLEARTEXT", 10) == 0) {
		xasprintf(cause, "password is not hashed");
		return (-1);
	}
	return (0);
}

/*
 * An alias target: one of our addresses, or an external one with any
 * unquoted RFC 5322 local part (atext and dots), kept as given. Nothing
 * that would split or escape Postfix's comma-separated result.
 */
static int
mail_valid_target(const char *t, char **cause)
{
	const char	*at = strrchr(t, '@'), *p;
	char		*dom;
	size_t		 i;
	int		 rc;

	if (at == NULL || at == t || at - t > 64 || t[0] == '.' ||
	    at[-1] == '.' || strstr(t, "..") != NULL) {
		xasprintf(cause, "target '%.64s' is not an address", t);
		return (-1);
	}
	for (p = t; p < at; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') ||
		    strchr("!#$%&'*+-/=?^_`{|}~.", *p) != NULL)) {
			xasprintf(cause, "target '%.64s' has a character an "
			    "address cannot have unquoted", t);
			return (-1);
		}
	/* Host names are compared in lower case. */
	dom = xstrdup(at + 1);
	for (i = 0; dom[i] != '\0'; i++)
		if (dom[i] >= 'A' && dom[i] <= 'Z')
			dom[i] += 'a' - 'A';
	rc = svc_valid_hostname(dom, cause);
	free(dom);
	return (rc);
}

static void
mail_obj_error(struct svc_result *r, const char *kind, const char *id,
    char *cause)
{
	log_warnx("mail: %s %s: %s", kind, id, cause);
	svc_result_add(r, kind, id, "error", cause);
	free(cause);
}

static const char *
mail_box_id(const Opsn__Mailbox *m)
{
	return (*m->id != '\0' ? m->id : m->address);
}

static const char *
mail_alias_id(const Opsn__Alias *a)
{
	return (*a->id != '\0' ? a->id : a->address);
}

/*
 * Keep the objects that can be written; the others get an error status
 * and are left out of the maps (an alias of a bad domain, a mailbox with
 * no usable hash). Of a mailbox listed twice the first is kept; of a
 * domain or alias, one (the controller's names are unique anyway).
 */
static void
mail_plan_doms(const Opsn__ServicesDesired *d, struct mail_plan *p,
    struct svc_result *r)
{
	char	*cause = NULL;
	size_t	 i, n;

	p->doms = xcalloc(d->n_domains + 1, sizeof(*p->doms));
	for (i = 0; i < d->n_domains; i++) {
		if (svc_valid_hostname(d->domains[i]->name, &cause) == -1) {
			mail_obj_error(r, "domain", d->domains[i]->name, cause);
			continue;
		}
		p->doms[p->ndoms++] = d->domains[i];
	}
	qsort(p->doms, p->ndoms, sizeof(*p->doms), mail_dom_cmp);
	for (i = 0, n = 0; i < p->ndoms; i++) {
		if (n > 0 && strcmp(p->doms[n - 1]->name, p->doms[i]->name) ==
		    0) {
			xasprintf(&cause, "domain listed twice");
			mail_obj_error(r, "domain", p->doms[i]->name, cause);
			continue;
		}
		p->doms[n++] = p->doms[i];
	}
	p->ndoms = n;
}

/*
 * A mailbox of the desired state (its index i) as the maps write it, if
 * it can be written: -1 with *cause otherwise.
 */
static int
mail_box_make(const struct mail_plan *p, const Opsn__Mailbox *m, size_t i,
    struct mail_box *b, char **cause)
{
	const Opsn__MailDomain	*dom;
	const char		*at;

	if (svc_valid_address(m->address, 0, cause) == -1)
		return (-1);
	at = strchr(m->address, '@');
	if (*m->domain != '\0' && strcmp(m->domain, at + 1) != 0) {
		xasprintf(cause, "address %s is not in domain %s", m->address,
		    m->domain);
		return (-1);
	}
	if ((dom = mail_dom_find(p, at + 1)) == NULL) {
		xasprintf(cause, "domain %s is not on this backend", at + 1);
		return (-1);
	}
	if (!m->deleted && mail_valid_hash(m->password_hash, cause) == -1)
		return (-1);
	b->b_idx = i;
	b->b_addr = m->address;
	b->b_id = mail_box_id(m);
	b->b_tenant = *m->tenant != '\0' ? m->tenant : dom->tenant;
	b->b_domain = dom->name;
	b->b_hash = m->deleted ? "" : m->password_hash;
	b->b_quota = m->quota_bytes;
	b->b_held = m->suspended || dom->suspended;
	b->b_deleted = m->deleted;
	b->b_purge_after = m->deleted ? m->purge_after : 0;
	xasprintf(&b->b_home, "%s/%s/%.*s", mail_dir, dom->name,
	    (int)(at - m->address), m->address);
	return (0);
}

static void
mail_plan_build(const Opsn__ServicesDesired *d, struct mail_plan *p,
    struct svc_result *r)
{
	char			*cause = NULL, *targets;
	size_t			 i, k, n, len;

	memset(p, 0, sizeof(*p));
	mail_plan_doms(d, p, r);
	p->boxes = xcalloc(d->n_mailboxes + 1, sizeof(*p->boxes));
	for (i = 0; i < d->n_mailboxes; i++) {
		if (mail_box_make(p, d->mailboxes[i], i,
		    &p->boxes[p->nboxes], &cause) == -1) {
			mail_obj_error(r, "mailbox",
			    mail_box_id(d->mailboxes[i]), cause);
			continue;
		}
		p->nboxes++;
	}
	qsort(p->boxes, p->nboxes, sizeof(*p->boxes), mail_box_order);
	for (i = 0, n = 0; i < p->nboxes; i++) {
		if (n > 0 && strcmp(p->boxes[n - 1].b_addr,
		    p->boxes[i].b_addr) == 0) {
			xasprintf(&cause, "address %s listed twice",
			    p->boxes[i].b_addr);
			mail_obj_error(r, "mailbox", p->boxes[i].b_id, cause);
			free(p->boxes[i].b_home);
			continue;
		}
		p->boxes[n++] = p->boxes[i];
	}
	p->nboxes = n;

	p->als = xcalloc(d->n_aliases + 1, sizeof(*p->als));
	for (i = 0; i < d->n_aliases; i++) {
		const Opsn__Alias	*a = d->aliases[i];

		if (svc_valid_address(a->address, 1, &cause) == -1) {
			mail_obj_error(r, "alias", mail_alias_id(a), cause);
			continue;
		}
		if (mail_dom_find(p, strchr(a->address, '@') + 1) == NULL) {
			xasprintf(&cause, "domain %s is not on this backend",
			    strchr(a->address, '@') + 1);
			mail_obj_error(r, "alias", mail_alias_id(a), cause);
			continue;
		}
		if (a->n_targets == 0) {
			xasprintf(&cause, "alias has no target");
			mail_obj_error(r, "alias", mail_alias_id(a), cause);
			continue;
		}
		for (k = 0; k < a->n_targets; k++)
			if (mail_valid_target(a->targets[k], &cause) == -1)
				break;
		if (k < a->n_targets) {
			mail_obj_error(r, "alias", mail_alias_id(a), cause);
			continue;
		}
		p->als[p->nals++] = a;
	}
	qsort(p->als, p->nals, sizeof(*p->als), mail_alias_cmp);
	p->al_targets = xcalloc(p->nals + 1, sizeof(*p->al_targets));
	for (i = 0, n = 0; i < p->nals; i++) {
		if (n > 0 && strcmp(p->als[n - 1]->address,
		    p->als[i]->address) == 0) {
			xasprintf(&cause, "alias %s listed twice",
			    p->als[i]->address);
			mail_obj_error(r, "alias", mail_alias_id(p->als[i]),
			    cause);
			continue;
		}
		p->als[n] = p->als[i];
		len = 1;
		for (k = 0; k < p->als[n]->n_targets; k++)
			len += strlen(p->als[n]->targets[k]) + 1;
		targets = xcalloc(1, len);
		for (k = 0, len = 0; k < p->als[n]->n_targets; k++) {
			size_t l = strlen(p->als[n]->targets[k]);

			if (k > 0)
				targets[len++] = ',';
			memcpy(targets + len, p->als[n]->targets[k], l);
			len += l;
		}
		p->al_targets[n++] = targets;
	}
	p->nals = n;
}

static void
mail_plan_free(struct mail_plan *p)
{
	size_t	 i;

	for (i = 0; i < p->nboxes; i++)
		free(p->boxes[i].b_home);
	for (i = 0; i < p->nals; i++)
		free(p->al_targets[i]);
	free(p->boxes);
	free(p->doms);
	free(p->als);
	free(p->al_targets);
	memset(p, 0, sizeof(*p));
}

/* ---- the digest: nothing changed, nothing to write or reload ------------- */

static void
mail_dg(EVP_MD_CTX *c, const char *s)
{
	EVP_DigestUpdate(c, s, strlen(s) + 1);
}

static void
mail_dg_num(EVP_MD_CTX *c, int64_t v)
{
	char	 buf[32];

	snprintf(buf, sizeof(buf), "%" PRId64, v);
	mail_dg(c, buf);
}

/* seed: "" for a whole state; a delta's names what it was applied to. */
static void
mail_plan_digest(struct mail_plan *p, const char *seed)
{
	EVP_MD_CTX	*c = EVP_MD_CTX_new();
	unsigned char	 md[EVP_MAX_MD_SIZE];
	unsigned int	 mdlen = 0;
	size_t		 i;

	if (c == NULL)
		fatalx("mail: EVP_MD_CTX_new");
	EVP_DigestInit_ex(c, EVP_sha256(), NULL);
	/* 2: the maps index mailboxes by id (for deltas). */
	mail_dg(c, "opsn-mail-maps-2");
	mail_dg(c, seed);
	mail_dg(c, mail_dir);
	for (i = 0; i < p->ndoms; i++) {
		mail_dg(c, "D");
		mail_dg(c, p->doms[i]->name);
		mail_dg(c, p->doms[i]->tenant);
		mail_dg_num(c, p->doms[i]->suspended);
	}
	for (i = 0; i < p->nboxes; i++) {
		struct mail_box *b = &p->boxes[i];

		mail_dg(c, "M");
		mail_dg(c, b->b_addr);
		mail_dg(c, b->b_id);
		mail_dg(c, b->b_tenant);
		mail_dg(c, b->b_hash);
		mail_dg_num(c, (int64_t)b->b_quota);
		mail_dg_num(c, b->b_held);
		mail_dg_num(c, b->b_deleted);
		mail_dg_num(c, b->b_purge_after);
	}
	for (i = 0; i < p->nals; i++) {
		mail_dg(c, "A");
		mail_dg(c, p->als[i]->address);
		mail_dg(c, mail_alias_id(p->als[i]));
		mail_dg(c, p->al_targets[i]);
	}
	EVP_DigestFinal_ex(c, md, &mdlen);
	EVP_MD_CTX_free(c);
	util_hex(md, mdlen, p->digest);
}

/* ---- the previous maps --------------------------------------------------- */

static int
mail_old_cmp(const void *a, const void *b)
{
	const struct mail_old	*x = a, *y = b;

	return (strcmp(x->o_addr, y->o_addr));
}

static struct mail_old *
mail_old_find(struct mail_olds *o, const char *addr)
{
	struct mail_old	 key;

	if (o->n == 0)
		return (NULL);
	key.o_addr = (char *)addr;
	return (bsearch(&key, o->v, o->n, sizeof(*o->v), mail_old_cmp));
}

static void
mail_olds_free(struct mail_olds *o)
{
	size_t	 i;

	for (i = 0; i < o->n; i++) {
		free(o->v[i].o_addr);
		free(o->v[i].o_id);
		free(o->v[i].o_hash);
	}
	free(o->v);
	memset(o, 0, sizeof(*o));
}

static char *
mail_col(sqlite3_stmt *st, int i)
{
	const unsigned char	*t = sqlite3_column_text(st, i);

	return (xstrdup(t != NULL ? (const char *)t : ""));
}

/*
 * Read what the live maps hold: mailboxes with their state and password
 * hash, and the digest of the plan they were written from. Missing or
 * unreadable maps are an empty past (first start).
 */
static void
mail_olds_read(struct mail_olds *o)
{
	sqlite3		*db = NULL;
	sqlite3_stmt	*st = NULL;
	struct mail_old	*m;
	char		*path;
	size_t		 cap = 0;

	memset(o, 0, sizeof(*o));
	xasprintf(&path, "%s/%s", mail_maps, MAIL_PF_DB);
	if (access(path, F_OK) == -1 || sqlite3_open_v2(path, &db,
	    SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		goto done;
	o->existed = 1;
	if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = "
	    "'digest'", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(st, 0);

		if (t != NULL)
			strlcpy(o->digest, (const char *)t, sizeof(o->digest));
	}
	sqlite3_finalize(st);
	st = NULL;
	if (sqlite3_prepare_v2(db, "SELECT address, id, suspended, deleted "
	    "FROM mailboxes ORDER BY address", -1, &st, NULL) != SQLITE_OK)
		goto done;
	while (sqlite3_step(st) == SQLITE_ROW) {
		if (o->n == cap) {
			cap = cap ? 2 * cap : 64;
			o->v = xrealloc(o->v, cap * sizeof(*o->v));
		}
		m = &o->v[o->n++];
		memset(m, 0, sizeof(*m));
		m->o_addr = mail_col(st, 0);
		m->o_id = mail_col(st, 1);
		m->o_held = sqlite3_column_int(st, 2);
		m->o_deleted = sqlite3_column_int(st, 3);
	}
	sqlite3_finalize(st);
	st = NULL;
	sqlite3_close(db);
	db = NULL;
	/* SQLite's order (binary) is strcmp's: bsearch works on it. */
	free(path);
	xasprintf(&path, "%s/%s", mail_maps, MAIL_DV_DB);
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) !=
	    SQLITE_OK || sqlite3_prepare_v2(db, "SELECT address, password, "
	    "login FROM users", -1, &st, NULL) != SQLITE_OK)
		goto done;
	while (sqlite3_step(st) == SQLITE_ROW) {
		const unsigned char *a = sqlite3_column_text(st, 0);

		if (a == NULL ||
		    (m = mail_old_find(o, (const char *)a)) == NULL)
			continue;
		m->o_hash = mail_col(st, 1);
		m->o_login = sqlite3_column_int(st, 2);
	}
done:
	sqlite3_finalize(st);
	if (db != NULL)
		sqlite3_close(db);
	free(path);
}

/* ---- writing the maps ----------------------------------------------------- */

static int
mail_sql_err(sqlite3 *db, const char *what, char **cause)
{
	xasprintf(cause, "%s: %s", what, sqlite3_errmsg(db));
	return (-1);
}

/* Bind texts (or NULL for a NULL) and integers by a format: 't' or 'i'. */
static int
mail_exec(sqlite3 *db, sqlite3_stmt *st, const char *fmt, ...)
{
	va_list		 ap;
	const char	*s;
	int		 i, rc;

	sqlite3_reset(st);
	va_start(ap, fmt);
	for (i = 0; fmt[i] != '\0'; i++) {
		if (fmt[i] == 't') {
			s = va_arg(ap, const char *);
			if (s == NULL)
				sqlite3_bind_null(st, i + 1);
			else
				sqlite3_bind_text(st, i + 1, s, -1,
				    SQLITE_STATIC);
		} else
			sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
	}
	va_end(ap);
	rc = sqlite3_step(st);
	return (rc == SQLITE_DONE ? 0 : -1);
}

/* A mailbox's rows in the postfix maps: itself, its access and transport. */
static int
mail_put_postfix(sqlite3 *db, sqlite3_stmt *box, sqlite3_stmt *acc,
    sqlite3_stmt *tr, const struct mail_box *b)
{
	if (mail_exec(db, box, "tttttiiii", b->b_addr, b->b_id, b->b_tenant,
	    b->b_domain, b->b_home, (int64_t)b->b_quota, (int64_t)b->b_held,
	    (int64_t)b->b_deleted, b->b_purge_after) == -1)
		return (-1);
	if (b->b_deleted)
		return (mail_exec(db, acc, "tt", b->b_addr, MAIL_GONE));
	if (b->b_held && (mail_exec(db, acc, "tt", b->b_addr, MAIL_HOLD) ==
	    -1 || mail_exec(db, tr, "tt", b->b_addr, MAIL_RETRY) == -1))
		return (-1);
	return (0);
}

/* A mailbox's user for Dovecot. */
static int
mail_put_dovecot(sqlite3 *db, sqlite3_stmt *u, const struct mail_box *b)
{
	char	 rule[64];

	/* No rule: Dovecot's default, no limit. */
	snprintf(rule, sizeof(rule), "*:bytes=%" PRIu64, b->b_quota);
	return (mail_exec(db, u, "ttttii", b->b_addr, b->b_hash, b->b_home,
	    b->b_quota > 0 ? rule : NULL, (int64_t)(!b->b_held &&
	    !b->b_deleted), (int64_t)b->b_deleted));
}

static int
mail_fill_postfix(sqlite3 *db, const struct mail_plan *p, char **cause)
{
	sqlite3_stmt	*dom = NULL, *box = NULL, *al = NULL, *acc = NULL;
	sqlite3_stmt	*tr = NULL, *meta = NULL;
	size_t		 i;
	int		 rc = -1;

	if (sqlite3_prepare_v2(db, "INSERT INTO domains VALUES (?, ?, ?)", -1,
	    &dom, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT INTO mailboxes VALUES (?, ?, ?, ?, "
	    "?, ?, ?, ?, ?)", -1, &box, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT INTO aliases VALUES (?, ?, ?)", -1,
	    &al, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO access VALUES "
	    "(?, ?)", -1, &acc, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT INTO transport VALUES (?, ?)", -1,
	    &tr, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT INTO meta VALUES (?, ?)", -1,
	    &meta, NULL) != SQLITE_OK) {
		mail_sql_err(db, "preparing the postfix maps", cause);
		goto done;
	}
	for (i = 0; i < p->ndoms; i++) {
		const Opsn__MailDomain *d = p->doms[i];

		if (mail_exec(db, dom, "tti", d->name, d->tenant,
		    (int64_t)d->suspended) == -1)
			goto fail;
		if (d->suspended && mail_exec(db, acc, "tt", d->name,
		    MAIL_HOLD_DOM) == -1)
			goto fail;
	}
	for (i = 0; i < p->nboxes; i++)
		if (mail_put_postfix(db, box, acc, tr, &p->boxes[i]) == -1)
			goto fail;
	for (i = 0; i < p->nals; i++)
		if (mail_exec(db, al, "ttt", p->als[i]->address,
		    mail_alias_id(p->als[i]), p->al_targets[i]) == -1)
			goto fail;
	if (mail_exec(db, meta, "tt", "digest", p->digest) == -1)
		goto fail;
	rc = 0;
	goto done;
fail:
	mail_sql_err(db, "writing the postfix maps", cause);
done:
	sqlite3_finalize(dom);
	sqlite3_finalize(box);
	sqlite3_finalize(al);
	sqlite3_finalize(acc);
	sqlite3_finalize(tr);
	sqlite3_finalize(meta);
	return (rc);
}

static int
mail_fill_dovecot(sqlite3 *db, const struct mail_plan *p, char **cause)
{
	sqlite3_stmt	*u = NULL, *meta = NULL;
	size_t		 i;
	int		 rc = -1;

	if (sqlite3_prepare_v2(db, "INSERT INTO users VALUES (?, ?, ?, ?, ?, "
	    "?)", -1, &u, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT INTO meta VALUES (?, ?)", -1,
	    &meta, NULL) != SQLITE_OK) {
		mail_sql_err(db, "preparing the dovecot users", cause);
		goto done;
	}
	for (i = 0; i < p->nboxes; i++)
		if (mail_put_dovecot(db, u, &p->boxes[i]) == -1) {
			mail_sql_err(db, "writing the dovecot users", cause);
			goto done;
		}
	if (mail_exec(db, meta, "tt", "digest", p->digest) == -1) {
		mail_sql_err(db, "writing the dovecot users", cause);
		goto done;
	}
	rc = 0;
done:
	sqlite3_finalize(u);
	sqlite3_finalize(meta);
	return (rc);
}

/* A written file's mode and group, then fsync (before it goes live). */
static int
mail_db_seal(const char *tmp, mode_t mode, gid_t gid, char **cause)
{
	int	 fd;

	if ((fd = open(tmp, O_RDONLY | O_CLOEXEC)) == -1 ||
	    fchmod(fd, mode) == -1 ||
	    (gid != (gid_t)-1 && fchown(fd, 0, gid) == -1) || fsync(fd) == -1) {
		xasprintf(cause, "%s: %s", tmp, strerror(errno));
		if (fd != -1)
			close(fd);
		return (-1);
	}
	close(fd);
	return (0);
}

/*
 * Write a whole database under a temporary name and fsync it; the caller
 * renames it into place. mode and gid are set before the rename so that
 * the file never is live with the wrong owner.
 */
static int
mail_db_write(const char *tmp, const char *schema, const struct mail_plan *p,
    int (*fill)(sqlite3 *, const struct mail_plan *, char **), mode_t mode,
    gid_t gid, char **cause)
{
	sqlite3	*db = NULL;

	unlink(tmp);
	if (sqlite3_open_v2(tmp, &db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
		xasprintf(cause, "%s: %s", tmp, db ? sqlite3_errmsg(db) :
		    "cannot open");
		goto fail;
	}
	/* A file nobody reads yet: its own fsync below is the durability. */
	if (sqlite3_exec(db, "PRAGMA journal_mode = OFF; PRAGMA synchronous "
	    "= OFF;", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(db, schema, NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
		mail_sql_err(db, tmp, cause);
		goto fail;
	}
	if (fill(db, p, cause) == -1)
		goto fail;
	if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		mail_sql_err(db, tmp, cause);
		goto fail;
	}
	if (sqlite3_close(db) != SQLITE_OK) {
		xasprintf(cause, "%s: close failed", tmp);
		db = NULL;
		goto fail;
	}
	db = NULL;
	if (mail_db_seal(tmp, mode, gid, cause) == -1)
		goto fail;
	return (0);
fail:
	if (db != NULL)
		sqlite3_close(db);
	unlink(tmp);
	return (-1);
}

static int
mail_write_maps(const struct mail_plan *p, char **cause)
{
	char	*pf, *pf_tmp, *dv, *dv_tmp;
	int	 rc = -1;

	xasprintf(&pf, "%s/%s", mail_maps, MAIL_PF_DB);
	xasprintf(&pf_tmp, "%s/.%s.new", mail_maps, MAIL_PF_DB);
	xasprintf(&dv, "%s/%s", mail_maps, MAIL_DV_DB);
	xasprintf(&dv_tmp, "%s/.%s.new", mail_maps, MAIL_DV_DB);
	if (mail_db_write(dv_tmp, mail_dv_schema, p, mail_fill_dovecot, 0600,
	    (gid_t)-1, cause) == -1)
		goto done;
	/* Addresses only: postfix's processes read it. */
	if (mail_db_write(pf_tmp, mail_pf_schema, p, mail_fill_postfix,
	    mail_postfix_gid != (gid_t)-1 ? 0640 : 0644, mail_postfix_gid,
	    cause) == -1) {
		unlink(dv_tmp);
		goto done;
	}
	if (rename(dv_tmp, dv) == -1) {
		xasprintf(cause, "rename %s: %s", dv, strerror(errno));
		unlink(dv_tmp);
		unlink(pf_tmp);
		goto done;
	}
	if (rename(pf_tmp, pf) == -1) {
		xasprintf(cause, "rename %s: %s", pf, strerror(errno));
		unlink(pf_tmp);
		goto done;
	}
	rc = svc_fsync_dir(mail_maps, cause);
done:
	free(pf);
	free(pf_tmp);
	free(dv);
	free(dv_tmp);
	return (rc);
}

/* ---- the daemons -------------------------------------------------------- */

/* Run a tool; -1 with *cause (a short message) when it fails. */
static int
mail_tool(char **argv, char **cause)
{
	char	*out = NULL;
	int	 st;

	st = svc_run(argv, MAIL_CMD_TIMEOUT_MS, &out);
	if (st != 0) {
		*cause = svc_run_message(argv[0], st, out);
		free(out);
		return (-1);
	}
	free(out);
	return (0);
}

static int
mail_postfix(const char *verb, char **cause)
{
	char	*argv[] = { mail_postfix_bin, "-c", mail_postfix_dir,
	    (char *)verb, NULL };

	return (mail_tool(argv, cause));
}

static int
mail_doveadm(const char *verb, const char *arg, char **cause)
{
	char	*argv[] = { mail_doveadm_bin, "-c", mail_dovecot_conf,
	    (char *)verb, (char *)arg, NULL };

	return (mail_tool(argv, cause));
}

static int
mail_str_cmp(const void *a, const void *b)
{
	return (strcmp(*(char *const *)a, *(char *const *)b));
}

/*
 * End the sessions of these users. One doveadm kick per user: with more
 * than a few, only those `doveadm who` lists as connected.
 */
static void
mail_kick(const char **v, size_t n)
{
	char	*argv[] = { mail_doveadm_bin, "-c", mail_dovecot_conf, "who",
	    "-1", NULL };
	char	*out = NULL, *cause = NULL, **who = NULL, *line, *save = NULL;
	size_t	 nwho = 0, i, done = 0;
	int	 filter = 0;

	if (n == 0)
		return;
	if (n > MAIL_KICK_DIRECT && svc_run(argv, MAIL_CMD_TIMEOUT_MS,
	    &out) == 0) {
		filter = 1;
		for (line = strtok_r(out, "\n", &save); line != NULL;
		    line = strtok_r(NULL, "\n", &save)) {
			line[strcspn(line, " \t")] = '\0';
			if (strchr(line, '@') == NULL)
				continue;
			who = xrealloc(who, (nwho + 1) * sizeof(*who));
			who[nwho++] = line;
		}
		if (nwho > 0)
			qsort(who, nwho, sizeof(*who), mail_str_cmp);
	}
	for (i = 0; i < n && done < MAIL_KICK_MAX; i++) {
		if (filter && (nwho == 0 || bsearch(&v[i], who, nwho,
		    sizeof(*who), mail_str_cmp) == NULL))
			continue;
		done++;
		if (mail_doveadm("kick", v[i], &cause) == -1) {
			log_debug("mail: kick %s: %s", v[i], cause);
			free(cause);
			cause = NULL;
		}
	}
	if (i < n && done == MAIL_KICK_MAX)
		log_warnx("mail: only %d sessions kicked this time",
		    MAIL_KICK_MAX);
	free(who);
	free(out);
}

/* ---- purges --------------------------------------------------------------- */

/* MAIL_DIR/DOMAIN/LOCAL of a valid address. */
static char *
mail_home(const char *addr)
{
	const char	*at = strchr(addr, '@');
	char		*h;

	xasprintf(&h, "%s/%s/%.*s", mail_dir, at + 1, (int)(at - addr), addr);
	return (h);
}

static void
mail_purge(struct svc_result *r, const char *addr, const char *id)
{
	char		*home, *cause = NULL, *dom;
	struct stat	 st;

	/* The address was checked when it was written; check again. */
	if (svc_valid_address(addr, 0, &cause) == -1) {
		log_warnx("mail: not purging '%s': %s", addr, cause);
		free(cause);
		return;
	}
	home = mail_home(addr);
	if (lstat(home, &st) == 0) {
		if (svc_rmtree(home, &cause) == -1) {
			log_warnx("mail: purging %s: %s", addr, cause);
			svc_result_add(r, "mailbox", id, "error", cause);
			free(cause);
			free(home);
			return;
		}
		log_notice("mail: mailbox %s purged (%s)", addr, home);
	}
	/* The domain's folder goes with its last mailbox. */
	xasprintf(&dom, "%s/%s", mail_dir, strchr(addr, '@') + 1);
	(void)rmdir(dom);
	free(dom);
	free(home);
	svc_result_add(r, "mailbox", id, "purged", NULL);
}

/* ---- certificate and signing keys ------------------------------------------ */

/*
 * The certificate the backend presents (SMTP, submission, IMAPS): for
 * the mail host name the controller gives, else the host's own name.
 */
static int
mail_cert_want(const Opsn__ServicesDesired *d, struct acme_want *w,
    const char **name)
{
	char	*cause = NULL;

	*name = d != NULL && *d->mail_hostname != '\0' ? d->mail_hostname :
	    (*ma->hostname != '\0' ? ma->hostname : ma->conf.name);
	if (*name == NULL)
		*name = "";
	if (svc_valid_hostname(*name, &cause) == -1) {
		free(cause);
		return (-1);
	}
	memset(w, 0, sizeof(*w));
	w->w_kind = "mail";
	w->w_id = *name;
	w->w_names = name;
	w->w_nnames = 1;
	w->w_mode = *mail_tls_cert != '\0' ? ACME_MODE_FILE : ACME_MODE_ACME;
	w->w_cert_file = mail_tls_cert;
	w->w_key_file = mail_tls_key;
	return (0);
}

/* Install the certificate to present; 1 when a new one needs a reload. */
static int
mail_tls_install(const Opsn__ServicesDesired *d)
{
	struct acme_want	 w;
	const char		*name;
	char			*warn = NULL;
	int			 changed = 0;

	if (mail_cert_want(d, &w, &name) == -1)
		return (0);
	(void)acme_live(&w, mail_tls_dir, &changed, &warn);
	if (warn != NULL) {
		log_warnx("mail: certificate for %s not installed: %s", name,
		    warn);
		free(warn);
	}
	if (changed) {
		log_info("mail: new certificate for %s", name);
		/* Loaded by the next reload, even if this apply fails. */
		mail_reloaded[0] = '\0';
	}
	return (changed);
}

/* The domains' signing keys to OpenDKIM; a key refused is the domain's. */
static void
mail_dkim_install(const struct mail_plan *p, char **dom_errors)
{
	struct dkim_key	*k;
	char		**errs, *cause = NULL;
	size_t		*idx, i, n = 0;

	k = xcalloc(p->ndoms + 1, sizeof(*k));
	idx = xcalloc(p->ndoms + 1, sizeof(*idx));
	errs = xcalloc(p->ndoms + 1, sizeof(*errs));
	for (i = 0; i < p->ndoms; i++) {
		if (*p->doms[i]->dkim_selector == '\0' ||
		    *p->doms[i]->dkim_private_pem == '\0')
			continue;
		k[n].k_domain = p->doms[i]->name;
		k[n].k_selector = p->doms[i]->dkim_selector;
		k[n].k_pem = p->doms[i]->dkim_private_pem;
		idx[n++] = i;
	}
	if (dkim_apply(k, n, errs, &cause) == -1) {
		log_warnx("mail: DKIM tables not written: %s", cause);
		for (i = 0; i < n; i++)
			if (errs[i] == NULL)
				xasprintf(&errs[i], "DKIM tables not written: "
				    "%s", cause);
		free(cause);
	}
	for (i = 0; i < n; i++)
		dom_errors[idx[i]] = errs[i];
	free(errs);
	free(idx);
	free(k);
}

/* ---- one generation -------------------------------------------------------- */

/* Each domain's folder belongs to the mail user, who makes homes. */
static int
mail_domain_dirs(const struct mail_plan *p, struct svc_result *r)
{
	struct passwd	 pwd, *pw = NULL;
	char		 pwbuf[4096], *cause = NULL, *dir;
	size_t		 i;

	/* Looked up each time: the user may be made after the agent starts. */
	if (p->ndoms > 0 && (getpwnam_r(mail_owner, &pwd, pwbuf,
	    sizeof(pwbuf), &pw) != 0 || pw == NULL)) {
		svc_result_fail(r, "mail owner '%s' is not a user (mail_owner)",
		    mail_owner);
		return (-1);
	}
	for (i = 0; i < p->ndoms; i++) {
		xasprintf(&dir, "%s/%s", mail_dir, p->doms[i]->name);
		if (svc_mkdirs(dir, 0700, pw->pw_uid, pw->pw_gid, &cause) ==
		    -1) {
			free(dir);
			svc_result_fail(r, "%s", cause);
			free(cause);
			return (-1);
		}
		free(dir);
	}
	return (0);
}

/*
 * Write the maps when they changed, and reload both daemons when the
 * maps or the certificate changed (or the last reload failed).
 */
static int
mail_load(const struct mail_plan *p, const struct mail_olds *o,
    int changed, int tls_changed, struct svc_result *r)
{
	char	*cause = NULL;

	if (changed && mail_write_maps(p, &cause) == -1) {
		svc_result_fail(r, "%s", cause);
		free(cause);
		return (-1);
	}
	/*
	 * Nothing served before and nothing to serve (a new backend): the
	 * maps exist now for the daemons to start with; nothing to reload.
	 */
	if (!o->existed && p->ndoms == 0 && p->nboxes == 0 && p->nals == 0 &&
	    !tls_changed)
		strlcpy(mail_reloaded, p->digest, sizeof(mail_reloaded));
	/* A reload that failed, or the first generation since we started. */
	if (changed || tls_changed || strcmp(mail_reloaded, p->digest) != 0) {
		mail_reloaded[0] = '\0';
		/* Dovecot first: it must know a user before Postfix's mail. */
		if (mail_doveadm("reload", NULL, &cause) == -1 ||
		    mail_postfix("reload", &cause) == -1) {
			svc_result_fail(r, "maps written but not loaded: %s",
			    cause);
			free(cause);
			return (-1);
		}
		strlcpy(mail_reloaded, p->digest, sizeof(mail_reloaded));
	}
	return (0);
}

/*
 * Sessions of a mailbox that may no longer log in, or whose password
 * changed, end now (they would stay open otherwise); before a purge.
 * Returns whether mail held for a reactivated mailbox should go out.
 */
static int
mail_sessions(const struct mail_plan *p, struct mail_olds *o)
{
	struct mail_old		*old;
	const struct mail_box	*b;
	struct mail_box		 key;
	const char		**kick;
	size_t			 i, nkick = 0;
	int			 flush = 0;

	kick = xcalloc(p->nboxes + o->n + 1, sizeof(*kick));
	for (i = 0; i < p->nboxes; i++) {
		b = &p->boxes[i];
		if ((old = mail_old_find(o, b->b_addr)) == NULL)
			continue;
		if (old->o_login && (b->b_held || b->b_deleted ||
		    (old->o_hash != NULL && strcmp(old->o_hash, b->b_hash) !=
		    0)))
			kick[nkick++] = b->b_addr;
		if (old->o_held && !old->o_deleted && !b->b_held &&
		    !b->b_deleted)
			flush = 1;
	}
	for (i = 0; i < o->n; i++) {
		key.b_addr = o->v[i].o_addr;
		o->v[i].o_gone = bsearch(&key, p->boxes, p->nboxes,
		    sizeof(*p->boxes), mail_box_cmp) == NULL;
		if (o->v[i].o_gone && o->v[i].o_login)
			kick[nkick++] = o->v[i].o_addr;
	}
	mail_kick(kick, nkick);
	free(kick);
	return (flush);
}

/* Mailboxes whose retention is over lose their mail; others report. */
static void
mail_purges(const struct mail_plan *p, const struct mail_olds *o,
    struct svc_result *r)
{
	const struct mail_box	*b;
	int64_t			 now = util_now();
	size_t			 i;

	for (i = 0; i < p->nboxes; i++) {
		b = &p->boxes[i];
		if (b->b_deleted && b->b_purge_after > 0 &&
		    now >= b->b_purge_after)
			mail_purge(r, b->b_addr, b->b_id);
		else
			svc_result_add(r, "mailbox", b->b_id, "applied", NULL);
	}
	/* Gone from the desired state: purge what was deleted, keep others. */
	for (i = 0; i < o->n; i++) {
		if (!o->v[i].o_gone)
			continue;
		if (o->v[i].o_deleted)
			mail_purge(r, o->v[i].o_addr, o->v[i].o_id);
		else
			log_warnx("mail: mailbox %s left the desired state "
			    "without being deleted; its maildir is kept",
			    o->v[i].o_addr);
	}
}

/* ---- a delta of mailboxes: the live maps patched, not rewritten ----------- */

/*
 * The generation the live maps were written for and the daemons loaded
 * (0: not known, as after a start or a failed apply). Only the pool
 * thread of the running apply touches it.
 */
static uint64_t		 mail_live_gen;
static unsigned		 mail_npatched;

/* More mailboxes than this in one delta: the whole maps again. */
#define MAIL_DELTA_MAX	1000

/* A live map copied under its temporary name, to be patched there. */
static int
mail_file_copy(const char *from, const char *to, char **cause)
{
	char	*buf = xmalloc(1 << 20);
	ssize_t	 n, w = 0, off;
	int	 in, out = -1, rc = -1;

	unlink(to);
	if ((in = open(from, O_RDONLY | O_CLOEXEC)) == -1 ||
	    (out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	    0600)) == -1)
		goto done;
	while ((n = read(in, buf, 1 << 20)) > 0) {
		for (off = 0; off < n; off += w)
			if ((w = write(out, buf + off, n - off)) == -1)
				goto done;
	}
	rc = n == 0 ? 0 : -1;
done:
	if (rc == -1)
		xasprintf(cause, "copying %s: %s", from, strerror(errno));
	if (in != -1)
		close(in);
	if (out != -1)
		close(out);
	free(buf);
	return (rc);
}

/* The statements of a patch, on the postfix copy with "dv" attached. */
enum {
	MP_DIGEST, MP_OLD, MP_DBOX, MP_DACC, MP_DTR, MP_DUSER, MP_BOX, MP_ACC,
	MP_TR, MP_USER, MP_PFMETA, MP_DVMETA, MP_N
};

static const char *const mail_patch_sql[MP_N] = {
	"SELECT value FROM main.meta WHERE key = 'digest'",
	"SELECT m.address, m.suspended, m.deleted, u.password, u.login"
	" FROM main.mailboxes m LEFT JOIN dv.users u ON u.address = m.address"
	" WHERE m.id = ?",
	"DELETE FROM main.mailboxes WHERE address = ?",
	"DELETE FROM main.access WHERE key = ?",
	"DELETE FROM main.transport WHERE address = ?",
	"DELETE FROM dv.users WHERE address = ?",
	"INSERT INTO main.mailboxes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
	"INSERT OR REPLACE INTO main.access VALUES (?, ?)",
	"INSERT INTO main.transport VALUES (?, ?)",
	"INSERT INTO dv.users VALUES (?, ?, ?, ?, ?, ?)",
	"UPDATE main.meta SET value = ? WHERE key = 'digest'",
	"UPDATE dv.meta SET value = ? WHERE key = 'digest'",
};

/* What the maps say of a mailbox id (none: a new mailbox). */
static void
mail_patch_old(sqlite3_stmt *st, const char *id, struct mail_olds *o)
{
	struct mail_old	*m;

	sqlite3_reset(st);
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW) {
		o->v = xrealloc(o->v, (o->n + 1) * sizeof(*o->v));
		m = &o->v[o->n++];
		memset(m, 0, sizeof(*m));
		m->o_addr = mail_col(st, 0);
		m->o_id = xstrdup(id);
		m->o_held = sqlite3_column_int(st, 1);
		m->o_deleted = sqlite3_column_int(st, 2);
		if (sqlite3_column_type(st, 3) != SQLITE_NULL)
			m->o_hash = mail_col(st, 3);
		m->o_login = sqlite3_column_int(st, 4);
	}
}

/*
 * In the copies (pf with dv attached): the rows of the mailboxes a delta
 * named go, p's go in, and both digests become p's. o gets what the rows
 * said. 1 when an address is taken (by a mailbox the delta did not name,
 * or twice in it): the whole maps sort that out.
 */
static int
mail_patch(sqlite3 *db, const char **ids, size_t nids, struct mail_plan *p,
    struct mail_olds *o, char **cause)
{
	sqlite3_stmt	*st[MP_N];
	const unsigned char *t;
	size_t		 i;
	int		 rc = -1;

	memset(st, 0, sizeof(st));
	for (i = 0; i < MP_N; i++)
		if (sqlite3_prepare_v2(db, mail_patch_sql[i], -1, &st[i],
		    NULL) != SQLITE_OK) {
			mail_sql_err(db, "preparing a delta", cause);
			goto done;
		}
	if (sqlite3_step(st[MP_DIGEST]) != SQLITE_ROW ||
	    (t = sqlite3_column_text(st[MP_DIGEST], 0)) == NULL) {
		xasprintf(cause, "the maps have no digest");
		goto done;
	}
	{
		char	*seed;

		xasprintf(&seed, "delta %llu %s", (unsigned long long)
		    p->gen, (const char *)t);
		mail_plan_digest(p, seed);
		free(seed);
	}
	for (i = 0; i < nids; i++)
		mail_patch_old(st[MP_OLD], ids[i], o);
	for (i = 0; i < o->n; i++)
		if (mail_exec(db, st[MP_DBOX], "t", o->v[i].o_addr) == -1 ||
		    mail_exec(db, st[MP_DACC], "t", o->v[i].o_addr) == -1 ||
		    mail_exec(db, st[MP_DTR], "t", o->v[i].o_addr) == -1 ||
		    mail_exec(db, st[MP_DUSER], "t", o->v[i].o_addr) == -1)
			goto fail;
	for (i = 0; i < p->nboxes; i++) {
		if (mail_put_postfix(db, st[MP_BOX], st[MP_ACC], st[MP_TR],
		    &p->boxes[i]) == -1 ||
		    mail_put_dovecot(db, st[MP_USER], &p->boxes[i]) == -1) {
			if (sqlite3_errcode(db) == SQLITE_CONSTRAINT) {
				rc = 1;
				goto done;
			}
			goto fail;
		}
	}
	if (mail_exec(db, st[MP_PFMETA], "t", p->digest) == -1 ||
	    mail_exec(db, st[MP_DVMETA], "t", p->digest) == -1)
		goto fail;
	rc = 0;
	goto done;
fail:
	mail_sql_err(db, "writing a delta", cause);
done:
	for (i = 0; i < MP_N; i++)
		sqlite3_finalize(st[i]);
	if (o->n > 1)
		qsort(o->v, o->n, sizeof(*o->v), mail_old_cmp);
	return (rc);
}

/*
 * The live maps copied, patched (mail_patch) and put live as a whole
 * generation is: fsynced, Dovecot's first, then the daemons reloaded.
 * -1 with *cause before anything went live; 1 to write the whole maps.
 */
static int
mail_patch_maps(const char **ids, size_t nids, struct mail_plan *p,
    struct mail_olds *o, char **cause)
{
	sqlite3	*db = NULL;
	char	*pf, *pf_tmp, *dv, *dv_tmp, *sql;
	int	 rc = -1;

	xasprintf(&pf, "%s/%s", mail_maps, MAIL_PF_DB);
	xasprintf(&pf_tmp, "%s/.%s.new", mail_maps, MAIL_PF_DB);
	xasprintf(&dv, "%s/%s", mail_maps, MAIL_DV_DB);
	xasprintf(&dv_tmp, "%s/.%s.new", mail_maps, MAIL_DV_DB);
	if (mail_file_copy(pf, pf_tmp, cause) == -1 ||
	    mail_file_copy(dv, dv_tmp, cause) == -1)
		goto fail;
	if (sqlite3_open_v2(pf_tmp, &db, SQLITE_OPEN_READWRITE, NULL) !=
	    SQLITE_OK) {
		xasprintf(cause, "%s: %s", pf_tmp, db ? sqlite3_errmsg(db) :
		    "cannot open");
		goto fail;
	}
	sql = sqlite3_mprintf("ATTACH %Q AS dv; PRAGMA main.journal_mode = "
	    "OFF; PRAGMA dv.journal_mode = OFF; PRAGMA synchronous = OFF; "
	    "BEGIN", dv_tmp);
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
		sqlite3_free(sql);
		mail_sql_err(db, pf_tmp, cause);
		goto fail;
	}
	sqlite3_free(sql);
	if ((rc = mail_patch(db, ids, nids, p, o, cause)) != 0)
		goto fail;
	rc = -1;
	if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		mail_sql_err(db, pf_tmp, cause);
		goto fail;
	}
	if (sqlite3_close(db) != SQLITE_OK) {
		xasprintf(cause, "%s: close failed", pf_tmp);
		db = NULL;
		goto fail;
	}
	db = NULL;
	if (mail_db_seal(dv_tmp, 0600, (gid_t)-1, cause) == -1 ||
	    mail_db_seal(pf_tmp, mail_postfix_gid != (gid_t)-1 ? 0640 : 0644,
	    mail_postfix_gid, cause) == -1)
		goto fail;
	if (rename(dv_tmp, dv) == -1 || rename(pf_tmp, pf) == -1) {
		xasprintf(cause, "rename into %s: %s", mail_maps,
		    strerror(errno));
		goto fail;
	}
	rc = svc_fsync_dir(mail_maps, cause);
	goto done;
fail:
	if (db != NULL)
		sqlite3_close(db);
	unlink(dv_tmp);
	unlink(pf_tmp);
done:
	free(pf);
	free(pf_tmp);
	free(dv);
	free(dv_tmp);
	return (rc);
}

/*
 * A delta that changed mailboxes only (a password, a quota, a suspension,
 * a mailbox added or removed): the rows of those mailboxes are replaced
 * in copies of the live maps, which then go live as a whole generation
 * does. The SQL work, the sessions looked at and the status follow what
 * changed, not the backend's size (the copy of the files is the part
 * that does not). Returns 0, with nothing done, when the delta does not
 * fit: domains or aliases changed, the live maps are not those of the
 * generation it starts from, or an address is taken; the whole maps are
 * written then, as for any state. The maps' digest is chained (the
 * previous one and the generation): the next whole state writes them
 * once more even if nothing changed.
 */
static int
mail_apply_delta(struct svc_job *j)
{
	const Opsn__ServicesDesired	*d = j->j_desired;
	struct svc_result		*r = &j->j_res;
	struct mail_plan		 p;
	struct mail_olds		 o;
	const char			**ids, *id;
	char				*cause = NULL;
	size_t				 nids, others, i;
	int				 rc, tls_changed;
	uint64_t			 t0 = util_mono_ms();

	if (j->j_only == NULL || j->j_base_gen == 0 ||
	    j->j_base_gen != mail_live_gen)
		return (0);
	ids = svc_only_ids(j->j_only, "mailbox", &nids, &others);
	if (others > 0 || nids == 0 || nids > MAIL_DELTA_MAX) {
		free(ids);
		return (0);
	}
	memset(&p, 0, sizeof(p));
	memset(&o, 0, sizeof(o));
	p.gen = d->generation;
	mail_plan_doms(d, &p, r);
	p.boxes = xcalloc(nids + 1, sizeof(*p.boxes));
	for (i = 0; i < d->n_mailboxes && p.nboxes < nids; i++) {
		id = mail_box_id(d->mailboxes[i]);
		if (bsearch(&id, ids, nids, sizeof(*ids), mail_str_cmp) ==
		    NULL)
			continue;
		/* Left out of the maps, as the whole state would. */
		if (mail_box_make(&p, d->mailboxes[i], i, &p.boxes[p.nboxes],
		    &cause) == -1)
			mail_obj_error(r, "mailbox", id, cause);
		else
			p.nboxes++;
	}
	qsort(p.boxes, p.nboxes, sizeof(*p.boxes), mail_box_order);
	mail_live_gen = 0;
	if ((rc = mail_patch_maps(ids, nids, &p, &o, &cause)) != 0) {
		if (rc == -1) {
			log_warnx("mail: generation %llu as a delta: %s; "
			    "writing the whole maps", (unsigned long long)
			    d->generation, cause);
			free(cause);
		}
		svc_result_clear(r);
		r->r_gen = d->generation;
		rc = 0;
		goto done;
	}
	rc = 1;
	tls_changed = mail_tls_install(d);
	mail_reloaded[0] = '\0';
	if (mail_domain_dirs(&p, r) == -1)
		goto done;
	if (mail_doveadm("reload", NULL, &cause) == -1 ||
	    mail_postfix("reload", &cause) == -1) {
		svc_result_fail(r, "maps written but not loaded: %s", cause);
		free(cause);
		goto done;
	}
	strlcpy(mail_reloaded, p.digest, sizeof(mail_reloaded));
	if (mail_sessions(&p, &o) && mail_postfix("flush", &cause) == -1) {
		log_warnx("mail: %s", cause);
		free(cause);
	}
	mail_purges(&p, &o, r);
	mail_live_gen = d->generation;
	mail_npatched++;
	log_debug("mail: generation %llu: %zu mailboxes of a delta in %llu "
	    "ms%s", (unsigned long long)d->generation, nids,
	    (unsigned long long)(util_mono_ms() - t0),
	    tls_changed ? " (new certificate)" : "");
done:
	if (rc == 1 && r->r_failed)
		for (i = 0; i < p.nboxes; i++)
			svc_result_add(r, "mailbox", p.boxes[i].b_id, "error",
			    r->r_error);
	free(ids);
	mail_olds_free(&o);
	mail_plan_free(&p);
	return (rc);
}

static void
mail_apply(struct svc_job *j)
{
	const Opsn__ServicesDesired	*d = j->j_desired;
	struct svc_result		*r = &j->j_res;
	struct mail_plan		 p;
	struct mail_olds		 o;
	char				*cause = NULL, **dkim_err;
	size_t				 i;
	int				 changed, tls_changed, flush;
	uint64_t			 t0 = util_mono_ms();

	if (mail_apply_delta(j) == 1)
		return;
	mail_live_gen = 0;
	mail_plan_build(d, &p, r);
	mail_plan_digest(&p, "");
	mail_olds_read(&o);
	dkim_err = xcalloc(p.ndoms + 1, sizeof(*dkim_err));
	changed = strcmp(o.digest, p.digest) != 0;
	tls_changed = mail_tls_install(d);
	if (mail_domain_dirs(&p, r) == -1 ||
	    mail_load(&p, &o, changed, tls_changed, r) == -1)
		goto done;
	mail_dkim_install(&p, dkim_err);
	for (i = 0; i < p.ndoms; i++)
		svc_result_add(r, "domain", p.doms[i]->name, dkim_err[i] ?
		    "error" : "applied", dkim_err[i]);
	for (i = 0; i < p.nals; i++)
		svc_result_add(r, "alias", mail_alias_id(p.als[i]), "applied",
		    NULL);
	flush = mail_sessions(&p, &o);
	mail_purges(&p, &o, r);
	/* Mail held for a reactivated mailbox goes out now. */
	if (flush && mail_postfix("flush", &cause) == -1) {
		log_warnx("mail: %s", cause);
		free(cause);
	}
	log_debug("mail: generation %llu: %zu domains, %zu mailboxes, %zu "
	    "aliases in %llu ms%s", (unsigned long long)d->generation,
	    p.ndoms, p.nboxes, p.nals,
	    (unsigned long long)(util_mono_ms() - t0),
	    changed ? "" : " (maps unchanged)");
	mail_live_gen = d->generation;
done:
	/* Nothing of this generation is live: every object says why. */
	if (r->r_failed) {
		for (i = 0; i < p.ndoms; i++)
			svc_result_add(r, "domain", p.doms[i]->name, "error",
			    r->r_error);
		for (i = 0; i < p.nals; i++)
			svc_result_add(r, "alias", mail_alias_id(p.als[i]),
			    "error", r->r_error);
		for (i = 0; i < p.nboxes; i++)
			svc_result_add(r, "mailbox", p.boxes[i].b_id, "error",
			    r->r_error);
	}
	for (i = 0; i < p.ndoms; i++)
		free(dkim_err[i]);
	free(dkim_err);
	mail_olds_free(&o);
	mail_plan_free(&p);
}

/* ---- teardown --------------------------------------------------------------- */

/* The queue has stopped and nothing on the pool reads the role's state. */
static void
mail_done(void)
{
	free(mail_dir);
	free(mail_maps);
	free(mail_postfix_dir);
	free(mail_dovecot_conf);
	free(mail_postfix_bin);
	free(mail_doveadm_bin);
	free(mail_owner);
	free(mail_tls_cert);
	free(mail_tls_key);
	free(mail_tls_dir);
	mail_dir = mail_maps = mail_postfix_dir = mail_dovecot_conf = NULL;
	mail_postfix_bin = mail_doveadm_bin = mail_owner = NULL;
	mail_tls_cert = mail_tls_key = mail_tls_dir = NULL;
	acme_stop();
	dkim_free();
}

/* After an apply: the certificate the backend wants. */
static void
mail_applied_cb(struct svc *s)
{
	struct acme_want	 w;
	const char		*name;

	if (mail_cert_want(s->s_current, &w, &name) == 0)
		acme_set(&w, 1);
	else {
		log_warnx("mail: '%s' is not a host name to get a certificate "
		    "for: set the backend's mail host name", name);
		acme_set(NULL, 0);
	}
}

/* A new certificate: install it and reload the daemons. */
static void
mail_certs_changed(void)
{
	svc_reapply(&mail_svc);
}

/*
 * Postfix and Dovecot refuse to start without the certificate their
 * configuration names: until a real one comes, a self-signed one.
 */
static int
mail_tls_placeholder(char **cause)
{
	char	*cert, *key, *pc, *pk, *name;
	int	 rc = 0;

	xasprintf(&pc, "%s/cert.pem", mail_tls_dir);
	xasprintf(&pk, "%s/key.pem", mail_tls_dir);
	if (access(pc, F_OK) == 0 && access(pk, F_OK) == 0)
		goto out;
	name = *ma->hostname != '\0' ? ma->hostname : ma->conf.name;
	if (name == NULL || *name == '\0')
		name = "localhost";
	if ((rc = tlscert_self_signed(name, 3650, &cert, &key, cause)) == 0) {
		rc = util_write_file(pk, key, strlen(key), 0600, cause) == 0 &&
		    util_write_file(pc, cert, strlen(cert), 0644, cause) == 0 ?
		    0 : -1;
		tlscert_free_secret(key, strlen(key));
		free(cert);
		if (rc == 0)
			log_notice("mail: a self-signed certificate for %s "
			    "until a real one comes", name);
	}
out:
	free(pc);
	free(pk);
	return (rc);
}

/* ---- usage, for metering --------------------------------------------------- */

/* Every mailbox of the live maps and its home (pool thread). */
static void
mail_usage_list(struct svc_uses *w)
{
	sqlite3		*db = NULL;
	sqlite3_stmt	*st = NULL;
	char		*path, *home, *cause = NULL;

	xasprintf(&path, "%s/%s", mail_maps, MAIL_PF_DB);
	if (access(path, F_OK) == 0 && sqlite3_open_v2(path, &db,
	    SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, "SELECT address, id, tenant FROM mailboxes",
	    -1, &st, NULL) == SQLITE_OK) {
		while (sqlite3_step(st) == SQLITE_ROW) {
			const char *a = (const char *)sqlite3_column_text(st,
			    0);
			const char *id = (const char *)sqlite3_column_text(st,
			    1);
			const char *t = (const char *)sqlite3_column_text(st,
			    2);

			if (a == NULL || svc_valid_address(a, 0, &cause) ==
			    -1) {
				free(cause);
				cause = NULL;
				continue;
			}
			home = mail_home(a);
			svc_uses_add(w, id != NULL ? id : "", t, home);
			free(home);
		}
	}
	sqlite3_finalize(st);
	if (db != NULL)
		sqlite3_close(db);
	free(path);
}

/* Storage used by each mailbox, for metering (see svc.h). */
void
mail_usage(svc_usage_cb emit, void *arg)
{
	svc_usage(&mail_svc, "mailbox", mail_usage_list, emit, arg);
}

/* ---- role hooks -------------------------------------------------------------- */

static int
mail_init(struct agent *a, char **cause)
{
	struct group	*gr;
	char		*webroot;
	int		 rc;

	ma = a;
	mail_dir = svc_path_option(a, a->conf.mail_dir, "mail");
	xasprintf(&mail_maps, "%s/%s", mail_dir, MAIL_MAPS);
	mail_postfix_dir = xstrdup(svc_opt(a->conf.postfix_dir,
	    "/etc/postfix"));
	mail_dovecot_conf = xstrdup(svc_opt(a->conf.dovecot_conf,
	    "/etc/dovecot/dovecot.conf"));
	mail_postfix_bin = xstrdup(svc_opt(a->conf.postfix_bin,
	    "/usr/sbin/postfix"));
	mail_doveadm_bin = xstrdup(svc_opt(a->conf.doveadm_bin,
	    "/usr/bin/doveadm"));
	mail_owner = xstrdup(svc_opt(a->conf.mail_owner, "vmail"));
	if ((gr = getgrnam("postfix")) != NULL)
		mail_postfix_gid = gr->gr_gid;
	if (mail_dir[0] != '/') {
		xasprintf(cause, "mail_dir %s is not an absolute path",
		    mail_dir);
		return (-1);
	}
	mail_tls_cert = xstrdup(svc_opt(a->conf.mail_tls_cert, ""));
	mail_tls_key = xstrdup(svc_opt(a->conf.mail_tls_key, ""));
	xasprintf(&mail_tls_dir, "%s/.tls", mail_dir);
	if (a->conf.acme_webroot != NULL && *a->conf.acme_webroot != '\0')
		webroot = xstrdup(a->conf.acme_webroot);
	else
		xasprintf(&webroot, "%s/.acme", mail_dir);
	if ((*mail_tls_cert == '\0') != (*mail_tls_key == '\0')) {
		xasprintf(cause, "tls_cert and tls_key go together");
		free(webroot);
		return (-1);
	}
	rc = svc_mkdirs(mail_dir, 0755, (uid_t)-1, (gid_t)-1, cause) == -1 ||
	    svc_mkdirs(mail_maps, 0755, (uid_t)-1, (gid_t)-1, cause) == -1 ||
	    svc_mkdirs(mail_tls_dir, 0700, (uid_t)-1, (gid_t)-1, cause) == -1 ||
	    svc_traversable(a, mail_dir, cause) == -1 ||
	    mail_tls_placeholder(cause) == -1 ||
	    dkim_init(a, cause) == -1 ||
	    acme_init(a, webroot, mail_certs_changed, cause) == -1 ? -1 : 0;
	free(webroot);
	if (rc == -1)
		return (-1);
	mail_reloaded[0] = '\0';
	mail_live_gen = 0;
	svc_init(&mail_svc, a->loop, "mail", mail_apply, mail_done);
	mail_svc.s_applied = mail_applied_cb;
	log_info("mail: maps in %s, postfix %s, dovecot %s", mail_maps,
	    mail_postfix_dir, mail_dovecot_conf);
	return (0);
}

static void
mail_on_connected(void)
{
	svc_connected(&mail_svc);
	acme_connected();
}

static void
mail_on_frame(uint16_t type, const uint8_t *p, size_t len)
{
	svc_frame(&mail_svc, type, p, len);
}

static void
mail_stop(void)
{
	svc_stop(&mail_svc);
}

/* Is the last generation applied and nothing waiting (unit tests)? */
int
mail_idle(void)
{
	return (svc_idle(&mail_svc));
}

unsigned
mail_patched(void)
{
	return (mail_npatched);
}

const struct role_ops mail_role = {
	"mail", mail_init, mail_on_connected, mail_on_frame, mail_stop
};
