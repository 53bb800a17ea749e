/**
 * The committed dashboards/generated/*.json are exactly what dashboards/*.ts build, and they keep
 * the properties provisioning relies on (datasource variables, unique uids and panel ids).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import type * as dashboard from '@grafana/grafana-foundation-sdk/dashboard';
import { DASHBOARDS, GENERATED_DIR, renderDashboard } from '../../dashboards/catalog.js';
import { DATASOURCE_VARIABLES } from '../../dashboards/sources.js';

const REBUILD = 'run `npm run dashboards` and commit dashboards/generated/';

describe('dashboards: generated JSON', () => {
  for (const { file, build } of DASHBOARDS) {
    it(`generated/${file} is up to date`, () => {
      let committed: string;
      try {
        committed = readFileSync(join(GENERATED_DIR, file), 'utf8');
      } catch {
        expect.fail(`dashboards/generated/${file} is missing: ${REBUILD}`);
      }
      expect(committed === renderDashboard(build()), `dashboards/generated/${file} differs from the code: ${REBUILD}`).to.equal(true);
    });
  }

  it('builds the same JSON twice (deterministic)', () => {
    for (const { build } of DASHBOARDS) expect(renderDashboard(build())).to.equal(renderDashboard(build()));
  });

  it('has no generated file the code does not build', () => {
    const files = readdirSync(GENERATED_DIR).filter((f) => f.endsWith('.json'));
    expect(files.sort()).to.deep.equal(DASHBOARDS.map((d) => d.file).sort());
  });

  const built = DASHBOARDS.map(({ build }) => build());

  it('gives every dashboard its own uid', () => {
    const uids = built.map((d) => d.uid);
    expect(new Set(uids).size).to.equal(uids.length);
  });

  it('numbers the panels of each dashboard uniquely', () => {
    for (const d of built) {
      const ids = (d.panels ?? []).map((p) => p.id);
      expect(ids.every((id) => typeof id === 'number'), d.title).to.equal(true);
      expect(new Set(ids).size, d.title).to.equal(ids.length);
    }
  });

  it('reaches datasources only through the datasource variables, never a fixed uid', () => {
    const allowed = Object.values(DATASOURCE_VARIABLES).map((name) => `\${${name}}`);
    for (const d of built) {
      const uids = datasourceUids(d);
      expect(uids.length, d.title).to.be.greaterThan(0);
      for (const uid of uids) expect(allowed, `${d.title}: datasource uid ${uid}`).to.include(uid);
      const variables = (d.templating.list ?? []).filter((v) => v.type === 'datasource').map((v) => v.name);
      for (const uid of new Set(uids)) expect(variables.map((n) => `\${${n}}`), d.title).to.include(uid);
    }
  });
});

/** Every `datasource.uid` anywhere in the dashboard (panels, targets, variables). */
function datasourceUids(d: dashboard.Dashboard): string[] {
  const uids: string[] = [];
  JSON.stringify(d, (key, value: unknown) => {
    if (key === 'datasource' && value && typeof value === 'object' && 'uid' in value) uids.push(String(value.uid));
    return value;
  });
  return uids;
}
