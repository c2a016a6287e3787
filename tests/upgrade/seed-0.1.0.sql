-- A database as opsn 0.1.0 left it (schema version 6): every table of
-- the first release holds rows, as an OPSN running it for a while would
-- have. tests/e2e/test_upgrade.py builds the database from the released
-- migrations (release-0.1.0.sha256), loads this, chains the audit
-- records' hashes and upgrades it with the current controller.
-- Times: October 2026 (1790000000 is 2026-09-21T14:13:20Z).

INSERT INTO nodes (id, name, state, roles, address, cert_serial, cert_fpr,
    cpus, memory_bytes, disk_bytes, libvirt_version, qemu_version,
    agent_version, proto_version, hostname, enrolled_at, state_since,
    last_seen, generation, applied_generation) VALUES
  (1, 'hv1', 'ready', 'hypervisor', '10.0.0.11', '0a1b', 'f1', 32,
   137438953472, 4000000000000, 9000000, 7002000, '0.1.0', 1, 'hv1.opsn',
   1790000000, 1790000100, 1790500000, 7, 7),
  (2, 'mail1', 'ready', 'mail', '10.0.0.21', '0a1c', 'f2', 4, 8589934592,
   500000000000, 0, 0, '0.1.0', 1, 'mail1.opsn', 1790000000, 1790000100,
   1790500000, 0, 0),
  (3, 'web1', 'unreachable', 'web', '10.0.0.31', '0a1d', 'f3', 4,
   8589934592, 500000000000, 0, 0, '0.1.0', 1, 'web1.opsn', 1790000000,
   1790400000, 1790399000, 0, 0),
  (4, 'old', 'revoked', 'hypervisor', '10.0.0.12', '0a1a', 'f0', 8, 1, 1, 0,
   0, '0.1.0', 1, 'old.opsn', 1789000000, 1789900000, 1789899000, 2, 2);
UPDATE nodes SET revoked = 1 WHERE id = 4;

INSERT INTO join_tokens (id, hash, created_at, expires_at, used_at,
    used_by) VALUES
  (1, 'a1a1a1a1', 1789999000, 1790002600, 1790000000, 'hv1'),
  (2, 'b2b2b2b2', 1790600000, 1790603600, NULL, NULL);

-- The admin token's hash is SHA-256 of 'opsn_upgrade-test-admin-token'.
INSERT INTO api_tokens (id, name, role, tenant_id, hash, created_at,
    expires_at, revoked_at) VALUES
  (1, 'admin', 'admin', NULL,
   'ADMIN_HASH', 1789000000, NULL, NULL),
  (2, 'finance-dept', 'finance', NULL, 'c3c3c3c3', 1790100000, 1822000000,
   NULL),
  (3, 'agassac-ops', 'operator', 2, 'd4d4d4d4', 1790100000, NULL,
   1790200000);

INSERT INTO tenants (id, kind, name, insee, siren, population, parent_id,
    status, joined_on, left_on, email, quota_vcpus, quota_memory_mib,
    quota_disk_bytes, quota_vms, version, created_at, updated_at) VALUES
  (1, 'epci', 'Communauté de communes Cœur de Garonne', NULL, '200068955',
   48000, NULL, 'active', '2024-01-01', NULL, 'dsi@cc-coeurdegaronne.fr',
   64, 262144, 10995116277760, 40, 3, 1789000000, 1790000000),
  (2, 'commune', 'Agassac', '31001', '213100019', 112, 1, 'active',
   '2024-01-01', NULL, 'mairie@agassac.fr', 4, 8192, 107374182400, 2, 1,
   1789000000, 1789000000),
  (3, 'commune', 'Aignes', '31002', '213100027', 274, 1, 'suspended',
   '2025-03-15', NULL, NULL, NULL, NULL, NULL, NULL, 2, 1789000000,
   1790300000),
  (4, 'commune', 'L''Isle-en-Dodon', '31239', '213102395', 1936, 1,
   'withdrawn', '2024-01-01', '2026-06-30', NULL, NULL, NULL, NULL, NULL,
   4, 1789000000, 1790000000);

INSERT INTO plans (id, name, vcpus, memory_mib, disk_bytes, created_at) VALUES
  (1, 's1', 1, 1024, 10737418240, 1789000000),
  (2, 'm2', 2, 4096, 53687091200, 1789000000);

INSERT INTO audit (id, at, token, role, action, object, summary, request_id,
    prev_hash, hash) VALUES
  (1, 1789000000, 'admin', 'admin', 'tenant.create', 'tenant/1',
   '{"name":"Communauté de communes Cœur de Garonne"}', 'r1', '', ''),
  (2, 1789000001, 'admin', 'admin', 'tenant.create', 'tenant/2',
   '{"insee":"31001"}', 'r2', '', ''),
  (3, 1790000000, 'controller', 'system', 'node.enrol', 'node/hv1',
   '{"from":"10.0.0.11"}', '', '', ''),
  (4, 1790300000, 'admin', 'admin', 'tenant.suspend', 'tenant/3', '{}',
   'r4', '', '');
UPDATE audit_head SET count = 4;

INSERT INTO images (id, name, format, state, cmdline, created_at) VALUES
  (1, 'debian-12', 'qcow2', 'ready', '', 1789500000),
  (2, 'tiny', 'raw', 'ready', 'console=ttyS0', 1789500000);
INSERT INTO image_parts (image_id, part, sha256, size, uploaded) VALUES
  (1, 'disk', '1111111111111111111111111111111111111111111111111111111111111111',
   2147483648, 1),
  (2, 'disk', '2222222222222222222222222222222222222222222222222222222222222222',
   67108864, 1),
  (2, 'kernel', '3333333333333333333333333333333333333333333333333333333333333333',
   8388608, 1),
  (2, 'initrd', '4444444444444444444444444444444444444444444444444444444444444444',
   4194304, 0);

INSERT INTO vms (id, uuid, name, node_id, tenant_id, plan_id, vcpus,
    memory_mib, disk_bytes, image_id, nics, desired, reboot_seq,
    generation, obs_state, obs_reason, obs_since, obs_error,
    obs_generation, obs_pid, created_at) VALUES
  (1, '6a2f41a1-0000-4000-8000-000000000001', 'urbanisme', 1, 2, 1, 1, 1024,
   10737418240, 1, '[{"bridge":"br0","mac":"52:54:00:00:00:01"}]',
   'running', 1, 5, 'running', 'booted', 1790000500, '', 5, 4242,
   1790000400),
  (2, '6a2f41a1-0000-4000-8000-000000000002', 'dns', 1, NULL, 2, 2, 4096,
   53687091200, 1, '[]', 'stopped', 0, 7, 'shutoff', 'shutdown', 1790400000,
   '', 7, 0, 1790000400);

INSERT INTO services_backends (node_id, generation, applied_generation,
    public_name, last_error, reported_at, suspended_tenants) VALUES
  (2, 12, 11, 'mx1.opsn.example', '', 1790500000, '3'),
  (3, 4, 4, '', 'nginx -t failed', 1790390000, '');

INSERT INTO mail_domains (id, name, tenant_id, node_id, quota_bytes,
    dkim_selector, dkim_private_pem, dkim_public_b64, state, message,
    generation, applied_generation, created_at) VALUES
  (1, 'agassac.fr', 2, 2, 10737418240, 'opsn2026',
   '-----BEGIN PRIVATE KEY-----\nMIIseed\n-----END PRIVATE KEY-----\n',
   'MIIBIjANseed', 'applied', '', 10, 10, 1790100000),
  (2, 'aignes.fr', 3, 2, NULL, 'opsn2026', 'k', 'p', 'pending', '', 12, 11,
   1790100000);

INSERT INTO mailboxes (id, address, domain_id, name, password_hash,
    quota_bytes, status, deleted_at, purge_after, version, state, message,
    generation, applied_generation, used_bytes, created_at, updated_at)
    VALUES
  ('mb-1', 'mairie@agassac.fr', 1, 'Mairie d''Agassac',
   '{SHA512-CRYPT}$6$seed$hash', 2147483648, 'active', NULL, NULL, 2,
   'applied', '', 10, 10, 104857600, 1790100000, 1790200000),
  ('mb-2', 'ancien@agassac.fr', 1, '', '{SHA512-CRYPT}$6$seed$old',
   1073741824, 'deleted', 1790300000, 1792892000, 3, 'applied', '', 11, 11,
   0, 1790100000, 1790300000),
  ('mb-3', 'secretariat@aignes.fr', 2, 'Secrétariat',
   '{CRYPT}$y$seed', 1073741824, 'suspended', NULL, NULL, 1, 'error',
   'quota exceeds the domain', 12, 11, 5, 1790100000, 1790100000);

INSERT INTO aliases (id, address, domain_id, targets, state, message,
    generation, applied_generation, created_at) VALUES
  ('al-1', 'contact@agassac.fr', 1, '["mairie@agassac.fr"]', 'applied', '',
   10, 10, 1790100000),
  ('al-2', '@aignes.fr', 2, '["secretariat@aignes.fr"]', 'pending', '', 12,
   11, 1790100000);

INSERT INTO sites (id, hostname, aliases, tenant_id, node_id, quota_bytes,
    status, state, message, generation, applied_generation, used_bytes,
    created_at, updated_at) VALUES
  ('site-1', 'www.agassac.fr', '["agassac.fr"]', 2, 3, 1073741824,
   'active', 'applied', '', 3, 3, 52428800, 1790100000, 1790100000),
  ('site-2', 'www.aignes.fr', '[]', 3, 3, NULL, 'suspended', 'error',
   'nginx -t failed', 4, 3, 0, 1790100000, 1790300000);

INSERT INTO services_changes (id, at, node_id, generation, kind, object_id,
    object, action, state, message, done_at) VALUES
  (1, 1790100000, 2, 10, 'domain', 'agassac.fr', 'agassac.fr', 'create',
   'applied', '', 1790100001),
  (2, 1790100000, 2, 11, 'mailbox', 'mb-1', 'mairie@agassac.fr', 'create',
   'applied', '', 1790100002),
  (3, 1790300000, 2, 12, 'tenant', '3', 'Aignes', 'suspend', 'pending', '',
   NULL),
  (4, 1790300000, 3, 4, 'site', 'site-2', 'www.aignes.fr', 'suspend',
   'failed', 'nginx -t failed', 1790300005);

INSERT INTO samples (id, node_id, seq, ts_ms, kind, resource, state, boot,
    boot_started_ms, vcpus, memory_mib, disk_mib, disk_used_mib, cpu_ns,
    net_rx, net_tx, used_bytes, interval_ms, received_at) VALUES
  (1, 1, 1790000000000001, 1791410400000, 'vm',
   '6a2f41a1-0000-4000-8000-000000000001', 1, 'pid:4242:99', 1790000500000,
   1, 1024, 10240, 2048, 1000000000, 5000, 7000, NULL, 60000, 1791410401),
  (2, 1, 1790000000000002, 1791410460000, 'vm',
   '6a2f41a1-0000-4000-8000-000000000001', 1, 'pid:4242:99', 1790000500000,
   1, 1024, 10240, 2049, 61000000000, 9000, 12000, NULL, 60000,
   1791410461),
  (3, 2, 1790000000000001, 1791410400000, 'mailbox', 'mairie@agassac.fr', 1,
   '', 0, 0, 0, 0, 0, NULL, NULL, NULL, 104857600, 60000, 1791410401);
UPDATE sqlite_sequence SET seq = 3 WHERE name = 'samples';

INSERT INTO meter_resources (kind, resource, tenant_id, first_seen) VALUES
  ('vm', '6a2f41a1-0000-4000-8000-000000000001', 2, 1790000600),
  ('vm', '6a2f41a1-0000-4000-8000-000000000002', NULL, 1790000600),
  ('mailbox', 'mairie@agassac.fr', 2, 1790100100);

-- October 2026 (Europe/Paris): 1790805600 is 2026-10-01T00:00:00+02:00.
INSERT INTO usage_hourly (tenant_id, hour, kind, resource, metric,
    quantity) VALUES
  (2, 1790805600, 'vm', '6a2f41a1-0000-4000-8000-000000000001',
   'vcpu_seconds', 3600),
  (2, 1790805600, 'vm', '6a2f41a1-0000-4000-8000-000000000001',
   'memory_mib_seconds', 3686400),
  (2, 1790809200, 'vm', '6a2f41a1-0000-4000-8000-000000000001',
   'vcpu_seconds', 3600),
  (2, 1790805600, 'mailbox', 'mairie@agassac.fr', 'mailbox_seconds', 3600),
  (NULL, 1790805600, 'vm', '6a2f41a1-0000-4000-8000-000000000002',
   'disk_mib_seconds', 184320000);

UPDATE meter_state SET rolled_id = 3, retained_id = 0, frozen_ms = 0;

INSERT INTO tariffs (id, name, version, deliberation_number,
    deliberation_date, effective_from, effective_to, currency, doc,
    created_at) VALUES
  (1, 'standard', 1, '2026-031', '2026-09-24', '2026-10-01', NULL, 'EUR',
   '{"name":"standard","default":true,"deliberation":{"number":"2026-031","date":"2026-09-24"},"effective_from":"2026-10-16","effective_to":null,"currency":"EUR","monthly_fee":{"S":"6.00","M":"18.00","L":"45.00"},"contribution_per_inhabitant":"0.73","bands":[{"name":"S","max":999},{"name":"M","max":9999},{"name":"L"}],"rates":{"vm.vcpu_hours":"0.0180","vm.memory_gib_hours":{"S":"0.0045","M":"0.0055","L":"0.0065"},"vm.disk_gib_hours":"0.00012","vm.net_tx_gib":"0.01","mailbox.mailbox_days":"0.0120","mailbox.storage_gib_hours":"0.00005","site.site_days":"0.0333"},"allowances":{"mailbox.mailbox_days":"100","vm.net_tx_gib":"10"}}', 1790000000);
INSERT INTO billing_default (one, name) VALUES (1, 'standard');
INSERT INTO tenant_tariffs (tenant_id, tariff, bound_at) VALUES
  (2, 'standard', 1790000000);

INSERT INTO billing_periods (period, first_day, end_day, tz, start_utc,
    end_utc, status, revision, generated_at, closed_at, close_seq,
    checksum) VALUES
  ('2026-09', 20697, 20727, 'Europe/Paris', 1788213600, 1790805600,
   'draft', 1, 1790805700, NULL, NULL, NULL);

INSERT INTO statements (id, tenant_id, period, status, revision, first_day,
    end_day, tz, member_kind, member_name, insee, siren, population,
    total_cents, checksum, generated_at, closed_at) VALUES
  (1, 2, '2026-09', 'draft', 1, 20697, 20727, 'Europe/Paris', 'commune',
   'Agassac', '31001', '213100019', 112, 1082, 'sha256:seed', 1790805700,
   NULL);
INSERT INTO statement_segments (statement_id, seq, tariff_id, band,
    day_from, day_end, start_utc, end_utc, member_days, member_mf) VALUES
  (1, 1, 1, 'S', 20697, 20727, 1788213600, 1790805600, 30, 377580);
INSERT INTO statement_lines (statement_id, seq, type, class, metric, label,
    unit, used_base, allowance_base, quantity_base, divisor,
    unit_price_micro, amount_cents, basis_cents, tariff_id, band, day_from,
    day_end, start_utc, end_utc, corrects_period, corrects_statement,
    adjustment_id, reason) VALUES
  (1, 1, 'fee', NULL, 'monthly_fee', 'Abonnement mensuel', 'mois', NULL,
   NULL, 377580, 377580, 6000000, 600, NULL, 1, 'S', 20697, 20727,
   1788213600, 1790805600, NULL, NULL, NULL, NULL),
  (1, 2, 'contribution', NULL, 'contribution', 'Contribution par habitant',
   'habitant', NULL, NULL, 112, 1, 730000, 82, NULL, 1, 'S', 20697, 20727,
   1788213600, 1790805600, NULL, NULL, NULL, NULL),
  (1, 3, 'adjustment', NULL, 'adjustment', 'Régularisation', 'EUR', NULL,
   NULL, 1, 1, 4000000, 400, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   '2026-08', NULL, 1, 'erreur de quota');
INSERT INTO adjustments (id, tenant_id, amount_cents, reason,
    corrects_period, statement_id, created_at, created_by) VALUES
  (1, 2, 400, 'erreur de quota', '2026-08', 1, 1790500000, 'admin'),
  (2, 3, -150, 'geste commercial', NULL, NULL, 1790600000, 'admin');
