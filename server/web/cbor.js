// A small CBOR (RFC 8949) decoder and the few encoders COSE needs. Bounded:
// nesting depth at most 16, every length checked against the input before
// anything is allocated. Maps decode to arrays of [key, value] pairs, so the
// caller sees duplicate and non-text keys; integers beyond 2^53 are BigInt.
// A decoding failure throws an Error whose message says where.

const MAX_DEPTH = 16;
export const BREAK = Symbol('break');

export function decode(bytes) {
  const r = { b: bytes, i: 0 };
  const value = item(r, 0);
  if (value === BREAK) throw new Error('unexpected break');
  return { value, rest: bytes.length - r.i };
}

function need(r, n) {
  if (n > r.b.length - r.i) throw new Error(`truncated at byte ${r.i}`);
}

function arg(r, info) {
  if (info < 24) return info;
  const sizes = { 24: 1, 25: 2, 26: 4, 27: 8 };
  const n = sizes[info];
  if (!n) throw new Error(`reserved additional info ${info} at byte ${r.i}`);
  need(r, n);
  let v = 0n;
  for (let k = 0; k < n; k++) v = (v << 8n) | BigInt(r.b[r.i++]);
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function count(v, r) {
  if (typeof v === 'bigint' || v > r.b.length - r.i) throw new Error(`length ${v} beyond the input`);
  return v;
}

function chunks(r, major, depth) {
  const parts = [];
  for (;;) {
    need(r, 1);
    if (r.b[r.i] === 0xff) { r.i++; break; }
    const ib = r.b[r.i++];
    if (ib >> 5 !== major || (ib & 31) === 31) throw new Error('bad chunk in indefinite string');
    const n = count(arg(r, ib & 31), r);
    parts.push(r.b.subarray(r.i, r.i + n));
    r.i += n;
    if (parts.length > 65536 || depth > MAX_DEPTH) throw new Error('too many chunks');
  }
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

function item(r, depth) {
  if (depth > MAX_DEPTH) throw new Error('nesting deeper than 16');
  need(r, 1);
  const ib = r.b[r.i++];
  const major = ib >> 5;
  const info = ib & 31;
  if (info === 31) {
    if (major === 7) return BREAK;
    if (major === 2 || major === 3) {
      const raw = chunks(r, major, depth);
      return major === 2 ? raw : text(raw);
    }
    if (major === 4 || major === 5) {
      const out = [];
      for (;;) {
        const k = item(r, depth + 1);
        if (k === BREAK) break;
        if (major === 4) { out.push(k); continue; }
        const v = item(r, depth + 1);
        if (v === BREAK) throw new Error('map ends after a key');
        out.push([k, v]);
      }
      return major === 4 ? out : { map: out };
    }
    throw new Error(`indefinite length for major type ${major}`);
  }
  const v = arg(r, info);
  switch (major) {
    case 0: return v;
    case 1: return typeof v === 'bigint' ? -1n - v : (v < Number.MAX_SAFE_INTEGER ? -1 - v : -1n - BigInt(v));
    case 2: case 3: {
      const n = count(v, r);
      const raw = r.b.slice(r.i, r.i + n);
      r.i += n;
      return major === 2 ? raw : text(raw);
    }
    case 4: case 5: {
      // Each item takes at least one byte: a count beyond the input is a lie.
      const n = count(v, r);
      const out = [];
      for (let k = 0; k < n; k++) {
        const a = item(r, depth + 1);
        if (a === BREAK) throw new Error('unexpected break');
        if (major === 4) { out.push(a); continue; }
        const b = item(r, depth + 1);
        if (b === BREAK) throw new Error('unexpected break');
        out.push([a, b]);
      }
      return major === 4 ? out : { map: out };
    }
    case 6: {
      const value = item(r, depth + 1);
      if (value === BREAK) throw new Error('unexpected break');
      return { tag: v, value };
    }
    default:
      if (info === 20) return false;
      if (info === 21) return true;
      if (info === 22) return null;
      if (info === 23) return undefined;
      if (info >= 25 && info <= 27) return { float: true };
      return { simple: v };
  }
}

function text(raw) {
  try { return new TextDecoder('utf-8', { fatal: true }).decode(raw); } catch { throw new Error('text is not UTF-8'); }
}

// The minimal head of a major type and length.
export function head(major, n) {
  const m = major << 5;
  if (n < 24) return [m | n];
  if (n < 256) return [m | 24, n];
  if (n < 65536) return [m | 25, n >> 8, n & 255];
  return [m | 26, (n >>> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255];
}

export function bstr(bytes) {
  const out = new Uint8Array(head(2, bytes.length).length + bytes.length);
  const h = head(2, bytes.length);
  out.set(h, 0);
  out.set(bytes, h.length);
  return out;
}
