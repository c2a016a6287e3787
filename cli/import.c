/*
 * opsnctl tenant import: members from Etalab's decoupage-administratif
 * files (communes.json, epci.json) or from a CSV file, turned into records
 * and sent in one request. The controller imports all or nothing and says
 * what changed; a record names where it came from ("entry 12 (code 31012)",
 * "line 5") so that its errors point into the file.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "opsn/util.h"

#include "cli.h"

/* The controller takes at most 64 MiB of records in one request. */
#define IMPORT_FILE_MAX		((size_t)64 << 20)
#define IMPORT_POP_DIGITS	12

struct import_filter {
	const char	*if_dep;	/* département: "31", "2A", "971" */
	const char	*if_region;	/* "76" */
	const char	*if_epci;	/* SIREN of an EPCI */
	const char	*if_epci_file;
	const char	*if_communes_file;
};

typedef int	(*import_fn)(const char *, const struct import_filter *,
		    json_t **, char **);

static int	 import_etalab(const char *, const struct import_filter *,
		    json_t **, char **);
static int	 import_etalab_epci(const char *,
		    const struct import_filter *, json_t **, char **);
static int	 import_csv(const char *, const struct import_filter *,
		    json_t **, char **);

/* Each source: the option that names its file, and how to read it. */
static const struct import_source {
	const char	*is_opt;
	const char	*is_source;	/* "source" of the request */
	import_fn	 is_fn;
	int		 is_filters;	/* takes --departement, ... */
} import_sources[] = {
	{ "etalab",	 "etalab",	import_etalab,		1 },
	{ "etalab-epci", "etalab-epci",	import_etalab_epci,	1 },
	{ "csv",	 "csv",		import_csv,		0 },
};

/*
 * The columns of a CSV file, as its header names them, and the field each
 * fills: the last five (optional) are what a titre needs of its debtor.
 */
static const struct {
	const char	*col;
	const char	*field;
} import_csv_cols[] = {
	{ "insee", "insee" }, { "siren", "siren" }, { "name", "name" },
	{ "population", "population" }, { "kind", "kind" },
	{ "siret", "siret" }, { "address", "address" },
	{ "postcode", "postcode" }, { "town", "town" },
	{ "category", "accounting_category" },
};
#define IMPORT_CSV_NCOLS	nitems(import_csv_cols)
#define IMPORT_CSV_HEADER	"insee;siren;name;population;kind (and " \
	"optionally siret;address;postcode;town;category)"

static const char *import_str(json_t *, const char *);
static char	*import_sibling(const char *, const char *);
static int	 import_load(const char *, json_t **, char **);
static int	 import_epci_members(const char *, const char *, json_t **,
		    char **);
static int	 import_region_communes(const char *, const char *,
		    json_t **, char **);
static int	 import_filter_check(const struct import_filter *, int);
static void	 import_trim(char *);
static int	 import_set_text(json_t *, const char *, const char *,
		    const char *, size_t, char **);
static void	 import_summary(json_t *, const char *);

/* A string member of obj, or NULL. */
static const char *
import_str(json_t *obj, const char *key)
{
	return (json_string_value(json_object_get(obj, key)));
}

/* name in the folder of file; caller frees. */
static char *
import_sibling(const char *file, const char *name)
{
	const char	*slash = strrchr(file, '/');
	char		*path;

	if (slash == NULL)
		return (xstrdup(name));
	xasprintf(&path, "%.*s/%s", (int)(slash - file), file, name);
	return (path);
}

/* An Etalab file: a JSON array. -1 with *cause. */
static int
import_load(const char *file, json_t **out, char **cause)
{
	json_error_t	 err;

	cli_status("reading %s...", file);
	*out = json_load_file(file, 0, &err);
	cli_status_end(0);
	if (*out == NULL) {
		if (err.line > 0)
			xasprintf(cause, "%s: line %d: %s", file, err.line,
			    err.text);
		else
			xasprintf(cause, "%s", err.text);
		return (-1);
	}
	if (!json_is_array(*out)) {
		xasprintf(cause, "%s: not an Etalab file (a JSON list)", file);
		json_decref(*out);
		*out = NULL;
		return (-1);
	}
	return (0);
}

/* The INSEE codes of the member communes of EPCI siren, as object keys. */
static int
import_epci_members(const char *file, const char *siren, json_t **set,
    char **cause)
{
	json_t		*all, *e, *m;
	const char	*code;
	size_t		 i, j;

	*set = NULL;
	if (import_load(file, &all, cause) == -1)
		return (-1);
	json_array_foreach(all, i, e) {
		code = import_str(e, "code");
		if (code == NULL || strcmp(code, siren) != 0)
			continue;
		*set = json_object();
		json_array_foreach(json_object_get(e, "membres"), j, m) {
			if ((code = import_str(m, "code")) != NULL)
				json_object_set_new(*set, code, json_true());
		}
		break;
	}
	json_decref(all);
	if (*set == NULL) {
		xasprintf(cause, "%s: no EPCI with SIREN %s", file, siren);
		return (-1);
	}
	return (0);
}

/* The INSEE codes of the communes of a region, as object keys. */
static int
import_region_communes(const char *file, const char *region, json_t **set,
    char **cause)
{
	json_t		*all, *e;
	const char	*code, *r;
	size_t		 i;

	if (import_load(file, &all, cause) == -1)
		return (-1);
	*set = json_object();
	json_array_foreach(all, i, e) {
		code = import_str(e, "code");
		r = import_str(e, "region");
		if (code != NULL && r != NULL && strcmp(r, region) == 0)
			json_object_set_new(*set, code, json_true());
	}
	json_decref(all);
	if (json_object_size(*set) == 0) {
		xasprintf(cause, "%s: no commune in region %s", file, region);
		json_decref(*set);
		*set = NULL;
		return (-1);
	}
	return (0);
}

/*
 * Etalab communes.json: the current communes ("commune-actuelle"; not the
 * delegated or associated ones, nor the arrondissements of Paris, Lyon and
 * Marseille), of a département, a region or an EPCI.
 */
static int
import_etalab(const char *file, const struct import_filter *f,
    json_t **records, char **cause)
{
	json_t		*all = NULL, *set = NULL, *e, *v, *rec;
	const char	*code, *type, *s;
	char		*epci_file = NULL, *where;
	size_t		 i;
	int		 ret = -1;

	*records = NULL;
	if (f->if_epci != NULL) {
		epci_file = f->if_epci_file != NULL ?
		    xstrdup(f->if_epci_file) : import_sibling(file, "epci.json");
		if (import_epci_members(epci_file, f->if_epci, &set,
		    cause) == -1)
			goto out;
	}
	if (import_load(file, &all, cause) == -1)
		goto out;
	*records = json_array();
	json_array_foreach(all, i, e) {
		if (!json_is_object(e)) {
			xasprintf(cause, "%s: entry %zu: not an object", file,
			    i + 1);
			goto out;
		}
		type = import_str(e, "type");
		if (type == NULL || strcmp(type, "commune-actuelle") != 0)
			continue;
		code = import_str(e, "code");
		if (f->if_dep != NULL && ((s = import_str(e, "departement")) ==
		    NULL || strcmp(s, f->if_dep) != 0))
			continue;
		if (f->if_region != NULL && ((s = import_str(e, "region")) ==
		    NULL || strcmp(s, f->if_region) != 0))
			continue;
		if (set != NULL && (code == NULL ||
		    json_object_get(set, code) == NULL))
			continue;
		/* The controller names what is missing, with the entry. */
		if (code != NULL)
			xasprintf(&where, "entry %zu (code %s)", i + 1, code);
		else
			xasprintf(&where, "entry %zu", i + 1);
		rec = json_pack("{s:s,s:s}", "where", where, "kind", "commune");
		free(where);
		if (code != NULL)
			json_object_set_new(rec, "insee", json_string(code));
		if ((s = import_str(e, "siren")) != NULL)
			json_object_set_new(rec, "siren", json_string(s));
		if ((s = import_str(e, "nom")) != NULL)
			json_object_set_new(rec, "name", json_string(s));
		if (json_is_integer(v = json_object_get(e, "population")))
			json_object_set(rec, "population", v);
		json_array_append_new(*records, rec);
	}
	ret = 0;
out:
	if (ret == -1) {
		json_decref(*records);
		*records = NULL;
	}
	json_decref(set);
	json_decref(all);
	free(epci_file);
	return (ret);
}

/*
 * Etalab epci.json: each EPCI with the SIRENs of its member communes (the
 * controller makes it their parent), if one of its members is in the
 * département or the region asked for.
 */
static int
import_etalab_epci(const char *file, const struct import_filter *f,
    json_t **records, char **cause)
{
	json_t		*all = NULL, *set = NULL, *e, *v, *m, *members, *rec;
	const char	*siren, *s;
	char		*communes = NULL, *where;
	size_t		 i, j;
	int		 keep, ret = -1;

	*records = NULL;
	if (f->if_region != NULL) {
		communes = f->if_communes_file != NULL ?
		    xstrdup(f->if_communes_file) :
		    import_sibling(file, "communes.json");
		if (import_region_communes(communes, f->if_region, &set,
		    cause) == -1)
			goto out;
	}
	if (import_load(file, &all, cause) == -1)
		goto out;
	*records = json_array();
	json_array_foreach(all, i, e) {
		if (!json_is_object(e)) {
			xasprintf(cause, "%s: entry %zu: not an object", file,
			    i + 1);
			goto out;
		}
		siren = import_str(e, "code");
		if (f->if_epci != NULL && (siren == NULL ||
		    strcmp(siren, f->if_epci) != 0))
			continue;
		keep = f->if_dep == NULL && f->if_region == NULL;
		json_array_foreach(json_object_get(e, "membres"), j, m) {
			if (keep || (s = import_str(m, "code")) == NULL)
				continue;
			/* A commune's INSEE code starts with its département. */
			if (f->if_dep != NULL)
				keep = strncmp(s, f->if_dep,
				    strlen(f->if_dep)) == 0;
			else
				keep = json_object_get(set, s) != NULL;
		}
		if (!keep)
			continue;
		if (siren != NULL)
			xasprintf(&where, "entry %zu (SIREN %s)", i + 1, siren);
		else
			xasprintf(&where, "entry %zu", i + 1);
		rec = json_pack("{s:s,s:s}", "where", where, "kind", "epci");
		free(where);
		if (siren != NULL)
			json_object_set_new(rec, "siren", json_string(siren));
		if ((s = import_str(e, "nom")) != NULL)
			json_object_set_new(rec, "name", json_string(s));
		if (json_is_integer(v = json_object_get(e, "populationTotale")))
			json_object_set(rec, "population", v);
		members = json_array();
		json_array_foreach(json_object_get(e, "membres"), j, m) {
			if ((s = import_str(m, "siren")) != NULL)
				json_array_append_new(members, json_string(s));
		}
		json_object_set_new(rec, "members", members);
		json_array_append_new(*records, rec);
	}
	ret = 0;
out:
	if (ret == -1) {
		json_decref(*records);
		*records = NULL;
	}
	json_decref(set);
	json_decref(all);
	free(communes);
	return (ret);
}

/* Blanks around a spreadsheet cell are no part of it. */
static void
import_trim(char *s)
{
	size_t	 len = strlen(s), start = 0;

	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		s[--len] = '\0';
	while (s[start] == ' ' || s[start] == '\t')
		start++;
	memmove(s, s + start, len - start + 1);
}

/* rec[key] = s, unless s is empty; -1 with *cause if it is not UTF-8. */
static int
import_set_text(json_t *rec, const char *key, const char *s,
    const char *name, size_t line, char **cause)
{
	json_t	*v;

	if (*s == '\0')
		return (0);
	if ((v = json_string(s)) == NULL) {
		xasprintf(cause, "%s:%zu: %s: not UTF-8 text (save the file "
		    "as UTF-8)", name, line, key);
		return (-1);
	}
	json_object_set_new(rec, key, v);
	return (0);
}

int
import_csv_records(const char *name, const char *text, size_t len,
    json_t **records, char **cause)
{
	struct csv	 csv;
	struct csv_row	*hdr, *row;
	json_t		*rec;
	char		*v, *where, *clean;
	int		 col[IMPORT_CSV_NCOLS];
	size_t		 r, i, c;
	int		 ret = -1;

	*records = NULL;
	*cause = NULL;
	if (csv_parse(name, text, len, &csv, cause) == -1)
		return (-1);
	if (csv.cv_nrows == 0) {
		xasprintf(cause, "%s: empty: the first line must be the header "
		    IMPORT_CSV_HEADER, name);
		goto out;
	}
	hdr = &csv.cv_rows[0];
	for (c = 0; c < IMPORT_CSV_NCOLS; c++)
		col[c] = -1;
	for (i = 0; i < hdr->cr_n; i++) {
		v = hdr->cr_fields[i];
		import_trim(v);
		for (c = 0; v[c] != '\0'; c++)
			v[c] = (char)tolower((unsigned char)v[c]);
		for (c = 0; c < IMPORT_CSV_NCOLS; c++) {
			if (strcmp(v, import_csv_cols[c].col) == 0)
				break;
		}
		clean = format_clean(v);
		if (c == IMPORT_CSV_NCOLS)
			xasprintf(cause, "%s:%zu: header: unknown column '%s' "
			    "(the first line must be the header "
			    IMPORT_CSV_HEADER ")", name, hdr->cr_line, clean);
		else if (col[c] != -1)
			xasprintf(cause, "%s:%zu: header: column '%s' comes "
			    "twice", name, hdr->cr_line, clean);
		free(clean);
		if (*cause != NULL)
			goto out;
		col[c] = (int)i;
	}
	for (c = 0; c < IMPORT_CSV_NCOLS; c++) {
		if (col[c] == -1 && (strcmp(import_csv_cols[c].col, "name") ==
		    0 || strcmp(import_csv_cols[c].col, "kind") == 0)) {
			xasprintf(cause, "%s:%zu: header: no '%s' column (the "
			    "header is " IMPORT_CSV_HEADER ")", name,
			    hdr->cr_line, import_csv_cols[c].col);
			goto out;
		}
	}

	*records = json_array();
	for (r = 1; r < csv.cv_nrows; r++) {
		row = &csv.cv_rows[r];
		if (row->cr_n != hdr->cr_n) {
			xasprintf(cause, "%s:%zu: fields: %zu instead of %zu "
			    "(separator '%c')", name, row->cr_line, row->cr_n,
			    hdr->cr_n, csv.cv_sep);
			goto out;
		}
		xasprintf(&where, "line %zu", row->cr_line);
		rec = json_pack("{s:s}", "where", where);
		free(where);
		json_array_append_new(*records, rec);
		for (c = 0; c < IMPORT_CSV_NCOLS; c++) {
			if (col[c] == -1)
				continue;
			v = row->cr_fields[col[c]];
			import_trim(v);
			if (strcmp(import_csv_cols[c].col, "population") == 0) {
				if (*v == '\0')
					continue;
				if (strspn(v, "0123456789") != strlen(v) ||
				    strlen(v) > IMPORT_POP_DIGITS) {
					clean = format_clean(v);
					xasprintf(cause, "%s:%zu: population: "
					    "'%s' is not a whole number", name,
					    row->cr_line, clean);
					free(clean);
					goto out;
				}
				json_object_set_new(rec, "population",
				    json_integer(strtoll(v, NULL, 10)));
				continue;
			}
			if (strcmp(import_csv_cols[c].col, "kind") == 0 ||
			    strcmp(import_csv_cols[c].col, "category") == 0) {
				for (i = 0; v[i] != '\0'; i++)
					v[i] = (char)tolower((unsigned char)
					    v[i]);
			}
			/* The controller checks the rest, naming the line. */
			if (import_set_text(rec, import_csv_cols[c].field, v, name,
			    row->cr_line, cause) == -1)
				goto out;
		}
	}
	if (json_array_size(*records) == 0) {
		xasprintf(cause, "%s: no members, only the header", name);
		goto out;
	}
	ret = 0;
out:
	if (ret == -1) {
		json_decref(*records);
		*records = NULL;
	}
	csv_free(&csv);
	return (ret);
}

/* A CSV file: read whole (bounded), then parsed. */
static int
import_csv(const char *file, const struct import_filter *f,
    json_t **records, char **cause)
{
	char	*text;
	size_t	 len;
	int	 ret;

	(void)f;
	*records = NULL;
	cli_status("reading %s...", file);
	ret = util_read_file(file, IMPORT_FILE_MAX, &text, &len, cause);
	cli_status_end(0);
	if (ret == -1)
		return (-1);
	ret = import_csv_records(file, text, len, records, cause);
	free(text);
	return (ret);
}

/*
 * At most one of --departement, --region, --epci, in the shapes Etalab
 * writes; -1 after printing why.
 */
static int
import_filter_check(const struct import_filter *f, int takes)
{
	const char	*d = f->if_dep, *s;
	int		 n;

	n = (f->if_dep != NULL) + (f->if_region != NULL) +
	    (f->if_epci != NULL);
	if (n > 0 && !takes) {
		fprintf(stderr, "opsnctl: --departement, --region and --epci "
		    "only go with --etalab or --etalab-epci\n");
		return (-1);
	}
	if (n > 1) {
		fprintf(stderr, "opsnctl: give only one of --departement, "
		    "--region and --epci\n");
		return (-1);
	}
	/* "31", "2A", "971": a prefix of its communes' INSEE codes. */
	if (d != NULL && !((strlen(d) == 2 && ((isdigit((unsigned char)d[0]) &&
	    isdigit((unsigned char)d[1])) || strcmp(d, "2A") == 0 ||
	    strcmp(d, "2B") == 0)) || (strlen(d) == 3 && d[0] == '9' &&
	    strspn(d, "0123456789") == 3))) {
		fprintf(stderr, "opsnctl: --departement: '%s' is not a "
		    "département code such as 31, 2A or 971\n", d);
		return (-1);
	}
	if ((s = f->if_region) != NULL && (strlen(s) < 2 || strlen(s) > 3 ||
	    strspn(s, "0123456789") != strlen(s))) {
		fprintf(stderr, "opsnctl: --region: '%s' is not a region code "
		    "such as 76\n", s);
		return (-1);
	}
	if ((s = f->if_epci) != NULL && (strlen(s) != 9 ||
	    strspn(s, "0123456789") != 9)) {
		fprintf(stderr, "opsnctl: --epci: '%s' is not a SIREN (9 "
		    "digits)\n", s);
		return (-1);
	}
	return (0);
}

/* "586 records: 586 created, 0 updated, 0 unchanged" on stdout. */
static void
import_summary(json_t *reply, const char *source)
{
	json_int_t	 total, created, updated, unchanged, linked, missing;

#define IMPORT_N(k) json_integer_value(json_object_get(reply, (k)))
	total = IMPORT_N("total");
	created = IMPORT_N("created");
	updated = IMPORT_N("updated");
	unchanged = IMPORT_N("unchanged");
	linked = IMPORT_N("linked");
	missing = IMPORT_N("missing_members");
#undef IMPORT_N
	printf("%" JSON_INTEGER_FORMAT " records: %" JSON_INTEGER_FORMAT
	    " created, %" JSON_INTEGER_FORMAT " updated, %" JSON_INTEGER_FORMAT
	    " unchanged", total, created, updated, unchanged);
	if (strcmp(source, "etalab-epci") == 0 || linked > 0)
		printf(", %" JSON_INTEGER_FORMAT " members linked", linked);
	if (missing > 0)
		printf(", %" JSON_INTEGER_FORMAT " members not among the "
		    "tenants", missing);
	if (created + updated + linked == 0)
		printf(" (nothing changed)");
	printf("\n");
}

int
import_tenants(struct cli_call *call)
{
	const struct import_source	*src = NULL;
	struct import_filter		 f;
	struct cli_http			 http;
	json_t				*records, *reply;
	const char			*file = NULL;
	char				*cause = NULL, *clean, *label;
	size_t				 i, n;
	int				 rc;

	for (i = 0; i < nitems(import_sources); i++) {
		if (cli_opt(call, import_sources[i].is_opt) == NULL)
			continue;
		if (src != NULL) {
			fprintf(stderr, "opsnctl: tenant import: give one of "
			    "--etalab, --etalab-epci and --csv\n");
			return (cli_usage(call));
		}
		src = &import_sources[i];
		file = cli_opt(call, src->is_opt);
	}
	if (src == NULL) {
		fprintf(stderr, "opsnctl: tenant import: --etalab, "
		    "--etalab-epci or --csv is required\n");
		return (cli_usage(call));
	}
	memset(&f, 0, sizeof(f));
	f.if_dep = cli_opt(call, "departement");
	f.if_region = cli_opt(call, "region");
	f.if_epci = cli_opt(call, "epci");
	f.if_epci_file = cli_opt(call, "epci-file");
	f.if_communes_file = cli_opt(call, "communes-file");
	if (import_filter_check(&f, src->is_filters) == -1)
		return (cli_usage(call));
	if (f.if_epci_file != NULL && (strcmp(src->is_opt, "etalab") != 0 ||
	    f.if_epci == NULL)) {
		fprintf(stderr, "opsnctl: --epci-file only goes with --etalab "
		    "and --epci\n");
		return (cli_usage(call));
	}
	if (f.if_communes_file != NULL && (strcmp(src->is_opt,
	    "etalab-epci") != 0 || f.if_region == NULL)) {
		fprintf(stderr, "opsnctl: --communes-file only goes with "
		    "--etalab-epci and --region\n");
		return (cli_usage(call));
	}

	if (src->is_fn(file, &f, &records, &cause) == -1) {
		clean = format_clean(cause);
		fprintf(stderr, "opsnctl: %s\n", clean);
		free(clean);
		free(cause);
		return (CLI_EXIT_ERROR);
	}
	if ((n = json_array_size(records)) == 0) {
		clean = format_clean(file);
		fprintf(stderr, "opsnctl: %s: nothing to import%s\n", clean,
		    f.if_dep != NULL || f.if_region != NULL ||
		    f.if_epci != NULL ? " with that filter" : "");
		free(clean);
		json_decref(records);
		return (CLI_EXIT_ERROR);
	}

	/* A whole country takes a while to store: no 30 s limit. */
	memset(&http, 0, sizeof(http));
	xasprintf(&label, "sending %zu records", n);
	http.h_long = 1;
	http.h_label = label;
	cli_status("%s...", label);
	rc = cli_request_http("POST", "/v1/tenants/import", json_pack(
	    "{s:s,s:o}", "source", src->is_source, "records", records), &http,
	    &reply);
	cli_http_clear(&http);
	free(label);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	if (cli_conf.cc_output == CLI_OUTPUT_JSON)
		format_json(stdout, reply);
	else if (!cli_conf.cc_quiet)
		import_summary(reply, src->is_source);
	json_decref(reply);
	return (CLI_EXIT_OK);
}
