/*
 * The audit trail: one record per mutation, written in the transaction
 * that makes the change, hash chained so that a record edited or deleted
 * behind the controller's back breaks the chain.
 *
 * Anyone who can write the database can also recompute the chain. So the
 * controller signs the chain's head at regular checkpoints (and on
 * demand) with a key of its own, kept outside the database
 * (DATA_DIR/audit-key.pem, 0600) and certified by its CA (audit.pem):
 * a chain rewritten with recomputed hashes no longer matches what a
 * checkpoint signed, and no checkpoint can be signed over it without the
 * key. The latest checkpoint is also written to DATA_DIR/audit-anchor.json
 * (deleting checkpoints from the database is seen) and logged. Checking
 * reads the whole trail: it runs on the thread pool, as does the export
 * that lets anyone holding the CA certificate check it offline.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "opsn/log.h"
#include "opsn/pki.h"
#include "opsn/trail.h"
#include "opsn/util.h"
#include "core.h"

#define AUDIT_KEY		"audit-key.pem"
#define AUDIT_CERT		"audit.pem"
#define AUDIT_ANCHOR		"audit-anchor.json"
#define AUDIT_CERT_DAYS		3650
#define AUDIT_CHECKPOINT_MS	(15 * 60 * 1000)
#define AUDIT_ANCHOR_MAX	4096

static EVP_PKEY		*audit_key;
static X509		*audit_cert;
static char		*audit_db_path, *audit_anchor_path;
static uv_timer_t	 audit_timer;
static int64_t		 audit_signed_count = -1;	/* the last checkpoint's */

/* The anchor file is written on the pool, one write at a time. */
static uv_work_t	 audit_anchor_work;
static char		*audit_anchor_text, *audit_anchor_next, *audit_anchor_why;
static int		 audit_anchor_busy;

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
	if (store_step(st) != SQLITE_ROW) {
		store_done(st);
		goto out;
	}
	count = sqlite3_column_int64(st, 0);
	strlcpy(prev, (const char *)sqlite3_column_text(st, 1), sizeof(prev));
	store_done(st);
	id = count + 1;
	{
		struct trail_record tr = { id, at, token, role, action, object,
		    sum, reqid, prev, NULL };

		trail_hash(&tr, hash);
	}
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
	if (store_step(st) != SQLITE_DONE) {
		log_warnx("audit: %s", sqlite3_errmsg(ctl->db));
		store_done(st);
		goto out;
	}
	store_done(st);
	st = store_stmt(ctl->db, "UPDATE audit_head SET count = ?, hash = ?");
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_text(st, 2, hash, -1, SQLITE_STATIC);
	rv = store_step(st) == SQLITE_DONE ? 0 : -1;
	store_done(st);
out:
	free(sum);
	return (rv);
}

/* GET /v1/audit?since=RFC3339|unix&object=&limit=&cursor= */
static void
audit_list(struct api_req *r)
{
	sqlite3_stmt	*st;
	const char	*object = api_query(r, "object");
	const char	*since = api_query(r, "since");
	int64_t		 t = 0, after;
	char		*next = NULL, buf[32];
	int		 limit, n = 0;
	json_t		*items, *o, *sum;

	if (params_page_id(r, &limit, &after) == -1)
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
	sqlite3_bind_int64(st, 1, after);
	sqlite3_bind_int64(st, 2, t);
	if (object != NULL)
		sqlite3_bind_text(st, 3, object, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 4, limit + 1);
	while (store_step(st) == SQLITE_ROW) {
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


/* ---- the audit key and its checkpoints ------------------------------- */

/*
 * Load the audit key and its certificate, or make them on first start:
 * a key of its own rather than the CA's, so that it can be kept, rotated
 * or revoked apart from the CA that admits the nodes.
 */
static int
audit_keys(struct ctl *c, char **cause)
{
	char	*kp = ca_path(c, AUDIT_KEY), *cp = ca_path(c, AUDIT_CERT);
	int	 rv = -1;

	if (access(kp, F_OK) == 0) {
		if ((audit_key = pki_key_load(kp, cause)) == NULL ||
		    (audit_cert = pki_cert_load(cp, cause)) == NULL)
			goto out;
		if (X509_check_private_key(audit_cert, audit_key) != 1) {
			xasprintf(cause, "%s is not the certificate of %s", cp,
			    kp);
			goto out;
		}
	} else {
		if ((audit_key = pki_key_new(cause)) == NULL ||
		    (audit_cert = pki_signer_cert_new(audit_key, "opsn audit",
		    c->ca, c->ca_key, AUDIT_CERT_DAYS, cause)) == NULL)
			goto out;
		/* The key first: a certificate without its key is useless. */
		if (pki_key_save(kp, audit_key, 0600, cause) == -1 ||
		    pki_cert_save(cp, audit_cert, 0644, cause) == -1)
			goto out;
		log_notice("audit: created the audit key %s", kp);
	}
	if (pki_check_signer(audit_cert, c->ca, cause) == -1)
		goto out;
	rv = 0;
out:
	free(kp);
	free(cp);
	return (rv);
}

static void	audit_anchor_start(char *, int);

static void
audit_anchor_work_cb(uv_work_t *w)
{
	char	*cause = NULL;

	if (util_write_file(audit_anchor_path, audit_anchor_text,
	    strlen(audit_anchor_text), 0600, &cause) == -1)
		audit_anchor_why = cause;
}

static void
audit_anchor_after_cb(uv_work_t *w, int status)
{
	char	*next = audit_anchor_next;

	if (audit_anchor_why != NULL)
		log_warnx("audit: writing the anchor: %s", audit_anchor_why);
	free(audit_anchor_why);
	free(audit_anchor_text);
	audit_anchor_why = audit_anchor_text = audit_anchor_next = NULL;
	audit_anchor_busy = 0;
	if (next != NULL && status == 0)
		audit_anchor_start(next, 0);
	else
		free(next);
}

/*
 * Write the latest checkpoint (text, consumed) outside the database: on
 * the pool, or at once when the loop is stopping (sync).
 */
static void
audit_anchor_start(char *text, int sync)
{
	char	*cause = NULL;

	if (sync && !audit_anchor_busy) {
		if (util_write_file(audit_anchor_path, text, strlen(text), 0600,
		    &cause) == -1) {
			log_warnx("audit: writing the anchor: %s", cause);
			free(cause);
		}
		free(text);
		return;
	}
	if (audit_anchor_busy) {
		/* Only the newest matters: it replaces one not written yet. */
		free(audit_anchor_next);
		audit_anchor_next = text;
		return;
	}
	audit_anchor_text = text;
	if (uv_queue_work(ctl->loop, &audit_anchor_work, audit_anchor_work_cb,
	    audit_anchor_after_cb) != 0) {
		log_warnx("audit: cannot queue the anchor's write");
		free(text);
		audit_anchor_text = NULL;
		return;
	}
	audit_anchor_busy = 1;
}

/*
 * Sign the chain's head (loop thread, outside any transaction). When
 * forced is 0 and nothing was recorded since the last checkpoint, nothing
 * is signed and *out stays NULL. sync: the anchor is written at once.
 */
static int
audit_checkpoint(int forced, int sync, json_t **out, char **cause)
{
	sqlite3_stmt	*st;
	int64_t		 count, at = util_now(), id;
	char		 hash[65], when[32], *text, *sig;
	json_t		*cp;

	*out = NULL;
	st = store_prepare(ctl->db, "SELECT count, hash FROM audit_head");
	if (store_step(st) != SQLITE_ROW) {
		xasprintf(cause, "reading the trail's head: %s",
		    sqlite3_errmsg(ctl->db));
		sqlite3_finalize(st);
		return (-1);
	}
	count = sqlite3_column_int64(st, 0);
	strlcpy(hash, (const char *)sqlite3_column_text(st, 1), sizeof(hash));
	sqlite3_finalize(st);
	if (!forced && count == audit_signed_count)
		return (0);
	text = trail_checkpoint_text(count, hash, at);
	sig = pki_sign_b64(audit_key, text, strlen(text), cause);
	free(text);
	if (sig == NULL)
		return (-1);
	if (store_begin(ctl->db) == -1) {
		xasprintf(cause, "the database is busy");
		free(sig);
		return (-1);
	}
	st = store_prepare(ctl->db, "INSERT INTO audit_checkpoints (at, count, "
	    "hash, sig) VALUES (?, ?, ?, ?) RETURNING id");
	sqlite3_bind_int64(st, 1, at);
	sqlite3_bind_int64(st, 2, count);
	sqlite3_bind_text(st, 3, hash, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, sig, -1, SQLITE_STATIC);
	id = store_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
	sqlite3_finalize(st);
	if (id == -1 || store_commit(ctl->db) == -1) {
		xasprintf(cause, "storing the checkpoint: %s",
		    sqlite3_errmsg(ctl->db));
		store_rollback(ctl->db);
		free(sig);
		return (-1);
	}
	audit_signed_count = count;
	/* In the log too: evidence that leaves the machine. */
	log_notice("audit: checkpoint %lld signs %lld records, head %s", (long
	    long)id, (long long)count, count > 0 ? hash : "(empty)");
	cp = json_pack("{s:I,s:s,s:I,s:s}", "count", (json_int_t)count, "hash",
	    hash, "at", (json_int_t)at, "sig", sig);
	free(sig);
	if (cp == NULL)
		fatalx("audit: json_pack checkpoint");
	audit_anchor_start(json_dumps(cp, JSON_COMPACT | JSON_SORT_KEYS), sync);
	util_time_fmt(at, when, sizeof(when));
	json_object_set_new(cp, "id", json_integer(id));
	json_object_set_new(cp, "signed_at", json_string(when));
	*out = cp;
	return (0);
}

static void
audit_timer_cb(uv_timer_t *t)
{
	json_t	*cp;
	char	*cause = NULL;

	if (audit_checkpoint(0, 0, &cp, &cause) == -1) {
		log_warnx("audit: checkpoint: %s", cause);
		free(cause);
	}
	json_decref(cp);
}

/* ---- checking and exporting, on the thread pool --------------------- */

struct audit_job {
	uv_work_t		 j_work;
	struct api_defer	*j_defer;
	int			 j_export;
	EVP_PKEY		*j_key;		/* the audit key's public half */
	char			*j_cert;	/* PEM, for the export */
	char			*j_cause;	/* could not read */
	struct trail_result	 j_res;
	int			 j_ok;
	json_t			*j_anchor;	/* the anchor file, or NULL */
	json_t			*j_doc;		/* the answer */
};

/* The anchor file's checkpoint, or NULL when there is none (yet). */
static json_t *
audit_anchor_read(const char *path)
{
	char	*buf = NULL, *cause = NULL;
	size_t	 len;
	json_t	*o;

	if (access(path, F_OK) != 0)
		return (NULL);
	if (util_read_file(path, AUDIT_ANCHOR_MAX, &buf, &len, &cause) == -1) {
		log_warnx("audit: %s", cause);
		free(cause);
		return (NULL);
	}
	o = json_loadb(buf, len, 0, NULL);
	free(buf);
	if (o != NULL && (!json_is_integer(json_object_get(o, "count")) ||
	    !json_is_string(json_object_get(o, "hash")) ||
	    !json_is_integer(json_object_get(o, "at")) ||
	    !json_is_string(json_object_get(o, "sig")))) {
		json_decref(o);
		o = NULL;
	}
	if (o == NULL)
		log_warnx("audit: %s is not a checkpoint", path);
	return (o);
}

/*
 * The checkpoints, the anchor's among them (it is not in the database if
 * someone deleted it there), as one array.
 */
static json_t *
audit_read_checkpoints(sqlite3 *db, json_t *anchor)
{
	sqlite3_stmt	*st;
	json_t		*a = json_array();
	int		 seen = 0;

	if (sqlite3_prepare_v2(db, "SELECT count, hash, at, sig FROM "
	    "audit_checkpoints ORDER BY count, id", -1, &st, NULL) !=
	    SQLITE_OK)
		return (a);
	while (store_step(st) == SQLITE_ROW) {
		if (anchor != NULL && strcmp((const char *)
		    sqlite3_column_text(st, 3), json_string_value(
		    json_object_get(anchor, "sig"))) == 0)
			seen = 1;
		json_array_append_new(a, json_pack("{s:I,s:s,s:I,s:s}", "count",
		    (json_int_t)sqlite3_column_int64(st, 0), "hash",
		    (const char *)sqlite3_column_text(st, 1), "at",
		    (json_int_t)sqlite3_column_int64(st, 2), "sig",
		    (const char *)sqlite3_column_text(st, 3)));
	}
	sqlite3_finalize(st);
	if (anchor != NULL && !seen)
		json_array_append(a, anchor);
	return (a);
}

#define AUDIT_COLS "id, at, token, role, action, object, summary, " \
	"request_id, prev_hash, hash"

static void
audit_row(sqlite3_stmt *st, struct trail_record *r)
{
#define T(i) ((const char *)sqlite3_column_text(st, (i)))
	r->tr_id = sqlite3_column_int64(st, 0);
	r->tr_at = sqlite3_column_int64(st, 1);
	r->tr_token = T(2);
	r->tr_role = T(3);
	r->tr_action = T(4);
	r->tr_object = T(5);
	r->tr_summary = T(6);
	r->tr_request_id = T(7);
	r->tr_prev = T(8);
	r->tr_hash = T(9);
#undef T
}

/* Check every record against the chain and the signed checkpoints. */
static int
audit_check(sqlite3 *db, struct audit_job *j, json_t *cps)
{
	struct trail_check	*c = trail_check_new(j->j_key);
	struct trail_record	 r;
	sqlite3_stmt		*st;
	json_t			*cp;
	size_t			 i;
	int64_t			 count = 0;
	const char		*head = "";

	json_array_foreach(cps, i, cp)
		trail_check_checkpoint(c, json_integer_value(json_object_get(cp,
		    "count")), json_string_value(json_object_get(cp, "hash")),
		    json_integer_value(json_object_get(cp, "at")),
		    json_string_value(json_object_get(cp, "sig")));
	if (sqlite3_prepare_v2(db, "SELECT " AUDIT_COLS " FROM audit ORDER BY "
	    "id", -1, &st, NULL) != SQLITE_OK)
		goto fail;
	while (store_step(st) == SQLITE_ROW) {
		audit_row(st, &r);
		if (trail_check_record(c, &r) == -1)
			break;
	}
	sqlite3_finalize(st);
	j->j_ok = trail_check_end(c, &j->j_res) == 0;
	trail_check_free(c);
	if (!j->j_ok)
		return (0);
	/* audit_head keeps the count and last hash: a cut tail is seen. */
	if (sqlite3_prepare_v2(db, "SELECT count, hash FROM audit_head", -1,
	    &st, NULL) != SQLITE_OK)
		goto fail;
	if (store_step(st) == SQLITE_ROW) {
		count = sqlite3_column_int64(st, 0);
		head = (const char *)sqlite3_column_text(st, 1);
	}
	if (count != j->j_res.tr_records || strcmp(head,
	    j->j_res.tr_head) != 0) {
		j->j_ok = 0;
		j->j_res.tr_first_bad = j->j_res.tr_records + 1;
		xasprintf(&j->j_res.tr_why, "the trail ends at record %lld but "
		    "%lld were written", (long long)j->j_res.tr_records,
		    (long long)count);
	}
	sqlite3_finalize(st);
	return (0);
fail:
	trail_check_free(c);
	xasprintf(&j->j_cause, "reading the trail: %s", sqlite3_errmsg(db));
	return (-1);
}

/* The whole trail with its checkpoints, for an offline check. */
static int
audit_export(sqlite3 *db, struct audit_job *j, json_t *cps)
{
	struct trail_record	 r;
	sqlite3_stmt		*st;
	json_t			*recs = json_array();
	char			 when[32];

	if (sqlite3_prepare_v2(db, "SELECT " AUDIT_COLS " FROM audit ORDER BY "
	    "id", -1, &st, NULL) != SQLITE_OK) {
		json_decref(recs);
		xasprintf(&j->j_cause, "reading the trail: %s",
		    sqlite3_errmsg(db));
		return (-1);
	}
	while (store_step(st) == SQLITE_ROW) {
		audit_row(st, &r);
		/* The summary as the text that was hashed, not re-encoded. */
		json_array_append_new(recs, json_pack("{s:I,s:I,s:s,s:s,s:s,"
		    "s:s,s:s,s:s,s:s,s:s}", "id", (json_int_t)r.tr_id, "at",
		    (json_int_t)r.tr_at, "token", r.tr_token, "role",
		    r.tr_role, "action", r.tr_action, "object", r.tr_object,
		    "summary", r.tr_summary, "request_id", r.tr_request_id,
		    "prev_hash", r.tr_prev, "hash", r.tr_hash));
	}
	sqlite3_finalize(st);
	util_time_fmt(util_now(), when, sizeof(when));
	j->j_doc = json_pack("{s:s,s:s,s:s,s:s,s:o,s:O}", "format",
	    TRAIL_FORMAT, "exported_at", when, "ca_fingerprint", ctl->ca_fpr,
	    "signer", j->j_cert, "records", recs, "checkpoints", cps);
	if (j->j_doc == NULL)
		fatalx("audit: json_pack export");
	return (0);
}

static void
audit_job_work_cb(uv_work_t *w)
{
	struct audit_job	*j = w->data;
	sqlite3			*db;
	json_t			*cps;

	j->j_anchor = audit_anchor_read(audit_anchor_path);
	if (store_reader(audit_db_path, &db, &j->j_cause) == -1)
		return;
	/* One snapshot: records, head and checkpoints agree. */
	if (store_exec(db, "BEGIN", &j->j_cause) == 0) {
		cps = audit_read_checkpoints(db, j->j_anchor);
		if (j->j_export)
			audit_export(db, j, cps);
		else
			audit_check(db, j, cps);
		json_decref(cps);
		store_exec(db, "COMMIT", NULL);
	}
	store_reader_done(db);
}

static void
audit_job_free(struct audit_job *j)
{
	EVP_PKEY_free(j->j_key);
	free(j->j_cert);
	free(j->j_cause);
	free(j->j_res.tr_why);
	json_decref(j->j_anchor);
	json_decref(j->j_doc);
	free(j);
}

static void
audit_job_after_cb(uv_work_t *w, int status)
{
	struct audit_job	*j = w->data;
	struct api_defer	*d = j->j_defer;
	struct trail_result	*res = &j->j_res;
	json_t			*o;

	if (status == UV_ECANCELED) {
		api_defer_reply_error(d, 503, "busy", "cancelled: the "
		    "controller is stopping");
		goto out;
	}
	if (j->j_cause != NULL) {
		log_warnx("audit: request %s: %s", api_request_id(
		    api_defer_req(d)), j->j_cause);
		api_defer_reply_error(d, 500, "internal", "reading the audit "
		    "trail failed (request %s)", api_request_id(
		    api_defer_req(d)));
		goto out;
	}
	if (j->j_export) {
		api_defer_reply_json(d, 200, j->j_doc);
		j->j_doc = NULL;
		goto out;
	}
	o = json_pack("{s:b,s:I,s:I,s:I}", "ok", j->j_ok, "records",
	    (json_int_t)res->tr_records, "checkpoints",
	    (json_int_t)res->tr_checkpoints, "anchored",
	    (json_int_t)res->tr_anchored);
	json_object_set(o, "anchor", j->j_anchor ? j->j_anchor : json_null());
	if (!j->j_ok) {
		json_object_set_new(o, "first_bad",
		    json_integer(res->tr_first_bad));
		json_object_set_new(o, "reason", json_string(res->tr_why));
		log_warnx("audit: verification failed: %s", res->tr_why);
	}
	api_defer_reply_json(d, 200, o);
out:
	audit_job_free(j);
}

/* Check (GET /v1/audit/verify) or export (GET /v1/audit/export). */
static void
audit_job_start(struct api_req *r, int export)
{
	struct audit_job	*j = xcalloc(1, sizeof(*j));
	char			*cause = NULL;
	int			 rv;

	j->j_export = export;
	j->j_key = X509_get_pubkey(audit_cert);
	if (export && (j->j_cert = pki_cert_pem(audit_cert, &cause)) == NULL) {
		api_reply_error(r, 500, "internal", "%s", cause);
		free(cause);
		audit_job_free(j);
		return;
	}
	j->j_work.data = j;
	j->j_defer = api_defer(r);
	if ((rv = uv_queue_work(ctl->loop, &j->j_work, audit_job_work_cb,
	    audit_job_after_cb)) != 0) {
		api_defer_reply_error(j->j_defer, 503, "busy", "%s",
		    uv_strerror(rv));
		audit_job_free(j);
	}
}

/* GET /v1/audit/verify: the chain, the checkpoints, the anchor. */
static void
audit_verify_route(struct api_req *r)
{
	audit_job_start(r, 0);
}

/* GET /v1/audit/export: the records and the signed checkpoints. */
static void
audit_export_route(struct api_req *r)
{
	audit_job_start(r, 1);
}

/* POST /v1/audit/checkpoints: sign the head now. */
static void
audit_checkpoint_route(struct api_req *r)
{
	json_t	*cp;
	char	*cause = NULL;

	if (audit_checkpoint(1, 0, &cp, &cause) == -1) {
		log_warnx("audit: checkpoint (request %s): %s",
		    api_request_id(r), cause);
		free(cause);
		api_reply_error(r, 500, "internal", "the checkpoint could not "
		    "be stored (request %s)", api_request_id(r));
		return;
	}
	api_reply_json(r, 201, cp);
}

/* The audit key, the latest checkpoint signed, the checkpoint timer. */
static int
audit_init(struct ctl *c, char **cause)
{
	sqlite3_stmt	*st;

	if (audit_keys(c, cause) == -1)
		return (-1);
	audit_db_path = ca_path(c, "opsn.db");
	audit_anchor_path = ca_path(c, AUDIT_ANCHOR);
	st = store_prepare(c->db, "SELECT count FROM audit_checkpoints ORDER "
	    "BY id DESC LIMIT 1");
	if (store_step(st) == SQLITE_ROW)
		audit_signed_count = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	uv_timer_init(c->loop, &audit_timer);
	uv_timer_start(&audit_timer, audit_timer_cb, c->conf.audit_checkpoint_ms >
	    0 ? (uint64_t)c->conf.audit_checkpoint_ms : AUDIT_CHECKPOINT_MS,
	    c->conf.audit_checkpoint_ms > 0 ?
	    (uint64_t)c->conf.audit_checkpoint_ms : AUDIT_CHECKPOINT_MS);
	uv_unref((uv_handle_t *)&audit_timer);
	return (0);
}

/* Sign the head once more on the way out: the last changes are anchored. */
static void
audit_stop(void)
{
	json_t	*cp = NULL;
	char	*cause = NULL;

	uv_timer_stop(&audit_timer);
	uv_close((uv_handle_t *)&audit_timer, NULL);
	if (audit_key != NULL && audit_checkpoint(0, 1, &cp, &cause) == -1) {
		log_warnx("audit: checkpoint: %s", cause);
		free(cause);
	}
	json_decref(cp);
}

static const struct api_route audit_routes[] = {
	{ "GET", "/v1/audit", "audit.read",
	  API_PLATFORM, NULL, audit_list,
	  "The audit trail (since, object, limit, cursor)" },
	{ "GET", "/v1/audit/verify", "audit.read",
	  API_PLATFORM, NULL, audit_verify_route,
	  "Check the audit trail's hash chain and its signed checkpoints" },
	{ "GET", "/v1/audit/export", "audit.read",
	  API_PLATFORM, NULL, audit_export_route,
	  "The whole trail with its signed checkpoints, to check offline" },
	{ "POST", "/v1/audit/checkpoints", "audit.read",
	  API_PLATFORM, NULL, audit_checkpoint_route,
	  "Sign the trail's head now (an auditor anchors it before an export)" },
};

const struct ctl_module audit_module = {
	.m_name = "audit",
	.m_init = audit_init,
	.m_stop = audit_stop,
	.m_routes = audit_routes,
	.m_nroutes = nitems(audit_routes),
};
