-- Deltas for protocol 2 backends come from the journal: the changes of a
-- backend from one generation to another, found by generation.
-- journal_from: the journal holds every change of the generations from
-- this one on (pruning moves it up); an agent further behind gets the
-- whole state.
CREATE INDEX services_changes_generation ON services_changes (node_id,
    generation);
ALTER TABLE services_backends ADD COLUMN journal_from INTEGER NOT NULL
    DEFAULT 0;
