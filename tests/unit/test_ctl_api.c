/*
 * The controller's HTTPS API against a real client: the server runs on the
 * main thread's uv loop, libcurl drives it from a second thread, one call
 * at a time (the thread wakes the loop with a uv_async when it is done).
 * Deferred replies come from uv timers on the server's loop.
 */
#include <sys/types.h>

#include <sys/socket.h>

#include <netinet/in.h>

#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <h2o.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <uv.h>

#include "opsn/log.h"
#include "opsn/util.h"

#include "http/http.h"

static uv_loop_t	 loop;
static uv_async_t	 wake;
static SSL_CTX		*server_ctx;
static int		 port;
static const char	*host = "127.0.0.1";	/* as written in a URL */
static char		*server_pem;	/* the server's certificate, PEM */
static char		*client_pem;	/* a client certificate, PEM */
static char		*client_key_pem;
static sem_t		 hold;

struct call {
	const char	*method;
	const char	*path;
	const char	*token;
	const char	*body;
	const char	*header;	/* one extra request header */
	int		 with_cert;	/* present the client certificate */
	int		 hold;		/* keep the connection until posted */
	long		 timeout_ms;	/* give up (and hang up) after; 0: 10 s */
	int		 http2;		/* ask for HTTP/2 (ALPN) */

	long		 status;
	char		*body_out;
	size_t		 body_len;
	char		 ctype[128];
	char		 reqid[128];
	char		 allow[128];
	char		 cache[128];
	char		 early[32];	/* X-Early */
	char		 late[32];	/* X-Later */
	long		 version;	/* CURL_HTTP_VERSION_* used */
	json_t		*json;
};

/* A self-signed ECDSA P-256 certificate for cn, for 127.0.0.1 and ::1. */
static void
make_cert(const char *cn, char **cert_pem, char **key_pem, X509 **xp,
    EVP_PKEY **kp)
{
	EVP_PKEY	*key;
	X509		*x;
	X509_NAME	*name;
	X509_EXTENSION	*ext;
	X509V3_CTX	 v3;
	BIO		*bio;
	char		*p;
	long		 len;

	assert_non_null(key = EVP_EC_gen("P-256"));
	assert_non_null(x = X509_new());
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, key);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	    (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, name);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	assert_non_null(ext = X509V3_EXT_conf_nid(NULL, &v3,
	    NID_subject_alt_name, "IP:127.0.0.1,IP:::1"));
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);

	bio = BIO_new(BIO_s_mem());
	PEM_write_bio_X509(bio, x);
	len = BIO_get_mem_data(bio, &p);
	*cert_pem = xstrndup(p, len);
	BIO_free(bio);
	if (key_pem != NULL) {
		bio = BIO_new(BIO_s_mem());
		PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL);
		len = BIO_get_mem_data(bio, &p);
		*key_pem = xstrndup(p, len);
		BIO_free(bio);
	}
	*xp = x;
	*kp = key;
}

static size_t
write_cb(char *data, size_t size, size_t n, void *arg)
{
	struct call	*c = arg;

	c->body_out = xrealloc(c->body_out, c->body_len + size * n + 1);
	memcpy(c->body_out + c->body_len, data, size * n);
	c->body_len += size * n;
	c->body_out[c->body_len] = '\0';
	return (size * n);
}

static void
header_copy(const char *line, size_t len, const char *name, char *out,
    size_t outsize)
{
	size_t	 nlen = strlen(name);

	if (len <= nlen || strncasecmp(line, name, nlen) != 0)
		return;
	line += nlen;
	len -= nlen;
	while (len > 0 && *line == ' ') {
		line++;
		len--;
	}
	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n'))
		len--;
	if (len >= outsize)
		len = outsize - 1;
	memcpy(out, line, len);
	out[len] = '\0';
}

static size_t
header_cb(char *line, size_t size, size_t n, void *arg)
{
	struct call	*c = arg;

	header_copy(line, size * n, "content-type:", c->ctype,
	    sizeof(c->ctype));
	header_copy(line, size * n, "x-request-id:", c->reqid,
	    sizeof(c->reqid));
	header_copy(line, size * n, "allow:", c->allow, sizeof(c->allow));
	header_copy(line, size * n, "cache-control:", c->cache,
	    sizeof(c->cache));
	header_copy(line, size * n, "x-early:", c->early, sizeof(c->early));
	header_copy(line, size * n, "x-later:", c->late, sizeof(c->late));
	return (size * n);
}

static void *
client_main(void *arg)
{
	struct call		*c = arg;
	CURL			*curl;
	struct curl_slist	*hdrs = NULL;
	struct curl_blob	 ca, cert, key;
	char			 url[512], *auth = NULL;

	snprintf(url, sizeof(url), "https://%s:%d%s", host, port,
	    c->path);
	curl = curl_easy_init();
	curl_easy_setopt(curl, CURLOPT_URL, url);
	ca.data = server_pem;
	ca.len = strlen(server_pem);
	ca.flags = CURL_BLOB_COPY;
	curl_easy_setopt(curl, CURLOPT_CAINFO_BLOB, &ca);
	curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, c->method);
	if (c->body != NULL)
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, c->body);
	if (c->token != NULL) {
		xasprintf(&auth, "Authorization: Bearer %s", c->token);
		hdrs = curl_slist_append(hdrs, auth);
	}
	if (c->header != NULL)
		hdrs = curl_slist_append(hdrs, c->header);
	hdrs = curl_slist_append(hdrs, "Expect:");
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
	if (c->with_cert) {
		cert.data = client_pem;
		cert.len = strlen(client_pem);
		cert.flags = CURL_BLOB_COPY;
		key.data = client_key_pem;
		key.len = strlen(client_key_pem);
		key.flags = CURL_BLOB_COPY;
		curl_easy_setopt(curl, CURLOPT_SSLCERT_BLOB, &cert);
		curl_easy_setopt(curl, CURLOPT_SSLCERTTYPE, "PEM");
		curl_easy_setopt(curl, CURLOPT_SSLKEY_BLOB, &key);
		curl_easy_setopt(curl, CURLOPT_SSLKEYTYPE, "PEM");
	}
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, c);
	if (c->timeout_ms > 0)
		curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, c->timeout_ms);
	else
		curl_easy_setopt(curl, CURLOPT_TIMEOUT, 10L);
	curl_easy_setopt(curl, CURLOPT_HTTP_VERSION, c->http2 ?
	    (long)CURL_HTTP_VERSION_2TLS : (long)CURL_HTTP_VERSION_1_1);
	if (curl_easy_perform(curl) == CURLE_OK) {
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &c->status);
		curl_easy_getinfo(curl, CURLINFO_HTTP_VERSION, &c->version);
	} else
		c->status = -1;
	if (c->hold) {
		uv_async_send(&wake);
		sem_wait(&hold);
	}
	curl_easy_cleanup(curl);
	curl_slist_free_all(hdrs);
	free(auth);
	if (!c->hold)
		uv_async_send(&wake);
	return (NULL);
}

static void
wake_cb(uv_async_t *h)
{
	uv_stop(h->loop);
}

/* Make the call from a client thread while this thread serves it. */
static void
call(struct call *c)
{
	pthread_t	 t;
	json_error_t	 err;

	assert_int_equal(pthread_create(&t, NULL, client_main, c), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	pthread_join(t, NULL);
	if (c->body_out != NULL)
		c->json = json_loadb(c->body_out, c->body_len, 0, &err);
}

static void
call_free(struct call *c)
{
	free(c->body_out);
	json_decref(c->json);
}

static const char *
error_code(struct call *c)
{
	return (json_string_value(json_object_get(json_object_get(c->json,
	    "error"), "code")));
}

static const char *
error_message(struct call *c)
{
	return (json_string_value(json_object_get(json_object_get(c->json,
	    "error"), "message")));
}

/* Handlers. */

static void
h_health(struct api_req *ar)
{
	api_reply_json(ar, 200, json_pack("{s:s}", "status", "ok"));
}

static void
h_thing(struct api_req *ar)
{
	const struct api_principal *p = api_principal(ar);

	api_reply_json(ar, 200, json_pack("{s:s,s:s}", "name",
	    api_param(ar, "name"), "caller", p != NULL ? p->ap_name : "?"));
}

static void
h_echo(struct api_req *ar)
{
	json_t	*j;

	if ((j = api_body_json(ar)) == NULL)
		return;
	api_reply_json(ar, 201, j);
}

static void
h_query(struct api_req *ar)
{
	const char	*q = api_query(ar, "q"), *m = api_query(ar, "missing");

	api_reply_json(ar, 200, json_pack("{s:s?,s:b}", "q", q, "missing",
	    m != NULL));
}

static void
h_cert(struct api_req *ar)
{
	X509	*x = api_client_cert(ar);
	char	 cn[256];

	if (x == NULL) {
		api_reply_json(ar, 200, json_pack("{s:n}", "cn"));
		return;
	}
	X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName,
	    cn, sizeof(cn));
	api_reply_json(ar, 200, json_pack("{s:s}", "cn", cn));
}

static void
h_silent(struct api_req *ar)
{
	(void)ar;
}

static void
h_raw(struct api_req *ar)
{
	api_set_header(ar, "X-Extra", "yes");
	api_reply_raw(ar, 200, "text/plain", "hello\n", 6);
}

/* A reply deferred to a timer: ?ms=delay&mode=json|error|raw&sync=1 */
struct later {
	uv_timer_t	 l_timer;	/* first: the close callback casts */
	struct api_defer *l_defer;
	char		 l_mode[8];
};

static int	 later_replied;	/* timers that replied */
static int	 later_gone;	/* ... to a request h2o had disposed of */

static void
later_close_cb(uv_handle_t *h)
{
	free(h);
}

static void
later_cb(uv_timer_t *t)
{
	struct later	*l = (struct later *)t;
	struct api_req	*stand_in = api_defer_req(l->l_defer);
	const struct api_principal *p = api_principal(stand_in);

	later_gone += api_defer_gone(l->l_defer);
	if (strcmp(l->l_mode, "error") == 0)
		api_defer_reply_error(l->l_defer, 409, "busy", "try again in "
		    "%d s", 2);
	else if (strcmp(l->l_mode, "raw") == 0)
		api_defer_reply_raw(l->l_defer, 200, "text/plain",
		    xstrdup("later\n"), 6);
	else {
		api_defer_set_header(l->l_defer, "X-Later", "yes");
		api_defer_reply_json(l->l_defer, 200, json_pack("{s:s,s:s,s:s,"
		    "s:b}", "later", "yes", "caller", p != NULL ? p->ap_name :
		    "-", "id", api_request_id(stand_in), "stand_in_empty",
		    api_header(stand_in, "user-agent") == NULL &&
		    api_query(stand_in, "ms") == NULL));
	}
	later_replied++;
	uv_close((uv_handle_t *)t, later_close_cb);
}

static void
h_later(struct api_req *ar)
{
	const char	*ms = api_query(ar, "ms"), *mode = api_query(ar, "mode");
	struct later	*l;

	l = xcalloc(1, sizeof(*l));
	strlcpy(l->l_mode, mode != NULL ? mode : "json", sizeof(l->l_mode));
	api_set_header(ar, "X-Early", "yes");
	l->l_defer = api_defer(ar);
	/* Once deferred, only the handle answers. */
	if (api_query(ar, "sync") != NULL)
		api_reply_error(ar, 500, "internal", "must not be sent");
	assert_int_equal(uv_timer_init(&loop, &l->l_timer), 0);
	assert_int_equal(uv_timer_start(&l->l_timer, later_cb,
	    ms != NULL ? strtoull(ms, NULL, 10) : 50, 0), 0);
}

static const struct api_route routes[] = {
	{ "GET", "/v1/health", NULL, API_PUBLIC, NULL, h_health, "Is the controller up" },
	{ "GET", "/v1/things/{name}", "read", API_PLATFORM, NULL, h_thing, "Show a thing" },
	{ "DELETE", "/v1/things/{name}", "write", API_PLATFORM, NULL, h_thing, "Delete a thing" },
	{ "POST", "/v1/echo", "write", API_PLATFORM, NULL, h_echo, "Echo a JSON object" },
	{ "GET", "/v1/query", NULL, API_PUBLIC, NULL, h_query, "Echo a query parameter" },
	{ "GET", "/v1/cert", NULL, API_PUBLIC, NULL, h_cert, "Show the client certificate" },
	{ "GET", "/v1/silent", NULL, API_PUBLIC, NULL, h_silent, "Forget to reply" },
	{ "GET", "/v1/raw", NULL, API_PUBLIC, NULL, h_raw, "Plain text" },
	{ "GET", "/v1/later", NULL, API_PUBLIC, NULL, h_later, "Answer from a timer" },
	{ "GET", "/v1/later-auth", "read", API_PLATFORM, NULL, h_later, "Answer later, to whom" },
};

static int
hook_authenticate(const char *token, struct api_principal *p, void *arg)
{
	(void)arg;
	memset(p, 0, sizeof(*p));
	if (strcmp(token, "good") == 0) {
		strlcpy(p->ap_name, "good", sizeof(p->ap_name));
		strlcpy(p->ap_role, "admin", sizeof(p->ap_role));
		return (0);
	}
	if (strcmp(token, "weak") == 0) {
		strlcpy(p->ap_name, "weak", sizeof(p->ap_name));
		strlcpy(p->ap_role, "finance", sizeof(p->ap_role));
		return (0);
	}
	return (-1);
}

static int
hook_authorize(struct api_req *ar, const struct api_principal *p,
    const struct api_route *r, void *arg)
{
	(void)arg;
	if (strcmp(p->ap_role, "admin") == 0 || strcmp(r->ar_perm, "write") != 0)
		return (0);
	api_reply_error(ar, 403, "forbidden", "token '%s' (role %s) lacks "
	    "permission '%s'", p->ap_name, p->ap_role, r->ar_perm);
	return (-1);
}

static const struct api_hooks hooks = {
	hook_authenticate, hook_authorize, NULL
};

static int
setup(void **state)
{
	X509		*sx, *cx;
	EVP_PKEY	*sk, *ck;
	char		*cause = NULL;

	(void)state;
	assert_int_equal(sem_init(&hold, 0, 0), 0);
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(uv_async_init(&loop, &wake, wake_cb), 0);

	make_cert("127.0.0.1", &server_pem, NULL, &sx, &sk);
	make_cert("node:test", &client_pem, &client_key_pem, &cx, &ck);
	server_ctx = SSL_CTX_new(TLS_server_method());
	assert_non_null(server_ctx);
	assert_int_equal(SSL_CTX_use_certificate(server_ctx, sx), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(server_ctx, sk), 1);
	/* Ask for a client certificate, but do not insist. */
	X509_STORE_add_cert(SSL_CTX_get_cert_store(server_ctx), cx);
	SSL_CTX_set_verify(server_ctx, SSL_VERIFY_PEER, NULL);
	X509_free(sx);
	X509_free(cx);
	EVP_PKEY_free(sk);
	EVP_PKEY_free(ck);

	if (api_start(&loop, "127.0.0.1", 0, server_ctx, routes,
	    nitems(routes), &hooks, &cause) == -1)
		fail_msg("api_start: %s", cause);
	port = api_port();
	assert_true(port > 0);
	return (0);
}

static void
walk_cb(uv_handle_t *h, void *arg)
{
	(void)arg;
	fprintf(stderr, "left on the loop: %s handle %p%s\n",
	    uv_handle_type_name(uv_handle_get_type(h)), (void *)h,
	    uv_is_closing(h) ? " (closing)" : "");
}

static int
teardown(void **state)
{
	int	 r;

	(void)state;
	api_stop();
	uv_close((uv_handle_t *)&wake, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(api_port(), -1);
	if ((r = uv_loop_close(&loop)) != 0)
		uv_walk(&loop, walk_cb, NULL);
	assert_int_equal(r, 0);
	SSL_CTX_free(server_ctx);
	free(server_pem);
	free(client_pem);
	free(client_key_pem);
	sem_destroy(&hold);
	return (0);
}

/* Tests. */

static void
public_route_answers_json_with_headers(void **state)
{
	struct call	 c = { .method = "GET", .path = "/v1/health" };
	size_t		 i;

	(void)state;
	call(&c);
	assert_int_equal(c.status, 200);
	assert_string_equal(c.ctype, "application/json");
	assert_string_equal(c.cache, "no-store");
	assert_non_null(c.json);
	assert_string_equal(json_string_value(json_object_get(c.json,
	    "status")), "ok");
	assert_int_equal(strlen(c.reqid), 16);
	for (i = 0; i < 16; i++)
		assert_non_null(strchr("0123456789abcdef", c.reqid[i]));
	call_free(&c);
}

static void
request_id_is_kept_only_when_sane(void **state)
{
	struct call	 good = { .method = "GET", .path = "/v1/health",
			    .header = "X-Request-Id: trace-42.a_b" };
	struct call	 bad = { .method = "GET", .path = "/v1/health",
			    .header = "X-Request-Id: no spaces; please" };

	(void)state;
	call(&good);
	assert_string_equal(good.reqid, "trace-42.a_b");
	call(&bad);
	assert_int_equal(strlen(bad.reqid), 16);
	call_free(&good);
	call_free(&bad);
}

static void
missing_or_unknown_token_is_401(void **state)
{
	struct call	 none = { .method = "GET", .path = "/v1/things/x" };
	struct call	 wrong = { .method = "GET", .path = "/v1/things/x",
			    .token = "nope" };

	(void)state;
	call(&none);
	assert_int_equal(none.status, 401);
	assert_string_equal(error_code(&none), "unauthenticated");
	assert_int_equal(strlen(none.reqid), 16);
	call(&wrong);
	assert_int_equal(wrong.status, 401);
	assert_string_equal(error_code(&wrong), "unauthenticated");
	call_free(&none);
	call_free(&wrong);
}

static void
weak_token_is_403_naming_the_permission(void **state)
{
	struct call	 c = { .method = "POST", .path = "/v1/echo",
			    .token = "weak", .body = "{\"a\":1}" };

	(void)state;
	call(&c);
	assert_int_equal(c.status, 403);
	assert_string_equal(error_code(&c), "forbidden");
	assert_string_equal(error_message(&c),
	    "token 'weak' (role finance) lacks permission 'write'");
	call_free(&c);
}

static void
path_param_is_percent_decoded(void **state)
{
	struct call	 c = { .method = "GET", .path = "/v1/things/a%20b%C3%A9",
			    .token = "weak" };
	struct call	 slash = { .method = "GET",
			    .path = "/v1/things/a%2Fb", .token = "good" };
	struct call	 ctl = { .method = "GET",
			    .path = "/v1/things/a%0Ab", .token = "good" };
	struct call	 bad = { .method = "GET",
			    .path = "/v1/things/a%zz", .token = "good" };

	(void)state;
	call(&c);
	assert_int_equal(c.status, 200);
	assert_string_equal(json_string_value(json_object_get(c.json,
	    "name")), "a b\xc3\xa9");
	assert_string_equal(json_string_value(json_object_get(c.json,
	    "caller")), "weak");
	call(&slash);
	assert_int_equal(slash.status, 400);
	assert_string_equal(error_code(&slash), "bad_request");
	call(&ctl);
	assert_int_equal(ctl.status, 400);
	call(&bad);
	assert_int_equal(bad.status, 400);
	call_free(&c);
	call_free(&slash);
	call_free(&ctl);
	call_free(&bad);
}

static void
unknown_path_is_404_and_wrong_method_405(void **state)
{
	struct call	 nf = { .method = "GET", .path = "/v1/nothing" };
	struct call	 trail = { .method = "GET", .path = "/v1/health/" };
	struct call	 na = { .method = "PUT", .path = "/v1/things/x",
			    .token = "good" };

	(void)state;
	call(&nf);
	assert_int_equal(nf.status, 404);
	assert_string_equal(nf.ctype, "application/json");
	assert_string_equal(error_code(&nf), "not_found");
	call(&trail);
	assert_int_equal(trail.status, 404);
	call(&na);
	assert_int_equal(na.status, 405);
	assert_string_equal(error_code(&na), "method_not_allowed");
	assert_string_equal(na.allow, "GET, DELETE");
	call_free(&nf);
	call_free(&trail);
	call_free(&na);
}

static void
body_must_be_a_json_object(void **state)
{
	struct call	 ok = { .method = "POST", .path = "/v1/echo",
			    .token = "good", .body = "{\"a\":[1,2]}" };
	struct call	 bad = { .method = "POST", .path = "/v1/echo",
			    .token = "good", .body = "{\"a\": 1,\n \"b\": }" };
	struct call	 arr = { .method = "POST", .path = "/v1/echo",
			    .token = "good", .body = "[1, 2]" };
	struct call	 dup = { .method = "POST", .path = "/v1/echo",
			    .token = "good", .body = "{\"a\":1,\"a\":2}" };

	(void)state;
	call(&ok);
	assert_int_equal(ok.status, 201);
	assert_int_equal(json_array_size(json_object_get(ok.json, "a")), 2);
	call(&bad);
	assert_int_equal(bad.status, 400);
	assert_string_equal(error_code(&bad), "bad_json");
	assert_true(strncmp(error_message(&bad), "line 2 column ", 14) == 0);
	call(&arr);
	assert_int_equal(arr.status, 400);
	assert_string_equal(error_code(&arr), "bad_json");
	assert_string_equal(error_message(&arr),
	    "the body must be a JSON object");
	call(&dup);
	assert_int_equal(dup.status, 400);
	assert_string_equal(error_code(&dup), "bad_json");
	call_free(&ok);
	call_free(&bad);
	call_free(&arr);
	call_free(&dup);
}

static void
body_over_the_limit_is_413(void **state)
{
	struct call	 c = { .method = "POST", .path = "/v1/echo",
			    .token = "good" };
	char		*big;

	(void)state;
	big = xmalloc(4096);
	memset(big, ' ', 4095);
	big[0] = '{';
	big[4094] = '}';
	big[4095] = '\0';
	c.body = big;
	api_set_max_body(1024);
	call(&c);
	api_set_max_body(1024 * 1024);
	assert_int_equal(c.status, 413);
	assert_string_equal(c.ctype, "application/json");
	assert_string_equal(error_code(&c), "too_large");
	call_free(&c);
	free(big);
}

static void
query_is_split_and_decoded(void **state)
{
	struct call	 c = { .method = "GET",
			    .path = "/v1/query?x=1&q=a+b%26c%3D&&other" };
	struct call	 none = { .method = "GET", .path = "/v1/query" };

	(void)state;
	call(&c);
	assert_int_equal(c.status, 200);
	assert_string_equal(json_string_value(json_object_get(c.json, "q")),
	    "a b&c=");
	assert_true(json_is_false(json_object_get(c.json, "missing")));
	call(&none);
	assert_int_equal(none.status, 200);
	assert_true(json_is_null(json_object_get(none.json, "q")));
	call_free(&c);
	call_free(&none);
}

static void
client_certificate_is_seen(void **state)
{
	struct call	 with = { .method = "GET", .path = "/v1/cert",
			    .with_cert = 1 };
	struct call	 without = { .method = "GET", .path = "/v1/cert" };

	(void)state;
	call(&with);
	assert_int_equal(with.status, 200);
	assert_string_equal(json_string_value(json_object_get(with.json,
	    "cn")), "node:test");
	call(&without);
	assert_int_equal(without.status, 200);
	assert_true(json_is_null(json_object_get(without.json, "cn")));
	call_free(&with);
	call_free(&without);
}

static void
handler_without_reply_gives_500(void **state)
{
	struct call	 c = { .method = "GET", .path = "/v1/silent" };

	(void)state;
	call(&c);
	assert_int_equal(c.status, 500);
	assert_string_equal(error_code(&c), "internal");
	call_free(&c);
}

static void
raw_reply_keeps_its_content_type(void **state)
{
	struct call	 c = { .method = "GET", .path = "/v1/raw" };

	(void)state;
	call(&c);
	assert_int_equal(c.status, 200);
	assert_string_equal(c.ctype, "text/plain");
	assert_string_equal(c.body_out, "hello\n");
	assert_int_equal(strlen(c.reqid), 16);
	call_free(&c);
}

static void
openapi_lists_exactly_the_routes(void **state)
{
	struct call	 c = { .method = "GET", .path = "/v1/openapi.json" };
	json_t		*paths, *item, *op, *params, *direct;
	const char	*key;
	char		 m[16];
	size_t		 i, j, nops = 0;

	(void)state;
	call(&c);
	assert_int_equal(c.status, 200);
	assert_non_null(c.json);
	assert_string_equal(json_string_value(json_object_get(c.json,
	    "openapi")), "3.0.3");
	assert_non_null(json_object_get(json_object_get(json_object_get(
	    c.json, "components"), "securitySchemes"), "bearer"));
	direct = api_openapi();
	assert_true(json_equal(direct, c.json));
	json_decref(direct);

	paths = json_object_get(c.json, "paths");
	json_object_foreach(paths, key, item)
		nops += json_object_size(item);
	assert_int_equal(nops, nitems(routes) + 1);
	for (i = 0; i < nitems(routes); i++) {
		for (j = 0; routes[i].ar_method[j] != '\0'; j++)
			m[j] = routes[i].ar_method[j] + ('a' - 'A');
		m[j] = '\0';
		op = json_object_get(json_object_get(paths,
		    routes[i].ar_pattern), m);
		assert_non_null(op);
		assert_string_equal(json_string_value(json_object_get(op,
		    "summary")), routes[i].ar_summary);
		assert_int_equal(json_object_get(op, "security") != NULL,
		    routes[i].ar_perm != NULL);
		params = json_object_get(op, "parameters");
		if (strchr(routes[i].ar_pattern, '{') != NULL) {
			assert_int_equal(json_array_size(params), 1);
			assert_string_equal(json_string_value(json_object_get(
			    json_array_get(params, 0), "name")), "name");
		} else
			assert_null(params);
	}
	assert_non_null(json_object_get(json_object_get(paths,
	    "/v1/openapi.json"), "get"));
	call_free(&c);
}

/* The value of the /metrics line that starts with the sample's name and
 * labels, 0 when there is none. */
static double
prom_value_of(const char *sample)
{
	struct prom	 pr;
	const char	*p;
	double		 v = 0;
	size_t		 n = strlen(sample);

	prom_open(&pr);
	api_metrics(&pr);
	prom_close(&pr);
	for (p = pr.pr_b; p != NULL && *p != '\0'; p = strchr(p, '\n'),
	    p = p ? p + 1 : NULL)
		if (strncmp(p, sample, n) == 0 && p[n] == ' ') {
			v = strtod(p + n + 1, NULL);
			break;
		}
	free(pr.pr_b);
	return (v);
}

#define HEALTH_2XX	"opsn_api_requests_total{method=\"GET\",route=" \
			"\"/v1/health\",status=\"2xx\"}"
#define UNMATCHED_4XX	"opsn_api_requests_total{method=\"*\",route=" \
			"\"unmatched\",status=\"4xx\"}"
#define LATER(c)	"opsn_api_requests_total{method=\"GET\",route=" \
			"\"/v1/later\",status=\"" c "\"}"
#define LATER_LE(le)	"opsn_api_request_duration_seconds_bucket{method=" \
			"\"GET\",route=\"/v1/later\",le=\"" le "\"}"

static void
stats_count_by_route_and_class(void **state)
{
	double		 ok0, nf0;
	struct call	 ok = { .method = "GET", .path = "/v1/health" };
	struct call	 nf = { .method = "GET", .path = "/v1/nothing" };

	(void)state;
	ok0 = prom_value_of(HEALTH_2XX);
	nf0 = prom_value_of(UNMATCHED_4XX);
	call(&ok);
	call(&nf);
	assert_true(prom_value_of(HEALTH_2XX) == ok0 + 1);
	assert_true(prom_value_of(UNMATCHED_4XX) == nf0 + 1);
	call_free(&ok);
	call_free(&nf);
}

static void
deferred_reply_comes_from_a_timer(void **state)
{
	struct call	 c = { .method = "GET", .path = "/v1/later?ms=150" };
	struct call	 err = { .method = "GET",
			    .path = "/v1/later?ms=10&mode=error" };
	struct call	 raw = { .method = "GET",
			    .path = "/v1/later?ms=10&mode=raw&sync=1" };
	struct call	 who = { .method = "GET", .path = "/v1/later-auth",
			    .token = "weak",
			    .header = "X-Request-Id: trace-later" };
	double		 ok0, err0, fail0, fast0, slow0;
	uint64_t	 t0;
	size_t		 i;

	(void)state;
	ok0 = prom_value_of(LATER("2xx"));
	err0 = prom_value_of(LATER("4xx"));
	fail0 = prom_value_of(LATER("5xx"));
	fast0 = prom_value_of(LATER_LE("0.1"));
	slow0 = prom_value_of(LATER_LE("0.25"));
	t0 = util_mono_ms();
	call(&c);
	assert_true(util_mono_ms() - t0 >= 150);
	assert_int_equal(c.status, 200);
	assert_string_equal(c.ctype, "application/json");
	assert_string_equal(c.cache, "no-store");
	assert_int_equal(strlen(c.reqid), 16);
	for (i = 0; i < 16; i++)
		assert_non_null(strchr("0123456789abcdef", c.reqid[i]));
	/* Headers set before deferring, and by the late reply. */
	assert_string_equal(c.early, "yes");
	assert_string_equal(c.late, "yes");
	assert_string_equal(json_string_value(json_object_get(c.json,
	    "later")), "yes");
	assert_string_equal(json_string_value(json_object_get(c.json, "id")),
	    c.reqid);
	assert_true(json_is_true(json_object_get(c.json, "stand_in_empty")));

	call(&err);
	assert_int_equal(err.status, 409);
	assert_string_equal(err.ctype, "application/json");
	assert_string_equal(error_code(&err), "busy");
	assert_string_equal(error_message(&err), "try again in 2 s");
	assert_int_equal(strlen(err.reqid), 16);

	/* A synchronous reply after deferring is not what the client gets. */
	call(&raw);
	assert_int_equal(raw.status, 200);
	assert_string_equal(raw.ctype, "text/plain");
	assert_string_equal(raw.body_out, "later\n");
	assert_string_equal(raw.cache, "no-store");

	/* Who asked is known when the answer comes. */
	call(&who);
	assert_int_equal(who.status, 200);
	assert_string_equal(json_string_value(json_object_get(who.json,
	    "caller")), "weak");
	assert_string_equal(who.reqid, "trace-later");
	assert_string_equal(json_string_value(json_object_get(who.json,
	    "id")), "trace-later");

	assert_true(prom_value_of(LATER("2xx")) == ok0 + 2);
	assert_true(prom_value_of(LATER("4xx")) == err0 + 1);
	assert_true(prom_value_of(LATER("5xx")) == fail0);
	/* Latency runs to the deferred reply: 150 ms lands above 0.1 s. */
	assert_true(prom_value_of(LATER_LE("0.1")) == fast0 + 2);
	assert_true(prom_value_of(LATER_LE("0.25")) == slow0 + 3);
	call_free(&c);
	call_free(&err);
	call_free(&raw);
	call_free(&who);
}

/*
 * The client hangs up, then the timer replies: nothing is sent, nothing
 * crashes or leaks (ASan), and the server answers the next call.
 */
static void
client_gone_before_deferred_reply(int http2)
{
	struct call	 gone = { .method = "GET", .path = "/v1/later?ms=400",
			    .timeout_ms = 100, .http2 = http2 };
	struct call	 next = { .method = "GET", .path = "/v1/health",
			    .http2 = http2 };
	int		 replied = later_replied, gone_before = later_gone, i;

	call(&gone);
	assert_int_equal(gone.status, -1);	/* curl timed out */
	while (later_replied == replied)
		uv_run(&loop, UV_RUN_ONCE);
	/* Let h2o see the dead socket and close it. */
	for (i = 0; i < 50; i++) {
		uv_run(&loop, UV_RUN_NOWAIT);
		usleep(1000);
	}
	if (http2) {
		/* HTTP/2 reads on: h2o disposed of the request at once. */
		assert_int_equal(later_gone, gone_before + 1);
	}
	call(&next);
	assert_int_equal(next.status, 200);
	assert_int_equal(next.version, http2 ? CURL_HTTP_VERSION_2_0 :
	    CURL_HTTP_VERSION_1_1);
	call_free(&gone);
	call_free(&next);
}

static void
client_gone_before_deferred_reply_http1(void **state)
{
	(void)state;
	client_gone_before_deferred_reply(0);
}

/*
 * The controller speaks HTTP/1.1 (no ALPN), where h2o 2.2.5 stops reading
 * while a request is answered and learns of a hang-up only when it
 * writes. Over HTTP/2 it disposes of the request on the spot: the path
 * where the deferral's handle must learn that the request is gone.
 */
static void
client_gone_before_deferred_reply_http2(void **state)
{
	(void)state;
	h2o_ssl_register_alpn_protocols(server_ctx, h2o_http2_alpn_protocols);
	client_gone_before_deferred_reply(1);
	SSL_CTX_set_alpn_select_cb(server_ctx, NULL, NULL);
}

static void
bad_routes_are_refused(void **state)
{
	static const struct api_route bad[] = {
		{ "GET", "/v1/x/{na-me}", NULL, API_PUBLIC, NULL, h_health, "bad" },
	};
	static const struct api_route unscoped[] = {
		{ "GET", "/v1/x", "read", 0, NULL, h_health, "no scope" },
	};
	static const struct api_route dup[] = {
		{ "GET", "/v1/x", NULL, API_PUBLIC, NULL, h_health, "one" },
		{ "GET", "/v1/x", NULL, API_PUBLIC, NULL, h_health, "two" },
	};
	struct call	 c = { .method = "GET", .path = "/v1/health" };
	char		*cause = NULL;
	int		 i;

	(void)state;
	/* Checked before anything else, even while a server runs. */
	assert_int_equal(api_start(&loop, "127.0.0.1", 0, server_ctx, bad,
	    nitems(bad), &hooks, &cause), -1);
	assert_non_null(strstr(cause, "{param}"));
	free(cause);
	cause = NULL;
	/* Refused by default: a route that declares no scope never serves. */
	assert_int_equal(api_start(&loop, "127.0.0.1", 0, server_ctx, unscoped,
	    nitems(unscoped), &hooks, &cause), -1);
	assert_non_null(strstr(cause, "declares no scope"));
	free(cause);
	cause = NULL;
	assert_int_equal(api_start(&loop, "127.0.0.1", 0, server_ctx, dup,
	    nitems(dup), &hooks, &cause), -1);
	assert_non_null(strstr(cause, "twice"));
	free(cause);
	cause = NULL;
	assert_int_equal(api_start(&loop, "localhost", 0, server_ctx, routes,
	    nitems(routes), &hooks, &cause), -1);
	assert_non_null(strstr(cause, "not an IPv4 or IPv6"));
	free(cause);
	cause = NULL;

	/* One server at a time; a new one once the old one has wound down. */
	assert_int_equal(api_start(&loop, "127.0.0.1", 0, server_ctx, routes,
	    nitems(routes), &hooks, &cause), -1);
	assert_non_null(strstr(cause, "already running"));
	free(cause);
	cause = NULL;
	api_stop();
	assert_int_equal(api_port(), -1);
	for (i = 0; i < 1000; i++) {
		if (api_start(&loop, "::1", 0, server_ctx, routes,
		    nitems(routes), &hooks, &cause) == 0)
			break;
		free(cause);
		cause = NULL;
		uv_run(&loop, UV_RUN_NOWAIT);
		usleep(1000);
	}
	assert_true(i < 1000);
	port = api_port();
	assert_true(port > 0);
	host = "[::1]";
	call(&c);
	assert_int_equal(c.status, 200);
	call_free(&c);
}

static void
stop_closes_open_connections(void **state)
{
	struct call		 c = { .method = "GET", .path = "/v1/health",
				    .hold = 1 };
	struct sockaddr_in6	 sin6;
	pthread_t		 t;
	uint64_t		 t0;
	char			 byte;
	int			 fd, i;

	(void)state;
	/* The server now listens on ::1 (bad_routes_are_refused). */
	assert_string_equal(host, "[::1]");

	/* An idle keep-alive connection, held open by the client. */
	assert_int_equal(pthread_create(&t, NULL, client_main, &c), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(c.status, 200);

	/* And one that never starts its TLS handshake. */
	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	sin6.sin6_port = htons(port);
	sin6.sin6_addr = in6addr_loopback;
	assert_true((fd = socket(AF_INET6, SOCK_STREAM, 0)) != -1);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin6, sizeof(sin6)),
	    0);
	for (i = 0; i < 20; i++) {
		uv_run(&loop, UV_RUN_NOWAIT);
		usleep(1000);
	}

	/*
	 * With our own handle unreferenced, uv_run returns only once the
	 * listener, both connections and h2o's timers are all closed; h2o's
	 * own timeouts (10 s) are not what closes them.
	 */
	api_stop();
	uv_unref((uv_handle_t *)&wake);
	t0 = util_mono_ms();
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_true(util_mono_ms() - t0 < 3000);
	assert_int_equal(api_port(), -1);
	assert_true(read(fd, &byte, 1) <= 0);
	close(fd);
	uv_ref((uv_handle_t *)&wake);

	sem_post(&hold);
	pthread_join(t, NULL);
	call_free(&c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(public_route_answers_json_with_headers),
		cmocka_unit_test(request_id_is_kept_only_when_sane),
		cmocka_unit_test(missing_or_unknown_token_is_401),
		cmocka_unit_test(weak_token_is_403_naming_the_permission),
		cmocka_unit_test(path_param_is_percent_decoded),
		cmocka_unit_test(unknown_path_is_404_and_wrong_method_405),
		cmocka_unit_test(body_must_be_a_json_object),
		cmocka_unit_test(body_over_the_limit_is_413),
		cmocka_unit_test(query_is_split_and_decoded),
		cmocka_unit_test(client_certificate_is_seen),
		cmocka_unit_test(handler_without_reply_gives_500),
		cmocka_unit_test(raw_reply_keeps_its_content_type),
		cmocka_unit_test(openapi_lists_exactly_the_routes),
		cmocka_unit_test(stats_count_by_route_and_class),
		cmocka_unit_test(deferred_reply_comes_from_a_timer),
		cmocka_unit_test(client_gone_before_deferred_reply_http1),
		cmocka_unit_test(client_gone_before_deferred_reply_http2),
		cmocka_unit_test(bad_routes_are_refused),
		cmocka_unit_test(stop_closes_open_connections),
	};

	/* A peer that goes away mid-write must not kill the server. */
	signal(SIGPIPE, SIG_IGN);
	log_init("test_ctl_api", LOG_LEVEL_WARN, NULL);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	return (cmocka_run_group_tests(tests, setup, teardown));
}
