-- One row per biometric window uploaded by the wearable.
CREATE TABLE IF NOT EXISTS biometric_windows (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  window_id TEXT NOT NULL,
  timestamp INTEGER NOT NULL,
  duration_ms INTEGER NOT NULL,
  quality_score REAL,
  risk_prediction TEXT,
  features TEXT NOT NULL DEFAULT '{}',
  created_at INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
  UNIQUE (window_id)
);
