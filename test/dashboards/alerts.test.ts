/**
 * The alerts in dashboards/alerts.yaml carry what the on-call person needs (severity, summary,
 * a description with the value, a runbook section that exists), each is unit-tested in
 * alerts.test.yaml, and the dashboards' threshold lines match the alert expressions.
 * promtool itself runs through dashboards/check-rules.sh (below when promtool is installed).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import { ALERT_THRESHOLDS } from '../../dashboards/alert-thresholds.js';
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
