-- Converts the previous system's tables (0001-0004) in place into this project's schema,
-- keeping every row and its id. A fresh database runs 0001-0004 first, so fresh and
-- upgraded databases end in the same schema. wrangler runs this file as one batch (all or
-- none); the embedded store runs it in one transaction.
--
-- Datetimes become epoch ms (INTEGER): `datetime('now')` text ('2026-01-01 00:00:00', UTC),
-- ISO 8601 text ('…T…Z') and epoch numbers (ms; seconds below 1e11) are read; text that is
-- none of these becomes 0 rather than losing the row. Columns the old schema allowed to be
-- NULL stay nullable, and their NULLs stay NULL.

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
-- `features` held the whole body but riskPrediction: the named columns come out of it.
-- `risk` held the risk object as JSON; a JSON null becomes SQL NULL.
INSERT INTO biometric_windows_next
  (id, window_id, timestamp, duration_ms, quality_score, risk_prediction, features, created_at)
SELECT
  id, window_id, timestamp, duration_ms, quality_score,
  CASE WHEN risk IS NULL OR trim(risk) = 'null' THEN NULL ELSE risk END,
  CASE WHEN json_valid(features)
    THEN CASE WHEN json_type(features) = 'object'
      THEN json_remove(features, '$.windowId', '$.timestamp', '$.durationMs', '$.qualityScore', '$.riskPrediction')
      ELSE features END
    ELSE features END,
  CASE
    WHEN typeof(created_at) IN ('integer', 'real') THEN CAST(created_at AS INTEGER)
    WHEN created_at GLOB '[0-9]*' AND created_at NOT GLOB '*[^0-9.]*'
      THEN CAST(CASE WHEN CAST(created_at AS REAL) < 1e11 THEN CAST(created_at AS REAL) * 1000 ELSE CAST(created_at AS REAL) END AS INTEGER)
    ELSE COALESCE(CAST(round((julianday(created_at) - 2440587.5) * 86400000) AS INTEGER), 0)
  END
FROM biometric_windows;
DROP TABLE biometric_windows;
ALTER TABLE biometric_windows_next RENAME TO biometric_windows;

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
SELECT
  id, window_id, timestamp, chunk_start_s, chunk_end_s, caption, latency_ms, tokens_generated,
  CASE
    WHEN typeof(created_at) IN ('integer', 'real') THEN CAST(created_at AS INTEGER)
    WHEN created_at GLOB '[0-9]*' AND created_at NOT GLOB '*[^0-9.]*'
      THEN CAST(CASE WHEN CAST(created_at AS REAL) < 1e11 THEN CAST(created_at AS REAL) * 1000 ELSE CAST(created_at AS REAL) END AS INTEGER)
    ELSE COALESCE(CAST(round((julianday(created_at) - 2440587.5) * 86400000) AS INTEGER), 0)
  END
FROM caption_windows;
DROP TABLE caption_windows;
ALTER TABLE caption_windows_next RENAME TO caption_windows;

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
  id, decision, reasoning, biometric_ids, caption_ids, model, prompt_tokens, completion_tokens,
  poke_message,
  CASE
    WHEN poke_sent_at IS NULL THEN NULL
    WHEN typeof(poke_sent_at) IN ('integer', 'real') THEN CAST(poke_sent_at AS INTEGER)
    WHEN poke_sent_at GLOB '[0-9]*' AND poke_sent_at NOT GLOB '*[^0-9.]*'
      THEN CAST(CASE WHEN CAST(poke_sent_at AS REAL) < 1e11 THEN CAST(poke_sent_at AS REAL) * 1000 ELSE CAST(poke_sent_at AS REAL) END AS INTEGER)
    ELSE COALESCE(CAST(round((julianday(poke_sent_at) - 2440587.5) * 86400000) AS INTEGER), 0)
  END,
  CASE
    WHEN typeof(created_at) IN ('integer', 'real') THEN CAST(created_at AS INTEGER)
    WHEN created_at GLOB '[0-9]*' AND created_at NOT GLOB '*[^0-9.]*'
      THEN CAST(CASE WHEN CAST(created_at AS REAL) < 1e11 THEN CAST(created_at AS REAL) * 1000 ELSE CAST(created_at AS REAL) END AS INTEGER)
    ELSE COALESCE(CAST(round((julianday(created_at) - 2440587.5) * 86400000) AS INTEGER), 0)
  END
FROM interventions;
DROP TABLE interventions;
ALTER TABLE interventions_next RENAME TO interventions;

-- The minute tick reads the windows created in the last period: keep that an index range scan.
CREATE INDEX idx_biometric_windows_created_at ON biometric_windows (created_at);
CREATE INDEX idx_caption_windows_created_at ON caption_windows (created_at);
CREATE INDEX idx_interventions_created_at ON interventions (created_at);
