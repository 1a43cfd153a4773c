-- One row per intervention tick that asked the model whether to nudge the wearer.
CREATE TABLE IF NOT EXISTS interventions (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  decision TEXT NOT NULL CHECK (decision IN ('yes', 'no')),
  reasoning TEXT NOT NULL,
  nudge TEXT,
  biometric_ids TEXT NOT NULL DEFAULT '[]',
  caption_ids TEXT NOT NULL DEFAULT '[]',
  model TEXT NOT NULL,
  prompt_tokens INTEGER,
  completion_tokens INTEGER,
  total_tokens INTEGER,
  created_at INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
);
