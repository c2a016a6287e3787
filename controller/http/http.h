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
	/*
	 * The largest body; 0: the server's limit for one request (1 MiB).
	 * A larger limit admits bodies sent in parts (see "Bodies in
	 * parts" below); no single request is ever over the server's limit.
	 */
	size_t		 ar_max_body;
	unsigned	 ar_flags;	/* API_BODY_FILE */
};

/* The handler takes a body sent in parts as a file (api_body_file()). */
#define API_BODY_FILE	0x1

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
	/*
	 * A call with neither a bearer token nor a client certificate: a
	 * credential the request carries otherwise (a console session's
	 * cookie) for route r. 0 authenticated (*p filled); 1 none there
	 * (the call gets 401 asking for a bearer token); -1 refused, after
	 * replying. May be NULL.
	 */
	int	(*authenticate_request)(struct api_req *,
		    const struct api_route *r, struct api_principal *p,
		    void *arg);
	/*
	 * A count that grows whenever a statement of the write connection
	 * failed (the store's). A handler that answers success after it grew
	 * answers 500 with the request id instead: its write did not happen.
	 * May be NULL.
	 */
	uint64_t (*write_failures)(void *arg);
	/*
	 * Does p's role hold r's permission, whatever the member? Asked
	 * before a body sent in parts is stored, when the member the body
	 * may name is not known yet (authorize runs on the whole body). May
	 * be NULL: then only authorize decides, once the body is whole.
	 */
	int	(*permits)(const struct api_principal *p,
		    const struct api_route *r, void *arg);
};

/*
 * What the server lets a client do before and after it authenticates
 * (api_configure(); zero fields keep their defaults, in brackets).
 */
struct api_limits {
	size_t		 al_max_body;	/* one request's body [1 MiB] */
	size_t		 al_max_conns;	/* connections at once [1024] */
	uint64_t	 al_handshake_ms; /* TLS handshake [10 s] */
	uint64_t	 al_request_ms;	/* a request's head and body, and
					   a kept-alive connection's idle
					   time [30 s] */
	double		 al_rate;	/* requests/s per token; <0: none [20] */
	double		 al_burst;	/* requests at once per token [200] */
	const char	*al_staging;	/* folder for bodies sent in parts;
					   NULL: bodies in parts are refused */
	size_t		 al_max_buffered; /* bodies being read, all
					   connections; past it the largest
					   are cut [32 MiB] */
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
/* Set the limits (before api_start; see struct api_limits). */
void	api_configure(const struct api_limits *);
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
/* The host:port the client asked for, or NULL (owned by the request). */
const char	*api_host(struct api_req *);
/* The authenticated caller, or NULL on a public route. */
const struct api_principal *api_principal(struct api_req *);
/*
 * A public route that authenticates its caller itself (a console login)
 * names who it was, for the audit trail and the rest of the request.
 */
void	api_set_principal(struct api_req *, const struct api_principal *);
/* The client's address without its port ("127.0.0.1", "::1"), or "?". */
void	api_peer(struct api_req *, char *buf, size_t len);
/* The request id (also sent back as X-Request-Id). */
const char	*api_request_id(struct api_req *);
/*
 * The verified client certificate of the TLS connection, or NULL (borrowed:
 * valid until the reply).
 */
X509		*api_client_cert(struct api_req *);
/* Raw body (whole, also when it was sent in parts). */
const void	*api_body(struct api_req *, size_t *len);
/*
 * An API_BODY_FILE route's body sent in parts: the path of the stored
 * file, which the caller then owns (it renames or unlinks it; the string
 * is malloc()ed), with its size and SHA-256 (hex, checked against the
 * client's Upload-Sha256 on the thread pool). NULL when the body came in
 * the request itself (read it with api_body()), or on a second call.
 */
char		*api_body_file(struct api_req *, uint64_t *size,
		    char sha256[65]);
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
 * Reply with body (consumed: malloc()ed, freed once sent; not copied)
 * and a content type.
 */
void	api_reply_take(struct api_req *, int status, const char *ctype,
	    char *body, size_t len);

/*
 * Replies held back: from api_hold() until api_release(), every reply
 * waits (the store's group transaction is not durable yet); then each is
 * sent, or with ok == 0 becomes a 500 saying its change was not stored.
 */
void	api_hold(void);
void	api_release(int ok);
/* Replies to writes (not GET or HEAD) held so far: a count that grows. */
uint64_t api_held_writes(void);

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
/*
 * A family of one unlabelled histogram: counts[0..n-1] (not cumulative)
 * within bounds[0..n-1] seconds, counts[n] past the last bound.
 */
void	prom_histogram(struct prom *, const char *name, const char *help,
	    const double *bounds, const uint64_t *counts, size_t n,
	    double sum);

/*
 * Bodies in parts. h2o 2.2.5 reads a request's whole body before any
 * handler runs, so the server caps every request body at al_max_body
 * (h2o refuses a larger Content-Length before reading a byte of it, and
 * stops a chunked body there). A larger body, up to its route's own
 * limit, comes in parts, each one request to the route itself:
 *
 *	Content-Range: bytes START-END/TOTAL	the part (END inclusive);
 *						'*' for START-END and no
 *						body asks how much is stored
 *	Upload-Sha256: HEX			SHA-256 of the whole body
 *
 * The caller is authenticated and must hold the route's permission
 * before a part is stored; TOTAL is checked against the route's limit.
 * Parts are written on the thread pool to a file kept per caller, route,
 * size and checksum, so an interrupted upload resumes where the stored
 * bytes end (Upload-Offset). A part answers 202 {"received","size"};
 * the last one is checked against Upload-Sha256, then the call runs as
 * if the whole body had come at once (authorization included).
 */

#ifdef OPSN_FUZZ
/* Fuzzing builds only: run requests through the router without I/O. */
void	api_fuzz_init(uv_loop_t *, const struct api_route *, size_t,
	    const struct api_hooks *);
int	api_fuzz_call(const char *method, const char *path, const char *auth,
	    const void *body, size_t len);
#endif

/* http/params.c: request parameters every module reads the same way. */
/* limit and cursor query parameters; -1 after replying 400. */
int	params_page(struct api_req *, int *limit, const char **cursor);
int	params_page_id(struct api_req *, int *limit, int64_t *after);
int	params_query_int(struct api_req *, const char *name, int64_t min,
	    int64_t max, int64_t def, int64_t *out);
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

/*
 * http/obuf.c: a growable output buffer for the documents replies carry
 * (spreadsheets, the PES files of billing): bytes, printf, and XML
 * character data with the five markup characters escaped. Allocation
 * failure is fatal.
 */
struct obuf {
	char	*ob_b;		/* NUL-terminated once anything was added */
	size_t	 ob_len;
	size_t	 ob_cap;
};

/* Append n bytes. */
void	 obuf_add(struct obuf *, const void *, size_t n);
/* Append a C string. */
void	 obuf_str(struct obuf *, const char *);
/* Append formatted text. */
void	 obuf_printf(struct obuf *, const char *, ...)
	    __attribute__((format(printf, 2, 3)));
/*
 * Append text as XML character data or attribute value: & < > " ' become
 * entities; characters XML 1.0 cannot carry (controls other than tab,
 * newline and carriage return) are dropped.
 */
void	 obuf_xml(struct obuf *, const char *);
/*
 * Decode the UTF-8 character at *s and move *s past it; an invalid
 * sequence (overlong, surrogate, truncated) gives OBUF_BAD_UTF8 and moves
 * one byte.
 */
#define OBUF_BAD_UTF8	UINT32_MAX
uint32_t obuf_utf8(const unsigned char **s);
/* Give the bytes to the caller (NUL-terminated, "" if empty) and reset. */
char	*obuf_take(struct obuf *, size_t *len);
/* Free the bytes; the buffer may be reused. */
void	 obuf_free(struct obuf *);

/*
 * http/ods.c: OpenDocument spreadsheets (.ods, ODF 1.2) for finance's
 * exports: typed cells so that a spreadsheet keeps codes as text (the
 * INSEE code 01001 stays "01001"), amounts as numbers in euros with two
 * decimals, dates as dates; one sheet per view, each with a header row
 * that stays visible while scrolling. Numbers are written from integers
 * and decimal strings, never through a binary fraction.
 *
 * Cells are written row by row:
 *
 *	o = ods_new();
 *	ods_sheet(o, "summary");
 *	ods_header(o, titles, n);
 *	ods_row(o); ods_text(o, "01001"); ods_cents(o, 11436); ...
 *	ods_finish(o, &zip, &len, &cause);
 *	ods_free(o);
 */
#define ODS_MIMETYPE	"application/vnd.oasis.opendocument.spreadsheet"

struct ods;

struct ods	*ods_new(void);
/* Free a spreadsheet (NULL is fine). */
void	 ods_free(struct ods *);
/*
 * The time written as the files' modification time in the archive (Unix
 * seconds); by default 1980-01-01, so the same cells give the same bytes.
 */
void	 ods_set_time(struct ods *, int64_t);
/* Start a sheet; characters a sheet name cannot hold become '_'. */
void	 ods_sheet(struct ods *, const char *name);
/* The sheet's header row: bold text cells, kept visible (frozen). */
void	 ods_header(struct ods *, const char *const *titles, size_t n);
/* Start a row of the current sheet. */
void	 ods_row(struct ods *);
/* Cells, left to right in the current row. */
void	 ods_empty(struct ods *);
/* A text cell (UTF-8; an invalid byte becomes U+FFFD). */
void	 ods_text(struct ods *, const char *);
/* A number cell from an integer. */
void	 ods_int(struct ods *, int64_t);
/*
 * A number cell from a decimal string ("-1234.5678", point as separator).
 * -1 (and a text cell) if the string is not such a decimal.
 */
int	 ods_number(struct ods *, const char *);
/* An amount in euros from integer cents: a currency cell, two decimals. */
void	 ods_cents(struct ods *, int64_t cents);
/* A date cell from "YYYY-MM-DD"; -1 (and a text cell) if not one. */
int	 ods_date(struct ods *, const char *);
/*
 * Write the document: a ZIP archive (mimetype first, stored) into *out
 * (caller frees). -1 with *cause if libzip fails.
 */
int	 ods_finish(struct ods *, char **out, size_t *len, char **cause);

/*
 * http/jsonw.c: JSON written straight from rows, without a document tree.
 * The output is what json_dumps(JSON_COMPACT) gives for the same
 * document. Keys and values in order; commas are the writer's business:
 *
 *	jsonw_obj(&w); jsonw_key(&w, "items"); jsonw_arr(&w);
 *	while (row) { jsonw_obj(&w); jsonw_key(&w, "id"); jsonw_int(&w, id);
 *	    jsonw_obj_end(&w); }
 *	jsonw_arr_end(&w); jsonw_obj_end(&w);
 *	api_reply_take(r, 200, "application/json", jsonw_take(&w, &len), len);
 */
#define JSONW_DEPTH	16
struct jsonw {
	char		*jw_b;
	size_t		 jw_len, jw_cap;
	int		 jw_depth;
	int		 jw_key;		/* a key awaits its value */
	unsigned char	 jw_more[JSONW_DEPTH];	/* a value came before */
};
struct sqlite3_stmt;

void	 jsonw_obj(struct jsonw *);
void	 jsonw_obj_end(struct jsonw *);
void	 jsonw_arr(struct jsonw *);
void	 jsonw_arr_end(struct jsonw *);
void	 jsonw_key(struct jsonw *, const char *);
/* A string (NULL: null); invalid UTF-8 bytes become '?'. */
void	 jsonw_str(struct jsonw *, const char *);
void	 jsonw_strn(struct jsonw *, const char *, size_t);
void	 jsonw_int(struct jsonw *, int64_t);
void	 jsonw_bool(struct jsonw *, int);
void	 jsonw_null(struct jsonw *);
/* A column as stored (NULL, integer or text), or forced to text or int. */
void	 jsonw_col(struct jsonw *, struct sqlite3_stmt *, int col);
void	 jsonw_col_text(struct jsonw *, struct sqlite3_stmt *, int col);
void	 jsonw_col_int(struct jsonw *, struct sqlite3_stmt *, int col);
/*
 * A row's fields from a table, in order: a column as text, an integer
 * or an RFC 3339 time (NULL gives null); JW_OBJ opens an object under
 * the key, JW_OBJ_IF too unless its column is NULL (then null, and the
 * fields up to its JW_END are skipped); JW_END closes it.
 */
enum jsonw_type { JW_TEXT, JW_INT, JW_TIME, JW_OBJ, JW_OBJ_IF, JW_END };
struct jsonw_field {
	const char	*jf_key;	/* NULL for JW_END */
	enum jsonw_type	 jf_type;
	int		 jf_col;
};
void	 jsonw_row(struct jsonw *, struct sqlite3_stmt *,
	    const struct jsonw_field *, size_t n);
/* A jansson value, written in place. */
void	 jsonw_json(struct jsonw *, const json_t *);
/* The text (malloc()ed, NUL-terminated); the writer is reset. */
char	*jsonw_take(struct jsonw *, size_t *len);
void	 jsonw_free(struct jsonw *);
/* The text parsed back (caller owns); the writer is reset. */
json_t	*jsonw_load(struct jsonw *);
/* Reply {"items": ..., "next_cursor": next} from a writer holding the
 * items array's elements written between params_page_open() and this. */
void	 params_page_open(struct jsonw *);
void	 params_page_reply(struct api_req *, struct jsonw *, const char *next);
/* The same page's text (malloc()ed), for a caller that keeps it. */
char	*params_page_end(struct jsonw *, const char *next, size_t *len);

#endif
