-- The previous system's first migration, applied to the live D1 `foresight-biometrics`
-- under this name: never edit it. `features` holds the whole upload body but
-- `riskPrediction` as JSON, `risk` the risk object as JSON. 0005 converts the table.
CREATE TABLE IF NOT EXISTS biometric_windows (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  window_id TEXT NOT NULL,
  timestamp REAL NOT NULL,
  duration_ms REAL NOT NULL,
  features TEXT NOT NULL,
  risk TEXT,
  quality_score REAL NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL DEFAULT (datetime('now')),
  UNIQUE(window_id)
);
