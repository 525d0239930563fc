// Signed notes (c2sp.org/signed-note), checkpoints (c2sp.org/tlog-checkpoint)
// and witness cosignatures (c2sp.org/tlog-cosignature, Ed25519 type 0x04),
// verified with Web Crypto. Codes as the Rust verifier's
// (client/src/tlog/checkpoint.rs). ML-DSA-44 (0x06) witness keys are listed
// but cannot be checked here (Web Crypto has no ML-DSA): their lines never
// count toward the quorum.

import { concat, fail, fromB64, fromUtf8, sha256, utf8 } from './bytes.js';

const MAX_NOTE = 1 << 20;
const MAX_SIGNATURES = 100;

// "name+hexid+base64(type||key)" -> {name, id, type, key, text}; null if malformed.
export async function parseVerifierKey(text) {
  const m = /^([^+\s]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/=]+)$/.exec(text ?? '');
  if (!m) return null;
  const raw = fromB64(m[3]);
  if (!raw || raw.length < 2) return null;
  const type = raw[0];
  const key = raw.subarray(1);
  if ((type === 0x01 || type === 0x04) && key.length !== 32) return null;
  const h = await sha256(concat(utf8(m[1]), new Uint8Array([0x0a]), raw));
  const id = ((h[0] << 24) | (h[1] << 16) | (h[2] << 8) | h[3]) >>> 0;
  if (id !== parseInt(m[2], 16)) return null;
  return { name: m[1], id, type, key, text };
}

function parseNote(note) {
  if (typeof note !== 'string' || note.length > MAX_NOTE) fail('invalid_note_text', 'note too large');
  const split = note.lastIndexOf('\n\n');
  if (split < 0 || !note.endsWith('\n')) fail('malformed_note', 'not text, blank line, signature lines');
  const text = note.slice(0, split + 1);
  const lines = note.slice(split + 2, -1).split('\n');
  if (lines.length > MAX_SIGNATURES) fail('too_many_signatures', `${lines.length} signature lines`);
  const sigs = lines.map((line) => {
    const m = /^\u2014 (\S+) ([A-Za-z0-9+/=]+)$/.exec(line);
    const raw = m && fromB64(m[2]);
    if (!raw || raw.length < 5) fail('malformed_note', `bad signature line ${JSON.stringify(line.slice(0, 80))}`);
    const id = ((raw[0] << 24) | (raw[1] << 16) | (raw[2] << 8) | raw[3]) >>> 0;
    return { name: m[1], id, sig: raw.subarray(4) };
  });
  return { text, sigs };
}

export function parseCheckpointBody(text) {
  const lines = text.split('\n');
  lines.pop();
  const [origin, size, root, ...ext] = lines;
  const hash = root !== undefined ? fromB64(root) : null;
  if (!origin || !/^(0|[1-9][0-9]{0,19})$/.test(size ?? '') || !hash || hash.length !== 32 || ext.some((l) => !l)) {
    fail('malformed_checkpoint', 'the body is not origin, size, root hash, extension lines');
  }
  if (BigInt(size) >= 2n ** 64n) fail('malformed_checkpoint', 'size beyond 64 bits');
  return { origin, size: Number(size), rootHash: hash, body: text };
}

async function ed25519(key, sig, msg) {
  if (sig.length !== 64) return false;
  try {
    const k = await crypto.subtle.importKey('raw', key, { name: 'Ed25519' }, false, ['verify']);
    return await crypto.subtle.verify({ name: 'Ed25519' }, k, sig, msg);
  } catch {
    return false;
  }
}

// Verifies a signed checkpoint under the trusted log keys and witness keys.
// With `origin` (a policy's log_origin) the checkpoint's origin must equal
// it and any of `logKeys` may sign; without, the origin selects the key
// named after it (client/src/verify.rs). Returns {checkpoint, cosigners:
// [{name, time}], unverifiable: [names]}.
export async function verifyCheckpoint(note, logKeys, witnessKeys, quorum, origin = null) {
  const { text, sigs } = parseNote(note);
  try { fromUtf8(utf8(text)); } catch { fail('malformed_note', 'text is not UTF-8'); }
  const checkpoint = parseCheckpointBody(text);
  let keys = logKeys;
  if (origin !== null) {
    if (checkpoint.origin !== origin) fail('origin_mismatch', `origin ${JSON.stringify(checkpoint.origin)} is not the expected ${JSON.stringify(origin)}`);
  } else {
    keys = logKeys.filter((k) => k.name === checkpoint.origin).slice(0, 1);
    if (!keys.length) fail('unknown_log', `no trusted log key for origin ${JSON.stringify(checkpoint.origin)}`);
  }
  let logSigned = false;
  const cosigners = [];
  const unverifiable = [];
  for (const s of sigs) {
    const logKey = keys.find((k) => s.name === k.name && s.id === k.id);
    if (logKey) {
      if (!(await ed25519(logKey.key, s.sig, utf8(text)))) {
        fail('invalid_log_signature', `log signature by ${s.name}+${s.id.toString(16).padStart(8, '0')} does not verify`);
      }
      logSigned = true;
      continue;
    }
    const w = witnessKeys.find((k) => k.name === s.name && k.id === s.id);
    if (!w) continue;
    if (w.type !== 0x04) { unverifiable.push(w.name); continue; }
    if (s.sig.length !== 72) fail('invalid_cosignature', `cosignature by ${w.name} is not 72 bytes`);
    const time = new DataView(s.sig.buffer, s.sig.byteOffset, 8).getBigUint64(0);
    const msg = concat(utf8(`cosignature/v1\ntime ${time}\n`), utf8(text));
    if (!(await ed25519(w.key, s.sig.subarray(8), msg))) fail('invalid_cosignature', `cosignature by ${w.name} does not verify`);
    if (!cosigners.some((c) => c.name === w.name)) cosigners.push({ name: w.name, time: Number(time) });
  }
  if (!logSigned) fail('missing_log_signature', 'no valid signature by the log key');
  if (cosigners.length < quorum) fail('witness_quorum', `${cosigners.length} of ${quorum} required cosignatures`);
  return { checkpoint, cosigners, unverifiable };
}
