-- List pages filtered by a column read only the rows they return: each
-- filter a list takes has an index that keeps the page's order (the
-- rowid follows the indexed column).
CREATE INDEX tenants_kind ON tenants (kind);
CREATE INDEX tenants_status ON tenants (status);
CREATE INDEX vms_tenant ON vms (tenant_id);
