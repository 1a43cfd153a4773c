-- Converts the previous system's tables (0001-0004) in place into this project's schema,
-- keeping every row, its id and each table's id counter. A fresh database runs 0001-0004
-- first, so fresh and upgraded databases end in the same schema. wrangler runs this file
-- as one batch (all or none); the embedded store runs it in one transaction. A view over
-- these tables makes it fail (and roll back): drop such views first.
--
-- Datetimes become epoch ms (INTEGER). Every distinct old value is converted once, in
-- upgrade_times: `datetime('now')` text ('2026-01-01 00:00:00', UTC) and ISO 8601 text are
-- read as such; an epoch number (or numeric text) by its magnitude: below 1e11 seconds,
-- below 1e14 ms, below 1e17 µs, below 1e20 ns; anything else becomes 0 rather than losing
-- its row. Columns the old schema allowed to be NULL stay nullable, their NULLs kept.

CREATE TABLE upgrade_times (old PRIMARY KEY, num REAL, ms INTEGER);
INSERT OR IGNORE INTO upgrade_times (old)
  SELECT created_at FROM biometric_windows
  UNION SELECT created_at FROM caption_windows
  UNION SELECT created_at FROM interventions
  UNION SELECT poke_sent_at FROM interventions WHERE poke_sent_at IS NOT NULL;
UPDATE upgrade_times SET num = CASE
  WHEN typeof(old) IN ('integer', 'real') THEN old
  WHEN typeof(old) = 'text' AND json_valid(trim(old)) THEN
    CASE WHEN json_type(trim(old)) IN ('integer', 'real') THEN CAST(trim(old) AS REAL) END
END;
UPDATE upgrade_times SET ms = CASE
  WHEN num IS NULL THEN COALESCE(CAST(round((julianday(upper(trim(old))) - 2440587.5) * 86400000) AS INTEGER), 0)
  WHEN num <= 0 THEN 0
  WHEN num < 1e11 THEN CAST(round(num * 1000) AS INTEGER)
  WHEN num < 1e14 THEN CAST(round(num) AS INTEGER)
  WHEN num < 1e17 THEN CAST(round(num / 1e3) AS INTEGER)
  WHEN num < 1e20 THEN CAST(round(num / 1e6) AS INTEGER)
  ELSE 0
END;

CREATE TABLE biometric_windows_next (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  window_id TEXT NOT NULL,
  timestamp REAL NOT NULL,
  duration_ms REAL NOT NULL,
  quality_score REAL,
  risk_prediction TEXT,
  features TEXT NOT NULL DEFAULT '{}',
  created_at INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
  UNIQUE (window_id)
);
-- `features` held the whole body but riskPrediction: the named fields come out of it.
-- `risk` held the risk object as JSON; a JSON null becomes SQL NULL.
INSERT INTO biometric_windows_next
  (id, window_id, timestamp, duration_ms, quality_score, risk_prediction, features, created_at)
SELECT
  b.id, b.window_id, b.timestamp, b.duration_ms, b.quality_score,
  CASE WHEN b.risk IS NULL OR trim(b.risk) = 'null' THEN NULL ELSE b.risk END,
  CASE WHEN json_valid(b.features)
    THEN CASE WHEN json_type(b.features) = 'object'
      THEN json_remove(b.features, '$.windowId', '$.timestamp', '$.durationMs', '$.qualityScore', '$.riskPrediction')
      ELSE b.features END
    ELSE b.features END,
  t.ms
FROM biometric_windows AS b JOIN upgrade_times AS t ON t.old IS b.created_at;

CREATE TABLE caption_windows_next (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  window_id TEXT NOT NULL,
  timestamp REAL NOT NULL,
  chunk_start_s REAL NOT NULL,
  chunk_end_s REAL NOT NULL,
  caption TEXT NOT NULL,
  latency_ms INTEGER,
  tokens_generated INTEGER,
  created_at INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
  UNIQUE (window_id)
);
INSERT INTO caption_windows_next
  (id, window_id, timestamp, chunk_start_s, chunk_end_s, caption, latency_ms, tokens_generated, created_at)
SELECT c.id, c.window_id, c.timestamp, c.chunk_start_s, c.chunk_end_s, c.caption, c.latency_ms, c.tokens_generated, t.ms
FROM caption_windows AS c JOIN upgrade_times AS t ON t.old IS c.created_at;

-- `decision` is not checked: the previous system's rows keep whatever they hold.
-- `nudge` and `total_tokens` are new (NULL for the previous system's rows).
CREATE TABLE interventions_next (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  decision TEXT NOT NULL,
  reasoning TEXT,
  nudge TEXT,
  biometric_ids TEXT DEFAULT '[]',
  caption_ids TEXT DEFAULT '[]',
  model TEXT NOT NULL,
  prompt_tokens INTEGER,
  completion_tokens INTEGER,
  total_tokens INTEGER,
  poke_message TEXT,
  poke_sent_at INTEGER,
  created_at INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
);
INSERT INTO interventions_next
  (id, decision, reasoning, biometric_ids, caption_ids, model, prompt_tokens, completion_tokens,
   poke_message, poke_sent_at, created_at)
SELECT
  i.id, i.decision, i.reasoning, i.biometric_ids, i.caption_ids, i.model, i.prompt_tokens, i.completion_tokens,
  i.poke_message, sent.ms, created.ms
FROM interventions AS i
  JOIN upgrade_times AS created ON created.old IS i.created_at
  LEFT JOIN upgrade_times AS sent ON sent.old IS i.poke_sent_at;

-- Each id counter goes on from where the old table's stood (rows deleted at its end stay unused).
DELETE FROM sqlite_sequence WHERE name IN ('biometric_windows_next', 'caption_windows_next', 'interventions_next');
INSERT INTO sqlite_sequence (name, seq)
  SELECT name || '_next', seq FROM sqlite_sequence WHERE name IN ('biometric_windows', 'caption_windows', 'interventions');

DROP TABLE upgrade_times;
DROP TABLE biometric_windows;
ALTER TABLE biometric_windows_next RENAME TO biometric_windows;
DROP TABLE caption_windows;
ALTER TABLE caption_windows_next RENAME TO caption_windows;
DROP TABLE interventions;
ALTER TABLE interventions_next RENAME TO interventions;

-- The minute tick reads the windows created in the last period: keep that an index range scan.
CREATE INDEX idx_biometric_windows_created_at ON biometric_windows (created_at);
CREATE INDEX idx_caption_windows_created_at ON caption_windows (created_at);
CREATE INDEX idx_interventions_created_at ON interventions (created_at);
