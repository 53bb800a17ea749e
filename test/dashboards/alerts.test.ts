/**
 * The alerts in dashboards/alerts.yaml carry what the on-call person needs (severity, summary,
 * a description with the value, a runbook section that exists), each is unit-tested in
 * alerts.test.yaml, and the dashboards' threshold lines match the alert expressions.
 * promtool itself runs through dashboards/check-rules.sh (below when promtool is installed).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { ALERT_THRESHOLDS } from '../../dashboards/alert-thresholds.js';
import { expandGrafanaVariables, prometheusQueries } from '../../dashboards/catalog.js';
import { DASHBOARDS_DIR, loadAlertTests, loadRules } from './rules.js';

const alerts = loadRules().filter((rule) => rule.alert !== undefined);

/** GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to dashes. */
function githubAnchor(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\w\- ]/g, '')
    .replace(/ /g, '-');
}

const runbookAnchors = readFileSync(`${DASHBOARDS_DIR}../README.md`, 'utf8')
  .split('\n')
  .flatMap((line) => {
    const heading = /^#{1,6} (.+)$/.exec(line);
    return heading ? [githubAnchor(heading[1]!)] : [];
  });

describe('alerts.yaml: alerts', () => {
  it('defines the alerts the runbook and dashboards expect', () => {
    expect(alerts.map((a) => a.alert)).to.include.members(Object.keys(ALERT_THRESHOLDS));
  });

  for (const rule of alerts) {
    const name = rule.alert!;
    describe(name, () => {
      it('has a severity, a for, a summary and a description with the value', () => {
        expect(['warning', 'critical']).to.include(rule.labels?.severity);
        expect(rule.for, 'for').to.match(/^\d+[smh]$/);
        expect(rule.annotations?.summary, 'summary').to.be.a('string').and.not.equal('');
        expect(rule.annotations?.description, 'description').to.match(/\$value/);
      });

      it('links its runbook section, which exists in the README', () => {
        const anchor = `runbook-${name.toLowerCase()}`;
        expect(rule.annotations?.runbook_url).to.equal(`README.md#${anchor}`);
        expect(runbookAnchors, `README.md needs a "### Runbook: ${name}" section`).to.include(anchor);
      });

      it('is unit-tested firing and quiet in alerts.test.yaml', () => {
        const tests = loadAlertTests().filter((t) => t.alertname === name);
        expect(tests.some((t) => t.exp_alerts.length > 0), 'a test where it fires').to.equal(true);
        expect(tests.some((t) => t.exp_alerts.length === 0), 'a test where it stays quiet').to.equal(true);
      });
    });
  }

  it('has no runbook section for an alert that does not exist', () => {
    const expected = alerts.map((a) => `runbook-${a.alert!.toLowerCase()}`);
    for (const anchor of runbookAnchors.filter((a) => a.startsWith('runbook-'))) expect(expected).to.include(anchor);
  });

  for (const [name, threshold] of Object.entries(ALERT_THRESHOLDS)) {
    it(`draws ${name}'s threshold (${threshold}) where the alert fires`, () => {
      const rule = alerts.find((a) => a.alert === name);
      expect(rule, name).to.not.equal(undefined);
      const thresholds = [...rule!.expr.matchAll(/ > ([\d.]+)(?:\s|$)/g)].map((m) => Number(m[1]));
      expect(thresholds, `${name}: ${rule!.expr}`).to.include(threshold);
    });
  }
});

describe('alerts.yaml: promtool (dashboards/check-rules.sh)', () => {
  it('passes promtool check rules and the unit tests', function () {
    try {
      execFileSync('promtool', ['--version'], { stdio: 'ignore' });
    } catch {
      this.skip(); // CI runs dashboards/check-rules.sh, which installs promtool.
    }
    this.timeout(60_000);
    execFileSync(`${DASHBOARDS_DIR}check-rules.sh`, { stdio: 'pipe' });
  });
});

describe('dashboards: panels beside their alerts (promtool)', () => {
  const INFINITY = 'INFINITY';
  it("draws the mean reservation hold time once the gateways restarted with no request since (+Inf, as TollgateOpenReservationsPilingUp sees it), not an empty panel", function () {
    try {
      execFileSync('promtool', ['--version'], { stdio: 'ignore' });
    } catch {
      this.skip();
    }
    this.timeout(60_000);
    const panel = prometheusQueries().find((q) => q.panel === 'Mean reservation hold time');
    expect(panel).to.not.equal(undefined);
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-panel-'));
    try {
      // As in alerts.test.yaml: the gateways' request series are gone since 60m, 1000 reservations stay open.
      const test = {
        rule_files: [],
        evaluation_interval: '1m',
        tests: [
          {
            interval: '1m',
            input_series: [
              { series: 'tollgate_requests_total{provider="openai", model="gpt-4o", outcome="completed", instance="gateway-0"}', values: '0+60x60 _x40' },
              { series: 'tollgate_open_reservations{instance="settlement-0"}', values: '1000x90' },
            ],
            promql_expr_test: [{ expr: expandGrafanaVariables(panel!.query, { interval: '5m' }), eval_time: '85m', exp_samples: [{ labels: '{}', value: INFINITY }] }],
          },
        ],
      };
      // JSON is YAML; +Inf is YAML's unquoted +.inf.
      writeFileSync(join(dir, 'panel.test.yaml'), JSON.stringify(test).replace(`"${INFINITY}"`, '+.inf'));
      execFileSync('promtool', ['test', 'rules', join(dir, 'panel.test.yaml')], { stdio: 'pipe' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
