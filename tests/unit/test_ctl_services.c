/*
 * Services: host names (IDN to punycode), addresses, password hashes we
 * accept, DNS records, and the journal settled by an agent's status, on
 * an in-memory database with the real migrations.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "opsn/frame.h"
#include "opsn/log.h"
#include "opsn/util.h"

#include "core/core.h"
#include "agents/agents.h"
#include "services/services.h"
#include "services.pb-c.h"
#include "ctl_db.h"

static char *
host(const char *in)
{
	static char	 out[SERVICES_HOST_MAX + 1];
	char		*cause = NULL;

	if (services_util_host(in, out, &cause) == -1) {
		free(cause);
		return (NULL);
	}
	return (out);
}

static void
host_names_are_lowered_and_lose_the_final_dot(void **state)
{
	assert_string_equal(host("Mairie-Agassac.FR"), "mairie-agassac.fr");
	assert_string_equal(host("www.mairie-agassac.fr."), "www.mairie-agassac.fr");
	assert_string_equal(host("a1.b-2.fr"), "a1.b-2.fr");
}

static void
host_names_are_strict_ldh(void **state)
{
	char	 label[80], name[400];

	assert_null(host(""));
	assert_null(host("localhost"));			/* one label */
	assert_null(host("bad_name.fr"));
	assert_null(host("-x.fr"));
	assert_null(host("x-.fr"));
	assert_null(host("a..fr"));
	assert_null(host(".fr"));
	assert_null(host("a b.fr"));
	assert_null(host("x.fr/evil"));
	assert_null(host("192.168.1.10"));		/* an address */
	assert_null(host("mairie.fr\n"));
	memset(label, 'a', 63);
	label[63] = '\0';
	snprintf(name, sizeof(name), "%s.fr", label);
	assert_non_null(host(name));			/* 63 is fine */
	memset(label, 'a', 64);
	label[64] = '\0';
	snprintf(name, sizeof(name), "%s.fr", label);
	assert_null(host(name));			/* 64 is not */
	/* 4 labels of 63 and 3 dots: 255 characters, over 253. */
	memset(label, 'a', 63);
	label[63] = '\0';
	snprintf(name, sizeof(name), "%s.%s.%s.%s", label, label, label,
	    label);
	assert_null(host(name));
}

static void
unicode_host_names_become_punycode(void **state)
{
	assert_string_equal(host("mairie-élancourt.fr"),
	    "xn--mairie-lancourt-hnb.fr");
	/* Case is folded before conversion. */
	assert_string_equal(host("Mairie-Élancourt.FR"),
	    "xn--mairie-lancourt-hnb.fr");
	assert_string_equal(host("xn--mairie-lancourt-hnb.fr"),
	    "xn--mairie-lancourt-hnb.fr");
	assert_null(host("xn--zz.fr"));			/* not punycode */
	assert_null(host("☃☃.fr\x01"));
	{
		char *u = services_util_unicode("xn--mairie-lancourt-hnb.fr");

		assert_string_equal(u, "mairie-élancourt.fr");
		free(u);
	}
}

static void
addresses_are_checked_and_stored_lower_case(void **state)
{
	char	 out[SERVICES_ADDR_MAX + 1], *cause = NULL;

	assert_int_equal(services_util_address("Secretariat@Mairie-Agassac.fr",
	    0, out, &cause), 0);
	assert_string_equal(out, "secretariat@mairie-agassac.fr");
	assert_int_equal(services_util_address("jean.dupont-2@a.fr", 0, out,
	    &cause), 0);
	assert_int_equal(services_util_address("@a.fr",
	    SERVICES_ADDR_CATCHALL, out, &cause), 0);
	assert_string_equal(out, "@a.fr");
	assert_int_equal(services_util_address("Jean+List@Gmail.com",
	    SERVICES_ADDR_EXTERNAL, out, &cause), 0);
	assert_string_equal(out, "Jean+List@gmail.com");

	static const char *const bad[] = { "@a.fr", "a.fr", "a@", "x y@a.fr",
	    ".a@a.fr", "a.@a.fr", "a..b@a.fr", "a+b@a.fr", "a@b_c.fr",
	    "a\"b@a.fr" };
	for (size_t i = 0; i < nitems(bad); i++) {
		assert_int_equal(services_util_address(bad[i], 0, out,
		    &cause), -1);
		assert_non_null(cause);
		free(cause);
		cause = NULL;
	}
}

static void
strong_hashes_are_accepted_weak_ones_refused(void **state)
{
	static const char *const good[] = {
		"{SHA512-CRYPT}$6$FpFSdDWFLLLePHQn$LNiS11JCu5ggc41f9j2H84PBoHASS3"
		"JEwzbR5LigW0M8.S6lnx50EyxJQ7otpXbusDQjh4t1wl8ijYsXqY3vt.",
		"{SHA512-CRYPT}$6$rounds=10000$saltsalt$LNiS11JCu5ggc41f9j2H84PBo"
		"HASS3JEwzbR5LigW0M8.S6lnx50EyxJQ7otpXbusDQjh4t1wl8ijYsXqY3vt.",
		"{CRYPT}$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9"
		"SqC.5i5rd.RhAtQ7",
		"{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$c29tZXNhbHRzb21lc2Fs"
		"dA$Fb6ZjvDqvj/mjFrRsQZpWcZ3z+Hu2/0x3w7PW7Ocgss",
	};
	static const char *const weak[] = {
		"{MD5-CRYPT}$1$abc$def",
		"{SHA256-CRYPT}$5$abc$def",
		"{PLAIN}secret",
		"{SSHA}c2VjcmV0",
		"$6$FpFSdDWFLLLePHQn$LNiS11JCu5ggc41f9j2H84PBoHASS3JEwzbR5LigW0M8"
		".S6lnx50EyxJQ7otpXbusDQjh4t1wl8ijYsXqY3vt.",	/* no scheme */
		"{SHA512-CRYPT}$6$rounds=1000$saltsalt$LNiS11JCu5ggc41f9j2H84PBoH"
		"ASS3JEwzbR5LigW0M8.S6lnx50EyxJQ7otpXbusDQjh4t1wl8ijYsXqY3vt.",
		"{SHA512-CRYPT}$6$salt$short",
		"{CRYPT}$1$abc$def",			/* {CRYPT} but MD5 */
		"{CRYPT}$y$j9T$salt$X3DX6M94c7o 9agCG9G317fhZg9SqC.5i5rd.RhAtQ7",
		"{ARGON2ID}$argon2i$v=19$m=65536,t=3,p=1$c2FsdHNhbHRzYWx0$aGFza"
		"Ghhc2hoYXNoaGFzaGhhc2hoYXNo",
		"{ARGON2ID}$argon2id$v=19$m=16,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$Fb"
		"6ZjvDqvj/mjFrRsQZpWcZ3z+Hu2/0x3w7PW7Ocgss",	/* 16 KiB */
	};
	char	*cause = NULL;
	size_t	 i;

	for (i = 0; i < nitems(good); i++) {
		if (services_util_hash_ok(good[i], &cause) != 0)
			fail_msg("refused %s: %s", good[i], cause);
	}
	for (i = 0; i < nitems(weak); i++) {
		if (services_util_hash_ok(weak[i], &cause) == 0)
			fail_msg("accepted %s", weak[i]);
		/* The refusal never repeats the hash. */
		assert_null(strstr(cause, "abc$def"));
		assert_null(strstr(cause, "saltsalt"));
		free(cause);
		cause = NULL;
	}
}

static void
passwords_are_hashed_as_sha512_crypt(void **state)
{
	char	*h, *h2, *cause = NULL;

	h = services_util_hash_password("correct horse battery", &cause);
	assert_non_null(h);
	assert_int_equal(strncmp(h, "{SHA512-CRYPT}$6$", 17), 0);
	assert_null(strstr(h, "correct"));
	assert_int_equal(services_util_hash_ok(h, &cause), 0);
	/* A fresh salt each time. */
	h2 = services_util_hash_password("correct horse battery", &cause);
	assert_string_not_equal(h, h2);
	free(h);
	free(h2);
	assert_int_equal(services_util_password_ok("short", 5, &cause), -1);
	free(cause);
	assert_int_equal(services_util_password_ok("tab\there!", 9, &cause),
	    -1);
	free(cause);
	assert_int_equal(services_util_password_ok("nul\0inside", 10, &cause),
	    -1);
	free(cause);
	assert_int_equal(services_util_password_ok("Très bon mot", 13,
	    &cause), 0);
}

static void
dns_records_have_mx_spf_dkim_dmarc(void **state)
{
	char	*priv = NULL, *pub = NULL, *cause = NULL, *zone, *line, *save;
	json_t	*o, *recs;
	size_t	 n = 0;

	assert_int_equal(services_util_dkim(&priv, &pub, &cause), 0);
	assert_non_null(strstr(priv, "-----BEGIN PRIVATE KEY-----"));
	/* A 2048-bit SubjectPublicKeyInfo is 294 bytes: 392 in base64. */
	assert_int_equal(strlen(pub), 392);
	o = services_util_dns("mairie-agassac.fr", "mx1.opsn.example",
	    "opsn2026", pub);
	recs = json_object_get(o, "records");
	assert_int_equal(json_array_size(recs), 4);
	assert_string_equal(json_string_value(json_object_get(json_array_get(
	    recs, 0), "value")), "10 mx1.opsn.example.");
	assert_string_equal(json_string_value(json_object_get(json_array_get(
	    recs, 1), "value")), "v=spf1 mx -all");
	assert_string_equal(json_string_value(json_object_get(json_array_get(
	    recs, 2), "name")), "opsn2026._domainkey.mairie-agassac.fr");
	assert_int_equal(strncmp(json_string_value(json_object_get(
	    json_array_get(recs, 2), "value")), "v=DKIM1; k=rsa; p=MIIB", 22),
	    0);
	assert_string_equal(json_string_value(json_object_get(json_array_get(
	    recs, 3), "value")), "v=DMARC1; p=quarantine; "
	    "rua=mailto:postmaster@mairie-agassac.fr");
	/* Zone lines: names absolute, no TXT string over 255 characters. */
	zone = xstrdup(json_string_value(json_object_get(o, "zone")));
	for (line = strtok_r(zone, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save), n++) {
		const char *q = strchr(line, '"');

		assert_non_null(strstr(line, ". 3600 IN "));
		while (q != NULL) {
			const char *e = strchr(q + 1, '"');

			assert_non_null(e);
			assert_true(e - q - 1 <= 255);
			q = strchr(e + 1, '"');
		}
	}
	assert_int_equal(n, 4);
	free(zone);
	line = services_util_zone_line("a.fr", 60, "TXT", "");
	assert_string_equal(line, "a.fr. 60 IN TXT \"\"");
	free(line);
	json_decref(o);
	explicit_bzero(priv, strlen(priv));
	free(priv);
	free(pub);
}

/* The journal against a real schema: a backend, a domain, a mailbox. */

static struct ctl	 tctl;
static uv_loop_t	 tloop;

static void
db_exec(const char *sql)
{
	char	*cause = NULL;

	if (store_exec(tctl.db, sql, &cause) == -1)
		fail_msg("%s: %s", sql, cause);
}

static int
journal_setup(void **state)
{
	char	*cause = NULL;

	memset(&tctl, 0, sizeof(tctl));
	ctl = &tctl;
	if (store_open(":memory:", &tctl.db, &cause) == -1)
		fail_msg("%s", cause);
	uv_loop_init(&tloop);
	tctl.loop = &tloop;
	if (services_init(&tctl, &cause) == -1)
		fail_msg("%s", cause);
	db_exec("INSERT INTO tenants (id, kind, name, insee, created_at, "
	    "updated_at) VALUES (1, 'commune', 'Agassac', '31001', 0, 0);"
	    "INSERT INTO nodes (id, name, roles, cert_serial, cert_fpr, "
	    "enrolled_at, state_since) VALUES (7, 'mx1', 'mail', '', '', 0, 0),"
	    "(8, 'mx2', 'mail', '', '', 0, 0), (9, 'w1', 'web', '', '', 0, 0);"
	    "INSERT INTO services_backends (node_id, generation) VALUES "
	    "(8, 100), (9, 100);"
	    "INSERT INTO mail_domains (id, name, tenant_id, node_id, "
	    "dkim_selector, dkim_private_pem, dkim_public_b64, created_at) "
	    "VALUES (1, 'a.fr', 1, 7, 's', 'k', 'p', 0);"
	    "INSERT INTO mailboxes (id, address, domain_id, password_hash, "
	    "quota_bytes, created_at, updated_at) VALUES ('box1', 'x@a.fr', 1, "
	    "'h', 10, 0, 0), ('box2', 'y@a.fr', 1, 'h', 10, 0, 0);");
	return (0);
}

static int
journal_teardown(void **state)
{
	/* The module's timer stays on the loop: the process ends here. */
	store_close(tctl.db);
	return (0);
}

static void
tick_cb(uv_timer_t *t)
{
	uv_close((uv_handle_t *)t, NULL);
}

/* Run the loop a little over a second: the module's timer fires once. */
static void
run_a_tick(void)
{
	static uv_timer_t	 t;

	uv_timer_init(&tloop, &t);
	uv_timer_start(&t, tick_cb, 1100, 0);
	uv_run(&tloop, UV_RUN_DEFAULT);
}

/* Send a ServicesStatus as the agent of node would. */
static void
report_from(int64_t node, uint64_t gen, int ok, const char *error,
    const char *bad_id, const char *msg)
{
	Opsn__ServicesStatus	 m = OPSN__SERVICES_STATUS__INIT;
	Opsn__ObjectStatus	 o = OPSN__OBJECT_STATUS__INIT, *objs[1];
	uint8_t			*buf;
	size_t			 len;

	m.generation = gen;
	m.ok = ok;
	m.error = (char *)error;
	if (bad_id != NULL) {
		o.kind = "mailbox";
		o.id = (char *)bad_id;
		o.state = "error";
		o.message = (char *)msg;
		objs[0] = &o;
		m.objects = objs;
		m.n_objects = 1;
	}
	len = protobuf_c_message_get_packed_size(&m.base);
	buf = xmalloc(len + 1);
	protobuf_c_message_pack(&m.base, buf);
	services_agent_msg(node, MSG_SERVICES_STATUS, buf, len);
	free(buf);
}

/* Send a ServicesStatus as the agent of node 7 (mx1) would. */
static void
report(uint64_t gen, int ok, const char *error, const char *bad_id,
    const char *msg)
{
	report_from(7, gen, ok, error, bad_id, msg);
}

/* Change two mailboxes at a new generation, as a route would. */
static int64_t
change_both(void)
{
	int64_t	 gen;

	assert_int_equal(store_begin(tctl.db), 0);
	gen = services_bump(7);
	assert_true(gen > 0);
	db_exec("UPDATE mailboxes SET state = 'pending', generation = "
	    "(SELECT generation FROM services_backends WHERE node_id = 7)");
	assert_int_equal(services_journal(7, gen, "mailbox", "box1", "x@a.fr",
	    "create"), 0);
	assert_int_equal(services_journal(7, gen, "mailbox", "box2", "y@a.fr",
	    "create"), 0);
	assert_int_equal(store_commit(tctl.db), 0);
	return (gen);
}

static void
status_settles_the_journal_and_live_states(void **state)
{
	int64_t	 gen = change_both();
	char	*s;

	assert_int_equal(db_int("SELECT count(*) FROM services_changes WHERE "
	    "state = 'pending'"), 2);
	/* A report of a newer generation than we sent is ignored. */
	report((uint64_t)gen + 5, 1, "", NULL, NULL);
	assert_int_equal(db_int("SELECT count(*) FROM services_changes WHERE "
	    "state = 'pending'"), 2);
	/* One mailbox in error, the other not listed: taken as applied. */
	report((uint64_t)gen, 1, "", "box2", "quota rule rejected");
	assert_int_equal(db_int("SELECT count(*) FROM services_changes WHERE "
	    "state = 'applied'"), 1);
	s = db_text("SELECT message FROM services_changes WHERE state = "
	    "'failed'");
	assert_string_equal(s, "quota rule rejected");
	free(s);
	s = db_text("SELECT state || ' ' || message FROM mailboxes WHERE id = "
	    "'box2'");
	assert_string_equal(s, "error quota rule rejected");
	free(s);
	s = db_text("SELECT state FROM mailboxes WHERE id = 'box1'");
	assert_string_equal(s, "applied");
	free(s);
	assert_int_equal(db_int("SELECT applied_generation FROM "
	    "services_backends WHERE node_id = 7"), gen);

	/* A whole generation failing fails its pending changes. */
	gen = change_both();
	report((uint64_t)gen, 0, "nginx -t: syntax error", NULL, NULL);
	assert_int_equal(db_int("SELECT count(*) FROM services_changes WHERE "
	    "state = 'failed' AND message = 'nginx -t: syntax error'"), 2);
	s = db_text("SELECT last_error FROM services_backends");
	assert_string_equal(s, "nginx -t: syntax error");
	free(s);
	/* The next generation applied heals every change it carries. */
	gen = change_both();
	report((uint64_t)gen, 1, "", NULL, NULL);
	assert_int_equal(db_int("SELECT count(*) FROM services_changes WHERE "
	    "state != 'applied'"), 0);
	s = db_text("SELECT last_error FROM services_backends");
	assert_string_equal(s, "");
	free(s);
	/* Garbage is logged and dropped. */
	services_agent_msg(7, MSG_SERVICES_STATUS, (const uint8_t *)"\xff\xff",
	    2);
}

static void
status_about_another_backends_mailbox_is_refused(void **state)
{
	char	*before = db_text("SELECT state || message || "
		    "applied_generation FROM mailboxes WHERE id = 'box1'"), *s;

	/* mx2 (8) reports mx1's mailbox in error: refused, counted. */
	report_from(8, 100, 1, "", "box1", "made up by mx2");
	s = db_text("SELECT state || message || applied_generation FROM "
	    "mailboxes WHERE id = 'box1'");
	assert_string_equal(s, before);
	free(s);
	assert_int_equal(reports_rejected(8, "status_mailbox"), 1);
	assert_int_equal(db_int("SELECT count(*) FROM services_changes WHERE "
	    "message = 'made up by mx2'"), 0);
	/* A web backend has no say on mail at all. */
	report_from(9, 100, 1, "", "box1", "made up by w1");
	assert_int_equal(reports_rejected(9, "status_mailbox"), 1);
	s = db_text("SELECT state || message || applied_generation FROM "
	    "mailboxes WHERE id = 'box1'");
	assert_string_equal(s, before);
	free(s);
	/* A node with neither role is refused whole. */
	assert_int_equal(store_exec(tctl.db, "UPDATE nodes SET roles = "
	    "'hypervisor' WHERE id = 9", NULL), 0);
	report_from(9, 100, 0, "made up", NULL, NULL);
	assert_int_equal(reports_rejected(9, "status"), 1);
	assert_int_equal(db_int("SELECT count(*) FROM services_backends WHERE "
	    "last_error = 'made up'"), 0);
	free(before);
}

static void
suspending_a_member_is_a_new_generation(void **state)
{
	int64_t	 before = db_int("SELECT generation FROM services_backends");

	db_exec("UPDATE tenants SET status = 'suspended' WHERE id = 1");
	/* The module's timer runs once a second. */
	run_a_tick();
	assert_int_equal(db_int("SELECT generation FROM services_backends"),
	    before + 1);
	assert_int_equal(db_int("SELECT count(*) FROM services_changes WHERE "
	    "kind = 'tenant' AND action = 'suspend' AND state = 'pending'"), 1);
	/* Nothing changed since: no new generation. */
	run_a_tick();
	assert_int_equal(db_int("SELECT generation FROM services_backends"),
	    before + 1);
	db_exec("UPDATE tenants SET status = 'active' WHERE id = 1");
	run_a_tick();
	assert_int_equal(db_int("SELECT count(*) FROM services_changes WHERE "
	    "kind = 'tenant' AND action = 'activate'"), 1);
}

static void
mailboxes_past_retention_are_dropped(void **state)
{
	int64_t	 before = db_int("SELECT generation FROM services_backends");

	db_exec("UPDATE mailboxes SET status = 'deleted', deleted_at = 1, "
	    "purge_after = 2 WHERE id = 'box2'");
	assert_int_equal(services_mail_purge(util_now()), 1);
	assert_int_equal(db_int("SELECT count(*) FROM mailboxes"), 1);
	assert_int_equal(db_int("SELECT generation FROM services_backends"),
	    before + 1);
	assert_int_equal(db_int("SELECT count(*) FROM services_changes WHERE "
	    "action = 'purge'"), 1);
	assert_int_equal(db_int("SELECT count(*) FROM audit WHERE action = "
	    "'mail.box.purge'"), 1);
	assert_int_equal(services_mail_purge(util_now()), 0);
}

int
main(void)
{
	const struct CMUnitTest pure[] = {
		cmocka_unit_test(host_names_are_lowered_and_lose_the_final_dot),
		cmocka_unit_test(host_names_are_strict_ldh),
		cmocka_unit_test(unicode_host_names_become_punycode),
		cmocka_unit_test(addresses_are_checked_and_stored_lower_case),
		cmocka_unit_test(strong_hashes_are_accepted_weak_ones_refused),
		cmocka_unit_test(passwords_are_hashed_as_sha512_crypt),
		cmocka_unit_test(dns_records_have_mx_spf_dkim_dmarc),
	};
	const struct CMUnitTest journal[] = {
		cmocka_unit_test(status_settles_the_journal_and_live_states),
		cmocka_unit_test(
		    status_about_another_backends_mailbox_is_refused),
		cmocka_unit_test(suspending_a_member_is_a_new_generation),
		cmocka_unit_test(mailboxes_past_retention_are_dropped),
	};
	int	 rc;

	log_init("test_ctl_services", LOG_LEVEL_ERR, NULL);
	rc = cmocka_run_group_tests(pure, NULL, NULL);
	rc += cmocka_run_group_tests(journal, journal_setup, journal_teardown);
	return (rc);
}
