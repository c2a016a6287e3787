-- Restores from a backup (docs/operations.md). The controller's epoch is
-- 0 until its first restore, then higher at each one; agents never apply
-- a desired state of an epoch lower than one they have seen, and hold
-- the VMs a new epoch does not list instead of deleting them.
CREATE TABLE controller_epoch (
	one		INTEGER PRIMARY KEY CHECK (one = 1),
	epoch		INTEGER NOT NULL,
	since		INTEGER NOT NULL,
	restored_from	TEXT NOT NULL DEFAULT ''	-- the backup's name
);
INSERT INTO controller_epoch (one, epoch, since)
    VALUES (1, 0, CAST(strftime('%s', 'now') AS INTEGER));

-- A VM of a restored controller: what became of it since the backup is
-- learnt from its node (adopted as it is, or found missing) before the
-- controller acts on it again.
ALTER TABLE vms ADD COLUMN restored INTEGER NOT NULL DEFAULT 0;

-- VMs a node holds that the controller does not know: made after the
-- backup it was restored from. Kept until the operator deletes them.
CREATE TABLE vms_unknown (
	node_id		INTEGER NOT NULL REFERENCES nodes (id),
	uuid		TEXT NOT NULL,
	name		TEXT NOT NULL DEFAULT '',
	state		TEXT NOT NULL,
	seen_at		INTEGER NOT NULL,
	release		INTEGER NOT NULL DEFAULT 0,	-- the operator said delete
	PRIMARY KEY (node_id, uuid)
);
