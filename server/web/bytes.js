// Byte helpers shared by the verifier modules: hex, base64, UTF-8, hashing.
// Everything here is total: bad input throws a VerifyError with a code.

export class VerifyError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
    this.detail = message;
  }
}

export const fail = (code, message) => { throw new VerifyError(code, message); };

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export function fromHex(text) {
  if (typeof text !== 'string' || text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) return null;
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

// Strict standard base64 with padding; null when not canonical.
export function fromB64(text) {
  if (typeof text !== 'string' || text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return null;
  const pad = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  const out = new Uint8Array((text.length / 4) * 3 - pad);
  let o = 0;
  for (let i = 0; i < text.length; i += 4) {
    const n = [0, 1, 2, 3].map((j) => (text[i + j] === '=' ? 0 : B64.indexOf(text[i + j])));
    const v = (n[0] << 18) | (n[1] << 12) | (n[2] << 6) | n[3];
    for (const b of [(v >> 16) & 255, (v >> 8) & 255, v & 255]) if (o < out.length) out[o++] = b;
  }
  if (b64(out) !== text) return null; // non-zero padding bits
  return out;
}

export function b64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 3) {
    const v = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    s += B64[(v >> 18) & 63] + B64[(v >> 12) & 63];
    s += i + 1 < bytes.length ? B64[(v >> 6) & 63] : '=';
    s += i + 2 < bytes.length ? B64[v & 63] : '=';
  }
  return s;
}

export const utf8 = (text) => new TextEncoder().encode(text);
export const fromUtf8 = (bytes) => new TextDecoder('utf-8', { fatal: true }).decode(bytes);

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

export function equal(a, b) {
  if (!a || !b || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
}

export async function sha384(bytes) {
  return new Uint8Array(await crypto.subtle.digest('SHA-384', bytes));
}

export function u64be(n) {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(n));
  return out;
}
