/**
 * The few panel shapes the Tollgate dashboards use, built once with the Grafana Foundation SDK so
 * that every dashboard gets the same datasource variable, legend, tooltip and alert-threshold
 * line, and so that each dashboard file reads as a list of panels and their queries.
 */
import type * as cog from '@grafana/grafana-foundation-sdk/cog';
import * as common from '@grafana/grafana-foundation-sdk/common';
import * as dashboard from '@grafana/grafana-foundation-sdk/dashboard';
import * as prometheus from '@grafana/grafana-foundation-sdk/prometheus';
import * as stat from '@grafana/grafana-foundation-sdk/stat';
import * as table from '@grafana/grafana-foundation-sdk/table';
import * as timeseries from '@grafana/grafana-foundation-sdk/timeseries';
import { DATASOURCE_TYPES, DATASOURCE_VARIABLES } from './sources.js';

const PROMETHEUS: common.DataSourceRef = {
  type: DATASOURCE_TYPES.prometheus,
  uid: `\${${DATASOURCE_VARIABLES.prometheus}}`,
};
const LEDGER: common.DataSourceRef = {
  type: DATASOURCE_TYPES.postgres,
  uid: `\${${DATASOURCE_VARIABLES.ledger}}`,
};

/** Grafana custom units: the value is shown with this suffix. */
export const UNITS = {
  creditsPerHour: 'suffix: credits/h',
  credits: 'suffix: credits',
  tokensPerSecond: 'suffix: tokens/s',
  perSecond: 'ops',
  ratio: 'percentunit',
  seconds: 's',
  count: 'short',
} as const;

// ---------------------------------------------------------------------------------------------
// Variables

export function prometheusDatasourceVariable(): dashboard.DatasourceVariableBuilder {
  return new dashboard.DatasourceVariableBuilder(DATASOURCE_VARIABLES.prometheus)
    .label('Prometheus')
    .type(DATASOURCE_TYPES.prometheus);
}

export function ledgerDatasourceVariable(): dashboard.DatasourceVariableBuilder {
  return new dashboard.DatasourceVariableBuilder(DATASOURCE_VARIABLES.ledger)
    .label('Ledger (PostgreSQL)')
    .type(DATASOURCE_TYPES.postgres);
}

/**
 * A multi-value filter listing the values Prometheus has seen for `label` on `series`
 * (`label_values(series, label)`); "All" matches everything, including no value at all.
 */
export function labelFilterVariable(label: string, series: string): dashboard.QueryVariableBuilder {
  const query = `label_values(${series}, ${label})`;
  return new dashboard.QueryVariableBuilder(label)
    .label(label[0]!.toUpperCase() + label.slice(1))
    .datasource(PROMETHEUS)
    .query(query)
    .definition(query)
    .refresh(dashboard.VariableRefresh.OnTimeRangeChanged)
    .sort(dashboard.VariableSort.AlphabeticalAsc)
    .multi(true)
    .includeAll(true)
    .allValue('.*');
}

/** A free-text variable, e.g. the account id of a statement. */
export function textVariable(name: string, label: string, description: string): dashboard.TextBoxVariableBuilder {
  return new dashboard.TextBoxVariableBuilder(name).label(label).description(description);
}

// ---------------------------------------------------------------------------------------------
// Queries

/** One Prometheus query of a panel; `legend` is Grafana's legendFormat (`{{model}}` etc.). */
export interface PromTarget {
  expr: string;
  legend?: string;
}

const REF_IDS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';

function promQuery(target: PromTarget, index: number, instant: boolean): prometheus.DataqueryBuilder {
  const query = new prometheus.DataqueryBuilder()
    .datasource(PROMETHEUS)
    .refId(REF_IDS[index]!)
    .editorMode(prometheus.QueryEditorMode.Code)
    .expr(target.expr)
    .legendFormat(target.legend ?? '__auto');
  return instant ? query.instant() : query.range();
}

/**
 * The query model of Grafana's PostgreSQL datasource (the SDK ships none for SQL datasources):
 * raw SQL in code mode. Grafana macros such as $__timeFilter(column) expand server-side.
 */
interface SqlQuery extends cog.Dataquery {
  refId: string;
  datasource: common.DataSourceRef;
  editorMode: 'code';
  format: 'table' | 'time_series';
  rawQuery: true;
  rawSql: string;
}

class SqlQueryBuilder implements cog.Builder<cog.Dataquery> {
  constructor(private readonly query: Omit<SqlQuery, '_implementsDataqueryVariant'>) {}

  build(): SqlQuery {
    return { ...this.query, _implementsDataqueryVariant() {} };
  }
}

function sqlQuery(rawSql: string, format: SqlQuery['format']): SqlQueryBuilder {
  return new SqlQueryBuilder({ refId: 'A', datasource: LEDGER, editorMode: 'code', format, rawQuery: true, rawSql });
}

// ---------------------------------------------------------------------------------------------
// Panels

interface PanelOptions {
  title: string;
  /** Shown behind the (i) of the panel: what the panel means and what to do about it. */
  description: string;
  unit: string;
  /** Grid width out of 24 (default 12) and height (default 8). */
  width?: number;
  height?: number;
}

/** The methods every SDK panel builder has, whatever its visualisation. */
interface AnyPanelBuilder<B> {
  title(title: string): B;
  description(description: string): B;
  datasource(datasource: common.DataSourceRef): B;
  span(width: number): B;
  height(height: number): B;
}

/** Title, description, datasource and size: what every panel here sets the same way. */
function frame<B extends AnyPanelBuilder<B>>(
  builder: B,
  o: Omit<PanelOptions, 'unit'>,
  datasource: common.DataSourceRef,
  size: { width: number; height: number },
): B {
  return builder
    .title(o.title)
    .description(o.description)
    .datasource(datasource)
    .span(o.width ?? size.width)
    .height(o.height ?? size.height);
}

export interface TimeseriesOptions extends PanelOptions {
  targets: PromTarget[];
  /** Stack the series (only for parts of a whole, e.g. settlements by result). */
  stacked?: boolean;
  /** Draw a dashed red line at the value where the matching alert (alerts.yaml) fires. */
  alertThreshold?: number;
  min?: number;
}

export function timeseriesPanel(o: TimeseriesOptions): timeseries.PanelBuilder {
  const panel = frame(new timeseries.PanelBuilder(), o, PROMETHEUS, { width: 12, height: 8 })
    .unit(o.unit)
    .min(o.min ?? 0)
    .fillOpacity(o.stacked ? 60 : 10)
    .lineWidth(1)
    .showPoints(common.VisibilityMode.Never)
    .legend(
      new common.VizLegendOptionsBuilder()
        .showLegend(true)
        .displayMode(common.LegendDisplayMode.Table)
        .placement(common.LegendPlacement.Bottom)
        .calcs(['mean', 'max', 'lastNotNull']),
    )
    .tooltip(new common.VizTooltipOptionsBuilder().mode(common.TooltipDisplayMode.Multi).sort(common.SortOrder.Descending))
    .stacking(new common.StackingConfigBuilder().mode(o.stacked ? common.StackingMode.Normal : common.StackingMode.None));
  o.targets.forEach((target, i) => panel.withTarget(promQuery(target, i, false)));
  if (o.alertThreshold !== undefined) {
    panel
      .thresholds(alertThresholds(o.alertThreshold))
      .thresholdsStyle(new common.GraphThresholdsStyleConfigBuilder().mode(common.GraphThresholdsStyleMode.Dashed));
  }
  return panel;
}

export interface StatOptions extends PanelOptions {
  target: PromTarget;
  /** Turn the value red from this value up (the alert threshold, or 1 for "any"). */
  alertThreshold?: number;
}

/** One number for the whole time range (an instant query at its end). */
export function statPanel(o: StatOptions): stat.PanelBuilder {
  const panel = frame(new stat.PanelBuilder(), o, PROMETHEUS, { width: 6, height: 4 })
    .unit(o.unit)
    .graphMode(common.BigValueGraphMode.None)
    .colorMode(common.BigValueColorMode.Value)
    .reduceOptions(new common.ReduceDataOptionsBuilder().calcs(['lastNotNull']).values(false))
    .withTarget(promQuery(o.target, 0, true));
  return o.alertThreshold === undefined
    ? panel.thresholds(new dashboard.ThresholdsConfigBuilder().mode(dashboard.ThresholdsMode.Absolute).steps([{ value: null, color: 'text' }]))
    : panel.thresholds(alertThresholds(o.alertThreshold));
}

export interface SqlTableOptions extends Omit<PanelOptions, 'unit'> {
  /** Rows in the order the table shows them first (ORDER BY); columns named for people. */
  sql: string;
}

/** A table of rows from the ledger. */
export function sqlTablePanel(o: SqlTableOptions): table.PanelBuilder {
  return frame(new table.PanelBuilder(), o, LEDGER, { width: 12, height: 10 })
    .cellHeight(common.TableCellHeight.Sm)
    .withTarget(sqlQuery(o.sql, 'table'));
}

export interface SqlTimeseriesOptions extends PanelOptions {
  /** Must return a `time` column and one numeric column per series. */
  sql: string;
}

/** A time series drawn from the ledger. */
export function sqlTimeseriesPanel(o: SqlTimeseriesOptions): timeseries.PanelBuilder {
  return frame(new timeseries.PanelBuilder(), o, LEDGER, { width: 12, height: 8 })
    .unit(o.unit)
    .drawStyle(common.GraphDrawStyle.Bars)
    .fillOpacity(60)
    .legend(new common.VizLegendOptionsBuilder().showLegend(true).displayMode(common.LegendDisplayMode.List).placement(common.LegendPlacement.Bottom))
    .withTarget(sqlQuery(o.sql, 'time_series'));
}

function alertThresholds(value: number): dashboard.ThresholdsConfigBuilder {
  return new dashboard.ThresholdsConfigBuilder().mode(dashboard.ThresholdsMode.Absolute).steps([
    { value: null, color: 'green' },
    { value, color: 'red' },
  ]);
}

// ---------------------------------------------------------------------------------------------
// Dashboards

export interface DashboardSpec {
  uid: string;
  title: string;
  description: string;
  /** Default: the viewer's browser. */
  timezone?: string;
  variables: cog.Builder<dashboard.VariableModel>[];
  rows: { title: string; panels: cog.Builder<dashboard.Panel>[] }[];
}

/** Shared by every Tollgate dashboard; the link menu lists dashboards with this tag. */
const DASHBOARD_TAG = 'tollgate';

/** A drop-down in the top bar listing the other Tollgate dashboards, keeping the time range. */
function tollgateDashboardsLink(): dashboard.DashboardLink {
  const link = new dashboard.DashboardLinkBuilder('Tollgate')
    .type(dashboard.DashboardLinkType.Dashboards)
    .tags([DASHBOARD_TAG])
    .asDropdown(true)
    .keepTime(true)
    .build();
  // The SDK defaults `placement` to the controls menu, which hides the link; unset, it is shown.
  delete link.placement;
  return link;
}

/**
 * Lays the rows out top to bottom (panels left to right, wrapping at the grid's 24 columns) and
 * numbers the panels 1, 2, 3… in that order, so the generated JSON is the same on every build.
 */
export function buildDashboard(spec: DashboardSpec): dashboard.Dashboard {
  const builder = new dashboard.DashboardBuilder(spec.title)
    .uid(spec.uid)
    .description(spec.description)
    .tags([DASHBOARD_TAG, 'billing'])
    .timezone(spec.timezone ?? 'browser')
    .time({ from: 'now-6h', to: 'now' })
    .refresh('1m')
    .tooltip(dashboard.DashboardCursorSync.Crosshair)
    .link({ build: tollgateDashboardsLink })
    .variables(spec.variables);
  for (const row of spec.rows) {
    builder.withRow(new dashboard.RowBuilder(row.title));
    for (const panel of row.panels) builder.withPanel(panel);
  }
  const built = builder.build();
  built.panels?.forEach((panel, i) => {
    panel.id = i + 1;
  });
  return built;
}
