-- An attempt records the payment method and customer it charges, so a retry
-- under its idempotency key sends exactly what the first try sent (a
-- provider refuses a key reused with other parameters), even after the
-- settings changed.
ALTER TABLE autocharges ADD COLUMN customer TEXT;
ALTER TABLE autocharges ADD COLUMN payment_method TEXT;
