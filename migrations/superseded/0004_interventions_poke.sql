-- What was sent through Poke for an intervention, and when.
ALTER TABLE interventions ADD COLUMN poke_message TEXT;
ALTER TABLE interventions ADD COLUMN poke_sent_at INTEGER;
