// AWS Nitro attestation documents: the COSE_Sign1 envelope in the NSM's one
// encoding, the payload fields and limits, and AWS's verification process
// (pinned root, chain, constraints, validity at the document's own time,
// ES384 signature). The same rules, order and codes as the Rust verifier
// (client/src/nitro, spec/entry.md).

import { bstr, decode, head } from './cbor.js';
import { parseCertificate, ecdsaRaw } from './der.js';
import { concat, equal, fail, utf8 } from './bytes.js';

const MAX_DOCUMENT_LEN = 65535;
const MAX_PAYLOAD_LEN = 16384;
const NSM_PROTECTED = new Uint8Array([0xa1, 0x01, 0x38, 0x22]);

function envelope(bytes) {
  if (bytes.length > MAX_DOCUMENT_LEN) fail('too_large', `document of ${bytes.length} bytes`);
  let d;
  try { d = decode(bytes); } catch (e) { fail('malformed_cose', `not CBOR: ${e.message}`); }
  if (d.rest) fail('malformed_cose', `${d.rest} trailing bytes after the envelope`);
  let v = d.value;
  let tagged = false;
  if (v && typeof v === 'object' && 'tag' in v) {
    if (v.tag !== 18) fail('malformed_cose', `unexpected CBOR tag ${v.tag}`);
    tagged = true;
    v = v.value;
  }
  if (!Array.isArray(v)) fail('malformed_cose', 'envelope is not an array');
  if (v.length !== 4) fail('malformed_cose', 'envelope is not 4 items');
  const [protectedHdr, unprotected, payload, signature] = v;
  if (!(protectedHdr instanceof Uint8Array)) fail('malformed_cose', 'protected header is not a byte string');
  if (payload === null) fail('malformed_cose', 'payload is nil (detached)');
  if (!(payload instanceof Uint8Array)) fail('malformed_cose', 'payload is not a byte string');
  if (!(signature instanceof Uint8Array)) fail('malformed_cose', 'signature is not a byte string');
  if (tagged) fail('tagged_envelope', 'only the untagged COSE_Sign1 the NSM emits is accepted');
  if (!unprotected || !Array.isArray(unprotected.map)) fail('malformed_cose', 'unprotected header is not a map');
  if (unprotected.map.length) fail('unprotected_header', 'must be the empty map');
  if (!equal(protectedHdr, NSM_PROTECTED)) {
    let same = false;
    try {
      const p = decode(protectedHdr);
      same = !p.rest && p.value?.map?.length === 1 && p.value.map[0][0] === 1 && p.value.map[0][1] === -35;
    } catch { /* another header */ }
    if (same) fail('noncanonical_encoding', 'the ES384 header in other bytes than a1 01 38 22');
    fail('unsupported_algorithm', 'protected header must be {1: -35} (ES384)');
  }
  if (signature.length !== 96) fail('malformed_cose', 'signature must be 96 bytes (raw r || s)');
  if (payload.length > MAX_PAYLOAD_LEN) fail('payload_too_large', `${payload.length} bytes`);
  const canonical = concat(new Uint8Array([0x84]), bstr(protectedHdr), new Uint8Array([0xa0]), bstr(payload), bstr(signature));
  if (!equal(canonical, bytes)) fail('noncanonical_encoding', 'the envelope is not byte-identical to the NSM encoding');
  const tbs = concat(new Uint8Array(head(4, 4)), new Uint8Array([...head(3, 10), ...utf8('Signature1')]), bstr(protectedHdr), bstr(new Uint8Array()), bstr(payload));
  return { payload, signature, tbs };
}

const invalid = (field, reason) => fail('invalid_field', `invalid field ${field}: ${reason}`);
const isBytes = (v) => v instanceof Uint8Array;

function optionalBytes(field, v) {
  if (v === undefined || v === null) return null;
  if (!isBytes(v)) invalid(field, 'must be a byte string or null');
  if (v.length > 1024) invalid(field, 'longer than 1024 bytes');
  return v;
}

function payloadFields(payload) {
  let d;
  try { d = decode(payload); } catch (e) { fail('malformed_payload', `not CBOR: ${e.message}`); }
  if (d.rest) fail('malformed_payload', 'trailing bytes after the map');
  if (!d.value || !Array.isArray(d.value.map)) fail('malformed_payload', 'payload is not a map');
  const fields = new Map();
  for (const [k, v] of d.value.map) {
    if (typeof k !== 'string') fail('malformed_payload', 'non-text key');
    if (fields.has(k)) fail('malformed_payload', 'duplicate key');
    fields.set(k, v);
  }
  const take = (name) => {
    if (!fields.has(name)) fail('missing_field', name);
    return fields.get(name);
  };
  const moduleId = take('module_id');
  if (typeof moduleId !== 'string' || !moduleId) invalid('module_id', 'must be non-empty text');
  if (take('digest') !== 'SHA384') invalid('digest', 'must be the text "SHA384"');
  const ts = take('timestamp');
  if (!(typeof ts === 'number' || typeof ts === 'bigint') || ts < 0) invalid('timestamp', 'must be an unsigned integer');
  if (typeof ts === 'bigint' && ts >= 2n ** 64n) invalid('timestamp', 'must be an unsigned integer');
  if (ts == 0) invalid('timestamp', 'must be greater than 0');
  const pcrsValue = take('pcrs');
  if (!pcrsValue || !Array.isArray(pcrsValue.map)) invalid('pcrs', 'must be a map');
  if (pcrsValue.map.length < 1 || pcrsValue.map.length > 32) invalid('pcrs', 'must hold 1..=32 registers');
  const pcrs = new Map();
  for (const [k, v] of pcrsValue.map) {
    if (typeof k !== 'number' && typeof k !== 'bigint') invalid('pcrs', 'index must be an integer');
    if (!(k >= 0 && k <= 31)) invalid('pcrs', 'index must be 0..=31');
    if (!isBytes(v) || ![32, 48, 64].includes(v.length)) invalid('pcrs', 'value must be 32, 48 or 64 bytes');
    if (pcrs.has(Number(k))) invalid('pcrs', 'duplicate index');
    pcrs.set(Number(k), v);
  }
  const certificate = take('certificate');
  if (!isBytes(certificate) || certificate.length < 1 || certificate.length > 1024) {
    invalid('certificate', 'must be a byte string of 1..=1024 bytes');
  }
  const cabundle = take('cabundle');
  if (!Array.isArray(cabundle)) invalid('cabundle', 'must be an array');
  if (cabundle.length < 1 || cabundle.length > 16) invalid('cabundle', 'must hold 1..=16 certificates');
  for (const c of cabundle) {
    if (!isBytes(c) || c.length < 1 || c.length > 1024) invalid('cabundle', 'entries must be byte strings of 1..=1024 bytes');
  }
  const publicKey = optionalBytes('public_key', fields.get('public_key'));
  if (publicKey && publicKey.length === 0) invalid('public_key', 'must not be empty (1..=1024 bytes)');
  return {
    moduleId,
    timestampMs: Number(ts),
    pcrs,
    certificate,
    cabundle,
    publicKey,
    userData: optionalBytes('user_data', fields.get('user_data')),
    nonce: optionalBytes('nonce', fields.get('nonce')),
  };
}

// Parses a document (no cryptography): throws a VerifyError with the code.
export function parseDocument(bytes) {
  const env = envelope(bytes);
  const doc = payloadFields(env.payload);
  doc.envelope = env;
  doc.debug = [0, 1, 2].every((i) => { const p = doc.pcrs.get(i); return p && p.length && p.every((b) => b === 0); });
  return doc;
}

function cert(der, position) {
  try { return parseCertificate(der); } catch (e) { fail('malformed_certificate', `at chain position ${position}: ${e.message}`); }
}

async function signedBy(child, parentKey) {
  const raw = ecdsaRaw(child.signature);
  if (!raw) return false;
  const key = await crypto.subtle.importKey('raw', parentKey, { name: 'ECDSA', namedCurve: 'P-384' }, false, ['verify']);
  return crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-384' }, key, raw, child.tbs);
}

function checkTime(c, at, position) {
  if (at < c.notBefore) fail('certificate_not_yet_valid', `at chain position ${position}`);
  if (at > c.notAfter) fail('certificate_expired', `at chain position ${position}`);
}

// AWS's verification at the document's own timestamp under `roots` (DER
// byte arrays). Returns the parsed document and its certificates.
export async function verifyDocument(bytes, roots) {
  const doc = parseDocument(bytes);
  const at = Math.floor(doc.timestampMs / 1000);
  if (!roots.some((r) => equal(r, doc.cabundle[0]))) fail('untrusted_root', 'cabundle[0] is not a pinned root certificate');
  const chain = doc.cabundle.map((der, i) => cert(der, i));
  for (let i = 1; i < chain.length; i++) {
    if (!equal(chain[i].issuer, chain[i - 1].subject)) fail('issuer_mismatch', `at chain position ${i}`);
    if (!(await signedBy(chain[i], chain[i - 1].publicKey))) fail('chain_signature', `invalid at chain position ${i}`);
  }
  chain.forEach((c, i) => {
    const bc = c.basicConstraints;
    if (!bc || !bc.critical || !bc.ca) fail('basic_constraints', `violated at chain position ${i}`);
    if (bc.pathLen !== null && bc.pathLen < chain.length - i - 1) fail('path_len', `violated at chain position ${i}`);
    if (!c.keyUsage?.keyCertSign) fail('key_usage', `violated at chain position ${i}`);
  });
  const n = chain.length;
  const leaf = cert(doc.certificate, n);
  if (!equal(leaf.issuer, chain[n - 1].subject)) fail('issuer_mismatch', `at chain position ${n}`);
  if (!(await signedBy(leaf, chain[n - 1].publicKey))) fail('chain_signature', `invalid at chain position ${n}`);
  if (leaf.basicConstraints && (leaf.basicConstraints.ca || leaf.basicConstraints.pathLen !== null)) {
    fail('basic_constraints', `violated at chain position ${n}`);
  }
  if (!leaf.keyUsage?.digitalSignature) fail('key_usage', `violated at chain position ${n}`);
  chain.forEach((c, i) => checkTime(c, at, i));
  checkTime(leaf, at, n);
  const key = await crypto.subtle.importKey('raw', leaf.publicKey, { name: 'ECDSA', namedCurve: 'P-384' }, false, ['verify']);
  const ok = await crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-384' }, key, doc.envelope.signature, doc.envelope.tbs);
  if (!ok) fail('cose_signature', 'the ES384 signature does not verify under the leaf key');
  doc.chain = [...chain, leaf];
  return doc;
}
