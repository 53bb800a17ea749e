/**
 * Every PromQL expression of the dashboards (panels and variables) and of alerts.yaml parses and
 * uses only metric names and label values that exist (plugin/semconv.ts, dashboards/sources.ts,
 * recording rules), so a renamed metric breaks this test instead of silently emptying a panel or
 * muting an alert.
 */
import { expect } from 'chai';
import { expandGrafanaVariables, prometheusQueries, variableSeriesSelectors } from '../../dashboards/catalog.js';
import { analysePromQL, literalValues, type PromQLReport } from './promql-analysis.js';
import { KNOWN_LABEL_VALUES, knownMetricNames, loadRules } from './rules.js';

const known = knownMetricNames();

function expectKnownNamesAndValues(report: PromQLReport): void {
  expect(report.unnamedSelectors, 'selectors without a metric name cannot be checked').to.deep.equal([]);
  for (const metric of report.metrics) {
    expect(known.has(metric), `unknown metric ${metric} (not in plugin/semconv.ts, COLLECTOR_METRICS or a recording rule)`).to.equal(true);
  }
  for (const matcher of report.matchers) {
    const allowed = KNOWN_LABEL_VALUES[matcher.label];
    const values = literalValues(matcher);
    if (!allowed || !values) continue;
    for (const value of values) {
      expect(allowed, `${matcher.label}${matcher.op}"${matcher.value}": unknown ${matcher.label} "${value}"`).to.include(value);
    }
  }
}

describe('dashboards: PromQL', () => {
  const queries = [...prometheusQueries(), ...variableSeriesSelectors()];

  it('finds the queries of every dashboard', () => {
    expect(new Set(queries.map((q) => q.dashboard))).to.include.members(['Tollgate / Billing overview', 'Tollgate / Settlement health']);
    expect(queries.length).to.be.greaterThan(30);
  });

  for (const q of queries) {
    it(`${q.dashboard} / ${q.panel} (${q.refId}) parses and uses known names`, () => {
      expectKnownNamesAndValues(analysePromQL(expandGrafanaVariables(q.query)));
    });
  }

  it('takes every rate window from Grafana ($__rate_interval, or $__range for totals)', () => {
    for (const q of queries) {
      for (const [, window] of q.query.matchAll(/\[([^\]]*)\]/g)) {
        expect(['$__rate_interval', '$__range'], `${q.panel}: ${q.query}`).to.include(window);
      }
    }
  });
});

describe('alerts.yaml: PromQL', () => {
  const rules = loadRules();

  it('has recording rules and alerts', () => {
    expect(rules.filter((r) => r.record)).to.have.length.greaterThan(5);
    expect(rules.filter((r) => r.alert)).to.have.length.greaterThan(5);
  });

  for (const rule of rules) {
    it(`${rule.record ?? rule.alert} parses and uses known names`, () => {
      expectKnownNamesAndValues(analysePromQL(rule.expr));
    });
  }

  it('records each name once', () => {
    const names = rules.flatMap((r) => (r.record ? [r.record] : []));
    expect(names).to.have.length(new Set(names).size);
  });
});

describe('PromQL analysis (the checker itself)', () => {
  it('rejects invalid PromQL', () => {
    expect(() => analysePromQL('sum(rate(tollgate_requests_total[5m])')).to.throw(/not valid PromQL/);
    expect(() => analysePromQL('rate(tollgate_requests_total[$__rate_interval])')).to.throw(/not valid PromQL/);
  });

  it('reports metric names and matchers, and catches an unknown name or value', () => {
    const report = analysePromQL('sum by (le) (rate(tollgate_settlement_lag_seconds_bucket{result=~"settled|expird"}[5m])) / tollgate_nope');
    expect(report.metrics).to.deep.equal(['tollgate_settlement_lag_seconds_bucket', 'tollgate_nope']);
    expect(report.matchers).to.deep.equal([{ label: 'result', op: '=~', value: 'settled|expird' }]);
    expect(() => expectKnownNamesAndValues(report)).to.throw(/unknown/);
    expect(() => expectKnownNamesAndValues(analysePromQL('tollgate_request_duration_seconds'))).to.throw(/unknown metric/);
  });
});
