/**
 * `npm run bench`: every benchmark in turn, each printing its figures and ratios against a
 * baseline measured in the same run. Benchmarks print; they do not pass or fail.
 *   npm run bench                 all of them
 *   npm run bench -- proxy settle only those
 */
import { spawnSync } from 'node:child_process';

const BENCHMARKS = ['extraction', 'proxy', 'reserve', 'hot-account', 'settle', 'collector-path'];

const chosen = process.argv.slice(2);
for (const name of chosen.length > 0 ? chosen : BENCHMARKS) {
  if (!BENCHMARKS.includes(name)) {
    console.error(`unknown benchmark ${JSON.stringify(name)}; known: ${BENCHMARKS.join(', ')}`);
    process.exitCode = 2;
    continue;
  }
  console.log(`\n=== ${name} ===`);
  spawnSync(process.execPath, ['--import', 'tsx', new URL(`./${name}.ts`, import.meta.url).pathname], { stdio: 'inherit' });
}
