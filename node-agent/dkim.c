/*
 * DKIM signing: the controller makes each mail domain's key pair and
 * sends the private key and its selector in the desired state; OpenDKIM
 * (a milter on the submission service only, ops/mail) signs with them.
 *
 *   DKIM_DIR/current -> gen-DIGEST       what OpenDKIM reads
 *   DKIM_DIR/gen-DIGEST/KeyTable         SEL._domainkey.DOM DOM:SEL:PATH
 *   DKIM_DIR/gen-DIGEST/SigningTable     *@DOM SEL._domainkey.DOM (refile)
 *   DKIM_DIR/gen-DIGEST/keys/DOM.SEL.pem the private key (0600)
 *
 * The tables and the keys they name change together: a set is written
 * whole in a new folder, fsynced, and made current by renaming a symbolic
 * link over the old one (atomic); OpenDKIM then reloads on SIGUSR1. The
 * KeyTable names the keys inside its own folder, and the previous folder
 * stays until the next change, so a filter that has not reloaded yet
 * still finds every key it knows. Nothing is rewritten while the keys do
 * not change (a digest kept in the folder).
 *
 * The keys belong to OpenDKIM's user ([mail] dkim_user) and nobody else;
 * they are never logged. Runs on the pool thread of the mail apply.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "agent.h"
#include "dkim.h"
#include "svc.h"

#define DKIM_KEY_MAX		(16 * 1024)
#define DKIM_SELECTOR_MAX	63

static char	*dkim_dir;
static char	*dkim_user;
static char	*dkim_pid;

/* Where the tables go (see dkim.h). */
int
dkim_init(struct agent *a, char **cause)
{
	char	*cur;
	int	 rc;

	dkim_dir = svc_path_option(a, a->conf.dkim_dir, "dkim");
	dkim_user = xstrdup(svc_opt(a->conf.dkim_user, "opendkim"));
	dkim_pid = xstrdup(svc_opt(a->conf.opendkim_pid,
	    "/run/opendkim/opendkim.pid"));
	if (dkim_dir[0] != '/' || strpbrk(dkim_dir, " \t\n:") != NULL) {
		xasprintf(cause, "dkim_dir %s: an absolute path without spaces "
		    "or ':' (OpenDKIM's tables split on them)", dkim_dir);
		return (-1);
	}
	if (svc_mkdirs(dkim_dir, 0755, (uid_t)-1, (gid_t)-1, cause) == -1 ||
	    svc_traversable(a, dkim_dir, cause) == -1)
		return (-1);
	xasprintf(&cur, "%s/current/KeyTable", dkim_dir);
	rc = access(cur, F_OK) == 0 ? 0 : dkim_apply(NULL, 0, NULL, cause);
	free(cur);
	return (rc);
}

/* Free what dkim_init kept. */
void
dkim_free(void)
{
	free(dkim_dir);
	free(dkim_user);
	free(dkim_pid);
	dkim_dir = dkim_user = dkim_pid = NULL;
}

static int
dkim_no_passphrase_cb(char *buf, int size, int rwflag, void *u)
{
	return (0);
}

/* A selector is one or more DNS labels; a key a private key we can use. */
static int
dkim_key_check(const struct dkim_key *k, char **cause)
{
	BIO		*bio;
	EVP_PKEY	*key;
	const char	*p;
	size_t		 len = strlen(k->k_selector);

	if (len == 0 || len > DKIM_SELECTOR_MAX || k->k_selector[0] == '.' ||
	    k->k_selector[0] == '-' || k->k_selector[len - 1] == '.') {
		xasprintf(cause, "DKIM selector '%.64s' is not a DNS name",
		    k->k_selector);
		return (-1);
	}
	for (p = k->k_selector; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    *p == '-' || *p == '.')) {
			xasprintf(cause, "DKIM selector '%.64s' is not a DNS "
			    "name", k->k_selector);
			return (-1);
		}
	if (strlen(k->k_pem) > DKIM_KEY_MAX) {
		xasprintf(cause, "DKIM key over %d bytes", DKIM_KEY_MAX);
		return (-1);
	}
	if ((bio = BIO_new_mem_buf(k->k_pem, -1)) == NULL)
		fatalx("dkim: BIO_new_mem_buf");
	key = PEM_read_bio_PrivateKey(bio, NULL, dkim_no_passphrase_cb, NULL);
	BIO_free(bio);
	ERR_clear_error();
	if (key == NULL || !(EVP_PKEY_is_a(key, "RSA") ||
	    EVP_PKEY_is_a(key, "ED25519"))) {
		EVP_PKEY_free(key);
		xasprintf(cause, "DKIM key of %s is not an RSA or Ed25519 "
		    "private key", k->k_domain);
		return (-1);
	}
	EVP_PKEY_free(key);
	return (0);
}

static char *
dkim_digest(const struct dkim_key *v, size_t n)
{
	EVP_MD_CTX	*c = EVP_MD_CTX_new();
	unsigned char	 md[EVP_MAX_MD_SIZE];
	unsigned int	 mdlen = 0;
	char		*hex;
	size_t		 i;

	if (c == NULL)
		fatalx("dkim: EVP_MD_CTX_new");
	EVP_DigestInit_ex(c, EVP_sha256(), NULL);
	EVP_DigestUpdate(c, dkim_dir, strlen(dkim_dir) + 1);
	for (i = 0; i < n; i++) {
		EVP_DigestUpdate(c, v[i].k_domain, strlen(v[i].k_domain) + 1);
		EVP_DigestUpdate(c, v[i].k_selector,
		    strlen(v[i].k_selector) + 1);
		EVP_DigestUpdate(c, v[i].k_pem, strlen(v[i].k_pem) + 1);
	}
	EVP_DigestFinal_ex(c, md, &mdlen);
	EVP_MD_CTX_free(c);
	hex = xmalloc(2 * mdlen + 1);
	util_hex(md, mdlen, hex);
	hex[16] = '\0';		/* a folder name, not a proof */
	return (hex);
}

static void
dkim_append(char **buf, size_t *len, const char *a, const char *b,
    const char *c, const char *d)
{
	char	*line;
	size_t	 l;

	l = (size_t)xasprintf(&line, "%s%s%s%s\n", a, b, c, d);
	*buf = xrealloc(*buf, *len + l + 1);
	memcpy(*buf + *len, line, l + 1);
	*len += l;
	free(line);
}

/* One folder with the keys and both tables, owned by OpenDKIM's user. */
static int
dkim_write_gen(const char *gen, const struct dkim_key *v, size_t n,
    const char *digest, uid_t uid, gid_t gid, char **cause)
{
	char	*keys, *path, *kt = NULL, *st = NULL, *name, *ref;
	size_t	 ktl = 0, stl = 0, i;
	int	 rc = -1;

	xasprintf(&keys, "%s/keys", gen);
	if (svc_rmtree(gen, cause) == -1 ||
	    svc_mkdirs(keys, 0700, uid, gid, cause) == -1)
		goto out;
	kt = xstrdup("");
	st = xstrdup("");
	for (i = 0; i < n; i++) {
		xasprintf(&path, "%s/%s.%s.pem", keys, v[i].k_domain,
		    v[i].k_selector);
		if (util_write_file(path, v[i].k_pem, strlen(v[i].k_pem), 0600,
		    cause) == -1 || (uid != (uid_t)-1 && chown(path, uid,
		    gid) == -1 && (xasprintf(cause, "chown %s: %s", path,
		    strerror(errno)), 1))) {
			free(path);
			goto out;
		}
		xasprintf(&name, "%s._domainkey.%s", v[i].k_selector,
		    v[i].k_domain);
		xasprintf(&ref, "%s:%s:%s", v[i].k_domain, v[i].k_selector,
		    path);
		dkim_append(&kt, &ktl, name, " ", ref, "");
		dkim_append(&st, &stl, "*@", v[i].k_domain, " ", name);
		free(name);
		free(ref);
		free(path);
	}
	/* refile patterns: a domain's dots are literal in them anyway. */
	if (svc_fsync_dir(keys, cause) == -1)
		goto out;
	xasprintf(&path, "%s/KeyTable", gen);
	rc = util_write_file(path, kt, ktl, 0600, cause);
	if (rc == 0 && uid != (uid_t)-1)
		(void)chown(path, uid, gid);
	free(path);
	if (rc == -1)
		goto out;
	xasprintf(&path, "%s/SigningTable", gen);
	rc = util_write_file(path, st, stl, 0600, cause);
	if (rc == 0 && uid != (uid_t)-1)
		(void)chown(path, uid, gid);
	free(path);
	if (rc == -1)
		goto out;
	xasprintf(&path, "%s/digest", gen);
	rc = util_write_file(path, digest, strlen(digest), 0644, cause);
	free(path);
	if (rc == 0)
		rc = svc_fsync_dir(gen, cause);
out:
	free(keys);
	free(kt);
	free(st);
	return (rc);
}

/* Keep only the current folder and the one before it. */
static void
dkim_tidy(const char *keep, const char *prev)
{
	DIR		*dp;
	struct dirent	*de;
	char		*path, *cause = NULL;

	if ((dp = opendir(dkim_dir)) == NULL)
		return;
	while ((de = readdir(dp)) != NULL) {
		if (strncmp(de->d_name, "gen-", 4) != 0 ||
		    strcmp(de->d_name, keep) == 0 ||
		    (prev != NULL && strcmp(de->d_name, prev) == 0))
			continue;
		xasprintf(&path, "%s/%s", dkim_dir, de->d_name);
		if (svc_rmtree(path, &cause) == -1) {
			log_warnx("dkim: %s", cause);
			free(cause);
			cause = NULL;
		}
		free(path);
	}
	closedir(dp);
}

/* Ask OpenDKIM to read its tables again; a stopped one reads them at start. */
static void
dkim_reload(void)
{
	char	*text;
	long	 pid;

	text = svc_read(dkim_pid, 64);
	if (text == NULL || sscanf(text, "%ld", &pid) != 1 || pid <= 1) {
		log_warnx("dkim: no OpenDKIM pid in %s: its tables are written, "
		    "it reads them when it starts", dkim_pid);
		free(text);
		return;
	}
	free(text);
	if (kill((pid_t)pid, SIGUSR1) == -1)
		log_warnx("dkim: OpenDKIM (pid %ld) not reloaded: %s", pid,
		    strerror(errno));
}

/* Write the tables when the keys changed (see dkim.h). */
int
dkim_apply(const struct dkim_key *keys, size_t nkeys, char **errors,
    char **cause)
{
	struct dkim_key	*v;
	struct passwd	 pwd, *pw = NULL;
	char		 pwbuf[4096], prev[80], *digest, *cur, *gen, *genname;
	char		*link_tmp, *link, *path, *why = NULL;
	uid_t		 uid = (uid_t)-1;
	gid_t		 gid = (gid_t)-1;
	ssize_t		 l;
	size_t		 i, n = 0;
	int		 rc = -1;

	v = xcalloc(nkeys + 1, sizeof(*v));
	for (i = 0; i < nkeys; i++) {
		if (dkim_key_check(&keys[i], &why) == -1) {
			log_warnx("dkim: domain %s: %s", keys[i].k_domain, why);
			errors[i] = why;
			why = NULL;
			continue;
		}
		v[n++] = keys[i];
	}
	digest = dkim_digest(v, n);
	xasprintf(&path, "%s/current/digest", dkim_dir);
	cur = svc_read(path, 128);
	free(path);
	if (cur != NULL && strcmp(cur, digest) == 0) {
		rc = 0;
		goto out;
	}
	if (getpwnam_r(dkim_user, &pwd, pwbuf, sizeof(pwbuf), &pw) == 0 &&
	    pw != NULL) {
		uid = pw->pw_uid;
		gid = pw->pw_gid;
	}
	xasprintf(&genname, "gen-%s", digest);
	xasprintf(&gen, "%s/%s", dkim_dir, genname);
	xasprintf(&link, "%s/current", dkim_dir);
	xasprintf(&link_tmp, "%s/.current.new", dkim_dir);
	prev[0] = '\0';
	if ((l = readlink(link, prev, sizeof(prev) - 1)) > 0)
		prev[l] = '\0';
	else
		prev[0] = '\0';
	if (dkim_write_gen(gen, v, n, digest, uid, gid, cause) == 0) {
		unlink(link_tmp);
		if (symlink(genname, link_tmp) == -1 ||
		    rename(link_tmp, link) == -1) {
			xasprintf(cause, "%s: %s", link, strerror(errno));
			unlink(link_tmp);
		} else if (svc_fsync_dir(dkim_dir, cause) == 0) {
			log_info("dkim: %zu signing keys for OpenDKIM", n);
			dkim_reload();
			dkim_tidy(genname, prev[0] != '\0' ? prev : NULL);
			rc = 0;
		}
	}
	free(genname);
	free(gen);
	free(link);
	free(link_tmp);
out:
	free(cur);
	free(digest);
	free(v);
	return (rc);
}
