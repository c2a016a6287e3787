-- A VM's migrations, newest first: the VM list shows each VM's open one
-- (compute/migrate.c, migrate_vm_json). Without it, each row of a page
-- searched the open migrations by state and sorted them: 58 % of GET
-- /v1/vms at 50,000 VMs.
CREATE INDEX migrations_vm ON migrations (vm_id, id);
