/*
 * The controller's HTTPS API: h2o on the controller's libuv loop, a route
 * table, bearer-token authentication and JSON errors
 * {"error":{"code":"...","message":"..."}}.
 */
#ifndef OPSN_HTTP_H
#define OPSN_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>
#include <jansson.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

struct api_req;

/* Who is calling: filled by the authenticate callback. */
struct api_principal {
	char	ap_name[128];	/* token name, or "node:NAME" */
	char	ap_role[32];	/* admin, operator, finance, auditor, node */
	int64_t	ap_tenant;	/* 0 = not scoped to a tenant */
};

typedef void (*api_handler)(struct api_req *);

/*
 * Who may call a route, beside its permission. Every route declares one:
 * the server refuses to start with a route that does not.
 */
enum api_scope {
	API_SCOPE_UNSET = 0,
	API_PUBLIC,		/* no token: health, OpenAPI */
	API_PLATFORM,		/* only tokens bound to no member */
	API_MEMBER,		/* a bound token only for its own member */
};

/*
 * One row per route. The pattern may hold {param} segments.
 *
 * A member route says where the request names its member (ar_member):
 *   "path:P", "query:P", "body:P"	 the member reference (id, INSEE
 *					 code or SIREN) in that place; for a
 *					 bound token it is implied when absent
 *   "sql:SELECT ..."			 the member owning the resource: the
 *					 tenant ids the query returns, its
 *					 :name parameters bound from the path,
 *					 the query string or the body
 *   NULL				 the route returns nothing that
 *					 belongs to a member (a catalogue)
 */
struct api_route {
	const char	*ar_method;	/* "GET", "POST", ... */
	const char	*ar_pattern;	/* "/v1/nodes/{name}" */
	const char	*ar_perm;	/* permission, NULL = no authentication */
	enum api_scope	 ar_scope;
	const char	*ar_member;	/* API_MEMBER: where the member is */
	api_handler	 ar_fn;
	const char	*ar_summary;	/* one line, for /v1/openapi.json */
	size_t		 ar_max_body;	/* 0: the server default (1 MiB) */
};

struct api_hooks {
	/*
	 * Check a bearer token; fill *p and return 0, or return -1 (the call
	 * gets 401 "unauthenticated").
	 */
	int	(*authenticate)(const char *token, struct api_principal *p,
		    void *arg);
	/*
	 * May p call route r? 0 yes; -1 no, after replying (403, or 404
	 * where a member must not learn that another's object exists).
	 */
	int	(*authorize)(struct api_req *, const struct api_principal *p,
		    const struct api_route *r, void *arg);
	void	*arg;
	/*
	 * A call without a bearer token but with a verified client
	 * certificate (an agent): fill *p and return 0, or -1 (401). May be
	 * NULL: certificates then authenticate nothing.
	 */
	int	(*authenticate_cert)(X509 *cert, struct api_principal *p,
		    void *arg);
};

/*
 * Listen on addr:port with TLS from ctx and serve the routes (the table is
 * not copied and must outlive the server). GET /v1/openapi.json is always
 * served, built from the table. -1 with *cause if the listen failed.
 */
int	api_start(uv_loop_t *, const char *addr, int port, SSL_CTX *ctx,
	    const struct api_route *, size_t nroutes, const struct api_hooks *,
	    char **cause);
/*
 * Stop listening and close client connections; h2o is disposed of once the
 * last one has closed, so the loop must keep running (a few iterations).
 */
void	api_stop(void);
/* The TCP port the API listens on (useful after port 0), or -1. */
int	api_port(void);
/* Set the largest request body accepted (default 1 MiB). */
void	api_set_max_body(size_t);
/* The OpenAPI 3.0.3 document built from the route table (caller owns). */
json_t	*api_openapi(void);
/*
 * Write the API's metrics: requests by route and status class, and the
 * latency of each route's replies (a histogram). Calls that matched no
 * route, and errors h2o answered itself, count as method "*", route
 * "unmatched".
 */
struct prom;
void	api_metrics(struct prom *);

/* A path parameter by name ("name" for {name}), or NULL. */
const char	*api_param(struct api_req *, const char *);
/* A query parameter, percent-decoded, or NULL (owned by the request). */
const char	*api_query(struct api_req *, const char *);
/*
 * Set a query parameter (copied), or a new body (copied), as the handler
 * will read them: the router's way of making a bound token's member
 * explicit.
 */
void	api_set_query(struct api_req *, const char *name, const char *value);
void	api_set_body(struct api_req *, const void *, size_t);
/* A request header, or NULL (owned by the request). */
const char	*api_header(struct api_req *, const char *);
/* The authenticated caller, or NULL on a public route. */
const struct api_principal *api_principal(struct api_req *);
/* The request id (also sent back as X-Request-Id). */
const char	*api_request_id(struct api_req *);
/*
 * The verified client certificate of the TLS connection, or NULL (borrowed:
 * valid until the reply).
 */
X509		*api_client_cert(struct api_req *);
/* Raw body. */
const void	*api_body(struct api_req *, size_t *len);
/*
 * Parse the body as a JSON object; on failure reply 400 "bad_json" with
 * jansson's line/column message and return NULL. Caller owns the result.
 */
json_t		*api_body_json(struct api_req *);

/* Add a response header (copied). */
void	api_set_header(struct api_req *, const char *name, const char *value);
/* Reply with a JSON document (consumed) and status. */
void	api_reply_json(struct api_req *, int status, json_t *);
/* Reply with {"error":{"code":code,"message":...}}. */
void	api_reply_error(struct api_req *, int status, const char *code,
	    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/*
 * Reply with a file, streamed by h2o (Range requests are honoured, so an
 * interrupted download resumes). -1 without replying if it cannot be opened.
 */
int	api_reply_file(struct api_req *, const char *path, const char *ctype);
/* Reply with raw bytes (copied) and a content type. */
void	api_reply_raw(struct api_req *, int status, const char *ctype,
	    const void *, size_t);

/*
 * Deferred replies, for a handler whose answer comes later (work on the
 * thread pool, a timer):
 *
 *	d = api_defer(r);		in the handler, which then returns
 *	... uv_queue_work(...) ...
 *	api_defer_reply_json(d, 200, doc);	later, on the loop thread
 *
 * api_defer() marks the request as answered later: the dispatcher sends no
 * 500 "handler did not reply". The handle belongs to the caller and stays
 * valid until exactly one api_defer_reply_*() call, which frees it. The
 * api_req itself may be used only until the handler returns (h2o may
 * dispose of it at any time after: the client went away); what outlives
 * it is the handle and api_defer_req().
 *
 * The replies run on the loop thread only (fatal elsewhere). If h2o has
 * disposed of the request meanwhile, they send nothing and only free what
 * they were given. A reply is counted by route and status class, and
 * carries X-Request-Id and Cache-Control: no-store, as a synchronous one.
 * api_reply_*() on the request once it is deferred are refused (logged).
 */
struct api_defer;

/* Answer r later; the caller owns the handle until its reply. */
struct api_defer *api_defer(struct api_req *r);
/*
 * A stand-in for the request that stays valid until the reply, for
 * api_principal() and api_request_id() (audit_record() takes it). Every
 * other accessor sees an empty request; replies through it are refused.
 */
struct api_req	*api_defer_req(struct api_defer *);
/* Has h2o disposed of the request (the client is gone)? */
int	api_defer_gone(const struct api_defer *);
/* Add a response header (copied); nothing if the request is gone. */
void	api_defer_set_header(struct api_defer *, const char *name,
	    const char *value);
/* Reply with a JSON document (consumed); frees the handle. */
void	api_defer_reply_json(struct api_defer *, int status, json_t *);
/* Reply with {"error":{"code":code,"message":...}}; frees the handle. */
void	api_defer_reply_error(struct api_defer *, int status, const char *code,
	    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/*
 * Reply with body (consumed: malloc()ed, freed once sent, or at once if
 * the request is gone; not copied) and a content type; frees the handle.
 */
void	api_defer_reply_raw(struct api_defer *, int status, const char *ctype,
	    char *body, size_t len);

/*
 * http/prom.c: the Prometheus text format, written by every module into
 * one reply of GET /metrics.
 */
struct prom {
	FILE	*pr_f;		/* while writing */
	char	*pr_b;		/* after prom_close(): the text (malloc) */
	size_t	 pr_len;
};
/* Start a text; prom_close() ends it into pr_b (the caller frees it). */
void	prom_open(struct prom *);
void	prom_close(struct prom *);
void	prom_add(struct prom *, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
/* A family's HELP and TYPE lines (type: counter, gauge, histogram). */
void	prom_family(struct prom *, const char *name, const char *type,
	    const char *help);
/* A label value escaped for the format (caller frees). */
char	*prom_label(const char *);
/* metric{label="value"} v, or metric v when label is NULL. */
void	prom_sample(struct prom *, const char *metric, const char *label,
	    const char *value, double v);
/* A family of one unlabelled sample. */
void	prom_single(struct prom *, const char *name, const char *type,
	    const char *help, double v);

/* http/params.c: request parameters every module reads the same way. */
/* limit and cursor query parameters; -1 after replying 400. */
int	params_page(struct api_req *, int *limit, const char **cursor);
/* The next page's cursor: the key of the last item of this page (copy). */
char	*params_last_key(json_t *items, const char *key);
/* Reply {"items": items, "next_cursor": next}; consumes both. */
void	params_reply_page(struct api_req *, json_t *items, char *next);
/* Refuse fields not in the NULL-terminated list; -1 after replying 400. */
int	params_known_fields(struct api_req *, json_t *body,
	    const char *const *known);
/* A required whole number in [min, max]; -1 after replying 400. */
int	params_int_field(struct api_req *, json_t *body, const char *name,
	    int64_t min, int64_t max, int64_t *out);
/* YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or unix seconds. */
int	params_parse_time(const char *, int64_t *);

#endif
