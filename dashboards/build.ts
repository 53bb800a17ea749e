/**
 * Writes every dashboard of catalog.ts to dashboards/generated/<file>.json.
 * Run after changing a dashboard: `npm run dashboards` (test/dashboards/ fails until you do).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DASHBOARDS, GENERATED_DIR, renderDashboard } from './catalog.js';

mkdirSync(GENERATED_DIR, { recursive: true });
for (const { file, build } of DASHBOARDS) {
  writeFileSync(join(GENERATED_DIR, file), renderDashboard(build()));
  console.log(`wrote dashboards/generated/${file}`);
}
