-- Images, VMs and the desired-state generation of each node.

CREATE TABLE images (
	id		INTEGER PRIMARY KEY,
	name		TEXT NOT NULL UNIQUE,
	format		TEXT NOT NULL CHECK (format IN ('qcow2', 'raw')),
	state		TEXT NOT NULL DEFAULT 'uploading'
			CHECK (state IN ('uploading', 'ready')),
	cmdline		TEXT NOT NULL DEFAULT '',
	created_at	INTEGER NOT NULL
);

-- One row per part (disk, kernel, initrd); the file is
-- DATA_DIR/images/<sha256> once uploaded and verified.
CREATE TABLE image_parts (
	image_id	INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
	part		TEXT NOT NULL CHECK (part IN ('disk', 'kernel', 'initrd')),
	sha256		TEXT NOT NULL,
	size		INTEGER NOT NULL CHECK (size >= 0),
	uploaded	INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (image_id, part)
);

CREATE TABLE vms (
	id		INTEGER PRIMARY KEY,
	uuid		TEXT NOT NULL UNIQUE,
	name		TEXT NOT NULL,
	node_id		INTEGER NOT NULL REFERENCES nodes (id),
	tenant_id	INTEGER REFERENCES tenants (id),	-- NULL: the platform
	plan_id		INTEGER REFERENCES plans (id),
	vcpus		INTEGER NOT NULL CHECK (vcpus BETWEEN 1 AND 256),
	memory_mib	INTEGER NOT NULL CHECK (memory_mib BETWEEN 16 AND 4194304),
	disk_bytes	INTEGER NOT NULL CHECK (disk_bytes > 0),
	image_id	INTEGER NOT NULL REFERENCES images (id),
	nics		TEXT NOT NULL DEFAULT '[]',	-- JSON [{"bridge","mac"}]
	desired		TEXT NOT NULL DEFAULT 'running'
			CHECK (desired IN ('running', 'stopped', 'deleted')),
	reboot_seq	INTEGER NOT NULL DEFAULT 0,
	generation	INTEGER NOT NULL DEFAULT 0,	-- node generation that last changed it
	obs_state	TEXT NOT NULL DEFAULT 'unknown',
	obs_reason	TEXT NOT NULL DEFAULT '',
	obs_since	INTEGER,
	obs_error	TEXT NOT NULL DEFAULT '',
	obs_generation	INTEGER NOT NULL DEFAULT 0,
	obs_pid		INTEGER NOT NULL DEFAULT 0,
	created_at	INTEGER NOT NULL
);
CREATE INDEX vms_node ON vms (node_id);
-- A VM name is unique within its tenant (the platform counts as one).
CREATE UNIQUE INDEX vms_name ON vms (coalesce(tenant_id, 0), name);

ALTER TABLE nodes ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN applied_generation INTEGER NOT NULL DEFAULT 0;
