-- MySQL / MariaDB (this file replaces up.sql there): adding a column with a constant default is INSTANT (no
-- table copy); the index builds in place with LOCK=NONE, so the application keeps writing to users meanwhile.
ALTER TABLE users ADD COLUMN email_verified BOOLEAN DEFAULT FALSE, ALGORITHM=INSTANT;
CREATE INDEX idx_users_email_verified ON users (email_verified) ALGORITHM=INPLACE LOCK=NONE;
