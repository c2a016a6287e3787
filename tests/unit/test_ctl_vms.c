/*
 * VMs: a hypervisor's observed states and console bytes are taken only
 * for the VMs placed on it; the rest is refused and counted. Frames go in
 * through the compute module's message range, as the agent listener
 * hands them over, on an in-memory database with the real migrations.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "opsn/frame.h"
#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "agents/agents.h"
#include "compute/compute.h"
#include "opsn.pb-c.h"
#include "ctl_db.h"

static struct ctl	 tctl;

static int
setup(void **state)
{
	char	*cause = NULL;

	memset(&tctl, 0, sizeof(tctl));
	ctl = &tctl;
	if (store_open(":memory:", &tctl.db, &cause) == -1 ||
	    store_exec(tctl.db, "INSERT INTO nodes (id, name, roles, "
	    "cert_serial, cert_fpr, enrolled_at, state_since) VALUES "
	    "(1, 'hv1', 'hypervisor', '', '', 0, 0), "
	    "(2, 'hv2', 'hypervisor', '', '', 0, 0), "
	    "(3, 'mx1', 'mail', '', '', 0, 0);"
	    "INSERT INTO images (id, name, format, created_at) VALUES "
	    "(1, 'tiny', 'raw', 0);"
	    "INSERT INTO vms (uuid, name, node_id, vcpus, memory_mib, "
	    "disk_bytes, image_id, obs_state, created_at) VALUES ('u-1', "
	    "'web1', 1, 1, 512, 1073741824, 1, 'running', 0);", &cause) == -1) {
		fprintf(stderr, "%s\n", cause);
		return (-1);
	}
	return (0);
}

static int
teardown(void **state)
{
	store_close(tctl.db);
	return (0);
}

/* Hand a frame to the compute module as the listener does. */
static void
deliver(int64_t node, uint16_t type, const ProtobufCMessage *m)
{
	size_t	 len = protobuf_c_message_get_packed_size(m);
	uint8_t	*buf = xmalloc(len + 1);

	protobuf_c_message_pack(m, buf);
	compute_module.m_msgs[0].mr_fn(node, type, buf, len);
	free(buf);
}

static void
observe(int64_t node, const char *uuid, const char *st, int full)
{
	Opsn__ObservedState	 m = OPSN__OBSERVED_STATE__INIT;
	Opsn__VmStatus		 v = OPSN__VM_STATUS__INIT, *pv = &v;

	v.id = (char *)uuid;
	v.state = (char *)st;
	v.reason = "";
	v.error = "";
	m.vms = &pv;
	m.n_vms = 1;
	m.full = full;
	deliver(node, MSG_OBSERVED_STATE, &m.base);
}

static void
observed_state_of_another_nodes_vm_is_refused(void **state)
{
	char	*s;

	observe(2, "u-1", "shutoff", 1);
	s = db_text("SELECT obs_state FROM vms WHERE uuid = 'u-1'");
	assert_string_equal(s, "running");
	free(s);
	assert_int_equal(reports_rejected(2, "vm_state"), 1);
	/* Nor may it say the VM is gone. */
	observe(2, "u-1", "deleted", 0);
	assert_non_null(s = db_text("SELECT uuid FROM vms"));
	free(s);
	assert_int_equal(reports_rejected(2, "vm_state"), 2);
	/* A mail backend has no say on any VM. */
	observe(3, "u-1", "paused", 0);
	assert_int_equal(reports_rejected(3, "vm_state"), 1);
	s = db_text("SELECT obs_state FROM vms WHERE uuid = 'u-1'");
	assert_string_equal(s, "running");
	free(s);
	/* Its own hypervisor is believed. */
	observe(1, "u-1", "shutoff", 0);
	s = db_text("SELECT obs_state FROM vms WHERE uuid = 'u-1'");
	assert_string_equal(s, "shutoff");
	free(s);
	assert_int_equal(reports_rejected(1, "vm_state"), 0);
}

/* A full report from node at generation gen that lists no VM. */
static void
observe_none(int64_t node, uint64_t gen)
{
	Opsn__ObservedState	 m = OPSN__OBSERVED_STATE__INIT;

	m.full = 1;
	m.generation = gen;
	deliver(node, MSG_OBSERVED_STATE, &m.base);
}

/*
 * The copies a node was told to let go: a migration's source reports on
 * its stopped copy while the VM moves, and says it is deleted once the
 * move is done; a node back after an evacuation reports the copies left
 * there. None of it is recorded, nor refused; anything else still is.
 */
static void
reports_on_copies_let_go_are_skipped_not_refused(void **state)
{
	uint64_t	 refused = reports_rejected(2, "vm_state");
	char		*s;

	/* db1 moves from hv2 to hv1; it is hv1's since 'starting'. */
	assert_int_equal(store_exec(tctl.db, "INSERT INTO vms (uuid, name, "
	    "node_id, vcpus, memory_mib, disk_bytes, image_id, obs_state, "
	    "created_at) VALUES ('u-2', 'db1', 1, 1, 512, 1073741824, 1, "
	    "'pending', 0);"
	    "INSERT INTO migrations (id, vm_id, reason, src_node, dst_node, "
	    "state, token, created_at, updated_at) SELECT 1, id, 'drain', 2, "
	    "1, 'starting', 't', 0, 0 FROM vms WHERE uuid = 'u-2'", NULL), 0);
	observe(2, "u-2", "parked", 0);
	assert_int_equal(reports_rejected(2, "vm_state"), refused);
	s = db_text("SELECT obs_state FROM vms WHERE uuid = 'u-2'");
	assert_string_equal(s, "pending");
	free(s);
	/* Done: the source's copy going is news; anything else is not. */
	assert_int_equal(store_exec(tctl.db, "UPDATE migrations SET state = "
	    "'done' WHERE id = 1", NULL), 0);
	observe(2, "u-2", "shutoff", 0);
	assert_int_equal(reports_rejected(2, "vm_state"), refused + 1);
	observe(2, "u-2", "deleted", 0);
	assert_int_equal(reports_rejected(2, "vm_state"), refused + 1);
	assert_int_equal(db_int("SELECT count(*) FROM vms WHERE uuid = "
	    "'u-2'"), 1);

	/* web1 (on hv1) was rebuilt there from hv2, evacuated at gen 5. */
	assert_int_equal(store_exec(tctl.db, "INSERT INTO vm_moved (vm_uuid, "
	    "node_id, moved_at) VALUES ('u-1', 2, 0), ('u-gone', 2, 0);"
	    "UPDATE nodes SET generation = 5 WHERE id = 2", NULL), 0);
	observe(2, "u-1", "paused", 1);
	assert_int_equal(reports_rejected(2, "vm_state"), refused + 1);
	s = db_text("SELECT obs_state FROM vms WHERE uuid = 'u-1'");
	assert_string_not_equal(s, "paused");
	free(s);
	/* A full report made before hv2 heard of the moves proves nothing. */
	observe_none(2, 4);
	assert_int_equal(db_int("SELECT count(*) FROM vm_moved"), 2);
	/* Its report of the copy deleted ends it. */
	observe(2, "u-1", "deleted", 0);
	assert_int_equal(reports_rejected(2, "vm_state"), refused + 1);
	assert_int_equal(db_int("SELECT count(*) FROM vm_moved WHERE vm_uuid "
	    "= 'u-1'"), 0);
	assert_int_equal(db_int("SELECT count(*) FROM vms WHERE uuid = "
	    "'u-1'"), 1);
	/* So does a full report at its generation that lists no copy. */
	observe_none(2, 5);
	assert_int_equal(db_int("SELECT count(*) FROM vm_moved"), 0);
}

static void
console_bytes_of_another_nodes_vm_are_refused(void **state)
{
	Opsn__ConsoleData	 m = OPSN__CONSOLE_DATA__INIT;

	m.vm_id = "u-1";
	m.data.data = (uint8_t *)"root# ";
	m.data.len = 6;
	deliver(2, MSG_CONSOLE_DATA, &m.base);
	assert_int_equal(reports_rejected(2, "console"), 1);
	deliver(3, MSG_CONSOLE_DATA, &m.base);
	assert_int_equal(reports_rejected(3, "console"), 1);
	deliver(1, MSG_CONSOLE_DATA, &m.base);
	assert_int_equal(reports_rejected(1, "console"), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(observed_state_of_another_nodes_vm_is_refused),
		cmocka_unit_test(console_bytes_of_another_nodes_vm_are_refused),
		cmocka_unit_test(
		    reports_on_copies_let_go_are_skipped_not_refused),
	};

	log_init("test_ctl_vms", LOG_LEVEL_ERR, NULL);
	return (cmocka_run_group_tests(tests, setup, teardown));
}
