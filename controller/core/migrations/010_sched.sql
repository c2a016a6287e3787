-- Scheduling: each hypervisor's placement settings and the operator's
-- state for it, anti-affinity groups, what a VM requires of its node,
-- cold migrations, and the copies an evacuation left on a dead node.

-- Ratios are thousandths (4000 = 4.0): no floating point is stored.
CREATE TABLE node_sched (
	node_id		INTEGER PRIMARY KEY REFERENCES nodes (id),
	admin		TEXT NOT NULL DEFAULT 'none'
			CHECK (admin IN ('none', 'cordoned', 'draining',
			    'fenced')),
	admin_since	INTEGER,
	cpu_ratio	INTEGER NOT NULL DEFAULT 4000
			CHECK (cpu_ratio BETWEEN 1 AND 100000),
	memory_ratio	INTEGER NOT NULL DEFAULT 1000
			CHECK (memory_ratio BETWEEN 1 AND 100000),
	disk_ratio	INTEGER NOT NULL DEFAULT 1000
			CHECK (disk_ratio BETWEEN 1 AND 100000),
	reserve_cpus	INTEGER NOT NULL DEFAULT 0 CHECK (reserve_cpus >= 0),
	reserve_memory_mib INTEGER NOT NULL DEFAULT 0
			CHECK (reserve_memory_mib >= 0),
	tags		TEXT NOT NULL DEFAULT '',	-- "zone=a,ssd"
	drain_report	TEXT NOT NULL DEFAULT '',	-- why the last drain stopped
	disk_server	TEXT NOT NULL DEFAULT ''	-- host:port for other agents
);

CREATE TABLE vm_groups (
	id		INTEGER PRIMARY KEY,
	name		TEXT NOT NULL UNIQUE,
	policy		TEXT NOT NULL CHECK (policy IN ('anti-affinity',
			    'soft-anti-affinity')),
	created_at	INTEGER NOT NULL
);

ALTER TABLE vms ADD COLUMN group_id INTEGER REFERENCES vm_groups (id);
ALTER TABLE vms ADD COLUMN require_tags TEXT NOT NULL DEFAULT '';
CREATE INDEX vms_group ON vms (group_id) WHERE group_id IS NOT NULL;

-- A cold migration: queued (a rebalance move not started yet), stopping
-- (on the source), copying (the target fetches the disk from the source),
-- starting (the VM is the target's; the source keeps its stopped copy
-- until the target runs it), then done, failed or cancelled.
CREATE TABLE migrations (
	id		INTEGER PRIMARY KEY,
	vm_id		INTEGER NOT NULL REFERENCES vms (id) ON DELETE CASCADE,
	reason		TEXT NOT NULL CHECK (reason IN ('drain', 'rebalance')),
	src_node	INTEGER NOT NULL REFERENCES nodes (id),
	dst_node	INTEGER NOT NULL REFERENCES nodes (id),
	state		TEXT NOT NULL CHECK (state IN ('queued', 'stopping',
			    'copying', 'starting', 'done', 'failed',
			    'cancelled')),
	token		TEXT NOT NULL,	-- the source serves the disk with it
	wait_gen	INTEGER NOT NULL DEFAULT 0,	-- generation to wait for
	bytes_total	INTEGER NOT NULL DEFAULT 0,
	error		TEXT NOT NULL DEFAULT '',
	created_at	INTEGER NOT NULL,
	updated_at	INTEGER NOT NULL,
	finished_at	INTEGER
);
CREATE UNIQUE INDEX migrations_active ON migrations (vm_id)
	WHERE state IN ('stopping', 'copying', 'starting');
CREATE INDEX migrations_open ON migrations (state)
	WHERE state IN ('queued', 'stopping', 'copying', 'starting');

-- VMs an evacuation rebuilt elsewhere: their old node is told, when it
-- comes back, that they moved; it undefines its copies and never starts
-- them. The row goes once that node reports the copy deleted.
CREATE TABLE vm_moved (
	vm_uuid		TEXT NOT NULL,
	node_id		INTEGER NOT NULL REFERENCES nodes (id),
	moved_at	INTEGER NOT NULL,
	PRIMARY KEY (vm_uuid, node_id)
);
