/*
 * Tenant imports: Etalab's decoupage-administratif communes and EPCIs, and
 * CSV files, sent by opsnctl as records. All or nothing: the first bad
 * record rolls everything back and is named (its "where", e.g. "line 512")
 * with the field. Idempotent: a record equal to what is stored changes
 * nothing, and the answer says how many were created, updated, unchanged.
 */
#include <stdlib.h>
#include <string.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "members.h"
#include "tenants.h"

/* The debtor's columns, in tenants_acc_name() order. */
#define IMPORT_ACC_COLS "siret, address, postcode, town, accounting_category"

struct import_counts {
	int64_t	 created, updated, unchanged, linked, missing;
};

/* Fail the import: message "WHERE: FIELD: why". */
static int
import_fail(char **cause, json_t *rec, size_t idx, const char *field,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int
import_fail(char **cause, json_t *rec, size_t idx, const char *field,
    const char *fmt, ...)
{
	json_t	*w = json_object_get(rec, "where");
	char	*why, where[96];
	va_list	 ap;

	if (json_is_string(w))
		snprintf(where, sizeof(where), "%.80s", json_string_value(w));
	else
		snprintf(where, sizeof(where), "record %zu", idx + 1);
	va_start(ap, fmt);
	xvasprintf(&why, fmt, ap);
	va_end(ap);
	xasprintf(cause, "%s: %s: %s", where, field, why);
	free(why);
	return (-1);
}

static const char *
import_str(json_t *rec, const char *k)
{
	json_t	*v = json_object_get(rec, k);

	return (json_is_string(v) ? json_string_value(v) : NULL);
}

/* Insert or update one tenant; its id in *idp. */
static int
import_one(json_t *rec, size_t idx, struct import_counts *n, int64_t *idp,
    char **cause)
{
	static const char *const known[] = { "where", "kind", "insee", "siren",
	    "name", "population", "members", "siret", "address", "postcode",
	    "town", "accounting_category", NULL };
	const char	*kind, *insee, *siren, *name, *k, *const *kk, *rule;
	const char	*acc[TENANT_NACC];
	json_t		*v;
	int64_t		 pop = 0, id = -1;
	sqlite3_stmt	*st;
	size_t		 i;
	int		 same;

	if (!json_is_object(rec))
		return (import_fail(cause, rec, idx, "record", "not an object"));
	json_object_foreach(rec, k, v) {
		for (kk = known; *kk != NULL; kk++)
			if (strcmp(*kk, k) == 0)
				break;
		if (*kk == NULL)
			return (import_fail(cause, rec, idx, k,
			    "unknown field"));
	}
	kind = import_str(rec, "kind");
	if (kind == NULL || (strcmp(kind, "commune") != 0 &&
	    strcmp(kind, "epci") != 0 && strcmp(kind, "syndicat") != 0 &&
	    strcmp(kind, "department") != 0 && strcmp(kind, "other") != 0))
		return (import_fail(cause, rec, idx, "kind", "'%.32s' is not "
		    "commune, epci, syndicat, department or other",
		    kind ? kind : ""));
	name = import_str(rec, "name");
	if (name == NULL || !tenants_text_ok(name, 200))
		return (import_fail(cause, rec, idx, "name", "missing, over 200 "
		    "characters or with control characters"));
	insee = import_str(rec, "insee");
	if (insee != NULL && *insee == '\0')
		insee = NULL;
	if ((insee == NULL && strcmp(kind, "commune") == 0) ||
	    (insee != NULL && !tenants_insee_ok(insee)))
		return (import_fail(cause, rec, idx, "insee", "'%.16s' is not "
		    "an INSEE code", insee ? insee : ""));
	siren = import_str(rec, "siren");
	if (siren != NULL && *siren == '\0')
		siren = NULL;
	if (siren != NULL && !tenants_siren_ok(siren))
		return (import_fail(cause, rec, idx, "siren", "'%.16s' is not "
		    "a valid SIREN (9 digits, Luhn check)", siren));
	if ((v = json_object_get(rec, "population")) != NULL) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > 100000000)
			return (import_fail(cause, rec, idx, "population",
			    "not a whole number from 0 to 100000000"));
		pop = json_integer_value(v);
	}
	/* The debtor's fields: only those the record has (Etalab has none). */
	for (i = 0; i < TENANT_NACC; i++) {
		acc[i] = import_str(rec, tenants_acc_name(i));
		if (acc[i] != NULL && *acc[i] == '\0')
			acc[i] = NULL;
		if (acc[i] != NULL && !tenants_acc_ok(i, acc[i], &rule))
			return (import_fail(cause, rec, idx,
			    tenants_acc_name(i), "'%.100s': %s", acc[i], rule));
	}

	/* The same member: by INSEE code for a commune, else by SIREN. */
	if (strcmp(kind, "commune") == 0)
		st = store_prepare(ctl->db, "SELECT id, name, siren, population, "
		    IMPORT_ACC_COLS " FROM tenants WHERE kind = 'commune' AND "
		    "insee = ?");
	else
		st = store_prepare(ctl->db, "SELECT id, name, siren, population, "
		    IMPORT_ACC_COLS " FROM tenants WHERE siren = ?");
	sqlite3_bind_text(st, 1, strcmp(kind, "commune") == 0 ? insee : siren,
	    -1, SQLITE_STATIC);
	if (strcmp(kind, "commune") != 0 && siren == NULL) {
		sqlite3_finalize(st);
		return (import_fail(cause, rec, idx, "siren", "required for a "
		    "%s", kind));
	}
	if (store_step(st) == SQLITE_ROW) {
		id = sqlite3_column_int64(st, 0);
		same = strcmp((const char *)sqlite3_column_text(st, 1),
		    name) == 0 && sqlite3_column_int64(st, 3) == pop &&
		    ((siren == NULL && sqlite3_column_type(st, 2) ==
		    SQLITE_NULL) || (siren != NULL && sqlite3_column_type(st,
		    2) != SQLITE_NULL && strcmp((const char *)
		    sqlite3_column_text(st, 2), siren) == 0));
		for (i = 0; i < TENANT_NACC; i++)
			if (acc[i] != NULL && (sqlite3_column_type(st, 4 + i) ==
			    SQLITE_NULL || strcmp((const char *)
			    sqlite3_column_text(st, 4 + i), acc[i]) != 0))
				same = 0;
		sqlite3_finalize(st);
		if (same) {
			n->unchanged++;
			*idp = id;
			return (0);
		}
		st = store_prepare(ctl->db, "UPDATE tenants SET name = ?1, "
		    "siren = ?2, population = ?3, version = version + 1, "
		    "updated_at = ?4, siret = coalesce(?6, siret), address = "
		    "coalesce(?7, address), postcode = coalesce(?8, postcode), "
		    "town = coalesce(?9, town), accounting_category = "
		    "coalesce(?10, accounting_category) WHERE id = ?5");
		sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
		if (siren != NULL)
			sqlite3_bind_text(st, 2, siren, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, pop);
		sqlite3_bind_int64(st, 4, util_now());
		sqlite3_bind_int64(st, 5, id);
		for (i = 0; i < TENANT_NACC; i++)
			if (acc[i] != NULL)
				sqlite3_bind_text(st, 6 + (int)i, acc[i], -1,
				    SQLITE_STATIC);
		if (store_step(st) != SQLITE_DONE) {
			sqlite3_finalize(st);
			return (import_fail(cause, rec, idx, "siren", "%s is "
			    "already another tenant's", siren));
		}
		sqlite3_finalize(st);
		n->updated++;
		*idp = id;
		return (0);
	}
	sqlite3_finalize(st);
	st = store_prepare(ctl->db, "INSERT INTO tenants (kind, name, insee, "
	    "siren, population, joined_on, created_at, updated_at, "
	    IMPORT_ACC_COLS ") VALUES (?, ?, ?, ?, ?, date('now'), ?6, ?6, ?7, "
	    "?8, ?9, ?10, ?11) RETURNING id");
	sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	if (insee != NULL)
		sqlite3_bind_text(st, 3, insee, -1, SQLITE_STATIC);
	if (siren != NULL)
		sqlite3_bind_text(st, 4, siren, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, pop);
	sqlite3_bind_int64(st, 6, util_now());
	for (i = 0; i < TENANT_NACC; i++)
		if (acc[i] != NULL)
			sqlite3_bind_text(st, 7 + (int)i, acc[i], -1,
			    SQLITE_STATIC);
	if (store_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		return (import_fail(cause, rec, idx, siren ? "siren" : "insee",
		    "%s is already another tenant's", siren ? siren : insee));
	}
	*idp = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	n->created++;
	return (0);
}

/* An EPCI's members (SIRENs of communes) get it as parent. */
static int
import_members(json_t *rec, size_t idx, int64_t epci,
    struct import_counts *n, char **cause)
{
	json_t		*members = json_object_get(rec, "members"), *m;
	sqlite3_stmt	*st;
	size_t		 i;

	if (members == NULL)
		return (0);
	if (!json_is_array(members))
		return (import_fail(cause, rec, idx, "members", "not a list of "
		    "SIRENs"));
	st = store_prepare(ctl->db, "UPDATE tenants SET parent_id = ?1, "
	    "version = version + 1, updated_at = ?2 WHERE siren = ?3 AND "
	    "id != ?1 AND parent_id IS NOT ?1");
	json_array_foreach(members, i, m) {
		if (!json_is_string(m) || !tenants_siren_ok(json_string_value(m))) {
			sqlite3_finalize(st);
			return (import_fail(cause, rec, idx, "members", "entry "
			    "%zu is not a valid SIREN", i + 1));
		}
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, epci);
		sqlite3_bind_int64(st, 2, util_now());
		sqlite3_bind_text(st, 3, json_string_value(m), -1,
		    SQLITE_STATIC);
		store_step(st);
		if (sqlite3_changes(ctl->db) > 0)
			n->linked++;
		else {
			sqlite3_stmt *ex = store_prepare(ctl->db, "SELECT 1 "
			    "FROM tenants WHERE siren = ?");
			sqlite3_bind_text(ex, 1, json_string_value(m), -1,
			    SQLITE_STATIC);
			if (store_step(ex) != SQLITE_ROW)
				n->missing++;
			sqlite3_finalize(ex);
		}
	}
	sqlite3_finalize(st);
	return (0);
}

/* POST /v1/tenants/import {"source": ..., "records": [...]} */
void
import_tenants(struct api_req *r)
{
	static const char *const known[] = { "source", "records", NULL };
	struct import_counts n = { 0, 0, 0, 0, 0 };
	json_t		*body, *recs, *rec;
	const char	*source;
	char		*cause = NULL;
	size_t		 i;
	int64_t		 id = 0;

	if ((body = api_body_json(r)) == NULL)
		return;
	if (params_known_fields(r, body, known) == -1)
		goto out;
	source = json_string_value(json_object_get(body, "source"));
	if (source == NULL || (strcmp(source, "etalab") != 0 &&
	    strcmp(source, "etalab-epci") != 0 && strcmp(source, "csv") != 0)) {
		api_reply_error(r, 400, "bad_field", "source must be etalab, "
		    "etalab-epci or csv");
		goto out;
	}
	recs = json_object_get(body, "records");
	if (!json_is_array(recs) || json_array_size(recs) > 200000) {
		api_reply_error(r, 400, "bad_field", "records must be a list "
		    "of at most 200000 members");
		goto out;
	}
	if (store_begin(ctl->db) == -1) {
		api_reply_error(r, 503, "busy", "the database is busy");
		goto out;
	}
	json_array_foreach(recs, i, rec) {
		if (import_one(rec, i, &n, &id, &cause) == -1 ||
		    import_members(rec, i, id, &n, &cause) == -1) {
			store_rollback(ctl->db);
			api_reply_error(r, 400, "bad_record", "%s (nothing was "
			    "imported)", cause);
			goto out;
		}
	}
	if (n.created + n.updated + n.linked > 0 && (audit_record(r,
	    "tenant.import", "tenants", json_pack("{s:s,s:I,s:I,s:I,s:I,s:I}",
	    "source", source, "records", (json_int_t)json_array_size(recs),
	    "created", (json_int_t)n.created, "updated",
	    (json_int_t)n.updated, "unchanged", (json_int_t)n.unchanged,
	    "linked", (json_int_t)n.linked)) == -1 ||
	    store_commit(ctl->db) == -1)) {
		store_rollback(ctl->db);
		api_reply_error(r, 500, "internal", "the import failed to "
		    "commit");
		goto out;
	}
	/* Nothing changed: nothing to commit, and no audit record. */
	store_rollback(ctl->db);
	log_info("import: %s imported %zu %s records: %lld created, %lld "
	    "updated, %lld unchanged, %lld linked", api_principal(r)->ap_name,
	    json_array_size(recs), source, (long long)n.created,
	    (long long)n.updated, (long long)n.unchanged, (long long)n.linked);
	api_reply_json(r, 200, json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "total",
	    (json_int_t)json_array_size(recs), "created",
	    (json_int_t)n.created, "updated", (json_int_t)n.updated,
	    "unchanged", (json_int_t)n.unchanged, "linked",
	    (json_int_t)n.linked, "missing_members", (json_int_t)n.missing));
out:
	free(cause);
	json_decref(body);
}
