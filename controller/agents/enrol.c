/*
 * Join tokens: each enrols one agent once before it expires. A join token
 * reads "opsn1-<CA fingerprint>-<secret>", so an agent without the CA file
 * can still pin the controller's CA; only the secret's hash is stored.
 */
#include <stdlib.h>
#include <string.h>

#include "opsn/util.h"
#include "core/core.h"
#include "nodes.h"

#define JOIN_PREFIX		"opsn1-"

/* A new one-time join token valid for ttl seconds. */
int
enrol_join_create(struct ctl *c, int64_t ttl, char **tokenp,
    int64_t *expires, char **cause)
{
	sqlite3_stmt	*st;
	char		*secret, hash[65];
	int64_t		 now = util_now();

	secret = secret_new();
	secret_hash(secret, hash);
	st = store_prepare(c->db, "INSERT INTO join_tokens (hash, created_at, "
	    "expires_at) VALUES (?, ?, ?)");
	sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, now);
	sqlite3_bind_int64(st, 3, now + ttl);
	if (store_step(st) != SQLITE_DONE) {
		xasprintf(cause, "storing the join token: %s",
		    sqlite3_errmsg(c->db));
		sqlite3_finalize(st);
		free(secret);
		return (-1);
	}
	sqlite3_finalize(st);
	xasprintf(tokenp, JOIN_PREFIX "%s-%s", c->ca_fpr, secret);
	*expires = now + ttl;
	free(secret);
	return (0);
}

/*
 * Consume a join token for node name inside the caller's transaction.
 * The reason is meant for the agent: it says which check failed, never
 * anything about other tokens.
 */
int
enrol_join_consume(struct ctl *c, const char *token, const char *name,
    char **cause)
{
	sqlite3_stmt	*st;
	const char	*secret;
	char		 hash[65];
	int64_t		 now = util_now(), expires;
	int		 used, rv = -1;

	if (strncmp(token, JOIN_PREFIX, strlen(JOIN_PREFIX)) != 0 ||
	    (secret = strrchr(token, '-')) == NULL ||
	    strlen(secret + 1) != 2 * SECRET_BYTES) {
		xasprintf(cause, "the join token is malformed");
		return (-1);
	}
	secret_hash(secret + 1, hash);
	st = store_prepare(c->db, "SELECT expires_at, used_at IS NOT NULL "
	    "FROM join_tokens WHERE hash = ?");
	sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
	if (store_step(st) != SQLITE_ROW) {
		xasprintf(cause, "the join token is unknown");
		goto out;
	}
	expires = sqlite3_column_int64(st, 0);
	used = sqlite3_column_int(st, 1);
	sqlite3_finalize(st);
	st = NULL;
	if (used) {
		xasprintf(cause, "the join token was already used");
		goto out;
	}
	if (expires <= now) {
		xasprintf(cause, "the join token has expired");
		goto out;
	}
	st = store_prepare(c->db, "UPDATE join_tokens SET used_at = ?, "
	    "used_by = ? WHERE hash = ? AND used_at IS NULL");
	sqlite3_bind_int64(st, 1, now);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, hash, -1, SQLITE_STATIC);
	if (store_step(st) != SQLITE_DONE || sqlite3_changes(c->db) != 1) {
		xasprintf(cause, "the join token was already used");
		goto out;
	}
	rv = 0;
out:
	sqlite3_finalize(st);
	return (rv);
}
