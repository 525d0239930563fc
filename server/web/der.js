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
// `any`: the element is an ASN.1 ANY (an attribute value), whose content a
// DER reader does not check beyond its tag and length.
export function tlv(bytes, at, any = false) {
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
  if (tag < 0x40 && !UNIVERSAL.has(tag)) throw new Error(`unknown universal tag 0x${tag.toString(16)}`);
  const body = bytes.subarray(p, p + len);
  if (!any) checkPrimitive(tag, body);
  return { tag, start: at, body, end: p + len, raw: bytes.subarray(at, p + len) };
}

// The universal tags a strict DER reader knows (as the Rust verifier's
// x509-cert/der); any other universal tag makes the certificate malformed.
const UNIVERSAL = new Set([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x09, 0x0a, 0x0c, 0x0d, 0x12, 0x13,
  0x14, 0x15, 0x16, 0x17, 0x18, 0x1a, 0x1b, 0x1e, 0x30, 0x31]);

// DER's rules for the primitive types a certificate uses.
function checkPrimitive(tag, b) {
  switch (tag) {
    case 0x01:
      if (b.length !== 1 || (b[0] !== 0 && b[0] !== 0xff)) throw new Error('BOOLEAN is not DER');
      break;
    case 0x02:
      if (!b.length || (b.length > 1 && ((b[0] === 0 && b[1] < 0x80) || (b[0] === 0xff && b[1] >= 0x80)))) {
        throw new Error('INTEGER is not minimal');
      }
      break;
    case 0x03:
      if (!b.length || b[0] > 7 || (b.length === 1 && b[0] !== 0)) throw new Error('bad BIT STRING');
      break;
    case 0x05:
      if (b.length) throw new Error('NULL with content');
      break;
    case 0x06:
      // As const-oid reads it: one byte for the first two arcs (first arc
      // at most 2, second at most 39), then base-128 arcs of at most 32 bits.
      if (!b.length || b.length > 39 || b[0] >= 120 || b[b.length - 1] & 0x80) throw new Error('bad OBJECT IDENTIFIER');
      for (let i = 1, arc = 0; i < b.length; i++) {
        arc = arc * 128 + (b[i] & 0x7f);
        if (arc > 0xffffffff) throw new Error('OBJECT IDENTIFIER arc beyond 32 bits');
        if (!(b[i] & 0x80)) arc = 0;
      }
      break;
    default:
  }
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
  const [y, mo, d, h, mi, se] = m.slice(1, 7).map(Number);
  const date = new Date(Date.UTC(y, mo - 1, d, h, mi, se));
  if (date.getUTCFullYear() !== y || date.getUTCMonth() !== mo - 1 || date.getUTCDate() !== d
    || date.getUTCHours() !== h || date.getUTCMinutes() !== mi || date.getUTCSeconds() !== se) {
    throw new Error('validity time out of range');
  }
  return Math.floor(date.getTime() / 1000);
}

const NAMES = { '550403': 'CN', '55040a': 'O', '55040b': 'OU', '550406': 'C', '550408': 'ST', '550407': 'L' };

// A Name (SEQUENCE OF SET OF SEQUENCE {type, value}), checked, as
// "CN=..., O=..." for display (comparisons use the DER bytes).
export function nameText(name) {
  const parts = [];
  for (const rdn of children(name.body)) {
    expect(rdn, 0x31, 'RelativeDistinguishedName');
    const atvs = children(rdn.body);
    if (!atvs.length) throw new Error('empty RelativeDistinguishedName');
    for (const atv of atvs) {
      const body = expect(atv, 0x30, 'AttributeTypeAndValue').body;
      const oid = expect(tlv(body, 0), 0x06, 'attribute type');
      const value = tlv(body, oid.end, true);
      if (value.end !== body.length) throw new Error('AttributeTypeAndValue is not type and value');
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
  if (f[k] && f[k].tag === 0xa0) {
    const v = children(f[k++].body);
    if (v.length !== 1 || v[0].tag !== 0x02 || v[0].body.length !== 1 || ![1, 2].includes(v[0].body[0])) {
      throw new Error('version is not v2 or v3');
    }
  }
  if (expect(f[k++], 0x02, 'serialNumber').body.length > 21) throw new Error('serialNumber longer than 20 bytes');
  const tbsAlg = expect(f[k++], 0x30, 'signature');
  if (!equal(tbsAlg.raw, alg.raw)) throw new Error('tbsCertificate signature algorithm differs');
  const issuer = expect(f[k++], 0x30, 'issuer');
  const validity = children(expect(f[k++], 0x30, 'validity').body);
  if (validity.length !== 2) throw new Error('validity is not two times');
  const subject = expect(f[k++], 0x30, 'subject');
  const spki = children(expect(f[k++], 0x30, 'subjectPublicKeyInfo').body);
  if (spki.length !== 2) throw new Error('subjectPublicKeyInfo is not algorithm and key');
  const spkiAlg = children(expect(spki[0], 0x30, 'algorithm').body);
  if (spkiAlg.length !== 2 || spkiAlg[0].tag !== 0x06 || !equal(spkiAlg[0]?.body, OID.ecPublicKey) || spkiAlg[1]?.tag !== 0x06 || !equal(spkiAlg[1].body, OID.secp384r1)) {
    throw new Error('public key is not EC P-384');
  }
  const point = expect(spki[1], 0x03, 'subjectPublicKey').body;
  if (point.length !== 98 || point[0] !== 0 || point[1] !== 0x04) {
    throw new Error('public key is not an uncompressed P-384 point');
  }
  let basicConstraints = null;
  let keyUsage = null;
  // issuerUniqueID [1], subjectUniqueID [2], extensions [3]: each optional, in order.
  for (const tag of [0x81, 0x82]) if (f[k]?.tag === tag) k++;
  const extField = f[k]?.tag === 0xa3 ? f[k++] : null;
  if (k !== f.length) throw new Error('unexpected field in tbsCertificate');
  const seen = [];
  for (const outer of extField ? [extField] : []) {
    const wrapped = children(outer.body);
    if (wrapped.length !== 1) throw new Error('extensions [3] holds more than one element');
    const exts = children(expect(wrapped[0], 0x30, 'extensions').body);
    for (const ext of exts) {
      const parts = children(expect(ext, 0x30, 'extension').body);
      const oid = expect(parts[0], 0x06, 'extnID').body;
      let critical = false;
      let value = parts[1];
      if (value?.tag === 0x01) {
        critical = value.body[0] === 0xff;
        value = parts[2];
      }
      expect(value, 0x04, 'extnValue');
      if (parts.length !== (parts[1]?.tag === 0x01 ? 3 : 2)) throw new Error('extension has extra fields');
      const known = equal(oid, OID.basicConstraints) || equal(oid, OID.keyUsage);
      if (known && seen.some((o) => equal(o, oid))) throw new Error('duplicate basicConstraints or keyUsage');
      seen.push(oid);
      if (equal(oid, OID.basicConstraints)) {
        const bc = children(expect(tlv(value.body, 0), 0x30, 'basicConstraints').body);
        let ca = false;
        let pathLen = null;
        let j = 0;
        if (bc[j]?.tag === 0x01) ca = bc[j++].body[0] === 0xff;
        if (bc[j]?.tag === 0x02) {
          const v = bc[j++].body;
          pathLen = v.reduce((a, b) => a * 256 + b, 0);
          if (v[0] & 0x80 || pathLen > 255) throw new Error('pathLenConstraint out of range');
        }
        if (j !== bc.length) throw new Error('basicConstraints has unexpected fields');
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
