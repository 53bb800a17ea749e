/**
 * Every statement the ledger runs, shared by the PostgreSQL and the PGlite ledger.
 *
 * Parameters carry explicit casts so that both servers infer the same types. Batches go in as
 * arrays (`unnest($1::text[], $2::bigint[], …)`): a settlement batch costs a constant number of
 * statements whatever its size.
 *
 * Lock order: reservations, then accounts, each set in id order. Two settlement replicas settling
 * overlapping batches therefore wait for each other instead of deadlocking. The sweeper takes its
 * reservations oldest first but skips locked ones, so it never waits on a reservation; reserve
 * locks accounts only (one, or a group's in id order).
 */

// ── Migrations ───────────────────────────────────────────────────────────────────────────────

/**
 * Serialises migrations across replicas that start at once (advisory lock, released at commit).
 * The key is an arbitrary constant of this application.
 */
export const LOCK_MIGRATIONS = `SELECT pg_advisory_xact_lock(7432021001)`;
/**
 * Migrations run as long as they take (a DDL statement on a large table can take minutes): the
 * connection's statement timeout (postgres.ts) is lifted for their transaction only.
 */
export const NO_STATEMENT_TIMEOUT = `SET LOCAL statement_timeout = 0`;
export const CREATE_MIGRATIONS_TABLE = `
  CREATE TABLE IF NOT EXISTS schema_migrations (
    version    TEXT PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
  )`;
export const APPLIED_MIGRATIONS = `SELECT version FROM schema_migrations`;
export const RECORD_MIGRATION = `INSERT INTO schema_migrations (version) VALUES ($1::text)`;

// ── Reserve ──────────────────────────────────────────────────────────────────────────────────

/**
 * $1 reservation id, $2 account, $3 amount, $4 TTL seconds, $5 provider, $6 model, $7 pricing version.
 *
 * One statement: the UPDATE holds the credits only if they are available — concurrent reserves
 * queue on the account's row lock and each re-checks the condition against the row as the previous
 * one left it — and the INSERT runs only for the row it returned. Result: one row with expires_at
 * when reserved; when not, one row with the available credits (as of the statement's start), or
 * no row for an unknown account. The account is read again only on a refusal.
 */
export const RESERVE = `
  WITH held AS (
    UPDATE accounts SET held = held + $3::bigint
     WHERE id = $2::text AND balance - held >= $3::bigint
    RETURNING id
  ), reservation AS (
    INSERT INTO reservations (id, account_id, amount, expires_at, provider, model, pricing_version)
    SELECT $1::text, held.id, $3::bigint, now() + make_interval(secs => $4::double precision), $5::text, $6::text, $7::text
      FROM held
    RETURNING expires_at
  )
  SELECT expires_at, NULL::bigint AS available FROM reservation
  UNION ALL
  SELECT NULL, balance - held FROM accounts
   WHERE id = $2::text AND NOT EXISTS (SELECT 1 FROM reservation)`;

/**
 * One array per column, one element per request, in arrival order: $1 reservation ids,
 * $2 accounts, $3 amounts, $4 TTL seconds, $5 providers, $6 models, $7 pricing versions. A
 * function (migrations/002_reserve_group.sql, and 003 which replaced its body; they say how it
 * works) so that its plan is kept.
 */
export const RESERVE_GROUP = `
  SELECT expires_at, available
    FROM reserve_group($1::text[], $2::text[], $3::bigint[], $4::double precision[], $5::text[], $6::text[], $7::text[])`;

/** RESERVE_GROUP with $2 the SHA-256 hashes of gateway keys; account_id NULL for an unknown key. */
export const RESERVE_GROUP_FOR_KEYS = `
  SELECT account_id, expires_at, available
    FROM reserve_group_for_keys($1::text[], $2::text[], $3::bigint[], $4::double precision[], $5::text[], $6::text[], $7::text[])`;

// ── Settle and expire ────────────────────────────────────────────────────────────────────────

/** $1 reservation ids. Locks them and reads their current state. */
export const LOCK_RESERVATIONS = `
  SELECT id, account_id, amount, state FROM reservations
   WHERE id = ANY($1::text[])
   ORDER BY id
     FOR NO KEY UPDATE`;

/**
 * $1 now, $2 limit. The sweeper's batch: open reservations past their TTL, oldest first. Rows a
 * settlement holds are skipped (that settlement is about to close them), so the sweeper never
 * waits on a reservation lock.
 */
export const LOCK_EXPIRED_RESERVATIONS = `
  SELECT id, account_id, amount, state FROM reservations
   WHERE state = 'open' AND expires_at <= $1::timestamptz
   ORDER BY expires_at
   LIMIT $2::integer
     FOR NO KEY UPDATE SKIP LOCKED`;

/**
 * $1 account ids. Taken before any account is updated, in id order (see the top of this file);
 * reads where each account stands.
 */
export const LOCK_ACCOUNTS = `
  SELECT id, balance, held FROM accounts
   WHERE id = ANY($1::text[])
   ORDER BY id
     FOR NO KEY UPDATE`;

/** Records how each reservation ended. One array per column, in the order of `u`. */
export const CLOSE_RESERVATIONS = `
  UPDATE reservations r
     SET state = u.state, outcome = u.outcome, cost = u.cost, charged = u.charged,
         released = u.released, overrun = u.overrun, usage = u.usage,
         span_pricing_version = u.pricing_version, span_end_time = u.span_end_time, settled_at = now()
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[],
                $7::bigint[], $8::jsonb[], $9::text[], $10::timestamptz[])
         AS u(id, state, outcome, cost, charged, released, overrun, usage, pricing_version, span_end_time)
   WHERE r.id = u.id`;

/** Appends journal entries; ids follow the arrays' order. */
export const APPEND_ENTRIES = `
  INSERT INTO entries (account_id, kind, amount, overrun, reservation_id, outcome)
  SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[])`;

/** $1 account ids (each once), $2 balance deltas, $3 held deltas. */
export const ADJUST_ACCOUNTS = `
  UPDATE accounts a
     SET balance = a.balance + d.balance, held = a.held + d.held
    FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS d(id, balance, held)
   WHERE a.id = d.id`;

export const COUNT_OPEN_RESERVATIONS = `SELECT count(*) AS open FROM reservations WHERE state = 'open'`;

// ── Accounts ─────────────────────────────────────────────────────────────────────────────────

/**
 * $1 account, $2 opening amount. `created` is false when the account already exists. An opening
 * amount of 0 writes no entry (the balance is the sum of no entries).
 */
export const CREATE_ACCOUNT = `
  WITH account AS (
    INSERT INTO accounts (id, balance) VALUES ($1::text, $2::bigint)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
  ), opening AS (
    INSERT INTO entries (account_id, kind, amount)
    SELECT id, 'topup', $2::bigint FROM account WHERE $2::bigint > 0
  )
  SELECT EXISTS (SELECT 1 FROM account) AS created`;

/**
 * $1 account, $2 amount. No row when the account does not exist, or when the balance would go
 * past 2^53 - 1 micro-credits, the most every reader takes exactly (ACCOUNT tells them apart).
 */
export const TOP_UP = `
  WITH account AS (
    UPDATE accounts SET balance = balance + $2::bigint
     WHERE id = $1::text AND balance + $2::bigint <= 9007199254740991
    RETURNING id
  )
  INSERT INTO entries (account_id, kind, amount)
  SELECT id, 'topup', $2::bigint FROM account
  RETURNING id`;

export const ACCOUNT = `SELECT balance, held FROM accounts WHERE id = $1::text`;

/** $1 account. The journal, each entry beside the reservation it belongs to. */
export const STATEMENT = `
  SELECT e.id, e.kind, e.amount, e.overrun, e.reservation_id, e.outcome, e.created_at,
         r.amount AS reserved, r.charged, r.released, r.usage
    FROM entries e
    LEFT JOIN reservations r ON r.id = e.reservation_id
   WHERE e.account_id = $1::text
   ORDER BY e.id`;

/**
 * Accounts whose denormalised balance or held differs from what the journal and the open
 * reservations say. Empty on a consistent ledger.
 */
export const AUDIT = `
  SELECT id, balance, held, entries_total, open_total FROM (
    SELECT a.id, a.balance, a.held,
           (SELECT coalesce(sum(e.amount), 0) FROM entries e WHERE e.account_id = a.id)::bigint AS entries_total,
           (SELECT coalesce(sum(r.amount), 0) FROM reservations r
             WHERE r.account_id = a.id AND r.state = 'open')::bigint AS open_total
      FROM accounts a
  ) totals
   WHERE balance <> entries_total OR held <> open_total
   ORDER BY id`;

// ── Keys ─────────────────────────────────────────────────────────────────────────────────────

/** $1 key hash. The key's account, while the key is live. */
export const AUTHENTICATE = `SELECT account_id FROM api_keys WHERE key_hash = $1::text AND revoked_at IS NULL`;

/** $1 key hash, $2 account. Tells an unknown account from a key that is already registered. */
export const ADD_KEY = `
  WITH added AS (
    INSERT INTO api_keys (key_hash, account_id)
    SELECT $1::text, id FROM accounts WHERE id = $2::text
    ON CONFLICT (key_hash) DO NOTHING
    RETURNING 1
  )
  SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $2::text) AS account_exists,
         EXISTS (SELECT 1 FROM added) AS added`;

export const REVOKE_KEY = `
  UPDATE api_keys SET revoked_at = now()
   WHERE key_hash = $1::text AND revoked_at IS NULL
  RETURNING account_id`;
