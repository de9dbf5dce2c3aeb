-- MySQL / MariaDB: one batch, ids %(lo)s..%(hi)s inclusive; <=> is IS NOT DISTINCT FROM (NULL-safe), so only rows
-- whose value differs are written and a re-run changes nothing.
UPDATE users
SET email_verified = (email_confirmed_at IS NOT NULL)
WHERE id BETWEEN %(lo)s AND %(hi)s
  AND NOT (email_verified <=> (email_confirmed_at IS NOT NULL));
