/**
 * The little the ledger needs from a database driver. `SqlLedger` holds all the logic over this;
 * the PostgreSQL (pg) and the PGlite ledger differ only in the driver they wrap.
 */

export interface Session {
  /** One statement with $1… parameters; returns its rows. */
  query<Row>(sql: string, params?: unknown[]): Promise<Row[]>;
  /** Several statements, no parameters (a migration file). */
  exec(sql: string): Promise<void>;
}

export interface Driver extends Session {
  /**
   * Runs `work` in one transaction (READ COMMITTED) on one connection: commits when it resolves,
   * rolls back and rethrows when it throws.
   */
  transaction<T>(work: (tx: Session) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}
