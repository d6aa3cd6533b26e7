/**
 * PromQL inspection on @prometheus-io/lezer-promql: parse errors, vector selectors with their
 * matchers, range durations and the function that consumes a range. Used by the dashboard linter
 * and the rule tests.
 */
import { parser } from '@prometheus-io/lezer-promql';

type SyntaxNode = ReturnType<typeof parser.parse>['topNode'];

/** Stand-ins for Grafana's range variables, so that queries parse as PromQL. */
export const RANGE_STANDINS: Record<string, string> = { $__rate_interval: '1111s', $__range: '2222s', $__interval: '3333s' };

export interface Matcher {
  label: string;
  op: string;
  value: string;
}

export interface SelectorInfo {
  metric: string;
  matchers: Matcher[];
  /** The range `[...]` applied to this selector (after variable stand-ins), or null for an instant vector. */
  range: string | null;
  /** The function whose argument is this range vector (rate, increase, …), or null. */
  rangeFunction: string | null;
  /** Directly under `offset`. */
  offset: boolean;
  text: string;
}

export interface ParsedQuery {
  /** The query as parsed, Grafana range variables replaced by stand-ins. */
  expr: string;
  /** Error nodes: position and surrounding text. Empty when the query parses. */
  errors: string[];
  selectors: SelectorInfo[];
  /** Functions called, by name. */
  functions: string[];
  /** For each histogram_quantile call: the grouping labels of the aggregation inside it. */
  quantileGroupings: string[][];
  /** For each `by (...)` aggregation: its labels. */
  groupings: string[][];
}

/** Replaces `$__rate_interval`, `$__range`, `$__interval` by stand-in durations. */
export function substituteRanges(expr: string): string {
  let out = expr;
  for (const [v, d] of Object.entries(RANGE_STANDINS)) out = out.split(v).join(d);
  return out;
}

function children(node: SyntaxNode): SyntaxNode[] {
  const out: SyntaxNode[] = [];
  for (let c = node.firstChild; c !== null; c = c.nextSibling) out.push(c);
  return out;
}

function unquote(s: string): string {
  if (s.length >= 2 && (s[0] === '"' || s[0] === "'" || s[0] === '`')) return s.slice(1, -1);
  return s;
}

export function parsePromQL(raw: string): ParsedQuery {
  const expr = substituteRanges(raw);
  const tree = parser.parse(expr);
  const text = (n: SyntaxNode): string => expr.slice(n.from, n.to);
  const result: ParsedQuery = { expr, errors: [], selectors: [], functions: [], quantileGroupings: [], groupings: [] };

  const visit = (node: SyntaxNode): void => {
    if (node.type.isError) result.errors.push(`at ${node.from}: "${expr.slice(Math.max(0, node.from - 10), node.to + 10)}"`);
    switch (node.name) {
      case 'VectorSelector':
        result.selectors.push(selectorInfo(node));
        break;
      case 'FunctionCall': {
        const id = node.getChild('FunctionIdentifier');
        const name = id === null ? '' : text(id);
        result.functions.push(name);
        if (name === 'histogram_quantile') {
          const labels: string[] = [];
          const body = node.getChild('FunctionCallBody');
          const agg = body === null ? null : body.getChild('AggregateExpr');
          const grouping = agg?.getChild('AggregateModifier')?.getChild('GroupingLabels');
          if (grouping) for (const l of grouping.getChildren('LabelName')) labels.push(text(l));
          result.quantileGroupings.push(labels);
        }
        break;
      }
      case 'AggregateModifier': {
        const grouping = node.getChild('GroupingLabels');
        if (grouping !== null && node.getChild('By') !== null) result.groupings.push(grouping.getChildren('LabelName').map(text));
        break;
      }
      default:
        break;
    }
    for (const c of children(node)) visit(c);
  };

  const selectorInfo = (node: SyntaxNode): SelectorInfo => {
    const id = node.getChild('Identifier');
    const matchers: Matcher[] = [];
    const list = node.getChild('LabelMatchers');
    if (list !== null) {
      for (const m of children(list)) {
        const label = m.getChild('LabelName') ?? m.getChild('QuotedLabelName');
        const op = m.getChild('MatchOp');
        const value = m.getChild('StringLiteral');
        if (label !== null && op !== null && value !== null) matchers.push({ label: unquote(text(label)), op: text(op), value: unquote(text(value)) });
      }
    }
    let range: string | null = null;
    let rangeFunction: string | null = null;
    let offset = false;
    const parent = node.parent;
    if (parent !== null && parent.name === 'MatrixSelector') {
      const dur = children(parent).find((c) => c.name.includes('Duration'));
      range = dur === undefined ? '' : text(dur);
      const body = parent.parent;
      const call = body?.parent;
      if (body?.name === 'FunctionCallBody' && call?.name === 'FunctionCall') {
        const fid = call.getChild('FunctionIdentifier');
        rangeFunction = fid === null ? null : text(fid);
      }
    }
    if (parent !== null && parent.name === 'OffsetExpr') offset = true;
    return { metric: id === null ? '' : text(id), matchers, range, rangeFunction, offset, text: text(node) };
  };

  visit(tree.topNode);
  return result;
}

/** `label_values(<selector>, <label>)` of a Grafana variable query: the selector and the label. */
export function parseLabelValues(query: string): { selector: string; label: string } | null {
  const m = /^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$/.exec(query.trim());
  return m === null ? null : { selector: m[1], label: m[2] };
}
