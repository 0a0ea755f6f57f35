// JSON Web Tokens for the access tests (SPEC §9), made with node:crypto only — an implementation
// independent of herald's.
//
//   hs256({ exp: now() + 60, herald: { subscribe: ['orders/*'] } }, SECRET)
//   heraldToken(SECRET, { subscribe: ['orders/*'], publish: ['chat/*'] })   // exp in one hour
//   noneToken(payload)          alg "none", empty signature
//   rs256Token(payload)         a genuine RS256 token (fresh RSA key)
//   confusedRs256Token(payload, SECRET)   header says RS256, signature is HMAC-SHA256(SECRET)
import { createHmac, createSign, generateKeyPairSync } from 'node:crypto';

/** base64url without padding of a Buffer, a string (UTF-8) or an object (its JSON text). */
export function b64url(x) {
  const buf = Buffer.isBuffer(x) ? x : Buffer.from(typeof x === 'string' ? x : JSON.stringify(x), 'utf8');
  return buf.toString('base64url');
}

/** Unix seconds now. */
export const now = () => Math.floor(Date.now() / 1000);

/** header.payload (both base64url), from objects or from raw JSON text. */
export function signingInput(header, payload) {
  return `${b64url(header)}.${b64url(payload)}`;
}

export function hmacB64url(input, secret) {
  return createHmac('sha256', Buffer.isBuffer(secret) ? secret : Buffer.from(secret, 'utf8')).update(input).digest('base64url');
}

/**
 * An HS256 JWT. payload: object or raw JSON text. header: defaults to {alg:'HS256',typ:'JWT'};
 * may be given as an object or raw JSON text (e.g. to test alg spelled otherwise).
 */
export function hs256(payload, secret, { header = { alg: 'HS256', typ: 'JWT' } } = {}) {
  const input = signingInput(header, payload);
  return `${input}.${hmacB64url(input, secret)}`;
}

/**
 * A herald token: exp one hour ahead unless given; subscribe/publish claims when given.
 * extra: more payload members (nbf, iat, sub, …); exp: null leaves exp out.
 */
export function heraldToken(secret, { subscribe, publish, exp = now() + 3600, extra = {}, header } = {}) {
  const herald = {};
  if (subscribe !== undefined) herald.subscribe = subscribe;
  if (publish !== undefined) herald.publish = publish;
  const payload = { sub: 'e2e', ...(exp === null ? {} : { exp }), herald, ...extra };
  return hs256(payload, secret, header ? { header } : {});
}

/** alg "none": the unsecured JWT of RFC 7519 §6 (empty signature part). */
export function noneToken(payload, { signature = '' } = {}) {
  return `${signingInput({ alg: 'none', typ: 'JWT' }, payload)}.${signature}`;
}

let rsaKeys = null;
function rsa() {
  if (!rsaKeys) rsaKeys = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return rsaKeys;
}

/** A genuine RS256 token signed with a fresh RSA key (herald accepts HS256 only). */
export function rs256Token(payload) {
  const input = signingInput({ alg: 'RS256', typ: 'JWT' }, payload);
  const sig = createSign('RSA-SHA256').update(input).sign(rsa().privateKey).toString('base64url');
  return `${input}.${sig}`;
}

/** The algorithm-confusion attack: header RS256, signature HMAC-SHA256 keyed with the HS secret. */
export function confusedRs256Token(payload, secret) {
  const input = signingInput({ alg: 'RS256', typ: 'JWT' }, payload);
  return `${input}.${hmacB64url(input, secret)}`;
}

/** The same token with its payload replaced, keeping the original signature. */
export function tamperPayload(token, payload) {
  const [h, , s] = token.split('.');
  return `${h}.${b64url(payload)}.${s}`;
}
