-- One batch: ids %(lo)s..%(hi)s inclusive. Safe to re-run: only rows whose value differs are written.
UPDATE users
SET email_verified = (email_confirmed_at IS NOT NULL)
WHERE id BETWEEN %(lo)s AND %(hi)s
  AND email_verified IS DISTINCT FROM (email_confirmed_at IS NOT NULL);
