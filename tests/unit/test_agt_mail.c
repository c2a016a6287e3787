/*
 * The mail role without the daemons: desired states go in through the
 * role's frame hook, the statuses it sends are captured, and postfix and
 * doveadm are a shell script that records its arguments (and fails when
 * asked to). The maps it writes are read back with the very queries that
 * ops/mail/ gives Postfix and Dovecot. tests/e2e/test_mail.py runs the
 * same role against the real daemons.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sqlite3.h>
#include <uv.h>

#include "opsn/frame.h"
#include "opsn/util.h"
#include "agent.h"
#include "svc.h"

#define HASH_A	"{SHA512-CRYPT}$6$saltsalt$0123456789abcdef"
#define HASH_B	"{SHA512-CRYPT}$6$othersalt$fedcba9876543210"

static char		 tmp[64];
static char		*mail_dir, *maps, *tool, *toollog, *failflag;
static uv_loop_t	 loop;
static struct agent	 ag;
static Opsn__ServicesStatus *last;
static int		 nstatus;
static int64_t		 have = -1;	/* last MSG_SERVICES_HAVE */

/* ---- fixtures ----------------------------------------------------------- */

static int
cap_send(uint16_t type, const ProtobufCMessage *m)
{
	uint8_t	*buf;
	size_t	 len;

	/* Certificates are test_agt_web's and the e2e tests' business. */
	if (type == MSG_SERVICES_CERTS)
		return (0);
	if (type == MSG_SERVICES_HAVE) {
		have = (int64_t)((const Opsn__ServicesHave *)m)->generation;
		return (0);
	}
	assert_int_equal(type, MSG_SERVICES_STATUS);
	len = protobuf_c_message_get_packed_size(m);
	buf = xmalloc(len + 1);
	protobuf_c_message_pack(m, buf);
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

static int
setup(void **state)
{
	struct passwd	*pw = getpwuid(getuid());
	char		*script;

	strlcpy(tmp, "/tmp/opsn-mailtest-XXXXXX", sizeof(tmp));
	assert_non_null(mkdtemp(tmp));
	xasprintf(&mail_dir, "%s/mail", tmp);
	xasprintf(&maps, "%s/mail/.maps", tmp);
	xasprintf(&tool, "%s/tool", tmp);
	xasprintf(&toollog, "%s/tool.log", tmp);
	xasprintf(&failflag, "%s/fail", tmp);
	/* postfix and doveadm: say what was asked; fail while FAIL exists. */
	xasprintf(&script, "#!/bin/sh\necho \"$(basename \"$0\") $*\" >> %s\n"
	    "if [ -e %s ]; then echo \"$(basename \"$0\"): fatal: boom\"; "
	    "exit 1; fi\ncase \"$*\" in *\" who \"*) echo \"username proto "
	    "pid ip\"; echo \"e@mairie-agassac.fr imap 7 127.0.0.1\";; esac\n"
	    "exit 0\n", toollog, failflag);
	write_file(tool, script, 0755);
	free(script);
	xasprintf(&script, "%s/postfix", tmp);
	assert_int_equal(symlink(tool, script), 0);
	ag.conf.postfix_bin = script;
	xasprintf(&script, "%s/doveadm", tmp);
	assert_int_equal(symlink(tool, script), 0);
	ag.conf.doveadm_bin = script;
	assert_int_equal(uv_loop_init(&loop), 0);
	ag.loop = &loop;
	ag.conf.data_dir = tmp;
	ag.conf.mail_dir = mail_dir;
	ag.conf.mail_owner = pw->pw_name;
	ag.conf.postfix_dir = "/pf";
	ag.conf.dovecot_conf = "/dv.conf";
	ag.conf.acme_directory = "off";
	xasprintf(&ag.conf.opendkim_pid, "%s/opendkim.pid", tmp);
	svc_set_send(cap_send);
	last = NULL;
	nstatus = 0;
	return (0);
}

static int
teardown(void **state)
{
	char	*cmd;

	/* A test that failed half-way leaves the role running. */
	mail_role.stop();
	uv_run(&loop, UV_RUN_DEFAULT);
	svc_set_send(NULL);
	if (last != NULL)
		opsn__services_status__free_unpacked(last, NULL);
	last = NULL;
	assert_int_equal(uv_loop_close(&loop), 0);
	xasprintf(&cmd, "rm -rf '%s'", tmp);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	free(mail_dir);
	free(maps);
	free(tool);
	free(toollog);
	free(failflag);
	free(ag.conf.postfix_bin);
	free(ag.conf.doveadm_bin);
	free(ag.conf.opendkim_pid);
	memset(&ag, 0, sizeof(ag));
	return (0);
}

static void
start(void)
{
	char	*cause = NULL;

	if (mail_role.init(&ag, &cause) == -1)
		fail_msg("init: %s", cause);
}

/* Stop the role and run the loop until it is empty, as the agent exits. */
static void
stop(void)
{
	mail_role.stop();
	uv_run(&loop, UV_RUN_DEFAULT);
}

/* ---- desired states -------------------------------------------------------- */

static Opsn__MailDomain	 doms[8];
static Opsn__Mailbox	 boxes[16];
static Opsn__Alias	 als[8];
static char		*targets[8][4];

static Opsn__ServicesDesired
desired(uint64_t gen)
{
	Opsn__ServicesDesired	 d = OPSN__SERVICES_DESIRED__INIT;

	d.generation = gen;
	return (d);
}

static void
add_domain(Opsn__ServicesDesired *d, Opsn__MailDomain **v, const char *name,
    int suspended)
{
	Opsn__MailDomain	*m = &doms[d->n_domains];

	opsn__mail_domain__init(m);
	m->name = (char *)name;
	m->tenant = "31001";
	m->suspended = suspended;
	v[d->n_domains++] = m;
	d->domains = v;
}

/* The mailbox in boxes[i], made anew. */
static Opsn__Mailbox *
box_at(size_t i, const char *id, const char *addr, const char *hash)
{
	Opsn__Mailbox	*m = &boxes[i];

	opsn__mailbox__init(m);
	m->id = (char *)id;
	m->address = (char *)addr;
	m->domain = strchr(addr, '@') ? strchr(addr, '@') + 1 : "";
	m->password_hash = (char *)hash;
	m->quota_bytes = 1 << 20;
	m->tenant = "31001";
	return (m);
}

static Opsn__Mailbox *
add_box(Opsn__ServicesDesired *d, Opsn__Mailbox **v, const char *id,
    const char *addr, const char *hash)
{
	Opsn__Mailbox	*m = box_at(d->n_mailboxes, id, addr, hash);

	v[d->n_mailboxes++] = m;
	d->mailboxes = v;
	return (m);
}

static void
add_alias(Opsn__ServicesDesired *d, Opsn__Alias **v, const char *id,
    const char *addr, const char *target)
{
	Opsn__Alias	*a = &als[d->n_aliases];

	opsn__alias__init(a);
	a->id = (char *)id;
	a->address = (char *)addr;
	targets[d->n_aliases][0] = (char *)target;
	a->targets = targets[d->n_aliases];
	a->n_targets = 1;
	v[d->n_aliases++] = a;
	d->aliases = v;
}

/* Send a frame of the services range and run the loop until a status. */
static void
frame(uint16_t type, const ProtobufCMessage *m, int wait_status)
{
	uint8_t		*buf;
	size_t		 len = protobuf_c_message_get_packed_size(m);
	uint64_t	 end = util_mono_ms() + 10000;
	int		 want = nstatus + 1;

	buf = xmalloc(len + 1);
	protobuf_c_message_pack(m, buf);
	mail_role.on_frame(type, buf, len);
	free(buf);
	while (wait_status && (nstatus < want || !mail_idle()) &&
	    util_mono_ms() < end)
		uv_run(&loop, UV_RUN_ONCE);
	if (wait_status)
		assert_true(nstatus >= want);
}

/* Send a desired state and run the loop until its status comes back. */
static void
apply(const Opsn__ServicesDesired *d)
{
	frame(MSG_SERVICES_DESIRED, &d->base, 1);
	assert_non_null(last);
	assert_int_equal(last->generation, d->generation);
}

/* The state the last status gives an object ("" if it is not listed). */
static const char *
state_of(const char *kind, const char *id, const char **msg)
{
	size_t	 i;

	for (i = 0; i < last->n_objects; i++)
		if (strcmp(last->objects[i]->kind, kind) == 0 &&
		    strcmp(last->objects[i]->id, id) == 0) {
			if (msg != NULL)
				*msg = last->objects[i]->message;
			return (last->objects[i]->state);
		}
	return ("");
}

/* What the fake tools were asked, and forget it. */
static char *
tool_calls(void)
{
	char	*s = svc_read(toollog, 1 << 20);

	unlink(toollog);
	return (s != NULL ? s : xstrdup(""));
}

/* ---- the maps through the shipped queries ----------------------------------- */

/* The query of an ops/mail/ file, with '%s' or '%u' made a parameter. */
static char *
shipped_query(const char *file, const char *key)
{
	char	*path, *text, *q, *p, *end, *out;
	size_t	 n = 0;

	xasprintf(&path, "ops/mail/%s", file);
	text = svc_read(path, 1 << 16);
	if (text == NULL)
		fail_msg("%s: not found (run from the top folder)", path);
	free(path);
	xasprintf(&q, "\n%s = ", key);
	p = strstr(text, q);
	assert_non_null(p);
	p += strlen(q);
	free(q);
	out = xcalloc(1, strlen(p) + 1);
	/* Continuation lines end with a backslash (dovecot-sql.conf.ext). */
	for (end = p; *end != '\0'; end++) {
		if (*end == '\\' && end[1] == '\n') {
			end++;
			continue;
		}
		if (*end == '\n')
			break;
		if (strncmp(end, "'%s'", 4) == 0 ||
		    strncmp(end, "'%u'", 4) == 0) {
			out[n++] = '?';
			end += 3;
			continue;
		}
		out[n++] = *end;
	}
	free(text);
	return (out);
}

/* Run a shipped query for key on a map; its first column, or NULL. */
static char *
lookup(const char *db, const char *file, const char *which, const char *key)
{
	sqlite3		*h;
	sqlite3_stmt	*st;
	char		*path, *q = shipped_query(file, which), *out = NULL;
	int		 i, rc;

	xasprintf(&path, "%s/%s", maps, db);
	assert_int_equal(sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL),
	    SQLITE_OK);
	rc = sqlite3_prepare_v2(h, q, -1, &st, NULL);
	if (rc != SQLITE_OK)
		fail_msg("%s: %s: %s", file, q, sqlite3_errmsg(h));
	for (i = 1; i <= sqlite3_bind_parameter_count(st); i++)
		sqlite3_bind_text(st, i, key, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char	*v = (const char *)sqlite3_column_text(st, 0);
		char		*prev = out;

		/* Postfix joins several rows with commas. */
		xasprintf(&out, "%s%s%s", prev ? prev : "", prev ? "," : "",
		    v ? v : "");
		free(prev);
	}
	sqlite3_finalize(st);
	sqlite3_close(h);
	free(path);
	free(q);
	return (out);
}

static void
assert_lookup(const char *db, const char *file, const char *which,
    const char *key, const char *want)
{
	char	*got = lookup(db, file, which, key);

	if (want == NULL && got != NULL)
		fail_msg("%s %s: '%s' found '%s'", file, which, key, got);
	if (want != NULL && (got == NULL || strcmp(got, want) != 0))
		fail_msg("%s %s: '%s' gave '%s', not '%s'", file, which, key,
		    got ? got : "(nothing)", want);
	free(got);
}

#define PF(file, key, want) \
	assert_lookup("postfix.sqlite", file, "query", key, want)
#define DV(which, key, want) \
	assert_lookup("dovecot.sqlite", "dovecot-sql.conf.ext.in", which, \
	    key, want)

/* ---- tests --------------------------------------------------------------------- */

static void
mail_maps_answer_the_shipped_queries(void **state)
{
	Opsn__ServicesDesired	 d = desired(1);
	Opsn__MailDomain	*dv[4];
	Opsn__Mailbox		*bv[8], *b;
	Opsn__Alias		*av[4];
	struct stat		 st;
	char			*calls, *home, *path;

	add_domain(&d, dv, "mairie-agassac.fr", 0);
	add_domain(&d, dv, "aignes.fr", 1);
	add_box(&d, bv, "m1", "secretariat@mairie-agassac.fr", HASH_A);
	b = add_box(&d, bv, "m2", "urbanisme@mairie-agassac.fr", HASH_A);
	b->suspended = 1;
	b = add_box(&d, bv, "m3", "ancien@mairie-agassac.fr", "");
	b->deleted = 1;
	b->purge_after = util_now() + 86400;
	b = add_box(&d, bv, "m4", "maire@aignes.fr", HASH_B);
	b->quota_bytes = 0;
	add_alias(&d, av, "a1", "contact@mairie-agassac.fr",
	    "secretariat@mairie-agassac.fr");
	add_alias(&d, av, "a2", "@aignes.fr", "maire@aignes.fr");
	/* A forward keeps the external address as it was given. */
	add_alias(&d, av, "a3", "elus@mairie-agassac.fr",
	    "Jean.Dupont+mairie@Example.ORG");
	start();
	apply(&d);
	assert_true(last->ok);
	assert_string_equal(state_of("domain", "mairie-agassac.fr", NULL),
	    "applied");
	assert_string_equal(state_of("domain", "aignes.fr", NULL), "applied");
	assert_string_equal(state_of("mailbox", "m1", NULL), "applied");
	assert_string_equal(state_of("mailbox", "m3", NULL), "applied");
	assert_string_equal(state_of("alias", "a2", NULL), "applied");

	/* Postfix: domains, mailboxes that take mail, aliases. */
	PF("opsn-domains.cf.in", "mairie-agassac.fr", "ok");
	PF("opsn-domains.cf.in", "example.org", NULL);
	xasprintf(&home, "%s/mairie-agassac.fr/secretariat", mail_dir);
	PF("opsn-mailboxes.cf.in", "secretariat@mairie-agassac.fr", home);
	free(home);
	PF("opsn-mailboxes.cf.in", "ancien@mairie-agassac.fr", NULL);
	PF("opsn-aliases.cf.in", "contact@mairie-agassac.fr",
	    "secretariat@mairie-agassac.fr");
	/* A mailbox is itself, so a catch-all does not take its mail. */
	PF("opsn-aliases.cf.in", "maire@aignes.fr", "maire@aignes.fr");
	PF("opsn-aliases.cf.in", "@aignes.fr", "maire@aignes.fr");
	PF("opsn-aliases.cf.in", "ancien@mairie-agassac.fr", NULL);
	PF("opsn-aliases.cf.in", "elus@mairie-agassac.fr",
	    "Jean.Dupont+mairie@Example.ORG");
	/* Held (451), refused (550), delivered (nothing). */
	PF("opsn-access.cf.in", "urbanisme@mairie-agassac.fr",
	    "451 4.7.1 mailbox suspended");
	PF("opsn-access.cf.in", "aignes.fr", "451 4.7.1 domain suspended");
	PF("opsn-access.cf.in", "maire@aignes.fr",
	    "451 4.7.1 mailbox suspended");
	PF("opsn-access.cf.in", "ancien@mairie-agassac.fr",
	    "550 5.1.1 user unknown");
	PF("opsn-access.cf.in", "secretariat@mairie-agassac.fr", NULL);
	PF("opsn-transport.cf.in", "urbanisme@mairie-agassac.fr",
	    "retry:4.7.1 mailbox suspended");
	PF("opsn-transport.cf.in", "secretariat@mairie-agassac.fr", NULL);

	/* Dovecot: only active mailboxes log in; quota rules per user. */
	DV("password_query", "secretariat@mairie-agassac.fr", 
	    "secretariat@mairie-agassac.fr");
	DV("password_query", "urbanisme@mairie-agassac.fr", NULL);
	DV("password_query", "ancien@mairie-agassac.fr", NULL);
	DV("password_query", "maire@aignes.fr", NULL);
	xasprintf(&home, "%s/mairie-agassac.fr/urbanisme", mail_dir);
	DV("user_query", "urbanisme@mairie-agassac.fr", home);
	free(home);
	DV("user_query", "ancien@mairie-agassac.fr", NULL);

	/* Dovecot first, then Postfix; nothing else. */
	calls = tool_calls();
	assert_string_equal(calls, "doveadm -c /dv.conf reload\n"
	    "postfix -c /pf reload\n");
	free(calls);
	/* The users file holds hashes: root only. */
	xasprintf(&path, "%s/dovecot.sqlite", maps);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	free(path);
	xasprintf(&path, "%s/postfix.sqlite", maps);
	assert_int_equal(stat(path, &st), 0);
	/* Addresses only, for postfix's processes (group postfix if any). */
	assert_true((st.st_mode & 07777) == 0640 ||
	    (st.st_mode & 07777) == 0644);
	free(path);
	/* The domain folders belong to the mail user. */
	xasprintf(&path, "%s/aignes.fr", mail_dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_uid, getuid());
	free(path);
	stop();
}

static void
mail_quota_rule_comes_from_the_mailbox(void **state)
{
	Opsn__ServicesDesired	 d = desired(1);
	Opsn__MailDomain	*dv[2];
	Opsn__Mailbox		*bv[2], *b;
	sqlite3			*h;
	sqlite3_stmt		*st;
	char			*path;

	add_domain(&d, dv, "mairie-agassac.fr", 0);
	b = add_box(&d, bv, "m1", "dgs@mairie-agassac.fr", HASH_A);
	b->quota_bytes = 2147483648ULL;
	b = add_box(&d, bv, "m2", "rh@mairie-agassac.fr", HASH_A);
	b->quota_bytes = 0;
	start();
	apply(&d);
	xasprintf(&path, "%s/dovecot.sqlite", maps);
	assert_int_equal(sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL),
	    SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(h, "SELECT quota_rule FROM users "
	    "ORDER BY address", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal(sqlite3_column_text(st, 0), "*:bytes=2147483648");
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	/* No limit: no rule at all, Dovecot's default. */
	assert_int_equal(sqlite3_column_type(st, 0), SQLITE_NULL);
	sqlite3_finalize(st);
	sqlite3_close(h);
	free(path);
	stop();
}

static void
mail_bad_objects_are_reported_and_left_out(void **state)
{
	Opsn__ServicesDesired	 d = desired(7);
	Opsn__MailDomain	*dv[4];
	Opsn__Mailbox		*bv[8], *b;
	Opsn__Alias		*av[4];
	const char		*msg;

	add_domain(&d, dv, "mairie-agassac.fr", 0);
	add_domain(&d, dv, "Bad_Domain.fr", 0);
	add_box(&d, bv, "m1", "ok@mairie-agassac.fr", HASH_A);
	add_box(&d, bv, "m2", "Upper@mairie-agassac.fr", HASH_A);
	add_box(&d, bv, "m3", "x@elsewhere.fr", HASH_A);
	add_box(&d, bv, "m4", "plain@mairie-agassac.fr", "{PLAIN}secret");
	add_box(&d, bv, "m5", "nohash@mairie-agassac.fr", "");
	add_box(&d, bv, "m6", "ok@mairie-agassac.fr", HASH_B);
	b = add_box(&d, bv, "m7", "../../etc@mairie-agassac.fr", HASH_A);
	b->domain = "mairie-agassac.fr";
	add_alias(&d, av, "a1", "contact@elsewhere.fr", "ok@mairie-agassac.fr");
	add_alias(&d, av, "a2", "info@mairie-agassac.fr", "a,b@example.org");
	start();
	apply(&d);
	/* The generation applied; the objects in error say why. */
	assert_true(last->ok);
	assert_string_equal(state_of("domain", "Bad_Domain.fr", NULL),
	    "error");
	assert_string_equal(state_of("mailbox", "m1", NULL), "applied");
	assert_string_equal(state_of("mailbox", "m2", &msg), "error");
	assert_non_null(strstr(msg, "Upper"));
	assert_string_equal(state_of("mailbox", "m3", &msg), "error");
	assert_non_null(strstr(msg, "not on this backend"));
	assert_string_equal(state_of("mailbox", "m4", &msg), "error");
	assert_non_null(strstr(msg, "not hashed"));
	assert_string_equal(state_of("mailbox", "m5", NULL), "error");
	assert_string_equal(state_of("mailbox", "m6", &msg), "error");
	assert_non_null(strstr(msg, "twice"));
	assert_string_equal(state_of("mailbox", "m7", NULL), "error");
	assert_string_equal(state_of("alias", "a1", NULL), "error");
	assert_string_equal(state_of("alias", "a2", NULL), "error");
	/* The first of two with one address wins. */
	DV("password_query", "ok@mairie-agassac.fr", "ok@mairie-agassac.fr");
	PF("opsn-mailboxes.cf.in", "upper@mairie-agassac.fr", NULL);
	PF("opsn-aliases.cf.in", "info@mairie-agassac.fr", NULL);
	stop();
}

static void
mail_same_state_again_writes_and_reloads_nothing(void **state)
{
	Opsn__ServicesDesired	 d = desired(1);
	Opsn__MailDomain	*dv[2];
	Opsn__Mailbox		*bv[2];
	struct stat		 a, b;
	char			*path, *calls;

	add_domain(&d, dv, "mairie-agassac.fr", 0);
	add_box(&d, bv, "m1", "ok@mairie-agassac.fr", HASH_A);
	start();
	apply(&d);
	free(tool_calls());
	xasprintf(&path, "%s/postfix.sqlite", maps);
	assert_int_equal(stat(path, &a), 0);
	d.generation = 2;
	apply(&d);
	assert_true(last->ok);
	assert_string_equal(state_of("mailbox", "m1", NULL), "applied");
	assert_int_equal(stat(path, &b), 0);
	assert_int_equal(a.st_ino, b.st_ino);
	calls = tool_calls();
	assert_string_equal(calls, "");
	free(calls);
	stop();

	/* A new agent reloads once: it cannot know the daemons saw it. */
	start();
	d.generation = 3;
	apply(&d);
	assert_int_equal(stat(path, &b), 0);
	assert_int_equal(a.st_ino, b.st_ino);
	calls = tool_calls();
	assert_non_null(strstr(calls, "postfix -c /pf reload"));
	free(calls);
	free(path);
	stop();
}

static void
mail_failed_reload_fails_the_generation_until_one_works(void **state)
{
	Opsn__ServicesDesired	 d = desired(4);
	Opsn__MailDomain	*dv[2];
	Opsn__Mailbox		*bv[2];
	const char		*msg;
	char			*calls;

	add_domain(&d, dv, "mairie-agassac.fr", 0);
	add_box(&d, bv, "m1", "ok@mairie-agassac.fr", HASH_A);
	write_file(failflag, "", 0644);
	start();
	apply(&d);
	assert_false(last->ok);
	assert_non_null(strstr(last->error, "boom"));
	assert_string_equal(state_of("mailbox", "m1", &msg), "error");
	assert_non_null(strstr(msg, "boom"));
	assert_string_equal(state_of("domain", "mairie-agassac.fr", NULL),
	    "error");
	/* The same state again: the maps are there, the reload is redone. */
	unlink(failflag);
	free(tool_calls());
	d.generation = 5;
	apply(&d);
	assert_true(last->ok);
	assert_string_equal(state_of("mailbox", "m1", NULL), "applied");
	calls = tool_calls();
	assert_string_equal(calls, "doveadm -c /dv.conf reload\n"
	    "postfix -c /pf reload\n");
	free(calls);
	stop();
}

static void
mail_retries_a_failed_generation_by_itself(void **state)
{
	Opsn__ServicesDesired	 d = desired(9);
	Opsn__MailDomain	*dv[2];
	uint64_t		 end;

	add_domain(&d, dv, "mairie-agassac.fr", 0);
	write_file(failflag, "", 0644);
	start();
	apply(&d);
	assert_false(last->ok);
	unlink(failflag);
	end = util_mono_ms() + 8000;
	while (!last->ok && util_mono_ms() < end)
		uv_run(&loop, UV_RUN_ONCE);
	assert_true(last->ok);
	assert_int_equal(last->generation, 9);
	stop();
}

static void
mail_suspension_kicks_sessions_and_reactivation_flushes(void **state)
{
	Opsn__ServicesDesired	 d = desired(1);
	Opsn__MailDomain	*dv[2];
	Opsn__Mailbox		*bv[4], *b, *c;
	char			*calls;

	add_domain(&d, dv, "mairie-agassac.fr", 0);
	b = add_box(&d, bv, "m1", "a@mairie-agassac.fr", HASH_A);
	c = add_box(&d, bv, "m2", "b@mairie-agassac.fr", HASH_A);
	add_box(&d, bv, "m3", "c@mairie-agassac.fr", HASH_A);
	start();
	apply(&d);
	free(tool_calls());
	/* Suspended, and a new password: both lose their open sessions. */
	b->suspended = 1;
	c->password_hash = HASH_B;
	d.generation = 2;
	apply(&d);
	calls = tool_calls();
	assert_non_null(strstr(calls, "doveadm -c /dv.conf kick "
	    "a@mairie-agassac.fr\n"));
	assert_non_null(strstr(calls, "doveadm -c /dv.conf kick "
	    "b@mairie-agassac.fr\n"));
	assert_null(strstr(calls, "kick c@"));
	assert_null(strstr(calls, "flush"));
	free(calls);
	/* Reactivated: the mail held for it goes now. */
	b->suspended = 0;
	d.generation = 3;
	apply(&d);
	calls = tool_calls();
	assert_non_null(strstr(calls, "postfix -c /pf flush\n"));
	assert_null(strstr(calls, "kick"));
	free(calls);
	stop();
}

static void
mail_many_kicks_go_only_to_connected_users(void **state)
{
	Opsn__ServicesDesired	 d = desired(1);
	Opsn__MailDomain	*dv[2];
	Opsn__Mailbox		*bv[8];
	static const char *const addrs[] = { "a@mairie-agassac.fr",
	    "b@mairie-agassac.fr", "c@mairie-agassac.fr",
	    "d@mairie-agassac.fr", "e@mairie-agassac.fr",
	    "f@mairie-agassac.fr" };
	char			 id[8];
	char			*calls;
	size_t			 i;

	add_domain(&d, dv, "mairie-agassac.fr", 1);
	for (i = 0; i < nitems(addrs); i++) {
		snprintf(id, sizeof(id), "m%zu", i);
		add_box(&d, bv, xstrdup(id), addrs[i], HASH_A);
	}
	/* The whole domain is suspended at once (its member is). */
	dv[0]->suspended = 0;
	start();
	apply(&d);
	free(tool_calls());
	dv[0]->suspended = 1;
	d.generation = 2;
	apply(&d);
	calls = tool_calls();
	/* Six to kick: doveadm who says only e@ is connected. */
	assert_non_null(strstr(calls, "doveadm -c /dv.conf who -1\n"));
	assert_non_null(strstr(calls, "kick e@mairie-agassac.fr\n"));
	assert_null(strstr(calls, "kick a@"));
	assert_null(strstr(calls, "kick f@"));
	free(calls);
	for (i = 0; i < d.n_mailboxes; i++)
		free(bv[i]->id);
	stop();
}

static void
mail_deleted_mailbox_is_purged_only_when_its_time_comes(void **state)
{
	Opsn__ServicesDesired	 d = desired(1);
	Opsn__MailDomain	*dv[2];
	Opsn__Mailbox		*bv[4], *b, *c;
	char			*gone, *kept, *file, *cause = NULL;
	struct stat		 st;

	add_domain(&d, dv, "mairie-agassac.fr", 0);
	b = add_box(&d, bv, "m1", "parti@mairie-agassac.fr", "");
	b->deleted = 1;
	b->purge_after = util_now() + 3600;
	c = add_box(&d, bv, "m2", "reste@mairie-agassac.fr", HASH_A);
	add_box(&d, bv, "m3", "expire@mairie-agassac.fr", "");
	bv[2]->deleted = 1;
	bv[2]->purge_after = util_now() - 1;
	start();
	apply(&d);
	/* Mail in each maildir, as Dovecot would have left it. */
	xasprintf(&gone, "%s/mairie-agassac.fr/parti", mail_dir);
	xasprintf(&kept, "%s/mairie-agassac.fr/reste", mail_dir);
	xasprintf(&file, "%s/Maildir/cur", gone);
	assert_int_equal(svc_mkdirs(file, 0700, -1, -1, &cause), 0);
	free(file);
	xasprintf(&file, "%s/Maildir/cur/1.eml", gone);
	write_file(file, "Subject: x\n\nx\n", 0600);
	free(file);
	xasprintf(&file, "%s/Maildir/cur", kept);
	assert_int_equal(svc_mkdirs(file, 0700, -1, -1, &cause), 0);
	free(file);
	/* Its retention is over while still listed: purged and said so. */
	assert_string_equal(state_of("mailbox", "m3", NULL), "purged");
	/* Still within its retention: kept. */
	assert_string_equal(state_of("mailbox", "m1", NULL), "applied");
	d.generation = 2;
	apply(&d);
	assert_int_equal(stat(gone, &st), 0);

	/* Gone from the state after being deleted: purged. */
	bv[0] = c;
	d.n_mailboxes = 1;
	d.generation = 3;
	apply(&d);
	assert_string_equal(state_of("mailbox", "m1", NULL), "purged");
	assert_int_equal(stat(gone, &st), -1);
	/* Gone without having been deleted: its mail stays. */
	d.n_mailboxes = 0;
	d.generation = 4;
	apply(&d);
	assert_string_equal(state_of("mailbox", "m2", NULL), "");
	assert_int_equal(stat(kept, &st), 0);
	free(gone);
	free(kept);
	stop();
}

static void
mail_newest_waiting_state_replaces_the_others(void **state)
{
	Opsn__ServicesDesired	 d1 = desired(10), d2 = desired(11);
	Opsn__ServicesDesired	 d3 = desired(12), d0 = desired(3);
	Opsn__MailDomain	*dv[2];
	uint8_t			 buf[256];
	size_t			 len;
	uint64_t		 end;
	int			 seen_11 = 0;

	add_domain(&d3, dv, "mairie-agassac.fr", 0);
	start();
	len = opsn__services_desired__pack(&d1, buf);
	mail_role.on_frame(MSG_SERVICES_DESIRED, buf, len);
	len = opsn__services_desired__pack(&d2, buf);
	mail_role.on_frame(MSG_SERVICES_DESIRED, buf, len);
	len = opsn__services_desired__pack(&d3, buf);
	mail_role.on_frame(MSG_SERVICES_DESIRED, buf, len);
	end = util_mono_ms() + 10000;
	while ((nstatus < 2 || !mail_idle()) && util_mono_ms() < end) {
		uv_run(&loop, UV_RUN_ONCE);
		if (last != NULL && last->generation == 11)
			seen_11 = 1;
	}
	/* 10 was running when 11 and 12 came: 12 is next, 11 never runs. */
	assert_int_equal(nstatus, 2);
	assert_false(seen_11);
	assert_int_equal(last->generation, 12);
	assert_string_equal(state_of("domain", "mairie-agassac.fr", NULL),
	    "applied");
	/* A lower generation is the controller's state too (a restore). */
	apply(&d0);
	assert_true(last->ok);
	PF("opsn-domains.cf.in", "mairie-agassac.fr", NULL);
	/* Garbage is dropped, the role goes on. */
	mail_role.on_frame(MSG_SERVICES_DESIRED, (const uint8_t *)"\xff\xff",
	    2);
	assert_true(mail_idle());
	stop();
}

static int	 usage_done;
static int64_t	 usage_bytes;
static char	 usage_tenant[32];

static void
usage_cb(void *arg, const char *kind, const char *id, const char *tenant,
    int64_t bytes)
{
	if (kind == NULL) {
		usage_done++;
		return;
	}
	assert_string_equal(kind, "mailbox");
	if (strcmp(id, "m1") == 0) {
		usage_bytes = bytes;
		strlcpy(usage_tenant, tenant, sizeof(usage_tenant));
	}
}

static void
mail_usage_sums_each_maildir(void **state)
{
	Opsn__ServicesDesired	 d = desired(1);
	Opsn__MailDomain	*dv[2];
	Opsn__Mailbox		*bv[2];
	char			*dir, *file, *cause = NULL, big[5000];

	add_domain(&d, dv, "mairie-agassac.fr", 0);
	add_box(&d, bv, "m1", "ok@mairie-agassac.fr", HASH_A);
	add_box(&d, bv, "m2", "vide@mairie-agassac.fr", HASH_A);
	start();
	apply(&d);
	xasprintf(&dir, "%s/mairie-agassac.fr/ok/Maildir/cur", mail_dir);
	assert_int_equal(svc_mkdirs(dir, 0700, -1, -1, &cause), 0);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	xasprintf(&file, "%s/1.eml", dir);
	write_file(file, big, 0600);
	free(file);
	xasprintf(&file, "%s/2.eml", dir);
	write_file(file, "12345", 0600);
	free(file);
	free(dir);
	usage_done = 0;
	mail_usage(usage_cb, NULL);
	while (!usage_done)
		uv_run(&loop, UV_RUN_ONCE);
	assert_int_equal(usage_bytes, 4999 + 5);
	assert_string_equal(usage_tenant, "31001");
	stop();
	/* Stopped: the walk ends at once. */
	usage_done = 0;
	mail_usage(usage_cb, NULL);
	assert_int_equal(usage_done, 1);
}

/* ---- DKIM ---------------------------------------------------------------- */

static char *
rsa_pem(void)
{
	EVP_PKEY	*k = EVP_RSA_gen(2048);
	BIO		*bio = BIO_new(BIO_s_mem());
	char		*data, *pem;
	long		 n;

	assert_int_equal(PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL,
	    NULL), 1);
	n = BIO_get_mem_data(bio, &data);
	pem = xstrndup(data, (size_t)n);
	BIO_free(bio);
	EVP_PKEY_free(k);
	return (pem);
}

/* DATA_DIR/dkim/current/NAME, or NULL. */
static char *
dkim_file(const char *name)
{
	char	*path, *text;

	xasprintf(&path, "%s/dkim/current/%s", tmp, name);
	text = svc_read(path, 1 << 20);
	free(path);
	return (text);
}

static void
mail_dkim_keys_and_tables_change_together(void **state)
{
	Opsn__ServicesDesired	 d = desired(1);
	Opsn__MailDomain	*v[2];
	char			*pem = rsa_pem(), *pem2 = rsa_pem(), *kt, *st;
	char			*path, link1[128], link2[128], *key;
	const char		*msg;
	struct stat		 sb;
	ssize_t			 l;

	start();
	/* Before any domain: empty tables, so OpenDKIM can start. */
	kt = dkim_file("KeyTable");
	assert_string_equal(kt, "");
	free(kt);
	add_domain(&d, v, "mairie-agassac.fr", 0);
	doms[0].dkim_selector = "opsn2026";
	doms[0].dkim_private_pem = pem;
	add_domain(&d, v, "aignes.fr", 0);
	doms[1].dkim_selector = "bad selector";
	doms[1].dkim_private_pem = pem2;
	apply(&d);
	assert_string_equal(state_of("domain", "mairie-agassac.fr", NULL),
	    "applied");
	/* A key that cannot be used is its domain's error, not the rest's. */
	assert_string_equal(state_of("domain", "aignes.fr", &msg), "error");
	assert_non_null(strstr(msg, "DKIM selector"));
	kt = dkim_file("KeyTable");
	st = dkim_file("SigningTable");
	xasprintf(&path, "%s/dkim/", tmp);
	assert_non_null(strstr(kt, "opsn2026._domainkey.mairie-agassac.fr "
	    "mairie-agassac.fr:opsn2026:"));
	assert_non_null(strstr(kt, path));
	assert_null(strstr(kt, "aignes"));
	assert_string_equal(st, "*@mairie-agassac.fr "
	    "opsn2026._domainkey.mairie-agassac.fr\n");
	free(kt);
	free(st);
	free(path);
	key = dkim_file("keys/mairie-agassac.fr.opsn2026.pem");
	assert_non_null(key);
	assert_string_equal(key, pem);
	free(key);
	xasprintf(&path, "%s/dkim/current/keys/mairie-agassac.fr.opsn2026.pem",
	    tmp);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	free(path);
	xasprintf(&path, "%s/dkim/current", tmp);
	l = readlink(path, link1, sizeof(link1) - 1);
	assert_true(l > 0);
	link1[l] = '\0';
	/* The same keys again: the same folder, nothing rewritten. */
	d.generation = 2;
	apply(&d);
	l = readlink(path, link2, sizeof(link2) - 1);
	link2[l] = '\0';
	assert_string_equal(link1, link2);
	/* A new selector: a new folder, the previous one kept for a while. */
	doms[0].dkim_selector = "opsn20270101";
	d.generation = 3;
	apply(&d);
	l = readlink(path, link2, sizeof(link2) - 1);
	link2[l] = '\0';
	assert_string_not_equal(link1, link2);
	free(path);
	xasprintf(&path, "%s/dkim/%s/KeyTable", tmp, link1);
	assert_int_equal(stat(path, &sb), 0);
	free(path);
	kt = dkim_file("KeyTable");
	assert_non_null(strstr(kt, "opsn20270101._domainkey."));
	assert_null(strstr(kt, "opsn2026._domainkey."));
	free(kt);
	free(pem);
	free(pem2);
	stop();
}
/*
 * Protocol 2: a whole state in two parts, then a delta that changes one
 * mailbox, adds one and removes an alias. The maps follow, the status
 * names only what the delta changed, and a delta from a generation the
 * agent does not hold is dropped with a MSG_SERVICES_HAVE.
 */
static void
mail_parts_then_deltas_change_only_what_they_name(void **state)
{
	Opsn__ServicesDesired	 d = desired(5), p0 = desired(5), p1;
	Opsn__ServicesDesired	 ch = desired(6);
	Opsn__ServicesPart	 part = OPSN__SERVICES_PART__INIT;
	Opsn__ServicesDelta	 delta = OPSN__SERVICES_DELTA__INIT;
	Opsn__MailDomain	*dv[4];
	Opsn__Mailbox		*bv[8], *b, *cbv[4];
	Opsn__Alias		*av[4];
	char			*rm[1] = { "a1" }, *home;
	int			 n;

	add_domain(&d, dv, "mairie-agassac.fr", 0);
	add_box(&d, bv, "m1", "secretariat@mairie-agassac.fr", HASH_A);
	add_box(&d, bv, "m2", "urbanisme@mairie-agassac.fr", HASH_A);
	add_alias(&d, av, "a1", "contact@mairie-agassac.fr",
	    "secretariat@mairie-agassac.fr");
	svc_set_proto(2);
	start();
	mail_role.on_connected();
	assert_int_equal(have, 0);	/* it holds nothing yet */
	/* Part 0: the domain and one mailbox; part 1: the rest. */
	p0.domains = d.domains;
	p0.n_domains = 1;
	p0.mailboxes = d.mailboxes;
	p0.n_mailboxes = 1;
	part.state = &p0;
	part.index = 0;
	n = nstatus;
	frame(MSG_SERVICES_PART, &part.base, 0);
	uv_run(&loop, UV_RUN_NOWAIT);
	assert_int_equal(nstatus, n);	/* nothing applied before the last */
	p1 = desired(5);
	p1.mailboxes = d.mailboxes + 1;
	p1.n_mailboxes = 1;
	p1.aliases = d.aliases;
	p1.n_aliases = 1;
	part.state = &p1;
	part.index = 1;
	part.last = 1;
	frame(MSG_SERVICES_PART, &part.base, 1);
	assert_int_equal(last->generation, 5);
	assert_string_equal(state_of("mailbox", "m2", NULL), "applied");
	assert_string_equal(state_of("alias", "a1", NULL), "applied");
	PF("opsn-aliases.cf.in", "contact@mairie-agassac.fr",
	    "secretariat@mairie-agassac.fr");

	/* The delta: m2's quota, a new m3, alias a1 gone. */
	b = &boxes[8];
	opsn__mailbox__init(b);
	*b = *d.mailboxes[1];
	b->quota_bytes = 5 << 20;
	cbv[0] = b;
	cbv[1] = box_at(9, "m3", "maire@mairie-agassac.fr", HASH_B);
	ch.mailboxes = cbv;
	ch.n_mailboxes = 2;
	delta.base_generation = 5;
	delta.changes = &ch;
	delta.removed_aliases = rm;
	delta.n_removed_aliases = 1;
	frame(MSG_SERVICES_DELTA, &delta.base, 1);
	assert_true(last->ok);
	assert_int_equal(last->generation, 6);
	/* Only what the delta named; the rest stays as it was. */
	assert_int_equal(last->n_objects, 2);
	assert_string_equal(state_of("mailbox", "m2", NULL), "applied");
	assert_string_equal(state_of("mailbox", "m3", NULL), "applied");
	PF("opsn-aliases.cf.in", "contact@mairie-agassac.fr", NULL);
	xasprintf(&home, "%s/mairie-agassac.fr/maire", mail_dir);
	PF("opsn-mailboxes.cf.in", "maire@mairie-agassac.fr", home);
	free(home);
	xasprintf(&home, "%s/mairie-agassac.fr/secretariat", mail_dir);
	PF("opsn-mailboxes.cf.in", "secretariat@mairie-agassac.fr", home);
	free(home);

	/* A delta from a generation it does not hold: asked again. */
	have = -1;
	delta.base_generation = 3;
	ch.generation = 7;
	n = nstatus;
	frame(MSG_SERVICES_DELTA, &delta.base, 0);
	assert_int_equal(have, 6);
	uv_run(&loop, UV_RUN_NOWAIT);
	assert_int_equal(nstatus, n);
	stop();
	svc_set_proto(0);
}

/*
 * Deltas that change mailboxes only patch the live maps: one suspended
 * with a new password (its sessions end), one removed after its deletion
 * (purged), one added; the others stay as they were. A delta whose
 * address a mailbox it does not name holds is written as a whole state,
 * which reports the duplicate.
 */
static void
mail_mailbox_deltas_patch_the_live_maps(void **state)
{
	Opsn__ServicesDesired	 d = desired(5), ch = desired(6);
	Opsn__ServicesDelta	 delta = OPSN__SERVICES_DELTA__INIT;
	Opsn__MailDomain	*dv[2];
	Opsn__Mailbox		*bv[4], *cbv[2], *b;
	char			*rm[1] = { "m3" }, *calls, *home, *gone;
	char			*cause = NULL;
	struct stat		 st;
	unsigned		 patched;

	add_domain(&d, dv, "mairie-agassac.fr", 0);
	add_box(&d, bv, "m1", "secretariat@mairie-agassac.fr", HASH_A);
	add_box(&d, bv, "m2", "urbanisme@mairie-agassac.fr", HASH_A);
	b = add_box(&d, bv, "m3", "ancien@mairie-agassac.fr", "");
	b->deleted = 1;
	b->purge_after = util_now() + 3600;
	svc_set_proto(2);
	start();
	mail_role.on_connected();
	apply(&d);
	xasprintf(&gone, "%s/mairie-agassac.fr/ancien", mail_dir);
	xasprintf(&home, "%s/Maildir/cur", gone);
	assert_int_equal(svc_mkdirs(home, 0700, -1, -1, &cause), 0);
	free(home);
	free(tool_calls());
	patched = mail_patched();

	/* m2 suspended with a new password, m3 gone, m4 new. */
	b = &boxes[8];
	*b = *d.mailboxes[1];
	b->suspended = 1;
	b->password_hash = HASH_B;
	cbv[0] = b;
	cbv[1] = box_at(9, "m4", "maire@mairie-agassac.fr", HASH_B);
	ch.mailboxes = cbv;
	ch.n_mailboxes = 2;
	delta.base_generation = 5;
	delta.changes = &ch;
	delta.removed_mailboxes = rm;
	delta.n_removed_mailboxes = 1;
	frame(MSG_SERVICES_DELTA, &delta.base, 1);
	assert_true(last->ok);
	assert_int_equal(last->generation, 6);
	assert_int_equal(mail_patched(), patched + 1);
	assert_int_equal(last->n_objects, 3);
	assert_string_equal(state_of("mailbox", "m2", NULL), "applied");
	assert_string_equal(state_of("mailbox", "m3", NULL), "purged");
	assert_string_equal(state_of("mailbox", "m4", NULL), "applied");
	assert_int_equal(stat(gone, &st), -1);
	calls = tool_calls();
	assert_non_null(strstr(calls, "doveadm -c /dv.conf reload\n"));
	assert_non_null(strstr(calls, "postfix -c /pf reload\n"));
	assert_non_null(strstr(calls, "kick urbanisme@mairie-agassac.fr\n"));
	assert_null(strstr(calls, "kick secretariat@"));
	free(calls);
	xasprintf(&home, "%s/mairie-agassac.fr/maire", mail_dir);
	PF("opsn-mailboxes.cf.in", "maire@mairie-agassac.fr", home);
	free(home);
	xasprintf(&home, "%s/mairie-agassac.fr/secretariat", mail_dir);
	PF("opsn-mailboxes.cf.in", "secretariat@mairie-agassac.fr", home);
	free(home);
	PF("opsn-mailboxes.cf.in", "ancien@mairie-agassac.fr", NULL);
	PF("opsn-access.cf.in", "ancien@mairie-agassac.fr", NULL);
	PF("opsn-access.cf.in", "urbanisme@mairie-agassac.fr",
	    "451 4.7.1 mailbox suspended");
	PF("opsn-transport.cf.in", "urbanisme@mairie-agassac.fr",
	    "retry:4.7.1 mailbox suspended");
	DV("password_query", "urbanisme@mairie-agassac.fr", NULL);
	DV("password_query", "maire@mairie-agassac.fr",
	    "maire@mairie-agassac.fr");
	DV("password_query", "secretariat@mairie-agassac.fr",
	    "secretariat@mairie-agassac.fr");

	/* Reactivated: its rows go back, and the mail held goes out. */
	boxes[8].suspended = 0;
	cbv[0] = &boxes[8];
	ch.n_mailboxes = 1;
	ch.generation = 7;
	delta.base_generation = 6;
	delta.n_removed_mailboxes = 0;
	frame(MSG_SERVICES_DELTA, &delta.base, 1);
	assert_int_equal(mail_patched(), patched + 2);
	assert_int_equal(last->n_objects, 1);
	calls = tool_calls();
	assert_non_null(strstr(calls, "postfix -c /pf flush\n"));
	free(calls);
	PF("opsn-access.cf.in", "urbanisme@mairie-agassac.fr", NULL);
	PF("opsn-transport.cf.in", "urbanisme@mairie-agassac.fr", NULL);
	DV("password_query", "urbanisme@mairie-agassac.fr",
	    "urbanisme@mairie-agassac.fr");

	/* m4 takes m1's address: the whole maps, which keep m1. */
	boxes[9].address = "secretariat@mairie-agassac.fr";
	cbv[0] = &boxes[9];
	ch.generation = 8;
	delta.base_generation = 7;
	frame(MSG_SERVICES_DELTA, &delta.base, 1);
	assert_int_equal(mail_patched(), patched + 2);
	assert_int_equal(last->generation, 8);
	assert_string_equal(state_of("mailbox", "m4", NULL), "error");
	PF("opsn-mailboxes.cf.in", "maire@mairie-agassac.fr", NULL);
	xasprintf(&home, "%s/mairie-agassac.fr/secretariat", mail_dir);
	PF("opsn-mailboxes.cf.in", "secretariat@mairie-agassac.fr", home);
	free(home);
	free(gone);
	stop();
	svc_set_proto(0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    mail_maps_answer_the_shipped_queries, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    mail_quota_rule_comes_from_the_mailbox, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    mail_bad_objects_are_reported_and_left_out, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    mail_same_state_again_writes_and_reloads_nothing, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    mail_failed_reload_fails_the_generation_until_one_works,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    mail_retries_a_failed_generation_by_itself, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    mail_suspension_kicks_sessions_and_reactivation_flushes,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    mail_many_kicks_go_only_to_connected_users, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    mail_deleted_mailbox_is_purged_only_when_its_time_comes,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    mail_newest_waiting_state_replaces_the_others, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    mail_usage_sums_each_maildir, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    mail_dkim_keys_and_tables_change_together, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    mail_parts_then_deltas_change_only_what_they_name, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    mail_mailbox_deltas_patch_the_live_maps, setup, teardown),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
