/**
 * Writes a syntax tree back as LogQL. The output is canonical: keywords lower-case, every string
 * double-quoted with Go escapes, the range after the pipeline, grouping after the call, parentheses only
 * where precedence needs them, no comments. It is built so that Loki's lexer cuts it into exactly the
 * tokens the tree describes, which is what makes the enforced matchers stick:
 *
 * - every free-text field (durations, numbers, byte sizes, flags, label names) is re-checked against the
 *   lexer's own rules, so a hand-built tree cannot smuggle syntax through a text field;
 * - `-0` is written `- 0`, because Loki lexes a minus glued to `0` as a (zero) duration;
 * - `group_left`/`group_right` always carry their `(...)`, because Loki takes a `(` after them as the label
 *   list, never as the start of the right-hand operand.
 */
import type {
  BinaryExpr,
  Grouping,
  LabelFilter,
  LabelMatcher,
  LogRange,
  LogqlAst,
  MetricExpr,
  NumberLiteral,
  Stage,
  Unwrap,
} from './ast.ts';
import { LogqlError } from './errors.ts';
import { FUNCTION_WORDS, KEYWORDS, isLexBytes, isLexDuration, isRangeDuration } from './lexer.ts';
import { BINARY_PRECEDENCE } from './parser.ts';

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
const DECIMAL = /^(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const PLAIN_STRING = /^[^"\\\u0000-\u001f\u007f]*$/;
const MATCH_OPS: ReadonlySet<string> = new Set(['=', '!=', '=~', '!~']);
const COMPARE_OPS: ReadonlySet<string> = new Set(['>', '>=', '<', '<=', '!=', '=', '==']);
const LINE_FILTER_OPS: ReadonlySet<string> = new Set(['|=', '!=', '|~', '!~', '|>', '!>']);
const FLAGS: ReadonlySet<string> = new Set(['--strict', '--keep-empty']);

function refuse(what: string): LogqlError {
  return new LogqlError('ERR_LOGQL_PARSE', `cannot serialise ${what}`, 0);
}

/**
 * A Go double-quoted string literal for any value: `\` and `"` escaped, control characters as escapes,
 * everything else (including non-ASCII) as is.
 */
export function quoteString(value: string): string {
  if (typeof value !== 'string' || !value.isWellFormed()) throw refuse('a string that is not valid Unicode');
  if (PLAIN_STRING.test(value)) return `"${value}"`;
  let out = '"';
  for (const ch of value) {
    const c = ch.codePointAt(0)!;
    if (ch === '\\') out += '\\\\';
    else if (ch === '"') out += '\\"';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (c < 0x20 || c === 0x7f) out += `\\x${c.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return `${out}"`;
}

function label(name: string): string {
  if (typeof name !== 'string' || !IDENT.test(name) || KEYWORDS.has(name.toLowerCase())) {
    throw refuse(`label name ${JSON.stringify(name)}`);
  }
  return name;
}

function checked(text: string, ok: (t: string) => boolean, what: string): string {
  if (typeof text !== 'string' || !ok(text)) throw refuse(`${what} ${JSON.stringify(text)}`);
  return text;
}

function decimal(text: string): string {
  return checked(text, (t) => DECIMAL.test(t), 'number');
}

function literal(v: NumberLiteral): string {
  const text = decimal(v.text);
  if (v.sign === '') return text;
  if (v.sign === '+') return `+${text}`;
  if (v.sign !== '-') throw refuse(`sign ${JSON.stringify(v.sign)}`);
  // What Loki's lexer would glue onto the minus sign; if that is a duration (`-0`), keep them apart.
  const glued = /^[0-9.nuµmshdwy]*/.exec(text)?.[0] ?? '';
  return isLexDuration(`-${glued}`) ? `- ${text}` : `-${text}`;
}

function matcher(m: LabelMatcher): string {
  if (!MATCH_OPS.has(m.op)) throw refuse(`matcher operator ${JSON.stringify(m.op)}`);
  return `${label(m.name)}${m.op}${quoteString(m.value)}`;
}

function selector(matchers: LabelMatcher[]): string {
  if (matchers.length === 0) throw refuse('an empty stream selector');
  return `{${matchers.map(matcher).join(', ')}}`;
}

function labelList(labels: string[]): string {
  return `(${labels.map(label).join(', ')})`;
}

/** How a label filter was written, which decides where its parent needs parentheses. */
interface WrittenFilter {
  text: string;
  form: 'leaf' | 'and' | 'comma' | 'or';
  /** The text ends in a `,` chain, which would swallow anything written after it. */
  open: boolean;
}

/**
 * Label filters, written so Loki groups them as the tree says (see parseLabelFilter for the rules).
 * `and` with a compound right operand is written with `,`: a comma takes everything to its right, so a
 * right-leaning chain (the usual result of `a, b, c`) needs no parentheses and re-reads at the same depth;
 * the price is that such text must be parenthesised wherever something follows it.
 */
function labelFilterForm(f: LabelFilter): WrittenFilter {
  switch (f.type) {
    case 'or': {
      const l = labelFilterForm(f.left);
      const r = labelFilterForm(f.right);
      const left = l.open ? `(${l.text})` : l.text;
      const wrapRight = r.form === 'or';
      const right = wrapRight ? `(${r.text})` : r.text;
      return { text: `${left} or ${right}`, form: 'or', open: !wrapRight && r.open };
    }
    case 'and': {
      const l = labelFilterForm(f.left);
      const r = labelFilterForm(f.right);
      if (r.form === 'leaf') {
        const left = l.form === 'or' || l.open ? `(${l.text})` : l.text;
        return { text: `${left} and ${r.text}`, form: 'and', open: false };
      }
      const left = l.form === 'leaf' ? l.text : `(${l.text})`;
      return { text: `${left}, ${r.text}`, form: 'comma', open: true };
    }
    default:
      return { text: labelFilterLeaf(f), form: 'leaf', open: false };
  }
}

function labelFilter(f: LabelFilter): string {
  return labelFilterForm(f).text;
}

function labelFilterLeaf(f: LabelFilter): string {
  switch (f.type) {
    case 'matcher':
      return matcher(f.matcher);
    case 'ip':
      if (f.op !== '=' && f.op !== '!=') throw refuse(`ip filter operator ${JSON.stringify(f.op)}`);
      return `${label(f.name)}${f.op}ip(${quoteString(f.value)})`;
    case 'duration':
    case 'bytes':
    case 'number': {
      if (!COMPARE_OPS.has(f.op)) throw refuse(`comparison operator ${JSON.stringify(f.op)}`);
      const value =
        f.type === 'number'
          ? literal(f.value)
          : f.type === 'duration'
            ? checked(f.text, isLexDuration, 'duration')
            : checked(f.text, (t) => /^[0-9.]/.test(t) && isLexBytes(t), 'byte size');
      return `${label(f.name)} ${f.op} ${value}`;
    }
    default:
      throw refuse('an unknown label filter');
  }
}

function extractions(list: { label: string; expression: string | null }[]): string {
  if (list.length === 0) return '';
  const items = list.map((e) =>
    e.expression === null ? label(e.label) : `${label(e.label)}=${quoteString(e.expression)}`,
  );
  return ` ${items.join(', ')}`;
}

function stage(st: Stage): string {
  switch (st.type) {
    case 'line_filter': {
      if (!LINE_FILTER_OPS.has(st.op)) throw refuse(`line filter operator ${JSON.stringify(st.op)}`);
      if (st.terms.length === 0) throw refuse('an empty line filter');
      const terms = st.terms.map((t) => (t.ip ? `ip(${quoteString(t.value)})` : quoteString(t.value)));
      return ` ${st.op} ${terms.join(' or ')}`;
    }
    case 'json':
      return ` | json${extractions(st.extractions)}`;
    case 'logfmt': {
      const flags = st.flags.map((f) => ` ${checked(f, (t) => FLAGS.has(t), 'parser flag')}`).join('');
      return ` | logfmt${flags}${extractions(st.extractions)}`;
    }
    case 'regexp':
    case 'pattern':
      return ` | ${st.type} ${quoteString(st.expression)}`;
    case 'unpack':
    case 'decolorize':
      return ` | ${st.type}`;
    case 'line_format':
      return ` | line_format ${quoteString(st.template)}`;
    case 'label_format': {
      if (st.formats.length === 0) throw refuse('an empty label_format');
      const formats = st.formats.map((f) =>
        f.source !== null
          ? `${label(f.label)}=${label(f.source)}`
          : `${label(f.label)}=${quoteString(f.template ?? '')}`,
      );
      return ` | label_format ${formats.join(', ')}`;
    }
    case 'drop':
    case 'keep': {
      if (st.items.length === 0) throw refuse(`an empty ${st.type}`);
      const items = st.items.map((it) => (it.matcher === null ? label(it.name) : matcher(it.matcher)));
      return ` | ${st.type} ${items.join(', ')}`;
    }
    case 'label_filter':
      return ` | ${labelFilter(st.filter)}`;
    default:
      throw refuse('an unknown pipeline stage');
  }
}

function pipeline(stages: Stage[]): string {
  return stages.map(stage).join('');
}

function unwrap(u: Unwrap | null): string {
  if (u === null) return '';
  let out = ' | unwrap ';
  if (u.conversion === null) out += label(u.label);
  else if (u.conversion === 'bytes' || u.conversion === 'duration' || u.conversion === 'duration_seconds') {
    out += `${u.conversion}(${label(u.label)})`;
  } else throw refuse(`conversion ${JSON.stringify(u.conversion)}`);
  return out + u.postFilters.map((f) => ` | ${labelFilter(f)}`).join('');
}

function logRange(r: LogRange): string {
  const range = checked(r.range, isRangeDuration, 'range');
  const offset = r.offset === null ? '' : ` offset ${checked(r.offset, isLexDuration, 'offset')}`;
  const body = `${pipeline(r.pipeline)}${unwrap(r.unwrap)}`;
  return `${selector(r.matchers)}${body}${body === '' ? '' : ' '}[${range}]${offset}`;
}

function grouping(g: Grouping | null): string {
  if (g === null) return '';
  return ` ${g.without ? 'without' : 'by'} ${labelList(g.labels)}`;
}

function call(name: string, param: string | null, body: string): string {
  if (!FUNCTION_WORDS.has(name)) throw refuse(`function ${JSON.stringify(name)}`);
  return `${name}(${param === null ? '' : `${decimal(param)}, `}${body})`;
}

function binary(e: BinaryExpr): string {
  const p = BINARY_PRECEDENCE[e.op];
  if (p === undefined) throw refuse(`binary operator ${JSON.stringify(e.op)}`);
  const rightAssoc = e.op === '^';
  const wrap = (child: MetricExpr, isRight: boolean): string => {
    const text = metric(child);
    if (child.type !== 'binary') return text;
    const c = BINARY_PRECEDENCE[child.op];
    const needs = c < p || (c === p && (isRight ? !rightAssoc : rightAssoc));
    return needs ? `(${text})` : text;
  };
  let op = e.op as string;
  if (e.bool) op += ' bool';
  const m = e.matching;
  if (m !== null) {
    op += ` ${m.on ? 'on' : 'ignoring'} ${labelList(m.labels)}`;
    if (m.group !== null) op += ` group_${m.group.side === 'left' ? 'left' : 'right'} ${labelList(m.group.labels)}`;
  }
  return `${wrap(e.left, false)} ${op} ${wrap(e.right, true)}`;
}

function metric(e: MetricExpr): string {
  switch (e.type) {
    case 'range_agg':
      return `${call(e.op, e.param, logRange(e.range))}${grouping(e.grouping)}`;
    case 'vector_agg':
      return `${call(e.op, e.param, metric(e.expr))}${grouping(e.grouping)}`;
    case 'binary':
      return binary(e);
    case 'label_replace': {
      const args = [e.destination, e.replacement, e.source, e.regex].map(quoteString).join(', ');
      return `label_replace(${metric(e.expr)}, ${args})`;
    }
    case 'vector':
      return `vector(${decimal(e.value)})`;
    case 'literal':
      return literal(e.value);
    default:
      throw refuse('an unknown expression');
  }
}

/**
 * Writes a tree from `parseLogql` back as canonical LogQL that Loki accepts and that re-parses to an equal
 * tree.
 *
 * @example serializeLogql(parseLogql("SUM(Rate({app=`a`}[5m]))")) // 'sum(rate({app="a"} [5m]))'
 * @throws LogqlError `ERR_LOGQL_PARSE` when the tree holds something that cannot be written safely
 *   (a label name that is not an identifier or is a keyword, a malformed duration or number text, an
 *   empty selector, an unknown node): only possible for a tree not made by `parseLogql`.
 */
export function serializeLogql(ast: LogqlAst): string {
  if (ast.type === 'log') return `${selector(ast.matchers)}${pipeline(ast.pipeline)}`;
  return metric(ast);
}
