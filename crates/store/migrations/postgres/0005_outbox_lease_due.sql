-- A leased outbox row falls due when its lease runs out: the claim's scan of
-- outbox_due then meets only rows it may take.
UPDATE outbox SET due_at = lease_until WHERE lease_until IS NOT NULL AND lease_until > due_at;
