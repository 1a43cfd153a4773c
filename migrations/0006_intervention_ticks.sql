-- One row per intervention tick period, claimed before the model is asked: any number of
-- tickers (two servers on one database, the Worker's cron beside a container left with its
-- ticker on) run at most one tick per period, and send at most one nudge per cooldown.
CREATE TABLE intervention_ticks (
  period_start INTEGER PRIMARY KEY,
  claimed_at INTEGER NOT NULL,
  nudged_at INTEGER
);
CREATE INDEX idx_intervention_ticks_nudged_at ON intervention_ticks (nudged_at);
