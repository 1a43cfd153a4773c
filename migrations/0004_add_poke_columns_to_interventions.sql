-- The previous system's fourth migration, applied to the live D1 under this name:
-- never edit it. 0005 converts the table.
ALTER TABLE interventions ADD COLUMN poke_message TEXT;
ALTER TABLE interventions ADD COLUMN poke_sent_at TEXT;
