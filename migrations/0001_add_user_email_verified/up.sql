-- Adding a column with a constant default is instant since PostgreSQL 11 (no table rewrite).
ALTER TABLE users ADD COLUMN IF NOT EXISTS email_verified BOOLEAN DEFAULT FALSE;
-- CONCURRENTLY: no write lock on users while the index builds (runs outside a transaction).
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_users_email_verified ON users (email_verified);
