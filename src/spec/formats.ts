/**
 * Value formats shared by the spec schema: Kubernetes names and quantities, libpq settings.
 * Each check carries the wording users see when a value does not fit.
 *
 * Written with zod/mini (tree-shakable functions instead of methods): the runner re-validates its runtime config
 * with these schemas, and zod/mini keeps the bundle it carries in a ConfigMap small (the full zod build alone is
 * ~450 KB minified). The English messages are those of full zod: its locale is configured here.
 */
import * as z from 'zod/mini';
import { en } from 'zod/locales';

z.config(en());

/** Attaches the description shown in the JSON Schema and the README's spec reference. */
export function described<T extends z.ZodMiniType>(schema: T, description: string): T {
  return schema.check(z.describe(description)) as T;
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** The regular expression Kubernetes uses for resource.Quantity. */
export const QUANTITY = /^[+]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$/;

/** A DNS-1123 label (lower-case letters, digits, '-'), at most `max` characters. */
export function dnsLabel(max = 63) {
  return z.string().check(
    z.maxLength(max, { message: `must be at most ${max} characters (a DNS-1123 label)` }),
    z.regex(DNS1123_LABEL, {
      message: 'must be a DNS-1123 label (lower-case letters, digits and "-", starting and ending with a letter or digit)',
    }),
  );
}

/** A DNS-1123 subdomain, as Kubernetes requires for Secret and ConfigMap names. */
export function dnsSubdomain() {
  return z.string().check(
    z.maxLength(253, { message: 'must be at most 253 characters (a DNS-1123 subdomain)' }),
    z.regex(DNS1123_SUBDOMAIN, {
      message: 'must be a DNS-1123 subdomain (lower-case letters, digits, "-" and ".", e.g. db-migration-secrets)',
    }),
  );
}

/** A Kubernetes quantity such as 256Mi, 1Gi, 250m or 2. */
export function quantity(example: string) {
  return z.string().check(z.regex(QUANTITY, { message: `must be a Kubernetes quantity (e.g. ${example})` }));
}

const SUFFIX: Record<string, number> = {
  '': 1, n: 1e-9, u: 1e-6, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};

/** The value of a Kubernetes quantity as a plain number (bytes for sizes, cores for CPU). */
export function quantityValue(q: string): number {
  const m = /^\+?([0-9.]+)(.*)$/.exec(q);
  if (!m || !QUANTITY.test(q)) throw new Error(`not a Kubernetes quantity: ${q}`);
  const [, num, suffix] = m;
  if (/^[eE]/.test(suffix)) return Number(num + suffix);
  return Number(num) * SUFFIX[suffix];
}

/** A whole number greater than 0, at most `max` when given (with its own message, `maxMessage`). */
export function positiveInt(what = 'a whole number greater than 0', max?: { value: number; message?: string }) {
  const message = `must be ${what}`;
  return z.number({ message }).check(z.int({ message }), z.positive({ message }), ...upTo(max));
}

/** A whole number, 0 or more, at most `max` when given. */
export function nonNegativeInt(what = 'a whole number, 0 or more', max?: { value: number; message?: string }) {
  const message = `must be ${what}`;
  return z.number({ message }).check(z.int({ message }), z.nonnegative({ message }), ...upTo(max));
}

/** A Kubernetes int32 field (backoffLimit, ttlSecondsAfterFinished, ...): the API server refuses larger values. */
export const INT32_MAX = { value: 2_147_483_647, message: 'must be at most 2147483647 (a Kubernetes int32)' } as const;

function upTo(max: { value: number; message?: string } | undefined) {
  return max === undefined ? [] : [z.maximum(max.value, max.message === undefined ? undefined : { message: max.message })];
}

export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;

/** Options that would put a password or a full connection string on a command line. */
export const FORBIDDEN_EXTRA_ARG = /(^|=|\s)(-W|--password)\b|password=|:\/\/[^/@\s]*:[^/@\s]*@|^(-d|--dbname)(=|$)|^(-h|--host|-p|--port|-U|--username)(=|$)/i;

const QUALIFIED_NAME = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/;

/** A label or annotation key: an optional DNS prefix and '/', then a name of at most 63 characters. */
export function qualifiedName() {
  return z.string().check(z.regex(QUALIFIED_NAME, {
    message: 'must be a Kubernetes label key (optional prefix/, then up to 63 letters, digits, "-", "_" or ".")',
  }));
}

/** A Kubernetes label value: at most 63 letters, digits, "-", "_" or ".", or empty. */
export function labelValue() {
  return z.string().check(z.regex(LABEL_VALUE, {
    message: 'must be a Kubernetes label value (at most 63 letters, digits, "-", "_" or ".", starting and ending with a letter or digit)',
  }));
}
