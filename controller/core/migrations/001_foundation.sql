-- Foundation: nodes, join tokens, API tokens.

CREATE TABLE nodes (
	id		INTEGER PRIMARY KEY,
	name		TEXT NOT NULL UNIQUE,
	state		TEXT NOT NULL DEFAULT 'enrolling'
			CHECK (state IN ('enrolling', 'ready', 'cordoned',
			    'draining', 'unreachable', 'fenced', 'retired',
			    'revoked')),
	roles		TEXT NOT NULL DEFAULT '',
	address		TEXT NOT NULL DEFAULT '',
	cert_serial	TEXT NOT NULL,
	cert_fpr	TEXT NOT NULL,
	revoked		INTEGER NOT NULL DEFAULT 0,
	cpus		INTEGER NOT NULL DEFAULT 0,
	memory_bytes	INTEGER NOT NULL DEFAULT 0,
	disk_bytes	INTEGER NOT NULL DEFAULT 0,
	libvirt_version	INTEGER NOT NULL DEFAULT 0,
	qemu_version	INTEGER NOT NULL DEFAULT 0,
	agent_version	TEXT NOT NULL DEFAULT '',
	proto_version	INTEGER NOT NULL DEFAULT 0,
	hostname	TEXT NOT NULL DEFAULT '',
	enrolled_at	INTEGER NOT NULL,
	state_since	INTEGER NOT NULL,
	last_seen	INTEGER
);

CREATE TABLE join_tokens (
	id		INTEGER PRIMARY KEY,
	hash		TEXT NOT NULL UNIQUE,	-- sha256 of the secret part
	created_at	INTEGER NOT NULL,
	expires_at	INTEGER NOT NULL,
	used_at		INTEGER,
	used_by		TEXT
);

CREATE TABLE api_tokens (
	id		INTEGER PRIMARY KEY,
	name		TEXT NOT NULL UNIQUE,
	role		TEXT NOT NULL CHECK (role IN ('admin', 'operator',
			    'finance', 'auditor')),
	tenant_id	INTEGER,
	hash		TEXT NOT NULL UNIQUE,	-- sha256 of the token
	created_at	INTEGER NOT NULL,
	expires_at	INTEGER,
	revoked_at	INTEGER
);
