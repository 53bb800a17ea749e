/**
 * dashboards/alerts.yaml and alerts.test.yaml as data, and the set of metric names a dashboard or
 * rule may use, for the checks in this folder.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import * as semconv from '../../plugin/semconv.js';
import { OUTCOME_REJECTED } from '../../dashboards/promql.js';
import { BILLING_EXPORTER, COLLECTOR_METRICS, SCRAPE_JOBS } from '../../dashboards/sources.js';

export const DASHBOARDS_DIR = fileURLToPath(new URL('../../dashboards/', import.meta.url));

export interface Rule {
  record?: string;
  alert?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

interface RuleFile {
  groups: { name: string; rules: Rule[] }[];
}

export function loadRules(): Rule[] {
  const file = parse(readFileSync(`${DASHBOARDS_DIR}alerts.yaml`, 'utf8')) as RuleFile;
  return file.groups.flatMap((group) => group.rules);
}

export interface AlertTest {
  eval_time: string;
  alertname: string;
  exp_alerts: unknown[];
}

/** Every alert_rule_test entry of alerts.test.yaml. */
export function loadAlertTests(): AlertTest[] {
  const file = parse(readFileSync(`${DASHBOARDS_DIR}alerts.test.yaml`, 'utf8')) as {
    tests: { alert_rule_test?: AlertTest[] }[];
  };
  return file.tests.flatMap((test) => test.alert_rule_test ?? []);
}

/** Histograms (semconv's closing comment): only their _bucket/_sum/_count series exist. */
const HISTOGRAMS: readonly string[] = [
  semconv.METRIC_REQUEST_DURATION,
  semconv.METRIC_TIME_TO_FIRST_BYTE,
  semconv.METRIC_SETTLEMENT_LAG,
];

/** Metric names that exist: Tollgate's (semconv.ts), the Collector's, `up`, and the recording rules. */
export function knownMetricNames(): Set<string> {
  const tollgate = Object.entries(semconv)
    .filter(([name]) => name.startsWith('METRIC_'))
    .map(([, value]) => value as string)
    .flatMap((name) => (HISTOGRAMS.includes(name) ? ['_bucket', '_sum', '_count'].map((s) => name + s) : [name]));
  const recorded = loadRules().flatMap((rule) => (rule.record ? [rule.record] : []));
  return new Set([...tollgate, ...Object.values(COLLECTOR_METRICS), 'up', ...recorded]);
}

/** Label values semconv.ts (and sources.ts) define; a matcher on these labels must use them. */
export const KNOWN_LABEL_VALUES: Record<string, readonly string[]> = {
  outcome: [...semconv.OUTCOMES, OUTCOME_REJECTED],
  result: semconv.SETTLEMENT_RESULTS,
  reason: semconv.REJECTION_REASONS,
  type: semconv.TOKEN_TYPES,
  job: Object.values(SCRAPE_JOBS),
  exporter: [BILLING_EXPORTER],
};
