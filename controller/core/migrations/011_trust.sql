-- Agents held to their node: a metered resource's node and the id its
-- agent names it by, fixed with its tenant when its first sample is
-- accepted, so that a late sample of a VM, mailbox or site deleted since
-- is still taken from that node, and from no other.
ALTER TABLE meter_resources ADD COLUMN node_id INTEGER;
ALTER TABLE meter_resources ADD COLUMN ref TEXT;
CREATE INDEX meter_resources_ref ON meter_resources (kind, ref);

-- Trust in the records: checkpoints of the audit chain, each signed with
-- the controller's audit key (DATA_DIR/audit-key.pem, outside the
-- database). Whoever can write the database can recompute the chain, but
-- cannot sign a checkpoint over the recomputed one. The latest is also
-- kept in DATA_DIR/audit-anchor.json, so that deleting rows here is seen.
CREATE TABLE audit_checkpoints (
	id		INTEGER PRIMARY KEY,
	at		INTEGER NOT NULL,	-- unix seconds
	count		INTEGER NOT NULL,	-- records it signs (1..count)
	hash		TEXT NOT NULL,		-- the chain's hash at count
	sig		TEXT NOT NULL		-- base64 ECDSA P-256 SHA-256
);
CREATE INDEX audit_checkpoints_count ON audit_checkpoints (count);
