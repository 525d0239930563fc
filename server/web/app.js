// The explorer's controller: reads the pinned trust configuration, shows
// the verified log head, searches, hashes dropped files, and verifies
// entries with verify.js. Routes: #/entry/<index>, #/search/<kind>/<value>.

import { b64, fromB64, fromHex, hex, sha256, VerifyError } from './bytes.js';
import { parseVerifierKey, verifyCheckpoint } from './note.js';
import { bundleJson, verifyEntry, MAX_ENTRY } from './verify.js';
import { verifyDocument } from './nitro.js';
import { parsePolicy, checkPolicy } from './policy.js';
import { el, entryView, facts } from './view.js';

const FETCH_TIMEOUT_MS = 10000;
const AWS_ROOT_SHA256 = '641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b';
const $ = (id) => document.getElementById(id);

// `renders` counts the head and entry renders started: a render whose
// awaits end after a newer one started (a policy applied twice quickly, an
// entry opened while another verifies) is dropped, not shown over it.
const state = { trust: null, pinned: null, policy: null, artifact: null, artifactName: null, renders: { head: 0, entry: 0 } };

// GET with a deadline and a size bound; refuses non-2xx answers.
async function get(path, limit, as = 'bytes') {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
  try {
    const res = await fetch(path, { signal: ctl.signal, cache: 'no-store' });
    const body = new Uint8Array(await res.arrayBuffer());
    if (body.length > limit) throw new VerifyError('fetch_too_large', `${path}: more than ${limit} bytes`);
    if (!res.ok) {
      let code = 'fetch_status';
      try { code = JSON.parse(new TextDecoder().decode(body)).error ?? code; } catch { /* not JSON */ }
      throw new VerifyError(code, `${path}: HTTP ${res.status}`);
    }
    if (as === 'bytes') return body;
    const text = new TextDecoder('utf-8', { fatal: true }).decode(body);
    return as === 'json' ? JSON.parse(text) : text;
  } catch (e) {
    if (e instanceof VerifyError) throw e;
    throw new VerifyError('fetch_failed', `${path}: ${e.name === 'AbortError' ? 'no answer in 10 s' : e.message}`);
  } finally {
    clearTimeout(timer);
  }
}

async function loadTrust() {
  const cfg = JSON.parse($('config').textContent);
  const logKey = await parseVerifierKey(cfg.log_key);
  if (!logKey || logKey.type !== 0x01) throw new VerifyError('malformed_verifier_key', 'the pinned log key is malformed');
  const witnessKeys = (await Promise.all(cfg.witnesses.map(parseVerifierKey))).filter(Boolean);
  const roots = cfg.roots.map(fromB64).filter(Boolean);
  const rootHashes = await Promise.all(roots.map(async (r) => hex(await sha256(r))));
  state.pinned = { logKey, logKeys: [logKey], origin: null, witnessKeys, quorum: cfg.quorum, roots, rootHashes };
  state.trust = state.pinned;
  facts($('trust-facts'), [
    ['log key', el('span', { class: 'mono' }, cfg.log_key)],
    ['key id', el('span', { class: 'mono', id: 'key-id' }, `${logKey.name}+${logKey.id.toString(16).padStart(8, '0')}`)],
    ['witnesses', cfg.witnesses.length ? cfg.witnesses.map((w) => el('div', { class: 'mono' }, w)) : 'none configured'],
    ['quorum', String(cfg.quorum)],
    ['Nitro roots', rootHashes.map((h) => el('div', { class: 'mono' }, `sha256:${h}${h === AWS_ROOT_SHA256 ? ' (AWS Nitro Enclaves Root-G1)' : ' (configured by the operator)'}`))],
  ]);
}

// The trust a verification uses: the policy's, when one is applied.
function trustFor() {
  if (!state.policy) return state.trust;
  const p = state.policy;
  const roots = state.pinned.roots.filter((r, i) => (state.pinned.rootHashes[i] === AWS_ROOT_SHA256 ? p.awsRoot : p.extraRoots.length > 0));
  return { logKeys: p.logKeys, origin: p.logOrigin, witnessKeys: p.witnessKeys, quorum: p.quorum, roots };
}

async function loadHead() {
  const dl = $('head-facts');
  const ticket = ++state.renders.head;
  try {
    const note = await get('/checkpoint', 1 << 20, 'text');
    const t = trustFor();
    const v = await verifyCheckpoint(note, t.logKeys, t.witnessKeys, t.quorum, t.origin);
    if (ticket !== state.renders.head) return;
    const newest = Math.max(0, ...v.cosigners.map((c) => c.time));
    facts(dl, [
      ['status', el('span', { class: 'verdict valid', 'data-head': 'valid' }, 'checkpoint verified in this browser')],
      ['origin', v.checkpoint.origin],
      ['tree size', el('span', { id: 'tree-size' }, String(v.checkpoint.size))],
      ['root hash', el('span', { class: 'mono' }, b64(v.checkpoint.rootHash))],
      ['checkpoint age', newest ? `${Math.max(0, Math.round(Date.now() / 1000 - newest))} s (newest cosignature)` : 'not timestamped (no witness cosignature)'],
      ['witnesses', v.cosigners.length ? v.cosigners.map((c) => `${c.name} at ${new Date(c.time * 1000).toISOString()}`).join('; ') : 'none'],
      ['quorum', `${v.cosigners.length} of ${t.quorum} required`],
    ]);
  } catch (e) {
    if (ticket !== state.renders.head) return;
    facts(dl, [['status', el('span', { class: 'verdict invalid', 'data-head': 'invalid', 'data-code': e.code ?? '' }, `checkpoint refused: ${e.code ?? 'internal'}`)], ['why', e.detail ?? String(e)]]);
  }
}

function showError(box, e) {
  box.replaceChildren(el('p', { class: 'verdict invalid', 'data-code': e.code ?? '' }, `${e.code ?? 'error'}: ${e.detail ?? e.message}`));
}

// Fetches and verifies entry `index`; returns the verification result.
async function check(index) {
  const entry = await get(`/v1/entries/${index}`, MAX_ENTRY);
  const note = await get('/checkpoint', 1 << 20, 'text');
  const size = Number(note.split('\n')[1]);
  const p = await get(`/v1/proof/inclusion?index=${index}&tree_size=${size}`, 1 << 16, 'json');
  const proof = (Array.isArray(p.proof) ? p.proof : []).slice(0, 64).map((h) => fromB64(h) ?? new Uint8Array());
  const result = await verifyEntry({ entry, index, note, proof, artifact: state.artifact }, trustFor(), state.policy);
  return { result, entry, proof, note };
}

async function showEntry(index) {
  const box = $('entry');
  const ticket = ++state.renders.entry;
  box.hidden = false;
  box.replaceChildren(el('h2', {}, `Entry ${index}`), el('p', {}, 'verifying…'));
  try {
    const { result, entry, proof, note } = await check(index);
    let pcrStatus = 'no policy applied: paste one below to see whether PCR0-2 are endorsed';
    if (state.policy && result.document && result.statement) {
      try { pcrStatus = `accepted: ${checkPolicy(state.policy, result.statement, result.document)}`; } catch (e) { pcrStatus = `refused: ${e.code}`; }
    }
    const chainHashes = result.document?.chain ? await Promise.all(result.document.chain.map(async (c) => hex(await sha256(c.der)))) : [];
    if (ticket !== state.renders.entry) return;
    const name = result.statement?.subjects[0]?.name ?? `entry-${index}`;
    for (const url of state.blobs ?? []) URL.revokeObjectURL(url);
    const downloads = {
      entry: URL.createObjectURL(new Blob([entry], { type: 'application/octet-stream' })),
      bundle: URL.createObjectURL(new Blob([bundleJson(entry, index, proof, note)], { type: 'application/json' })),
      bundleName: `${name.replace(/[^A-Za-z0-9._-]/g, '_')}.attestlog.json`,
    };
    state.blobs = [downloads.entry, downloads.bundle];
    box.replaceChildren(...entryView(index, result, downloads, pcrStatus, chainHashes));
    box.dataset.verdict = result.valid ? 'valid' : 'invalid';
  } catch (e) {
    if (ticket === state.renders.entry) showError(box, e);
  }
}

const KINDS = { artifact_sha256: [64], commit: [40, 64], pcr0: [64, 96, 128] };

async function search(kind, value, after) {
  const box = $('results');
  box.replaceChildren(el('p', {}, 'searching…'));
  try {
    if (KINDS[kind] && !(KINDS[kind].includes(value.length) && fromHex(value))) {
      throw new VerifyError('bad_parameter', `${kind} must be hex of ${KINDS[kind].map((n) => n / 2).join(' or ')} bytes`);
    }
    const q = new URLSearchParams({ [kind]: value });
    if (after !== undefined) q.set('after', String(after));
    const r = await get(`/v1/search?${q}`, 1 << 20, 'json');
    const indices = Array.isArray(r.indices) ? r.indices.filter(Number.isSafeInteger) : [];
    const items = indices.map((i) => el('li', { 'data-index': String(i) }, el('a', { href: `#/entry/${i}` }, `entry ${i}`), ' ', el('span', { class: 'note' }, '')));
    box.replaceChildren(el('p', { id: 'result-count' }, `${indices.length} ${indices.length === 1 ? 'entry' : 'entries'}${state.artifact ? ` for ${state.artifactName}` : ''}`), el('ul', { class: 'results' }, items));
    if (Number.isSafeInteger(r.next_after)) {
      box.append(el('a', { href: `#/search/${kind}/${encodeURIComponent(value)}/${r.next_after}` }, 'more…'));
    }
    if (state.artifact) {
      // A dropped file: verify every entry; valid if one satisfies.
      let anyValid = false;
      for (const li of items) {
        const i = Number(li.dataset.index);
        const { result } = await check(i).catch((e) => ({ result: { valid: false, code: e.code ?? 'internal' } }));
        anyValid ||= result.valid;
        li.dataset.verdict = result.valid ? 'valid' : 'invalid';
        li.lastChild.textContent = result.valid ? ' valid' : ` invalid: ${result.code}`;
      }
      box.prepend(el('p', { class: `verdict ${anyValid ? 'valid' : 'invalid'}`, id: 'file-verdict', 'data-verdict': anyValid ? 'valid' : 'invalid' },
        anyValid ? `${state.artifactName}: valid (at least one entry verifies)` : `${state.artifactName}: no entry verifies`));
      if (indices.length) location.hash = `#/entry/${indices.find((_, k) => items[k].dataset.verdict === 'valid') ?? indices[0]}`;
    }
  } catch (e) {
    showError(box, e);
  }
}

async function dropped(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  state.artifact = await sha256(bytes);
  state.artifactName = file.name;
  $('search-kind').value = 'artifact_sha256';
  $('search-value').value = hex(state.artifact);
  await search('artifact_sha256', hex(state.artifact));
}

async function route() {
  const parts = location.hash.replace(/^#\/?/, '').split('/');
  if (parts[0] === 'entry' && /^\d+$/.test(parts[1] ?? '')) await showEntry(Number(parts[1]));
  else if (parts[0] === 'search' && parts[1]) {
    const value = decodeURIComponent(parts.slice(2, 3).join(''));
    $('search-kind').value = parts[1];
    $('search-value').value = value;
    await search(parts[1], value, parts[3]);
  }
}

async function applyPolicy() {
  const status = $('policy-status');
  const text = $('policy-text').value;
  let outcome;
  try {
    state.policy = text.trim() ? await parsePolicy(text) : null;
    status.textContent = state.policy ? `Policy applied: ${state.policy.logKeys.length} log key(s), ${state.policy.measurements.length} endorsed measurement(s).` : 'No policy.';
    outcome = state.policy ? 'applied' : 'none';
  } catch (e) {
    state.policy = null;
    status.textContent = `Policy refused: ${e.code ?? 'bad_policy'}: ${e.detail ?? e.message}`;
    outcome = 'refused';
    status.dataset.code = e.code ?? 'bad_policy';
  }
  try {
    await loadHead();
    if (location.hash.startsWith('#/entry/')) await route();
  } finally {
    // Marked last, so that once it is set every verdict shown is the new
    // policy's (Firefox showed the previous verdict for a moment).
    status.dataset.policy = outcome;
  }
}

function wire() {
  $('search-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.artifact = null;
    const value = $('search-value').value.trim();
    const kind = $('search-kind').value;
    location.hash = `#/search/${kind}/${encodeURIComponent(kind === 'repository' ? value : value.toLowerCase())}`;
  });
  const drop = $('drop');
  drop.addEventListener('dragover', (ev) => { ev.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (ev) => {
    ev.preventDefault();
    drop.classList.remove('over');
    const file = ev.dataTransfer?.files?.[0];
    if (file) dropped(file);
  });
  $('drop-file').addEventListener('change', (ev) => { const f = ev.target.files?.[0]; if (f) dropped(f); });
  $('policy-apply').addEventListener('click', applyPolicy);
  $('policy-clear').addEventListener('click', () => { $('policy-text').value = ''; applyPolicy(); });
  $('policy-file').addEventListener('change', async (ev) => {
    const f = ev.target.files?.[0];
    if (f && f.size <= 1 << 20) { $('policy-text').value = await f.text(); await applyPolicy(); }
  });
  window.addEventListener('hashchange', route);
}

// For tests and the curious: the verifier as the page runs it.
window.attestlog = {
  parsePolicy: async (text) => {
    try {
      await parsePolicy(text);
      return 'valid';
    } catch (e) {
      return e.code ?? `internal: ${e.message}`;
    }
  },
  verifyEntry: async (entryB64, index, proofB64, note, artifactHex) => {
    try {
      const input = { entry: fromB64(entryB64), index, note, proof: proofB64.map(fromB64), artifact: fromHex(artifactHex) };
      const result = await verifyEntry(input, state.trust, null);
      return result.valid ? 'valid' : result.code;
    } catch (e) {
      return e.code ?? `internal: ${e.message}`;
    }
  },
  verifyDocument: async (docB64, rootsB64) => {
    try {
      await verifyDocument(fromB64(docB64), rootsB64.map(fromB64));
      return 'valid';
    } catch (e) {
      return e.code ?? `internal: ${e.message}`;
    }
  },
};

async function start() {
  wire();
  try {
    await loadTrust();
  } catch (e) {
    showError($('head'), e);
    return;
  }
  await loadHead();
  await route();
  document.body.dataset.ready = 'true';
}

start();
