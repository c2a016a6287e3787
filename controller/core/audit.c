/*
 * The audit trail: one record per mutation, written in the transaction
 * that makes the change, hash chained so that a record edited or deleted
 * behind the controller's back is detected by audit_verify.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core.h"

static void
audit_hash(int64_t id, int64_t at, const char *token, const char *role,
    const char *action, const char *object, const char *summary,
    const char *reqid, const char *prev, char out[65])
{
	EVP_MD_CTX	*md = EVP_MD_CTX_new();
	unsigned char	 h[32];
	unsigned int	 len = sizeof(h);
	char		*head;
	const char	*fields[] = { token, role, action, object, summary,
	    reqid, prev };
	size_t		 i;

	/* Fields joined by the ASCII unit separator, which none contains. */
	xasprintf(&head, "%lld\x1f%lld", (long long)id, (long long)at);
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	EVP_DigestUpdate(md, head, strlen(head));
	for (i = 0; i < nitems(fields); i++) {
		EVP_DigestUpdate(md, "\x1f", 1);
		EVP_DigestUpdate(md, fields[i], strlen(fields[i]));
	}
	EVP_DigestFinal_ex(md, h, &len);
	EVP_MD_CTX_free(md);
	free(head);
	util_hex(h, sizeof(h), out);
}

/*
 * Record a mutation inside the caller's transaction. summary (consumed)
 * says what changed and must never hold a secret. r may be NULL for the
 * controller's own actions.
 */
int
audit_record(struct api_req *r, const char *action, const char *object,
    json_t *summary)
{
	const struct api_principal *p = r ? api_principal(r) : NULL;
	sqlite3_stmt	*st;
	char		*sum, prev[65] = "", hash[65];
	int64_t		 id, count, at = util_now();
	const char	*token = p ? p->ap_name : "controller";
	const char	*role = p ? p->ap_role : "system";
	const char	*reqid = r ? api_request_id(r) : "";
	int		 rv = -1;

	if (summary == NULL)
		summary = json_object();
	sum = json_dumps(summary, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(summary);
	st = store_stmt(ctl->db, "SELECT count, hash FROM audit_head");
	if (sqlite3_step(st) != SQLITE_ROW) {
		store_done(st);
		goto out;
	}
	count = sqlite3_column_int64(st, 0);
	strlcpy(prev, (const char *)sqlite3_column_text(st, 1), sizeof(prev));
	store_done(st);
	id = count + 1;
	audit_hash(id, at, token, role, action, object, sum, reqid, prev, hash);
	st = store_stmt(ctl->db, "INSERT INTO audit (id, at, token, role, "
	    "action, object, summary, request_id, prev_hash, hash) VALUES "
	    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, at);
	sqlite3_bind_text(st, 3, token, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, role, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, action, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, object, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, sum, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 8, reqid, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 9, prev, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 10, hash, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE) {
		log_warnx("audit: %s", sqlite3_errmsg(ctl->db));
		store_done(st);
		goto out;
	}
	store_done(st);
	st = store_stmt(ctl->db, "UPDATE audit_head SET count = ?, hash = ?");
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_text(st, 2, hash, -1, SQLITE_STATIC);
	rv = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
	store_done(st);
out:
	free(sum);
	return (rv);
}

/*
 * Walk the chain: 0 when every record is intact, else -1 with the first
 * record that is not and why.
 */
int
audit_verify(int64_t *checked, int64_t *bad_id, char **why)
{
	sqlite3_stmt	*st;
	char		 prev[65] = "", hash[65];
	int64_t		 expect = 1, count = 0;
	int		 rv = 0;

	*checked = 0;
	*bad_id = 0;
	st = store_prepare(ctl->db, "SELECT id, at, token, role, action, "
	    "object, summary, request_id, prev_hash, hash FROM audit ORDER BY "
	    "id");
	while (sqlite3_step(st) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0);
#define T(i) ((const char *)sqlite3_column_text(st, (i)))
		if (id != expect) {
			*bad_id = expect;
			xasprintf(why, "record %lld is missing", (long long)
			    expect);
			rv = -1;
			break;
		}
		if (strcmp(T(8), prev) != 0) {
			*bad_id = id;
			xasprintf(why, "record %lld does not follow record %lld",
			    (long long)id, (long long)id - 1);
			rv = -1;
			break;
		}
		audit_hash(id, sqlite3_column_int64(st, 1), T(2), T(3), T(4),
		    T(5), T(6), T(7), prev, hash);
		if (strcmp(hash, T(9)) != 0) {
			*bad_id = id;
			xasprintf(why, "record %lld was modified", (long long)id);
			rv = -1;
			break;
		}
#undef T
		strlcpy(prev, hash, sizeof(prev));
		expect++;
		(*checked)++;
	}
	sqlite3_finalize(st);
	if (rv == -1)
		return (-1);
	st = store_prepare(ctl->db, "SELECT count, hash FROM audit_head");
	if (sqlite3_step(st) == SQLITE_ROW) {
		count = sqlite3_column_int64(st, 0);
		if (count != *checked || strcmp((const char *)
		    sqlite3_column_text(st, 1), prev) != 0) {
			*bad_id = *checked + 1;
			xasprintf(why, "the trail ends at record %lld but %lld "
			    "were written", (long long)*checked,
			    (long long)count);
			rv = -1;
		}
	}
	sqlite3_finalize(st);
	return (rv);
}

/* GET /v1/audit?since=RFC3339|unix&object=&limit=&cursor= */
static void
audit_list(struct api_req *r)
{
	sqlite3_stmt	*st;
	const char	*cursor, *object = api_query(r, "object");
	const char	*since = api_query(r, "since");
	int64_t		 t = 0;
	char		*next = NULL, buf[32];
	int		 limit, n = 0;
	json_t		*items, *o, *sum;

	if (params_page(r, &limit, &cursor) == -1)
		return;
	if (since != NULL && params_parse_time(since, &t) == -1) {
		api_reply_error(r, 400, "bad_parameter", "since must be a date "
		    "(2026-11-29 or 2026-11-29T18:00:00Z)");
		return;
	}
	items = json_array();
	st = store_prepare(ctl->db, "SELECT id, at, token, role, action, "
	    "object, summary, request_id, hash FROM audit WHERE id > ?1 AND "
	    "at >= ?2 AND (?3 IS NULL OR object = ?3 OR object LIKE ?3 || "
	    "'/%') ORDER BY id LIMIT ?4");
	sqlite3_bind_int64(st, 1, cursor ? strtoll(cursor, NULL, 10) : 0);
	sqlite3_bind_int64(st, 2, t);
	if (object != NULL)
		sqlite3_bind_text(st, 3, object, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 4, limit + 1);
	while (sqlite3_step(st) == SQLITE_ROW) {
		if (n++ == limit) {
			xasprintf(&next, "%lld", (long long)
			    sqlite3_column_int64(st, 0) - 1);
			break;
		}
		util_time_fmt(sqlite3_column_int64(st, 1), buf, sizeof(buf));
		sum = json_loads((const char *)sqlite3_column_text(st, 6), 0,
		    NULL);
		o = json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:o,s:s,s:s}", "id",
		    (json_int_t)sqlite3_column_int64(st, 0), "at", buf,
		    "token", sqlite3_column_text(st, 2), "role",
		    sqlite3_column_text(st, 3), "action",
		    sqlite3_column_text(st, 4), "object",
		    sqlite3_column_text(st, 5), "summary",
		    sum ? sum : json_object(), "request_id",
		    sqlite3_column_text(st, 7), "hash",
		    sqlite3_column_text(st, 8));
		json_array_append_new(items, o);
	}
	sqlite3_finalize(st);
	params_reply_page(r, items, next);
}

/* GET /v1/audit/verify */
static void
audit_verify_route(struct api_req *r)
{
	int64_t	 checked, bad;
	char	*why = NULL;
	json_t	*o;

	if (audit_verify(&checked, &bad, &why) == 0) {
		o = json_pack("{s:b,s:I}", "ok", 1, "records",
		    (json_int_t)checked);
	} else {
		o = json_pack("{s:b,s:I,s:I,s:s}", "ok", 0, "records",
		    (json_int_t)checked, "first_bad", (json_int_t)bad,
		    "reason", why);
		log_warnx("audit: verification failed: %s", why);
	}
	free(why);
	api_reply_json(r, 200, o);
}

static const struct api_route audit_routes[] = {
	{ "GET", "/v1/audit", "audit.read",
	  API_PLATFORM, NULL, audit_list,
	  "The audit trail (since, object, limit, cursor)" },
	{ "GET", "/v1/audit/verify", "audit.read",
	  API_PLATFORM, NULL, audit_verify_route,
	  "Check the audit trail's hash chain" },
};

const struct ctl_module audit_module = {
	.m_name = "audit",
	.m_routes = audit_routes,
	.m_nroutes = nitems(audit_routes),
};
