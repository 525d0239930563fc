// The page's verifier: an entry from the log, its inclusion proof and the
// log's checkpoint, checked step by step in the browser with the same rules
// and stable codes as `attestlog verify` (spec/bundle.md, spec/entry.md).
// Nothing the server says is taken as a verdict: it only supplies bytes.

import { b64, concat, equal, fail, fromUtf8, hex, sha256, sha384, utf8, VerifyError } from './bytes.js';
import { verifyDocument, parseDocument } from './nitro.js';
import { parseCheckpointBody, verifyCheckpoint } from './note.js';
import { checkPolicy } from './policy.js';

const MAGIC = [0x41, 0x54, 0x4c, 0x01];
export const MAX_ENTRY = 65535;
const STATEMENT_TAG = 'attestlog.dev/statement/v1';

export function decodeEntry(bytes) {
  if (bytes.length > MAX_ENTRY) fail('entry_too_large', `${bytes.length} bytes`);
  if (bytes.length < 4 || MAGIC.some((b, i) => bytes[i] !== b)) fail('bad_entry_encoding', 'bad magic');
  let p = 4;
  const part = (what) => {
    if (p + 2 > bytes.length) fail('bad_entry_encoding', `truncated ${what} length`);
    const n = (bytes[p] << 8) | bytes[p + 1];
    p += 2;
    if (n === 0 || p + n > bytes.length) fail('bad_entry_encoding', `empty or truncated ${what}`);
    const out = bytes.subarray(p, p + n);
    p += n;
    return out;
  };
  const statement = part('statement');
  const attestation = part('attestation');
  if (p !== bytes.length) fail('bad_entry_encoding', `${bytes.length - p} trailing bytes`);
  return { statement, attestation };
}

// Canonical JSON as spec/entry.md states it (sorted keys, no white space).
function canonical(v) {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    const keys = Object.keys(v).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(',')}}`;
  }
  if (typeof v === 'number' && !Number.isInteger(v)) throw new Error('non-integer number');
  return JSON.stringify(v);
}

const isHex = (s, lengths) => typeof s === 'string' && lengths.includes(s.length) && /^[0-9a-f]*$/.test(s);

// The statement's fields a verifier and the page need; bad_statement otherwise.
export function parseStatement(bytes) {
  let text;
  let json;
  try { text = fromUtf8(bytes); json = JSON.parse(text); } catch { fail('bad_statement', 'not UTF-8 JSON'); }
  let again;
  try { again = canonical(json); } catch (e) { fail('bad_statement', e.message); }
  if (again !== text) fail('bad_statement', 'the statement is not canonical JSON');
  const bad = (what) => fail('bad_statement', what);
  if (json._type !== 'https://in-toto.io/Statement/v1') bad('_type');
  if (json.predicateType !== 'https://slsa.dev/provenance/v1') bad('predicateType');
  if (!Array.isArray(json.subject) || !json.subject.length) bad('subject must be a non-empty list');
  const subjects = json.subject.map((s) => {
    if (!s || typeof s.name !== 'string' || !s.name || !isHex(s.digest?.sha256, [64])) bad('subject name and digest.sha256');
    return { name: s.name, sha256: s.digest.sha256 };
  });
  const bd = json.predicate?.buildDefinition ?? {};
  const deps = Array.isArray(bd.resolvedDependencies) ? bd.resolvedDependencies : [];
  const source = deps.find((d) => d && typeof d.uri === 'string' && d.uri && isHex(d.digest?.gitCommit, [40, 64]));
  if (!source) bad('no resolvedDependencies item with a uri and a full gitCommit');
  const builder = json.predicate?.runDetails?.builder;
  if (typeof builder?.id !== 'string' || !builder.id) bad('runDetails.builder.id');
  const ext = bd.externalParameters ?? {};
  const v2 = bd.buildType === 'https://attestlog.dev/buildtypes/nitro-bwrap/v2';
  const ours = v2 || bd.buildType === 'https://attestlog.dev/buildtypes/nitro-bwrap/v1';
  if (ours && (ext.repository !== source.uri || ext.commit !== source.digest.gitCommit)) {
    bad('externalParameters.repository and commit must equal the source');
  }
  let buildDefinition = null;
  let sourceRef = null;
  if (v2) {
    const d = ext.buildDefinition;
    const keys = (o) => (o && typeof o === 'object' ? Object.keys(o).sort().join(',') : '');
    if (keys(d) === 'source' && d.source === 'override') buildDefinition = { override: true };
    else if (keys(d) === 'digest,path,source' && d.source === 'repository' && typeof d.path === 'string' && d.path
      && keys(d.digest) === 'sha256' && isHex(d.digest.sha256, [64])) buildDefinition = { path: d.path, sha256: d.digest.sha256 };
    else bad('externalParameters.buildDefinition');
    const r = ext.sourceRef;
    if (keys(r) === 'unreferenced' && r.unreferenced === true) sourceRef = { unreferenced: true };
    else if (keys(r) === 'name' && typeof r.name === 'string' && /^refs\/(heads|tags)\/[^\s\x00-\x1f\x7f]+$/.test(r.name)
      && r.name.length <= 1024) sourceRef = { name: r.name };
    else bad('externalParameters.sourceRef');
  }
  return {
    json, subjects, buildType: bd.buildType,
    source: { uri: source.uri, commit: source.digest.gitCommit },
    command: ext.command, buildDefinition, sourceRef,
    builder: { id: builder.id, version: builder.version },
    metadata: json.predicate?.runDetails?.metadata ?? {},
  };
}

export async function statementUserData(statement) {
  return sha384(concat(utf8(STATEMENT_TAG), new Uint8Array([0]), statement));
}

export async function leafHash(entry) {
  return sha256(concat(new Uint8Array([0]), entry));
}

const node = (l, r) => sha256(concat(new Uint8Array([1]), l, r));

// RFC 9162 section 2.1.3.2: the root an inclusion proof leads to.
export async function verifyInclusion(index, size, leaf, proof, root) {
  if (!(index < size)) fail('inclusion_proof', `index ${index} is not below tree size ${size}`);
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (!(p instanceof Uint8Array) || p.length !== 32) fail('inclusion_proof', 'a proof hash is not 32 bytes');
    if (sn === 0) fail('inclusion_proof', 'the proof is too long');
    if (fn % 2 === 1 || fn === sn) {
      r = await node(p, r);
      if (fn % 2 === 0) while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
    } else {
      r = await node(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) fail('inclusion_proof', 'the proof is too short');
  if (!equal(r, root)) fail('inclusion_proof', "the proof does not lead to the checkpoint's root");
}

// Runs `f`; records {id, label, ok, code, detail}; returns f's value or null.
async function step(steps, id, label, f) {
  try {
    const value = await f();
    steps.push({ id, label, ok: true, code: null, detail: typeof value === 'string' ? value : '' });
    return value ?? true;
  } catch (e) {
    const code = e instanceof VerifyError ? e.code : 'internal';
    steps.push({ id, label, ok: false, code, detail: e instanceof VerifyError ? e.detail : String(e) });
    return null;
  }
}

const skipped = (steps, id, label, why) => steps.push({ id, label, ok: null, code: null, detail: why });

// Verifies one logged entry. `input`: {entry, index, note, proof (hashes),
// artifact (sha256 bytes or null), commit (hex or null)}; `trust`: {logKeys,
// origin (null: the origin selects the key), witnessKeys, quorum, roots};
// `policy` optional. Steps run in the CLI's
// order; the verdict is the first failure (spec/bundle.md).
export async function verifyEntry(input, trust, policy) {
  const steps = [];
  const parsed = await step(steps, 'entry', 'entry decodes', () => {
    const e = decodeEntry(input.entry);
    return { ...e, statement: parseStatement(e.statement), statementBytes: e.statement };
  });
  if (parsed && input.artifact) {
    await step(steps, 'subject', 'dropped file is a subject', () => {
      const h = hex(input.artifact);
      const s = parsed.statement.subjects.find((x) => x.sha256 === h);
      if (!s) fail('artifact_not_in_subjects', `sha256 ${h} is not a subject of the statement`);
      return `${s.name} (sha256 ${h})`;
    });
  }
  if (parsed && input.commit) {
    await step(steps, 'commit', 'commit is the one asked for', () => {
      if (parsed.statement.source.commit !== input.commit.toLowerCase()) {
        fail('commit_mismatch', `the statement names commit ${parsed.statement.source.commit}`);
      }
    });
  }
  let doc = null;
  if (parsed) {
    await step(steps, 'binding', 'user_data binds the statement', async () => {
      const d = parseDocument(parsed.attestation);
      if (!equal(d.userData, await statementUserData(parsed.statementBytes))) {
        fail('user_data_mismatch', 'attestation user_data does not commit to the statement');
      }
      return `user_data = SHA-384("${STATEMENT_TAG}" || 0x00 || statement)`;
    });
    let coseError = null;
    await step(steps, 'chain', 'certificate chain to a pinned root', async () => {
      try {
        doc = await verifyDocument(parsed.attestation, trust.roots);
      } catch (e) {
        if (e.code !== 'cose_signature') throw e;
        coseError = e;
        doc = parseDocument(parsed.attestation);
      }
      return `at the document's time ${new Date(doc.timestampMs).toISOString()}`;
    });
    if (doc) {
      await step(steps, 'cose', 'COSE ES384 signature', () => {
        if (coseError) throw coseError;
      });
    } else {
      skipped(steps, 'cose', 'COSE ES384 signature', 'not checked: the chain did not verify');
    }
    if (policy) {
      if (doc && !coseError) {
        await step(steps, 'policy', 'policy accepts the measurement and source', () => checkPolicy(policy, parsed.statement, doc));
      } else {
        skipped(steps, 'policy', 'policy accepts the measurement and source', 'not checked: the attestation did not verify');
      }
    }
  }
  await step(steps, 'inclusion', 'inclusion proof (RFC 9162)', async () => {
    const body = input.note.split('\n\n')[0] + '\n';
    const cp = parseCheckpointBody(body);
    await verifyInclusion(input.index, cp.size, await leafHash(input.entry), input.proof, cp.rootHash);
    return `entry ${input.index} in the tree of size ${cp.size}`;
  });
  const signed = await step(steps, 'checkpoint', 'checkpoint signed by the log (and witnesses)', async () => {
    const v = await verifyCheckpoint(input.note, trust.logKeys, trust.witnessKeys, trust.quorum, trust.origin ?? null);
    const w = v.cosigners.length ? `, cosigned by ${v.cosigners.map((c) => c.name).join(', ')}` : '';
    return `${v.checkpoint.origin} at size ${v.checkpoint.size}${w}`;
  });
  const failed = steps.find((s) => s.ok === false);
  return {
    valid: !failed && signed !== null,
    code: failed ? failed.code : null,
    steps,
    statement: parsed?.statement ?? null,
    document: doc,
  };
}

// A v1 offline bundle (spec/bundle.md): the log holds no DSSE envelope.
export function bundleJson(entry, index, proof, note) {
  const tlogProof = ['c2sp.org/tlog-proof@v1', `index ${index}`, ...proof.map(b64)].join('\n') + '\n\n' + note;
  return JSON.stringify({ mediaType: 'application/vnd.attestlog.bundle.v1+json', entry: b64(entry), tlogProof }, null, 2) + '\n';
}
