-- Agents held to their node: a metered resource's node and the id its
-- agent names it by, fixed with its tenant when its first sample is
-- accepted, so that a late sample of a VM, mailbox or site deleted since
-- is still taken from that node, and from no other.
ALTER TABLE meter_resources ADD COLUMN node_id INTEGER;
ALTER TABLE meter_resources ADD COLUMN ref TEXT;
CREATE INDEX meter_resources_ref ON meter_resources (kind, ref);
