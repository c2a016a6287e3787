-- Late usage without reading closed months again: each generation keeps
-- the usage change sequence (meter_state.change_seq) of the snapshot it
-- read; only members whose monthly totals of a closed period changed
-- since (usage_monthly.changed) are compared with what it billed. 0 for
-- the periods generated before: their next comparison reads everything.
ALTER TABLE billing_periods ADD COLUMN usage_seq INTEGER NOT NULL DEFAULT 0;

-- The billing periods list counts and sums statements per period from
-- this index alone.
CREATE INDEX statements_period_total ON statements (period, tenant_id,
    total_cents);
