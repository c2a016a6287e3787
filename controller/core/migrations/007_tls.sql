-- Certificates and DKIM key rotation (docs/services.md, "Certificates").

-- How a site gets its certificate: by ACME from the backend's CA, the one
-- its member brought (only its fingerprint here: the key went to the
-- backend and nowhere else), or none.
ALTER TABLE sites ADD COLUMN tls TEXT NOT NULL DEFAULT 'acme'
	CHECK (tls IN ('acme', 'manual', 'off'));
ALTER TABLE sites ADD COLUMN cert_sha256 TEXT NOT NULL DEFAULT '';

-- What each backend's agent last reported about its certificates (a
-- site's, or a mail backend's for its host name). Never a private key.
CREATE TABLE services_certs (
	node_id		INTEGER NOT NULL REFERENCES nodes (id),
	kind		TEXT NOT NULL CHECK (kind IN ('site', 'mail')),
	object_id	TEXT NOT NULL,		-- site id, or the mail host name
	state		TEXT NOT NULL
			CHECK (state IN ('none', 'pending', 'valid', 'failed')),
	source		TEXT NOT NULL DEFAULT '',	-- acme, manual, file
	not_before	INTEGER,
	not_after	INTEGER,
	issuer		TEXT NOT NULL DEFAULT '',
	message		TEXT NOT NULL DEFAULT '',	-- the CA's words
	next_attempt	INTEGER,
	names		TEXT NOT NULL DEFAULT '[]',
	reported_at	INTEGER NOT NULL,
	PRIMARY KEY (node_id, kind, object_id)
);

-- DKIM key rotation: the next key waits until its record is published
-- (or the rotation is forced); the previous one's record stays listed
-- for a while after the switch, for mail signed with it still in flight.
ALTER TABLE mail_domains ADD COLUMN dkim_next_selector TEXT NOT NULL
	DEFAULT '';
ALTER TABLE mail_domains ADD COLUMN dkim_next_private_pem TEXT NOT NULL
	DEFAULT '';				-- never in an answer
ALTER TABLE mail_domains ADD COLUMN dkim_next_public_b64 TEXT NOT NULL
	DEFAULT '';
ALTER TABLE mail_domains ADD COLUMN dkim_prev_selector TEXT NOT NULL
	DEFAULT '';
ALTER TABLE mail_domains ADD COLUMN dkim_prev_public_b64 TEXT NOT NULL
	DEFAULT '';
ALTER TABLE mail_domains ADD COLUMN dkim_rotated_at INTEGER;
