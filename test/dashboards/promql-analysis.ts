/**
 * Parses PromQL with Prometheus' own Lezer grammar (the one the Prometheus UI uses) and reports
 * the metric names and label matchers an expression uses, for the dashboard and rule checks.
 */
import { parser } from '@prometheus-io/lezer-promql';

/** Strict: a syntax error throws instead of becoming an error node in the tree. */
const strictParser = parser.configure({ strict: true });

export interface LabelMatcher {
  label: string;
  op: '=' | '!=' | '=~' | '!~';
  value: string;
}

export interface PromQLReport {
  /** Metric names of every vector selector, in order of appearance. */
  metrics: string[];
  matchers: LabelMatcher[];
  /** Vector selectors without a metric name (`{__name__=~"…"}`): unverifiable. */
  unnamedSelectors: string[];
}

/** Throws an Error naming the position when `expr` is not valid PromQL. */
export function analysePromQL(expr: string): PromQLReport {
  let tree;
  try {
    tree = strictParser.parse(expr);
  } catch (error) {
    throw new Error(`not valid PromQL (${(error as Error).message}): ${expr}`);
  }
  const report: PromQLReport = { metrics: [], matchers: [], unnamedSelectors: [] };
  const text = (node: { from: number; to: number }) => expr.slice(node.from, node.to);
  tree.iterate({
    enter(ref) {
      if (ref.name === 'VectorSelector') {
        const name = ref.node.getChild('Identifier');
        if (name) report.metrics.push(text(name));
        else report.unnamedSelectors.push(text(ref));
      } else if (ref.name === 'UnquotedLabelMatcher') {
        const label = ref.node.getChild('LabelName');
        const op = ref.node.getChild('MatchOp');
        const value = ref.node.getChild('StringLiteral');
        if (label && op && value) {
          report.matchers.push({
            label: text(label),
            op: text(op) as LabelMatcher['op'],
            value: unquote(text(value)),
          });
        }
      }
    },
  });
  return report;
}

/** PromQL strings are Go string literals: "…", '…' or `…`. The dashboards use no escapes. */
function unquote(literal: string): string {
  return literal.slice(1, -1);
}

/**
 * The values a matcher can match when it is an equality or a plain alternation (`a|b`);
 * undefined for other regexes (`.*`, variables), which cannot be checked against a list.
 */
export function literalValues(matcher: LabelMatcher): string[] | undefined {
  if (matcher.op === '=' || matcher.op === '!=') return [matcher.value];
  return /^[\w-]+(\|[\w-]+)*$/.test(matcher.value) ? matcher.value.split('|') : undefined;
}
