/**
 * Compares two inventories by key: what the destination lacks, has in addition, or has with other properties,
 * each difference one sentence on the object that differs (never again on its children).
 */
import { compareCodePoints } from '../checksum';
import { displayIdent } from '../../postgres/sql';
import type { InventoryObject, Inventory, InventoryDifference } from './inventory-types';
import { alignServerVersions } from './version-rules';

/**
 * Differences between two inventories, sorted by object key: what the destination lacks (missing), has in
 * addition (extra), or has with other properties (different, one entry per object listing every property
 * that differs).
 */
export function compareInventories(sourceInventory: Inventory, destinationInventory: Inventory): InventoryDifference[] {
  if (sourceInventory.includeAcl !== destinationInventory.includeAcl || sourceInventory.includeOwners !== destinationInventory.includeOwners) {
    throw new Error('inventories were read with different options (includeAcl / includeOwners); read both sides the same way');
  }
  // Across major versions, what the newer server adds by itself is not a difference (version-rules.ts).
  const { source, destination } = alignServerVersions(sourceInventory, destinationInventory);
  const src = new Map(source.objects.map((o) => [o.key, o]));
  const dst = new Map(destination.objects.map((o) => [o.key, o]));
  const absent = new Set<string>();
  for (const k of src.keys()) if (!dst.has(k)) absent.add(k);
  for (const k of dst.keys()) if (!src.has(k)) absent.add(k);

  const covered = new Map<string, boolean>();
  // True when an ancestor of the object is itself missing or extra (then that one is the difference).
  const underAbsent = (o: InventoryObject, seen = new Set<string>()): boolean => {
    const memo = covered.get(o.key);
    if (memo !== undefined) return memo;
    let result = false;
    for (const p of o.parents) {
      if (seen.has(p)) continue;
      seen.add(p);
      const parent = src.get(p) ?? dst.get(p);
      if (absent.has(p) || (parent !== undefined && underAbsent(parent, seen))) { result = true; break; }
    }
    covered.set(o.key, result);
    return result;
  };

  const keys = [...new Set([...src.keys(), ...dst.keys()])].sort(compareCodePoints);
  const out: InventoryDifference[] = [];
  for (const key of keys) {
    const s = src.get(key);
    const d = dst.get(key);
    const o = (s ?? d)!;
    if (underAbsent(o)) continue;
    const base = { schema: o.schema, object: o.object, kind: o.kind };
    if (s && !d) {
      out.push({ ...base, what: 'missing', source: summarize(s), message: `${capitalize(s.display)}${valueNote(s)} ${isAre(s)} missing on the destination` });
    } else if (!s && d) {
      out.push({ ...base, what: 'extra', destination: summarize(d), message: `${capitalize(d.display)}${valueNote(d)} ${isAre(d)} on the destination but not on the source` });
    } else if (s && d) {
      const diffs = propertyDifferences(s, d);
      if (diffs.length === 0) continue;
      out.push({
        ...base,
        what: 'different',
        source: diffs.map((p) => labelled(p.label, p.source)).join('; '),
        destination: diffs.map((p) => labelled(p.label, p.destination)).join('; '),
        message: describeDifferent(s, diffs),
      });
    }
  }
  return out;
}

interface PropertyDifference { readonly label: string; readonly source: string | null; readonly destination: string | null }

function propertyDifferences(s: InventoryObject, d: InventoryObject): PropertyDifference[] {
  const labels = [...new Set([...Object.keys(s.properties), ...Object.keys(d.properties)])];
  const out: PropertyDifference[] = [];
  for (const label of labels) {
    const a = s.properties[label] ?? null;
    const b = d.properties[label] ?? null;
    if (a !== b) out.push({ label, source: a, destination: b });
  }
  if (s.columnOrder && d.columnOrder) {
    const inD = new Set(d.columnOrder);
    const inS = new Set(s.columnOrder);
    const a = s.columnOrder.filter((c) => inD.has(c));
    const b = d.columnOrder.filter((c) => inS.has(c));
    if (a.join('\u0000') !== b.join('\u0000')) {
      out.push({ label: 'column order', source: a.map(displayIdent).join(', '), destination: b.map(displayIdent).join(', ') });
    }
  }
  return out;
}

const LONG_VALUE = 80;

function describeDifferent(o: InventoryObject, diffs: readonly PropertyDifference[]): string {
  const parts = diffs.map((p) => {
    const long = (p.source?.length ?? 0) > LONG_VALUE || (p.destination?.length ?? 0) > LONG_VALUE;
    if (long) return p.label === '' ? 'differs' : `${p.label} differs`;
    const change = `${shown(p.source)} on the source but ${shown(p.destination)} on the destination`;
    return p.label === '' ? `is ${change}` : `${p.label} is ${change}`;
  });
  const unlabelled = diffs.length === 1 && diffs[0].label === '';
  return unlabelled ? `${capitalize(o.display)} ${parts[0]}` : `${capitalize(o.display)}: ${parts.join('; ')}`;
}

function shown(v: string | null): string {
  return v === null || v === '' ? 'none' : v;
}

function labelled(label: string, v: string | null): string {
  return label === '' ? shown(v) : `${label}: ${shown(v)}`;
}

function summarize(o: InventoryObject): string {
  return Object.entries(o.properties).filter(([, v]) => v !== null && v !== '').map(([k, v]) => labelled(k, v)).join('; ');
}

/** Privileges are named by what they grant, so a reader sees which grants went missing. */
function valueNote(o: InventoryObject): string {
  return o.kind === 'privilege' ? ` (${shown(o.properties[''] ?? null)})` : '';
}

function isAre(o: InventoryObject): string {
  return o.kind === 'privilege' ? 'are' : 'is';
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
