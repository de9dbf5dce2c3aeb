-- MySQL / MariaDB: dropping the column drops its index with it; INSTANT, no table copy.
ALTER TABLE users DROP COLUMN email_verified, ALGORITHM=INSTANT;
