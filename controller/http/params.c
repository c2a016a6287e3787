/* Request parameters shared by every module: pages, fields, times. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "opsn/util.h"
#include "http.h"

#define LIST_LIMIT_DEFAULT	100
#define LIST_LIMIT_MAX		1000

/* Refuse fields not in known; -1 after replying 400. */
int
params_known_fields(struct api_req *r, json_t *body, const char *const *known)
{
	const char	*k, *const *kk;
	json_t		*v;

	json_object_foreach(body, k, v) {
		for (kk = known; *kk != NULL; kk++)
			if (strcmp(*kk, k) == 0)
				break;
		if (*kk == NULL) {
			api_reply_error(r, 400, "unknown_field", "unknown field "
			    "'%.64s'", k);
			return (-1);
		}
	}
	return (0);
}

/* A required whole number within [min, max]; -1 after replying 400. */
int
params_int_field(struct api_req *r, json_t *body, const char *name,
    int64_t min, int64_t max, int64_t *out)
{
	json_t	*v = json_object_get(body, name);

	if (v == NULL) {
		api_reply_error(r, 400, "missing_field", "%s is required", name);
		return (-1);
	}
	if (!json_is_integer(v) || json_integer_value(v) < min ||
	    json_integer_value(v) > max) {
		api_reply_error(r, 400, "bad_field", "%s must be a whole number "
		    "from %lld to %lld", name, (long long)min, (long long)max);
		return (-1);
	}
	*out = json_integer_value(v);
	return (0);
}

/* A time as YYYY-MM-DD, RFC 3339 UTC, or unix seconds. */
int
params_parse_time(const char *s, int64_t *out)
{
	struct tm	 tm;
	const char	*end;
	char		*e;
	long long	 n;

	memset(&tm, 0, sizeof(tm));
	if ((end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm)) != NULL &&
	    *end == '\0') {
		*out = (int64_t)timegm(&tm);
		return (0);
	}
	memset(&tm, 0, sizeof(tm));
	if ((end = strptime(s, "%Y-%m-%d", &tm)) != NULL && *end == '\0') {
		*out = (int64_t)timegm(&tm);
		return (0);
	}
	n = strtoll(s, &e, 10);
	if (*s != '\0' && *e == '\0' && n >= 0) {
		*out = n;
		return (0);
	}
	return (-1);
}

/* limit and cursor query parameters; -1 after replying 400. */
int
params_page(struct api_req *r, int *limit, const char **cursor)
{
	const char	*s = api_query(r, "limit");
	char		*end;
	long		 n;

	*limit = LIST_LIMIT_DEFAULT;
	*cursor = api_query(r, "cursor");
	if (s == NULL)
		return (0);
	n = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || n < 1 || n > LIST_LIMIT_MAX) {
		api_reply_error(r, 400, "bad_parameter", "limit must be a "
		    "number from 1 to %d", LIST_LIMIT_MAX);
		return (-1);
	}
	*limit = (int)n;
	return (0);
}

/*
 * s as a whole number within [min, max]: digits, a '-' first only where
 * min is below zero; -1 if it is anything else.
 */
static int
params_whole(const char *s, int64_t min, int64_t max, int64_t *out)
{
	const char	*d = s + (*s == '-' && min < 0);
	char		*end;
	long long	 n;

	if (!isdigit((unsigned char)*d))
		return (-1);
	errno = 0;
	n = strtoll(s, &end, 10);
	if (*end != '\0' || errno != 0 || n < min || n > max)
		return (-1);
	*out = n;
	return (0);
}

/*
 * A whole number from the query string within [min, max], def when it is
 * absent; -1 after replying 400.
 */
int
params_query_int(struct api_req *r, const char *name, int64_t min,
    int64_t max, int64_t def, int64_t *out)
{
	const char	*q = api_query(r, name);

	*out = def;
	if (q != NULL && params_whole(q, min, max, out) == -1) {
		api_reply_error(r, 400, "bad_parameter", "%s must be a whole "
		    "number from %lld to %lld", name, (long long)min,
		    (long long)max);
		return (-1);
	}
	return (0);
}

/*
 * limit, and a cursor that is the id of the last item seen (a next_cursor
 * of a list ordered by id; 0 when there is none); -1 after replying 400.
 */
int
params_page_id(struct api_req *r, int *limit, int64_t *after)
{
	const char	*cursor;

	*after = 0;
	if (params_page(r, limit, &cursor) == -1)
		return (-1);
	if (cursor != NULL && *cursor != '\0' &&
	    params_whole(cursor, 0, INT64_MAX, after) == -1) {
		api_reply_error(r, 400, "bad_parameter", "cursor must be the "
		    "next_cursor of a page of this list");
		return (-1);
	}
	return (0);
}

/* The cursor of the next page: key of the last item of this one (copy). */
char *
params_last_key(json_t *items, const char *key)
{
	return (xstrdup(json_string_value(json_object_get(json_array_get(items,
	    json_array_size(items) - 1), key))));
}

/* Reply with a page of items and the cursor of the next page. */
void
params_reply_page(struct api_req *r, json_t *items, char *next)
{
	json_t	*o = json_object();

	json_object_set_new(o, "items", items);
	json_object_set_new(o, "next_cursor", next ? json_string(next) :
	    json_null());
	free(next);
	api_reply_json(r, 200, o);
}

/* Start a page: {"items":[ ... the caller writes the items. */
void
params_page_open(struct jsonw *w)
{
	memset(w, 0, sizeof(*w));
	jsonw_obj(w);
	jsonw_key(w, "items");
	jsonw_arr(w);
}

/* End the page with its next cursor (NULL: none): its text. */
char *
params_page_end(struct jsonw *w, const char *next, size_t *len)
{
	jsonw_arr_end(w);
	jsonw_key(w, "next_cursor");
	jsonw_str(w, next);
	jsonw_obj_end(w);
	return (jsonw_take(w, len));
}

/* End the page with its next cursor (NULL: none) and send it. */
void
params_page_reply(struct api_req *r, struct jsonw *w, const char *next)
{
	char	*s;
	size_t	 len;

	s = params_page_end(w, next, &len);
	api_reply_take(r, 200, "application/json", s, len);
}
