-- The minute tick reads the windows created in the last period: keep that an index range scan.
CREATE INDEX IF NOT EXISTS idx_biometric_windows_created_at ON biometric_windows (created_at);
CREATE INDEX IF NOT EXISTS idx_caption_windows_created_at ON caption_windows (created_at);
CREATE INDEX IF NOT EXISTS idx_interventions_created_at ON interventions (created_at);
