-- An attempt records the customer, payment method and currency it charges,
-- so a retry under its idempotency key sends exactly what the first try sent
-- (a provider refuses a key reused with other parameters), even after the
-- settings or the configuration changed.
ALTER TABLE autocharges ADD COLUMN customer TEXT;
ALTER TABLE autocharges ADD COLUMN payment_method TEXT;
ALTER TABLE autocharges ADD COLUMN currency TEXT;
