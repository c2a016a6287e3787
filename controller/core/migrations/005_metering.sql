-- Metering: raw samples from the agents (deduplicated by node and
-- sequence), hourly rollups per resource and metric, and the state of the
-- rollup.

-- One row per sample an agent took. rowid grows with every insert
-- (AUTOINCREMENT: never reused, even after retention empties the table),
-- so "id > meter_state.rolled_id" is exactly what the rollup has
-- not seen yet.
CREATE TABLE samples (
	id		INTEGER PRIMARY KEY AUTOINCREMENT,
	node_id		INTEGER NOT NULL,
	seq		INTEGER NOT NULL,
	ts_ms		INTEGER NOT NULL,	-- when taken, unix ms UTC
	kind		TEXT NOT NULL,		-- vm, mailbox, site
	resource	TEXT NOT NULL,
	state		INTEGER NOT NULL,
	boot		TEXT NOT NULL DEFAULT '',
	boot_started_ms	INTEGER NOT NULL DEFAULT 0,
	vcpus		INTEGER NOT NULL DEFAULT 0,
	memory_mib	INTEGER NOT NULL DEFAULT 0,
	disk_mib	INTEGER NOT NULL DEFAULT 0,	-- allocated
	disk_used_mib	INTEGER NOT NULL DEFAULT 0,
	cpu_ns		INTEGER,		-- NULL: not valid (not running)
	net_rx		INTEGER,
	net_tx		INTEGER,
	used_bytes	INTEGER,		-- mailbox, site
	interval_ms	INTEGER NOT NULL,
	received_at	INTEGER NOT NULL,	-- unix seconds
	UNIQUE (node_id, seq)
);
CREATE INDEX samples_resource ON samples (kind, resource, ts_ms);

-- Who a resource belongs to, fixed when its first sample arrives (a VM's
-- row goes away when it is deleted; its late samples still belong to its
-- tenant). tenant_id NULL: the platform, or unknown.
CREATE TABLE meter_resources (
	kind		TEXT NOT NULL,
	resource	TEXT NOT NULL,
	tenant_id	INTEGER,
	first_seen	INTEGER NOT NULL,
	PRIMARY KEY (kind, resource)
) WITHOUT ROWID;

-- The contract with billing: quantities in base units, integers.
CREATE TABLE usage_hourly (
	tenant_id	INTEGER,		-- NULL: the platform
	hour		INTEGER NOT NULL,	-- UTC epoch seconds of its start
	kind		TEXT NOT NULL,		-- vm, mailbox, site
	resource	TEXT NOT NULL,
	metric		TEXT NOT NULL,
	quantity	INTEGER NOT NULL,
	PRIMARY KEY (hour, kind, resource, metric)
) WITHOUT ROWID;
CREATE INDEX usage_hourly_tenant ON usage_hourly (tenant_id, hour);
CREATE INDEX usage_hourly_resource ON usage_hourly (kind, resource, hour);

-- rolled_id: every sample up to this id is in usage_hourly.
-- retained_id: retention has looked at every sample up to this id.
-- frozen_ms: raw samples before it may be gone, so the hours before it
-- are never recomputed (a sample that late is kept but changes nothing).
CREATE TABLE meter_state (
	one		INTEGER PRIMARY KEY CHECK (one = 1),
	rolled_id	INTEGER NOT NULL,
	retained_id	INTEGER NOT NULL,
	frozen_ms	INTEGER NOT NULL
);
INSERT INTO meter_state VALUES (1, 0, 0, 0);
