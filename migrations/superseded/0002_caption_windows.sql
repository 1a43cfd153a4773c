-- One row per caption the vision model produced for a chunk of glasses frames.
CREATE TABLE IF NOT EXISTS caption_windows (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  window_id TEXT NOT NULL,
  timestamp INTEGER NOT NULL,
  chunk_start_s REAL NOT NULL,
  chunk_end_s REAL NOT NULL,
  caption TEXT NOT NULL,
  latency_ms INTEGER,
  tokens_generated INTEGER,
  created_at INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
  UNIQUE (window_id)
);
