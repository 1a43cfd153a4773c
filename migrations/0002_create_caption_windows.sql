-- The previous system's second migration, applied to the live D1 under this name:
-- never edit it. 0005 converts the table.
CREATE TABLE IF NOT EXISTS caption_windows (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  window_id TEXT NOT NULL,
  timestamp REAL NOT NULL,
  chunk_start_s REAL NOT NULL,
  chunk_end_s REAL NOT NULL,
  caption TEXT NOT NULL,
  latency_ms INTEGER,
  tokens_generated INTEGER,
  created_at TEXT NOT NULL DEFAULT (datetime('now')),
  UNIQUE(window_id)
);
