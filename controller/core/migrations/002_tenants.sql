-- Members (tenants) with their quotas, plans, and the hash-chained
-- audit trail.

CREATE TABLE tenants (
	id		INTEGER PRIMARY KEY,
	kind		TEXT NOT NULL CHECK (kind IN ('commune', 'epci',
			    'syndicat', 'department', 'other')),
	name		TEXT NOT NULL,
	insee		TEXT CHECK (insee IS NULL OR length(insee) = 5),
	siren		TEXT UNIQUE CHECK (siren IS NULL OR length(siren) = 9),
	population	INTEGER NOT NULL DEFAULT 0 CHECK (population >= 0),
	parent_id	INTEGER REFERENCES tenants (id),
	status		TEXT NOT NULL DEFAULT 'active'
			CHECK (status IN ('active', 'suspended', 'withdrawn')),
	joined_on	TEXT,		-- YYYY-MM-DD
	left_on		TEXT,
	email		TEXT,
	quota_vcpus	INTEGER,	-- NULL: no limit
	quota_memory_mib INTEGER,
	quota_disk_bytes INTEGER,
	quota_vms	INTEGER,
	version		INTEGER NOT NULL DEFAULT 1,	-- the ETag
	created_at	INTEGER NOT NULL,
	updated_at	INTEGER NOT NULL
);
-- INSEE codes are unique among communes (an EPCI has none).
CREATE UNIQUE INDEX tenants_insee ON tenants (insee) WHERE kind = 'commune';
CREATE INDEX tenants_parent ON tenants (parent_id);

CREATE TABLE plans (
	id		INTEGER PRIMARY KEY,
	name		TEXT NOT NULL UNIQUE,
	vcpus		INTEGER NOT NULL CHECK (vcpus BETWEEN 1 AND 256),
	memory_mib	INTEGER NOT NULL CHECK (memory_mib BETWEEN 16 AND 4194304),
	disk_bytes	INTEGER NOT NULL CHECK (disk_bytes > 0),
	created_at	INTEGER NOT NULL
);

-- Every mutation, in the transaction that made it. hash = SHA-256 of the
-- record's fields and prev_hash, so an edited or deleted row breaks the
-- chain; audit_head keeps the last hash and count to catch a cut tail.
CREATE TABLE audit (
	id		INTEGER PRIMARY KEY,
	at		INTEGER NOT NULL,
	token		TEXT NOT NULL,
	role		TEXT NOT NULL,
	action		TEXT NOT NULL,
	object		TEXT NOT NULL,
	summary		TEXT NOT NULL,	-- JSON; never a secret
	request_id	TEXT NOT NULL,
	prev_hash	TEXT NOT NULL,
	hash		TEXT NOT NULL
);
CREATE INDEX audit_object ON audit (object);
CREATE TABLE audit_head (
	one		INTEGER PRIMARY KEY CHECK (one = 1),
	count		INTEGER NOT NULL,
	hash		TEXT NOT NULL
);
INSERT INTO audit_head VALUES (1, 0, '');
