/*
 * Tokens. Join tokens enrol one agent once before they expire; API tokens
 * carry a role. Only SHA-256 hashes are stored. A join token reads
 * "opsn1-<CA fingerprint>-<secret>", so an agent without the CA file can
 * still pin the controller's CA.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "ctl.h"

#define TOKEN_SECRET_BYTES	20
#define JOIN_PREFIX		"opsn1-"

/* SHA-256 of a token as hex: what the database keeps. */
void
tokens_hash(const char *token, char out[65])
{
	unsigned char	 md[32];
	unsigned int	 len = sizeof(md);

	EVP_Digest(token, strlen(token), md, &len, EVP_sha256(), NULL);
	util_hex(md, sizeof(md), out);
}

static char *
tokens_secret(void)
{
	unsigned char	 raw[TOKEN_SECRET_BYTES];
	char		*hex = xmalloc(2 * sizeof(raw) + 1);

	util_random(raw, sizeof(raw));
	util_hex(raw, sizeof(raw), hex);
	return (hex);
}

/* Create the first admin token, written once to DATA_DIR/admin.token. */
int
tokens_admin_init(struct ctl *c, char **cause)
{
	sqlite3_stmt	*st;
	char		*secret, *token, *path, hash[65];
	int		 n, rv = -1;

	st = store_prepare(c->db, "SELECT count(*) FROM api_tokens");
	n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
	sqlite3_finalize(st);
	if (n > 0)
		return (0);

	secret = tokens_secret();
	xasprintf(&token, "opsn_%s", secret);
	tokens_hash(token, hash);
	xasprintf(&path, "%s/admin.token", c->conf.data_dir);
	/* The file first: a stored hash whose token nobody has is a lockout. */
	if (util_write_file(path, token, strlen(token), 0600, cause) == -1)
		goto out;
	st = store_prepare(c->db, "INSERT INTO api_tokens (name, role, hash, "
	    "created_at) VALUES ('admin', 'admin', ?, ?)");
	sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, util_now());
	if (sqlite3_step(st) != SQLITE_DONE) {
		xasprintf(cause, "storing the admin token: %s",
		    sqlite3_errmsg(c->db));
		sqlite3_finalize(st);
		unlink(path);
		goto out;
	}
	sqlite3_finalize(st);
	log_notice("tokens: wrote the admin API token to %s", path);
	rv = 0;
out:
	explicit_bzero(token, strlen(token));
	free(secret);
	free(token);
	free(path);
	return (rv);
}

/* A new one-time join token valid for ttl seconds. */
int
tokens_join_create(struct ctl *c, int64_t ttl, char **tokenp,
    int64_t *expires, char **cause)
{
	sqlite3_stmt	*st;
	char		*secret, hash[65];
	int64_t		 now = util_now();

	secret = tokens_secret();
	tokens_hash(secret, hash);
	st = store_prepare(c->db, "INSERT INTO join_tokens (hash, created_at, "
	    "expires_at) VALUES (?, ?, ?)");
	sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, now);
	sqlite3_bind_int64(st, 3, now + ttl);
	if (sqlite3_step(st) != SQLITE_DONE) {
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
tokens_join_consume(struct ctl *c, const char *token, const char *name,
    char **cause)
{
	sqlite3_stmt	*st;
	const char	*secret;
	char		 hash[65];
	int64_t		 now = util_now(), expires;
	int		 used, rv = -1;

	if (strncmp(token, JOIN_PREFIX, strlen(JOIN_PREFIX)) != 0 ||
	    (secret = strrchr(token, '-')) == NULL ||
	    strlen(secret + 1) != 2 * TOKEN_SECRET_BYTES) {
		xasprintf(cause, "the join token is malformed");
		return (-1);
	}
	tokens_hash(secret + 1, hash);
	st = store_prepare(c->db, "SELECT expires_at, used_at IS NOT NULL "
	    "FROM join_tokens WHERE hash = ?");
	sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_ROW) {
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
	if (sqlite3_step(st) != SQLITE_DONE || sqlite3_changes(c->db) != 1) {
		xasprintf(cause, "the join token was already used");
		goto out;
	}
	rv = 0;
out:
	sqlite3_finalize(st);
	return (rv);
}
