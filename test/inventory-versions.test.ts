/**
 * The cross-version rules of verification (src/runner/checks/inventory/version-rules.ts), on inventories as readInventory
 * builds them: each rule removes only what the newer server adds by itself, never a real difference. The same
 * rules against real servers of each version: version-matrix.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { compareInventories, type Inventory, type InventoryObject } from '../src/runner/checks/inventory/inventory';

const key = (...parts: string[]) => JSON.stringify(parts);
const TABLE = key('table', 'public', 'actor');

function inventory(serverVersion: number, objects: InventoryObject[]): Inventory {
  return { serverVersion, includeAcl: true, includeOwners: true, objects: [...objects].sort((a, b) => (a.key < b.key ? -1 : 1)) };
}
const table: InventoryObject = { key: TABLE, kind: 'table', schema: 'public', object: 'table actor', display: 'table public.actor', parents: [key('schema', 'public')], properties: {} };
const schema: InventoryObject = { key: key('schema', 'public'), kind: 'schema', schema: 'public', object: 'schema public', display: 'schema public', parents: [], properties: {} };
const privilege = (grantee: string, list: string): InventoryObject => {
  const who = grantee === '' ? 'the owner' : grantee;
  return {
    key: key('privilege', TABLE, grantee), kind: 'privilege', schema: 'public', object: `privileges of ${who} on table actor`,
    display: `privileges of ${who} on table public.actor`, parents: [TABLE], properties: { '': list },
  };
};
const notNull = (name: string): InventoryObject => ({
  key: key('not null constraint', 'public', 'actor', name), kind: 'constraint', schema: 'public', object: `constraint ${name} on actor`,
  display: `constraint ${name} on public.actor`, parents: [TABLE], properties: { definition: 'NOT NULL actor_id', validated: 'yes' },
});
const ALL_16 = 'DELETE, INSERT, REFERENCES, SELECT, TRIGGER, TRUNCATE, UPDATE';
const ALL_17 = 'DELETE, INSERT, MAINTAIN, REFERENCES, SELECT, TRIGGER, TRUNCATE, UPDATE';
const messages = (a: Inventory, b: Inventory) => compareInventories(a, b).map((d) => d.message);

describe('MAINTAIN (PostgreSQL 17)', () => {
  it('given a grantee with every table privilege on 16, when it holds MAINTAIN too on 17, then that is no difference', () => {
    expect(messages(inventory(160004, [schema, table, privilege('', ALL_16)]), inventory(170002, [schema, table, privilege('', ALL_17)]))).toEqual([]);
  });

  it('keeps the grant option apart: ALL WITH GRANT OPTION implies MAINTAIN WITH GRANT OPTION, not a plain MAINTAIN', () => {
    const withOption = (l: string) => l.split(', ').map((p) => `${p} WITH GRANT OPTION`).join(', ');
    expect(messages(inventory(150000, [schema, table, privilege('app', withOption(ALL_16))]),
      inventory(170000, [schema, table, privilege('app', withOption(ALL_17))]))).toEqual([]);
    const differences = compareInventories(inventory(150000, [schema, table, privilege('app', withOption(ALL_16))]),
      inventory(170000, [schema, table, privilege('app', `${withOption(ALL_16)}, MAINTAIN`)]));
    expect(differences.map((d) => [d.what, d.destination])).toEqual([['different', `${withOption(ALL_16)}, MAINTAIN`]]);
  });

  it('fails a grantee that gained MAINTAIN without having held every privilege, and one that lost a privilege', () => {
    expect(messages(inventory(150000, [schema, table, privilege('app', 'SELECT')]), inventory(180000, [schema, table, privilege('app', 'MAINTAIN, SELECT')])))
      .toEqual(['Privileges of app on table public.actor is SELECT on the source but MAINTAIN, SELECT on the destination']);
    expect(messages(inventory(150000, [schema, table, privilege('', ALL_16)]), inventory(170000, [schema, table, privilege('', ALL_17.replace('DELETE, ', ''))])))
      .toEqual([`Privileges of the owner on table public.actor is ${ALL_16} on the source but ${ALL_17.replace('DELETE, ', '').replace('MAINTAIN, ', '')} on the destination`]);
  });

  it('compares MAINTAIN as is between two servers that both have it', () => {
    expect(messages(inventory(170000, [schema, table, privilege('', ALL_17)]), inventory(180000, [schema, table, privilege('', ALL_16)])))
      .toEqual([`Privileges of the owner on table public.actor is ${ALL_17} on the source but ${ALL_16} on the destination`]);
  });
});

describe('catalogued NOT NULL constraints (PostgreSQL 18)', () => {
  it('given a source older than 18, when the destination lists NOT NULL constraints, then they are not compared', () => {
    expect(messages(inventory(150000, [schema, table]), inventory(180000, [schema, table, notNull('actor_actor_id_not_null')]))).toEqual([]);
  });

  it('given two servers that both catalogue them, when one is missing, then it is reported', () => {
    expect(messages(inventory(180000, [schema, table, notNull('actor_actor_id_not_null')]), inventory(180001, [schema, table])))
      .toEqual(['Constraint actor_actor_id_not_null on public.actor is missing on the destination']);
  });
});
