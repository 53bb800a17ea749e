-- The credit ledger. Amounts are BIGINT micro-credits (1 credit = 1,000,000).
-- Runs unchanged on PostgreSQL and on PGlite.
--
-- reservations and entries, the two tables written per request, carry no foreign keys: a
-- row-by-row referential check cost 40% of settling a batch of 1,000 spans and about 10% of a
-- reserve (measured on PostgreSQL 15, 2 cores). Their account and reservation ids are never
-- free input: every statement in ledger/sql.ts copies them from account or reservation rows it
-- has just updated or locked, and nothing deletes accounts or reservations.

-- balance = sum of the account's entries; held = sum of its open reservations. Both are kept
-- here, updated in the same transaction as the entry or reservation that changes them, so that
-- reserve can check and hold credits with one conditional UPDATE of one row.
CREATE TABLE accounts (
  id         TEXT PRIMARY KEY,
  balance    BIGINT NOT NULL DEFAULT 0,
  held       BIGINT NOT NULL DEFAULT 0 CHECK (held >= 0),
  created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Only the SHA-256 of a key is stored (ledger/keys.ts says why that hash).
CREATE TABLE api_keys (
  key_hash   TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts (id),
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  revoked_at TIMESTAMPTZ
);

-- One row per reserve. state: open → settled (from its span)
--                               open → expired (by the sweeper, charged the full amount) → corrected (its span came late)
-- The columns after `state` record how it ended; they are what a statement shows.
CREATE TABLE reservations (
  id              TEXT PRIMARY KEY,
  account_id      TEXT NOT NULL,
  amount          BIGINT NOT NULL CHECK (amount > 0),
  provider        TEXT NOT NULL,
  model           TEXT NOT NULL,
  pricing_version TEXT NOT NULL,
  created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
  expires_at      TIMESTAMPTZ NOT NULL,
  state           TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'settled', 'expired', 'corrected')),
  -- The span's tollgate.outcome, or 'expired' while only the sweeper has settled it.
  outcome         TEXT,
  -- The span's priced cost; NULL when its usage was missing (or no span came).
  cost            BIGINT,
  -- min(cost, amount), or amount when the cost is unknown; released = amount - charged.
  charged         BIGINT,
  released        BIGINT,
  -- Cost above the amount: recorded under either over-run policy, debited only under 'charge'.
  overrun         BIGINT,
  usage           JSONB,
  span_pricing_version TEXT,
  span_end_time   TIMESTAMPTZ,
  settled_at      TIMESTAMPTZ
);
-- The sweeper's scan and the open-reservation gauge read only open rows.
CREATE INDEX reservations_open_by_expiry ON reservations (expires_at) WHERE state = 'open';

-- The append-only journal. An account's balance is the sum of its entries' amounts.
--   topup       +credits
--   charge      -charged, when a reservation is settled (or expired: -amount)
--   overrun     the excess cost is in `overrun`; amount is -overrun under the 'charge' policy, 0 under 'cap'
--   correction  +(amount - charged) when a span arrives after the sweeper charged the full amount
-- Releasing the unused part of a reservation changes `held`, not the balance, so it is no entry:
-- the reservation row records it.
CREATE TABLE entries (
  id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  account_id     TEXT NOT NULL,
  kind           TEXT NOT NULL CHECK (kind IN ('topup', 'charge', 'overrun', 'correction')),
  amount         BIGINT NOT NULL,
  overrun        BIGINT NOT NULL DEFAULT 0 CHECK (overrun >= 0),
  reservation_id TEXT,
  -- The reservation's outcome when this entry was written ('expired' for the sweeper's charge):
  -- the journal keeps the history that the reservation row overwrites.
  outcome        TEXT,
  created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX entries_by_account ON entries (account_id, id);

CREATE FUNCTION entries_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'entries is an append-only journal: % is not allowed (write a correction entry)', TG_OP;
END
$$;
CREATE TRIGGER entries_append_only
  BEFORE UPDATE OR DELETE OR TRUNCATE ON entries
  FOR EACH STATEMENT EXECUTE FUNCTION entries_are_append_only();
