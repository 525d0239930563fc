// Verifier policies (spec/policy.md) pasted into the page: a TOML subset
// parser that covers the documented format and refuses everything else
// (bad_policy), and the policy checks in the CLI's order and codes.
//
// The subset: comments, `key = value` with basic and literal strings, booleans,
// integers and (multi-line) arrays of strings; `[witnesses]`, `[trust]`,
// `[[measurement]]`, `[[revoked]]`. Unknown keys and tables are errors, as
// in the CLI. A browser cannot read `trust.extra_roots` files: the page
// then keeps the non-AWS roots the log operator configured (spec/explorer.md).

import { fail, fromHex } from './bytes.js';
import { parseVerifierKey } from './note.js';

const TOP = ['log_keys', 'log_origin', 'allow_debug', 'allowed_repositories', 'allow_build_override',
  'allow_unrecorded_build_definition', 'allow_unreferenced_commits', 'required_refs', 'require_dsse'];
const TABLES = {
  witnesses: ['keys', 'quorum'],
  trust: ['aws_root', 'extra_roots'],
  measurement: ['name', 'pcr0', 'pcr1', 'pcr2', 'not_before', 'not_after'],
  revoked: ['pcr0', 'pcr1', 'pcr2', 'reason'],
};
const bad = (message) => fail('bad_policy', message);

function scanString(s, i, line) {
  let out = '';
  for (i++; i < s.length; i++) {
    const c = s[i];
    if (c === '"') return [out, i + 1];
    if (c === '\\') {
      const e = s[++i];
      const map = { n: '\n', t: '\t', '"': '"', '\\': '\\', r: '\r', b: '\b', f: '\f' };
      if (map[e] !== undefined) out += map[e];
      else if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(s.slice(i + 1, i + 5))) { out += String.fromCharCode(parseInt(s.slice(i + 1, i + 5), 16)); i += 4; }
      else bad(`line ${line}: unsupported escape`);
    } else if (c === '\n') bad(`line ${line}: unterminated string`);
    else out += c;
  }
  bad(`line ${line}: unterminated string`);
}

function skip(s, i) {
  for (;;) {
    while (i < s.length && ' \t\r\n'.includes(s[i])) i++;
    if (s[i] !== '#') return i;
    while (i < s.length && s[i] !== '\n') i++;
  }
}

// A literal string: 'text', no escapes.
function scanLiteral(s, i, line) {
  const end = s.indexOf("'", i + 1);
  const nl = s.indexOf('\n', i + 1);
  if (end < 0 || (nl >= 0 && nl < end)) bad(`line ${line}: unterminated string`);
  return [s.slice(i + 1, end), end + 1];
}

function scanValue(s, i, line) {
  if (s[i] === '"') return scanString(s, i, line);
  if (s[i] === "'") return scanLiteral(s, i, line);
  if (s[i] === '[') {
    const out = [];
    i = skip(s, i + 1);
    while (s[i] !== ']') {
      if (s[i] !== '"' && s[i] !== "'") bad(`line ${line}: arrays hold strings only here`);
      const [v, j] = (s[i] === '"' ? scanString : scanLiteral)(s, i, line);
      out.push(v);
      i = skip(s, j);
      if (s[i] === ',') i = skip(s, i + 1);
      else if (s[i] !== ']') bad(`line ${line}: expected , or ] in array`);
    }
    return [out, i + 1];
  }
  const m = /^(true|false|[0-9]+)/.exec(s.slice(i, i + 24));
  if (!m) bad(`line ${line}: unsupported value`);
  const v = m[1] === 'true' ? true : m[1] === 'false' ? false : Number(m[1]);
  return [v, i + m[1].length];
}

export function parseToml(text) {
  if (text.length > 1 << 20) bad('policy larger than 1 MiB');
  const root = {};
  let table = root;
  let allowed = TOP;
  let i = 0;
  const lineAt = (k) => text.slice(0, k).split('\n').length;
  for (i = skip(text, 0); i < text.length; i = skip(text, i)) {
    const line = lineAt(i);
    let m;
    if ((m = /^\[\[([a-z_]+)\]\][ \t]*(#[^\n]*)?(\n|$)/.exec(text.slice(i)))) {
      if (!['measurement', 'revoked'].includes(m[1])) bad(`line ${line}: unknown table [[${m[1]}]]`);
      (root[m[1]] ??= []).push(table = {});
      allowed = TABLES[m[1]];
      i += m[0].length;
      continue;
    }
    if ((m = /^\[([a-z_]+)\][ \t]*(#[^\n]*)?(\n|$)/.exec(text.slice(i)))) {
      if (!['witnesses', 'trust'].includes(m[1]) || root[m[1]]) bad(`line ${line}: unknown or repeated table [${m[1]}]`);
      root[m[1]] = table = {};
      allowed = TABLES[m[1]];
      i += m[0].length;
      continue;
    }
    m = /^([A-Za-z0-9_]+)[ \t]*=[ \t]*/.exec(text.slice(i));
    if (!m) bad(`line ${line}: expected key = value`);
    if (!allowed.includes(m[1])) bad(`line ${line}: unknown key ${m[1]}`);
    if (m[1] in table) bad(`line ${line}: duplicate key ${m[1]}`);
    const [value, j] = scanValue(text, i + m[0].length, line);
    table[m[1]] = value;
    const rest = /^[ \t]*(#[^\n]*)?(\n|$)/.exec(text.slice(j));
    if (!rest) bad(`line ${line}: trailing characters after the value`);
    i = j + rest[0].length;
  }
  return root;
}

const type = (v, t, name) => { if (v !== undefined && typeof v !== t) bad(`${name} must be a ${t}`); return v; };
const strings = (v, name) => { if (v !== undefined && !Array.isArray(v)) bad(`${name} must be an array of strings`); return v ?? []; };

function pcr(text, name) {
  const b = fromHex(type(text, 'string', name) ?? '');
  if (!b || ![32, 48, 64].includes(b.length)) bad(`${name} must be 32, 48 or 64 bytes of hex`);
  return b;
}

function instant(text, name) {
  if (text === undefined) return null;
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/i.test(type(text, 'string', name))) bad(`${name} is not an RFC 3339 time`);
  return Math.floor(Date.parse(text) / 1000);
}

// A policy from TOML text, as the CLI reads it (minus files: see above).
export async function parsePolicy(text) {
  const t = parseToml(text);
  const logKeys = [];
  for (const k of strings(t.log_keys, 'log_keys')) {
    const key = await parseVerifierKey(k);
    if (!key || key.type !== 0x01) bad('log_keys: not an Ed25519 verifier key');
    logKeys.push(key);
  }
  if (!logKeys.length) bad('log_keys: at least one log verifier key is required');
  const w = t.witnesses ?? {};
  const witnessKeys = [];
  for (const k of strings(w.keys, 'witnesses.keys')) {
    const key = await parseVerifierKey(k);
    if (!key || ![0x04, 0x06].includes(key.type)) bad('witnesses.keys: not a cosignature verifier key');
    witnessKeys.push(key);
  }
  const quorum = type(w.quorum, 'number', 'witnesses.quorum') ?? witnessKeys.length;
  if (quorum > witnessKeys.length) bad('witnesses.quorum: larger than the number of witness keys');
  const trust = t.trust ?? {};
  const refs = strings(t.required_refs, 'required_refs');
  for (const r of refs) {
    if (!r.startsWith('refs/') || r.slice(0, -1).includes('*')) bad(`required_refs: ${JSON.stringify(r)} must start with refs/ and may end in *`);
  }
  for (const key of ['allow_debug', 'allow_build_override', 'allow_unrecorded_build_definition', 'allow_unreferenced_commits', 'require_dsse']) {
    type(t[key], 'boolean', key);
  }
  const logOrigin = type(t.log_origin, 'string', 'log_origin') ?? null;
  if (logOrigin !== null && (!logOrigin || logOrigin.includes('\n'))) bad('log_origin: must be one non-empty line');
  return {
    logKeys, logOrigin, witnessKeys, quorum,
    awsRoot: type(trust.aws_root, 'boolean', 'trust.aws_root') ?? true,
    extraRoots: strings(trust.extra_roots, 'trust.extra_roots'),
    measurements: (t.measurement ?? []).map((m) => ({
      name: type(m.name, 'string', 'measurement.name') ?? bad('measurement.name is required'),
      pcrs: [pcr(m.pcr0, 'measurement.pcr0'), pcr(m.pcr1, 'measurement.pcr1'), pcr(m.pcr2, 'measurement.pcr2')],
      notBefore: instant(m.not_before, 'measurement.not_before'),
      notAfter: instant(m.not_after, 'measurement.not_after'),
    })),
    revoked: (t.revoked ?? []).map((r) => {
      const pcrs = ['pcr0', 'pcr1', 'pcr2'].map((k) => (r[k] === undefined ? null : pcr(r[k], `revoked.${k}`)));
      if (pcrs.every((p) => p === null)) bad('revoked: names no PCR');
      return { pcrs, reason: type(r.reason, 'string', 'revoked.reason') ?? '' };
    }),
    allowedRepositories: strings(t.allowed_repositories, 'allowed_repositories'),
    allowDebug: t.allow_debug ?? false,
    allowBuildOverride: t.allow_build_override ?? false,
    allowUnrecorded: t.allow_unrecorded_build_definition ?? false,
    allowUnreferenced: t.allow_unreferenced_commits ?? false,
    requiredRefs: refs,
  };
}

const same = (a, b) => a && b && a.length === b.length && a.every((x, i) => x === b[i]);
const normalizeRepo = (u) => u.replace(/^git\+/, '').replace(/\/$/, '').replace(/\.git$/, '');

// The policy on a verified claim (client/src/verify.rs check_policy):
// returns the endorsing measurement's name or throws the first refusal.
export function checkPolicy(policy, statement, doc) {
  if (doc.debug && !policy.allowDebug) fail('debug_refused', 'debug-mode attestation refused (PCR0-2 are zero)');
  const pcrs = [0, 1, 2].map((i) => doc.pcrs.get(i) ?? new Uint8Array());
  const revoked = policy.revoked.find((r) => r.pcrs.every((want, i) => want === null || same(want, pcrs[i])));
  if (revoked) fail('measurement_revoked', `measurement revoked: ${revoked.reason}`);
  const at = Math.floor(doc.timestampMs / 1000);
  const matching = policy.measurements.filter((m) => m.pcrs.every((p, i) => same(p, pcrs[i])));
  if (!matching.length) fail('measurement_not_endorsed', 'PCR0-2 are not an endorsed measurement');
  const m = matching.find((x) => (x.notBefore === null || at >= x.notBefore) && (x.notAfter === null || at <= x.notAfter));
  if (!m) fail('measurement_outside_window', 'PCR0-2 match an endorsed measurement outside its validity window');
  if (policy.allowedRepositories.length && !policy.allowedRepositories.some((a) => normalizeRepo(a) === normalizeRepo(statement.source.uri))) {
    fail('repository_not_allowed', `source repository ${statement.source.uri} is not allowed`);
  }
  const def = statement.buildDefinition;
  if (def?.override && !policy.allowBuildOverride) fail('build_definition_override', 'the build definition was overridden on the command line');
  if ((!def || !statement.sourceRef) && !policy.allowUnrecorded) {
    fail('build_definition_unrecorded', `buildType ${JSON.stringify(statement.buildType)} records no build definition origin or ref`);
  }
  if (statement.sourceRef?.unreferenced && !policy.allowUnreferenced) fail('unreferenced_commit', 'no branch or tag contained the commit');
  const name = statement.sourceRef?.name ?? null;
  if (policy.requiredRefs.length && !(name && policy.requiredRefs.some((p) => (p.endsWith('*') ? name.startsWith(p.slice(0, -1)) : name === p)))) {
    fail('ref_not_allowed', `ref ${name ?? '(none recorded)'} is not in required_refs`);
  }
  return `endorsed as ${JSON.stringify(m.name)}`;
}
