/*
 * What the DNS publishes for a mail domain or a site, compared with what
 * opsn expects: for each record, present and equal ("ok"), "missing", or
 * "different" (both shown).
 *
 * Mail domain: the MX, the SPF record, the DKIM key (and the next one while
 * a rotation waits: once found as printed, the domain signs with it), and
 * DMARC. Site: the host name and each alias, a CNAME to the web backend's
 * public name or the same addresses (A and AAAA) as that name.
 *
 * Names are resolved with the C library's resolver (res_nquery on a state
 * of the job's own) on the thread pool: the system's resolvers, or the
 * one the request names (?resolver=ADDR[:PORT], IPv4), asked directly
 * with recursion wanted (an authoritative server answers for its zones).
 */
#include <sys/types.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>

#include <ctype.h>
#include <netdb.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "services.h"

#define CHECK_ANSWER_MAX	65535
#define CHECK_VALUE_MAX		4096
#define CHECK_FOUND_MAX		32

enum check_kind {
	CHECK_MX,
	CHECK_SPF,
	CHECK_DKIM,
	CHECK_DMARC,
	CHECK_ADDR,	/* a site's name: CNAME to, or same A/AAAA as, a host */
};

struct check_rec {
	enum check_kind	 cr_kind;
	char		*cr_name;
	char		*cr_expected;
	char		*cr_purpose;
	int		 cr_next;	/* the DKIM key of a waiting rotation */
	/* filled on the pool thread */
	json_t		*cr_found;
	const char	*cr_status;
	char		*cr_error;
};

struct check_job {
	uv_work_t		 j_req;
	struct api_defer	*j_defer;
	char			*j_subject;	/* the domain, or the site */
	char			*j_resolver;	/* as given, or "system" */
	struct sockaddr_in	 j_ns;
	int			 j_has_ns;
	struct check_rec	*j_recs;
	size_t			 j_nrecs;
	char			*j_backend;	/* a site's web backend name */
	int64_t			 j_domain;	/* a mail domain's id, or 0 */
};

/* ---- resolving (pool thread) --------------------------------------------- */

/* A value from the DNS, safe to show: no control character, bounded. */
static json_t *
check_text(const char *s, size_t len)
{
	char	*v;
	size_t	 i;
	json_t	*o;

	if (len > CHECK_VALUE_MAX)
		len = CHECK_VALUE_MAX;
	v = xstrndup(s, len);
	for (i = 0; v[i] != '\0'; i++)
		if ((unsigned char)v[i] < ' ' || v[i] == 0x7f)
			v[i] = '?';
	o = json_string(v);
	if (o == NULL)		/* not UTF-8: keep it ASCII */
		for (i = 0; v[i] != '\0'; i++)
			if ((unsigned char)v[i] > 0x7e)
				v[i] = '?';
	if (o == NULL)
		o = json_string(v);
	free(v);
	return (o);
}

/* A domain name from a record, lower case with the final dot. */
static json_t *
check_dname(const ns_msg *msg, const unsigned char *p)
{
	char	 name[NS_MAXDNAME + 2];
	size_t	 i;

	if (dn_expand(ns_msg_base(*msg), ns_msg_end(*msg), p, name,
	    NS_MAXDNAME) < 0)
		return (NULL);
	for (i = 0; name[i] != '\0'; i++)
		name[i] = (char)tolower((unsigned char)name[i]);
	name[i++] = '.';
	name[i] = '\0';
	return (check_text(name, i));
}

static json_t *
check_rdata(const ns_msg *msg, const ns_rr *rr, int type)
{
	const unsigned char	*p = ns_rr_rdata(*rr);
	size_t			 len = ns_rr_rdlen(*rr), i, l;
	char			 buf[INET6_ADDRSTRLEN + 8], *txt;
	json_t			*v, *o;

	switch (type) {
	case ns_t_a:
	case ns_t_aaaa:
		if (len != (type == ns_t_a ? 4u : 16u) || inet_ntop(type ==
		    ns_t_a ? AF_INET : AF_INET6, p, buf, sizeof(buf)) == NULL)
			return (NULL);
		return (json_string(buf));
	case ns_t_cname:
		return (check_dname(msg, p));
	case ns_t_mx:
		if (len < 3 || (v = check_dname(msg, p + 2)) == NULL)
			return (NULL);
		snprintf(buf, sizeof(buf), "%u ", ns_get16(p));
		xasprintf(&txt, "%s%s", buf, json_string_value(v));
		json_decref(v);
		o = check_text(txt, strlen(txt));
		free(txt);
		return (o);
	case ns_t_txt:
		/* Character strings joined, as DKIM and SPF read them. */
		txt = xcalloc(1, len + 1);
		for (i = 0, l = 0; i < len; i += 1 + p[i]) {
			if (i + 1 + p[i] > len)
				break;
			memcpy(txt + l, p + i + 1, p[i]);
			l += p[i];
		}
		o = check_text(txt, l);
		free(txt);
		return (o);
	}
	return (NULL);
}

/*
 * The values of name's records of type (none when it does not exist).
 * -1 with *err when the resolver could not answer.
 */
static int
check_query(res_state rs, const char *name, int type, json_t *out,
    char **err)
{
	unsigned char	*ans;
	ns_msg		 msg;
	ns_rr		 rr;
	json_t		*v;
	int		 len, i, rc = 0;

	ans = xmalloc(CHECK_ANSWER_MAX);
	len = res_nquery(rs, name, ns_c_in, type, ans, CHECK_ANSWER_MAX);
	if (len < 0) {
		if (rs->res_h_errno != HOST_NOT_FOUND &&
		    rs->res_h_errno != NO_DATA) {
			xasprintf(err, "the resolver did not answer for %s (%s)",
			    name, hstrerror(rs->res_h_errno));
			rc = -1;
		}
		goto out;
	}
	if (ns_initparse(ans, len, &msg) == -1) {
		xasprintf(err, "the answer for %s does not parse", name);
		rc = -1;
		goto out;
	}
	for (i = 0; i < ns_msg_count(msg, ns_s_an); i++) {
		if (ns_parserr(&msg, ns_s_an, i, &rr) == -1)
			break;
		if ((int)ns_rr_type(rr) != type ||
		    ns_rr_class(rr) != ns_c_in)
			continue;
		if (json_array_size(out) < CHECK_FOUND_MAX &&
		    (v = check_rdata(&msg, &rr, type)) != NULL)
			json_array_append_new(out, v);
	}
out:
	free(ans);
	return (rc);
}

/* "v=DKIM1; k=rsa; p=AB CD" -> "ABCD": the key a DKIM record carries. */
static char *
check_dkim_key(const char *txt)
{
	const char	*p = txt;
	char		*out = xstrdup(""), *o;

	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == ';')
			p++;
		if (*p == '\0')
			break;
		if (p[0] == 'p' && (p[1] == '=' || p[1] == ' ')) {
			while (*p != '=' && *p != '\0')
				p++;
			if (*p == '=')
				p++;
			out = xrealloc(out, strlen(p) + 1);
			for (o = out; *p != '\0' && *p != ';'; p++)
				if (!isspace((unsigned char)*p))
					*o++ = *p;
			*o = '\0';
			return (out);
		}
		while (*p != ';' && *p != '\0')
			p++;
	}
	return (out);
}

/* Compare ignoring runs of spaces and the case of tags (SPF, DMARC). */
static int
check_same(const char *a, const char *b)
{
	for (;;) {
		while (*a == ' ')
			a++;
		while (*b == ' ')
			b++;
		if (*a == '\0' || *b == '\0')
			return (*a == *b);
		if (tolower((unsigned char)*a) != tolower((unsigned char)*b))
			return (0);
		a++;
		b++;
	}
}

/* The TXT records of found that start with prefix (any case). */
static json_t *
check_txt_prefixed(json_t *found, const char *prefix)
{
	json_t	*out = json_array(), *v;
	size_t	 i;

	json_array_foreach(found, i, v)
		if (strncasecmp(json_string_value(v), prefix,
		    strlen(prefix)) == 0)
			json_array_append(out, v);
	return (out);
}

static int
check_has(json_t *set, const char *s)
{
	json_t	*v;
	size_t	 i;

	json_array_foreach(set, i, v)
		if (strcasecmp(json_string_value(v), s) == 0)
			return (1);
	return (0);
}

/* Same addresses, in any order. */
static int
check_same_set(json_t *a, json_t *b)
{
	json_t	*v;
	size_t	 i;

	if (json_array_size(a) != json_array_size(b))
		return (0);
	json_array_foreach(a, i, v)
		if (!check_has(b, json_string_value(v)))
			return (0);
	return (1);
}

/* A site's name: a CNAME to the backend, or the backend's addresses. */
static void
check_addr(res_state rs, struct check_rec *c, json_t *want, char **err)
{
	json_t	*cname = json_array();

	if (check_query(rs, c->cr_name, ns_t_cname, cname, err) == -1) {
		json_decref(cname);
		return;
	}
	if (json_array_size(cname) > 0) {
		json_array_extend(c->cr_found, cname);
		json_decref(cname);
		c->cr_status = check_has(c->cr_found, json_string_value(
		    json_array_get(want, 0))) ? "ok" : "different";
		return;
	}
	json_decref(cname);
	if (check_query(rs, c->cr_name, ns_t_a, c->cr_found, err) == -1 ||
	    check_query(rs, c->cr_name, ns_t_aaaa, c->cr_found, err) == -1)
		return;
	if (json_array_size(c->cr_found) == 0)
		c->cr_status = "missing";
	else {
		/* want[0] is the CNAME target, the rest its addresses. */
		json_t *addrs = json_array();
		size_t	i;

		for (i = 1; i < json_array_size(want); i++)
			json_array_append(addrs, json_array_get(want, i));
		c->cr_status = json_array_size(addrs) > 0 &&
		    check_same_set(addrs, c->cr_found) ? "ok" : "different";
		json_decref(addrs);
	}
}

/* One record of a mail domain. */
static void
check_mail(res_state rs, struct check_rec *c, char **err)
{
	json_t	*all = json_array(), *v;
	char	*want, *have;
	size_t	 i;

	if (check_query(rs, c->cr_name, c->cr_kind == CHECK_MX ? ns_t_mx :
	    ns_t_txt, all, err) == -1) {
		json_decref(all);
		return;
	}
	switch (c->cr_kind) {
	case CHECK_MX:
		json_array_extend(c->cr_found, all);
		c->cr_status = check_has(all, c->cr_expected) ? "ok" :
		    "different";
		break;
	case CHECK_SPF:
	case CHECK_DMARC:
		v = check_txt_prefixed(all, c->cr_kind == CHECK_SPF ?
		    "v=spf1" : "v=DMARC1");
		json_array_extend(c->cr_found, v);
		json_decref(v);
		c->cr_status = "different";
		json_array_foreach(c->cr_found, i, v)
			if (check_same(json_string_value(v), c->cr_expected))
				c->cr_status = "ok";
		break;
	case CHECK_DKIM:
		json_array_extend(c->cr_found, all);
		want = check_dkim_key(c->cr_expected);
		c->cr_status = "different";
		json_array_foreach(all, i, v) {
			have = check_dkim_key(json_string_value(v));
			if (*have != '\0' && strcmp(have, want) == 0)
				c->cr_status = "ok";
			free(have);
		}
		free(want);
		break;
	case CHECK_ADDR:
		break;
	}
	if (json_array_size(c->cr_found) == 0)
		c->cr_status = "missing";
	json_decref(all);
}

static void
check_work_cb(uv_work_t *req)
{
	struct check_job	*j = req->data;
	struct __res_state	 rs;
	json_t			*want = NULL;
	char			*err = NULL, *target;
	size_t			 i;

	memset(&rs, 0, sizeof(rs));
	if (res_ninit(&rs) == -1) {
		for (i = 0; i < j->j_nrecs; i++)
			xasprintf(&j->j_recs[i].cr_error, "the resolver could "
			    "not be set up");
		return;
	}
	rs.options |= RES_RECURSE;
	rs.retrans = 2;
	rs.retry = 2;
	if (j->j_has_ns) {
		rs.nscount = 1;
		rs.nsaddr_list[0] = j->j_ns;
	}
	if (j->j_backend != NULL) {
		/* What a site's names should lead to. */
		want = json_array();
		xasprintf(&target, "%s.", j->j_backend);
		json_array_append_new(want, json_string(target));
		free(target);
		(void)check_query(&rs, j->j_backend, ns_t_a, want, &err);
		(void)check_query(&rs, j->j_backend, ns_t_aaaa, want, &err);
		free(err);
		err = NULL;
	}
	for (i = 0; i < j->j_nrecs; i++) {
		struct check_rec *c = &j->j_recs[i];

		c->cr_found = json_array();
		if (c->cr_kind == CHECK_ADDR)
			check_addr(&rs, c, want, &err);
		else
			check_mail(&rs, c, &err);
		if (err != NULL) {
			c->cr_error = err;
			c->cr_status = "unknown";
			err = NULL;
		}
	}
	json_decref(want);
	res_nclose(&rs);
}

/* ---- the answer (loop thread) ------------------------------------------- */

static void
check_job_free(struct check_job *j)
{
	size_t	 i;

	for (i = 0; i < j->j_nrecs; i++) {
		free(j->j_recs[i].cr_name);
		free(j->j_recs[i].cr_expected);
		free(j->j_recs[i].cr_purpose);
		free(j->j_recs[i].cr_error);
		json_decref(j->j_recs[i].cr_found);
	}
	free(j->j_recs);
	free(j->j_subject);
	free(j->j_resolver);
	free(j->j_backend);
	free(j);
}

static void
check_after_cb(uv_work_t *req, int status)
{
	struct check_job	*j = req->data;
	json_t			*recs = json_array(), *o;
	int			 ok = 1, promote = 0, rc;
	size_t			 i;

	for (i = 0; i < j->j_nrecs; i++) {
		struct check_rec *c = &j->j_recs[i];

		o = json_pack("{s:s,s:s,s:s,s:O,s:s,s:s}", "name", c->cr_name,
		    "type", c->cr_kind == CHECK_MX ? "MX" : c->cr_kind ==
		    CHECK_ADDR ? "A/AAAA/CNAME" : "TXT", "expected",
		    c->cr_expected, "found", c->cr_found, "status",
		    c->cr_status != NULL ? c->cr_status : "unknown", "purpose",
		    c->cr_purpose);
		if (c->cr_error != NULL)
			json_object_set_new(o, "error",
			    json_string(c->cr_error));
		if (c->cr_next)
			json_object_set_new(o, "next", json_true());
		json_array_append_new(recs, o);
		if (c->cr_next)
			promote = c->cr_status != NULL &&
			    strcmp(c->cr_status, "ok") == 0;
		else if (c->cr_status == NULL || strcmp(c->cr_status, "ok") !=
		    0)
			ok = 0;
	}
	o = json_pack("{s:s,s:s,s:b,s:o}", j->j_backend != NULL ? "site" :
	    "domain", j->j_subject, "resolver", j->j_resolver, "ok", ok,
	    "records", recs);
	/* The next key's record is out there: it signs from now on. */
	if (j->j_domain != 0 && promote) {
		rc = services_dkim_promote(api_defer_req(j->j_defer),
		    j->j_domain);
		json_object_set_new(o, "dkim_rotated", json_boolean(rc == 1));
	}
	api_defer_reply_json(j->j_defer, 200, o);
	check_job_free(j);
}

/* ?resolver=ADDR[:PORT] into the job; -1 after replying 400. */
static int
check_resolver(struct api_req *r, struct check_job *j)
{
	const char	*q = api_query(r, "resolver");
	char		*host = NULL, *cause = NULL;
	int		 port = 53;

	if (q == NULL || *q == '\0' || strcmp(q, "system") == 0) {
		j->j_resolver = xstrdup("system");
		return (0);
	}
	if (strchr(q, ':') != NULL) {
		if (util_parse_hostport(q, &host, &port, &cause) == -1) {
			api_reply_error(r, 400, "bad_parameter", "resolver: %s",
			    cause);
			free(cause);
			return (-1);
		}
	} else
		host = xstrdup(q);
	memset(&j->j_ns, 0, sizeof(j->j_ns));
	j->j_ns.sin_family = AF_INET;
	j->j_ns.sin_port = htons((uint16_t)port);
	if (port <= 0 || port > 65535 ||
	    inet_pton(AF_INET, host, &j->j_ns.sin_addr) != 1) {
		api_reply_error(r, 400, "bad_parameter", "resolver: an IPv4 "
		    "address, with a port or not (\"192.0.2.53:53\")");
		free(host);
		return (-1);
	}
	j->j_has_ns = 1;
	xasprintf(&j->j_resolver, "%s:%d", host, port);
	free(host);
	return (0);
}

static struct check_rec *
check_add(struct check_job *j, enum check_kind kind, const char *name,
    const char *expected, const char *purpose)
{
	struct check_rec	*c;

	j->j_recs = xrealloc(j->j_recs, (j->j_nrecs + 1) * sizeof(*c));
	c = &j->j_recs[j->j_nrecs++];
	memset(c, 0, sizeof(*c));
	c->cr_kind = kind;
	c->cr_name = xstrdup(name);
	c->cr_expected = xstrdup(expected);
	c->cr_purpose = xstrdup(purpose);
	return (c);
}

static void
check_start(struct api_req *r, struct check_job *j)
{
	j->j_req.data = j;
	j->j_defer = api_defer(r);
	if (uv_queue_work(ctl->loop, &j->j_req, check_work_cb,
	    check_after_cb) != 0)
		fatalx("services: uv_queue_work failed");
}

/* GET /v1/mail/domains/{name}/check?resolver= */
void
services_mail_domain_check(struct api_req *r)
{
	struct mail_domain	 d;
	struct services_dkim	*k;
	struct check_job	*j;
	json_t			*doc, *rec;
	size_t			 n, i;
	char			*mx;
	static const enum check_kind kinds[] = { CHECK_MX, CHECK_SPF,
	    CHECK_DKIM, CHECK_DMARC };

	if (services_mail_domain_find(r, api_param(r, "name"), &d) == -1)
		return;
	j = xcalloc(1, sizeof(*j));
	if (check_resolver(r, j) == -1) {
		check_job_free(j);
		return;
	}
	j->j_subject = xstrdup(d.md_name);
	j->j_domain = d.md_id;
	/* What `mail domain dns` prints, record by record. */
	mx = services_mx(d.md_node);
	n = services_dkim_keys(d.md_id, &k);
	doc = services_util_dns(d.md_name, mx, n > 0 ? k[0].dk_selector : "",
	    n > 0 ? k[0].dk_public_b64 : "");
	json_array_foreach(json_object_get(doc, "records"), i, rec)
		if (i < nitems(kinds))
			check_add(j, kinds[i], json_string_value(json_object_get(
			    rec, "name")), json_string_value(json_object_get(
			    rec, "value")), json_string_value(json_object_get(
			    rec, "purpose")));
	for (i = 1; i < n; i++) {
		char *name, *value;

		if (strcmp(k[i].dk_role, "next") != 0)
			continue;
		xasprintf(&name, "%s._domainkey.%s", k[i].dk_selector,
		    d.md_name);
		xasprintf(&value, "v=DKIM1; k=rsa; p=%s", k[i].dk_public_b64);
		check_add(j, CHECK_DKIM, name, value, "DKIM: the next key; it "
		    "signs once this record is published")->cr_next = 1;
		free(name);
		free(value);
	}
	services_dkim_keys_free(k, n);
	json_decref(doc);
	free(mx);
	check_start(r, j);
}

/* GET /v1/sites/{hostname}/check?resolver= */
void
services_sites_check(struct api_req *r)
{
	struct check_job	*j;
	sqlite3_stmt		*st;
	char			 id[37], host[SERVICES_HOST_MAX + 1], status[16];
	char			*want;
	int64_t			 node;

	if (services_sites_find(r, id, host, sizeof(host), status,
	    sizeof(status), &node) == -1)
		return;
	j = xcalloc(1, sizeof(*j));
	if (check_resolver(r, j) == -1) {
		check_job_free(j);
		return;
	}
	j->j_subject = xstrdup(host);
	j->j_backend = services_mx(node);
	xasprintf(&want, "CNAME %s. or the same A/AAAA as %s", j->j_backend,
	    j->j_backend);
	st = store_prepare(ctl->db, "SELECT hostname FROM sites WHERE id = ?1 "
	    "UNION ALL SELECT j.value FROM sites s, json_each(s.aliases) j "
	    "WHERE s.id = ?1");
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	while (store_step(st) == SQLITE_ROW)
		check_add(j, CHECK_ADDR, (const char *)sqlite3_column_text(st,
		    0), want, "the name leads to the site's web backend");
	sqlite3_finalize(st);
	free(want);
	check_start(r, j);
}
