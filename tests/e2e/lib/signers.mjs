// Webhook signers for the webhooks-in tests (SPEC §8), independent of herald's code:
//  - Standard Webhooks: the npm `standardwebhooks` package's Webhook.sign (the reference
//    implementation), plus a node:crypto one for timestamps the package cannot express
//    (`abc`, `1e9`, negative, …).
//  - Stripe: `Stripe-Signature: t=<unix>,v1=<hex>`, HMAC-SHA256 over "<t>.<body>" keyed with the
//    secret string's own bytes (whsec_ included, NOT base64-decoded).
//  - GitHub: `X-Hub-Signature-256: sha256=<hex>` over the body.
// Bodies may be strings (UTF-8) or Buffers; signatures are over the exact bytes sent.
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { Webhook } from 'standardwebhooks';

export const nowSeconds = () => Math.floor(Date.now() / 1000);

const bytes = (body) => (Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8'));

// ---- Standard Webhooks ----------------------------------------------------------------------

/** A Standard Webhooks secret: `whsec_` + base64 of 24 random bytes (as herald makes them). */
export function standardSecret() {
  return `whsec_${randomBytes(24).toString('base64')}`;
}

/** The key a Standard Webhooks secret stands for: base64-decoded after an optional `whsec_`. */
export function standardKey(secret) {
  return Buffer.from(secret.startsWith('whsec_') ? secret.slice(6) : secret, 'base64');
}

/** `v1,<base64>` by the npm reference implementation (timestamp: unix seconds). */
export function standardSignNpm(secret, id, timestamp, body) {
  return new Webhook(secret).sign(id, new Date(Number(timestamp) * 1000), bytes(body));
}

/** `v1,<base64>` with node:crypto over "<id>.<timestamp>.<body>"; timestamp used as given (any text). */
export function standardSignRaw(key, id, timestamp, body) {
  const mac = createHmac('sha256', key).update(`${id}.${timestamp}.`).update(bytes(body)).digest('base64');
  return `v1,${mac}`;
}

/**
 * The three Standard Webhooks headers for body, signed with the npm package.
 * opts: id (default msg_<uuid>), timestamp (default now), signatures: a function (sig) → the
 * webhook-signature value (e.g. to list several), raw: sign with node:crypto over the timestamp
 * text as given (for non-numeric timestamps).
 */
export function standardHeaders(secret, body, { id = `msg_${randomUUID()}`, timestamp = nowSeconds(), signatures, raw = false } = {}) {
  const sig = raw || typeof timestamp !== 'number' ? standardSignRaw(standardKey(secret), id, timestamp, body) : standardSignNpm(secret, id, timestamp, body);
  return {
    'webhook-id': id,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': signatures ? signatures(sig) : sig,
  };
}

// ---- Stripe ---------------------------------------------------------------------------------

/** A Stripe endpoint secret as Stripe shows it: `whsec_` + 32 alphanumerics. */
export function stripeSecret() {
  const abc = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  return `whsec_${Array.from(randomBytes(32), (b) => abc[b % abc.length]).join('')}`;
}

/** Hex HMAC-SHA256 over "<t>.<body>" keyed with the secret string's bytes (as Stripe does). */
export function stripeV1(secret, t, body, { key } = {}) {
  return createHmac('sha256', key ?? Buffer.from(secret, 'utf8')).update(`${t}.`).update(bytes(body)).digest('hex');
}

/**
 * `Stripe-Signature` for body. opts: t (default now; any text), extra: more elements appended
 * (e.g. ['v1=dead…', 'v0=…']), before: elements put before the real v1, key: override the HMAC
 * key (to sign wrongly on purpose).
 */
export function stripeHeader(secret, body, { t = nowSeconds(), before = [], extra = [], key } = {}) {
  return [`t=${t}`, ...before, `v1=${stripeV1(secret, t, body, { key })}`, ...extra].join(',');
}

/** A Stripe event body: {id: evt_…, object: 'event', type, data: {object}}. */
export function stripeEvent(type = 'payment_intent.succeeded', object = { id: 'pi_1', amount: 2000 }, id = `evt_${randomUUID().replace(/-/g, '')}`) {
  return { id, object: 'event', api_version: '2024-06-20', created: nowSeconds(), type, data: { object } };
}

// ---- GitHub ---------------------------------------------------------------------------------

export function githubSecret() {
  return randomBytes(20).toString('hex');
}

/** `sha256=<hex>` HMAC-SHA256 of the body keyed with the secret's bytes. */
export function githubSignature(secret, body) {
  return `sha256=${createHmac('sha256', Buffer.from(secret, 'utf8')).update(bytes(body)).digest('hex')}`;
}

/** The headers GitHub sends with a delivery. */
export function githubHeaders(secret, body, { event = 'push', delivery = randomUUID() } = {}) {
  return {
    'X-GitHub-Event': event,
    'X-GitHub-Delivery': delivery,
    'X-GitHub-Hook-ID': '123456',
    'X-Hub-Signature-256': githubSignature(secret, body),
    'User-Agent': 'GitHub-Hookshot/e2e',
  };
}
