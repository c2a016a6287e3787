-- Hosted services: mail domains, mailboxes, aliases and sites on their
-- backends (nodes with role mail or web), each backend's desired-state
-- generation, and the provisioning journal.

-- One row per backend that has ever held a service or said hello with
-- role mail or web. generation counts the changes to its desired state;
-- applied_generation is the last one its agent reported applied.
CREATE TABLE services_backends (
	node_id		INTEGER PRIMARY KEY REFERENCES nodes (id),
	generation	INTEGER NOT NULL DEFAULT 0,
	applied_generation INTEGER NOT NULL DEFAULT 0,
	public_name	TEXT NOT NULL DEFAULT '',	-- MX host; '' = hostname
	last_error	TEXT NOT NULL DEFAULT '',	-- why a generation failed
	reported_at	INTEGER,
	-- The suspended members whose services the last generation carried
	-- (ids, comma separated): a member suspended or reactivated since
	-- needs a new generation.
	suspended_tenants TEXT NOT NULL DEFAULT ''
);

CREATE TABLE mail_domains (
	id		INTEGER PRIMARY KEY,
	name		TEXT NOT NULL UNIQUE,		-- punycode, lower case
	tenant_id	INTEGER NOT NULL REFERENCES tenants (id),
	node_id		INTEGER NOT NULL REFERENCES nodes (id),
	quota_bytes	INTEGER CHECK (quota_bytes IS NULL OR quota_bytes > 0),
	dkim_selector	TEXT NOT NULL,
	dkim_private_pem TEXT NOT NULL,			-- never in an answer
	dkim_public_b64	TEXT NOT NULL,
	state		TEXT NOT NULL DEFAULT 'pending'
			CHECK (state IN ('pending', 'applied', 'error')),
	message		TEXT NOT NULL DEFAULT '',
	generation	INTEGER NOT NULL DEFAULT 0,	-- last changed in
	applied_generation INTEGER NOT NULL DEFAULT 0,
	created_at	INTEGER NOT NULL
);
CREATE INDEX mail_domains_tenant ON mail_domains (tenant_id);
CREATE INDEX mail_domains_node ON mail_domains (node_id);

CREATE TABLE mailboxes (
	id		TEXT PRIMARY KEY,		-- UUID
	address		TEXT NOT NULL UNIQUE,		-- local@domain, lower case
	domain_id	INTEGER NOT NULL REFERENCES mail_domains (id),
	name		TEXT NOT NULL DEFAULT '',
	password_hash	TEXT NOT NULL,			-- {SHA512-CRYPT}$6$...
	quota_bytes	INTEGER NOT NULL CHECK (quota_bytes > 0),
	status		TEXT NOT NULL DEFAULT 'active'
			CHECK (status IN ('active', 'suspended', 'deleted')),
	deleted_at	INTEGER,
	purge_after	INTEGER,			-- set while deleted
	version		INTEGER NOT NULL DEFAULT 1,	-- the ETag
	state		TEXT NOT NULL DEFAULT 'pending'
			CHECK (state IN ('pending', 'applied', 'error')),
	message		TEXT NOT NULL DEFAULT '',
	generation	INTEGER NOT NULL DEFAULT 0,
	applied_generation INTEGER NOT NULL DEFAULT 0,
	used_bytes	INTEGER NOT NULL DEFAULT 0,	-- from metering
	created_at	INTEGER NOT NULL,
	updated_at	INTEGER NOT NULL
);
CREATE INDEX mailboxes_domain ON mailboxes (domain_id);
CREATE INDEX mailboxes_purge ON mailboxes (purge_after)
	WHERE status = 'deleted';

CREATE TABLE aliases (
	id		TEXT PRIMARY KEY,		-- UUID
	address		TEXT NOT NULL UNIQUE,		-- local@domain or @domain
	domain_id	INTEGER NOT NULL REFERENCES mail_domains (id),
	targets		TEXT NOT NULL,			-- JSON list of addresses
	state		TEXT NOT NULL DEFAULT 'pending'
			CHECK (state IN ('pending', 'applied', 'error')),
	message		TEXT NOT NULL DEFAULT '',
	generation	INTEGER NOT NULL DEFAULT 0,
	applied_generation INTEGER NOT NULL DEFAULT 0,
	created_at	INTEGER NOT NULL
);
CREATE INDEX aliases_domain ON aliases (domain_id);

CREATE TABLE sites (
	id		TEXT PRIMARY KEY,		-- UUID
	hostname	TEXT NOT NULL UNIQUE,		-- punycode, lower case
	aliases		TEXT NOT NULL DEFAULT '[]',	-- JSON list of host names
	tenant_id	INTEGER NOT NULL REFERENCES tenants (id),
	node_id		INTEGER NOT NULL REFERENCES nodes (id),
	quota_bytes	INTEGER CHECK (quota_bytes IS NULL OR quota_bytes > 0),
	status		TEXT NOT NULL DEFAULT 'active'
			CHECK (status IN ('active', 'suspended')),
	state		TEXT NOT NULL DEFAULT 'pending'
			CHECK (state IN ('pending', 'applied', 'error')),
	message		TEXT NOT NULL DEFAULT '',
	generation	INTEGER NOT NULL DEFAULT 0,
	applied_generation INTEGER NOT NULL DEFAULT 0,
	used_bytes	INTEGER NOT NULL DEFAULT 0,	-- from metering
	created_at	INTEGER NOT NULL,
	updated_at	INTEGER NOT NULL
);
CREATE INDEX sites_tenant ON sites (tenant_id);
CREATE INDEX sites_node ON sites (node_id);

-- The provisioning journal: one row per change to an object, pending
-- until the backend reports the generation that carries it.
CREATE TABLE services_changes (
	id		INTEGER PRIMARY KEY,
	at		INTEGER NOT NULL,
	node_id		INTEGER NOT NULL REFERENCES nodes (id),
	generation	INTEGER NOT NULL,
	kind		TEXT NOT NULL CHECK (kind IN ('domain', 'mailbox',
			    'alias', 'site', 'tenant')),
	object_id	TEXT NOT NULL,		-- mailbox/alias/site id, domain name
	object		TEXT NOT NULL,		-- address, host name, domain name
	action		TEXT NOT NULL,
	state		TEXT NOT NULL DEFAULT 'pending'
			CHECK (state IN ('pending', 'applied', 'failed')),
	message		TEXT NOT NULL DEFAULT '',
	done_at		INTEGER
);
CREATE INDEX services_changes_open ON services_changes (node_id, state)
	WHERE state != 'applied';
