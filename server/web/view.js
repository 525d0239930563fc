// DOM rendering. Every text that came from the log goes through
// textContent (never innerHTML), and links are made only from http(s) URLs.

import { hex } from './bytes.js';

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

export function facts(dl, rows) {
  dl.replaceChildren(...rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
}

const code = (text) => el('span', { class: 'code' }, text);

// A repository URL as a link when it is an https URL of GitHub or GitLab.
export function repoLink(uri, commit) {
  let url;
  const plain = el('span', { class: 'mono' }, commit ?? uri);
  try { url = new URL(uri.replace(/^git\+/, '').replace(/\.git$/, '')); } catch { return plain; }
  if (url.protocol !== 'https:' || !['github.com', 'gitlab.com'].includes(url.hostname)) return plain;
  const href = commit ? `${url.href.replace(/\/$/, '')}${url.hostname === 'gitlab.com' ? '/-' : ''}/commit/${commit}` : url.href;
  return el('a', { href, rel: 'noopener noreferrer', target: '_blank', class: 'mono' }, commit ?? uri);
}

export function verdict(result) {
  return result.valid
    ? el('p', { class: 'verdict valid', 'data-verdict': 'valid' }, 'valid: every step below passed in this browser')
    : el('p', { class: 'verdict invalid', 'data-verdict': 'invalid', 'data-code': result.code ?? '' }, 'invalid: ', code(result.code ?? 'unknown'));
}

export function steps(result) {
  return el('ol', { class: 'steps' }, result.steps.map((s) => el('li', {
    class: s.ok === true ? 'pass' : s.ok === false ? 'fail' : 'skip',
    'data-step': s.id,
    'data-code': s.code ?? '',
  },
  el('span', { class: 'mark' }, s.ok === true ? 'passed' : s.ok === false ? 'FAILED' : 'skipped'), ' ', s.label,
  s.code ? [' ', code(s.code)] : null,
  s.detail ? el('div', { class: 'note' }, s.detail) : null)));
}

function certTable(chain, hashes) {
  return el('table', {}, el('tr', {}, el('th', {}, '#'), el('th', {}, 'subject'), el('th', {}, 'valid'), el('th', {}, 'SHA-256')),
    chain.map((c, i) => el('tr', {}, el('td', {}, i === chain.length - 1 ? 'leaf' : i === 0 ? 'root' : String(i)),
      el('td', {}, c.subjectText),
      el('td', {}, `${new Date(c.notBefore * 1000).toISOString()} – ${new Date(c.notAfter * 1000).toISOString()}`),
      el('td', { class: 'mono' }, hashes[i]))));
}

const time = (ms) => new Date(ms).toISOString();

// The entry view: verdict, steps, then what the entry says.
export function entryView(index, result, downloads, pcrStatus, chainHashes) {
  const s = result.statement;
  const d = result.document;
  const parts = [el('h2', {}, `Entry ${index}`), verdict(result), steps(result)];
  if (s) {
    const bd = s.buildDefinition;
    parts.push(el('h3', {}, 'Claim'), el('dl', {},
      el('dt', {}, 'subjects'), el('dd', {}, s.subjects.map((x) => el('div', {}, x.name, ' ', el('span', { class: 'mono' }, `sha256:${x.sha256}`)))),
      el('dt', {}, 'repository'), el('dd', {}, repoLink(s.source.uri)),
      el('dt', {}, 'commit'), el('dd', {}, repoLink(s.source.uri, s.source.commit)),
      el('dt', {}, 'ref'), el('dd', {}, s.sourceRef?.name ?? (s.sourceRef?.unreferenced ? 'in no branch or tag (unreferenced)' : 'not recorded')),
      el('dt', {}, 'command'), el('dd', { class: 'mono' }, Array.isArray(s.command) ? s.command.join(' ') : '(not recorded)'),
      el('dt', {}, 'command from'), el('dd', {}, bd ? (bd.override ? 'a command-line override' : `${bd.path} (sha256 ${bd.sha256})`) : 'not recorded'),
      el('dt', {}, 'builder'), el('dd', {}, s.builder.id, ' ', el('span', { class: 'mono' }, JSON.stringify(s.builder.version ?? {}))),
      el('dt', {}, 'build type'), el('dd', { class: 'mono' }, String(s.buildType)),
      el('dt', {}, 'started'), el('dd', {}, String(s.metadata.startedOn ?? '')),
      el('dt', {}, 'finished'), el('dd', {}, String(s.metadata.finishedOn ?? ''))));
  }
  if (d) {
    parts.push(el('h3', {}, 'Attestation'), el('dl', {},
      el('dt', {}, 'attested at'), el('dd', {}, time(d.timestampMs)),
      el('dt', {}, 'module id'), el('dd', { class: 'mono' }, d.moduleId),
      el('dt', {}, 'debug mode'), el('dd', {}, d.debug ? 'yes (PCR0-2 zero)' : 'no'),
      [0, 1, 2].map((i) => [el('dt', {}, `PCR${i}`), el('dd', { class: 'mono' }, d.pcrs.get(i) ? hex(d.pcrs.get(i)) : '(absent)')]),
      el('dt', {}, 'PCR status'), el('dd', { 'data-pcr-status': '' }, pcrStatus)));
    if (d.chain) parts.push(el('h3', {}, 'Certificate chain'), certTable(d.chain, chainHashes));
  }
  parts.push(el('h3', {}, 'Download'), el('div', { class: 'row' },
    el('a', { href: downloads.entry, download: `entry-${index}.bin` }, 'raw entry'), ' · ',
    el('a', { href: downloads.bundle, download: downloads.bundleName, id: 'bundle-link' }, `offline bundle (${downloads.bundleName})`)));
  return parts;
}
