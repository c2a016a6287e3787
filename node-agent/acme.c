/*
 * Certificates of a mail or web backend: one per site (its host name and
 * aliases) and one for a mail backend's host name.
 *
 * ACME. Debian's uacme speaks the protocol; this file decides when it
 * runs and reads what it wrote. uacme keeps its account and the
 * certificates in TLS_DIR/acme (NAME/cert.pem, private/NAME/key.pem); its
 * hook (TLS_DIR/acme-hook, written here) answers HTTP-01 challenges by
 * putting the key authorization in the webroot that nginx serves at
 * /.well-known/acme-challenge/ for every site on port 80. A certificate is
 * renewed when two thirds of its lifetime have passed. A failure is kept
 * in TLS_DIR/state/KIND-ID (count, next try, the CA's words) and the next
 * try waits retry_min, doubled at each failure up to retry_max, across
 * restarts of the agent: a CA that refuses or cannot be reached is never
 * hammered, and what is served stays as it is.
 *
 * One uacme at a time, on the uv thread pool; the loop thread only keeps
 * the state, the timer and the reports (MSG_SERVICES_CERTS). The roles
 * install the pair to serve (acme_live) from their own pool work: a pair
 * is checked with OpenSSL (names, dates, key) before a daemon sees it.
 *
 * Private keys never leave the backend: they are not reported, logged or
 * sent; the files are 0600 under a 0700 folder.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "opsn/frame.h"
#include "opsn/log.h"
#include "opsn/tlscert.h"
#include "opsn/util.h"
#include "agent.h"
#include "acme.h"
#include "svc.h"

#define ACME_RUN_TIMEOUT_MS	180000	/* uacme retries 3 times, 5 s apart */
#define ACME_MSG_MAX		400
#define ACME_FILE_RECHECK_S	3600	/* the operator's files, re-read */
#define ACME_TIMER_MAX_MS	(6 * 3600 * 1000)
#define ACME_LETSENCRYPT	"https://acme-v02.api.letsencrypt.org/directory"

/* An owned copy of an acme_want. */
struct acme_spec {
	struct acme_want	 s_w;
	char			*s_kind;
	char			*s_id;
	char			**s_names;
	char			*s_sha256;
	char			*s_cert_file;
	char			*s_key_file;
};

struct acme_cert {
	struct acme_spec	 c_spec;
	const char		*c_state;	/* none pending valid failed */
	struct tlscert_info	 c_info;
	char			*c_message;
	int64_t			 c_next;	/* unix s; 0 now, -1 never */
	char			 c_have[65];	/* the valid one last seen */
};

struct acme_job {
	uv_work_t		 j_req;
	struct acme_spec	 j_spec;
	const char		*j_state;
	struct tlscert_info	 j_info;
	char			*j_message;
	int64_t			 j_next;
};

static struct agent	*aa;
static char		*acme_tls;		/* TLS_DIR */
static char		*acme_dir;		/* uacme's confdir */
static char		*acme_hook;
static char		*acme_webroot;
static char		*acme_url;		/* the CA's directory, or "off" */
static char		*acme_email;
static char		*acme_client;
static int64_t		 acme_retry_min_s, acme_retry_max_s;
static void		(*acme_changed)(void);
static struct acme_cert	*acme_certs;
static size_t		 acme_ncerts;
static uv_timer_t	 acme_timer;
static int		 acme_inited, acme_busy, acme_stopping;

static const char acme_hook_text[] =
	"#!/bin/sh\n"
	"# Written by opsn-agent: uacme's hook for HTTP-01 challenges. The key\n"
	"# authorization goes into the folder nginx serves at\n"
	"# /.well-known/acme-challenge/ on port 80. Arguments: METHOD TYPE\n"
	"# IDENT TOKEN AUTH (uacme(1)).\n"
	"dir='%s/.well-known/acme-challenge'\n"
	"[ \"$2\" = http-01 ] || exit 1\n"
	"case \"$4\" in ''|*[!A-Za-z0-9_-]*) exit 1;; esac\n"
	"case \"$1\" in\n"
	"begin)\n"
	"\tumask 022\n"
	"\tprintf '%%s' \"$5\" > \"$dir/.$4\" && mv -f \"$dir/.$4\" \"$dir/$4\";;\n"
	"done|failed)\n"
	"\trm -f \"$dir/$4\";;\n"
	"*)\n"
	"\texit 1;;\n"
	"esac\n";

static void	acme_kick(void);

/* ---- specs -------------------------------------------------------------- */

static char *
acme_dup(const char *s)
{
	return (s != NULL ? xstrdup(s) : NULL);
}

static void
acme_spec_set(struct acme_spec *s, const struct acme_want *w)
{
	size_t	 i;

	memset(s, 0, sizeof(*s));
	s->s_kind = xstrdup(w->w_kind);
	s->s_id = xstrdup(w->w_id);
	s->s_names = xcalloc(w->w_nnames + 1, sizeof(*s->s_names));
	for (i = 0; i < w->w_nnames; i++)
		s->s_names[i] = xstrdup(w->w_names[i]);
	s->s_sha256 = acme_dup(w->w_sha256);
	s->s_cert_file = acme_dup(w->w_cert_file);
	s->s_key_file = acme_dup(w->w_key_file);
	s->s_w = *w;
	s->s_w.w_kind = s->s_kind;
	s->s_w.w_id = s->s_id;
	s->s_w.w_names = (const char *const *)s->s_names;
	s->s_w.w_sha256 = s->s_sha256;
	s->s_w.w_cert_file = s->s_cert_file;
	s->s_w.w_key_file = s->s_key_file;
}

static void
acme_spec_clear(struct acme_spec *s)
{
	size_t	 i;

	for (i = 0; i < s->s_w.w_nnames; i++)
		free(s->s_names[i]);
	free(s->s_names);
	free(s->s_kind);
	free(s->s_id);
	free(s->s_sha256);
	free(s->s_cert_file);
	free(s->s_key_file);
	memset(s, 0, sizeof(*s));
}

static int
acme_streq(const char *a, const char *b)
{
	return (strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0);
}

static int
acme_want_equal(const struct acme_want *a, const struct acme_want *b)
{
	size_t	 i;

	if (!acme_streq(a->w_kind, b->w_kind) || !acme_streq(a->w_id,
	    b->w_id) || a->w_mode != b->w_mode || a->w_nnames != b->w_nnames ||
	    !acme_streq(a->w_sha256, b->w_sha256) ||
	    !acme_streq(a->w_cert_file, b->w_cert_file) ||
	    !acme_streq(a->w_key_file, b->w_key_file))
		return (0);
	for (i = 0; i < a->w_nnames; i++)
		if (strcmp(a->w_names[i], b->w_names[i]) != 0)
			return (0);
	return (1);
}

/* ---- files (pool threads) ------------------------------------------------ */

/* The pair a want is served from, or 0 when it has none (mode off). */
static int
acme_source(const struct acme_want *w, char **cert, char **key)
{
	char	*d;

	*cert = *key = NULL;
	switch (w->w_mode) {
	case ACME_MODE_ACME:
		xasprintf(cert, "%s/%s/cert.pem", acme_dir, w->w_names[0]);
		xasprintf(key, "%s/private/%s/key.pem", acme_dir,
		    w->w_names[0]);
		return (1);
	case ACME_MODE_MANUAL:
		d = acme_manual_dir(w->w_id);
		xasprintf(cert, "%s/%s/cert.pem", d, w->w_sha256 != NULL ?
		    w->w_sha256 : "-");
		xasprintf(key, "%s/%s/key.pem", d, w->w_sha256 != NULL ?
		    w->w_sha256 : "-");
		free(d);
		return (1);
	case ACME_MODE_FILE:
		*cert = xstrdup(w->w_cert_file);
		*key = xstrdup(w->w_key_file);
		return (1);
	case ACME_MODE_OFF:
		break;
	}
	return (0);
}

/*
 * Read and check a pair of files against names (all of them, or the
 * first only). The texts are handed back when wanted (the key to be
 * freed with tlscert_free_secret).
 */
static int
acme_pair_check(const char *cert_path, const char *key_path,
    const struct acme_want *w, int all_names, struct tlscert_info *info,
    char **cert_out, char **key_out, char **cause)
{
	char	*cert = NULL, *key = NULL, *why = NULL;
	size_t	 clen = 0, klen = 0;
	int	 rc = -1;

	if (util_read_file(cert_path, TLSCERT_PEM_MAX, &cert, &clen,
	    &why) == -1) {
		xasprintf(cause, "no certificate (%s)", why);
		goto out;
	}
	if (util_read_file(key_path, TLSCERT_PEM_MAX, &key, &klen,
	    &why) == -1) {
		xasprintf(cause, "no private key (%s)", why);
		goto out;
	}
	if (tlscert_check(cert, clen, key, klen, w->w_names, all_names ?
	    w->w_nnames : 1, util_now(), info, cause) == -1)
		goto out;
	rc = 0;
	if (cert_out != NULL) {
		*cert_out = cert;
		*key_out = key;
		cert = key = NULL;
	}
out:
	free(why);
	free(cert);
	tlscert_free_secret(key, klen);
	return (rc);
}

/* TLS_DIR/sub. */
char *
acme_tls_path(const char *sub)
{
	char	*d;

	xasprintf(&d, "%s/%s", acme_tls, sub);
	return (d);
}

/* TLS_DIR/manual/SITE_ID. */
char *
acme_manual_dir(const char *site_id)
{
	char	*d;

	xasprintf(&d, "%s/manual/%s", acme_tls, site_id);
	return (d);
}

/* Keep a member's certificate (see acme.h). */
int
acme_manual_store(const char *site_id, const char *const *names,
    size_t nnames, const char *cert_pem, const char *key_pem,
    char sha256[65], char **cause)
{
	struct tlscert_info	 info;
	char			*dir, *tmp, *final, *p;
	int			 rc = -1;

	if (tlscert_check(cert_pem, strlen(cert_pem), key_pem,
	    strlen(key_pem), names, nnames, util_now(), &info, cause) == -1)
		return (-1);
	strlcpy(sha256, info.ti_sha256, 65);
	tlscert_info_clear(&info);
	dir = acme_manual_dir(site_id);
	xasprintf(&tmp, "%s/.new-%s", dir, sha256);
	xasprintf(&final, "%s/%s", dir, sha256);
	if (svc_rmtree(tmp, cause) == -1 ||
	    svc_mkdirs(tmp, 0700, (uid_t)-1, (gid_t)-1, cause) == -1)
		goto out;
	xasprintf(&p, "%s/key.pem", tmp);
	rc = util_write_file(p, key_pem, strlen(key_pem), 0600, cause);
	free(p);
	if (rc == -1)
		goto out;
	xasprintf(&p, "%s/cert.pem", tmp);
	rc = util_write_file(p, cert_pem, strlen(cert_pem), 0644, cause);
	free(p);
	if (rc == -1)
		goto out;
	rc = -1;
	/* The same certificate again: what is there is the same. */
	if (access(final, F_OK) == 0)
		(void)svc_rmtree(final, cause);
	if (rename(tmp, final) == -1) {
		xasprintf(cause, "rename %s: %s", final, strerror(errno));
		goto out;
	}
	rc = svc_fsync_dir(dir, cause);
out:
	if (rc == -1)
		(void)svc_rmtree(tmp, &p);
	free(tmp);
	free(final);
	free(dir);
	return (rc);
}

static int
acme_same_file(const char *path, const char *text)
{
	char	*cur = svc_read(path, TLSCERT_PEM_MAX);
	int	 same = cur != NULL && strcmp(cur, text) == 0;

	if (cur != NULL)
		tlscert_free_secret(cur, strlen(cur));
	return (same);
}

/* Install the pair to serve in dir (see acme.h). */
int
acme_live(const struct acme_want *w, const char *dir, int *changed,
    char **warn)
{
	char	*src_cert, *src_key, *cert = NULL, *key = NULL, *why = NULL;
	char	*live_cert, *live_key;
	int	 rc;

	*changed = 0;
	xasprintf(&live_cert, "%s/cert.pem", dir);
	xasprintf(&live_key, "%s/key.pem", dir);
	if (acme_source(w, &src_cert, &src_key) &&
	    acme_pair_check(src_cert, src_key, w, 1, NULL, &cert, &key,
	    &why) == 0) {
		if (!acme_same_file(live_key, key) ||
		    !acme_same_file(live_cert, cert)) {
			/* The key first: a reader of a new cert finds it. */
			if (svc_mkdirs(dir, 0700, (uid_t)-1, (gid_t)-1,
			    warn) == 0 && util_write_file(live_key, key,
			    strlen(key), 0600, warn) == 0 &&
			    util_write_file(live_cert, cert, strlen(cert), 0644,
			    warn) == 0) {
				*changed = 1;
				rc = 1;
				goto out;
			}
		} else {
			rc = 1;
			goto out;
		}
	}
	/* The last good pair while it still serves the main name. */
	free(why);
	why = NULL;
	rc = w->w_mode != ACME_MODE_OFF && acme_pair_check(live_cert,
	    live_key, w, 0, NULL, NULL, NULL, &why) == 0 ? 1 : 0;
out:
	free(why);
	free(src_cert);
	free(src_key);
	free(cert);
	if (key != NULL)
		tlscert_free_secret(key, strlen(key));
	free(live_cert);
	free(live_key);
	return (rc);
}

/* ---- failures kept across restarts ------------------------------------- */

static char *
acme_state_path(const struct acme_want *w)
{
	char	*p;

	xasprintf(&p, "%s/state/%s-%s", acme_tls, w->w_kind, w->w_id);
	return (p);
}

static void
acme_state_read(const struct acme_want *w, unsigned *failures,
    int64_t *next_try, char **message)
{
	char		*path = acme_state_path(w), *text, *nl;
	unsigned	 f;
	long long	 t;

	*failures = 0;
	*next_try = 0;
	*message = NULL;
	text = svc_read(path, 4096);
	free(path);
	if (text == NULL)
		return;
	if (sscanf(text, "%u %lld", &f, &t) == 2 &&
	    (nl = strchr(text, '\n')) != NULL) {
		*failures = f;
		*next_try = t;
		*message = xstrdup(nl + 1);
		(*message)[strcspn(*message, "\n")] = '\0';
	}
	free(text);
}

static void
acme_state_write(const struct acme_want *w, unsigned failures,
    int64_t next_try, const char *message)
{
	char	*path = acme_state_path(w), *text, *cause = NULL;

	if (failures == 0) {
		unlink(path);
		free(path);
		return;
	}
	xasprintf(&text, "%u %lld\n%s\n", failures, (long long)next_try,
	    message);
	if (util_write_file(path, text, strlen(text), 0600, &cause) == -1) {
		log_warnx("acme: %s", cause);
		free(cause);
	}
	free(text);
	free(path);
}

static int64_t
acme_backoff(unsigned failures)
{
	int64_t	 s = acme_retry_min_s, max = acme_retry_max_s;
	unsigned i;

	for (i = 1; i < failures && s < max; i++)
		s *= 2;
	return (s < max ? s : (max > 0 ? max : 1));
}

/* ---- running uacme (pool thread) ---------------------------------------- */

/*
 * What the CA said: the "detail" of its problem document, else uacme's
 * last line.
 */
static char *
acme_message(const char *out, int status)
{
	const char	*p, *e;
	char		*copy, *line, *save = NULL, *last = NULL, *msg;

	if ((p = strstr(out, "\"detail\": \"")) != NULL) {
		p += 11;
		for (e = p; *e != '\0' && !(*e == '"' && e[-1] != '\\'); e++)
			;
		xasprintf(&msg, "%.*s", (int)(e - p), p);
	} else {
		copy = xstrdup(out);
		for (line = strtok_r(copy, "\n", &save); line != NULL;
		    line = strtok_r(NULL, "\n", &save))
			if (*line != '\0' && strstr(line, "waiting 5 seconds") ==
			    NULL)
				last = line;
		if (last != NULL && strncmp(last, "uacme: ", 7) == 0)
			last += 7;
		if (last != NULL)
			msg = xstrdup(last);
		else
			xasprintf(&msg, "uacme: exit %d", status);
		free(copy);
	}
	if (strlen(msg) > ACME_MSG_MAX)
		msg[ACME_MSG_MAX] = '\0';
	for (p = msg; *p != '\0'; p++)
		if ((unsigned char)*p < ' ')
			msg[p - msg] = ' ';
	return (msg);
}

static int
acme_run(char **argv, char **cause)
{
	char	*out = NULL;
	int	 st;

	/* 1: "not reissued, still current"; the caller checks the files. */
	st = svc_run(argv, ACME_RUN_TIMEOUT_MS, &out);
	if (st == 0 || st == 1) {
		free(out);
		return (0);
	}
	*cause = acme_message(out != NULL ? out : "", st);
	free(out);
	return (-1);
}

/* An account at the configured CA (a new one when the CA changed). */
static int
acme_account(char **cause)
{
	char	*key, *dirfile, *cur, *old;
	char	*argv[12];
	int	 n = 0, rc;

	xasprintf(&key, "%s/private/key.pem", acme_dir);
	xasprintf(&dirfile, "%s/directory", acme_dir);
	cur = svc_read(dirfile, 4096);
	if (cur != NULL && strcmp(cur, acme_url) == 0 &&
	    access(key, F_OK) == 0) {
		rc = 0;
		goto out;
	}
	if (access(key, F_OK) == 0) {
		xasprintf(&old, "%s/private/key-%lld.pem", acme_dir,
		    (long long)util_now());
		if (rename(key, old) == -1)
			log_warnx("acme: keeping %s: %s", key, strerror(errno));
		free(old);
	}
	argv[n++] = acme_client;
	argv[n++] = "-y";
	argv[n++] = "-c";
	argv[n++] = acme_dir;
	argv[n++] = "-a";
	argv[n++] = acme_url;
	argv[n++] = "new";
	if (*acme_email != '\0')
		argv[n++] = acme_email;
	argv[n] = NULL;
	if ((rc = acme_run(argv, cause)) == 0) {
		rc = util_write_file(dirfile, acme_url,
		    strlen(acme_url), 0600, cause);
		log_info("acme: account created at %s",
		    acme_url);
	}
out:
	free(cur);
	free(key);
	free(dirfile);
	return (rc);
}

/* Have uacme issue (or renew, force) the certificate of w. */
static int
acme_issue(const struct acme_want *w, int force, char **cause)
{
	char	**argv;
	size_t	 n = 0, i;
	int	 rc;

	if (acme_account(cause) == -1)
		return (-1);
	argv = xcalloc(w->w_nnames + 16, sizeof(*argv));
	argv[n++] = acme_client;
	argv[n++] = "-c";
	argv[n++] = acme_dir;
	argv[n++] = "-a";
	argv[n++] = acme_url;
	argv[n++] = "-h";
	argv[n++] = acme_hook;
	argv[n++] = "-t";
	argv[n++] = "EC";
	if (force)
		argv[n++] = "-f";
	argv[n++] = "issue";
	for (i = 0; i < w->w_nnames; i++)
		argv[n++] = (char *)w->w_names[i];
	argv[n] = NULL;
	rc = acme_run(argv, cause);
	free(argv);
	return (rc);
}

/* ---- one look at a certificate (pool thread) --------------------------- */

static void
acme_job_valid(struct acme_job *j, int64_t next)
{
	j->j_state = "valid";
	j->j_next = next;
}

static void
acme_job_failed(struct acme_job *j, char *message, int64_t next)
{
	j->j_state = "failed";
	free(j->j_message);
	j->j_message = message;
	j->j_next = next;
}

/* A member's or the operator's certificate: valid until it expires. */
static void
acme_work_given(struct acme_job *j)
{
	const struct acme_want	*w = &j->j_spec.s_w;
	char			*cert, *key, *cause = NULL, *msg;

	acme_source(w, &cert, &key);
	if (acme_pair_check(cert, key, w, 1, &j->j_info, NULL, NULL,
	    &cause) == 0)
		acme_job_valid(j, w->w_mode == ACME_MODE_FILE ?
		    util_now() + ACME_FILE_RECHECK_S : j->j_info.ti_not_after);
	else {
		if (w->w_mode == ACME_MODE_MANUAL && access(cert, F_OK) == -1)
			xasprintf(&msg, "the certificate brought for this site "
			    "(sha256 %.16s...) is not on this backend: set it "
			    "again", w->w_sha256 != NULL ? w->w_sha256 : "");
		else
			xasprintf(&msg, "%s: %s", w->w_mode == ACME_MODE_FILE ?
			    cert : "certificate", cause);
		free(cause);
		acme_job_failed(j, msg, w->w_mode == ACME_MODE_FILE ?
		    util_now() + ACME_FILE_RECHECK_S : -1);
	}
	free(cert);
	free(key);
}

static void
acme_work_cb(uv_work_t *req)
{
	struct acme_job		*j = req->data;
	const struct acme_want	*w = &j->j_spec.s_w;
	char			*cert, *key, *cause = NULL, *saved = NULL;
	unsigned		 failures;
	int64_t			 now = util_now(), next_try, renew = 0;
	int			 have;

	if (w->w_mode == ACME_MODE_OFF) {
		j->j_state = "none";
		j->j_next = -1;
		return;
	}
	if (w->w_mode != ACME_MODE_ACME) {
		acme_work_given(j);
		return;
	}
	if (strcmp(acme_url, "off") == 0) {
		j->j_state = "none";
		j->j_message = xstrdup("ACME is off on this backend "
		    "([acme] directory)");
		j->j_next = -1;
		return;
	}
	acme_source(w, &cert, &key);
	acme_state_read(w, &failures, &next_try, &saved);
	have = acme_pair_check(cert, key, w, 1, &j->j_info, NULL, NULL,
	    &cause) == 0;
	free(cause);
	cause = NULL;
	if (have) {
		renew = j->j_info.ti_not_before + (j->j_info.ti_not_after -
		    j->j_info.ti_not_before) * 2 / 3;
		if (now < renew) {
			if (failures > 0)
				acme_state_write(w, 0, 0, NULL);
			acme_job_valid(j, renew);
			goto out;
		}
	}
	if (failures > 0 && now < next_try) {
		if (have) {
			acme_job_valid(j, next_try);
			xasprintf(&j->j_message, "renewal failed: %s", saved);
		} else
			acme_job_failed(j, xstrdup(saved), next_try);
		goto out;
	}
	log_info("acme: %s %s for %s", have ? "renewing" : "asking for",
	    w->w_kind, w->w_names[0]);
	tlscert_info_clear(&j->j_info);
	if (acme_issue(w, access(cert, F_OK) == 0, &cause) == 0 &&
	    acme_pair_check(cert, key, w, 1, &j->j_info, NULL, NULL,
	    &cause) == 0) {
		log_info("acme: %s %s: certificate by %s", w->w_kind,
		    w->w_names[0], j->j_info.ti_issuer);
		acme_state_write(w, 0, 0, NULL);
		acme_job_valid(j, j->j_info.ti_not_before +
		    (j->j_info.ti_not_after - j->j_info.ti_not_before) * 2 / 3);
		goto out;
	}
	failures++;
	next_try = now + acme_backoff(failures);
	log_warnx("acme: %s %s: %s (try %u; next in %llds)", w->w_kind,
	    w->w_names[0], cause, failures, (long long)(next_try - now));
	acme_state_write(w, failures, next_try, cause);
	tlscert_info_clear(&j->j_info);
	/* A renewal that failed: the one there still serves. */
	if (have && acme_pair_check(cert, key, w, 1, &j->j_info, NULL, NULL,
	    &saved) == 0) {
		acme_job_valid(j, next_try);
		xasprintf(&j->j_message, "renewal failed: %s", cause);
		free(cause);
	} else
		acme_job_failed(j, cause, next_try);
out:
	free(saved);
	free(cert);
	free(key);
}

/* ---- the loop thread --------------------------------------------------- */

static void
acme_cert_clear(struct acme_cert *c)
{
	acme_spec_clear(&c->c_spec);
	tlscert_info_clear(&c->c_info);
	free(c->c_message);
	memset(c, 0, sizeof(*c));
}

static struct acme_cert *
acme_find(const char *kind, const char *id)
{
	size_t	 i;

	/* acme_set moves entries out, leaving them zeroed. */
	for (i = 0; i < acme_ncerts; i++)
		if (acme_certs[i].c_spec.s_kind != NULL &&
		    strcmp(acme_certs[i].c_spec.s_kind, kind) == 0 &&
		    strcmp(acme_certs[i].c_spec.s_id, id) == 0)
			return (&acme_certs[i]);
	return (NULL);
}

/* Every certificate's state to the controller. */
static void
acme_report(void)
{
	Opsn__ServicesCerts	 m = OPSN__SERVICES_CERTS__INIT;
	Opsn__CertStatus	*v, **pv;
	struct acme_cert	*c;
	size_t			 i;

	if (!acme_inited || acme_stopping)
		return;
	v = xcalloc(acme_ncerts + 1, sizeof(*v));
	pv = xcalloc(acme_ncerts + 1, sizeof(*pv));
	for (i = 0; i < acme_ncerts; i++) {
		c = &acme_certs[i];
		opsn__cert_status__init(&v[i]);
		v[i].kind = c->c_spec.s_kind;
		v[i].id = c->c_spec.s_id;
		v[i].state = (char *)c->c_state;
		v[i].source = c->c_spec.s_w.w_mode == ACME_MODE_MANUAL ?
		    "manual" : c->c_spec.s_w.w_mode == ACME_MODE_FILE ? "file" :
		    "acme";
		v[i].not_before = c->c_info.ti_not_before;
		v[i].not_after = c->c_info.ti_not_after;
		v[i].issuer = c->c_info.ti_issuer != NULL ?
		    c->c_info.ti_issuer : "";
		v[i].message = c->c_message != NULL ? c->c_message : "";
		v[i].next_attempt = c->c_next > 0 ? c->c_next : 0;
		v[i].names = c->c_spec.s_names;
		v[i].n_names = c->c_spec.s_w.w_nnames;
		pv[i] = &v[i];
	}
	m.certs = pv;
	m.n_certs = acme_ncerts;
	if (svc_send(MSG_SERVICES_CERTS, &m.base) == -1)
		log_debug("acme: certificates reported once the link is up");
	free(pv);
	free(v);
}

static void
acme_free(void)
{
	size_t	 i;

	for (i = 0; i < acme_ncerts; i++)
		acme_cert_clear(&acme_certs[i]);
	free(acme_certs);
	acme_certs = NULL;
	acme_ncerts = 0;
	free(acme_tls);
	free(acme_dir);
	free(acme_hook);
	free(acme_webroot);
	free(acme_url);
	free(acme_email);
	free(acme_client);
	acme_tls = acme_dir = acme_hook = acme_webroot = NULL;
	acme_url = acme_email = acme_client = NULL;
	acme_inited = 0;
}

static void
acme_after_cb(uv_work_t *req, int status)
{
	struct acme_job		*j = req->data;
	struct acme_cert	*c;
	int			 changed = 0;

	acme_busy = 0;
	if (acme_stopping) {
		acme_free();
		goto out;
	}
	c = acme_find(j->j_spec.s_kind, j->j_spec.s_id);
	/* Not wanted any more, or wanted otherwise: look again. */
	if (c != NULL && acme_want_equal(&c->c_spec.s_w, &j->j_spec.s_w)) {
		c->c_state = j->j_state;
		tlscert_info_clear(&c->c_info);
		c->c_info = j->j_info;
		memset(&j->j_info, 0, sizeof(j->j_info));
		free(c->c_message);
		c->c_message = j->j_message;
		j->j_message = NULL;
		c->c_next = j->j_next;
		if (strcmp(c->c_state, "valid") == 0 &&
		    strcmp(c->c_have, c->c_info.ti_sha256) != 0) {
			strlcpy(c->c_have, c->c_info.ti_sha256,
			    sizeof(c->c_have));
			changed = 1;
		}
		acme_report();
	}
	if (changed && acme_changed != NULL)
		acme_changed();
	acme_kick();
out:
	acme_spec_clear(&j->j_spec);
	tlscert_info_clear(&j->j_info);
	free(j->j_message);
	free(j);
}

static void
acme_timer_cb(uv_timer_t *t)
{
	acme_kick();
}

/* Look at the first certificate due, or wait for the next one. */
static void
acme_kick(void)
{
	struct acme_cert	*c = NULL;
	struct acme_job		*j;
	int64_t			 now = util_now(), soon = -1;
	uint64_t		 delay;
	size_t			 i;

	if (!acme_inited || acme_stopping || acme_busy)
		return;
	uv_timer_stop(&acme_timer);
	for (i = 0; i < acme_ncerts; i++) {
		if (acme_certs[i].c_next < 0)
			continue;
		if (acme_certs[i].c_next <= now) {
			c = &acme_certs[i];
			break;
		}
		if (soon == -1 || acme_certs[i].c_next < soon)
			soon = acme_certs[i].c_next;
	}
	if (c == NULL) {
		if (soon != -1) {
			delay = (uint64_t)(soon - now) * 1000 + 100;
			if (delay > ACME_TIMER_MAX_MS)
				delay = ACME_TIMER_MAX_MS;
			uv_timer_start(&acme_timer, acme_timer_cb, delay, 0);
		}
		return;
	}
	c->c_next = -1;		/* until the job says */
	j = xcalloc(1, sizeof(*j));
	j->j_req.data = j;
	acme_spec_set(&j->j_spec, &c->c_spec.s_w);
	acme_busy = 1;
	if (uv_queue_work(aa->loop, &j->j_req, acme_work_cb,
	    acme_after_cb) != 0)
		fatalx("acme: uv_queue_work failed");
}

/* The certificates wanted now (see acme.h). */
void
acme_set(const struct acme_want *w, size_t n)
{
	struct acme_cert	*v, *old;
	size_t			 i;
	int			 diff = n != acme_ncerts;

	if (!acme_inited || acme_stopping)
		return;
	v = xcalloc(n + 1, sizeof(*v));
	for (i = 0; i < n; i++) {
		old = acme_find(w[i].w_kind, w[i].w_id);
		if (old != NULL && acme_want_equal(&old->c_spec.s_w, &w[i])) {
			v[i] = *old;
			memset(old, 0, sizeof(*old));
			continue;
		}
		diff = 1;
		acme_spec_set(&v[i].c_spec, &w[i]);
		v[i].c_state = w[i].w_mode == ACME_MODE_ACME ? "pending" :
		    "none";
		v[i].c_next = 0;
	}
	for (i = 0; i < acme_ncerts; i++)
		if (acme_certs[i].c_spec.s_kind != NULL)
			acme_cert_clear(&acme_certs[i]);
	free(acme_certs);
	acme_certs = v;
	acme_ncerts = n;
	if (diff)
		acme_report();
	acme_kick();
}

/* Report every certificate again. */
void
acme_connected(void)
{
	if (acme_inited && !acme_stopping)
		acme_report();
}

/* Nothing running, nothing due. */
int
acme_idle(void)
{
	size_t	 i;

	if (!acme_inited)
		return (1);
	if (acme_busy)
		return (0);
	for (i = 0; i < acme_ncerts; i++)
		if (acme_certs[i].c_next == 0)
			return (0);
	return (1);
}

/* Start for a role (see acme.h). */
int
acme_init(struct agent *a, const char *webroot, void (*changed)(void),
    char **cause)
{
	char	*p, *text, *dir;
	int	 rc;

	aa = a;
	acme_tls = svc_path_option(a, a->conf.tls_dir, "tls");
	xasprintf(&acme_dir, "%s/acme", acme_tls);
	xasprintf(&acme_hook, "%s/acme-hook", acme_tls);
	acme_webroot = xstrdup(webroot);
	acme_url = xstrdup(svc_opt(a->conf.acme_directory, ACME_LETSENCRYPT));
	acme_email = xstrdup(svc_opt(a->conf.acme_email, ""));
	acme_client = xstrdup(svc_opt(a->conf.acme_client, "/usr/bin/uacme"));
	acme_retry_min_s = a->conf.acme_retry_min_ms > 0 ?
	    a->conf.acme_retry_min_ms / 1000 : 300;
	acme_retry_max_s = a->conf.acme_retry_max_ms > 0 ?
	    a->conf.acme_retry_max_ms / 1000 : 86400;
	if (acme_retry_min_s < 1)
		acme_retry_min_s = 1;
	if (acme_retry_max_s < acme_retry_min_s)
		acme_retry_max_s = acme_retry_min_s;
	acme_changed = changed;
	acme_stopping = acme_busy = 0;
	if (acme_tls[0] != '/' || acme_webroot[0] != '/' ||
	    strchr(acme_webroot, '\'') != NULL) {
		xasprintf(cause, "the TLS folder and the ACME webroot must be "
		    "absolute paths (without quotes)");
		acme_free();
		return (-1);
	}
	xasprintf(&p, "%s/state", acme_tls);
	xasprintf(&dir, "%s/.well-known/acme-challenge", acme_webroot);
	rc = svc_mkdirs(acme_tls, 0700, (uid_t)-1, (gid_t)-1, cause) == -1 ||
	    chmod(acme_tls, 0700) == -1 ||
	    svc_mkdirs(acme_dir, 0700, (uid_t)-1, (gid_t)-1, cause) == -1 ||
	    svc_mkdirs(p, 0700, (uid_t)-1, (gid_t)-1, cause) == -1 ||
	    svc_mkdirs(dir, 0755, (uid_t)-1, (gid_t)-1, cause) == -1 ? -1 : 0;
	free(p);
	free(dir);
	if (rc == -1) {
		if (*cause == NULL)
			xasprintf(cause, "chmod %s: %s", acme_tls,
			    strerror(errno));
		acme_free();
		return (-1);
	}
	xasprintf(&text, acme_hook_text, acme_webroot);
	rc = util_write_file(acme_hook, text, strlen(text), 0700, cause);
	free(text);
	if (rc == -1) {
		acme_free();
		return (-1);
	}
	uv_timer_init(a->loop, &acme_timer);
	acme_inited = 1;
	log_info("acme: certificates in %s, CA %s", acme_tls,
	    a->conf.acme_directory);
	return (0);
}

static void
acme_timer_close_cb(uv_handle_t *h)
{
	if (!acme_busy)
		acme_free();
}

/* Stop; a running uacme finishes and its result is dropped. */
void
acme_stop(void)
{
	if (!acme_inited || acme_stopping)
		return;
	acme_stopping = 1;
	uv_close((uv_handle_t *)&acme_timer, acme_timer_close_cb);
}
