/**
 * The shapes of a schema inventory: its objects (a name-based key and text properties), the options it is read
 * with, and the differences a comparison reports. Shared by reading, comparing and the per-version rules.
 */
export type InventoryKind =
  | 'schema' | 'table' | 'column' | 'index' | 'constraint' | 'trigger' | 'function' | 'view' | 'matview'
  | 'sequence' | 'type' | 'domain' | 'extension' | 'policy' | 'privilege' | 'owner' | 'partition' | 'rls';

export interface InventoryObject {
  /** Unique, name-based: JSON of [class, schema, names...]. */
  readonly key: string;
  readonly kind: InventoryKind;
  /** Schema the object lives in ('' for database-wide default privileges). */
  readonly schema: string;
  /** Short label without the schema, e.g. `table orders`, `index orders_pkey`, `column orders.status`. */
  readonly object: string;
  /** Label with the schema, for messages: `table sales.orders`. */
  readonly display: string;
  /** Keys of the objects this one belongs to; if one of them is missing, this one is not reported. */
  readonly parents: readonly string[];
  /** Compared one by one; a property label of '' means the value speaks for itself. */
  readonly properties: Readonly<Record<string, string | null>>;
  /** Tables: column names in attribute order (compared as the order of the columns both sides have). */
  readonly columnOrder?: readonly string[];
}

export interface Inventory {
  readonly serverVersion: number;
  readonly includeAcl: boolean;
  readonly includeOwners: boolean;
  /** Sorted by key. */
  readonly objects: readonly InventoryObject[];
}

export interface InventoryDifference {
  readonly schema: string;
  readonly object: string;
  readonly kind: InventoryKind;
  readonly what: 'missing' | 'extra' | 'different';
  readonly source?: string;
  readonly destination?: string;
  /** One sentence naming the object (schema-qualified) and what differs. */
  readonly message: string;
}

export interface InventoryOptions {
  /** pg_dump --schema patterns. @default - every non-system schema */
  readonly schemas?: readonly string[];
  /** pg_dump --exclude-schema patterns. @default - none */
  readonly excludeSchemas?: readonly string[];
  /** Compare privileges (false when the restore uses --no-acl). */
  readonly includeAcl: boolean;
  /** Compare owners (false when the restore uses --no-owner). */
  readonly includeOwners: boolean;
}
