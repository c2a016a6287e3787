/*
 * The controller's HTTPS API: h2o 2.2.5 (libuv build) on the controller's
 * loop. One catch-all h2o handler routes by method and path from the
 * caller's table, authenticates bearer tokens and answers JSON.
 *
 * h2o state (config, context, listener) is file-static: there is one API
 * server per process, and the h2o context must outlive the uv_close() of
 * its timers, which h2o_context_dispose() issues without a callback.
 */
#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <netinet/in.h>

#include <ctype.h>
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <h2o.h>

#include "opsn/log.h"
#include "opsn/util.h"

#include "internal.h"

#define API_MAX_BODY_DEFAULT	(1024 * 1024)
#define API_MAX_CONNS_DEFAULT	1024	/* accepted and closed beyond this */
#define API_HANDSHAKE_MS	10000
#define API_REQUEST_MS		30000
#define API_RATE_DEFAULT	20.0	/* requests/s per token */
#define API_BURST_DEFAULT	200.0
#define API_BACKLOG		128
#define API_MAX_QUERY		64	/* query pairs looked at */
#define API_MAX_TOKEN		4096	/* bearer token bytes */
#define API_MAX_HDRNAME		128
#define API_NCLASS		5	/* status classes 1xx .. 5xx */
#define API_LOG_EVERY_MS	10000	/* refused connections: one line */
#define API_MAX_BUFFERED	(16 * 1024 * 1024)
#define API_BUFFERED_MIN	(64 * 1024)	/* a connection worth cutting */
#define API_PRESSURE_BODY	(64 * 1024)	/* h2o's limit under pressure */

/*
 * Latency buckets of every route's histogram, in seconds: from a cached
 * read to a statement generated on the pool.
 */
static const double api_buckets[] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
	2.5, 5, 10, 30,
};
#define API_NBUCKETS	(sizeof(api_buckets) / sizeof(api_buckets[0]))

/* One route's counters: replies by status class, and their latency. */
struct api_stat {
	uint64_t	 st_class[API_NCLASS];
	uint64_t	 st_bucket[API_NBUCKETS];	/* not cumulative */
	uint64_t	 st_timed;			/* replies timed */
	uint64_t	 st_ns;				/* their sum */
};

struct api_conn {
	uv_tcp_t		 c_tcp;	/* first: the close callback casts back */
	LIST_ENTRY(api_conn)	 c_entry;
	int			 c_cut;	/* shut down for holding too much */
};

/*
 * A deferred reply. The handle is malloc()ed and owned by the caller; the
 * request pool holds a link back to it (struct api_link), so the handle
 * learns when the request is gone. Whichever goes first cuts the link:
 * the pool (d_ar becomes NULL) or the reply (l_arg becomes NULL, then the
 * handle is freed).
 */
struct api_defer {
	struct api_req		*d_ar;		/* NULL once h2o disposed of it */
	struct api_link		*d_link;	/* in the request pool */
	struct api_req		 d_shadow;	/* see api_defer_req() */
	unsigned		 d_gen;		/* api.gen when deferred */
};

enum api_lstate {
	API_LISTENER_NONE,
	API_LISTENER_OPEN,
	API_LISTENER_CLOSING,
};

static struct {
	int			 running;	/* started, not yet disposed */
	int			 stopping;
	enum api_lstate		 lstate;
	uv_check_t		 check;
	int			 check_open;
	struct api_limits	 lim;
	h2o_globalconf_t	 config;
	h2o_context_t		 ctx;
	h2o_accept_ctx_t	 accept_ctx;
	uv_tcp_t		 listener;
	SSL_CTX			*ssl_ctx;
	const struct api_route	*routes;
	size_t			 nroutes;
	struct api_hooks	 hooks;
	LIST_HEAD(, api_conn)	 conns;
	size_t			 nconns;
	/* nroutes table rows, then the built-in openapi row, then unmatched */
	struct api_stat		*stats;
	size_t			 nstats;
	unsigned		 gen;		/* api_start() calls: stats rows */
	uv_thread_t		 loop_thread;
	uint64_t		 refused;	/* connections over the cap */
	uint64_t		 refused_logged_ms;
	uint64_t		 cut;		/* over al_max_buffered */
	int			 pressure;	/* h2o's limit is lowered */
} api = { .lim = { API_MAX_BODY_DEFAULT, API_MAX_CONNS_DEFAULT,
    API_HANDSHAKE_MS, API_REQUEST_MS, API_RATE_DEFAULT, API_BURST_DEFAULT,
    NULL, API_MAX_BUFFERED } };

#ifdef OPSN_FUZZ
static int	api_fuzz_status;
#endif
static void	api_openapi_cb(struct api_req *);
static char	*api_dump(json_t *);
static void	api_free_slot_cb(void *);

static const struct api_route api_builtin = {
	"GET", "/v1/openapi.json", NULL, API_PUBLIC, NULL, api_openapi_cb,
	"This OpenAPI 3.0.3 document"
};

static const struct {
	int		 status;
	const char	*reason;
} api_reasons[] = {
	{ 200, "OK" },
	{ 201, "Created" },
	{ 202, "Accepted" },
	{ 204, "No Content" },
	{ 304, "Not Modified" },
	{ 400, "Bad Request" },
	{ 401, "Unauthorized" },
	{ 403, "Forbidden" },
	{ 404, "Not Found" },
	{ 405, "Method Not Allowed" },
	{ 409, "Conflict" },
	{ 410, "Gone" },
	{ 412, "Precondition Failed" },
	{ 413, "Payload Too Large" },
	{ 415, "Unsupported Media Type" },
	{ 422, "Unprocessable Entity" },
	{ 429, "Too Many Requests" },
	{ 500, "Internal Server Error" },
	{ 501, "Not Implemented" },
	{ 503, "Service Unavailable" },
	{ 504, "Gateway Timeout" },
	{ 507, "Insufficient Storage" },
};

static const char *
api_reason(int status)
{
	size_t	 i;

	for (i = 0; i < nitems(api_reasons); i++) {
		if (api_reasons[i].status == status)
			return (api_reasons[i].reason);
	}
	return (status < 400 ? "OK" : "Error");
}

/* The route behind stats row i. */
static const struct api_route *
api_route_at(size_t i)
{
	if (i < api.nroutes)
		return (&api.routes[i]);
	if (i == api.nroutes)
		return (&api_builtin);
	return (NULL);
}

/* Count a reply; t0 is the request's arrival (uv_hrtime), 0 untimed. */
static void
api_count(size_t row, int status, uint64_t t0)
{
	struct api_stat	*st;
	uint64_t	 ns;
	size_t		 b;
	int		 c;

	if (api.stats == NULL || row >= api.nstats)
		return;
	st = &api.stats[row];
	c = status / 100 - 1;
	if (c < 0)
		c = 0;
	if (c >= API_NCLASS)
		c = API_NCLASS - 1;
	st->st_class[c]++;
	if (t0 == 0)
		return;
	ns = uv_hrtime() - t0;
	for (b = 0; b < API_NBUCKETS; b++)
		if ((double)ns <= api_buckets[b] * 1e9) {
			st->st_bucket[b]++;
			break;
		}
	st->st_timed++;
	st->st_ns += ns;
}

/*
 * A JSON string for text that may hold bytes from the peer: jansson refuses
 * invalid UTF-8, so such bytes become '?'.
 */
static json_t *
api_json_str(const char *s)
{
	json_t	*j;
	char	*copy, *p;

	if ((j = json_string(s)) != NULL)
		return (j);
	copy = xstrdup(s);
	for (p = copy; *p != '\0'; p++) {
		if ((unsigned char)*p >= 0x80 || (unsigned char)*p < 0x20)
			*p = '?';
	}
	j = json_string(copy);
	free(copy);
	if (j == NULL)
		fatalx("api: json_string");
	return (j);
}

/*
 * Percent-decode len bytes of in into out (room for len + 1 bytes), '+' as
 * space if plus. -1 if an escape is malformed or decodes to NUL.
 */
static int
api_pct_decode(const char *in, size_t len, int plus, char *out,
    size_t *outlen)
{
	size_t	 i, o = 0;
	int	 hi, lo;

	for (i = 0; i < len; i++) {
		if (in[i] == '%') {
			if (len - i < 3)
				return (-1);
			if (!isxdigit((unsigned char)in[i + 1]) ||
			    !isxdigit((unsigned char)in[i + 2]))
				return (-1);
			hi = isdigit((unsigned char)in[i + 1]) ? in[i + 1] - '0' :
			    tolower((unsigned char)in[i + 1]) - 'a' + 10;
			lo = isdigit((unsigned char)in[i + 2]) ? in[i + 2] - '0' :
			    tolower((unsigned char)in[i + 2]) - 'a' + 10;
			if (hi == 0 && lo == 0)
				return (-1);
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else if (in[i] == '+' && plus)
			out[o++] = ' ';
		else if (in[i] == '\0')
			return (-1);
		else
			out[o++] = in[i];
	}
	out[o] = '\0';
	*outlen = o;
	return (0);
}

/* A copy of len bytes in the request pool, NUL-terminated. */
static char *
api_pool_strndup(struct api_req *ar, const char *s, size_t len)
{
	return (h2o_strdup(&ar->r_req->pool, s, len).base);
}

/*
 * Does the path (plen bytes, no query) match the pattern? Both are split on
 * '/'; a {param} segment matches any non-empty segment.
 */
static int
api_match(const char *pattern, const char *path, size_t plen)
{
	const char	*pe, *end = path + plen;
	size_t		 slen, pslen;

	if (*pattern != '/' || plen == 0 || *path != '/')
		return (-1);
	for (;;) {
		pattern++;
		path++;
		pslen = strcspn(pattern, "/");
		pe = memchr(path, '/', end - path);
		slen = (pe != NULL ? pe : end) - path;
		if (pattern[0] == '{') {
			if (slen == 0)
				return (-1);
		} else if (pslen != slen || memcmp(pattern, path, slen) != 0)
			return (-1);
		pattern += pslen;
		path += slen;
		if (*pattern == '\0' && path == end)
			return (0);
		if (*pattern == '\0' || path == end)
			return (-1);
	}
}

/*
 * Capture and decode the {param} segments of the routed path; replies 400
 * and returns -1 for a malformed or unsafe value.
 */
static int
api_capture(struct api_req *ar, const char *path, size_t plen)
{
	const char	*pattern = ar->r_route->ar_pattern, *pe;
	const char	*end = path + plen;
	size_t		 slen, pslen, dlen, i;
	char		*value;

	for (;;) {
		pattern++;
		path++;
		pslen = strcspn(pattern, "/");
		pe = memchr(path, '/', end - path);
		slen = (pe != NULL ? pe : end) - path;
		if (pattern[0] == '{' && ar->r_nparams < API_MAX_PARAMS) {
			value = h2o_mem_alloc_pool(&ar->r_req->pool, slen + 1);
			if (api_pct_decode(path, slen, 0, value, &dlen) == -1) {
				api_reply_error(ar, 400, "bad_request",
				    "malformed percent-encoding in path "
				    "parameter '%.*s'", (int)pslen - 2,
				    pattern + 1);
				return (-1);
			}
			for (i = 0; i < dlen; i++) {
				if (value[i] == '/' ||
				    (unsigned char)value[i] < 0x20 ||
				    value[i] == 0x7f) {
					api_reply_error(ar, 400, "bad_request",
					    "path parameter '%.*s' holds '/' or "
					    "a control character",
					    (int)pslen - 2, pattern + 1);
					return (-1);
				}
			}
			ar->r_params[ar->r_nparams].p_name = pattern + 1;
			ar->r_params[ar->r_nparams].p_namelen = pslen - 2;
			ar->r_params[ar->r_nparams].p_value = value;
			ar->r_nparams++;
		}
		pattern += pslen;
		path += slen;
		if (*pattern == '\0')
			return (0);
	}
}

static uint64_t	 api_id_next;	/* 0: not drawn yet */

/* Take a sane incoming X-Request-Id into id, or make one up. */
static void
api_make_id(h2o_req_t *req, char id[API_MAX_ID + 1])
{
	h2o_iovec_t	*v;
	ssize_t		 i;
	size_t		 j;
	unsigned char	 rnd[8];
	uint64_t	 x;

	i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-request-id"),
	    -1);
	if (i != -1) {
		v = &req->headers.entries[i].value;
		for (j = 0; j < v->len; j++) {
			if (!isalnum((unsigned char)v->base[j]) &&
			    strchr("-_.", v->base[j]) == NULL)
				break;
		}
		if (v->len > 0 && v->len <= API_MAX_ID && j == v->len) {
			memcpy(id, v->base, v->len);
			id[v->len] = '\0';
			return;
		}
	}
	/*
	 * Ids only tell requests apart in logs and the audit trail: a
	 * counter from a random start, through splitmix64's finalizer (a
	 * bijection, so no two requests of a run share an id), costs less
	 * than a draw from OpenSSL's generator at every request.
	 */
	if (api_id_next == 0)
		util_random(&api_id_next, sizeof(api_id_next));
	x = api_id_next++ * 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	x ^= x >> 31;
	for (j = 0; j < sizeof(rnd); j++)
		rnd[j] = (unsigned char)(x >> (8 * j));
	util_hex(rnd, sizeof(rnd), id);
}

/* Check the bearer token or the client certificate; replies on failure. */
static int
api_authenticate(struct api_req *ar)
{
	const struct api_hooks	*hk = &api.hooks;
	struct api_principal	*p = &ar->r_principal;
	const char		*h, *tok;
	X509			*cert;

	h = api_header(ar, "authorization");
	if (h == NULL && hk->authenticate_cert != NULL &&
	    (cert = api_client_cert(ar)) != NULL) {
		if (hk->authenticate_cert(cert, p, hk->arg) == -1) {
			api_reply_error(ar, 401, "unauthenticated",
			    "this client certificate names no enrolled node");
			return (-1);
		}
		goto done;
	}
	if (h == NULL && hk->authenticate_request != NULL) {
		switch (hk->authenticate_request(ar, ar->r_route, p, hk->arg)) {
		case 0:
			goto done;
		case -1:
			return (-1);
		}
	}
	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) {
		api_set_header(ar, "WWW-Authenticate", "Bearer");
		api_reply_error(ar, 401, "unauthenticated",
		    "this call needs an Authorization: Bearer token");
		return (-1);
	}
	for (tok = h + 7; *tok == ' '; tok++)
		continue;
	if (*tok == '\0' || strlen(tok) > API_MAX_TOKEN ||
	    hk->authenticate == NULL ||
	    hk->authenticate(tok, p, hk->arg) == -1) {
		api_set_header(ar, "WWW-Authenticate",
		    "Bearer error=\"invalid_token\"");
		api_reply_error(ar, 401, "unauthenticated",
		    "the bearer token is not valid");
		return (-1);
	}
done:
	p->ap_name[sizeof(p->ap_name) - 1] = '\0';
	p->ap_role[sizeof(p->ap_role) - 1] = '\0';
	ar->r_authed = 1;
	return (0);
}

/* May the authenticated caller make one more request now? */
static int
api_rate(struct api_req *ar)
{
	unsigned	 retry;
	char		 s[16];

	if (ratelimit_take(ar->r_principal.ap_name, util_mono_ms(),
	    &retry) == 0)
		return (0);
	snprintf(s, sizeof(s), "%u", retry);
	api_set_header(ar, "Retry-After", s);
	api_reply_error(ar, 429, "rate_limited", "too many requests with "
	    "this token (%.0f a second, %.0f at once); retry in %u s",
	    api.lim.al_rate, api.lim.al_burst, retry);
	return (-1);
}

/* The caller's permission for its route, before a part is stored. */
int
api_permits(struct api_req *ar)
{
	const struct api_hooks	*hk = &api.hooks;
	const struct api_route	*r = ar->r_route;

	if (hk->permits == NULL ||
	    hk->permits(&ar->r_principal, r, hk->arg) == 0)
		return (0);
	api_reply_error(ar, 403, "forbidden", "'%s' (role %s) lacks "
	    "permission '%s'", ar->r_principal.ap_name,
	    ar->r_principal.ap_role, r->ar_perm);
	return (-1);
}

/* Authorize an authenticated call and run its handler. */
void
api_run(struct api_req *ar)
{
	const struct api_hooks	*hk = &api.hooks;

	if (ar->r_route->ar_perm != NULL) {
		/* No authorize hook: fail closed. */
		if (hk->authorize == NULL) {
			api_reply_error(ar, 403, "forbidden",
			    "no authorization");
			return;
		}
		if (hk->authorize(ar, &ar->r_principal, ar->r_route,
		    hk->arg) == -1)
			return;
	}
	if (hk->write_failures != NULL)
		ar->r_failures = hk->write_failures(hk->arg);
	ar->r_in_handler = 1;
	ar->r_route->ar_fn(ar);
	ar->r_in_handler = 0;
	/* A file body the handler did not take is not kept. */
	if (ar->r_file != NULL) {
		(void)unlink(ar->r_file);
		free(ar->r_file);
		ar->r_file = NULL;
	}
}

static int
api_method_is(h2o_req_t *req, const char *method)
{
	size_t	 len = strlen(method);

	return (req->method.len == len &&
	    memcmp(req->method.base, method, len) == 0);
}

static void
api_not_allowed(struct api_req *ar, const char *path, size_t plen)
{
	const struct api_route	*r;
	char			*allow = NULL, *tmp;
	size_t			 i, j;

	for (i = 0; i <= api.nroutes; i++) {
		r = api_route_at(i);
		if (api_match(r->ar_pattern, path, plen) == -1)
			continue;
		for (j = 0; j < i; j++) {
			if (strcmp(api_route_at(j)->ar_method,
			    r->ar_method) == 0 &&
			    api_match(api_route_at(j)->ar_pattern, path,
			    plen) == 0)
				break;
		}
		if (j < i)
			continue;	/* already listed */
		if (allow == NULL)
			allow = xstrdup(r->ar_method);
		else {
			xasprintf(&tmp, "%s, %s", allow, r->ar_method);
			free(allow);
			allow = tmp;
		}
	}
	api_set_header(ar, "Allow", allow);
	api_reply_error(ar, 405, "method_not_allowed",
	    "%.*s is not allowed here; use %s", (int)ar->r_req->method.len,
	    ar->r_req->method.base, allow);
	free(allow);
}

/* The body limit of a route. */
size_t
api_route_max(const struct api_route *r)
{
	return (r->ar_max_body != 0 ? r->ar_max_body : api.lim.al_max_body);
}

/* The server's limit on one request's body. */
size_t
api_max_body(void)
{
	return (api.lim.al_max_body);
}

/*
 * Route, authenticate, then read the body: a body over the route's limit
 * is refused before its caller is known (h2o already refused one over the
 * server's limit before reading it); the rest waits for the caller.
 */
static void
api_dispatch(struct api_req *ar)
{
	h2o_req_t		*req = ar->r_req;
	const struct api_route	*r;
	const char		*path = req->path.base, *range;
	size_t			 plen, i, k;
	int			 pathmatch = 0;

	plen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
	ar->r_stat = api.nroutes + 1;
	/*
	 * The built-in OpenAPI route first, then the table in its order: a
	 * table's catch-all patterns (the console's pages) never hide it.
	 */
	for (k = 0; k <= api.nroutes; k++) {
		i = k == 0 ? api.nroutes : k - 1;
		r = api_route_at(i);
		if (api_match(r->ar_pattern, path, plen) == -1)
			continue;
		pathmatch = 1;
		if (api_method_is(req, r->ar_method)) {
			ar->r_route = r;
			ar->r_stat = i;
			break;
		}
	}
	if (ar->r_route == NULL) {
		if (pathmatch)
			api_not_allowed(ar, path, plen);
		else
			api_reply_error(ar, 404, "not_found",
			    "no such path: %.*s",
			    (int)(plen > 256 ? 256 : plen), path);
		return;
	}
	r = ar->r_route;
	if (req->entity.base != NULL && req->entity.len > api_route_max(r)) {
		api_reply_error(ar, 413, "too_large", "the body is over %zu "
		    "bytes", api_route_max(r));
		return;
	}
	if (api_capture(ar, path, plen) == -1)
		return;
	range = api_header(ar, "content-range");
	if (r->ar_perm == NULL) {
		if (range != NULL) {
			api_reply_error(ar, 400, "bad_request", "%s %s takes "
			    "no body in parts", r->ar_method, r->ar_pattern);
			return;
		}
		r->ar_fn(ar);
		return;
	}
	if (api_authenticate(ar) == -1)
		return;
	/* Parts are bounded by their own limits, not the request rate. */
	if (range != NULL) {
		parts_handle(ar, range);
		return;
	}
	if (api_rate(ar) == -1)
		return;
	api_run(ar);
}

/* Did the request get an answer, or will it later? Else a 500. */
void
api_check_replied(struct api_req *ar)
{
	h2o_req_t	*req = ar->r_req;

	if (ar->r_replied || ar->r_deferred || ar->r_pending)
		return;
	log_warnx("api: %.*s %s (request %s): handler did not reply",
	    (int)req->method.len, req->method.base,
	    ar->r_route != NULL ? ar->r_route->ar_pattern : "?", ar->r_id);
	api_reply_error(ar, 500, "internal",
	    "the server failed to answer (request %s)", ar->r_id);
}

static int
api_on_req(h2o_handler_t *self, h2o_req_t *req)
{
	struct api_req	*ar;

	(void)self;
	ar = h2o_mem_alloc_pool(&req->pool, sizeof(*ar));
	memset(ar, 0, sizeof(*ar));
	ar->r_req = req;
	ar->r_t0 = uv_hrtime();
	api_make_id(req, ar->r_id);
	api_dispatch(ar);
	api_check_replied(ar);
	return (0);
}

/*
 * h2o answers some requests itself before any handler runs, with a
 * text/plain body: a body over max_request_entity_size (413), a malformed
 * request (400), a path outside "/" (404). It does so through the host's
 * fallback path (h2o_send_error_generic), where this filter rewrites the
 * answer into our JSON error with the usual headers.
 */
struct api_errostr {
	h2o_ostream_t	 super;
	h2o_iovec_t	 json;
};

static void
api_errostr_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs,
    size_t bufcnt, h2o_send_state_t state)
{
	struct api_errostr	*o = (struct api_errostr *)self;
	h2o_iovec_t		 buf = o->json;

	/* h2o_send_inline() sends the whole text at once (none for HEAD). */
	if (bufcnt == 0 || buf.base == NULL) {
		h2o_ostream_send_next(self, req, bufs, 0, state);
		return;
	}
	o->json = h2o_iovec_init(NULL, 0);
	h2o_ostream_send_next(self, req, &buf, 1, state);
}

static void
api_errfilter_setup(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
	struct api_errostr	*o;
	const char		*code;
	char			*msg, *s, *id;
	int			 status = req->res.status;
	json_t			*j;

	(void)self;
	if (status == 413) {
		code = "too_large";
		xasprintf(&msg, "the body is over %zu bytes; send a larger "
		    "one in parts (Content-Range)%s",
		    api.config.max_request_entity_size, api.pressure ?
		    " (the server is busy reading other bodies)" : "");
	} else {
		if (status == 404)
			code = "not_found";
		else if (status < 500)
			code = "bad_request";
		else
			code = "internal";
		xasprintf(&msg, "%s", req->res.reason != NULL ?
		    req->res.reason : "error");
	}
	j = json_pack("{s:{s:s,s:o}}", "error", "code", code, "message",
	    api_json_str(msg));
	free(msg);
	if (j == NULL || (s = json_dumps(j, JSON_COMPACT)) == NULL)
		fatalx("api: json error document");
	json_decref(j);

	id = h2o_mem_alloc_pool(&req->pool, API_MAX_ID + 1);
	api_make_id(req, id);
	api_count(api.nroutes + 1, status, 0);
	log_debug("api: h2o answered %d (request %s)", status, id);

	o = (struct api_errostr *)h2o_add_ostream(req, sizeof(*o), slot);
	o->super.do_send = api_errostr_send;
	o->json = h2o_strdup(&req->pool, s, SIZE_MAX);
	free(s);
	req->res.content_length = o->json.len;
	h2o_set_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE,
	    H2O_STRLIT("application/json"), 1);
	h2o_set_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL,
	    H2O_STRLIT("no-store"), 1);
	h2o_add_header_by_str(&req->pool, &req->res.headers,
	    H2O_STRLIT("x-request-id"), 0, NULL, id, strlen(id));
	h2o_setup_next_ostream(req, &o->super.next);
}

static void
api_dispose(void)
{
	h2o_context_dispose(&api.ctx);
	h2o_config_dispose(&api.config);
	free(api.stats);
	api.stats = NULL;
	api.nstats = 0;
	ratelimit_clear();
	parts_init(NULL, NULL);
	api.running = 0;
	api.stopping = 0;
	log_debug("api: stopped");
}

/*
 * Dispose of h2o once the listener and every connection are closed. This
 * runs from a close callback: h2o_context_dispose() ends with a nested
 * uv_run(UV_RUN_NOWAIT), and libuv's closing phase is the one place where
 * that nesting does not disturb the outer iteration.
 */
static void
api_maybe_dispose(void)
{
	if (api.running && api.stopping && !api.check_open &&
	    api.lstate == API_LISTENER_NONE && api.nconns == 0)
		api_dispose();
}

static void
api_check_close_cb(uv_handle_t *h)
{
	(void)h;
	api.check_open = 0;
	api_maybe_dispose();
}

/* The bytes h2o holds for a connection: what it read and did not consume. */
static size_t
api_conn_buffered(struct api_conn *c)
{
	h2o_socket_t	*sock = c->c_tcp.data;	/* h2o_uv_socket_create() */

	if (sock == NULL || c->c_cut ||
	    uv_is_closing((uv_handle_t *)&c->c_tcp) ||
	    sock->input == NULL || sock->input->bytes == NULL)
		return (0);
	return (sock->input->capacity);
}

/*
 * After each loop iteration: h2o 2.2.5 reads a whole body (up to
 * al_max_body) before any handler, and so before authentication, and
 * many anonymous chunked bodies at once could hold al_max_body each.
 * Past half of al_max_buffered in all, h2o's limit drops to
 * API_PRESSURE_BODY until the pressure is gone: it refuses larger bodies
 * at their next bytes (413). Past al_max_buffered, the connections
 * holding the most are cut (a body in parts resumes).
 */
static void
api_check_cb(uv_check_t *h)
{
	struct api_conn	*c, *big;
	struct linger	 lg = { 1, 0 };
	size_t		 total = 0, n, most, lim = api.lim.al_max_buffered;
	uv_os_fd_t	 fd;

	(void)h;
	LIST_FOREACH(c, &api.conns, c_entry)
		total += api_conn_buffered(c);
	if (total > lim / 2 && !api.pressure) {
		api.pressure = 1;
		api.config.max_request_entity_size = API_PRESSURE_BODY;
		log_warnx("api: bodies being read hold %zu bytes; refusing "
		    "those over %d bytes for now", total, API_PRESSURE_BODY);
	} else if (total < lim / 4 && api.pressure) {
		api.pressure = 0;
		api.config.max_request_entity_size = api.lim.al_max_body;
		/* Give the flood's freed heap back. */
		(void)malloc_trim(0);
		log_notice("api: bodies being read hold %zu bytes; back to "
		    "%zu bytes a request (%llu connections cut)", total,
		    api.lim.al_max_body, (unsigned long long)api.cut);
	}
	while (total > lim) {
		big = NULL;
		most = API_BUFFERED_MIN - 1;
		LIST_FOREACH(c, &api.conns, c_entry) {
			if ((n = api_conn_buffered(c)) > most) {
				most = n;
				big = c;
			}
		}
		if (big == NULL)
			break;
		big->c_cut = 1;
		total -= most;
		api.cut++;
		/*
		 * h2o reads EOF and closes; no lingering, so the client's
		 * next write fails at once (RST) instead of filling a
		 * window nobody reads.
		 */
		if (uv_fileno((uv_handle_t *)&big->c_tcp, &fd) == 0) {
			(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg,
			    sizeof(lg));
			(void)shutdown(fd, SHUT_RD);
		}
	}
}

static void
api_listener_close_cb(uv_handle_t *h)
{
	(void)h;
	api.lstate = API_LISTENER_NONE;
	api_maybe_dispose();
}

static void
api_conn_close_cb(uv_handle_t *h)
{
	struct api_conn	*c = (struct api_conn *)h;

	LIST_REMOVE(c, c_entry);
	api.nconns--;
	free(c);
	api_maybe_dispose();
}

static void
api_accept_cb(uv_stream_t *listener, int status)
{
	struct api_conn	*c;
	h2o_socket_t	*sock;
	int		 r;

	if (status != 0) {
		log_warnx("api: accept: %s", uv_strerror(status));
		return;
	}
	c = xcalloc(1, sizeof(*c));
	if ((r = uv_tcp_init(listener->loop, &c->c_tcp)) != 0) {
		log_warnx("api: uv_tcp_init: %s", uv_strerror(r));
		free(c);
		return;
	}
	LIST_INSERT_HEAD(&api.conns, c, c_entry);
	api.nconns++;
	if ((r = uv_accept(listener, (uv_stream_t *)&c->c_tcp)) != 0) {
		log_warnx("api: accept: %s", uv_strerror(r));
		uv_close((uv_handle_t *)&c->c_tcp, api_conn_close_cb);
		return;
	}
	if (api.nconns > api.lim.al_max_conns || api.stopping) {
		/* One line now and then, not one per refused connection. */
		api.refused++;
		if (!api.stopping && util_mono_ms() - api.refused_logged_ms >=
		    API_LOG_EVERY_MS) {
			log_warnx("api: %zu connections open, the most allowed;"
			    " %llu new ones closed so far", api.nconns - 1,
			    (unsigned long long)api.refused);
			api.refused_logged_ms = util_mono_ms();
		}
		uv_close((uv_handle_t *)&c->c_tcp, api_conn_close_cb);
		return;
	}
	uv_tcp_nodelay(&c->c_tcp, 1);
	sock = h2o_uv_socket_create((uv_stream_t *)&c->c_tcp,
	    api_conn_close_cb);
	h2o_accept(&api.accept_ctx, sock);
}

static int
api_check_routes(const struct api_route *routes, size_t n, char **cause)
{
	const struct api_route	*r;
	const char		*p, *q;
	size_t			 i, j, len, nparams;

	for (i = 0; i < n; i++) {
		r = &routes[i];
		if (r->ar_method == NULL || r->ar_pattern == NULL ||
		    r->ar_fn == NULL) {
			xasprintf(cause, "route %zu: missing method, pattern "
			    "or handler", i);
			return (-1);
		}
		if (*r->ar_method == '\0' ||
		    strspn(r->ar_method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") !=
		    strlen(r->ar_method)) {
			xasprintf(cause, "route %zu: bad method '%s'", i,
			    r->ar_method);
			return (-1);
		}
		/* Refuse by default: a route names who may call it. */
		if (r->ar_scope != API_PUBLIC && r->ar_scope != API_PLATFORM &&
		    r->ar_scope != API_MEMBER) {
			xasprintf(cause, "route %s %s declares no scope",
			    r->ar_method, r->ar_pattern);
			return (-1);
		}
		if ((r->ar_scope == API_PUBLIC) != (r->ar_perm == NULL)) {
			xasprintf(cause, "route %s %s: a public route has no "
			    "permission and only a public one", r->ar_method,
			    r->ar_pattern);
			return (-1);
		}
		if (r->ar_member != NULL && r->ar_scope != API_MEMBER) {
			xasprintf(cause, "route %s %s names a member but is "
			    "not a member route", r->ar_method, r->ar_pattern);
			return (-1);
		}
		if (*r->ar_pattern != '/') {
			xasprintf(cause, "route %s %s: the pattern must start "
			    "with '/'", r->ar_method, r->ar_pattern);
			return (-1);
		}
		nparams = 0;
		for (p = r->ar_pattern + 1; ; p = q + 1) {
			len = strcspn(p, "/");
			q = p + len;
			if (memchr(p, '{', len) != NULL ||
			    memchr(p, '}', len) != NULL) {
				if (len < 3 || p[0] != '{' || p[len - 1] != '}' ||
				    strspn(p + 1, "abcdefghijklmnopqrstuvwxyz"
				    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") !=
				    len - 2) {
					xasprintf(cause, "route %s %s: bad "
					    "{param} segment", r->ar_method,
					    r->ar_pattern);
					return (-1);
				}
				if (++nparams > API_MAX_PARAMS) {
					xasprintf(cause, "route %s %s: more "
					    "than %d parameters", r->ar_method,
					    r->ar_pattern, API_MAX_PARAMS);
					return (-1);
				}
			}
			if (*q == '\0')
				break;
		}
		for (j = 0; j < i; j++) {
			if (strcmp(routes[j].ar_method, r->ar_method) == 0 &&
			    strcmp(routes[j].ar_pattern, r->ar_pattern) == 0) {
				xasprintf(cause, "route %s %s: listed twice",
				    r->ar_method, r->ar_pattern);
				return (-1);
			}
		}
	}
	return (0);
}

static int
api_parse_addr(const char *addr, int port, struct sockaddr_storage *ss,
    char **cause)
{
	char	 buf[INET6_ADDRSTRLEN + 2];
	size_t	 len;

	memset(ss, 0, sizeof(*ss));
	if (port < 0 || port > 65535) {
		xasprintf(cause, "bad port %d", port);
		return (-1);
	}
	len = strlen(addr);
	if (len >= 2 && addr[0] == '[' && addr[len - 1] == ']' &&
	    len - 2 < sizeof(buf)) {
		memcpy(buf, addr + 1, len - 2);
		buf[len - 2] = '\0';
		addr = buf;
	}
	if (uv_ip4_addr(addr, port, (struct sockaddr_in *)ss) == 0)
		return (0);
	if (uv_ip6_addr(addr, port, (struct sockaddr_in6 *)ss) == 0)
		return (0);
	xasprintf(cause, "'%s' is not an IPv4 or IPv6 address", addr);
	return (-1);
}

/* Start the HTTPS API on the loop (see http.h). */
int
api_start(uv_loop_t *loop, const char *addr, int port, SSL_CTX *ssl,
    const struct api_route *routes, size_t nroutes,
    const struct api_hooks *hooks, char **cause)
{
	struct sockaddr_storage	 ss;
	h2o_hostconf_t		*host;
	h2o_pathconf_t		*pathconf;
	h2o_handler_t		*handler;
	h2o_filter_t		*filter;
	int			 r;

	if (ssl == NULL) {
		*cause = xstrdup("the API server needs a TLS context");
		return (-1);
	}
	if (api_check_routes(routes, nroutes, cause) == -1)
		return (-1);
	if (api_parse_addr(addr, port, &ss, cause) == -1)
		return (-1);
	if (api.running || api.lstate != API_LISTENER_NONE) {
		*cause = xstrdup("the API server is already running (or "
		    "still stopping)");
		return (-1);
	}

	if ((r = uv_tcp_init(loop, &api.listener)) != 0) {
		xasprintf(cause, "uv_tcp_init: %s", uv_strerror(r));
		return (-1);
	}
	api.lstate = API_LISTENER_OPEN;
	if ((r = uv_tcp_bind(&api.listener, (struct sockaddr *)&ss, 0)) != 0 ||
	    (r = uv_listen((uv_stream_t *)&api.listener, API_BACKLOG,
	    api_accept_cb)) != 0) {
		xasprintf(cause, "listen on %s port %d: %s", addr, port,
		    uv_strerror(r));
		api.lstate = API_LISTENER_CLOSING;
		uv_close((uv_handle_t *)&api.listener, api_listener_close_cb);
		return (-1);
	}

	api.routes = routes;
	api.nroutes = nroutes;
	memset(&api.hooks, 0, sizeof(api.hooks));
	if (hooks != NULL)
		api.hooks = *hooks;
	api.ssl_ctx = ssl;
	LIST_INIT(&api.conns);
	api.nconns = 0;
	api.nstats = nroutes + 2;
	api.stats = xcalloc(api.nstats, sizeof(*api.stats));

	h2o_config_init(&api.config);
	/*
	 * h2o 2.2.5 reads a whole body before the handler (and so before
	 * authentication): it is told the limit of one request, which it
	 * checks against Content-Length before reading and against a chunked
	 * body as it comes. Larger bodies come in parts (parts.c).
	 */
	api.config.max_request_entity_size = api.lim.al_max_body;
	api.config.handshake_timeout = api.lim.al_handshake_ms;
	/* One timer from the first byte of a request to its last. */
	api.config.http1.req_timeout = api.lim.al_request_ms;
	/*
	 * HTTP/2 would let one connection hold 100 streams' bodies before
	 * any handler runs: no "PRI *" upgrade (and no ALPN is offered).
	 */
	api.config.http1.upgrade_to_http2 = 0;
	api.config.server_name = h2o_iovec_init(H2O_STRLIT("opsn"));
	host = h2o_config_register_host(&api.config,
	    h2o_iovec_init(H2O_STRLIT("default")), 65535);
	pathconf = h2o_config_register_path(host, "/", 0);
	handler = h2o_create_handler(pathconf, sizeof(*handler));
	handler->on_req = api_on_req;
	filter = h2o_create_filter(&host->fallback_path, sizeof(*filter));
	filter->on_setup_ostream = api_errfilter_setup;
	h2o_context_init(&api.ctx, loop, &api.config);

	memset(&api.accept_ctx, 0, sizeof(api.accept_ctx));
	api.accept_ctx.ctx = &api.ctx;
	api.accept_ctx.hosts = api.config.hosts;
	api.accept_ctx.ssl_ctx = ssl;

	uv_check_init(loop, &api.check);
	uv_check_start(&api.check, api_check_cb);
	uv_unref((uv_handle_t *)&api.check);
	api.check_open = 1;
	api.cut = 0;
	api.pressure = 0;
	ratelimit_configure(api.lim.al_rate, api.lim.al_burst);
	/* Copied: the caller's string need not outlive api_start(). */
	parts_init(loop, api.lim.al_staging);
	api.lim.al_staging = NULL;
	api.refused = 0;
	api.running = 1;
	api.stopping = 0;
	api.gen++;
	api.loop_thread = uv_thread_self();
	log_info("api: listening on %s port %d", addr, api_port());
	return (0);
}

/*
 * Stop the API: close the listener and end every connection. The
 * connections are shut down at the socket (shutdown(2)), so h2o sees EOF
 * and closes them through its own paths; h2o is disposed of once the last
 * one is gone (api_maybe_dispose), which needs the loop to keep running.
 * Called from a handler, the caller's own reply is lost with its socket.
 */
void
api_stop(void)
{
	struct api_conn	*c;
	uv_os_fd_t	 fd;

	if (!api.running || api.stopping)
		return;
	api.stopping = 1;
	if (api.lstate == API_LISTENER_OPEN) {
		api.lstate = API_LISTENER_CLOSING;
		uv_close((uv_handle_t *)&api.listener, api_listener_close_cb);
	}
	if (api.check_open && !uv_is_closing((uv_handle_t *)&api.check))
		uv_close((uv_handle_t *)&api.check, api_check_close_cb);
	LIST_FOREACH(c, &api.conns, c_entry) {
		if (uv_fileno((uv_handle_t *)&c->c_tcp, &fd) == 0)
			(void)shutdown(fd, SHUT_RDWR);
	}
}

/* The TCP port the API listens on, or -1 if it does not. */
int
api_port(void)
{
	struct sockaddr_storage	 ss;
	int			 len = sizeof(ss);

	if (api.lstate != API_LISTENER_OPEN ||
	    uv_tcp_getsockname(&api.listener, (struct sockaddr *)&ss,
	    &len) != 0)
		return (-1);
	if (ss.ss_family == AF_INET)
		return (ntohs(((struct sockaddr_in *)&ss)->sin_port));
	if (ss.ss_family == AF_INET6)
		return (ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
	return (-1);
}

/* Set the largest request body accepted (default 1 MiB). */
void
api_set_max_body(size_t n)
{
	api.lim.al_max_body = n;
	if (api.running)
		api.config.max_request_entity_size = n;
}

/* Set the limits; zero fields keep their defaults (see http.h). */
void
api_configure(const struct api_limits *l)
{
	api.lim.al_max_body = l->al_max_body != 0 ? l->al_max_body :
	    API_MAX_BODY_DEFAULT;
	api.lim.al_max_conns = l->al_max_conns != 0 ? l->al_max_conns :
	    API_MAX_CONNS_DEFAULT;
	api.lim.al_handshake_ms = l->al_handshake_ms != 0 ?
	    l->al_handshake_ms : API_HANDSHAKE_MS;
	api.lim.al_request_ms = l->al_request_ms != 0 ? l->al_request_ms :
	    API_REQUEST_MS;
	api.lim.al_rate = l->al_rate != 0 ? l->al_rate : API_RATE_DEFAULT;
	api.lim.al_burst = l->al_burst != 0 ? l->al_burst : API_BURST_DEFAULT;
	api.lim.al_staging = l->al_staging;
	api.lim.al_max_buffered = l->al_max_buffered != 0 ?
	    l->al_max_buffered : API_MAX_BUFFERED;
	/* Room for a few whole requests at least. */
	if (api.lim.al_max_buffered < 4 * api.lim.al_max_body)
		api.lim.al_max_buffered = 4 * api.lim.al_max_body;
}

/* The API's families for GET /metrics (see http.h). */
void
api_metrics(struct prom *pr)
{
	const struct api_route	*r;
	struct api_stat		*st;
	char			*m, *p;
	uint64_t		 cum;
	size_t			 i, b;
	int			 c;

	prom_family(pr, "opsn_api_requests_total", "counter",
	    "API requests by route and status class.");
	for (i = 0; i < api.nstats; i++) {
		r = api_route_at(i);
		m = prom_label(r != NULL ? r->ar_method : "*");
		p = prom_label(r != NULL ? r->ar_pattern : "unmatched");
		for (c = 0; c < API_NCLASS; c++)
			if (api.stats[i].st_class[c] != 0)
				prom_add(pr, "opsn_api_requests_total{method="
				    "\"%s\",route=\"%s\",status=\"%dxx\"} %llu\n",
				    m, p, c + 1, (unsigned long long)
				    api.stats[i].st_class[c]);
		free(m);
		free(p);
	}
	prom_family(pr, "opsn_api_request_duration_seconds", "histogram",
	    "Time from a request's arrival to its reply, by route.");
	for (i = 0; i < api.nstats; i++) {
		st = &api.stats[i];
		if (st->st_timed == 0 || (r = api_route_at(i)) == NULL)
			continue;
		m = prom_label(r->ar_method);
		p = prom_label(r->ar_pattern);
		for (b = 0, cum = 0; b < API_NBUCKETS; b++) {
			cum += st->st_bucket[b];
			prom_add(pr, "opsn_api_request_duration_seconds_bucket{"
			    "method=\"%s\",route=\"%s\",le=\"%g\"} %llu\n", m, p,
			    api_buckets[b], (unsigned long long)cum);
		}
		prom_add(pr, "opsn_api_request_duration_seconds_bucket{method="
		    "\"%s\",route=\"%s\",le=\"+Inf\"} %llu\n"
		    "opsn_api_request_duration_seconds_sum{method=\"%s\","
		    "route=\"%s\"} %.9f\n"
		    "opsn_api_request_duration_seconds_count{method=\"%s\","
		    "route=\"%s\"} %llu\n", m, p,
		    (unsigned long long)st->st_timed, m, p,
		    (double)st->st_ns / 1e9, m, p,
		    (unsigned long long)st->st_timed);
		free(m);
		free(p);
	}
}

static void
api_openapi_add(json_t *paths, const struct api_route *r)
{
	json_t		*item, *op, *params;
	const char	*p, *q;
	char		 method[16];
	size_t		 i, len;

	if ((item = json_object_get(paths, r->ar_pattern)) == NULL) {
		item = json_object();
		json_object_set_new(paths, r->ar_pattern, item);
	}
	for (i = 0; r->ar_method[i] != '\0' && i < sizeof(method) - 1; i++)
		method[i] = tolower((unsigned char)r->ar_method[i]);
	method[i] = '\0';

	params = json_array();
	for (p = r->ar_pattern; (p = strchr(p, '{')) != NULL; p = q) {
		q = strchr(p, '}');
		len = q - p - 1;
		json_array_append_new(params, json_pack("{s:s%,s:s,s:b,s:{s:s}}",
		    "name", p + 1, len, "in", "path", "required", 1,
		    "schema", "type", "string"));
	}
	op = json_pack("{s:s,s:{s:{s:s}}}",
	    "summary", r->ar_summary != NULL ? r->ar_summary : "",
	    "responses", "default", "description",
	    "A JSON document, or {\"error\":{\"code\",\"message\"}}");
	if (json_array_size(params) > 0)
		json_object_set_new(op, "parameters", params);
	else
		json_decref(params);
	if (r->ar_perm != NULL) {
		json_object_set_new(op, "security",
		    json_pack("[{s:[]}]", "bearer"));
		json_object_set_new(op, "x-permission",
		    json_string(r->ar_perm));
	}
	json_object_set_new(op, "x-scope", json_string(
	    r->ar_scope == API_PUBLIC ? "public" : r->ar_scope ==
	    API_PLATFORM ? "platform" : "member"));
	if (r->ar_member != NULL)
		json_object_set_new(op, "x-member", json_string(r->ar_member));
	/* Over x-max-body-per-request, a body comes in parts (http.h). */
	json_object_set_new(op, "x-max-body",
	    json_integer((json_int_t)api_route_max(r)));
	json_object_set_new(item, method, op);
}

/* The OpenAPI 3.0.3 document for the route table (caller owns). */
json_t *
api_openapi(void)
{
	json_t	*doc, *paths;
	size_t	 i;

	paths = json_object();
	for (i = 0; i < api.nroutes; i++)
		api_openapi_add(paths, &api.routes[i]);
	/* A table row for the same call shadows the built-in one. */
	for (i = 0; i < api.nroutes; i++) {
		if (strcmp(api.routes[i].ar_method, api_builtin.ar_method) == 0 &&
		    strcmp(api.routes[i].ar_pattern,
		    api_builtin.ar_pattern) == 0)
			break;
	}
	if (i == api.nroutes)
		api_openapi_add(paths, &api_builtin);

	doc = json_pack("{s:s,s:{s:s,s:s},s:o,s:{s:{s:{s:s,s:s}}}}",
	    "openapi", "3.0.3",
	    "info", "title", "opsn controller API", "version", OPSN_VERSION,
	    "paths", paths,
	    "components", "securitySchemes", "bearer", "type", "http",
	    "scheme", "bearer");
	if (doc == NULL)
		fatalx("api: json_pack openapi");
	json_object_set_new(doc, "x-max-body-per-request",
	    json_integer((json_int_t)api.lim.al_max_body));
	return (doc);
}

static void
api_openapi_cb(struct api_req *ar)
{
	api_reply_json(ar, 200, api_openapi());
}

/* A path parameter by name (see http.h). */
const char *
api_param(struct api_req *ar, const char *name)
{
	size_t	 i, len = strlen(name);

	for (i = 0; i < ar->r_nparams; i++) {
		if (ar->r_params[i].p_namelen == len &&
		    memcmp(ar->r_params[i].p_name, name, len) == 0)
			return (ar->r_params[i].p_value);
	}
	return (NULL);
}

static void
api_query_parse(struct api_req *ar)
{
	h2o_req_t	*req = ar->r_req;
	const char	*q, *end, *amp, *eq, *v;
	size_t		 n, klen, vlen, dlen;
	char		*key, *value;

	ar->r_qparsed = 1;
	if (req->query_at == SIZE_MAX)
		return;
	q = req->path.base + req->query_at + 1;
	end = req->path.base + req->path.len;
	for (n = 1, amp = q; (amp = memchr(amp, '&', end - amp)) != NULL;
	    amp++)
		n++;
	if (n > API_MAX_QUERY)
		n = API_MAX_QUERY;
	ar->r_query = h2o_mem_alloc_pool(&req->pool, n * sizeof(*ar->r_query));

	for (; q < end && ar->r_nquery < n; q = amp + 1) {
		if ((amp = memchr(q, '&', end - q)) == NULL)
			amp = end;
		if (amp == q)
			continue;
		if ((eq = memchr(q, '=', amp - q)) != NULL) {
			klen = eq - q;
			v = eq + 1;
		} else {
			klen = amp - q;
			v = amp;
		}
		vlen = amp - v;
		key = h2o_mem_alloc_pool(&req->pool, klen + 1);
		value = h2o_mem_alloc_pool(&req->pool, vlen + 1);
		if (api_pct_decode(q, klen, 1, key, &dlen) == -1 ||
		    api_pct_decode(v, vlen, 1, value, &dlen) == -1)
			continue;	/* a malformed pair is ignored */
		ar->r_query[ar->r_nquery].kv_key = key;
		ar->r_query[ar->r_nquery].kv_value = value;
		ar->r_nquery++;
	}
}

/* A query parameter, percent-decoded (see http.h). */
const char *
api_query(struct api_req *ar, const char *name)
{
	size_t	 i;

	if (!ar->r_qparsed)
		api_query_parse(ar);
	for (i = 0; i < ar->r_nquery; i++) {
		if (strcmp(ar->r_query[i].kv_key, name) == 0)
			return (ar->r_query[i].kv_value);
	}
	return (NULL);
}

/* Set a query parameter for the handler (see http.h). */
void
api_set_query(struct api_req *ar, const char *name, const char *value)
{
	struct api_kv	*q;
	size_t		 i;

	if (!ar->r_qparsed)
		api_query_parse(ar);
	for (i = 0; i < ar->r_nquery; i++) {
		if (strcmp(ar->r_query[i].kv_key, name) == 0) {
			ar->r_query[i].kv_value = api_pool_strndup(ar, value,
			    strlen(value));
			return;
		}
	}
	q = h2o_mem_alloc_pool(&ar->r_req->pool, (ar->r_nquery + 1) *
	    sizeof(*q));
	if (ar->r_nquery > 0)
		memcpy(q, ar->r_query, ar->r_nquery * sizeof(*q));
	q[ar->r_nquery].kv_key = api_pool_strndup(ar, name, strlen(name));
	q[ar->r_nquery].kv_value = api_pool_strndup(ar, value, strlen(value));
	ar->r_query = q;
	ar->r_nquery++;
}

/* Replace the body the handler reads (copied; see http.h). */
void
api_set_body(struct api_req *ar, const void *body, size_t len)
{
	char	*copy = h2o_mem_alloc_pool(&ar->r_req->pool, len + 1);

	memcpy(copy, body, len);
	copy[len] = '\0';
	ar->r_req->entity = h2o_iovec_init(copy, len);
}

/* A request header by name, case-insensitive (see http.h). */
const char *
api_header(struct api_req *ar, const char *name)
{
	h2o_req_t	*req = ar->r_req;
	h2o_iovec_t	*v;
	char		 lname[API_MAX_HDRNAME];
	size_t		 i, len = strlen(name);
	ssize_t		 at;

	if (req == NULL || len == 0 || len >= sizeof(lname))
		return (NULL);
	for (i = 0; i < len; i++)
		lname[i] = tolower((unsigned char)name[i]);
	if ((at = h2o_find_header_by_str(&req->headers, lname, len, -1)) == -1)
		return (NULL);
	v = &req->headers.entries[at].value;
	if (memchr(v->base, '\0', v->len) != NULL)
		return (NULL);
	return (api_pool_strndup(ar, v->base, v->len));
}

/* The host the client asked for (Host, or HTTP/2's :authority). */
const char *
api_host(struct api_req *ar)
{
	h2o_req_t	*req = ar->r_req;

	if (req == NULL || req->authority.base == NULL ||
	    memchr(req->authority.base, '\0', req->authority.len) != NULL)
		return (NULL);
	return (api_pool_strndup(ar, req->authority.base, req->authority.len));
}

/* The authenticated caller, or NULL on a public route. */
const struct api_principal *
api_principal(struct api_req *ar)
{
	return (ar->r_authed ? &ar->r_principal : NULL);
}

/* Name who a self-authenticating public route found (see http.h). */
void
api_set_principal(struct api_req *ar, const struct api_principal *p)
{
	ar->r_principal = *p;
	ar->r_principal.ap_name[sizeof(ar->r_principal.ap_name) - 1] = '\0';
	ar->r_principal.ap_role[sizeof(ar->r_principal.ap_role) - 1] = '\0';
	ar->r_authed = 1;
}

/* The client's address (see http.h). */
void
api_peer(struct api_req *ar, char *buf, size_t len)
{
	struct sockaddr_storage	 ss;
	h2o_conn_t		*conn;

	strlcpy(buf, "?", len);
	if (ar->r_req == NULL || (conn = ar->r_req->conn) == NULL ||
	    conn->callbacks->get_peername == NULL ||
	    conn->callbacks->get_peername(conn, (struct sockaddr *)&ss) == 0)
		return;
	if (ss.ss_family == AF_INET)
		uv_ip4_name((struct sockaddr_in *)&ss, buf, len);
	else if (ss.ss_family == AF_INET6)
		uv_ip6_name((struct sockaddr_in6 *)&ss, buf, len);
}

/* The request id (see http.h). */
const char *
api_request_id(struct api_req *ar)
{
	return (ar->r_id);
}

/*
 * h2o 2.2.5 does not export the SSL object of a socket: it sits in the
 * private struct st_h2o_socket_ssl_t (lib/common/socket.c), whose first two
 * members are the SSL_CTX and the SSL (checked in the disassembly of the
 * installed libh2o.so.0.13.5: h2o_socket_ssl_handshake stores them at
 * offsets 0 and 8). The SSL_CTX member is compared with ours before the SSL
 * is used, so a different layout yields NULL rather than a wild pointer.
 */
struct api_h2o_ssl_head {
	SSL_CTX	*ssl_ctx;
	SSL	*ossl;
};

/* The verified client certificate (see http.h). */
X509 *
api_client_cert(struct api_req *ar)
{
	h2o_conn_t			*conn;
	h2o_socket_t			*sock;
	const struct api_h2o_ssl_head	*head;
	X509				*x;

	if (ar->r_req == NULL)
		return (NULL);
	conn = ar->r_req->conn;
	if (conn == NULL || conn->callbacks == NULL ||
	    conn->callbacks->get_socket == NULL)
		return (NULL);
	if ((sock = conn->callbacks->get_socket(conn)) == NULL ||
	    sock->ssl == NULL)
		return (NULL);
	head = (const struct api_h2o_ssl_head *)sock->ssl;
	if (head->ssl_ctx != api.ssl_ctx || head->ossl == NULL)
		return (NULL);
	if ((x = SSL_get0_peer_certificate(head->ossl)) == NULL ||
	    SSL_get_verify_result(head->ossl) != X509_V_OK)
		return (NULL);
	return (x);
}

/* The raw request body (see http.h). */
const void *
api_body(struct api_req *ar, size_t *len)
{
	h2o_req_t	*req = ar->r_req;

	if (req == NULL || req->entity.base == NULL) {
		*len = 0;
		return ("");
	}
	*len = req->entity.len;
	return (req->entity.base);
}

/* A body loaded from its parts: the request pool frees it. */
void
api_set_entity_owned(struct api_req *ar, char *body, size_t len)
{
	void	**slot;

	slot = h2o_mem_alloc_shared(&ar->r_req->pool, sizeof(*slot),
	    api_free_slot_cb);
	*slot = body;
	ar->r_req->entity = h2o_iovec_init(body, len);
}

/* An API_BODY_FILE route's body sent in parts (see http.h). */
char *
api_body_file(struct api_req *ar, uint64_t *size, char sha256[65])
{
	char	*path = ar->r_file;

	if (path == NULL)
		return (NULL);
	ar->r_file = NULL;
	*size = ar->r_file_size;
	memcpy(sha256, ar->r_file_sha, 65);
	return (path);
}

/* The body as a JSON object, or NULL after a 400 reply (see http.h). */
json_t *
api_body_json(struct api_req *ar)
{
	const void	*body;
	size_t		 len;
	json_t		*j;
	json_error_t	 err;

	/* The route's body limit was checked before the handler ran. */
	body = api_body(ar, &len);
	if ((j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err)) == NULL) {
		api_reply_error(ar, 400, "bad_json", "line %d column %d: %s",
		    err.line, err.column, err.text);
		return (NULL);
	}
	if (!json_is_object(j)) {
		json_decref(j);
		api_reply_error(ar, 400, "bad_json",
		    "the body must be a JSON object");
		return (NULL);
	}
	return (j);
}

/* Add a response header, copied into the request (see http.h). */
void
api_set_header(struct api_req *ar, const char *name, const char *value)
{
	h2o_req_t	*req = ar->r_req;
	h2o_iovec_t	 n, v;
	size_t		 i;

	if (req == NULL || ar->r_replied)
		return;
	/* HTTP/2 wants lower-case names; h2o keys its tokens that way. */
	n = h2o_strdup(&req->pool, name, SIZE_MAX);
	for (i = 0; i < n.len; i++)
		n.base[i] = tolower((unsigned char)n.base[i]);
	v = h2o_strdup(&req->pool, value, SIZE_MAX);
	h2o_add_header_by_str(&req->pool, &req->res.headers, n.base, n.len, 1,
	    NULL, v.base, v.len);
}

/* Free a malloc()ed buffer linked to a request pool. */
static void
api_free_slot_cb(void *p)
{
	free(*(void **)p);
}

/* Hand the reply to h2o; body is the pool's or linked to it. */
static void
api_emit(h2o_req_t *req, const char *id, int status, const char *ctype,
    h2o_iovec_t buf)
{
	static h2o_generator_t	 generator = { NULL, NULL };
	h2o_iovec_t		 ct;

	ct = h2o_strdup(&req->pool, ctype, SIZE_MAX);
	req->res.status = status;
	req->res.reason = api_reason(status);
	req->res.content_length = buf.len;
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE,
	    NULL, ct.base, ct.len);
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL,
	    NULL, H2O_STRLIT("no-store"));
	h2o_add_header_by_str(&req->pool, &req->res.headers,
	    H2O_STRLIT("x-request-id"), 0, NULL, id, strlen(id));
	/* As h2o_send_inline(), which copies: HEAD gets the headers only. */
	h2o_start_response(req, &generator);
	if (h2o_memis(req->input.method.base, req->input.method.len,
	    H2O_STRLIT("HEAD")))
		h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
	else
		h2o_send(req, &buf, 1, H2O_SEND_STATE_FINAL);
}

/*
 * A reply held until the store's group transaction ends (api_hold): the
 * request pool links back to it, so a client gone meanwhile is noticed.
 */
struct api_held {
	TAILQ_ENTRY(api_held)	 h_entry;
	h2o_req_t		*h_req;		/* NULL once h2o disposed of it */
	char			 h_id[API_MAX_ID + 1];
	size_t			 h_stat;
	uint64_t		 h_t0;		/* arrival: latency counts the hold */
	int			 h_status;
	const char		*h_ctype;	/* in the request pool */
	h2o_iovec_t		 h_buf;		/* in, or linked to, the pool */
	struct api_held		**h_link;	/* in the pool, back to us */
};
TAILQ_HEAD(api_helds, api_held);

static struct {
	int			 on;
	struct api_helds	 list;
	uint64_t		 writes;	/* api_held_writes() */
} api_holding = { 0, TAILQ_HEAD_INITIALIZER(api_holding.list), 0 };

static void
api_held_dispose(void *p)
{
	struct api_held	**slot = p;

	if (*slot != NULL)
		(*slot)->h_req = NULL;
}

/* Replies to writes held so far (see http.h). */
uint64_t
api_held_writes(void)
{
	return (api_holding.writes);
}

/* Hold every reply from now until api_release() (see http.h). */
void
api_hold(void)
{
	api_holding.on = 1;
}

/*
 * Send the held replies (ok), or instead of each a 500 saying its change
 * was not stored (the transaction it joined failed).
 */
void
api_release(int ok)
{
	struct api_held	*h;
	json_t		*j;
	char		*s;

	api_holding.on = 0;
	while ((h = TAILQ_FIRST(&api_holding.list)) != NULL) {
		TAILQ_REMOVE(&api_holding.list, h, h_entry);
		if (h->h_req == NULL) {
			free(h);
			continue;
		}
		*h->h_link = NULL;
		if (!ok) {
			j = json_pack("{s:{s:s,s:s}}", "error", "code",
			    "internal", "message", "the change could not be "
			    "stored (the database refused the commit)");
			s = api_dump(j);
			h->h_req->res.headers = (h2o_headers_t){ NULL, 0, 0 };
			h->h_status = 500;
			h->h_ctype = "application/json";
			h->h_buf = h2o_strdup(&h->h_req->pool, s, SIZE_MAX);
			free(s);
		}
		api_count(h->h_stat, h->h_status, h->h_t0);
		api_emit(h->h_req, h->h_id, h->h_status, h->h_ctype, h->h_buf);
		free(h);
	}
}

/*
 * Send the whole reply. The body is copied into the request pool, or with
 * owned it is a malloc()ed buffer (consumed) the pool frees once h2o is
 * done with it: a large export is not copied again. While replies are
 * held, it waits in the list.
 */
static void
api_send(struct api_req *ar, int status, const char *ctype, const void *body,
    size_t len, int owned)
{
	h2o_req_t		*req = ar->r_req;
	h2o_iovec_t		 buf;
	struct api_held		*h, **link;
	void			**slot;

	if (req == NULL || ar->r_replied) {
		log_warnx("api: request %s: %s reply (%d) ignored", ar->r_id,
		    req == NULL ? "stand-in's" : "second", status);
		if (owned)
			free((void *)body);
		return;
	}
	ar->r_replied = 1;
	log_debug("api: %.*s %.*s -> %d (request %s)", (int)req->method.len,
	    req->method.base, (int)(req->path.len > 256 ? 256 : req->path.len),
	    req->path.base, status, ar->r_id);
	if (owned) {
		slot = h2o_mem_alloc_shared(&req->pool, sizeof(*slot),
		    api_free_slot_cb);
		*slot = (void *)body;
		buf = h2o_iovec_init(body, len);
	} else
		buf = h2o_strdup(&req->pool, body, len);
#ifdef OPSN_FUZZ
	api_count(ar->r_stat, status, ar->r_t0);
	api_fuzz_status = status;
	(void)buf;
	(void)h;
	(void)link;
	return;
#endif
	if (!api_holding.on) {
		api_count(ar->r_stat, status, ar->r_t0);
		api_emit(req, ar->r_id, status, ctype, buf);
		return;
	}
	h = xcalloc(1, sizeof(*h));
	h->h_req = req;
	memcpy(h->h_id, ar->r_id, sizeof(h->h_id));
	h->h_stat = ar->r_stat;
	h->h_t0 = ar->r_t0;
	h->h_status = status;
	h->h_ctype = h2o_strdup(&req->pool, ctype, SIZE_MAX).base;
	h->h_buf = buf;
	link = h2o_mem_alloc_shared(&req->pool, sizeof(*link),
	    api_held_dispose);
	*link = h;
	h->h_link = link;
	TAILQ_INSERT_TAIL(&api_holding.list, h, h_entry);
	if (!api_method_is(req, "GET") && !api_method_is(req, "HEAD"))
		api_holding.writes++;
}

/* Is a synchronous reply still allowed? Logs why not. */
static int
api_may_reply(struct api_req *ar, int status)
{
	if (ar->r_req == NULL) {
		log_warnx("api: request %s: a reply (%d) through a deferral's "
		    "stand-in is ignored", ar->r_id, status);
		return (0);
	}
	if (ar->r_deferred) {
		log_warnx("api: request %s: deferred, synchronous reply (%d) "
		    "ignored", ar->r_id, status);
		return (0);
	}
	if (ar->r_replied) {
		log_warnx("api: request %s: second reply (%d) ignored",
		    ar->r_id, status);
		return (0);
	}
	/* A write failed while the handler ran: never a success. */
	if (status < 400 && ar->r_in_handler && api.hooks.write_failures !=
	    NULL && api.hooks.write_failures(api.hooks.arg) != ar->r_failures) {
		log_warnx("api: request %s: a write failed, %d becomes 500",
		    ar->r_id, status);
		api_reply_error(ar, 500, "internal", "the change could not be "
		    "stored (request %s)", ar->r_id);
		return (0);
	}
	return (1);
}

/* The JSON text of a reply (caller frees); j is consumed. */
static char *
api_dump(json_t *j)
{
	char	*s;

	s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (s == NULL)
		fatalx("api: json_dumps");
	return (s);
}

/* {"error":{"code":code,"message":...}} */
static json_t *
api_error_doc(int status, const char *reqid, const char *code,
    const char *fmt, va_list ap)
{
	char	*msg;
	json_t	*j;

	xvasprintf(&msg, fmt, ap);
	j = json_pack("{s:{s:s,s:o}}", "error", "code", code,
	    "message", api_json_str(msg));
	free(msg);
	if (j == NULL)
		fatalx("api: json_pack error");
	/* A server error is ours: the id finds it in the controller's log. */
	if (status >= 500 && reqid != NULL && *reqid != '\0')
		json_object_set_new(json_object_get(j, "error"), "request_id",
		    json_string(reqid));
	return (j);
}

/* Reply with a JSON document, consumed (see http.h). */
void
api_reply_json(struct api_req *ar, int status, json_t *j)
{
	char	*s;

	if (!api_may_reply(ar, status)) {
		json_decref(j);
		return;
	}
	if (j == NULL) {
		log_warnx("api: request %s: handler replied with no document",
		    ar->r_id);
		api_reply_error(ar, 500, "internal",
		    "the server failed to answer (request %s)", ar->r_id);
		return;
	}
	s = api_dump(j);
	api_send(ar, status, "application/json", s, strlen(s), 1);
}

/* Reply with a JSON error (see http.h). */
void
api_reply_error(struct api_req *ar, int status, const char *code,
    const char *fmt, ...)
{
	va_list	 ap;
	json_t	*j;

	va_start(ap, fmt);
	j = api_error_doc(status, ar->r_id, code, fmt, ap);
	va_end(ap);
	api_reply_json(ar, status, j);
}

/* Reply with a file streamed by h2o, ranges included (see http.h). */
int
api_reply_file(struct api_req *ar, const char *path, const char *ctype)
{
	h2o_req_t	*req = ar->r_req;

	if (!api_may_reply(ar, 200))
		return (-1);
#ifdef OPSN_FUZZ
	api_reply_raw(ar, 200, ctype, path, strlen(path));
	return (0);
#endif
	/* no-store, unless the caller said how the file may be cached. */
	if (h2o_find_header(&req->res.headers, H2O_TOKEN_CACHE_CONTROL,
	    -1) == -1)
		h2o_add_header(&req->pool, &req->res.headers,
		    H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
	h2o_add_header_by_str(&req->pool, &req->res.headers,
	    H2O_STRLIT("x-request-id"), 0, NULL, ar->r_id, strlen(ar->r_id));
	if (h2o_file_send(req, 200, "OK", path, h2o_iovec_init(ctype,
	    strlen(ctype)), 0) != 0) {
		/* Nothing was sent: take the headers back for the error. */
		req->res.headers = (h2o_headers_t){ NULL, 0, 0 };
		return (-1);
	}
	ar->r_replied = 1;
	api_count(ar->r_stat, 200, ar->r_t0);
	log_debug("api: %.*s %.*s -> file %s (request %s)",
	    (int)req->method.len, req->method.base,
	    (int)(req->path.len > 256 ? 256 : req->path.len), req->path.base,
	    path, ar->r_id);
	return (0);
}

/* Reply with raw bytes, copied (see http.h). */
void
api_reply_raw(struct api_req *ar, int status, const char *ctype,
    const void *body, size_t len)
{
	if (api_may_reply(ar, status))
		api_send(ar, status, ctype, body, len, 0);
}

/* Reply with an owned body, not copied (see http.h). */
void
api_reply_take(struct api_req *ar, int status, const char *ctype,
    char *body, size_t len)
{
	if (api_may_reply(ar, status))
		api_send(ar, status, ctype, body, len, 1);
	else
		free(body);
}

/* ---- deferred replies ------------------------------------------------ */

/* h2o cleared the request pool: tell the link's holder, if still linked. */
static void
api_link_dispose(void *p)
{
	struct api_link	*l = p;

	if (l->l_arg != NULL)
		l->l_gone(l->l_arg);
}

/* A link to the request, cut by the holder or by h2o (see internal.h). */
struct api_link *
api_link_new(struct api_req *ar, void (*gone)(void *), void *arg)
{
	struct api_link	*l;

	l = h2o_mem_alloc_shared(&ar->r_req->pool, sizeof(*l),
	    api_link_dispose);
	l->l_gone = gone;
	l->l_arg = arg;
	return (l);
}

/* The request is gone: the deferral's handle stays, its reply only frees. */
static void
api_defer_gone_cb(void *arg)
{
	struct api_defer	*d = arg;

	log_debug("api: request %s: gone before its deferred reply",
	    d->d_shadow.r_id);
	d->d_ar = NULL;
	d->d_link = NULL;
}

/* Answer a request later (see http.h). */
struct api_defer *
api_defer(struct api_req *ar)
{
	struct api_defer	*d;

	d = xcalloc(1, sizeof(*d));
	/* What outlives the request: who asked, the id, the stats row. */
	d->d_shadow.r_route = ar->r_route;
	d->d_shadow.r_stat = ar->r_stat;
	d->d_shadow.r_t0 = ar->r_t0;
	d->d_shadow.r_authed = ar->r_authed;
	d->d_shadow.r_principal = ar->r_principal;
	d->d_shadow.r_qparsed = 1;
	memcpy(d->d_shadow.r_id, ar->r_id, sizeof(d->d_shadow.r_id));
	d->d_gen = api.gen;
	if (ar->r_req == NULL || ar->r_replied || ar->r_deferred) {
		/* A bug in the handler: its later reply only frees. */
		log_warnx("api: request %s: deferred after a reply, or twice",
		    ar->r_id);
		return (d);
	}
	d->d_link = api_link_new(ar, api_defer_gone_cb, d);
	d->d_ar = ar;
	ar->r_deferred = 1;
	return (d);
}

/* The stand-in request of a deferral (see http.h). */
struct api_req *
api_defer_req(struct api_defer *d)
{
	return (&d->d_shadow);
}

/* Is the deferred request gone? */
int
api_defer_gone(const struct api_defer *d)
{
	return (d->d_ar == NULL);
}

/* Add a response header to a deferred request (see http.h). */
void
api_defer_set_header(struct api_defer *d, const char *name, const char *value)
{
	if (d->d_ar != NULL)
		api_set_header(d->d_ar, name, value);
}

/*
 * Reply to a deferred request with an owned body, and free the handle.
 * h2o's state is not thread-safe: a reply from a worker thread would
 * corrupt it, so that is fatal at once rather than later.
 */
static void
api_defer_send(struct api_defer *d, int status, const char *ctype,
    char *body, size_t len)
{
	uv_thread_t	 self = uv_thread_self();

	if (!uv_thread_equal(&self, &api.loop_thread))
		fatalx("api: request %s: deferred reply off the loop thread",
		    d->d_shadow.r_id);
	if (d->d_ar != NULL) {
		d->d_link->l_arg = NULL;
		api_send(d->d_ar, status, ctype, body, len, 1);
	} else {
		/* Counted as a synchronous reply to a vanished peer is. */
		if (d->d_gen == api.gen && api.running)
			api_count(d->d_shadow.r_stat, status,
			    d->d_shadow.r_t0);
		log_debug("api: request %s: client gone, reply %d dropped",
		    d->d_shadow.r_id, status);
		free(body);
	}
	free(d);
}

/* Reply later with a JSON document, consumed (see http.h). */
void
api_defer_reply_json(struct api_defer *d, int status, json_t *j)
{
	char	*s;

	if (j == NULL) {
		log_warnx("api: request %s: deferred reply with no document",
		    d->d_shadow.r_id);
		api_defer_reply_error(d, 500, "internal",
		    "the server failed to answer (request %s)",
		    d->d_shadow.r_id);
		return;
	}
	s = api_dump(j);
	api_defer_send(d, status, "application/json", s, strlen(s));
}

/* Reply later with a JSON error (see http.h). */
void
api_defer_reply_error(struct api_defer *d, int status, const char *code,
    const char *fmt, ...)
{
	va_list	 ap;
	json_t	*j;

	va_start(ap, fmt);
	j = api_error_doc(status, api_request_id(api_defer_req(d)), code, fmt,
	    ap);
	va_end(ap);
	api_defer_reply_json(d, status, j);
}

/* Reply later with raw bytes, consumed (see http.h). */
void
api_defer_reply_raw(struct api_defer *d, int status, const char *ctype,
    char *body, size_t len)
{
	api_defer_send(d, status, ctype, body, len);
}

#ifdef OPSN_FUZZ
/* ---- fuzzing: requests without h2o's I/O ---------------------------- */

/* Serve routes to api_fuzz_call() only: nothing listens. */
void
api_fuzz_init(uv_loop_t *loop, const struct api_route *routes,
    size_t nroutes, const struct api_hooks *hooks)
{
	api.routes = routes;
	api.nroutes = nroutes;
	api.hooks = *hooks;
	api.nstats = nroutes + 2;
	api.stats = xcalloc(api.nstats, sizeof(*api.stats));
	api.loop_thread = uv_thread_self();
	api.running = 1;
	api.gen++;
	ratelimit_configure(-1, 1);
	parts_init(loop, NULL);
	h2o_config_init(&api.config);
	api.config.max_request_entity_size = api.lim.al_max_body;
}

/*
 * Route and run one request as h2o would have parsed it (path with its
 * query; auth is an Authorization value or NULL): the status replied, or
 * 0 if the reply is deferred or pending.
 */
int
api_fuzz_call(const char *method, const char *path, const char *auth,
    const void *body, size_t len)
{
	h2o_req_t	 req;
	const char	*q;

	memset(&req, 0, sizeof(req));
	h2o_mem_init_pool(&req.pool);
	req.input.method = req.method = h2o_iovec_init(method, strlen(method));
	req.input.path = req.path = h2o_iovec_init(path, strlen(path));
	req.query_at = (q = strchr(path, '?')) != NULL ? (size_t)(q - path) :
	    SIZE_MAX;
	if (auth != NULL)
		h2o_add_header(&req.pool, &req.headers,
		    H2O_TOKEN_AUTHORIZATION, NULL, auth, strlen(auth));
	if (body != NULL)
		req.entity = h2o_iovec_init(body, len);
	api_fuzz_status = 0;
	api_on_req(NULL, &req);
	/* As h2o disposing of the request: deferrals lose their link. */
	h2o_mem_clear_pool(&req.pool);
	return (api_fuzz_status);
}
#endif
