/**
 * The list of Tollgate dashboards, how each is rendered to the committed JSON under generated/,
 * and every query of every panel, for tests that check or run them.
 */
import { fileURLToPath } from 'node:url';
import type * as dashboard from '@grafana/grafana-foundation-sdk/dashboard';
import { accounts } from './accounts.js';
import { billingOverview } from './billing-overview.js';
import { settlementHealth } from './settlement-health.js';
import { DATASOURCE_TYPES } from './sources.js';

export interface DashboardFile {
  /** File name under dashboards/generated/. */
  file: string;
  build: () => dashboard.Dashboard;
}

export const DASHBOARDS: readonly DashboardFile[] = [
  { file: 'billing-overview.json', build: billingOverview },
  { file: 'settlement-health.json', build: settlementHealth },
  { file: 'accounts.json', build: accounts },
];

export const GENERATED_DIR = fileURLToPath(new URL('./generated/', import.meta.url));

/** Stable formatting: two-space JSON in the SDK's key order, one trailing newline. */
export function renderDashboard(built: dashboard.Dashboard): string {
  return `${JSON.stringify(built, null, 2)}\n`;
}

export type QueryLanguage = 'promql' | 'sql';

export interface PanelQuery {
  dashboard: string;
  panel: string;
  refId: string;
  language: QueryLanguage;
  /** As Grafana sends it, before variable expansion: PromQL expr or PostgreSQL rawSql. */
  query: string;
}

/** The JSON fields of a target this module reads; the SDK types targets as opaque. */
interface TargetJson {
  refId?: string;
  datasource?: { type?: string };
  expr?: string;
  rawSql?: string;
}

/** Every query of every panel of every dashboard, in dashboard and panel order. */
export function panelQueries(): PanelQuery[] {
  return DASHBOARDS.flatMap(({ build }) => {
    const built = JSON.parse(renderDashboard(build())) as dashboard.Dashboard;
    return (built.panels ?? []).flatMap((panel) => {
      const targets = ('targets' in panel ? panel.targets : undefined) as TargetJson[] | undefined;
      return (targets ?? []).map((target): PanelQuery => {
        const language = target.datasource?.type === DATASOURCE_TYPES.postgres ? 'sql' : 'promql';
        const query = language === 'sql' ? target.rawSql : target.expr;
        if (query === undefined) throw new Error(`${built.title} / ${panel.title}: target ${target.refId} has no query`);
        return { dashboard: built.title ?? '', panel: panel.title ?? '', refId: target.refId ?? '', language, query };
      });
    });
  });
}

/** Every Prometheus query of every dashboard panel, with its dashboard and panel title. */
export function prometheusQueries(): PanelQuery[] {
  return panelQueries().filter((q) => q.language === 'promql');
}

/** Every PostgreSQL (ledger) query of every dashboard panel. */
export function sqlQueries(): PanelQuery[] {
  return panelQueries().filter((q) => q.language === 'sql');
}

/**
 * Prometheus queries of the dashboards' template variables (`label_values(<series>, <label>)`),
 * reduced to the series selector, which is PromQL.
 */
export function variableSeriesSelectors(): PanelQuery[] {
  return DASHBOARDS.flatMap(({ build }) => {
    const built = build();
    return (built.templating.list ?? []).flatMap((variable) => {
      const match = typeof variable.query === 'string' ? /^label_values\((.+),\s*\w+\)$/.exec(variable.query) : null;
      if (!match) return [];
      const query = match[1]!;
      return [{ dashboard: built.title ?? '', panel: `$${variable.name}`, refId: 'variable', language: 'promql' as const, query }];
    });
  });
}

export interface ExpandOptions {
  /** Value for $__rate_interval and $__interval. Default 1m. */
  interval?: string;
  /** Value for $__range. Default 1h. */
  range?: string;
}

/**
 * Expands Grafana's variables in a dashboard PromQL query so Prometheus (or a parser) takes it:
 * the interval and range macros become durations, and the dashboard's own variables — used only
 * inside regex label matchers (`provider=~"$provider"`) — become `.*`, i.e. "All".
 */
export function expandGrafanaVariables(expr: string, opts: ExpandOptions = {}): string {
  const interval = opts.interval ?? '1m';
  return expr
    .replaceAll('$__rate_interval', interval)
    .replaceAll('$__interval', interval)
    .replaceAll('$__range', opts.range ?? '1h')
    .replace(/\$\{\w+\}|\$\w+/g, '.*');
}
