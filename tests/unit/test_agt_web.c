/*
 * The web role without nginx: desired states go in through the role's
 * frame hook, the statuses it sends are captured, and nginx is a shell
 * script that records its arguments and, for -t, refuses any server block
 * naming a host with "refused" in it (or everything while FAIL exists),
 * with a message shaped like nginx's. tests/e2e/test_web.py runs the same
 * role against a real nginx.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "opsn/frame.h"
#include "opsn/pki.h"
#include "opsn/util.h"
#include "agent.h"
#include "svc.h"

static char		 tmp[64];
static char		*web_root, *confd, *pages, *toollog, *failflag, *nginx;
static uv_loop_t	 loop;
static struct agent	 ag;
static Opsn__ServicesStatus *last;
static int		 nstatus;
static Opsn__ServicesCerts *certs;
static int		 ncerts;
static Opsn__SiteCertResult *cert_result;

/* ---- fixtures ----------------------------------------------------------- */

static int
cap_send(uint16_t type, const ProtobufCMessage *m)
{
	uint8_t	*buf;
	size_t	 len;

	len = protobuf_c_message_get_packed_size(m);
	buf = xmalloc(len + 1);
	protobuf_c_message_pack(m, buf);
	if (type == MSG_SERVICES_CERTS) {
		if (certs != NULL)
			opsn__services_certs__free_unpacked(certs, NULL);
		certs = opsn__services_certs__unpack(NULL, len, buf);
		free(buf);
		ncerts++;
		return (0);
	}
	if (type == MSG_SITE_CERT_RESULT) {
		if (cert_result != NULL)
			opsn__site_cert_result__free_unpacked(cert_result,
			    NULL);
		cert_result = opsn__site_cert_result__unpack(NULL, len, buf);
		free(buf);
		return (0);
	}
	assert_int_equal(type, MSG_SERVICES_STATUS);
	if (last != NULL)
		opsn__services_status__free_unpacked(last, NULL);
	last = opsn__services_status__unpack(NULL, len, buf);
	free(buf);
	nstatus++;
	return (0);
}

static void
write_file(const char *path, const char *text, int mode)
{
	char	*cause = NULL;

	if (util_write_file(path, text, strlen(text), mode, &cause) == -1)
		fail_msg("%s", cause);
}

static char *
read_file(const char *path)
{
	return (svc_read(path, 1 << 20));
}

static int
setup(void **state)
{
	char	*script;

	strlcpy(tmp, "/tmp/opsn-webtest-XXXXXX", sizeof(tmp));
	assert_non_null(mkdtemp(tmp));
	xasprintf(&web_root, "%s/www", tmp);
	xasprintf(&confd, "%s/sites.d", tmp);
	xasprintf(&pages, "%s/pages", tmp);
	xasprintf(&toollog, "%s/nginx.log", tmp);
	xasprintf(&failflag, "%s/fail", tmp);
	xasprintf(&nginx, "%s/nginx", tmp);
	xasprintf(&script, "#!/bin/sh\necho \"nginx $*\" >> %s\n"
	    "case \"$*\" in *-t*)\n"
	    "  if [ -e %s ]; then echo \"nginx: [emerg] unknown directive "
	    "\\\"x\\\" in /etc/nginx/nginx.conf:1\" >&2; exit 1; fi\n"
	    "  for f in %s/*.conf; do\n"
	    "    if grep -q 'server_name.*refused' \"$f\" 2>/dev/null; then\n"
	    "      echo \"2026/11/29 20:06:33 [emerg] 42#42: host refused in "
	    "$f:5\" >&2\n"
	    "      echo \"nginx: configuration file test failed\" >&2\n"
	    "      exit 1\n    fi\n  done;;\nesac\nexit 0\n", toollog, failflag,
	    confd);
	write_file(nginx, script, 0755);
	free(script);
	assert_int_equal(uv_loop_init(&loop), 0);
	ag.loop = &loop;
	ag.conf.data_dir = tmp;
	ag.conf.web_root = web_root;
	ag.conf.nginx_confd = confd;
	ag.conf.web_pages = pages;
	ag.conf.web_listen = "127.0.0.1:8080, [::1]:8080";
	ag.conf.nginx_bin = nginx;
	ag.conf.nginx_prefix = "/prefix";
	ag.conf.nginx_conf = "/prefix/nginx.conf";
	ag.conf.acme_directory = "off";
	ag.conf.web_listen_tls = "127.0.0.1:8443";
	svc_set_send(cap_send);
	last = NULL;
	nstatus = 0;
	return (0);
}

static int
teardown(void **state)
{
	char	*cmd;

	web_role.stop();
	uv_run(&loop, UV_RUN_DEFAULT);
	svc_set_send(NULL);
	if (last != NULL)
		opsn__services_status__free_unpacked(last, NULL);
	last = NULL;
	if (certs != NULL)
		opsn__services_certs__free_unpacked(certs, NULL);
	certs = NULL;
	ncerts = 0;
	if (cert_result != NULL)
		opsn__site_cert_result__free_unpacked(cert_result, NULL);
	cert_result = NULL;
	assert_int_equal(uv_loop_close(&loop), 0);
	xasprintf(&cmd, "rm -rf '%s'", tmp);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	free(web_root);
	free(confd);
	free(pages);
	free(toollog);
	free(failflag);
	free(nginx);
	memset(&ag, 0, sizeof(ag));
	return (0);
}

static void
start(void)
{
	char	*cause = NULL;

	if (web_role.init(&ag, &cause) == -1)
		fail_msg("init: %s", cause);
}

static void
stop(void)
{
	web_role.stop();
	uv_run(&loop, UV_RUN_DEFAULT);
}

/* ---- desired states -------------------------------------------------------- */

static Opsn__Site	 sites[8];
static char		*site_aliases[8][4];

static Opsn__Site *
add_site(Opsn__ServicesDesired *d, Opsn__Site **v, const char *id,
    const char *host, const char *alias)
{
	Opsn__Site	*s = &sites[d->n_sites];

	opsn__site__init(s);
	s->id = (char *)id;
	s->hostname = (char *)host;
	s->tenant = "31001";
	if (alias != NULL) {
		site_aliases[d->n_sites][0] = (char *)alias;
		s->aliases = site_aliases[d->n_sites];
		s->n_aliases = 1;
	}
	v[d->n_sites++] = s;
	d->sites = v;
	return (s);
}

static void
apply(const Opsn__ServicesDesired *d)
{
	uint8_t		*buf;
	size_t		 len = opsn__services_desired__get_packed_size(d);
	uint64_t	 end = util_mono_ms() + 10000;
	int		 want = nstatus + 1;

	buf = xmalloc(len + 1);
	opsn__services_desired__pack(d, buf);
	web_role.on_frame(MSG_SERVICES_DESIRED, buf, len);
	free(buf);
	while ((nstatus < want || !web_idle()) && util_mono_ms() < end)
		uv_run(&loop, UV_RUN_ONCE);
	assert_true(nstatus >= want);
	assert_int_equal(last->generation, d->generation);
}

static const char *
state_of(const char *id, const char **msg)
{
	size_t	 i;

	for (i = 0; i < last->n_objects; i++)
		if (strcmp(last->objects[i]->kind, "site") == 0 &&
		    strcmp(last->objects[i]->id, id) == 0) {
			if (msg != NULL)
				*msg = last->objects[i]->message;
			return (last->objects[i]->state);
		}
	return ("");
}

static char *
calls(void)
{
	char	*s = read_file(toollog);

	unlink(toollog);
	return (s != NULL ? s : xstrdup(""));
}

static char *
block(const char *id)
{
	char	*path, *text;

	xasprintf(&path, "%s/%s.conf", confd, id);
	text = read_file(path);
	free(path);
	return (text);
}

/* Files in the blocks' folder, temporary ones included, as "a b c". */
static char *
listing(void)
{
	DIR		*dp = opendir(confd);
	struct dirent	*de;
	char		*names[32], *out = xstrdup(""), *prev;
	size_t		 n = 0, i, j;

	assert_non_null(dp);
	while ((de = readdir(dp)) != NULL && n < 32)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			names[n++] = xstrdup(de->d_name);
	closedir(dp);
	for (i = 0; i < n; i++)
		for (j = i + 1; j < n; j++)
			if (strcmp(names[j], names[i]) < 0) {
				char *t = names[i];

				names[i] = names[j];
				names[j] = t;
			}
	for (i = 0; i < n; i++) {
		prev = out;
		xasprintf(&out, "%s%s%s", prev, *prev ? " " : "", names[i]);
		free(prev);
		free(names[i]);
	}
	return (out);
}

#define NGINX_T		"nginx -p /prefix -c /prefix/nginx.conf -t -q\n"
#define NGINX_RELOAD	"nginx -p /prefix -c /prefix/nginx.conf -s reload -q\n"

/* ---- tests --------------------------------------------------------------------- */

static void
web_writes_one_block_per_site_then_checks_and_reloads(void **state)
{
	Opsn__ServicesDesired	 d = OPSN__SERVICES_DESIRED__INIT;
	Opsn__Site		*v[4];
	char			*b, *c, *path, *page;
	struct stat		 st;

	d.generation = 1;
	add_site(&d, v, "s1", "www.mairie-agassac.fr", "mairie-agassac.fr");
	add_site(&d, v, "s2", "www.aignes.fr", NULL);
	start();
	apply(&d);
	assert_true(last->ok);
	assert_string_equal(state_of("s1", NULL), "applied");
	assert_string_equal(state_of("s2", NULL), "applied");
	b = block("s1");
	assert_non_null(b);
	assert_non_null(strstr(b, "# opsn site id=s1 tenant=31001 "
	    "host=www.mairie-agassac.fr\n"));
	assert_non_null(strstr(b, "\tlisten 127.0.0.1:8080;\n"
	    "\tlisten [::1]:8080;\n"));
	assert_non_null(strstr(b, "\tserver_name www.mairie-agassac.fr "
	    "mairie-agassac.fr;\n"));
	xasprintf(&path, "\troot %s/www.mairie-agassac.fr/htdocs;\n",
	    web_root);
	assert_non_null(strstr(b, path));
	free(path);
	free(b);
	/* A placeholder (built in: no pages folder) named after the site. */
	xasprintf(&path, "%s/www.aignes.fr/htdocs/index.html", web_root);
	page = read_file(path);
	assert_non_null(page);
	assert_non_null(strstr(page, "<h1>www.aignes.fr</h1>"));
	assert_int_equal(stat(path, &st), 0);
	/* nginx's workers run as nobody. */
	assert_int_equal(st.st_mode & 0777, 0644);
	free(page);
	free(path);
	assert_int_equal(stat(web_root, &st), 0);
	assert_int_equal(st.st_mode & 0755, 0755);
	c = calls();
	assert_string_equal(c, NGINX_T NGINX_RELOAD);
	free(c);
	/* The same sites again: nothing to check or reload. */
	d.generation = 2;
	apply(&d);
	assert_string_equal(state_of("s2", NULL), "applied");
	c = calls();
	assert_string_equal(c, "");
	free(c);
	c = listing();
	assert_string_equal(c, "s1.conf s2.conf");
	free(c);
	stop();
}

static void
web_suspended_site_answers_503_with_the_page(void **state)
{
	Opsn__ServicesDesired	 d = OPSN__SERVICES_DESIRED__INIT;
	Opsn__Site		*v[2], *s;
	char			*b, *path, *page, *want;

	assert_int_equal(mkdir(pages, 0755), 0);
	xasprintf(&path, "%s/suspended.html", pages);
	write_file(path, "<p>Site suspendu (page de l'OPSN)</p>\n", 0644);
	free(path);
	d.generation = 1;
	s = add_site(&d, v, "s1", "www.aignes.fr", NULL);
	s->suspended = 1;
	start();
	apply(&d);
	assert_string_equal(state_of("s1", NULL), "applied");
	b = block("s1");
	assert_non_null(strstr(b, "\t\treturn 503;\n"));
	assert_non_null(strstr(b, "error_page 503 /suspended.html;"));
	assert_non_null(strstr(b, "add_header Retry-After"));
	xasprintf(&want, "\troot %s/.opsn;\n", web_root);
	assert_non_null(strstr(b, want));
	free(want);
	free(b);
	xasprintf(&path, "%s/.opsn/suspended.html", web_root);
	page = read_file(path);
	assert_string_equal(page, "<p>Site suspendu (page de l'OPSN)</p>\n");
	free(page);
	free(path);
	/* Reactivated: its own files again. */
	s->suspended = 0;
	d.generation = 2;
	apply(&d);
	b = block("s1");
	assert_null(strstr(b, "return 503"));
	free(b);
	stop();
}

static void
web_refused_block_never_goes_live(void **state)
{
	Opsn__ServicesDesired	 d = OPSN__SERVICES_DESIRED__INIT;
	Opsn__Site		*v[4];
	const char		*msg;
	char			*c, *b;

	d.generation = 1;
	add_site(&d, v, "s1", "www.mairie-agassac.fr", NULL);
	start();
	apply(&d);
	free(calls());
	/* One good change and one nginx refuses, in the same generation. */
	d.generation = 2;
	add_site(&d, v, "s2", "www.aignes.fr", NULL);
	add_site(&d, v, "s3", "refused.aignes.fr", NULL);
	apply(&d);
	assert_true(last->ok);
	assert_string_equal(state_of("s1", NULL), "applied");
	assert_string_equal(state_of("s2", NULL), "applied");
	assert_string_equal(state_of("s3", &msg), "error");
	assert_non_null(strstr(msg, "nginx -t"));
	assert_non_null(strstr(msg, "host refused in"));
	/* Not "2026/11/29 ... 42#42:": the message, from its [emerg]. */
	assert_null(strstr(msg, "42#42"));
	c = listing();
	assert_string_equal(c, "s1.conf s2.conf");
	free(c);
	b = block("s2");
	assert_non_null(b);
	free(b);
	/* All at once, back, each alone, once more, then the reload. */
	c = calls();
	assert_string_equal(c, NGINX_T NGINX_T NGINX_T NGINX_T NGINX_T
	    NGINX_RELOAD);
	free(c);
	stop();
}

static void
web_refused_change_keeps_the_site_as_it_was(void **state)
{
	Opsn__ServicesDesired	 d = OPSN__SERVICES_DESIRED__INIT;
	Opsn__Site		*v[2], *s;
	char			*before, *after, *c;

	d.generation = 1;
	s = add_site(&d, v, "s1", "www.mairie-agassac.fr", NULL);
	start();
	apply(&d);
	before = block("s1");
	free(calls());
	d.generation = 2;
	site_aliases[0][0] = "refused.mairie-agassac.fr";
	s->aliases = site_aliases[0];
	s->n_aliases = 1;
	apply(&d);
	assert_string_equal(state_of("s1", NULL), "error");
	after = block("s1");
	assert_string_equal(after, before);
	free(after);
	free(before);
	c = listing();
	assert_string_equal(c, "s1.conf");
	free(c);
	/* Nothing changed: nginx is not reloaded. */
	c = calls();
	assert_null(strstr(c, "reload"));
	free(c);
	stop();
}

static void
web_configuration_broken_elsewhere_fails_the_generation(void **state)
{
	Opsn__ServicesDesired	 d = OPSN__SERVICES_DESIRED__INIT;
	Opsn__Site		*v[2];
	char			*c;

	d.generation = 1;
	add_site(&d, v, "s1", "www.mairie-agassac.fr", NULL);
	write_file(failflag, "", 0644);
	start();
	apply(&d);
	assert_false(last->ok);
	assert_non_null(strstr(last->error, "even without our changes"));
	assert_non_null(strstr(last->error, "unknown directive"));
	assert_string_equal(state_of("s1", NULL), "error");
	c = listing();
	assert_string_equal(c, "");
	free(c);
	/* Repaired: the next state goes live. */
	unlink(failflag);
	d.generation = 2;
	apply(&d);
	assert_true(last->ok);
	assert_string_equal(state_of("s1", NULL), "applied");
	stop();
}

static void
web_removed_site_loses_its_block_not_its_files(void **state)
{
	Opsn__ServicesDesired	 d = OPSN__SERVICES_DESIRED__INIT;
	Opsn__Site		*v[2];
	char			*c, *path;
	struct stat		 st;

	d.generation = 1;
	add_site(&d, v, "s1", "www.mairie-agassac.fr", NULL);
	add_site(&d, v, "s2", "www.aignes.fr", NULL);
	start();
	/* Someone else's block in the folder is not ours to remove. */
	xasprintf(&path, "%s/local.conf", confd);
	write_file(path, "server { listen 8081; }\n", 0644);
	free(path);
	apply(&d);
	d.n_sites = 1;
	d.generation = 2;
	apply(&d);
	c = listing();
	assert_string_equal(c, "local.conf s1.conf");
	free(c);
	xasprintf(&path, "%s/www.aignes.fr/htdocs/index.html", web_root);
	assert_int_equal(stat(path, &st), 0);
	free(path);
	stop();
}

static void
web_bad_names_and_taken_names_are_reported(void **state)
{
	Opsn__ServicesDesired	 d = OPSN__SERVICES_DESIRED__INIT;
	Opsn__Site		*v[8];
	const char		*msg;
	char			*c, *b;

	d.generation = 3;
	add_site(&d, v, "s1", "www.mairie-agassac.fr", "mairie-agassac.fr");
	add_site(&d, v, "s2", "WWW.Aignes.fr", NULL);
	add_site(&d, v, "s3", "mairie-agassac.fr", NULL);
	add_site(&d, v, "s4", "www.alan.fr", "x;include /etc/passwd");
	add_site(&d, v, "../s5", "www.aurignac.fr", NULL);
	add_site(&d, v, "s7", "localhost", NULL);
	add_site(&d, v, "s6", "www.auterive.fr", NULL);
	add_site(&d, v, "s6", "www.aurignac.fr", NULL);
	start();
	apply(&d);
	assert_true(last->ok);
	assert_string_equal(state_of("s1", NULL), "applied");
	assert_string_equal(state_of("s2", NULL), "error");
	assert_string_equal(state_of("s3", &msg), "error");
	assert_non_null(strstr(msg, "already another site's"));
	assert_string_equal(state_of("s4", NULL), "error");
	assert_string_equal(state_of("../s5", NULL), "error");
	assert_string_equal(state_of("s7", NULL), "error");
	/* One id names one block: the second site with it is refused. */
	assert_string_equal(state_of("s6", &msg), "error");
	assert_non_null(strstr(msg, "twice"));
	c = listing();
	assert_string_equal(c, "s1.conf s6.conf");
	free(c);
	b = block("s6");
	assert_non_null(strstr(b, "www.auterive.fr"));
	free(b);
	/* A site whose new state is bad keeps its last good block. */
	b = block("s1");
	site_aliases[0][0] = "bad_alias.fr";
	d.generation = 4;
	apply(&d);
	assert_string_equal(state_of("s1", NULL), "error");
	c = block("s1");
	assert_string_equal(c, b);
	free(c);
	free(b);
	stop();
}

static void
web_placeholder_only_in_an_empty_document_root(void **state)
{
	Opsn__ServicesDesired	 d = OPSN__SERVICES_DESIRED__INIT;
	Opsn__Site		*v[2];
	char			*dir, *path, *page;
	struct stat		 st;

	assert_int_equal(mkdir(pages, 0755), 0);
	xasprintf(&path, "%s/placeholder.html", pages);
	write_file(path, "<title>@HOSTNAME@</title>@HOSTNAME@!\n", 0644);
	free(path);
	xasprintf(&dir, "%s/www.aignes.fr/htdocs", web_root);
	assert_int_equal(svc_mkdirs(dir, 0755, -1, -1, &path), 0);
	xasprintf(&path, "%s/index.htm", dir);
	write_file(path, "the commune's own page\n", 0644);
	free(path);
	d.generation = 1;
	add_site(&d, v, "s1", "www.aignes.fr", NULL);
	add_site(&d, v, "s2", "www.alan.fr", NULL);
	start();
	apply(&d);
	xasprintf(&path, "%s/index.html", dir);
	assert_int_equal(stat(path, &st), -1);
	free(path);
	xasprintf(&path, "%s/www.alan.fr/htdocs/index.html", web_root);
	page = read_file(path);
	assert_string_equal(page, "<title>www.alan.fr</title>www.alan.fr!\n");
	free(page);
	free(path);
	free(dir);
	stop();
}

static int	 usage_done;
static int64_t	 usage_bytes;

static void
usage_cb(void *arg, const char *kind, const char *id, const char *tenant,
    int64_t bytes)
{
	if (kind == NULL) {
		usage_done++;
		return;
	}
	assert_string_equal(kind, "site");
	assert_string_equal(tenant, "31001");
	if (strcmp(id, "s2") == 0)
		usage_bytes = bytes;
}

static void
web_usage_sums_each_site(void **state)
{
	Opsn__ServicesDesired	 d = OPSN__SERVICES_DESIRED__INIT;
	Opsn__Site		*v[2];
	char			*path, *page;
	int64_t			 placeholder;

	d.generation = 1;
	add_site(&d, v, "s1", "www.aignes.fr", NULL);
	add_site(&d, v, "s2", "www.alan.fr", NULL);
	start();
	apply(&d);
	xasprintf(&path, "%s/www.alan.fr/htdocs/index.html", web_root);
	page = read_file(path);
	placeholder = (int64_t)strlen(page);
	free(page);
	free(path);
	xasprintf(&path, "%s/www.alan.fr/htdocs/a.txt", web_root);
	write_file(path, "0123456789", 0644);
	free(path);
	usage_done = 0;
	web_usage(usage_cb, NULL);
	while (!usage_done)
		uv_run(&loop, UV_RUN_ONCE);
	assert_int_equal(usage_bytes, placeholder + 10);
	stop();
}

/* ---- certificates -------------------------------------------------------- */

/* A member's certificate for names (PEM chain and key; caller frees). */
static void
member_cert(const char *const *names, size_t n, char **cert, char **key)
{
	EVP_PKEY	*cakey, *k;
	X509		*ca, *leaf;
	char		*cause = NULL, *leaf_pem, *ca_pem;

	cakey = pki_key_new(&cause);
	ca = pki_ca_new(cakey, "Syndicat test CA", 30, &cause);
	k = pki_key_new(&cause);
	leaf = pki_server_cert_new(k, names, n, ca, cakey, 30, &cause);
	assert_non_null(leaf);
	leaf_pem = pki_cert_pem(leaf, &cause);
	ca_pem = pki_cert_pem(ca, &cause);
	xasprintf(cert, "%s%s", leaf_pem, ca_pem);
	*key = pki_key_pem(k, &cause);
	free(leaf_pem);
	free(ca_pem);
	X509_free(leaf);
	X509_free(ca);
	EVP_PKEY_free(k);
	EVP_PKEY_free(cakey);
}

/* MSG_SITE_CERT as the controller sends it; the agent's answer. */
static void
send_cert(const char *site, const char *const *names, size_t n,
    const char *cert, const char *key)
{
	Opsn__SiteCert	 m = OPSN__SITE_CERT__INIT;
	uint8_t		*buf;
	size_t		 len;
	uint64_t	 end = util_mono_ms() + 10000;

	m.request = 7;
	m.site_id = (char *)site;
	m.names = (char **)names;
	m.n_names = n;
	m.cert_pem = (char *)cert;
	m.key_pem = (char *)key;
	len = opsn__site_cert__get_packed_size(&m);
	buf = xmalloc(len + 1);
	opsn__site_cert__pack(&m, buf);
	if (cert_result != NULL)
		opsn__site_cert_result__free_unpacked(cert_result, NULL);
	cert_result = NULL;
	web_role.on_frame(MSG_SITE_CERT, buf, len);
	free(buf);
	while (cert_result == NULL && util_mono_ms() < end)
		uv_run(&loop, UV_RUN_ONCE);
	assert_non_null(cert_result);
	assert_int_equal(cert_result->request, 7);
}

static void
web_member_certificate_serves_https_and_redirects(void **state)
{
	static const char *const names[] = { "www.mairie-agassac.fr",
	    "mairie-agassac.fr" };
	static const char *const other[] = { "www.aignes.fr" };
	Opsn__ServicesDesired	 d = OPSN__SERVICES_DESIRED__INIT;
	Opsn__Site		*v[2], *s;
	char			*cert, *key, *bad, *bad_key, *b, *path, *c;
	char			 sha[65];
	struct stat		 st;
	size_t			 i;

	member_cert(names, 2, &cert, &key);
	member_cert(other, 1, &bad, &bad_key);
	start();
	/* Refused: it does not name the site; nothing is kept. */
	send_cert("s1", names, 2, bad, bad_key);
	assert_false(cert_result->ok);
	assert_non_null(strstr(cert_result->error, "does not cover"));
	xasprintf(&path, "%s/tls/manual/s1", tmp);
	assert_int_equal(stat(path, &st), -1);
	free(path);
	send_cert("s1", names, 2, cert, key);
	assert_true(cert_result->ok);
	strlcpy(sha, cert_result->cert_sha256, sizeof(sha));
	assert_int_equal(strlen(sha), 64);

	d.generation = 1;
	s = add_site(&d, v, "s1", "www.mairie-agassac.fr", "mairie-agassac.fr");
	s->tls = "manual";
	s->cert_sha256 = sha;
	apply(&d);
	assert_string_equal(state_of("s1", NULL), "applied");
	b = block("s1");
	/* Port 80: ACME's challenges, everything else to HTTPS. */
	assert_non_null(strstr(b, "\tlocation ^~ /.well-known/acme-challenge/ "
	    "{\n"));
	assert_non_null(strstr(b, "\t\treturn 301 https://$host:8443"
	    "$request_uri;\n"));
	assert_non_null(strstr(b, "\tlisten 127.0.0.1:8443 ssl http2;\n"));
	assert_non_null(strstr(b, "\tssl_protocols TLSv1.2 TLSv1.3;\n"
	    "\tssl_ciphers ECDHE+AESGCM:ECDHE+CHACHA20;\n"));
	xasprintf(&path, "\tssl_certificate_key %s/tls/live/site-s1/key.pem;",
	    tmp);
	assert_non_null(strstr(b, path));
	free(path);
	free(b);
	/* The key, on disk for nginx only. */
	xasprintf(&path, "%s/tls/live/site-s1/key.pem", tmp);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	c = read_file(path);
	assert_string_equal(c, key);
	free(c);
	free(path);
	/* Reported valid, from the member, the key nowhere in the report. */
	for (i = 0; certs == NULL || certs->n_certs == 0 ||
	    strcmp(certs->certs[0]->state, "valid") != 0; i++) {
		assert_true(i < 100000);
		uv_run(&loop, UV_RUN_ONCE);
	}
	assert_string_equal(certs->certs[0]->source, "manual");
	assert_string_equal(certs->certs[0]->issuer, "Syndicat test CA");
	/* Without its certificate on the backend: plain HTTP, reported. */
	d.generation = 2;
	s->cert_sha256 = "0000000000000000000000000000000000000000000000000000"
	    "000000000000";
	apply(&d);
	for (i = 0; strcmp(certs->certs[0]->state, "failed") != 0; i++) {
		assert_true(i < 100000);
		uv_run(&loop, UV_RUN_ONCE);
	}
	assert_non_null(strstr(certs->certs[0]->message, "not on this "
	    "backend"));
	free(cert);
	free(key);
	free(bad);
	free(bad_key);
	stop();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    web_writes_one_block_per_site_then_checks_and_reloads,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    web_member_certificate_serves_https_and_redirects, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    web_suspended_site_answers_503_with_the_page, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    web_refused_block_never_goes_live, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    web_refused_change_keeps_the_site_as_it_was, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    web_configuration_broken_elsewhere_fails_the_generation,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    web_removed_site_loses_its_block_not_its_files, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    web_bad_names_and_taken_names_are_reported, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    web_placeholder_only_in_an_empty_document_root, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    web_usage_sums_each_site, setup, teardown),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
