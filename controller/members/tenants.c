/*
 * Tenants: the OPSN's members (communes, EPCIs, syndicats, departments,
 * others) with their INSEE code, SIREN, population, parent EPCI, status
 * and quotas, and what a titre de recettes needs of its debtor (SIRET,
 * postal address, accounting category). Named everywhere by id, INSEE code or SIREN. Updates carry
 * an ETag (the row's version) so two operators never silently overwrite
 * each other. Imports (Etalab, CSV) are idempotent and all-or-nothing.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "members.h"
#include "tenants.h"

#define TENANT_NAME_MAX	200
#define TENANT_ADDRESS_MAX 100	/* a street line or a town */
#define IMPORT_MAX_BODY	((size_t)64 << 20)

static const char *const tenant_kinds[] = {
	"commune", "epci", "syndicat", "department", "other", NULL
};

/* Accounting categories, and the one each kind gets unless told. */
static const struct {
	const char	*kind;
	const char	*category;
} tenant_categories[] = {
	{ "commune",	"commune" },
	{ "epci",	"groupement" },
	{ "syndicat",	"groupement" },
	{ "department",	"department" },
	{ "other",	"other" },
	{ NULL,		"ccas" },
	{ NULL,		"region" },
};

/* INSEE commune code: 2 digits (or 2A/2B for Corsica) then 3 digits. */
int
tenants_insee_ok(const char *s)
{
	size_t	 i;

	if (strlen(s) != 5)
		return (0);
	if (!(isdigit((unsigned char)s[0]) && (isdigit((unsigned char)s[1]) ||
	    (s[0] == '2' && (s[1] == 'A' || s[1] == 'B')))))
		return (0);
	for (i = 2; i < 5; i++)
		if (!isdigit((unsigned char)s[i]))
			return (0);
	return (1);
}

/*
 * Is s made of n digits whose Luhn sum is a multiple of 10? *sum gets the
 * plain sum of the digits.
 */
static int
tenants_luhn(const char *s, size_t n, int *sum)
{
	size_t	 i;
	int	 d, luhn = 0;

	*sum = 0;
	if (s == NULL || strlen(s) != n)
		return (0);
	for (i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return (0);
		d = s[i] - '0';
		*sum += d;
		/* From the right, every second digit is doubled. */
		if ((n - 1 - i) % 2 == 1) {
			d *= 2;
			if (d > 9)
				d -= 9;
		}
		luhn += d;
	}
	return (luhn % 10 == 0);
}

/* SIREN: 9 digits whose Luhn sum is a multiple of 10. */
int
tenants_siren_ok(const char *s)
{
	int	 sum;

	return (tenants_luhn(s, 9, &sum));
}

/*
 * SIRET: 14 digits (SIREN and NIC) whose Luhn sum is a multiple of 10, or
 * for an establishment of La Poste (SIREN 356000000, INSEE's documented
 * exception: its head office passes Luhn, the others do not), whose
 * digits add up to a multiple of 5.
 */
int
tenants_siret_ok(const char *s)
{
	int	 sum;

	if (tenants_luhn(s, 14, &sum))
		return (1);
	return (s != NULL && strlen(s) == 14 && strncmp(s, "356000000", 9) ==
	    0 && strspn(s, "0123456789") == 14 && sum % 5 == 0);
}

/* The accounting category of a member: the one set, else its kind's. */
const char *
tenants_category(const char *kind, const char *set)
{
	size_t	 i;

	if (set != NULL)
		return (set);
	for (i = 0; i < nitems(tenant_categories); i++)
		if (tenant_categories[i].kind != NULL && kind != NULL &&
		    strcmp(tenant_categories[i].kind, kind) == 0)
			return (tenant_categories[i].category);
	return ("other");
}

static int
tenants_category_ok(const char *s)
{
	size_t	 i;

	for (i = 0; i < nitems(tenant_categories); i++)
		if (strcmp(tenant_categories[i].category, s) == 0)
			return (1);
	return (0);
}

static int
tenants_postcode_ok(const char *s)
{
	return (strlen(s) == 5 && strspn(s, "0123456789") == 5);
}

static int
tenants_address_ok(const char *s)
{
	return (tenants_text_ok(s, TENANT_ADDRESS_MAX));
}

/*
 * A display name: printable UTF-8 without control characters. A '/' is
 * allowed: real EPCIs have one ("CC Castillon/Pujols"); names that become
 * identifiers (VMs, plans, nodes) refuse it.
 */
int
tenants_text_ok(const char *s, size_t max)
{
	size_t	 len = strlen(s);
	const unsigned char *p;

	if (len == 0 || len > max)
		return (0);
	for (p = (const unsigned char *)s; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f)
			return (0);
	return (1);
}

static int
tenants_email_ok(const char *s)
{
	const char	*at = strchr(s, '@');

	return (strlen(s) <= 254 && at != NULL && at != s &&
	    strchr(at + 1, '.') != NULL && strchr(at + 1, '@') == NULL &&
	    strpbrk(s, " \t\r\n<>\"',;") == NULL && at[1] != '.');
}

static int
tenants_date_ok(const char *s)
{
	int	 y, m, d;
	char	 tail;

	if (strlen(s) != 10 || sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d,
	    &tail) != 3)
		return (0);
	return (y >= 1900 && y <= 2200 && m >= 1 && m <= 12 && d >= 1 &&
	    d <= 31);
}

static int
tenants_kind_ok(const char *s)
{
	const char *const *k;

	for (k = tenant_kinds; *k != NULL; k++)
		if (strcmp(*k, s) == 0)
			return (1);
	return (0);
}

/* The tenant whose id is the decimal ref; -1 if none. */
static int64_t
tenants_by_id(const char *ref)
{
	sqlite3_stmt	*st;
	int64_t		 id = -1;
	size_t		 len = strlen(ref);

	if (len == 0 || len > 18 || strspn(ref, "0123456789") != len)
		return (-1);
	st = store_prepare(ctl->db, "SELECT id FROM tenants WHERE id = ?");
	sqlite3_bind_text(st, 1, ref, -1, SQLITE_STATIC);
	if (store_step(st) == SQLITE_ROW)
		id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return (id);
}

/*
 * The tenant a reference names: a SIREN (9 digits), an INSEE code (a
 * commune), an id, or "id:N" (an id, never taken for a code). -1 if none.
 */
int64_t
tenants_resolve(const char *ref)
{
	sqlite3_stmt	*st;
	int64_t		 id = -1;
	size_t		 len, i;
	int		 digits;

	if (strncmp(ref, "id:", 3) == 0)
		return (tenants_by_id(ref + 3));
	len = strlen(ref);
	digits = len > 0;
	for (i = 0; i < len; i++)
		if (!isdigit((unsigned char)ref[i]))
			digits = 0;
	if (digits && len == 9)
		st = store_prepare(ctl->db, "SELECT id FROM tenants WHERE "
		    "siren = ?");
	else if (tenants_insee_ok(ref))
		st = store_prepare(ctl->db, "SELECT id FROM tenants WHERE "
		    "insee = ? AND kind = 'commune'");
	else
		return (tenants_by_id(ref));
	sqlite3_bind_text(st, 1, ref, -1, SQLITE_STATIC);
	if (store_step(st) == SQLITE_ROW)
		id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	/* A 5-digit reference that is no commune's INSEE code may be an id. */
	if (id == -1 && digits && len == 5)
		id = tenants_by_id(ref);
	return (id);
}

/*
 * Resolve the {tenant} of a path, hiding other tenants from a token
 * scoped to one; -1 after replying 404.
 */
int64_t
tenants_from_path(struct api_req *r, const char *ref)
{
	const struct api_principal *p = api_principal(r);
	int64_t		 id = tenants_resolve(ref);

	if (id == -1 || (p != NULL && p->ap_tenant != 0 && p->ap_tenant != id)) {
		api_reply_error(r, 404, "not_found", "no tenant '%s' (use its "
		    "id, INSEE code or SIREN)", ref);
		return (-1);
	}
	return (id);
}

#define TENANTS_COLS "t.id, t.kind, t.name, t.insee, t.siren, t.population, " \
	"t.parent_id, p.name, p.siren, t.status, t.joined_on, t.left_on, " \
	"t.email, t.quota_vcpus, t.quota_memory_mib, t.quota_disk_bytes, " \
	"t.quota_vms, t.version, t.created_at, t.updated_at, t.siret, " \
	"t.address, t.postcode, t.town, t.accounting_category"
#define TENANTS_FROM " FROM tenants t LEFT JOIN tenants p ON p.id = t.parent_id "

/* A tenant as JSON, from the columns of TENANTS_COLS. */
static const struct jsonw_field tenants_fields[] = {
	{ "id", JW_INT, 0 },
	{ "kind", JW_TEXT, 1 },
	{ "name", JW_TEXT, 2 },
	{ "insee", JW_TEXT, 3 },
	{ "siren", JW_TEXT, 4 },
	{ "population", JW_INT, 5 },
	{ "parent", JW_OBJ_IF, 6 },
	{ "id", JW_INT, 6 },
	{ "name", JW_TEXT, 7 },
	{ "siren", JW_TEXT, 8 },
	{ NULL, JW_END, 0 },
	{ "status", JW_TEXT, 9 },
	{ "joined_on", JW_TEXT, 10 },
	{ "left_on", JW_TEXT, 11 },
	{ "email", JW_TEXT, 12 },
	{ "quotas", JW_OBJ, 0 },
	{ "vcpus", JW_INT, 13 },
	{ "memory_mib", JW_INT, 14 },
	{ "disk_bytes", JW_INT, 15 },
	{ "vms", JW_INT, 16 },
	{ NULL, JW_END, 0 },
	{ "version", JW_INT, 17 },
	{ "created_at", JW_TIME, 18 },
	{ "updated_at", JW_TIME, 19 },
	{ "siret", JW_TEXT, 20 },
	{ "address", JW_TEXT, 21 },
	{ "postcode", JW_TEXT, 22 },
	{ "town", JW_TEXT, 23 },
};

static void
tenants_row_write(struct jsonw *w, sqlite3_stmt *st)
{
	jsonw_obj(w);
	jsonw_row(w, st, tenants_fields, nitems(tenants_fields));
	jsonw_key(w, "accounting_category");
	jsonw_str(w, tenants_category((const char *)sqlite3_column_text(st, 1),
	    (const char *)sqlite3_column_text(st, 24)));
	jsonw_key(w, "accounting_category_set");
	jsonw_bool(w, sqlite3_column_type(st, 24) != SQLITE_NULL);
	jsonw_obj_end(w);
}

/* JSON of tenant id (NULL if none), with its current use of resources. */
json_t *
tenants_json(int64_t id)
{
	sqlite3_stmt	*st;
	json_t		*o = NULL;

	struct jsonw	 w;

	memset(&w, 0, sizeof(w));
	st = store_stmt(ctl->db, "SELECT " TENANTS_COLS TENANTS_FROM
	    "WHERE t.id = ?");
	sqlite3_bind_int64(st, 1, id);
	if (store_step(st) == SQLITE_ROW) {
		tenants_row_write(&w, st);
		o = jsonw_load(&w);
	}
	store_done(st);
	if (o == NULL)
		return (NULL);
	st = store_stmt(ctl->db, "SELECT coalesce(sum(vcpus), 0), "
	    "coalesce(sum(memory_mib), 0), coalesce(sum(disk_bytes), 0), "
	    "count(*) FROM vms WHERE tenant_id = ? AND desired != 'deleted'");
	sqlite3_bind_int64(st, 1, id);
	if (store_step(st) == SQLITE_ROW)
		json_object_set_new(o, "usage", json_pack("{s:I,s:I,s:I,s:I}",
		    "vcpus", (json_int_t)sqlite3_column_int64(st, 0),
		    "memory_mib", (json_int_t)sqlite3_column_int64(st, 1),
		    "disk_bytes", (json_int_t)sqlite3_column_int64(st, 2),
		    "vms", (json_int_t)sqlite3_column_int64(st, 3)));
	store_done(st);
	return (o);
}

static void
tenants_reply(struct api_req *r, int status, int64_t id)
{
	json_t	*o = tenants_json(id);
	char	 etag[32];

	snprintf(etag, sizeof(etag), "\"%lld\"", (long long)
	    json_integer_value(json_object_get(o, "version")));
	api_set_header(r, "ETag", etag);
	api_reply_json(r, status, o);
}

/*
 * The If-Match precondition against the row's version: 0 to go on, -1
 * after replying 412. No If-Match: go on (the CLI always sends one).
 */
static int
tenants_if_match(struct api_req *r, int64_t id)
{
	const char	*im = api_header(r, "if-match");
	sqlite3_stmt	*st;
	char		 etag[32];
	int64_t		 version = 0;

	if (im == NULL || strcmp(im, "*") == 0)
		return (0);
	st = store_prepare(ctl->db, "SELECT version FROM tenants WHERE id = ?");
	sqlite3_bind_int64(st, 1, id);
	if (store_step(st) == SQLITE_ROW)
		version = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	snprintf(etag, sizeof(etag), "\"%lld\"", (long long)version);
	if (strcmp(im, etag) != 0 && strncmp(im, "W/", 2) != 0) {
		api_reply_error(r, 412, "stale", "tenant changed since you read "
		    "it (If-Match %s, current ETag %s): read it again", im,
		    etag);
		return (-1);
	}
	if (strncmp(im, "W/", 2) == 0 && strcmp(im + 2, etag) != 0) {
		api_reply_error(r, 412, "stale", "tenant changed since you read "
		    "it (current ETag %s)", etag);
		return (-1);
	}
	return (0);
}

/*
 * The fields a tenant has, checked one by one. For a create, kind and name
 * are required; an update changes only what it names. -1 after replying.
 */
struct tenant_in {
	const char	*kind, *name, *insee, *siren, *email, *joined, *left;
	int		 has_pop, has_parent, has_email, has_insee, has_siren;
	int64_t		 population, parent;
	int		 has_q[4];
	int64_t		 q[4];		/* -1: no limit */
	/* The debtor's fields (acc_fields), NULL to clear. */
	int		 has_acc[TENANT_NACC];
	const char	*acc[TENANT_NACC];
};

static const char *const quota_fields[4] = {
	"quota_vcpus", "quota_memory_mib", "quota_disk_bytes", "quota_vms"
};

/* What a titre needs of its debtor: text fields, null to clear. */
static const struct {
	const char	*name;
	int		(*ok)(const char *);
	const char	*rule;
} acc_fields[TENANT_NACC] = {
	{ "siret", tenants_siret_ok, "siret must be 14 digits (the SIREN and "
	  "the NIC of the establishment billed) with a valid check digit" },
	{ "address", tenants_address_ok, "address must be 1 to 100 "
	  "characters: the street line (number and street)" },
	{ "postcode", tenants_postcode_ok, "postcode must be 5 digits" },
	{ "town", tenants_address_ok, "town must be 1 to 100 characters" },
	{ "accounting_category", tenants_category_ok, "accounting_category "
	  "must be commune, groupement, ccas, department, region or other" },
};

/* The name of the debtor's field i. */
const char *
tenants_acc_name(size_t i)
{
	return (acc_fields[i].name);
}

/* Is v a valid value of the debtor's field i? Else *rule says why. */
int
tenants_acc_ok(size_t i, const char *v, const char **rule)
{
	*rule = acc_fields[i].rule;
	return (acc_fields[i].ok(v));
}

static int
tenants_parse(struct api_req *r, json_t *body, int create,
    struct tenant_in *in)
{
	static const char *const known[] = { "kind", "name", "insee", "siren",
	    "population", "parent", "email", "joined_on", "left_on",
	    "quota_vcpus", "quota_memory_mib", "quota_disk_bytes", "quota_vms",
	    "siret", "address", "postcode", "town", "accounting_category",
	    NULL };
	json_t	*v;
	int	 i;

	memset(in, 0, sizeof(*in));
	if (params_known_fields(r, body, known) == -1)
		return (-1);
	if ((v = json_object_get(body, "kind")) != NULL || create) {
		if (!create) {
			api_reply_error(r, 400, "bad_field", "kind cannot be "
			    "changed");
			return (-1);
		}
		if (!json_is_string(v) || !tenants_kind_ok(json_string_value(v))) {
			api_reply_error(r, 400, "bad_field", "kind must be "
			    "commune, epci, syndicat, department or other");
			return (-1);
		}
		in->kind = json_string_value(v);
	}
	if ((v = json_object_get(body, "name")) != NULL || create) {
		if (!json_is_string(v) || !tenants_text_ok(json_string_value(v),
		    TENANT_NAME_MAX)) {
			api_reply_error(r, 400, "bad_field", "name must be 1 to "
			    "%d characters without control characters",
			    TENANT_NAME_MAX);
			return (-1);
		}
		in->name = json_string_value(v);
	}
	if ((v = json_object_get(body, "insee")) != NULL) {
		in->has_insee = 1;
		if (!json_is_null(v) && (!json_is_string(v) ||
		    !tenants_insee_ok(json_string_value(v)))) {
			api_reply_error(r, 400, "bad_field", "insee must be a "
			    "5-character INSEE code such as 31001 or 2A004");
			return (-1);
		}
		in->insee = json_is_null(v) ? NULL : json_string_value(v);
	}
	if ((v = json_object_get(body, "siren")) != NULL) {
		in->has_siren = 1;
		if (!json_is_null(v) && (!json_is_string(v) ||
		    !tenants_siren_ok(json_string_value(v)))) {
			api_reply_error(r, 400, "bad_field", "siren must be 9 "
			    "digits with a valid check digit (Luhn)");
			return (-1);
		}
		in->siren = json_is_null(v) ? NULL : json_string_value(v);
	}
	if ((v = json_object_get(body, "population")) != NULL) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > 100000000) {
			api_reply_error(r, 400, "bad_field", "population must be "
			    "a whole number from 0 to 100000000");
			return (-1);
		}
		in->has_pop = 1;
		in->population = json_integer_value(v);
	}
	if ((v = json_object_get(body, "parent")) != NULL) {
		in->has_parent = 1;
		in->parent = 0;
		if (!json_is_null(v)) {
			if (!json_is_string(v) || (in->parent =
			    tenants_resolve(json_string_value(v))) == -1) {
				api_reply_error(r, 400, "bad_field", "parent: "
				    "no tenant '%.64s'", json_is_string(v) ?
				    json_string_value(v) : "?");
				return (-1);
			}
		}
	}
	if ((v = json_object_get(body, "email")) != NULL) {
		in->has_email = 1;
		if (!json_is_null(v) && (!json_is_string(v) ||
		    !tenants_email_ok(json_string_value(v)))) {
			api_reply_error(r, 400, "bad_field", "email must be an "
			    "address such as mairie@agassac.fr");
			return (-1);
		}
		in->email = json_is_null(v) ? NULL : json_string_value(v);
	}
	if ((v = json_object_get(body, "joined_on")) != NULL) {
		if (!json_is_string(v) || !tenants_date_ok(json_string_value(v))) {
			api_reply_error(r, 400, "bad_field", "joined_on must be "
			    "a date YYYY-MM-DD");
			return (-1);
		}
		in->joined = json_string_value(v);
	}
	if ((v = json_object_get(body, "left_on")) != NULL) {
		if (!json_is_string(v) || !tenants_date_ok(json_string_value(v))) {
			api_reply_error(r, 400, "bad_field", "left_on must be a "
			    "date YYYY-MM-DD");
			return (-1);
		}
		in->left = json_string_value(v);
	}
	for (i = 0; i < 4; i++) {
		if ((v = json_object_get(body, quota_fields[i])) == NULL)
			continue;
		in->has_q[i] = 1;
		if (json_is_null(v)) {
			in->q[i] = -1;
			continue;
		}
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > ((json_int_t)1 << 50)) {
			api_reply_error(r, 400, "bad_field", "%s must be a whole "
			    "number (0 or more), or null for no limit",
			    quota_fields[i]);
			return (-1);
		}
		in->q[i] = json_integer_value(v);
	}
	for (i = 0; i < TENANT_NACC; i++) {
		if ((v = json_object_get(body, acc_fields[i].name)) == NULL)
			continue;
		in->has_acc[i] = 1;
		if (json_is_null(v))
			continue;
		if (!json_is_string(v) || !acc_fields[i].ok(
		    json_string_value(v))) {
			api_reply_error(r, 400, "bad_field", "%s",
			    acc_fields[i].rule);
			return (-1);
		}
		in->acc[i] = json_string_value(v);
	}
	return (0);
}

/* Cross-field rules that need the database; -1 after replying. */
static int
tenants_check(struct api_req *r, int64_t self, const char *kind,
    const struct tenant_in *in)
{
	sqlite3_stmt	*st;
	int		 clash;

	if (strcmp(kind, "commune") == 0 && in->has_insee && in->insee == NULL) {
		api_reply_error(r, 400, "bad_field", "a commune needs its INSEE "
		    "code");
		return (-1);
	}
	if (in->has_parent && in->parent > 0) {
		if (in->parent == self) {
			api_reply_error(r, 400, "bad_field", "a tenant cannot be "
			    "its own parent");
			return (-1);
		}
		st = store_prepare(ctl->db, "SELECT kind FROM tenants WHERE "
		    "id = ?");
		sqlite3_bind_int64(st, 1, in->parent);
		clash = store_step(st) != SQLITE_ROW || strcmp((const char *)
		    sqlite3_column_text(st, 0), "epci") != 0;
		sqlite3_finalize(st);
		if (clash) {
			api_reply_error(r, 400, "bad_field", "parent must be an "
			    "EPCI");
			return (-1);
		}
	}
	if (in->has_siren && in->siren != NULL) {
		st = store_prepare(ctl->db, "SELECT 1 FROM tenants WHERE "
		    "siren = ? AND id != ?");
		sqlite3_bind_text(st, 1, in->siren, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, self);
		clash = store_step(st) == SQLITE_ROW;
		sqlite3_finalize(st);
		if (clash) {
			api_reply_error(r, 409, "exists", "another tenant has "
			    "SIREN %s", in->siren);
			return (-1);
		}
	}
	if (in->has_insee && in->insee != NULL && strcmp(kind, "commune") == 0) {
		st = store_prepare(ctl->db, "SELECT 1 FROM tenants WHERE "
		    "insee = ? AND kind = 'commune' AND id != ?");
		sqlite3_bind_text(st, 1, in->insee, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, self);
		clash = store_step(st) == SQLITE_ROW;
		sqlite3_finalize(st);
		if (clash) {
			api_reply_error(r, 409, "exists", "another commune has "
			    "INSEE code %s", in->insee);
			return (-1);
		}
	}
	return (0);
}

static void
tenants_bind_opt(sqlite3_stmt *st, int i, const char *s)
{
	if (s != NULL)
		sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

static json_t *
tenants_summary(json_t *body)
{
	/* Tenant fields hold no secret: the summary is what was asked. */
	return (json_deep_copy(body));
}

/* POST /v1/tenants */
void
tenants_create(struct api_req *r)
{
	struct tenant_in in;
	json_t		*body;
	sqlite3_stmt	*st;
	int64_t		 id, now = util_now();
	char		 obj[64];
	int		 i;

	if ((body = api_body_json(r)) == NULL)
		return;
	if (tenants_parse(r, body, 1, &in) == -1 ||
	    tenants_check(r, 0, in.kind, &in) == -1)
		goto out;
	if (strcmp(in.kind, "commune") == 0 && in.insee == NULL) {
		api_reply_error(r, 400, "missing_field", "a commune needs its "
		    "INSEE code (insee)");
		goto out;
	}
	if (store_begin(ctl->db) == -1) {
		api_reply_error(r, 503, "busy", "the database is busy");
		goto out;
	}
	st = store_prepare(ctl->db, "INSERT INTO tenants (kind, name, insee, "
	    "siren, population, parent_id, email, joined_on, left_on, "
	    "quota_vcpus, quota_memory_mib, quota_disk_bytes, quota_vms, "
	    "created_at, updated_at, siret, address, postcode, town, "
	    "accounting_category) VALUES (?, ?, ?, ?, ?, ?, ?, "
	    "coalesce(?, date('now')), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
	    "RETURNING id");
	sqlite3_bind_text(st, 1, in.kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, in.name, -1, SQLITE_STATIC);
	tenants_bind_opt(st, 3, in.insee);
	tenants_bind_opt(st, 4, in.siren);
	sqlite3_bind_int64(st, 5, in.population);
	if (in.parent > 0)
		sqlite3_bind_int64(st, 6, in.parent);
	tenants_bind_opt(st, 7, in.email);
	tenants_bind_opt(st, 8, in.joined);
	tenants_bind_opt(st, 9, in.left);
	for (i = 0; i < 4; i++)
		if (in.has_q[i] && in.q[i] >= 0)
			sqlite3_bind_int64(st, 10 + i, in.q[i]);
	sqlite3_bind_int64(st, 14, now);
	sqlite3_bind_int64(st, 15, now);
	for (i = 0; i < TENANT_NACC; i++)
		tenants_bind_opt(st, 16 + i, in.acc[i]);
	if (store_step(st) != SQLITE_ROW) {
		log_warnx("tenants: %s", sqlite3_errmsg(ctl->db));
		sqlite3_finalize(st);
		store_rollback(ctl->db);
		api_reply_error(r, 409, "exists", "the tenant clashes with "
		    "another (INSEE code or SIREN)");
		goto out;
	}
	id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	snprintf(obj, sizeof(obj), "tenant/%lld", (long long)id);
	if (audit_record(r, "tenant.create", obj, tenants_summary(body)) == -1 ||
	    store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		api_reply_error(r, 500, "internal", "storing the tenant failed");
		goto out;
	}
	tenants_reply(r, 201, id);
out:
	json_decref(body);
}

/*
 * A name folded for search: lower case, French accents and ligatures
 * dropped (É -> e, œ -> oe), hyphens and apostrophes as spaces, so that
 * "saint etienne" finds Saint-Étienne. Only Latin-1's letters and the
 * ligatures are mapped; other characters are kept as they are.
 */
size_t
tenants_fold(const char *in, char *out, size_t len)
{
	/* U+00C0..U+00FF, "" where nothing fits (×, ÷). */
	static const char *const latin1[64] = {
		"a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e",
		"i", "i", "i", "i", "d", "n", "o", "o", "o", "o", "o", "",
		"o", "u", "u", "u", "u", "y", "th", "ss",
		"a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e",
		"i", "i", "i", "i", "d", "n", "o", "o", "o", "o", "o", "",
		"o", "u", "u", "u", "u", "y", "th", "y",
	};
	const unsigned char *p = (const unsigned char *)in;
	const char	*rep;
	char		 one[2] = { 0, 0 };
	size_t		 n = 0, k;

	while (*p != '\0') {
		rep = NULL;
		if (p[0] == 0xc3 && p[1] >= 0x80 && p[1] <= 0xbf) {
			rep = latin1[p[1] - 0x80];
			p += 2;
		} else if (p[0] == 0xc5 && (p[1] == 0x92 || p[1] == 0x93)) {
			rep = "oe";
			p += 2;
		} else if (p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0x98 ||
		    p[2] == 0x99)) {
			rep = " ";
			p += 3;
		} else {
			one[0] = (char)(*p == '-' || *p == '\'' ? ' ' :
			    (*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
			rep = one;
			p++;
		}
		for (k = 0; rep[k] != '\0'; k++)
			if (n + 1 < len)
				out[n++] = rep[k];
	}
	if (len > 0)
		out[n] = '\0';
	return (n);
}

static void
tenants_fold_sql(sqlite3_context *cx, int argc, sqlite3_value **argv)
{
	const unsigned char *s = sqlite3_value_text(argv[0]);
	char		 buf[512];

	(void)argc;
	if (s == NULL) {
		sqlite3_result_null(cx);
		return;
	}
	tenants_fold((const char *)s, buf, sizeof(buf));
	sqlite3_result_text(cx, buf, -1, SQLITE_TRANSIENT);
}

/*
 * The last pages of GET /v1/tenants as sent, by their parameters, kept
 * while no row of tenants changed (tenants_changes, counted by the store)
 * and no other connection wrote to the database (an operator's sqlite3):
 * a console or a finance tool walks the same pages again and again. A
 * page of 100 members costs about 250 us to write from its rows, a kept
 * one a copy. Replaced in turn.
 */
#define TENANTS_PAGES	32
static struct tenants_page {
	uint64_t	 tp_changes;
	int64_t		 tp_dv;		/* PRAGMA data_version */
	char		*tp_key;
	char		*tp_body;
	size_t		 tp_len;
}		 tenants_pages[TENANTS_PAGES];
static size_t	 tenants_page_next;
static uint64_t	 tenants_changes = 1;

static struct tenants_page *
tenants_page_find(const char *key, int64_t dv)
{
	size_t	 i;

	for (i = 0; i < TENANTS_PAGES; i++)
		if (tenants_pages[i].tp_key != NULL &&
		    tenants_pages[i].tp_changes == tenants_changes &&
		    tenants_pages[i].tp_dv == dv &&
		    strcmp(tenants_pages[i].tp_key, key) == 0)
			return (&tenants_pages[i]);
	return (NULL);
}

/* Keep a page (key and body are taken). */
static void
tenants_page_keep(char *key, int64_t dv, char *body, size_t len)
{
	struct tenants_page *p = &tenants_pages[tenants_page_next];

	tenants_page_next = (tenants_page_next + 1) % TENANTS_PAGES;
	free(p->tp_key);
	free(p->tp_body);
	p->tp_changes = tenants_changes;
	p->tp_dv = dv;
	p->tp_key = key;
	p->tp_body = body;
	p->tp_len = len;
}

/* A page's parameters as one string ("-" for one not given). */
static char *
tenants_page_key(struct api_req *r)
{
	static const char *const names[] = { "limit", "cursor", "kind",
	    "status", "parent", "tenant", "q" };
	const char	*v;
	char		*key = xstrdup(""), *k;
	size_t		 i;

	for (i = 0; i < nitems(names); i++) {
		v = api_query(r, names[i]);
		xasprintf(&k, "%s%s%s\n", key, v != NULL ? "=" : "-",
		    v != NULL ? v : "");
		free(key);
		key = k;
	}
	return (key);
}

/* The search's SQL function, on the loop's connection. */
int
tenants_init(struct ctl *c, char **cause)
{
	if (sqlite3_create_function(c->db, "opsn_fold", 1, SQLITE_UTF8 |
	    SQLITE_DETERMINISTIC, NULL, tenants_fold_sql, NULL, NULL) !=
	    SQLITE_OK) {
		xasprintf(cause, "opsn_fold: %s", sqlite3_errmsg(c->db));
		return (-1);
	}
	store_table_watch(c->db, "tenants", &tenants_changes);
	return (0);
}

/* GET /v1/tenants?q=&kind=&status=&parent=&limit=&cursor= */
void
tenants_list(struct api_req *r)
{
	struct tenants_page *kept;
	char		*key, *body;
	size_t		 len;
	int64_t		 dv;
	int		 rc;
	sqlite3_stmt	*st;
	const char	*kind = api_query(r, "kind");
	const char	*status = api_query(r, "status");
	const char	*parent = api_query(r, "parent");
	const char	*one = api_query(r, "tenant");
	const char	*q = api_query(r, "q");
	int64_t		 pid = 0, id = 0, after;
	char		*sql, next[24], code[16] = "", name[256] = "", *o;
	const char	*c;
	int		 limit, n = 0;
	struct jsonw	 w;

	if (params_page_id(r, &limit, &after) == -1)
		return;
	if (kind != NULL && !tenants_kind_ok(kind)) {
		api_reply_error(r, 400, "bad_parameter", "kind must be commune, "
		    "epci, syndicat, department or other");
		return;
	}
	if (status != NULL && strcmp(status, "active") != 0 &&
	    strcmp(status, "suspended") != 0 && strcmp(status, "withdrawn")) {
		api_reply_error(r, 400, "bad_parameter", "status must be "
		    "active, suspended or withdrawn");
		return;
	}
	if (parent != NULL && (pid = tenants_resolve(parent)) == -1) {
		api_reply_error(r, 400, "bad_parameter", "parent: no tenant "
		    "'%.64s'", parent);
		return;
	}
	/* One member only: what a token bound to it lists. */
	if (one != NULL && (id = tenants_resolve(one)) == -1) {
		api_reply_error(r, 404, "not_found", "no tenant '%.64s'", one);
		return;
	}
	/*
	 * q: the start of an INSEE code or a SIREN (digits, or 2A/2B for
	 * Corsica), else a part of the name, folded (see tenants_fold).
	 */
	if (q != NULL && strlen(q) > 100) {
		api_reply_error(r, 400, "bad_parameter", "q is at most 100 "
		    "bytes");
		return;
	}
	if (q != NULL && *q != '\0') {
		for (c = q; *c != '\0' && (isdigit((unsigned char)*c) ||
		    (c == q + 1 && q[0] == '2' && (*c == 'A' || *c == 'B' ||
		    *c == 'a' || *c == 'b'))); c++)
			continue;
		if (*c == '\0' && strlen(q) <= 9) {
			strlcpy(code, q, sizeof(code));
			code[1] = (char)toupper((unsigned char)code[1]);
		} else {
			/* LIKE's own characters are escaped with '\'. */
			tenants_fold(q, name, sizeof(name) / 2);
			for (o = name + strlen(name); o >= name; o--)
				if (*o == '%' || *o == '_' || *o == '\\') {
					memmove(o + 1, o, strlen(o) + 1);
					*o = '\\';
				}
		}
	}
	/*
	 * Only the filters asked for are in the SQL, so that the index of
	 * the one that narrows (kind, status, parent) serves the page in id
	 * order: no row outside the page is read.
	 */
	key = tenants_page_key(r);
	dv = store_data_version(ctl->db);
	if ((kept = tenants_page_find(key, dv)) != NULL) {
		free(key);
		api_reply_raw(r, 200, "application/json", kept->tp_body,
		    kept->tp_len);
		return;
	}
	xasprintf(&sql, "SELECT " TENANTS_COLS TENANTS_FROM "WHERE t.id > ?1"
	    "%s%s%s%s%s%s ORDER BY t.id LIMIT ?6", kind ? " AND t.kind = ?2" :
	    "", status ? " AND t.status = ?3" : "", pid ? " AND t.parent_id = "
	    "?4" : "", id ? " AND t.id = ?5" : "", code[0] != '\0' ? " AND "
	    "(t.insee LIKE ?7 || '%' OR t.siren LIKE ?7 || '%')" : "",
	    name[0] != '\0' ? " AND opsn_fold(t.name) LIKE '%' || ?8 || '%' "
	    "ESCAPE '\\'" : "");
	st = store_stmt(ctl->db, sql);
	free(sql);
	sqlite3_bind_int64(st, 1, after);
	if (kind != NULL)
		sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
	if (status != NULL)
		sqlite3_bind_text(st, 3, status, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, pid);
	sqlite3_bind_int64(st, 5, id);
	/* One row past the page says whether there is a next one. */
	sqlite3_bind_int(st, 6, limit + 1);
	if (code[0] != '\0')
		sqlite3_bind_text(st, 7, code, -1, SQLITE_STATIC);
	if (name[0] != '\0')
		sqlite3_bind_text(st, 8, name, -1, SQLITE_STATIC);
	params_page_open(&w);
	while ((rc = store_step(st)) == SQLITE_ROW) {
		if (n++ == limit) {
			snprintf(next, sizeof(next), "%lld", (long long)
			    sqlite3_column_int64(st, 0) - 1);
			break;
		}
		tenants_row_write(&w, st);
	}
	store_done(st);
	body = params_page_end(&w, n > limit ? next : NULL, &len);
	api_reply_raw(r, 200, "application/json", body, len);
	/* A page cut short by a failed read is not kept. */
	if (rc == SQLITE_ROW || rc == SQLITE_DONE)
		tenants_page_keep(key, dv, body, len);
	else {
		free(key);
		free(body);
	}
}

/* GET /v1/tenants/{tenant} */
void
tenants_get(struct api_req *r)
{
	int64_t	 id;

	if ((id = tenants_from_path(r, api_param(r, "tenant"))) == -1)
		return;
	tenants_reply(r, 200, id);
}

/* PATCH /v1/tenants/{tenant} (If-Match) */
void
tenants_update(struct api_req *r)
{
	struct tenant_in in;
	json_t		*body;
	sqlite3_stmt	*st;
	int64_t		 id;
	char		 obj[64], kind[16] = "";
	int		 i;

	if ((id = tenants_from_path(r, api_param(r, "tenant"))) == -1)
		return;
	if ((body = api_body_json(r)) == NULL)
		return;
	if (tenants_parse(r, body, 0, &in) == -1)
		goto out;
	st = store_prepare(ctl->db, "SELECT kind FROM tenants WHERE id = ?");
	sqlite3_bind_int64(st, 1, id);
	if (store_step(st) == SQLITE_ROW)
		strlcpy(kind, (const char *)sqlite3_column_text(st, 0),
		    sizeof(kind));
	sqlite3_finalize(st);
	if (tenants_check(r, id, kind, &in) == -1)
		goto out;
	if (store_begin(ctl->db) == -1) {
		api_reply_error(r, 503, "busy", "the database is busy");
		goto out;
	}
	if (tenants_if_match(r, id) == -1) {
		store_rollback(ctl->db);
		goto out;
	}
	/* One statement: each column keeps its value unless named. */
	st = store_prepare(ctl->db, "UPDATE tenants SET "
	    "name = coalesce(?1, name), "
	    "insee = CASE WHEN ?2 THEN ?3 ELSE insee END, "
	    "siren = CASE WHEN ?4 THEN ?5 ELSE siren END, "
	    "population = CASE WHEN ?6 THEN ?7 ELSE population END, "
	    "parent_id = CASE WHEN ?8 THEN nullif(?9, 0) ELSE parent_id END, "
	    "email = CASE WHEN ?10 THEN ?11 ELSE email END, "
	    "joined_on = coalesce(?12, joined_on), "
	    "left_on = coalesce(?13, left_on), "
	    "quota_vcpus = CASE WHEN ?14 THEN nullif(?15, -1) ELSE quota_vcpus END, "
	    "quota_memory_mib = CASE WHEN ?16 THEN nullif(?17, -1) ELSE "
	    "quota_memory_mib END, "
	    "quota_disk_bytes = CASE WHEN ?18 THEN nullif(?19, -1) ELSE "
	    "quota_disk_bytes END, "
	    "quota_vms = CASE WHEN ?20 THEN nullif(?21, -1) ELSE quota_vms END, "
	    "siret = CASE WHEN ?24 THEN ?25 ELSE siret END, "
	    "address = CASE WHEN ?26 THEN ?27 ELSE address END, "
	    "postcode = CASE WHEN ?28 THEN ?29 ELSE postcode END, "
	    "town = CASE WHEN ?30 THEN ?31 ELSE town END, "
	    "accounting_category = CASE WHEN ?32 THEN ?33 ELSE "
	    "accounting_category END, "
	    "version = version + 1, updated_at = ?22 WHERE id = ?23");
	tenants_bind_opt(st, 1, in.name);
	sqlite3_bind_int(st, 2, in.has_insee);
	tenants_bind_opt(st, 3, in.insee);
	sqlite3_bind_int(st, 4, in.has_siren);
	tenants_bind_opt(st, 5, in.siren);
	sqlite3_bind_int(st, 6, in.has_pop);
	sqlite3_bind_int64(st, 7, in.population);
	sqlite3_bind_int(st, 8, in.has_parent);
	sqlite3_bind_int64(st, 9, in.parent);
	sqlite3_bind_int(st, 10, in.has_email);
	tenants_bind_opt(st, 11, in.email);
	tenants_bind_opt(st, 12, in.joined);
	tenants_bind_opt(st, 13, in.left);
	for (i = 0; i < 4; i++) {
		sqlite3_bind_int(st, 14 + 2 * i, in.has_q[i]);
		sqlite3_bind_int64(st, 15 + 2 * i, in.q[i]);
	}
	sqlite3_bind_int64(st, 22, util_now());
	sqlite3_bind_int64(st, 23, id);
	for (i = 0; i < TENANT_NACC; i++) {
		sqlite3_bind_int(st, 24 + 2 * i, in.has_acc[i]);
		tenants_bind_opt(st, 25 + 2 * i, in.acc[i]);
	}
	if (store_step(st) != SQLITE_DONE) {
		log_warnx("tenants: %s", sqlite3_errmsg(ctl->db));
		sqlite3_finalize(st);
		store_rollback(ctl->db);
		api_reply_error(r, 409, "conflict", "the change clashes with "
		    "another tenant");
		goto out;
	}
	sqlite3_finalize(st);
	snprintf(obj, sizeof(obj), "tenant/%lld", (long long)id);
	if (audit_record(r, "tenant.update", obj, tenants_summary(body)) == -1 ||
	    store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		api_reply_error(r, 500, "internal", "storing the change failed");
		goto out;
	}
	tenants_reply(r, 200, id);
out:
	json_decref(body);
}

static void
tenants_set_status(struct api_req *r, const char *status)
{
	sqlite3_stmt	*st;
	int64_t		 id;
	char		 obj[64], cur[16] = "";

	if ((id = tenants_from_path(r, api_param(r, "tenant"))) == -1)
		return;
	st = store_prepare(ctl->db, "SELECT status FROM tenants WHERE id = ?");
	sqlite3_bind_int64(st, 1, id);
	if (store_step(st) == SQLITE_ROW)
		strlcpy(cur, (const char *)sqlite3_column_text(st, 0),
		    sizeof(cur));
	sqlite3_finalize(st);
	if (strcmp(cur, "withdrawn") == 0 && strcmp(status, "withdrawn") != 0) {
		api_reply_error(r, 409, "withdrawn", "tenant '%s' has withdrawn; "
		    "its history is kept but it cannot come back as is",
		    api_param(r, "tenant"));
		return;
	}
	if (store_begin(ctl->db) == -1) {
		api_reply_error(r, 503, "busy", "the database is busy");
		return;
	}
	if (tenants_if_match(r, id) == -1) {
		store_rollback(ctl->db);
		return;
	}
	st = store_prepare(ctl->db, "UPDATE tenants SET status = ?1, left_on = "
	    "CASE WHEN ?1 = 'withdrawn' THEN coalesce(left_on, date('now')) "
	    "ELSE left_on END, version = version + 1, updated_at = ?2 WHERE "
	    "id = ?3 AND status != ?1");
	sqlite3_bind_text(st, 1, status, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, util_now());
	sqlite3_bind_int64(st, 3, id);
	store_step(st);
	sqlite3_finalize(st);
	snprintf(obj, sizeof(obj), "tenant/%lld", (long long)id);
	if (sqlite3_changes(ctl->db) > 0 && (audit_record(r, "tenant.status",
	    obj, json_pack("{s:s,s:s}", "from", cur, "to", status)) == -1 ||
	    store_commit(ctl->db) == -1)) {
		store_rollback(ctl->db);
		api_reply_error(r, 500, "internal", "storing the change failed");
		return;
	}
	store_rollback(ctl->db);	/* no-op after a commit */
	tenants_reply(r, 200, id);
}

/* POST /v1/tenants/{tenant}/suspend */
void
tenants_suspend(struct api_req *r)
{
	tenants_set_status(r, "suspended");
}

/* POST /v1/tenants/{tenant}/withdraw */
void
tenants_withdraw(struct api_req *r)
{
	tenants_set_status(r, "withdrawn");
}

/* POST /v1/tenants/{tenant}/activate */
void
tenants_activate(struct api_req *r)
{
	tenants_set_status(r, "active");
}

/*
 * May tenant id get new services? 0, or -1 with the reason (withdrawn or
 * suspended members get none).
 */
int
tenants_may_grow(int64_t id, char **cause)
{
	sqlite3_stmt	*st;
	int		 rv = -1;

	st = store_prepare(ctl->db, "SELECT status, coalesce(insee, siren, "
	    "name) FROM tenants WHERE id = ?");
	sqlite3_bind_int64(st, 1, id);
	if (store_step(st) != SQLITE_ROW)
		xasprintf(cause, "no such tenant");
	else if (strcmp((const char *)sqlite3_column_text(st, 0), "active") != 0)
		xasprintf(cause, "tenant %s is %s: it gets no new services",
		    sqlite3_column_text(st, 1), sqlite3_column_text(st, 0));
	else
		rv = 0;
	sqlite3_finalize(st);
	return (rv);
}
