// A small DER reader for the X.509 certificates of Nitro attestations
// (RFC 5280 profile: P-384 keys, ecdsa-with-SHA384). Strict DER lengths
// (definite, minimal); every read is bounds-checked. Throws an Error naming
// what was wrong; callers turn it into malformed_certificate.

import { equal, fromHex } from './bytes.js';

export const OID = {
  ecdsaWithSha384: fromHex('2a8648ce3d040303'),
  ecPublicKey: fromHex('2a8648ce3d0201'),
  secp384r1: fromHex('2b81040022'),
  basicConstraints: fromHex('551d13'),
  keyUsage: fromHex('551d0f'),
};

// One TLV at r.i: {tag, start, body (subarray), end}.
export function tlv(bytes, at) {
  if (at + 2 > bytes.length) throw new Error('truncated element');
  const tag = bytes[at];
  if ((tag & 31) === 31) throw new Error('multi-byte tags are not used here');
  let len = bytes[at + 1];
  let p = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 3) throw new Error('indefinite or oversized length');
    if (p + n > bytes.length) throw new Error('truncated length');
    len = 0;
    for (let k = 0; k < n; k++) len = len * 256 + bytes[p++];
    if (len < 128 || (n > 1 && bytes[at + 2] === 0)) throw new Error('non-minimal length');
  }
  if (len > bytes.length - p) throw new Error('length beyond the input');
  return { tag, start: at, body: bytes.subarray(p, p + len), end: p + len, raw: bytes.subarray(at, p + len) };
}

// The elements of a constructed value's body.
export function children(body) {
  const out = [];
  for (let i = 0; i < body.length;) {
    const t = tlv(body, i);
    out.push(t);
    i = t.end;
  }
  return out;
}

function expect(t, tag, what) {
  if (!t || t.tag !== tag) throw new Error(`${what}: expected tag 0x${tag.toString(16)}`);
  return t;
}

function time(t) {
  const s = new TextDecoder().decode(t.body);
  let m;
  if (t.tag === 0x17 && (m = /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s))) {
    const yy = Number(m[1]);
    m = [m[0], String(yy >= 50 ? 1900 + yy : 2000 + yy), ...m.slice(2)];
  } else if (t.tag === 0x18 && (m = /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s))) {
    // GeneralizedTime: as is
  } else {
    throw new Error('bad validity time');
  }
  const ms = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
  return Math.floor(ms / 1000);
}

const NAMES = { '550403': 'CN', '55040a': 'O', '55040b': 'OU', '550406': 'C', '550408': 'ST', '550407': 'L' };

// A Name as "CN=..., O=...", for display only (comparisons use the DER bytes).
export function nameText(name) {
  const parts = [];
  for (const rdn of children(name.body)) {
    for (const atv of children(rdn.body)) {
      const [oid, value] = children(atv.body);
      const key = NAMES[Array.from(oid.body, (b) => b.toString(16).padStart(2, '0')).join('')] ?? 'OID';
      let text;
      try { text = new TextDecoder('utf-8', { fatal: true }).decode(value.body); } catch { text = '?'; }
      parts.push(`${key}=${text}`);
    }
  }
  return parts.join(', ');
}

// Parses the certificate fields a Nitro chain check needs.
export function parseCertificate(der) {
  const cert = expect(tlv(der, 0), 0x30, 'Certificate');
  if (cert.end !== der.length) throw new Error('trailing bytes after the certificate');
  const [tbs, alg, sig, ...extra] = children(cert.body);
  if (extra.length) throw new Error('Certificate has more than 3 elements');
  expect(tbs, 0x30, 'tbsCertificate');
  expect(alg, 0x30, 'signatureAlgorithm');
  expect(sig, 0x03, 'signatureValue');
  const algParts = children(alg.body);
  if (algParts.length !== 1 || !equal(expect(algParts[0], 0x06, 'algorithm').body, OID.ecdsaWithSha384)) {
    throw new Error('signature algorithm is not ecdsa-with-SHA384');
  }
  if (sig.body[0] !== 0) throw new Error('signature bit string has unused bits');
  const f = children(tbs.body);
  let k = 0;
  if (f[k] && f[k].tag === 0xa0) k++;
  expect(f[k++], 0x02, 'serialNumber');
  const tbsAlg = expect(f[k++], 0x30, 'signature');
  if (!equal(tbsAlg.raw, alg.raw)) throw new Error('tbsCertificate signature algorithm differs');
  const issuer = expect(f[k++], 0x30, 'issuer');
  const validity = children(expect(f[k++], 0x30, 'validity').body);
  if (validity.length !== 2) throw new Error('validity is not two times');
  const subject = expect(f[k++], 0x30, 'subject');
  const spki = children(expect(f[k++], 0x30, 'subjectPublicKeyInfo').body);
  const spkiAlg = children(expect(spki[0], 0x30, 'algorithm').body);
  if (!equal(spkiAlg[0]?.body, OID.ecPublicKey) || spkiAlg[1]?.tag !== 0x06 || !equal(spkiAlg[1].body, OID.secp384r1)) {
    throw new Error('public key is not EC P-384');
  }
  const point = expect(spki[1], 0x03, 'subjectPublicKey').body;
  if (point.length !== 98 || point[0] !== 0 || point[1] !== 0x04) {
    throw new Error('public key is not an uncompressed P-384 point');
  }
  let basicConstraints = null;
  let keyUsage = null;
  for (; k < f.length; k++) {
    if (f[k].tag !== 0xa3) continue;
    const exts = children(expect(children(f[k].body)[0], 0x30, 'extensions').body);
    for (const ext of exts) {
      const parts = children(expect(ext, 0x30, 'extension').body);
      const oid = expect(parts[0], 0x06, 'extnID').body;
      let critical = false;
      let value = parts[1];
      if (value?.tag === 0x01) {
        critical = value.body.length === 1 && value.body[0] === 0xff;
        value = parts[2];
      }
      expect(value, 0x04, 'extnValue');
      if (equal(oid, OID.basicConstraints)) {
        const bc = children(expect(tlv(value.body, 0), 0x30, 'basicConstraints').body);
        let ca = false;
        let pathLen = null;
        for (const e of bc) {
          if (e.tag === 0x01) ca = e.body[0] === 0xff;
          else if (e.tag === 0x02) pathLen = e.body.reduce((a, b) => a * 256 + b, 0);
        }
        basicConstraints = { critical, ca, pathLen };
      } else if (equal(oid, OID.keyUsage)) {
        const bits = expect(tlv(value.body, 0), 0x03, 'keyUsage').body;
        const first = bits[1] ?? 0;
        keyUsage = { digitalSignature: (first & 0x80) !== 0, keyCertSign: (first & 0x04) !== 0 };
      }
    }
  }
  return {
    der,
    tbs: tbs.raw,
    signature: sig.body.subarray(1),
    issuer: issuer.raw,
    subject: subject.raw,
    subjectText: nameText(subject),
    issuerText: nameText(issuer),
    notBefore: time(validity[0]),
    notAfter: time(validity[1]),
    publicKey: point.subarray(1),
    basicConstraints,
    keyUsage,
  };
}

// An ECDSA-Sig-Value (SEQUENCE of two INTEGERs) as raw r || s of 48 bytes
// each, the form Web Crypto verifies; null when it cannot be one.
export function ecdsaRaw(sig) {
  try {
    const seq = tlv(sig, 0);
    if (seq.tag !== 0x30 || seq.end !== sig.length) return null;
    const ints = children(seq.body);
    if (ints.length !== 2) return null;
    const out = new Uint8Array(96);
    for (let k = 0; k < 2; k++) {
      if (ints[k].tag !== 0x02) return null;
      let v = ints[k].body;
      if (v.length === 0 || v[0] & 0x80) return null; // negative
      if (v.length > 1 && v[0] === 0 && !(v[1] & 0x80)) return null; // not minimal
      while (v.length > 0 && v[0] === 0) v = v.subarray(1);
      if (v.length > 48) return null;
      out.set(v, k * 48 + 48 - v.length);
    }
    return out;
  } catch {
    return null;
  }
}
