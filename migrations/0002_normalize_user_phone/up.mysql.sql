-- MySQL / MariaDB (this file replaces up.sql there): a nullable column is added INSTANT, without a table copy.
ALTER TABLE users ADD COLUMN phone_e164 VARCHAR(32), ALGORITHM=INSTANT;
