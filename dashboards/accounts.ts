/**
 * "Tollgate / Accounts": per-account spend and statements, read from the ledger (PostgreSQL),
 * because metrics carry no account label (DESIGN.md). The SQL runs against the schema of
 * ledger/migrations/*.sql; test/dashboards/sql.test.ts EXPLAINs every query on that schema.
 *
 * Grafana expands $__timeFilter(column) to the dashboard's time range and $__timeGroupAlias to a
 * `time` column; `${account:sqlstring}` is the account variable quoted as an SQL string literal
 * (quotes escaped), so a typed id cannot inject SQL.
 */
import type * as dashboard from '@grafana/grafana-foundation-sdk/dashboard';
import { UNITS, buildDashboard, ledgerDatasourceVariable, sqlTablePanel, sqlTimeseriesPanel, textVariable } from './panels.js';

const ACCOUNT = '${account:sqlstring}';

/** Ledger amounts are BIGINT micro-credits (ledger/types.ts); shown as exact numeric credits. */
function credits(column: string): string {
  return `(${column})::numeric / 1000000`;
}

/** Removes the indentation the SQL has in this file, so the panel's editor shows it flush. */
function sql(text: string): string {
  const lines = text.replace(/^\n/, '').trimEnd().split('\n');
  const indent = Math.min(...lines.filter((l) => l.trim()).map((l) => l.length - l.trimStart().length));
  return lines.map((l) => l.slice(indent)).join('\n');
}

/** An account's balance (sum of its journal), credits held by open reservations, and the rest. */
const BALANCE_COLUMNS = [
  `${credits('a.balance - a.held')} AS "Available"`,
  `${credits('a.balance')} AS "Balance"`,
  `${credits('a.held')} AS "Held"`,
].join(', ');

/** Journal entries that spend (charges, over-run debits) or refund (corrections); not top-ups. */
const SPENDING = `e.kind <> 'topup'`;

const allAccountsRow = {
  title: 'All accounts',
  panels: [
    sqlTablePanel({
      title: 'Top accounts by spend',
      description:
        'Net credits charged over the time range (charges + over-run debits − corrections), with the reservations the sweeper charged in full because their span never came.',
      width: 24,
      sql: sql(`
        SELECT
          e.account_id AS "Account",
          ${credits('-SUM(e.amount)')} AS "Spent",
          COUNT(*) FILTER (WHERE e.kind = 'charge') AS "Charged requests",
          COUNT(*) FILTER (WHERE e.kind = 'charge' AND e.outcome = 'expired') AS "Expired (charged in full)",
          ${credits('SUM(e.overrun)')} AS "Over-run",
          ${credits('a.balance - a.held')} AS "Available now"
        FROM entries e
        JOIN accounts a ON a.id = e.account_id
        WHERE ${SPENDING} AND $__timeFilter(e.created_at)
        GROUP BY e.account_id, a.balance, a.held
        ORDER BY -SUM(e.amount) DESC
        LIMIT 25`),
    }),
    sqlTablePanel({
      title: 'Least available credits',
      description:
        'Accounts closest to 402s: balance minus credits held by open reservations. Check here first when TollgateInsufficientCreditsSpike fires.',
      sql: sql(`
        SELECT
          a.id AS "Account",
          ${BALANCE_COLUMNS},
          (SELECT MAX(t.created_at) FROM entries t WHERE t.account_id = a.id AND t.kind = 'topup') AS "Last top-up"
        FROM accounts a
        ORDER BY a.balance - a.held ASC
        LIMIT 25`),
    }),
    sqlTablePanel({
      title: 'Open reservations past their TTL',
      description:
        'Reservations still open after expires_at: the sweeper should have expired them. Anything here means the sweeper is not running (see TollgateOpenReservationsPilingUp).',
      sql: sql(`
        SELECT
          r.account_id AS "Account",
          COUNT(*) AS "Overdue reservations",
          ${credits('SUM(r.amount)')} AS "Held",
          MIN(r.expires_at) AS "Oldest expiry"
        FROM reservations r
        WHERE r.state = 'open' AND r.expires_at < now()
        GROUP BY r.account_id
        ORDER BY COUNT(*) DESC
        LIMIT 25`),
    }),
  ],
};

const accountRow = {
  title: 'Account ${account}',
  panels: [
    sqlTablePanel({
      title: 'Balance',
      description: 'Balance (sum of the journal), credits held by open reservations, and what is available to new requests.',
      width: 24,
      height: 4,
      sql: sql(`
        SELECT
          a.id AS "Account",
          ${BALANCE_COLUMNS},
          (SELECT COUNT(*) FROM reservations r WHERE r.account_id = a.id AND r.state = 'open') AS "Open reservations",
          a.created_at AS "Created"
        FROM accounts a
        WHERE a.id = ${ACCOUNT}`),
    }),
    sqlTimeseriesPanel({
      title: 'Spend over time',
      description: 'Net credits charged per interval (charges + over-run debits − corrections).',
      unit: UNITS.credits,
      sql: sql(`
        SELECT
          $__timeGroupAlias(e.created_at, $__interval),
          ${credits('-SUM(e.amount)')} AS "Spent"
        FROM entries e
        WHERE e.account_id = ${ACCOUNT} AND ${SPENDING} AND $__timeFilter(e.created_at)
        GROUP BY 1
        ORDER BY 1`),
    }),
    sqlTablePanel({
      title: 'Spend by model',
      description: 'Net credits charged over the time range, by the provider and model of each reservation.',
      height: 8,
      sql: sql(`
        SELECT
          r.provider AS "Provider",
          r.model AS "Model",
          ${credits('-SUM(e.amount)')} AS "Spent",
          COUNT(DISTINCT e.reservation_id) AS "Requests",
          ${credits('SUM(e.overrun)')} AS "Over-run"
        FROM entries e
        JOIN reservations r ON r.id = e.reservation_id
        WHERE e.account_id = ${ACCOUNT} AND ${SPENDING} AND $__timeFilter(e.created_at)
        GROUP BY r.provider, r.model
        ORDER BY -SUM(e.amount) DESC`),
    }),
    sqlTablePanel({
      title: 'Statement',
      description:
        'The journal of the account over the time range, newest first, with the balance after each entry (summed over the whole history) and the reservation each entry settles.',
      width: 24,
      height: 14,
      sql: sql(`
        SELECT
          s.created_at AS "Time",
          s.kind AS "Entry",
          ${credits('s.amount')} AS "Amount",
          ${credits('s.balance_after')} AS "Balance after",
          s.reservation_id AS "Reservation",
          r.provider AS "Provider",
          r.model AS "Model",
          s.outcome AS "Outcome",
          ${credits('r.amount')} AS "Reserved",
          ${credits('r.cost')} AS "Cost",
          ${credits('s.overrun')} AS "Over-run",
          r.usage::text AS "Usage"
        FROM (
          SELECT e.*, SUM(e.amount) OVER (ORDER BY e.id) AS balance_after
          FROM entries e
          WHERE e.account_id = ${ACCOUNT}
        ) s
        LEFT JOIN reservations r ON r.id = s.reservation_id
        WHERE $__timeFilter(s.created_at)
        ORDER BY s.id DESC
        LIMIT 1000`),
    }),
    sqlTablePanel({
      title: 'Open reservations',
      description: 'Credits held right now by requests in flight or waiting for settlement; each ends by its span or at expires_at.',
      width: 24,
      height: 8,
      sql: sql(`
        SELECT
          r.created_at AS "Reserved at",
          r.expires_at AS "Expires at",
          r.id AS "Reservation",
          r.provider AS "Provider",
          r.model AS "Model",
          ${credits('r.amount')} AS "Amount"
        FROM reservations r
        WHERE r.account_id = ${ACCOUNT} AND r.state = 'open'
        ORDER BY r.created_at
        LIMIT 200`),
    }),
  ],
};

export function accounts(): dashboard.Dashboard {
  return buildDashboard({
    uid: 'tollgate-accounts',
    title: 'Tollgate / Accounts',
    description: 'Per-account spend, balances and statements from the ledger (PostgreSQL), not from metric labels.',
    timezone: 'utc',
    variables: [
      ledgerDatasourceVariable(),
      textVariable('account', 'Account id', 'The account whose balance, spend and statement the lower rows show.'),
    ],
    rows: [allAccountsRow, accountRow],
  });
}
