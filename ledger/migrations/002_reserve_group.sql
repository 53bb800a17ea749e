-- 003_reserve_group_loop.sql replaces reserve_group's body: the same result, decided by a PL/pgSQL
-- loop instead of the recursive walk below, which cost most of the function's time.
--
-- The gateway's group reserve, as a function so that its plan is kept: PL/pgSQL prepares the
-- statements of a function once per connection, where a statement sent on its own is parsed and
-- planned on every call. PGlite, the embedded ledger, has no named prepared statements, and there
-- planning this statement cost about as much as running it.
--
-- A kept plan is a generic one, made without seeing the arrays: it cannot tell a group of three
-- accounts from a table scan's worth, and on a table of a thousand accounts it chose to read them
-- all (a sequential scan into a hash join) where three index lookups do. These functions only
-- ever touch the rows their arrays name, by primary key, so they run with sequential scans off.
--
-- One array element per request, in arrival order; one row back per request, in the same order.
--
-- Group commit (group-commit.ts): the reserves one gateway process has queued, for any number of
-- accounts, in one statement that takes each account's row lock once. The result is what RESERVE
-- (ledger/sql.ts) run once per request, in arrival order and with nobody in between, would give.
-- `walk` goes through each account's requests together (v_order), in arrival order, holding each
-- one whose amount fits what the ones before it left available and refusing the others (a
-- refused large request does not stop a later small one). `account` locks the rows first, in id
-- order (see the top of ledger/sql.ts), so each account's walk starts from its row as the
-- previous holder of the lock left it (READ COMMITTED returns the newest version to a locking
-- read), and the UPDATE adds the walk's totals to those same versions.
--
-- A row: expires_at when reserved, else NULL and `available`, the credits left when its turn
-- came — NULL too for an unknown (or NULL) account. now() is the transaction's start, so
-- expires_at here is the value the INSERT stored.
CREATE FUNCTION reserve_group(
  p_ids TEXT[], p_accounts TEXT[], p_amounts BIGINT[], p_ttls DOUBLE PRECISION[],
  p_providers TEXT[], p_models TEXT[], p_pricing_versions TEXT[]
) RETURNS TABLE (expires_at TIMESTAMPTZ, available BIGINT) LANGUAGE plpgsql
SET enable_seqscan = off AS $$
#variable_conflict use_column
DECLARE
  -- The requests' positions, each account's together and in arrival order: the walk's order.
  v_order BIGINT[] := ARRAY(SELECT i FROM unnest(p_accounts) WITH ORDINALITY AS t(account_id, i) ORDER BY account_id, i);
BEGIN
  RETURN QUERY
  WITH RECURSIVE request AS (
    SELECT * FROM unnest(p_ids, p_accounts, p_amounts, p_ttls, p_providers, p_models, p_pricing_versions)
      WITH ORDINALITY AS r(id, account_id, amount, ttl, provider, model, pricing_version, i)
  ), account AS (
    SELECT id, balance - held AS available FROM accounts
     WHERE id = ANY(p_accounts)
     ORDER BY id
       FOR NO KEY UPDATE
  ), walk (k, i, available, admitted) AS (
    SELECT 0::bigint, NULL::bigint, NULL::bigint, NULL::boolean
    UNION ALL
    SELECT w.k + 1, turn.i,
           CASE WHEN turn.amount <= turn.available THEN turn.available - turn.amount ELSE turn.available END,
           turn.amount <= turn.available
      FROM walk w
     CROSS JOIN LATERAL (
       SELECT v_order[w.k + 1] AS i,
              p_amounts[v_order[w.k + 1]] AS amount,
              CASE WHEN p_accounts[v_order[w.k + 1]] = p_accounts[w.i] THEN w.available
                   ELSE (SELECT available FROM account WHERE id = p_accounts[v_order[w.k + 1]]) END AS available
     ) turn
     WHERE w.k < cardinality(v_order)
  ), admitted AS (
    SELECT r.* FROM request r JOIN walk w USING (i) WHERE w.admitted
  ), held AS (
    UPDATE accounts a SET held = a.held + t.amount
      FROM (SELECT account_id, sum(amount) AS amount FROM admitted GROUP BY account_id) t
     WHERE a.id = t.account_id
  ), reservation AS (
    INSERT INTO reservations (id, account_id, amount, expires_at, provider, model, pricing_version)
    SELECT id, account_id, amount, now() + make_interval(secs => ttl), provider, model, pricing_version FROM admitted
  )
  SELECT CASE WHEN w.admitted THEN now() + make_interval(secs => r.ttl) END AS expires_at, w.available
    FROM request r JOIN walk w USING (i)
   ORDER BY r.i;
END
$$;

-- The gateway's reserve: each request names its account by the SHA-256 of the gateway key the
-- client sent, so that finding the account and holding the credits take one statement (one
-- round trip per group instead of two). account_id is NULL for an unknown or revoked key, and
-- nothing is reserved for it.
CREATE FUNCTION reserve_group_for_keys(
  p_ids TEXT[], p_key_hashes TEXT[], p_amounts BIGINT[], p_ttls DOUBLE PRECISION[],
  p_providers TEXT[], p_models TEXT[], p_pricing_versions TEXT[]
) RETURNS TABLE (account_id TEXT, expires_at TIMESTAMPTZ, available BIGINT) LANGUAGE plpgsql
SET enable_seqscan = off AS $$
#variable_conflict use_column
DECLARE
  v_accounts TEXT[] := ARRAY(
    SELECT k.account_id FROM unnest(p_key_hashes) WITH ORDINALITY AS r(key_hash, i)
      LEFT JOIN api_keys k ON k.key_hash = r.key_hash AND k.revoked_at IS NULL
     ORDER BY r.i);
BEGIN
  RETURN QUERY
  SELECT a.account_id, g.expires_at, g.available
    FROM reserve_group(p_ids, v_accounts, p_amounts, p_ttls, p_providers, p_models, p_pricing_versions)
           WITH ORDINALITY AS g(expires_at, available, n)
    JOIN unnest(v_accounts) WITH ORDINALITY AS a(account_id, n) USING (n)
   ORDER BY n;
END
$$;
