/**
 * Renders Tollgate's Grafana dashboards as PNG pictures from a real Prometheus, without Grafana:
 * every panel's queries (catalog.ts) run through the Prometheus HTTP API over a time window, and
 * the panels are drawn in the dashboard's own layout (rows, gridPos widths, units, legends,
 * alert-threshold lines) with Vega-Lite, then rasterised with resvg.
 *
 *   npm run dashboards:render
 *     runs the end-to-end test (test/e2e/prometheus-dashboards.test.ts: a gateway, settlement and a
 *     real Prometheus under generated traffic) and writes dashboards/screenshots/*.png from it.
 *   npx tsx dashboards/render.ts --prometheus http://HOST:9090 [--since 1h] [--out DIR]
 *     renders from any Prometheus that scrapes Tollgate.
 *
 * Stat panels show their instant value at the end of the window ($__range = the window); time
 * series panels a range query over it. Dashboard variables are "All" (expandGrafanaVariables).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Resvg } from '@resvg/resvg-js';
import type * as dashboard from '@grafana/grafana-foundation-sdk/dashboard';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { DASHBOARDS, expandGrafanaVariables, renderDashboard, type DashboardFile } from './catalog.js';
import { prometheusClient, type PrometheusClient, type Series } from './prometheus-client.js';

/** The dashboards pictured for the README: file under generated/ → PNG name. */
export const SCREENSHOTS: Readonly<Record<string, string>> = {
  'billing-overview.json': 'billing-overview.png',
  'settlement-health.json': 'settlement-health.png',
};

export const SCREENSHOTS_DIR = fileURLToPath(new URL('./screenshots/', import.meta.url));

export interface RenderOptions {
  prometheus: PrometheusClient;
  start: Date;
  end: Date;
  /** Seconds between points of the range queries. Default: the window / 240, at least 1. */
  stepSeconds?: number;
  /** Value of $__rate_interval / $__interval. Default: 4 steps, at least 1m (as Grafana's floor). */
  rateInterval?: string;
  /** Picture width in pixels. Default 1800. */
  width?: number;
}

/** The panel JSON fields the renderer reads; the SDK types panels loosely. */
interface PanelJson {
  type: string;
  title?: string;
  gridPos?: { x: number; y: number; w: number; h: number };
  fieldConfig?: {
    defaults?: {
      unit?: string;
      custom?: { thresholdsStyle?: { mode?: string } };
      thresholds?: { steps?: Array<{ value: number | null; color: string }> };
    };
  };
  targets?: Array<{ expr?: string; refId?: string; legendFormat?: string; instant?: boolean }>;
}

interface Point {
  t: number;
  v: number;
  series: string;
}

const seconds = (ms: number) => Math.max(1, Math.round(ms / 1000));

/** Grafana's legendFormat: `{{label}}` replaced by the series' label; `__auto`/none: the labels. */
export function legendName(format: string | undefined, metric: Record<string, string>, refId: string): string {
  if (format && format !== '__auto') return format.replace(/\{\{\s*(\w+)\s*\}\}/g, (_, label: string) => metric[label] ?? '');
  const labels = Object.entries(metric).filter(([name]) => name !== '__name__');
  return labels.length ? labels.map(([name, value]) => `${name}="${value}"`).join(', ') : refId;
}

/** The axis title and d3 number format of a Grafana unit. */
function unitStyle(unit: string | undefined): { title: string; format: string } {
  if (unit === 'percentunit') return { title: '', format: '.1~%' };
  if (unit === 'ops') return { title: 'per second', format: '.3~s' };
  if (unit === 's') return { title: 'seconds', format: '.3~s' };
  if (unit?.startsWith('suffix:')) return { title: unit.slice('suffix:'.length).trim(), format: '.3~s' };
  return { title: '', format: '.3~s' };
}

/** A stat value as Grafana would print it, roughly. */
function formatStat(value: number | undefined, unit: string | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return 'No data';
  if (unit === 'percentunit') return `${(value * 100).toFixed(1)}%`;
  const number = Math.abs(value) >= 100 || Number.isInteger(value) ? value.toFixed(0) : value.toPrecision(3);
  if (unit === 's') return `${number} s`;
  if (unit?.startsWith('suffix:')) return `${number} ${unit.slice('suffix:'.length).trim()}`;
  return number;
}

const finite = (text: string) => Number.isFinite(Number(text));

async function statSpec(panel: PanelJson, width: number, options: Required<Omit<RenderOptions, 'width'>>) {
  const range = `${seconds(options.end.getTime() - options.start.getTime())}s`;
  const unit = panel.fieldConfig?.defaults?.unit;
  // lastNotNull of the first series of the first query, as the stat panels here are configured.
  const [target] = panel.targets ?? [];
  const series = target?.expr
    ? await options.prometheus.query(expandGrafanaVariables(target.expr, { interval: options.rateInterval, range }), options.end)
    : [];
  const value = series.map((s) => s.value?.[1]).find((v) => v !== undefined && finite(v));
  return {
    title: { text: panel.title ?? '', anchor: 'start' as const, fontSize: 13 },
    width,
    height: 44,
    data: { values: [{ text: formatStat(value === undefined ? undefined : Number(value), unit) }] },
    mark: { type: 'text' as const, fontSize: 26, fontWeight: 'bold' as const, align: 'left' as const, x: 4, y: 24 },
    encoding: { text: { field: 'text', type: 'nominal' as const } },
    view: { stroke: null },
  };
}

async function timeseriesSpec(panel: PanelJson, width: number, options: Required<Omit<RenderOptions, 'width'>>) {
  const range = `${seconds(options.end.getTime() - options.start.getTime())}s`;
  const unit = panel.fieldConfig?.defaults?.unit;
  const points: Point[] = [];
  for (const target of panel.targets ?? []) {
    if (!target.expr) continue;
    const expr = expandGrafanaVariables(target.expr, { interval: options.rateInterval, range });
    const result: Series[] = await options.prometheus.queryRange(expr, options.start, options.end, options.stepSeconds);
    for (const series of result) {
      const name = legendName(target.legendFormat, series.metric, target.refId ?? '');
      // NaN (0/0, a quantile of no observations) and ±Inf are gaps, as Grafana draws them.
      for (const [t, v] of series.values ?? []) if (finite(v)) points.push({ t: t * 1000, v: Number(v), series: name });
    }
  }
  const style = unitStyle(unit);
  const title = { text: panel.title ?? '', anchor: 'start' as const, fontSize: 13 };
  const height = 150;
  if (points.length === 0) {
    return {
      title,
      width,
      height,
      data: { values: [{ text: 'No data' }] },
      mark: { type: 'text' as const, fontSize: 16, color: '#888' },
      encoding: { text: { field: 'text', type: 'nominal' as const } },
    };
  }
  const defaults = panel.fieldConfig?.defaults;
  // Threshold lines (the alert rules' thresholds) as Grafana draws them, when they are near
  // enough to the data not to flatten it: Grafana does not stretch the axis to them either.
  const highest = Math.max(...points.map((point) => point.v));
  const thresholds =
    defaults?.custom?.thresholdsStyle?.mode && defaults.custom.thresholdsStyle.mode !== 'off'
      ? (defaults.thresholds?.steps ?? []).flatMap((step) =>
          step.value === null || step.value > 2 * highest ? [] : [{ threshold: step.value }],
        )
      : [];
  const x = {
    field: 't',
    type: 'temporal' as const,
    title: null,
    scale: { type: 'utc' as const, domain: [options.start.getTime(), options.end.getTime()] },
    axis: { format: '%H:%M:%S', labelAngle: 0, tickCount: 6, grid: false },
  };
  const y = {
    field: 'v',
    type: 'quantitative' as const,
    title: style.title || null,
    axis: { format: style.format, tickCount: 4 },
    scale: { zero: true },
  };
  const line = {
    data: { values: points },
    mark: { type: 'line' as const, strokeWidth: 1.5, interpolate: 'linear' as const },
    encoding: {
      x,
      y,
      color: {
        field: 'series',
        type: 'nominal' as const,
        title: null,
        legend: {
          orient: 'bottom' as const,
          direction: 'vertical' as const,
          columns: Math.max(1, Math.floor(width / 340)),
          labelLimit: 320,
          symbolType: 'stroke',
        },
      },
    },
  };
  const rules = {
    data: { values: thresholds },
    mark: { type: 'rule' as const, color: '#d62728', strokeDash: [6, 4], strokeWidth: 1 },
    encoding: { y: { field: 'threshold', type: 'quantitative' as const } },
  };
  return { title, width, height, layer: thresholds.length ? [line, rules] : [line] };
}

/** Every panel has its own scales and legend, at every level of the layout. */
const INDEPENDENT = {
  scale: { x: 'independent', y: 'independent', color: 'independent' },
  axis: { x: 'independent', y: 'independent' },
  legend: { color: 'independent' },
} as const;

/**
 * Panels grouped as Grafana lays them out: sections under row panels, each a list of lines of
 * panels sharing a gridPos.y, left to right.
 */
function layout(panels: PanelJson[]): Array<{ title: string | undefined; lines: PanelJson[][] }> {
  const sections: Array<{ title: string | undefined; panels: PanelJson[] }> = [{ title: undefined, panels: [] }];
  const sorted = [...panels].sort((a, b) => (a.gridPos?.y ?? 0) - (b.gridPos?.y ?? 0) || (a.gridPos?.x ?? 0) - (b.gridPos?.x ?? 0));
  for (const panel of sorted) {
    if (panel.type === 'row') sections.push({ title: panel.title, panels: [] });
    else sections.at(-1)!.panels.push(panel);
  }
  return sections
    .filter((section) => section.panels.length > 0)
    .map(({ title, panels: members }) => {
      const lines = new Map<number, PanelJson[]>();
      for (const panel of members) lines.set(panel.gridPos?.y ?? 0, [...(lines.get(panel.gridPos?.y ?? 0) ?? []), panel]);
      return { title, lines: [...lines.values()] };
    });
}

/** The Vega-Lite spec of one dashboard, its data fetched from Prometheus. */
export async function dashboardSpec(built: dashboard.Dashboard, options: RenderOptions): Promise<TopLevelSpec> {
  const windowSeconds = seconds(options.end.getTime() - options.start.getTime());
  const stepSeconds = options.stepSeconds ?? Math.max(1, Math.floor(windowSeconds / 240));
  const resolved = {
    prometheus: options.prometheus,
    start: options.start,
    end: options.end,
    stepSeconds,
    rateInterval: options.rateInterval ?? `${Math.max(60, 4 * stepSeconds)}s`,
  };
  const totalWidth = options.width ?? 1800;
  const panels = JSON.parse(renderDashboard(built)).panels as PanelJson[];
  const sections = [];
  for (const section of layout(panels)) {
    const lines = [];
    for (const line of section.lines) {
      const specs = [];
      for (const panel of line) {
        // gridPos.w of 24 columns; leave room for the y axis and the spacing between panels.
        const width = Math.round(((panel.gridPos?.w ?? 24) / 24) * totalWidth) - 90;
        specs.push(panel.type === 'stat' ? await statSpec(panel, width, resolved) : await timeseriesSpec(panel, width, resolved));
      }
      lines.push({ hconcat: specs, spacing: 40, resolve: INDEPENDENT });
    }
    sections.push({
      ...(section.title && { title: { text: section.title, anchor: 'start' as const, fontSize: 16, color: '#1f4e79', offset: 12 } }),
      vconcat: lines,
      spacing: 24,
      resolve: INDEPENDENT,
    });
  }
  const iso = (date: Date) => date.toISOString().replace(/\.\d+Z$/, 'Z');
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: built.title ?? '',
      subtitle: `${iso(options.start)} – ${iso(options.end)} (UTC), all providers and models, rate interval ${resolved.rateInterval}`,
      anchor: 'start',
      fontSize: 22,
      subtitleFontSize: 12,
      offset: 16,
    },
    background: 'white',
    padding: 20,
    config: { font: 'DejaVu Sans', view: { stroke: '#ddd' }, concat: { spacing: 28 } },
    vconcat: sections,
    spacing: 30,
    resolve: INDEPENDENT,
  } as TopLevelSpec;
}

/** One dashboard as a PNG picture. */
export async function renderDashboardPng(file: DashboardFile, options: RenderOptions): Promise<Buffer> {
  const spec = await dashboardSpec(file.build(), options);
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  const png = new Resvg(svg, {
    background: 'white',
    font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' },
  }).render();
  return png.asPng();
}

/** Renders every dashboard of SCREENSHOTS into `outDir`; returns the paths written. */
export async function renderScreenshots(outDir: string, options: RenderOptions): Promise<string[]> {
  mkdirSync(outDir, { recursive: true });
  const written: string[] = [];
  for (const file of DASHBOARDS) {
    const name = SCREENSHOTS[file.file];
    if (!name) continue;
    const target = path.join(outDir, name);
    writeFileSync(target, await renderDashboardPng(file, options));
    written.push(target);
  }
  return written;
}

/** `--since 90s|15m|1h|1d`. */
function durationMs(text: string): number {
  const match = /^(\d+)(s|m|h|d)$/.exec(text);
  if (!match) throw new Error(`--since must look like 90s, 15m, 1h or 1d, got ${JSON.stringify(text)}`);
  return Number(match[1]) * { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] as 's' | 'm' | 'h' | 'd'];
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      prometheus: { type: 'string' },
      since: { type: 'string', default: '1h' },
      out: { type: 'string', default: SCREENSHOTS_DIR },
    },
    strict: true,
  });
  if (!values.prometheus) throw new Error('usage: tsx dashboards/render.ts --prometheus URL [--since 1h] [--out DIR]');
  const end = new Date();
  const start = new Date(end.getTime() - durationMs(values.since!));
  for (const written of await renderScreenshots(values.out!, { prometheus: prometheusClient(values.prometheus), start, end })) {
    console.log(written);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  });
}
